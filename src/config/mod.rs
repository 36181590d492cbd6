//! Configuration: the TOML file (`raw`) validated into a typed [`Config`].
//!
//! Everything is checked here, before any port is bound: durations parse,
//! URLs parse, files exist and hold the keys they should, and cross-field
//! rules hold (mint mode needs a signing key, passthrough a public key).
//! Every error names the key it is about, so `check-config` can print one
//! line and exit 64. Every default is a named constant below.

pub mod acl;
pub mod duration;
mod net;
mod products;
pub mod raw;
pub mod rules;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use acl::Acl;
pub use net::{Cidr, HostName, UpstreamBase};
pub use products::{Product, Upstream};
use raw::{OneOrMany, RawConfig};

/// `server.listen` [default: 127.0.0.1:8080].
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// `server.admin_listen` [default: 127.0.0.1:9901], loopback so metrics and
/// cache invalidation are not exposed by accident.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// `server.max_body_bytes`: bodies credgate must read (sync, ActionKit
/// action names) are capped at this many bytes [default: 1 MiB].
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// `server.upstream_timeout`: time to Paragon's response headers [default: 30s].
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// `server.upstream_connect_timeout`: TCP connect to Paragon [default: 5s].
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `server.upstream_idle_timeout`: pooled idle upstream connections are
/// closed after this long [default: 90s].
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// `server.upstream_max_idle_per_host` [default: 256].
pub const DEFAULT_UPSTREAM_MAX_IDLE_PER_HOST: usize = 256;
/// `server.shutdown_grace` [default: 20s].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// `server.worker_threads`: 0 means one per core [default: 0].
pub const DEFAULT_WORKER_THREADS: usize = 0;

/// `server.scheduler`: how the workers share the traffic [default: `workers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// One current-thread runtime per worker, each accepting on its own
    /// `SO_REUSEPORT` listener and holding its own upstream connections,
    /// sharing caches and state (nginx's worker model): a request never
    /// crosses a thread.
    Workers,
    /// One work-stealing runtime with `worker_threads` threads: an idle
    /// thread takes over another's tasks, which evens out a few very busy
    /// connections (an HTTP/2 client multiplexing everything on one
    /// connection) at the price of cross-thread wake-ups on every request.
    WorkStealing,
}

impl Scheduler {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Workers => "workers",
            Scheduler::WorkStealing => "work_stealing",
        }
    }
}
/// `server.max_connections`: concurrent client connections; more are
/// accepted and closed at once [default: 10000].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// `server.max_header_bytes`: request line plus headers [default: 64 KiB].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// `server.max_headers`: header fields per request [default: 100].
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// `server.max_requests_per_connection`: 0 means unlimited [default: 0].
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: u64 = 0;
/// `server.max_concurrent_streams`: HTTP/2 streams per connection [default: 256].
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// `server.header_read_timeout`: a client must send a whole request head
/// within this time, also between keep-alive requests [default: 10s].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.tls_handshake_timeout` [default: 10s].
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Paragon's cloud hosts (contract §10; `paragon-api.md` §0).
pub const DEFAULT_CONNECT_URL: &str = "https://zeus.useparagon.com";
pub const DEFAULT_WORKFLOWS_URL: &str = "https://hermes.useparagon.com";
pub const DEFAULT_PROXY_URL: &str = "https://proxy.useparagon.com";
pub const DEFAULT_ACTIONKIT_URL: &str = "https://actionkit.useparagon.com";
pub const DEFAULT_SYNC_URL: &str = "https://sync.useparagon.com";
pub const DEFAULT_AGENTOS_URL: &str = "https://agentos.useparagon.com";
/// `X-Paragon-*` request headers credgate reads and sets itself (contract §7):
/// `policy.member_paragon_headers` may not name them, because letting one
/// "through" would bypass its check.
pub const MANAGED_PARAGON_HEADERS: &[&str] = &[
    "x-paragon-credential",
    "x-paragon-configuration-id",
    "x-paragon-proxy-url",
    "x-paragon-user-metadata",
];
/// `paragon.token_ttl`: lifetime of minted upstream tokens [default: 5m].
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Minted tokens are reused until this long before they expire (contract §7).
pub const MINT_REUSE_MARGIN: Duration = Duration::from_secs(30);
/// The shortest `paragon.token_ttl` accepted: the reuse margin plus a minute.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(90);

/// `auth.algorithms` [default: ["RS256"]].
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256];
/// `auth.jwks_refresh` [default: 5m].
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// `auth.jwks_min_refetch` [default: 30s].
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// `auth.jwks_timeout`: one JWKS fetch, connect to last byte [default: 10s].
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// `auth.leeway` [default: 60s].
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// `auth.user_claim` and `auth.principal_claim` [default: "sub"].
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";
/// `auth.token_cache_size`: verified caller tokens kept [default: 100000].
pub const DEFAULT_TOKEN_CACHE_SIZE: u64 = 100_000;

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

