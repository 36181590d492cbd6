//! Configuration: the TOML file validated into a typed [`Config`], one file
//! per section. Each section's file (`server`, `paragon`, `auth`, `policy`,
//! `limits`, `audit`, `telemetry`, `mcp`, `cors`, `cache`, `cluster`) holds its
//! file form, its defaults (named constants), its validated type and its
//! checks; `common` what they share; this root only composes them: the
//! top-level [`Config`], reading and parsing the file (`load`,
//! `from_toml`), the order in which the sections are checked, and the
//! checks that involve several sections.
//!
//! Everything is checked before any port is bound: durations parse, URLs
//! parse, files exist and hold the keys they should, and cross-field rules
//! hold (mint mode needs a signing key, passthrough a public key). Every
//! error names the key it is about, so `check-config` can print one line and
//! exit 64.
//!
//! `config` imports nothing of credgate's (see `src/lib.rs`): it is
//! validated data, and everything else may read it.

pub mod acl;
mod audit;
mod auth;
mod authzen;
mod cache;
mod cluster;
mod common;
mod cors;
pub mod duration;
mod limits;
mod mcp;
mod net;
mod paragon;
mod peek;
mod policy;
mod products;
pub mod raw;
pub mod rules;
mod server;
mod telemetry;

use std::path::Path;

// The public surface: what other modules name as `config::X` (the
// section modules are private).
pub use audit::AuditConfig;
pub use auth::{
    decoding_key_from_pem, AuthConfig, AuthMode, KeyMaterial, StaticKey, DEFAULT_ALGORITHMS,
    DEFAULT_IDENTITY_CLAIM, DEFAULT_JWKS_MIN_REFETCH, DEFAULT_JWKS_REFRESH, DEFAULT_JWKS_TIMEOUT,
    DEFAULT_LEEWAY, DEFAULT_TOKEN_CACHE_SIZE,
};
pub use authzen::{
    AuthzenConfig, AuthzenToken, DEFAULT_AUTHZEN_TOKEN_ENV, DEFAULT_PDP_CACHE_TTL,
    DEFAULT_PDP_TIMEOUT,
};
pub use cache::{
    CacheConfig, DEFAULT_CREDENTIALS_TTL, DEFAULT_MAX_CONCURRENT_LOADS, DEFAULT_MAX_USERS,
    DEFAULT_REFRESH_COOLDOWN, DEFAULT_STALE_IF_ERROR,
};
pub use cluster::{
    redact_url_password, ClusterConfig, DEFAULT_DEGRADED_TTL, DEFAULT_EVENT_RETENTION,
    DEFAULT_POLL_INTERVAL,
};
pub use common::{is_uuid, sha256_hex, ConfigError, Env, PemFile, ProcessEnv};
pub use cors::{CorsConfig, DEFAULT_CORS_MAX_AGE, MAX_CORS_MAX_AGE};
pub use limits::LimitsConfig;
pub use mcp::{
    McpConfig, DEFAULT_MCP_MAX_SESSIONS, DEFAULT_MCP_MAX_SESSIONS_PER_PRINCIPAL,
    DEFAULT_MCP_SESSION_IDLE,
};
pub use net::{Cidr, HostName, UpstreamBase};
pub use paragon::{
    ParagonConfig, DEFAULT_ACTIONKIT_URL, DEFAULT_AGENTOS_URL, DEFAULT_CONNECT_URL,
    DEFAULT_PROXY_URL, DEFAULT_SYNC_URL, DEFAULT_TOKEN_TTL, DEFAULT_WORKFLOWS_URL,
    MINT_REUSE_MARGIN, MIN_TOKEN_TTL,
};
pub use peek::{local_admin_addr, named_files};
pub use policy::{
    validate_owner_template, AdminDefault, Enforce, MemberMetadata, PolicyConfig,
    MANAGED_PARAGON_HEADERS, PRINCIPAL_PLACEHOLDER,
};
pub use products::{Product, Upstream};
pub use server::{
    Scheduler, ServerConfig, TlsFiles, DEFAULT_ADMIN_LISTEN, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_REQUESTS_PER_CONNECTION, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_UPSTREAM_CONNECT_TIMEOUT, DEFAULT_UPSTREAM_IDLE_TIMEOUT,
    DEFAULT_UPSTREAM_MAX_IDLE_PER_HOST, DEFAULT_UPSTREAM_TIMEOUT, DEFAULT_WORKER_THREADS,
};
pub use telemetry::{TelemetryConfig, DEFAULT_MAX_QUEUED_SPANS};

