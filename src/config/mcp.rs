//! `[mcp]` (contract §12): the agents' front at `/mcp` (`enabled`,
//! `proxy_tool`, `session_idle`, `max_sessions`,
//! `max_sessions_per_principal`). It owns the section's file form
//! (`RawMcp`), its defaults, the validated [`McpConfig`] and its checks.
//!
//! Of the other sections it reads the validated `[auth]` (is there an
//! issuer to name?) and `[policy]` (may the Proxy API tool take full URLs?),
//! for warnings only; it knows nothing of credgate outside `config`
//! (`config` imports nothing of credgate's: see `src/lib.rs`). Speaking MCP
//! is `gateway::mcp`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::AuthConfig;
use super::common::{dur, ConfigError};
use super::policy::PolicyConfig;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_tool: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_principal: Option<usize>,
}

/// `[mcp]`: the agents' front at `/mcp` (contract §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    pub enabled: bool,
    /// Offer one Proxy API tool, under `policy.proxy_url_hosts` and the
    /// header allowlist of contract §7.
    pub proxy_tool: bool,
    /// A session unused this long is gone (the client initializes again).
    pub session_idle: Duration,
    /// Open sessions at most; one more `initialize` is refused until one
    /// ends or idles out.
    pub max_sessions: usize,
    /// Open sessions of one principal at most (its user and principal), so
    /// one caller cannot take every session from the others; one more of
    /// its `initialize` is refused. At most `max_sessions`.
    pub max_sessions_per_principal: usize,
}

/// `mcp.session_idle` [default: 30m].
pub const DEFAULT_MCP_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// `mcp.max_sessions` [default: 10000].
pub const DEFAULT_MCP_MAX_SESSIONS: usize = 10_000;
/// `mcp.max_sessions_per_principal` [default: 16, or `mcp.max_sessions`
/// when that is lower].
pub const DEFAULT_MCP_MAX_SESSIONS_PER_PRINCIPAL: usize = 16;

pub(super) fn validate_mcp(
    raw: RawMcp,
    policy: &PolicyConfig,
    auth: &AuthConfig,
    warnings: &mut Vec<String>,
) -> Result<McpConfig, ConfigError> {
    let session_idle = dur(
        "mcp.session_idle",
        raw.session_idle.as_deref(),
        DEFAULT_MCP_SESSION_IDLE,
    )?;
    if session_idle.is_zero() {
        return Err(ConfigError::new("mcp.session_idle", "must be above 0"));
    }
    let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MCP_MAX_SESSIONS);
    if max_sessions == 0 {
        return Err(ConfigError::new("mcp.max_sessions", "must be at least 1"));
    }
    let max_sessions_per_principal = match raw.max_sessions_per_principal {
        None => DEFAULT_MCP_MAX_SESSIONS_PER_PRINCIPAL.min(max_sessions),
        Some(0) => {
            return Err(ConfigError::new(
                "mcp.max_sessions_per_principal",
                "must be at least 1",
            ))
        }
        Some(n) if n > max_sessions => {
            return Err(ConfigError::new(
                "mcp.max_sessions_per_principal",
                format!("must be at most mcp.max_sessions ({max_sessions})"),
            ))
        }
        Some(n) => n,
    };
    let cfg = McpConfig {
        enabled: raw.enabled.unwrap_or(false),
        proxy_tool: raw.proxy_tool.unwrap_or(false),
        session_idle,
        max_sessions,
        max_sessions_per_principal,
    };
    if cfg.proxy_tool && !cfg.enabled {
        return Err(ConfigError::new(
            "mcp.proxy_tool",
            "needs mcp.enabled = true",
        ));
    }
    if cfg.enabled && auth.issuer.is_none() {
        warnings.push(
            "mcp.enabled without auth.issuer: the protected-resource metadata names no authorization server, so MCP clients cannot discover where to sign in".into(),
        );
    }
    if cfg.proxy_tool && policy.proxy_url_hosts.is_empty() {
        warnings.push(
            "mcp.proxy_tool with an empty policy.proxy_url_hosts: the Proxy API tool takes paths only, never a full URL".into(),
        );
    }
    Ok(cfg)
}
