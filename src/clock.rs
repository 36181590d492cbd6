//! The wall clock as credgate reads it: Unix seconds, for token times
//! (`exp`, `nbf`, `iat` of callers' tokens, `iat`/`exp` of minted ones),
//! and milliseconds with their RFC 3339 form, for records (the audit log)
//! and the emulator's timestamps. One place, so every layer reads time the
//! same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form Paragon's API uses.
pub fn format_iso(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_iso(ms, &mut out);
    String::from_utf8(out).expect("digits and separators are ASCII")
}

/// Appends `format_iso(ms)` to `out`, digit by digit: the audit writes one
/// per request, and the formatting machinery costs more than the rest of
/// the timestamp together.
pub fn write_iso(ms: i64, out: &mut Vec<u8>) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rem) = (rem / 3_600_000, rem % 3_600_000);
    let (min, rem) = (rem / 60_000, rem % 60_000);
    let (s, milli) = (rem / 1000, rem % 1000);
    let digits = |out: &mut Vec<u8>, v: i64, width: u32| {
        let v = v.clamp(0, 10_i64.pow(width) - 1);
        for k in (0..width).rev() {
            out.push(b'0' + ((v / 10_i64.pow(k)) % 10) as u8);
        }
    };
    digits(out, y, 4);
    out.push(b'-');
    digits(out, i64::from(m), 2);
    out.push(b'-');
    digits(out, i64::from(d), 2);
    out.push(b'T');
    digits(out, h, 2);
    out.push(b':');
    digits(out, min, 2);
    out.push(b':');
    digits(out, s, 2);
    out.push(b'.');
    digits(out, milli, 3);
    out.push(b'Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H.
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_timestamps() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso(1_704_067_200_123), "2024-01-01T00:00:00.123Z");
        assert_eq!(format_iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