/// `cluster.poll_interval` [default: 1s].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// `cluster.event_retention` [default: 1h].
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(3600);
/// `cluster.degraded_ttl` [default: 10s].
pub const DEFAULT_DEGRADED_TTL: Duration = Duration::from_secs(10);

/// A config problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

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
    pub cluster: Option<ClusterConfig>,
    /// Things that are legal but deserve a word (printed by `check-config`
    /// and logged at start).
    pub warnings: Vec<String>,
    /// SHA-256 of the config file's text (hex), to tell which config a
    /// replica runs (`credgate_config_info`).
    pub sha256: String,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Names (or addresses) besides loopback and its own address by which
    /// the admin listener may be addressed in `Host` and `Origin`
    /// (contract §9).
    pub admin_hosts: Vec<HostName>,
    pub max_body_bytes: u64,
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_max_idle_per_host: usize,
    pub shutdown_grace: Duration,
    pub worker_threads: usize,
    pub scheduler: Scheduler,
    pub trusted_proxies: Vec<Cidr>,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_requests_per_connection: u64,
    pub max_concurrent_streams: u32,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    /// The worker count `worker_threads` asks for: 0 is one per core (as
    /// many as this process may run on), never fewer than one.
    pub fn workers(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// PEM text read from a file, kept with its path. `Debug` never prints the
/// bytes: they may be a private key.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub pem: Arc<[u8]>,
}

impl std::fmt::Debug for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemFile({})", self.path.display())
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Mint,
    Passthrough,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Mint => "mint",
            AuthMode::Passthrough => "passthrough",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub algorithms: Vec<Algorithm>,
    pub jwks_url: Option<url::Url>,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    pub jwks_timeout: Duration,
    pub leeway: Duration,
    pub user_claim: String,
    pub principal_claim: String,
    pub admin_claim: Option<String>,
    pub admin_values: Vec<String>,
    pub token_cache_size: u64,
    pub keys: Vec<StaticKey>,
}

#[derive(Clone)]
pub enum KeyMaterial {
    /// An HMAC secret read from the named environment variable.
    Secret { env: String, secret: Arc<[u8]> },
    /// A public key (or certificate-less PEM) for RS/PS/ES/EdDSA.
    Pem(PemFile),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Secret { env, .. } => write!(f, "Secret(env {env})"),
            KeyMaterial::Pem(p) => p.fmt(f),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StaticKey {
    pub algorithm: Algorithm,
    pub material: KeyMaterial,
    pub kid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDefault {
    /// Admins naming no credential are forwarded without one; Paragon picks.
    Passthrough,
    /// Admins get the same default rules as members, over every credential.
    Resolve,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub owner_external_id: Option<String>,
    pub credentials_claim: Option<String>,
    pub acl_file: Option<PathBuf>,
    pub acl: Arc<Acl>,
    /// `policy.rules_file` and its compiled rules (contract §5b).
    pub rules_file: Option<PathBuf>,
    pub rules: Arc<rules::Rules>,
    pub admin_default: AdminDefault,
    pub member_products: BTreeSet<Product>,
    pub allow_account_auth: bool,
    /// Lowercased `host` or `host:port` entries.
    pub proxy_url_hosts: Vec<String>,
    /// Hosts a member's trigger-subscription `webhookOverride.url` may
    /// name (contract §3): lowercased `host` or `host:port` entries.
    pub webhook_hosts: Vec<String>,
    /// Extra `X-Paragon-*` request headers members may send (lowercase).
    pub member_paragon_headers: Vec<String>,
    /// `policy.enforce`.
    pub enforce: Enforce,
    /// The products whose authorization refusals are recorded, not answered
    /// (contract §5a): every product with `enforce = "shadow"`, else
    /// `policy.shadow_products`.
    pub shadow: BTreeSet<Product>,
}

/// `policy.enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforce {
    Enforce,
    Shadow,
}

impl PolicyConfig {
    /// Whether refusals by policy on `product` are shadowed (recorded and
    /// forwarded) rather than answered.
    pub fn shadows(&self, product: Product) -> bool {
        !self.shadow.is_empty() && self.shadow.contains(&product)
    }
}

/// `[limits]` (contract §5c): token buckets per principal and per
/// Connected User; unset, no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimitsConfig {
    pub principal: Option<rules::Rate>,
    pub user: Option<rules::Rate>,
}

/// `[audit]`: where the audit trail goes. It is its own sink, not a log
/// target, so no `RUST_LOG` filter can switch it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Off only when `[audit] enabled = false` is written.
    pub enabled: bool,
    /// Appended to (created if missing); `None`: standard output.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub credentials_ttl: Duration,
    pub max_users: u64,
    pub refresh_cooldown: Duration,
    pub stale_if_error: Duration,
    pub max_concurrent_loads: usize,
}

