//! `[server]`: the listeners (`listen`, `admin_listen`, `admin_hosts`,
//! `trusted_proxies`, `[server.tls]`), the limits and timeouts of client
//! connections (`max_connections`, `max_header_bytes`, `max_headers`,
//! `max_requests_per_connection`, `max_concurrent_streams`, `max_body_bytes`,
//! `header_read_timeout`, `tls_handshake_timeout`), those of upstream
//! connections (`upstream_*`) and the runtime (`worker_threads`, `scheduler`,
//! `shutdown_grace`). It owns the section's file form (`RawServer`,
//! `RawTls`), its defaults, the validated [`ServerConfig`] and its checks.
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`); the
//! `server` and `net` modules read `ServerConfig`, never the reverse.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{dur, existing_file, ConfigError};
use super::net::{Cidr, HostName};

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

/// A word when the admin listener is reachable from the network.
pub(super) fn admin_listen_warning(server: &ServerConfig) -> Option<String> {
    (!server.admin_listen.ip().is_loopback()).then(|| {
        format!(
            "server.admin_listen {} is not a loopback address: metrics and cache invalidation are reachable from the network; keep it behind a network policy",
            server.admin_listen
        )
    })
}

pub(super) fn validate_server(raw: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
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
