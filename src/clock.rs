//! The wall clock as credgate reads it: Unix seconds, for token times
//! (`exp`, `nbf`, `iat` of callers' tokens, `iat`/`exp` of minted ones).
//! One function, so every layer reads time the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
