//! `[paragon]`: where Paragon is and how credgate speaks for the project
//! (`project_id`, the six `*_url` hosts, `signing_key_file`,
//! `public_key_file`, `token_ttl`, `audience`, `ca_file`,
//! `member_token_permissions`). It owns the section's file form
//! (`RawParagon`), its defaults (Paragon's cloud hosts, the token lifetime
//! and its reuse margin), the validated [`ParagonConfig`] and its checks:
//! the project id is a UUID, the keys parse (and the signing key signs),
//! and the key the auth mode needs is there.
//!
//! Of the other sections it knows only `auth.mode` (which key is required);
//! it knows nothing of credgate outside `config` (`config` imports nothing
//! of credgate's: see `src/lib.rs`). Minting and forwarding are
//! `paragon::mint`'s and `gateway`'s.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::auth::AuthMode;
use super::common::{dur, is_uuid, read_pem, refuse_placeholder, ConfigError, PemFile};
use super::duration;
use super::net::UpstreamBase;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawParagon {
    pub project_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflows_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actionkit_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agentos_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_token_permissions: Option<toml::Table>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// Paragon's cloud hosts (contract §10; `paragon-api.md` §0).
pub const DEFAULT_CONNECT_URL: &str = "https://zeus.useparagon.com";
pub const DEFAULT_WORKFLOWS_URL: &str = "https://hermes.useparagon.com";
pub const DEFAULT_PROXY_URL: &str = "https://proxy.useparagon.com";
pub const DEFAULT_ACTIONKIT_URL: &str = "https://actionkit.useparagon.com";
pub const DEFAULT_SYNC_URL: &str = "https://sync.useparagon.com";
pub const DEFAULT_AGENTOS_URL: &str = "https://agentos.useparagon.com";
/// `paragon.token_ttl`: lifetime of minted upstream tokens [default: 5m].
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Minted tokens are reused until this long before they expire (contract §7).
pub const MINT_REUSE_MARGIN: Duration = Duration::from_secs(30);
/// The shortest `paragon.token_ttl` accepted: the reuse margin plus a minute.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct ParagonConfig {
    pub project_id: String,
    pub connect_url: UpstreamBase,
    pub workflows_url: UpstreamBase,
    pub proxy_url: UpstreamBase,
    pub actionkit_url: UpstreamBase,
    pub sync_url: UpstreamBase,
    pub agentos_url: UpstreamBase,
    /// Merged into the top level of every minted member permissions claim
    /// (ActionKit's `actionkit`, say). Never holds a scope key
    /// (`integration:*`, `credential:*`, `configuration:*`): those would
    /// widen what a member's token may use.
    pub member_token_permissions: serde_json::Map<String, serde_json::Value>,
    pub signing_key: Option<PemFile>,
    pub public_key: Option<PemFile>,
    pub token_ttl: Duration,
    pub ca_file: Option<PemFile>,
    pub audience: String,
}

impl ParagonConfig {
    /// The six upstream bases in one fixed order: connect, workflows,
    /// proxy, ActionKit, sync, Agent OS (`paragon::routes::Upstream`'s).
    pub fn upstream_bases(&self) -> [&UpstreamBase; 6] {
        [
            &self.connect_url,
            &self.workflows_url,
            &self.proxy_url,
            &self.actionkit_url,
            &self.sync_url,
            &self.agentos_url,
        ]
    }
}

