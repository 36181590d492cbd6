//! Human-written durations in the config file: `"30s"`, `"5m"`, `"250ms"`,
//! `"1h30m"`. A bare number is refused on purpose: `timeout = 30` is
//! ambiguous (seconds? milliseconds?) and a security proxy should not guess.

use std::fmt::Write as _;
use std::time::Duration;

/// Parses `"<number><unit>"` runs, units `ms`, `s`, `m`, `h`, `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration like \"30s\" or \"5m\""));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is out of range"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "d" => Duration::from_secs(value.saturating_mul(86_400)),
            "" => return Err(format!("`{text}` needs a unit (ms, s, m, h or d)")),
            other => return Err(format!("`{text}` has an unknown unit `{other}`")),
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is out of range"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it back (`"1m30s"`, `"250ms"`).
pub fn format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut out = String::new();
    let mut secs = d.as_secs();
    let millis = d.subsec_millis();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size && secs.is_multiple_of(size) && millis == 0 {
            let _ = write!(out, "{}{unit}", secs / size);
            return out;
        }
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    if secs > 0 {
        let _ = write!(out, "{secs}s");
    }
    if millis > 0 {
        let _ = write!(out, "{millis}ms");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse(" 2d ").unwrap(), Duration::from_secs(172_800));
    }

    #[test]
    fn refuses_bare_numbers_unknown_units_and_garbage() {
        for bad in [
            "",
            "30",
            "s",
            "5x",
            "1.5s",
            "-1s",
            "5 m",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "0s", "30s", "5m", "1h", "90s", "250ms", "1m30s", "2d", "1s500ms",
        ] {
            let d = parse(text).unwrap();
            assert_eq!(parse(&format(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
