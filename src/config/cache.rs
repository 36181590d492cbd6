//! `[cache]`: the credential-list cache (`credentials_ttl`, `max_users`,
//! `refresh_cooldown`, `stale_if_error`, `max_concurrent_loads`). It owns
//! the section's file form (`RawCache`), its defaults, the validated
//! [`CacheConfig`] and its checks.
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`). The
//! cache itself is `paragon::directory`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{dur, ConfigError};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_users: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_cooldown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_if_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_loads: Option<usize>,
}

/// `cache.credentials_ttl` [default: 60s].
pub const DEFAULT_CREDENTIALS_TTL: Duration = Duration::from_secs(60);
/// `cache.max_users` [default: 100000].
pub const DEFAULT_MAX_USERS: u64 = 100_000;
/// `cache.refresh_cooldown` [default: 5s].
pub const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(5);
/// `cache.stale_if_error` [default: 0s].
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::ZERO;
/// `cache.max_concurrent_loads`: `/sdk/me` loads in flight at once, so a
/// burst of new users cannot open unbounded connections to Paragon
/// [default: 64].
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 64;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub credentials_ttl: Duration,
    pub max_users: u64,
    pub refresh_cooldown: Duration,
    pub stale_if_error: Duration,
    pub max_concurrent_loads: usize,
}

pub(super) fn validate_cache(raw: RawCache) -> Result<CacheConfig, ConfigError> {
    let credentials_ttl = dur(
        "cache.credentials_ttl",
        raw.credentials_ttl.as_deref(),
        DEFAULT_CREDENTIALS_TTL,
    )?;
    if credentials_ttl.is_zero() {
        return Err(ConfigError::new(
            "cache.credentials_ttl",
            "must be longer than 0s",
        ));
    }
    let max_users = raw.max_users.unwrap_or(DEFAULT_MAX_USERS);
    if max_users == 0 {
        return Err(ConfigError::new("cache.max_users", "must be at least 1"));
    }
    let max_concurrent_loads = raw
        .max_concurrent_loads
        .unwrap_or(DEFAULT_MAX_CONCURRENT_LOADS);
    if max_concurrent_loads == 0 {
        return Err(ConfigError::new(
            "cache.max_concurrent_loads",
            "must be at least 1",
        ));
    }
    Ok(CacheConfig {
        credentials_ttl,
        max_users,
        refresh_cooldown: dur(
            "cache.refresh_cooldown",
            raw.refresh_cooldown.as_deref(),
            DEFAULT_REFRESH_COOLDOWN,
        )?,
        stale_if_error: dur(
            "cache.stale_if_error",
            raw.stale_if_error.as_deref(),
            DEFAULT_STALE_IF_ERROR,
        )?,
        max_concurrent_loads,
    })
}