pub(super) fn validate_paragon(
    raw: RawParagon,
    base: &Path,
    mode: AuthMode,
) -> Result<ParagonConfig, ConfigError> {
    let project_id = raw
        .project_id
        .ok_or_else(|| ConfigError::new("paragon.project_id", "is required"))?;
    refuse_placeholder("paragon.project_id", &project_id)?;
    // Paragon's project ids are UUIDs (the dashboard shows one), compared
    // against raw path segments: a UUID has one spelling in a path.
    if !is_uuid(&project_id) {
        return Err(ConfigError::new(
            "paragon.project_id",
            format!("`{project_id}` is not a project id (a UUID, from Paragon's dashboard)"),
        ));
    }
    let url = |key: &str, v: Option<&str>, default: &str| -> Result<UpstreamBase, ConfigError> {
        v.unwrap_or(default)
            .parse::<UpstreamBase>()
            .map_err(|m| ConfigError::new(key, m))
    };
    let connect_url = url(
        "paragon.connect_url",
        raw.connect_url.as_deref(),
        DEFAULT_CONNECT_URL,
    )?;
    let workflows_url = url(
        "paragon.workflows_url",
        raw.workflows_url.as_deref(),
        DEFAULT_WORKFLOWS_URL,
    )?;
    let proxy_url = url(
        "paragon.proxy_url",
        raw.proxy_url.as_deref(),
        DEFAULT_PROXY_URL,
    )?;
    let actionkit_url = url(
        "paragon.actionkit_url",
        raw.actionkit_url.as_deref(),
        DEFAULT_ACTIONKIT_URL,
    )?;
    let sync_url = url(
        "paragon.sync_url",
        raw.sync_url.as_deref(),
        DEFAULT_SYNC_URL,
    )?;
    let agentos_url = url(
        "paragon.agentos_url",
        raw.agentos_url.as_deref(),
        DEFAULT_AGENTOS_URL,
    )?;
    let member_token_permissions =
        member_token_permissions(raw.member_token_permissions.unwrap_or_default())?;

    let signing_key = raw
        .signing_key_file
        .as_deref()
        .map(|p| read_pem("paragon.signing_key_file", base, p))
        .transpose()?;
    if let Some(k) = &signing_key {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&k.pem).map_err(|e| {
            ConfigError::new(
                "paragon.signing_key_file",
                format!("not an RSA private key in PEM form: {e}"),
            )
        })?;
        // A public key parses too, then fails every signature at run time:
        // sign once now, so that it fails here instead.
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::RS256),
            &serde_json::json!({"check": true}),
            &key,
        )
        .map_err(|_| {
            ConfigError::new(
                "paragon.signing_key_file",
                "cannot sign with this key: it must be the project's RSA private key (Paragon's dashboard, Settings > SDK Setup), not its public key",
            )
        })?;
    }
    let public_key = raw
        .public_key_file
        .as_deref()
        .map(|p| read_pem("paragon.public_key_file", base, p))
        .transpose()?;
    if let Some(k) = &public_key {
        jsonwebtoken::DecodingKey::from_rsa_pem(&k.pem).map_err(|e| {
            ConfigError::new(
                "paragon.public_key_file",
                format!("not an RSA public key in PEM form: {e}"),
            )
        })?;
    }
    match mode {
        AuthMode::Mint if signing_key.is_none() => {
            return Err(ConfigError::new(
                "paragon.signing_key_file",
                "is required in mint mode (auth.mode = \"mint\", the default)",
            ))
        }
        AuthMode::Passthrough if public_key.is_none() => {
            return Err(ConfigError::new(
                "paragon.public_key_file",
                "is required in passthrough mode",
            ))
        }
        _ => {}
    }
    let token_ttl = dur(
        "paragon.token_ttl",
        raw.token_ttl.as_deref(),
        DEFAULT_TOKEN_TTL,
    )?;
    if token_ttl < MIN_TOKEN_TTL {
        return Err(ConfigError::new(
            "paragon.token_ttl",
            format!(
                "must be at least {} (tokens are reused until 30s before expiry)",
                duration::format(MIN_TOKEN_TTL)
            ),
        ));
    }
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|p| read_pem("paragon.ca_file", base, p))
        .transpose()?;
    let audience = raw
        .audience
        .unwrap_or_else(|| format!("useparagon.com/{project_id}"));
    if audience.is_empty() {
        return Err(ConfigError::new("paragon.audience", "must not be empty"));
    }
    Ok(ParagonConfig {
        project_id,
        connect_url,
        workflows_url,
        proxy_url,
        actionkit_url,
        sync_url,
        agentos_url,
        member_token_permissions,
        signing_key,
        public_key,
        token_ttl,
        ca_file,
        audience,
    })
}

/// `paragon.member_token_permissions`: TOML values as JSON. A scope key
/// (`integration:`, `credential:`, `configuration:`) is refused: merged
/// into a member's claim it would widen what the token may use.
fn member_token_permissions(
    table: toml::Table,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    const KEY: &str = "paragon.member_token_permissions";
    let mut out = serde_json::Map::new();
    for (k, v) in table {
        let lower = k.to_ascii_lowercase();
        if ["integration:", "credential:", "configuration:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Err(ConfigError::new(
                format!("{KEY}.{k}"),
                "is a permission scope; scopes are credgate's to set (it narrows them to the member's credentials)",
            ));
        }
        let json = serde_json::to_value(&v)
            .map_err(|e| ConfigError::new(format!("{KEY}.{k}"), e.to_string()))?;
        out.insert(k, json);
    }
    Ok(out)
}
