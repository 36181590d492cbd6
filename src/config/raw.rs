//! The serde mirror of the config file. Every field is optional here so that
//! validation (in `mod.rs`) can name the key that is missing or wrong and can
//! fill defaults from named constants. `deny_unknown_fields` everywhere: a
//! misspelt key in a security proxy's config must fail, never be ignored.
//! The same structs, filled with effective values, print `check-config`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub paragon: Option<RawParagon>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub mcp: RawMcp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RawCluster>,
}

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

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_incoming_trace: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_spans: Option<usize>,
}

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

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_max_idle_per_host: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

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

/// A key that accepts `"a"` or `["a", "b"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_refresh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_min_refetch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leeway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cache_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_products: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_account_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_paragon_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_products: Option<Vec<String>>,
}

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

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_retention: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}