use audit::validate_audit;
use auth::{parse_auth_mode, validate_auth};
use authzen::validate_authzen;
use cache::validate_cache;
use cluster::validate_cluster;
use cors::validate_cors;
use limits::validate_limits;
use mcp::validate_mcp;
use paragon::validate_paragon;
use policy::validate_policy;
use raw::RawConfig;
use server::{admin_listen_warning, validate_server};
use telemetry::validate_telemetry;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub paragon: ParagonConfig,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    pub cache: CacheConfig,
    pub audit: AuditConfig,
    pub limits: LimitsConfig,
    pub telemetry: TelemetryConfig,
    pub mcp: McpConfig,
    /// `[cors]` (contract §13): browsers' origins; empty, off.
    pub cors: CorsConfig,
    /// `[authzen]` (contract §14): credgate as a decision point, and the
    /// decision point it asks.
    pub authzen: AuthzenConfig,
    pub cluster: Option<ClusterConfig>,
    /// Things that are legal but deserve a word (printed by `check-config`
    /// and logged at start).
    pub warnings: Vec<String>,
    /// SHA-256 of the config file's text (hex), to tell which config a
    /// replica runs (`credgate_config_info`).
    pub sha256: String,
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside it
    /// are resolved against the file's directory.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fmt::format(format_args!("{}", path.display()));
        let body = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("--config", format!("cannot read {text}: {e}")))?;
        // `--config credgate.toml` has the empty path as its parent: the
        // current directory, as the shell meant it.
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Self::from_toml(&body, &base, env)
    }

    /// Parses and validates TOML text; `base` resolves relative file paths.
    pub fn from_toml(text: &str, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        refuse_placeholders(text, raw.policy.acl_file.as_deref(), base)?;
        let mut config = validate(raw, base, env)?;
        config.sha256 = sha256_hex(text.as_bytes());
        Ok(config)
    }

    /// The effective configuration as TOML, every default filled in and
    /// secrets left out (HMAC secrets are named by their env var only, and a
    /// password in `cluster.postgres_url` is replaced by `***`).
    pub fn to_effective_toml(&self) -> String {
        let raw = effective::to_raw(self);
        toml::to_string_pretty(&raw).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Every `REPLACE-WITH-...` placeholder left in the config and in its ACL
/// file, reported at once: an operator filling in a shipped manifest fixes
/// them in one pass, not one `check-config` run each. One line, naming the
/// first one's key. (The sections check their own keys too; this runs
/// first, so they see none.)
fn refuse_placeholders(text: &str, acl_file: Option<&str>, base: &Path) -> Result<(), ConfigError> {
    let is_placeholder = |s: &str| s.to_ascii_uppercase().contains("REPLACE-WITH-");
    let mut found: Vec<(String, String)> = Vec::new();
    let mut scan = |text: &str, prefix: &str| {
        let Ok(doc) = text.parse::<toml::Table>().map(toml::Value::Table) else {
            return;
        };
        let mut all = Vec::new();
        peek::strings(&doc, "", &mut all);
        for (key, v) in all.into_iter().filter(|(_, v)| is_placeholder(v)) {
            found.push((format!("{prefix}{key}"), v.to_string()));
        }
    };
    scan(text, "");
    // The ACL file's own errors are `[policy]`'s to report.
    if let Some(acl) = acl_file.filter(|a| !a.is_empty()) {
        let path = common::resolve_path(base, acl);
        if let Ok(acl_text) = std::fs::read_to_string(path) {
            scan(&acl_text, "policy.acl_file: ");
        }
    }
    let Some((first_key, first_value)) = found.first() else {
        return Ok(());
    };
    // The key as the sections name it: `policy.acl_file` for the ACL's,
    // `auth.audience` for an item of that list.
    let key = first_key
        .split_once(": ")
        .map_or(first_key.as_str(), |(k, _)| k);
    let key = match key.strip_suffix(']').and_then(|k| k.rsplit_once('[')) {
        Some((k, _)) => k,
        None => key,
    };
    if found.len() == 1 {
        return Err(ConfigError::new(
            key,
            format!("`{first_value}` is a placeholder: replace it with your own value"),
        ));
    }
    let list: Vec<String> = found.iter().map(|(k, v)| format!("{k} (`{v}`)")).collect();
    Err(ConfigError::new(
        key,
        format!(
            "{} placeholders to replace with your own values: {}",
            found.len(),
            list.join(", ")
        ),
    ))
}

/// Warnings about listening and identity that involve several sections:
/// a traffic listener off loopback without TLS, and (mint mode) one claim
/// naming both the Connected User and the principal.
fn exposure_warnings(server: &ServerConfig, auth: &AuthConfig, warnings: &mut Vec<String>) {
    if server.tls.is_none() && !server.listen.ip().is_loopback() {
        warnings.push(format!(
            "server.listen = \"{}\" is not a loopback address and server.tls is not set: callers' bearer tokens cross the network in clear text unless a TLS-terminating proxy (an ingress, a load balancer, a mesh) is in front; set [server] tls or listen on loopback",
            server.listen
        ));
    }
    if auth.mode == AuthMode::Mint && auth.user_claim == auth.principal_claim {
        warnings.push(format!(
            "auth.user_claim and auth.principal_claim are both `{}`: every caller is the only member of its own Connected User, so per-member isolation has nothing to separate; if several people share a Connected User (an organisation's accounts), set user_claim to the claim naming it (e.g. \"org_id\")",
            auth.user_claim
        ));
    }
}

/// Turns a toml parse error into one line naming the key. toml's own
/// message is several lines with a source excerpt; we keep its first line
/// and name the table and key from the error's span.
fn toml_error(text: &str, err: &toml::de::Error) -> ConfigError {
    let message = err
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_string();
    let Some(span) = err.span() else {
        return ConfigError::new("(file)", message);
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key_text = text
        .get(span.clone())
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty() && s.len() < 64 && !s.contains('\n'));
    // A value error (wrong type) points at the value: the key is what
    // precedes `=` on that line (`max_users = "lots"`). Inline tables and
    // multi-line values fall back to the table.
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let value_key = before[line_start..]
        .trim_end()
        .strip_suffix('=')
        .map(|k| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.contains(['{', '[', ',', '=', ' ', '"']));
    // An unknown field's span is the key itself; other errors point at a value.
    let key = match (table, key_text, value_key) {
        (Some(t), Some(k), _) if message.contains("unknown field") => format!("{t}.{k}"),
        (None, Some(k), _) if message.contains("unknown field") => k,
        (Some(t), _, Some(v)) => format!("{t}.{v}"),
        (None, _, Some(v)) => v,
        (Some(t), _, None) => t,
        (None, _, None) => "(file)".to_string(),
    };
    ConfigError::new(key, format!("{message} (line {line_no})"))
}

/// The sections in the order they are checked (the first error is the one
/// reported, and warnings keep this order): `auth.mode` before `[paragon]`
/// and `[policy]`, which depend on it, and `[mcp]` after `[auth]` and
/// `[policy]`, which it reads. The one check here is the one that needs
/// two sections at once.
fn validate(raw: RawConfig, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let server = validate_server(raw.server, base)?;
    let Some(raw_paragon) = raw.paragon else {
        return Err(ConfigError::new(
            "paragon",
            "the [paragon] table is required",
        ));
    };
    let auth_mode = parse_auth_mode(raw.auth.mode.as_deref())?;
    let paragon = validate_paragon(raw_paragon, base, auth_mode)?;
    let auth = validate_auth(raw.auth, base, env, auth_mode, &mut warnings)?;
    let policy = validate_policy(raw.policy, base, auth_mode, &mut warnings)?;
    if auth_mode == AuthMode::Mint
        && policy.acl.unscoped > 0
        && auth.user_claim != auth.principal_claim
    {
        warnings.push(format!(
            "policy.acl_file: {} grant(s) name no `users`, so they apply in every Connected User; principals must then be unique across Connected Users (or add `users = [...]`)",
            policy.acl.unscoped
        ));
    }
    warnings.extend(admin_listen_warning(&server));
    exposure_warnings(&server, &auth, &mut warnings);
    let cache = validate_cache(raw.cache)?;
    let audit = validate_audit(raw.audit, base, &mut warnings)?;
    let telemetry = validate_telemetry(raw.telemetry)?;
    let mcp = validate_mcp(raw.mcp, &policy, &auth, &mut warnings)?;
    let limits = validate_limits(raw.limits)?;
    let cors = validate_cors(raw.cors, &mut warnings)?;
    let authzen = validate_authzen(raw.authzen, auth_mode, env, &mut warnings)?;
    if let Some(listen) = authzen.listen.filter(|a| a.port() != 0) {
        if listen == server.listen || listen == server.admin_listen {
            return Err(ConfigError::new(
                "authzen.listen",
                format!("{listen} is already server.listen or server.admin_listen: give the decision point an address of its own"),
            ));
        }
    }
    let cluster = raw
        .cluster
        .map(|c| validate_cluster(c, base, env))
        .transpose()?;
    Ok(Config {
        server,
        paragon,
        auth,
        policy,
        cache,
        audit,
        limits,
        telemetry,
        mcp,
        cors,
        authzen,
        cluster,
        warnings,
        sha256: String::new(),
    })
}

mod effective;

#[cfg(test)]
mod tests;
