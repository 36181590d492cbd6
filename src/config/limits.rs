//! `[limits]` (contract §5c): the token buckets per principal
//! (`principal_rps`, `principal_burst`) and per Connected User (`user_rps`,
//! `user_burst`). It owns the section's file form (`RawLimits`), the
//! validated [`LimitsConfig`] and its checks; a bucket is a `rules::Rate`,
//! the same as a limit rule's.
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`).
//! Counting requests is `policy::limits`'s.

use serde::{Deserialize, Serialize};

use super::common::ConfigError;
use super::rules;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_burst: Option<u32>,
}

/// `[limits]` (contract §5c): token buckets per principal and per
/// Connected User; unset, no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitsConfig {
    pub principal: Option<rules::Rate>,
    pub user: Option<rules::Rate>,
}

pub(super) fn validate_limits(raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
    Ok(LimitsConfig {
        principal: rate("limits.principal", raw.principal_rps, raw.principal_burst)?,
        user: rate("limits.user", raw.user_rps, raw.user_burst)?,
    })
}

/// One `[limits]` bucket: `{prefix}_rps` (above 0) and `{prefix}_burst`
/// (at least 1; default: the rate rounded up).
fn rate(
    prefix: &str,
    rps: Option<f64>,
    burst: Option<u32>,
) -> Result<Option<rules::Rate>, ConfigError> {
    match (rps, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::new(
            format!("{prefix}_burst"),
            format!("needs {prefix}_rps"),
        )),
        (Some(rps), burst) => rules::Rate::new(rps, burst).map(Some).map_err(|e| match e {
            rules::RateError::Rps => ConfigError::new(
                format!("{prefix}_rps"),
                "must be a number above 0 and at most 1000000",
            ),
            rules::RateError::Burst => {
                ConfigError::new(format!("{prefix}_burst"), "must be at least 1")
            }
        }),
    }
}
