//! Small pure helpers the emulator needs and the crate has no dependency
//! for: ISO-8601 timestamps (Paragon's `dateCreated` values), name-derived
//! UUIDs (stable fixture defaults), and query-string reading.

use aws_lc_rs::digest;

/// Milliseconds since the Unix epoch, now.
pub(crate) use crate::clock::{format_iso, now_ms};

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 timestamp (`2024-01-31T12:00:00Z`, optional
/// fraction, `Z` or `±HH:MM`) into epoch milliseconds. Years 0000-9999.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mo = u32::try_from(mo).ok().filter(|m| (1..=12).contains(m))?;
    let d = u32::try_from(d)
        .ok()
        .filter(|d| *d >= 1 && *d <= days_in_month(y, mo))?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let total = oh * 60 + om;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// A UUID derived from `kind` and `name`: SHA-256 of both, shaped as an
/// RFC 9562 version-8 (custom) UUID. Same input, same id, so fixture
/// defaults (integration ids, configuration ids, persona ids) are stable
/// across runs.
pub(crate) fn derived_uuid(kind: &str, name: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"credgate-emulator\0");
    ctx.update(kind.as_bytes());
    ctx.update(b"\0");
    ctx.update(name.as_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    crate::keygen::format_uuid(b)
}

/// Lowercase hex of `n` random bytes.
pub(crate) fn random_hex() -> String {
    crate::keygen::random_bytes::<16>()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Percent-decodes `s` (and `+` as space when `form` is set). `None` when an
/// escape is malformed or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str, form: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Every value of query parameter `name` (form-decoded), in order. Pairs
/// that do not decode are skipped.
pub(crate) fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    let Some(q) = query else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true)?;
            (k == name).then(|| percent_decode(v, true)).flatten()
        })
        .collect()
}

/// The first value of query parameter `name`.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_values(query, name).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps_round_trip() {
        for ms in [
            0,
            1_704_067_200_000,
            951_782_400_123,
            -86_400_000,
            4_102_444_799_999,
        ] {
            assert_eq!(parse_iso(&format_iso(ms)), Some(ms), "{}", format_iso(ms));
        }
        assert_eq!(format_iso(1_704_067_200_000), "2024-01-01T00:00:00.000Z");
    }

    #[test]
    fn iso_parsing_accepts_rfc3339_forms_and_offsets() {
        let base = parse_iso("2024-02-29T10:00:00Z").unwrap();
        assert_eq!(parse_iso("2024-02-29T10:00:00.5Z"), Some(base + 500));
        assert_eq!(
            parse_iso("2024-02-29T10:00:00.123456789Z"),
            Some(base + 123)
        );
        assert_eq!(parse_iso("2024-02-29T12:00:00+02:00"), Some(base));
        assert_eq!(parse_iso("2024-02-29t09:30:00-00:30"), Some(base));
    }

    #[test]
    fn iso_parsing_refuses_impossible_or_partial_dates() {
        for bad in [
            "",
            "2024-01-01",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01T00:00:00+0200",
            "+024-01-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn derived_uuids_are_stable_canonical_and_distinct() {
        let a = derived_uuid("integration", "slack");
        assert_eq!(a, derived_uuid("integration", "slack"));
        assert_ne!(a, derived_uuid("integration", "salesforce"));
        assert_ne!(a, derived_uuid("configuration", "slack"));
        assert!(crate::paragon::credentials::is_uuid(&a));
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn query_values_are_form_decoded() {
        let q = Some("integration=custom.billing&includeAccountAuth=TRUE&x=a%20b+c&x=2&bad=%zz");
        assert_eq!(
            query_value(q, "integration").as_deref(),
            Some("custom.billing")
        );
        assert_eq!(
            query_value(q, "includeAccountAuth").as_deref(),
            Some("TRUE")
        );
        assert_eq!(query_values(q, "x"), vec!["a b c", "2"]);
        assert_eq!(query_value(q, "bad"), None);
        assert_eq!(query_value(None, "x"), None);
        assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF", false), None);
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    }
}