#[derive(Clone)]
pub struct ClusterConfig {
    pub postgres_url: String,
    pub postgres_url_env: Option<String>,
    pub poll_interval: Duration,
    pub event_retention: Duration,
    pub degraded_ttl: Duration,
    pub strict: bool,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("postgres_url", &redact_url_password(&self.postgres_url))
            .field("poll_interval", &self.poll_interval)
            .field("event_retention", &self.event_retention)
            .field("degraded_ttl", &self.degraded_ttl)
            .field("strict", &self.strict)
            .finish()
    }
}

/// Where a config gets environment variables from. The process uses the
/// real environment; tests pass a map (tests never mutate the process env).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside it
    /// are resolved against the file's directory.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fmt::format(format_args!("{}", path.display()));
        let body = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("--config", format!("cannot read {text}: {e}")))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&body, &base, env)
    }

    /// Parses and validates TOML text; `base` resolves relative file paths.
    pub fn from_toml(text: &str, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
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

fn dur(key: &str, value: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => duration::parse(v).map_err(|m| ConfigError::new(key, m)),
    }
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Reads a PEM file named by `key`, checking that it exists and is PEM.
fn read_pem(key: &str, base: &Path, p: &str) -> Result<PemFile, ConfigError> {
    let path = resolve_path(base, p);
    let bytes = std::fs::read(&path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::new(
            key,
            format!("{} is not a PEM file", path.display()),
        ));
    }
    Ok(PemFile {
        path,
        pem: bytes.into(),
    })
}

fn existing_file(key: &str, base: &Path, p: &str) -> Result<PathBuf, ConfigError> {
    let path = resolve_path(base, p);
    if !path.is_file() {
        return Err(ConfigError::new(
            key,
            format!("{} does not exist or is not a file", path.display()),
        ));
    }
    Ok(path)
}

fn parse_algorithm(key: &str, text: &str) -> Result<Algorithm, ConfigError> {
    // jsonwebtoken's parser is exact-case and knows no `none`; we still say
    // so explicitly, because "none" here is an attack, not a typo.
    if text.eq_ignore_ascii_case("none") {
        return Err(ConfigError::new(
            key,
            "the `none` algorithm is never accepted",
        ));
    }
    text.parse::<Algorithm>().map_err(|_| {
        ConfigError::new(
            key,
            format!(
                "unknown algorithm `{text}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
            ),
        )
    })
}

