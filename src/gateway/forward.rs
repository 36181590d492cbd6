//! Connection-affine forwarding for HTTP/1.1 clients.
//!
//! An HTTP/1.1 client connection sends its requests one after another, so
//! it can own one upstream connection per Paragon host and reuse it for
//! every request, with no shared pool to lock, no pool key to hash, and no
//! per-request checkout. The upstream connection is hyper's connection-level
//! HTTP/1.1 client (`hyper::client::conn::http1`). When the client
//! connection ends, its upstream connections go back to a small shared idle
//! pool (bounded by `server.upstream_max_idle_per_host`, aged out after
//! `server.upstream_idle_timeout`) so the next client connection skips the
//! TCP and TLS handshakes.
//!
//! Upstream connections per host are thus bounded by the client connections
//! (`server.max_connections`) plus the idle pool. A connection Paragon
//! closed is noticed before use (`is_closed`), or, in the race where it
//! closes while a request is queued, hyper hands the unsent request back
//! and it is retried once on a new connection; a request that may have
//! reached Paragon is never retried.
//!
//! HTTP/2 clients multiplex many requests on one connection; they use the
//! shared client in `upstream.rs`, which negotiates HTTP/2 with Paragon when
//! Paragon offers it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::UpstreamBase;
use crate::net::body::Body;

/// Paragon's hosts (`config::Upstream::ALL`).
const UPSTREAMS: usize = crate::config::Upstream::ALL.len();

type Sender = SendRequest<Body>;

/// An upstream connection and where it goes.
struct Held {
    upstream: usize,
    /// The worker whose runtime drives the connection's task: only a
    /// client connection of that worker takes it from the idle pool, so a
    /// request never wakes another worker's thread.
    worker: usize,
    sender: Sender,
    idle_since: Instant,
}

/// Why forwarding failed before a response (the caller maps it to 502).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("connecting to Paragon failed: {0}")]
    Connect(String),
    #[error("the request to Paragon failed: {0}")]
    Request(#[source] hyper::Error),
}

impl ForwardError {
    pub fn is_connect(&self) -> bool {
        matches!(self, ForwardError::Connect(_))
    }
}

/// The upstream connections of one client connection.
pub struct Affinity {
    worker: usize,
    held: Mutex<Option<(Arc<ConnPool>, Held)>>,
}

impl Affinity {
    /// For a client connection accepted by `worker` (server::serve).
    pub fn new(worker: usize) -> Self {
        Affinity {
            worker,
            held: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Affinity")
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let held = self
            .held
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some((pool, h)) = held {
            pool.checkin(h);
        }
    }
}

/// Shared state: where each upstream is, how to reach it, and idle
/// connections waiting for a new client connection.
pub struct ConnPool {
    targets: [UpstreamBase; UPSTREAMS],
    tls: TlsConnector,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: [Mutex<Vec<Held>>; UPSTREAMS],
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool").finish_non_exhaustive()
    }
}

impl ConnPool {
    /// `tls` must offer ALPN `http/1.1` only: these connections speak HTTP/1.1.
    pub fn new(
        targets: [UpstreamBase; UPSTREAMS],
        mut tls: rustls::ClientConfig,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Arc<ConnPool> {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(ConnPool {
            targets,
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Default::default(),
        })
    }

    fn checkin(&self, mut h: Held) {
        if h.sender.is_closed() || self.max_idle == 0 {
            return;
        }
        h.idle_since = Instant::now();
        let mut idle = self.idle[h.upstream]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        idle.retain(|x| !x.sender.is_closed() && x.idle_since.elapsed() < self.idle_timeout);
        if idle.len() < self.max_idle {
            idle.push(h);
        }
    }

    fn checkout_idle(&self, upstream: usize, worker: usize) -> Option<Held> {
        let mut idle = self.idle[upstream]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        idle.retain(|h| !h.sender.is_closed() && h.idle_since.elapsed() < self.idle_timeout);
        let mine = idle.iter().rposition(|h| h.worker == worker)?;
        Some(idle.swap_remove(mine))
    }

    async fn connect(&self, upstream: usize, worker: usize) -> Result<Held, ForwardError> {
        let target = &self.targets[upstream];
        let host = target.authority.host();
        let port = target
            .authority
            .port_u16()
            .unwrap_or(if target.is_https() { 443 } else { 80 });
        let work = async {
            // An IPv6 literal keeps its brackets in the authority.
            let host_for_dns = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((host_for_dns, port))
                .await
                .map_err(|e| ForwardError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let sender = if target.is_https() {
                let name = ServerName::try_from(host_for_dns.to_string())
                    .map_err(|e| ForwardError::Connect(e.to_string()))?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ForwardError::Connect(format!("TLS: {e}")))?;
                handshake(TokioIo::new(tls)).await?
            } else {
                handshake(TokioIo::new(tcp)).await?
            };
            Ok(Held {
                upstream,
                worker,
                sender,
                idle_since: Instant::now(),
            })
        };
        tokio::time::timeout(self.connect_timeout, work)
            .await
            .map_err(|_| ForwardError::Connect("timed out".into()))?
    }

    /// Sends `req` over `affinity`'s connection to `upstream` (opening or
    /// borrowing one as needed) and keeps the connection for the next
    /// request of the same client connection.
    pub async fn send(
        self: &Arc<Self>,
        affinity: &Affinity,
        upstream: usize,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mine = {
            let mut slot = affinity.held.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some((pool, h))
                    if Arc::ptr_eq(&pool, self)
                        && h.upstream == upstream
                        && !h.sender.is_closed() =>
                {
                    Some(h)
                }
                Some((pool, h)) => {
                    pool.checkin(h);
                    None
                }
                None => None,
            }
        };
        // hyper's connection-level client writes the target as given, and
        // Paragon is the origin server: it gets the origin form (RFC 9112
        // §3.2.1); `Host` carries the authority.
        if req.uri().scheme().is_some() {
            let origin = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(origin);
        }
        let worker = affinity.worker;
        let mut held = match mine.or_else(|| self.checkout_idle(upstream, worker)) {
            Some(h) => h,
            None => Box::pin(self.connect(upstream, worker)).await?,
        };
        let mut retried = false;
        loop {
            if held.sender.ready().await.is_err() {
                // Closed since it was last used: nothing was sent on it.
                held = Box::pin(self.connect(upstream, worker)).await?;
            }
            match held.sender.try_send_request(req).await {
                Ok(resp) => {
                    *affinity.held.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((self.clone(), held));
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Not written: safe to send again, once, on a new connection.
                    Some(back) if !retried => {
                        retried = true;
                        req = back;
                        held = Box::pin(self.connect(upstream, worker)).await?;
                    }
                    _ => return Err(ForwardError::Request(e.into_error())),
                },
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<Sender, ForwardError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake::<_, Body>(io)
        .await
        .map_err(|e| ForwardError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