fn validate(raw: RawConfig, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();
    let server = validate_server(raw.server, base)?;
    let Some(raw_paragon) = raw.paragon else {
        return Err(ConfigError::new(
            "paragon",
            "the [paragon] table is required",
        ));
    };
    let auth_mode = match raw.auth.mode.as_deref() {
        None | Some("mint") => AuthMode::Mint,
        Some("passthrough") => AuthMode::Passthrough,
        Some(other) => {
            return Err(ConfigError::new(
                "auth.mode",
                format!("`{other}` is not \"mint\" or \"passthrough\""),
            ))
        }
    };
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
    if !server.admin_listen.ip().is_loopback() {
        warnings.push(format!(
            "server.admin_listen {} is not a loopback address: metrics and cache invalidation are reachable from the network; keep it behind a network policy",
            server.admin_listen
        ));
    }
    let cache = validate_cache(raw.cache)?;
    let audit = validate_audit(raw.audit, base, &mut warnings)?;
    let telemetry = validate_telemetry(raw.telemetry)?;
    let mcp = validate_mcp(raw.mcp, &policy, &auth, &mut warnings)?;
    let limits = LimitsConfig {
        principal: rate(
            "limits.principal",
            raw.limits.principal_rps,
            raw.limits.principal_burst,
        )?,
        user: rate("limits.user", raw.limits.user_rps, raw.limits.user_burst)?,
    };
    let cluster = raw.cluster.map(|c| validate_cluster(c, env)).transpose()?;
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
        cluster,
        warnings,
        sha256: String::new(),
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

fn validate_mcp(
    raw: raw::RawMcp,
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

/// `[telemetry]`: OpenTelemetry traces (contract §9).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans go (OTLP over HTTP, protobuf), `…/v1/traces`; `None`:
    /// tracing off.
    pub otlp_endpoint: Option<url::Url>,
    pub service_name: String,
    /// Of the requests that start a trace here, the share sampled; a
    /// trusted incoming `traceparent`'s sampled flag decides for its own.
    pub sample_ratio: f64,
    /// Keep a caller's `traceparent` from anyone, not only trusted proxies.
    pub trust_incoming_trace: bool,
    /// Finished spans waiting for export; more are dropped and counted.
    pub max_queued_spans: usize,
}

/// `telemetry.max_queued_spans` [default: 2048].
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;

fn validate_telemetry(raw: raw::RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match raw.otlp_endpoint.as_deref() {
        None => None,
        Some(text) => {
            let mut url = url::Url::parse(text).map_err(|e| {
                ConfigError::new(
                    "telemetry.otlp_endpoint",
                    format!("`{text}` is not a URL: {e}"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL of an OTLP/HTTP collector (port 4318)",
                ));
            }
            // The collector's base URL gets OTLP/HTTP's traces path; a URL
            // with a path of its own is used as given.
            if url.path() == "/" {
                url.set_path("/v1/traces");
            }
            Some(url)
        }
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(ConfigError::new(
            "telemetry.sample_ratio",
            "must be between 0.0 and 1.0",
        ));
    }
    let service_name = raw.service_name.unwrap_or_else(|| "credgate".into());
    if service_name.is_empty() {
        return Err(ConfigError::new(
            "telemetry.service_name",
            "must not be empty",
        ));
    }
    let max_queued_spans = raw.max_queued_spans.unwrap_or(DEFAULT_MAX_QUEUED_SPANS);
    if max_queued_spans == 0 {
        return Err(ConfigError::new(
            "telemetry.max_queued_spans",
            "must be at least 1",
        ));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name,
        sample_ratio,
        trust_incoming_trace: raw.trust_incoming_trace.unwrap_or(false),
        max_queued_spans,
    })
}

fn validate_audit(
    raw: raw::RawAudit,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<AuditConfig, ConfigError> {
    let enabled = raw.enabled.unwrap_or(true);
    let file = match raw.file.as_deref() {
        None => None,
        Some("") => return Err(ConfigError::new("audit.file", "must not be empty")),
        Some(p) => {
            let path = resolve_path(base, p);
            let dir = path.parent().unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(ConfigError::new(
                    "audit.file",
                    format!("the directory {} does not exist", dir.display()),
                ));
            }
            if path.is_dir() {
                return Err(ConfigError::new(
                    "audit.file",
                    format!("{} is a directory", path.display()),
                ));
            }
            Some(path)
        }
    };
    if !enabled {
        warnings.push("audit.enabled = false: no audit record is written for any request".into());
    }
    Ok(AuditConfig { enabled, file })
}

fn validate_server(raw: raw::RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    let addr = |key: &str, v: Option<&str>, default: &str| -> Result<SocketAddr, ConfigError> {
        let text = v.unwrap_or(default);
        text.parse().map_err(|_| {
            ConfigError::new(
                key,
                format!("`{text}` is not an address like 127.0.0.1:8080 or [::1]:8080"),
            )
        })
    };
    let listen = addr("server.listen", raw.listen.as_deref(), DEFAULT_LISTEN)?;
    let admin_listen = addr(
        "server.admin_listen",
        raw.admin_listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
    )?;
    if listen == admin_listen && listen.port() != 0 {
        return Err(ConfigError::new(
            "server.admin_listen",
            "must differ from server.listen: the admin listener is separate from traffic",
        ));
    }
    let admin_hosts = raw
        .admin_hosts
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse::<HostName>()
                .map_err(|m| ConfigError::new("server.admin_hosts", m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(
            "server.max_body_bytes",
            "must be at least 1",
        ));
    }
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            Err(ConfigError::new(key, "must be longer than 0s"))
        } else {
            Ok(d)
        }
    };
    let upstream_timeout = positive(
        "server.upstream_timeout",
        dur(
            "server.upstream_timeout",
            raw.upstream_timeout.as_deref(),
            DEFAULT_UPSTREAM_TIMEOUT,
        )?,
    )?;
    let upstream_connect_timeout = positive(
        "server.upstream_connect_timeout",
        dur(
            "server.upstream_connect_timeout",
            raw.upstream_connect_timeout.as_deref(),
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        )?,
    )?;
    let upstream_idle_timeout = positive(
        "server.upstream_idle_timeout",
        dur(
            "server.upstream_idle_timeout",
            raw.upstream_idle_timeout.as_deref(),
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
        )?,
    )?;
    let shutdown_grace = dur(
        "server.shutdown_grace",
        raw.shutdown_grace.as_deref(),
        DEFAULT_SHUTDOWN_GRACE,
    )?;
    let header_read_timeout = positive(
        "server.header_read_timeout",
        dur(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
    )?;
    let tls_handshake_timeout = positive(
        "server.tls_handshake_timeout",
        dur(
            "server.tls_handshake_timeout",
            raw.tls_handshake_timeout.as_deref(),
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        )?,
    )?;
    let trusted_proxies = raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse::<Cidr>()
                .map_err(|m| ConfigError::new("server.trusted_proxies", m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    let max_header_bytes = raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=16 * 1024 * 1024).contains(&max_header_bytes) {
        return Err(ConfigError::new(
            "server.max_header_bytes",
            "must be between 8192 and 16777216",
        ));
    }
    let max_headers = raw.max_headers.unwrap_or(DEFAULT_MAX_HEADERS);
    if !(8..=10_000).contains(&max_headers) {
        return Err(ConfigError::new(
            "server.max_headers",
            "must be between 8 and 10000",
        ));
    }
    let max_concurrent_streams = raw
        .max_concurrent_streams
        .unwrap_or(DEFAULT_MAX_CONCURRENT_STREAMS);
    if max_concurrent_streams == 0 {
        return Err(ConfigError::new(
            "server.max_concurrent_streams",
            "must be at least 1",
        ));
    }
    let scheduler = match raw.scheduler.as_deref() {
        None | Some("workers") => Scheduler::Workers,
        Some("work_stealing") => Scheduler::WorkStealing,
        Some(other) => {
            return Err(ConfigError::new(
                "server.scheduler",
                format!("`{other}` is not \"workers\" or \"work_stealing\""),
            ))
        }
    };
    let tls = match raw.tls {
        None => None,
        Some(t) => {
            let cert = t.cert_file.ok_or_else(|| {
                ConfigError::new("server.tls.cert_file", "is required with server.tls")
            })?;
            let key = t.key_file.ok_or_else(|| {
                ConfigError::new("server.tls.key_file", "is required with server.tls")
            })?;
            Some(TlsFiles {
                cert_file: existing_file("server.tls.cert_file", base, &cert)?,
                key_file: existing_file("server.tls.key_file", base, &key)?,
            })
        }
    };
    Ok(ServerConfig {
        listen,
        admin_listen,
        admin_hosts,
        max_body_bytes,
        upstream_timeout,
        upstream_connect_timeout,
        upstream_idle_timeout,
        upstream_max_idle_per_host: raw
            .upstream_max_idle_per_host
            .unwrap_or(DEFAULT_UPSTREAM_MAX_IDLE_PER_HOST),
        shutdown_grace,
        worker_threads: raw.worker_threads.unwrap_or(DEFAULT_WORKER_THREADS),
        scheduler,
        trusted_proxies,
        max_connections,
        max_header_bytes,
        max_headers,
        max_requests_per_connection: raw
            .max_requests_per_connection
            .unwrap_or(DEFAULT_MAX_REQUESTS_PER_CONNECTION),
        max_concurrent_streams,
        header_read_timeout,
        tls_handshake_timeout,
        tls,
    })
}

fn validate_paragon(
    raw: raw::RawParagon,
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

/// Parses a PEM public key for `algorithm`'s family (also what `auth`
/// builds its verification keys with, so a key that validates here is one
/// `auth` can use).
pub fn decoding_key_from_pem(
    algorithm: Algorithm,
    pem: &[u8],
) -> Result<jsonwebtoken::DecodingKey, String> {
    use jsonwebtoken::{AlgorithmFamily, DecodingKey};
    let key = match algorithm.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => {
            return Err("HMAC keys come from secret_env, not a PEM file".into())
        }
    };
    key.map_err(|e| format!("not a {algorithm:?} public key in PEM form: {e}"))
}

/// Values the shipped manifests leave for the operator to fill in.
const PLACEHOLDER_PREFIX: &str = "REPLACE-WITH-";

/// A value that still holds a `REPLACE-WITH-...` placeholder is an error.
fn refuse_placeholder(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.to_ascii_uppercase().contains(PLACEHOLDER_PREFIX) {
        return Err(ConfigError::new(
            key,
            format!("`{value}` is a placeholder: replace it with your own value"),
        ));
    }
    Ok(())
}

/// The placeholder of `policy.owner_external_id`.
pub const PRINCIPAL_PLACEHOLDER: &str = "{principal}";

/// `owner_external_id` must contain `{principal}` (else every member would
/// own the same label) and no other `{...}`.
pub fn validate_owner_template(t: &str) -> Result<(), String> {
    if !t.contains(PRINCIPAL_PLACEHOLDER) {
        return Err("must contain {principal}".into());
    }
    let rest = t.replace(PRINCIPAL_PLACEHOLDER, "");
    if rest.contains('{') || rest.contains('}') {
        return Err("only the {principal} placeholder is supported".into());
    }
    Ok(())
}

/// Whether `s` is a UUID in canonical form (8-4-4-4-12 hex digits, any
/// case): credential, configuration and integration ids.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
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

fn claim_name(key: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = v.unwrap_or_else(|| default.to_string());
    if name.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    Ok(name)
}

fn validate_auth(
    raw: raw::RawAuth,
    base: &Path,
    env: &dyn Env,
    mode: AuthMode,
    warnings: &mut Vec<String>,
) -> Result<AuthConfig, ConfigError> {
    let algorithms = match raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    "auth.algorithms",
                    "must list at least one algorithm",
                ));
            }
            let mut out = Vec::new();
            for a in &list {
                let alg = parse_algorithm("auth.algorithms", a)?;
                if !out.contains(&alg) {
                    out.push(alg);
                }
            }
            out
        }
    };
    let jwks_url = raw
        .jwks_url
        .as_deref()
        .map(|u| {
            let parsed = url::Url::parse(u)
                .map_err(|e| ConfigError::new("auth.jwks_url", format!("`{u}`: {e}")))?;
            match parsed.scheme() {
                "https" => Ok(parsed),
                // Plain HTTP only to loopback (tests, a local sidecar IdP):
                // a JWKS over the network without TLS is a key-injection hole.
                "http" if is_loopback_host(&parsed) => Ok(parsed),
                _ => Err(ConfigError::new(
                    "auth.jwks_url",
                    "must be https:// (http:// is allowed for loopback addresses only)",
                )),
            }
        })
        .transpose()?;
    let mut keys = Vec::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let key_name = |field: &str| format!("auth.keys[{i}].{field}");
        let alg_text = k
            .algorithm
            .ok_or_else(|| ConfigError::new(key_name("algorithm"), "is required"))?;
        let algorithm = parse_algorithm(&key_name("algorithm"), &alg_text)?;
        if !algorithms.contains(&algorithm) {
            return Err(ConfigError::new(
                key_name("algorithm"),
                format!("{alg_text} is not in auth.algorithms, so this key could never verify"),
            ));
        }
        let is_hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let material = match (is_hmac, k.secret_env, k.pem_file) {
            (true, Some(var), None) => {
                let secret = env.var(&var).ok_or_else(|| {
                    ConfigError::new(
                        key_name("secret_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                // RFC 7518 §3.2: the HMAC key must be at least as long as the hash.
                let min = match algorithm {
                    Algorithm::HS384 => 48,
                    Algorithm::HS512 => 64,
                    _ => 32,
                };
                if secret.len() < min {
                    return Err(ConfigError::new(
                        key_name("secret_env"),
                        format!("the secret in {var} is shorter than {min} bytes"),
                    ));
                }
                KeyMaterial::Secret {
                    env: var,
                    secret: secret.into_bytes().into(),
                }
            }
            (true, _, _) => {
                return Err(ConfigError::new(
                    key_name("secret_env"),
                    "HS* keys take `secret_env` (and no `pem_file`)",
                ))
            }
            (false, None, Some(p)) => {
                let pem = read_pem(&key_name("pem_file"), base, &p)?;
                decoding_key_from_pem(algorithm, &pem.pem)
                    .map_err(|m| ConfigError::new(key_name("pem_file"), m))?;
                KeyMaterial::Pem(pem)
            }
            (false, _, _) => {
                return Err(ConfigError::new(
                    key_name("pem_file"),
                    "RS/PS/ES/EdDSA keys take `pem_file` (and no `secret_env`)",
                ))
            }
        };
        keys.push(StaticKey {
            algorithm,
            material,
            kid: k.kid,
        });
    }
    if mode == AuthMode::Mint && keys.is_empty() && jwks_url.is_none() {
        return Err(ConfigError::new(
            "auth.keys",
            "mint mode needs caller keys: set auth.jwks_url or at least one [[auth.keys]]",
        ));
    }
    if mode == AuthMode::Passthrough {
        if raw.issuer.is_some() || raw.audience.is_some() {
            warnings.push(
                "auth.issuer and auth.audience do not apply in passthrough mode and are ignored"
                    .into(),
            );
        }
        if !keys.is_empty() || jwks_url.is_some() {
            warnings.push(
                "auth.keys and auth.jwks_url do not apply in passthrough mode (callers' tokens are verified with paragon.public_key_file)".into(),
            );
        }
    }
    let audience = raw.audience.map(OneOrMany::into_vec);
    for a in audience.iter().flatten() {
        refuse_placeholder("auth.audience", a)?;
    }
    if let Some(i) = &raw.issuer {
        refuse_placeholder("auth.issuer", i)?;
    }
    if let Some(u) = &raw.jwks_url {
        refuse_placeholder("auth.jwks_url", u)?;
    }
    if jwks_url.is_some() && mode == AuthMode::Mint && (audience.is_none() || raw.issuer.is_none())
    {
        warnings.push(
            "auth.jwks_url without auth.audience and auth.issuer: any token your identity provider signs, for any application, is accepted; set both".into(),
        );
    }
    if let Some(a) = &audience {
        if a.is_empty() || a.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "auth.audience",
                "must be a non-empty string or list of non-empty strings",
            ));
        }
    }
    if raw.issuer.as_deref() == Some("") {
        return Err(ConfigError::new("auth.issuer", "must not be empty"));
    }
    let admin_values = raw.admin_values.unwrap_or_default();
    if raw.admin_claim.is_some() && admin_values.is_empty() {
        return Err(ConfigError::new(
            "auth.admin_values",
            "is required with auth.admin_claim (which values make a caller an admin?)",
        ));
    }
    let token_cache_size = raw.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE);
    Ok(AuthConfig {
        mode,
        issuer: raw.issuer,
        audience,
        algorithms,
        jwks_url,
        jwks_refresh: dur(
            "auth.jwks_refresh",
            raw.jwks_refresh.as_deref(),
            DEFAULT_JWKS_REFRESH,
        )?,
        jwks_min_refetch: dur(
            "auth.jwks_min_refetch",
            raw.jwks_min_refetch.as_deref(),
            DEFAULT_JWKS_MIN_REFETCH,
        )?,
        jwks_timeout: dur(
            "auth.jwks_timeout",
            raw.jwks_timeout.as_deref(),
            DEFAULT_JWKS_TIMEOUT,
        )?,
        leeway: dur("auth.leeway", raw.leeway.as_deref(), DEFAULT_LEEWAY)?,
        user_claim: claim_name("auth.user_claim", raw.user_claim, DEFAULT_IDENTITY_CLAIM)?,
        principal_claim: claim_name(
            "auth.principal_claim",
            raw.principal_claim,
            DEFAULT_IDENTITY_CLAIM,
        )?,
        admin_claim: raw
            .admin_claim
            .map(|c| claim_name("auth.admin_claim", Some(c), ""))
            .transpose()?,
        admin_values,
        token_cache_size,
        keys,
    })
}

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn validate_policy(
    raw: raw::RawPolicy,
    base: &Path,
    mode: AuthMode,
    warnings: &mut Vec<String>,
) -> Result<PolicyConfig, ConfigError> {
    if let Some(t) = &raw.owner_external_id {
        validate_owner_template(t).map_err(|m| ConfigError::new("policy.owner_external_id", m))?;
        warnings.push(
            "policy.owner_external_id trusts the externalId label given when an account was connected: use it only if members cannot choose that label (your backend sets it)".into(),
        );
    }
    if raw.credentials_claim.as_deref() == Some("") {
        return Err(ConfigError::new(
            "policy.credentials_claim",
            "must not be empty",
        ));
    }
    let acl_file = raw
        .acl_file
        .as_deref()
        .map(|p| existing_file("policy.acl_file", base, p))
        .transpose()?;
    let acl = match &acl_file {
        Some(p) => Acl::load(p).map_err(|m| ConfigError::new("policy.acl_file", m))?,
        None => Acl::default(),
    };
    let rules_file = raw
        .rules_file
        .as_deref()
        .map(|p| existing_file("policy.rules_file", base, p))
        .transpose()?;
    let rules = match &rules_file {
        Some(p) => rules::Rules::load(p).map_err(|m| ConfigError::new("policy.rules_file", m))?,
        None => rules::Rules::default(),
    };
    let allow_rules = rules.rules.iter().any(|r| r.effect == rules::Effect::Allow);
    if mode == AuthMode::Passthrough && allow_rules {
        warnings.push(
            "policy.rules_file: allow rules do not apply in passthrough mode (the token's permissions claim is the policy); deny and limit rules do".into(),
        );
    }
    if let Some(r) = rules.rules.iter().find(|r| r.shadow) {
        warnings.push(format!(
            "policy.rules_file: rule `{}` is in shadow mode: what it would do is only recorded",
            r.name
        ));
    }
    if mode == AuthMode::Mint {
        if raw.owner_external_id.is_none()
            && raw.credentials_claim.is_none()
            && acl_file.is_none()
            && !allow_rules
        {
            warnings.push(
                "no member grant is set (policy.owner_external_id, credentials_claim or acl_file): every member is refused every credential; only admins can use credgate".into(),
            );
        } else if acl_file.is_some() && acl.is_empty() {
            warnings.push("policy.acl_file grants nothing (no [[grant]])".into());
        }
    }
    if mode == AuthMode::Passthrough
        && (raw.owner_external_id.is_some()
            || raw.credentials_claim.is_some()
            || acl_file.is_some())
    {
        warnings.push(
            "policy.owner_external_id, credentials_claim and acl_file do not apply in passthrough mode (the token's permissions claim is the policy)".into(),
        );
    }
    let admin_default = match raw.admin_default.as_deref() {
        None | Some("passthrough") => AdminDefault::Passthrough,
        Some("resolve") => AdminDefault::Resolve,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.admin_default",
                format!("`{other}` is not \"passthrough\" or \"resolve\""),
            ))
        }
    };
    let member_products = match raw.member_products {
        None => Product::ALL
            .iter()
            .copied()
            .filter(|p| p.member_default())
            .collect(),
        Some(list) => products("policy.member_products", &list)?,
    };
    let enforce = match raw.enforce.as_deref() {
        None | Some("enforce") => Enforce::Enforce,
        Some("shadow") => Enforce::Shadow,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.enforce",
                format!("`{other}` is not \"enforce\" or \"shadow\""),
            ))
        }
    };
    let shadow = match (enforce, raw.shadow_products) {
        (Enforce::Shadow, Some(_)) => {
            return Err(ConfigError::new(
                "policy.shadow_products",
                "names the products to shadow while the rest enforce; with enforce = \"shadow\" every product is shadowed already",
            ))
        }
        (Enforce::Shadow, None) => Product::ALL.iter().copied().collect(),
        (Enforce::Enforce, None) => BTreeSet::new(),
        (Enforce::Enforce, Some(list)) => products("policy.shadow_products", &list)?,
    };
    if !shadow.is_empty() {
        let which = match enforce {
            Enforce::Shadow => "every product".to_string(),
            Enforce::Enforce => shadow
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        warnings.push(format!(
            "shadow mode is on for {which}: refusals by policy are recorded (decision = \"shadow_refused\") and the request is forwarded anyway; members can use each other's accounts there until it enforces"
        ));
    }
    let proxy_url_hosts = host_list("policy.proxy_url_hosts", raw.proxy_url_hosts)?;
    let webhook_hosts = host_list("policy.webhook_hosts", raw.webhook_hosts)?;
    let member_paragon_headers = raw
        .member_paragon_headers
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let lower = h.trim().to_ascii_lowercase();
            let token = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if token && lower.starts_with("x-paragon-") {
                Ok(lower)
            } else {
                Err(ConfigError::new(
                    "policy.member_paragon_headers",
                    format!("`{h}` is not an X-Paragon-* header name (letters, digits and `-`)"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(h) = member_paragon_headers
        .iter()
        .find(|h| MANAGED_PARAGON_HEADERS.contains(&h.as_str()))
    {
        return Err(ConfigError::new(
            "policy.member_paragon_headers",
            format!("`{h}` is checked and set by credgate itself; it cannot be let through"),
        ));
    }
    Ok(PolicyConfig {
        owner_external_id: raw.owner_external_id,
        credentials_claim: raw.credentials_claim,
        acl_file,
        acl: Arc::new(acl),
        rules_file,
        rules: Arc::new(rules),
        admin_default,
        member_products,
        allow_account_auth: raw.allow_account_auth.unwrap_or(false),
        proxy_url_hosts,
        webhook_hosts,
        member_paragon_headers,
        enforce,
        shadow,
    })
}

/// A list of hosts a full URL may name (`policy.proxy_url_hosts`,
/// `policy.webhook_hosts`): `host` or `host:port`, lowercased; no scheme,
/// path, userinfo or wildcard.
fn host_list(key: &str, list: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    list.unwrap_or_default()
        .into_iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains('@') || h.contains('*') {
                Err(ConfigError::new(
                    key,
                    format!("`{h}` is not a host name (optionally with :port); wildcards are not supported"),
                ))
            } else {
                Ok(h)
            }
        })
        .collect()
}

/// A list of product names (`policy.member_products`, `shadow_products`).
fn products(key: &str, list: &[String]) -> Result<BTreeSet<Product>, ConfigError> {
    list.iter()
        .map(|p| {
            p.parse::<Product>().map_err(|_| {
                ConfigError::new(
                    key,
                    format!(
                        "unknown product `{p}` (one of: {})",
                        Product::ALL
                            .iter()
                            .map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn validate_cache(raw: raw::RawCache) -> Result<CacheConfig, ConfigError> {
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

fn validate_cluster(raw: raw::RawCluster, env: &dyn Env) -> Result<ClusterConfig, ConfigError> {
    let postgres_url = match (raw.postgres_url, &raw.postgres_url_env) {
        (Some(u), None) => u,
        (None, Some(var)) => env.var(var).ok_or_else(|| {
            ConfigError::new(
                "cluster.postgres_url_env",
                format!("environment variable {var} is not set"),
            )
        })?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "cluster.postgres_url",
                "set either postgres_url or postgres_url_env, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "cluster.postgres_url",
                "is required with [cluster] (or postgres_url_env)",
            ))
        }
    };
    if !(postgres_url.starts_with("postgres://") || postgres_url.starts_with("postgresql://")) {
        return Err(ConfigError::new(
            "cluster.postgres_url",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    let poll_interval = dur(
        "cluster.poll_interval",
        raw.poll_interval.as_deref(),
        DEFAULT_POLL_INTERVAL,
    )?;
    if poll_interval < Duration::from_millis(50) {
        return Err(ConfigError::new(
            "cluster.poll_interval",
            "must be at least 50ms",
        ));
    }
    Ok(ClusterConfig {
        postgres_url,
        postgres_url_env: raw.postgres_url_env,
        poll_interval,
        event_retention: dur(
            "cluster.event_retention",
            raw.event_retention.as_deref(),
            DEFAULT_EVENT_RETENTION,
        )?,
        degraded_ttl: dur(
            "cluster.degraded_ttl",
            raw.degraded_ttl.as_deref(),
            DEFAULT_DEGRADED_TTL,
        )?,
        strict: raw.strict.unwrap_or(false),
    })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, and
/// `?password=secret` (which tokio-postgres also reads) → `?password=***`.
pub fn redact_url_password(u: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(u) else {
        return "(unparseable URL)".to_string();
    };
    let mut redacted = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
        redacted = true;
    }
    let is_password = |k: &str| k.eq_ignore_ascii_case("password");
    if parsed.query_pairs().any(|(k, _)| is_password(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_password(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        redacted = true;
    }
    if redacted {
        parsed.to_string()
    } else {
        u.to_string()
    }
}

mod effective;

#[cfg(test)]
mod tests;
