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
//! (`server.max_connections`) plus the idle pool.
//!
//! No request is lost to Paragon closing an idle kept-alive connection
//! (contract §1 step 7). A connection idle for `server.upstream_idle_timeout`
//! is dropped before use, in the client connection's slot as in the idle
//! pool, so that credgate, not Paragon, ends it. A connection Paragon closed
//! is noticed before use (`is_closed`, `ready`). In the race where Paragon
//! closes it just as a request goes out, the request is sent once more on a
//! new connection when hyper hands it back unwritten, or when it was written
//! but is idempotent and bodiless, so that credgate can rebuild it
//! ([`Replay`]). POST, PATCH and requests with a body, which may have reached
//! Paragon, are never sent twice. A request is retried at most once.
//!
//! HTTP/2 clients multiplex many requests on one connection; they use the
//! shared client in `upstream.rs`, which negotiates HTTP/2 with Paragon when
//! Paragon offers it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::{PathAndQuery, Uri};
use http::{Extensions, HeaderMap, Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::UpstreamBase;
use crate::net::body::Body;
use crate::net::deadline::{SharedTimer, Until};

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
    /// When it was opened or last got an answer's head. The answer's body
    /// may stream on after that, so this overstates how long the connection
    /// has been idle: it is dropped early rather than late.
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
    /// The connection's one timer for `server.upstream_timeout`
    /// ([`Affinity::answer_due`]).
    timer: SharedTimer,
}

impl Affinity {
    /// For a client connection accepted by `worker` (server::serve).
    pub fn new(worker: usize) -> Self {
        Affinity {
            worker,
            held: Mutex::new(None),
            timer: SharedTimer::new(),
        }
    }

    /// Resolves at `due`, the moment the answer the connection waits for
    /// is late: on the connection's one timer (`net::deadline`), not on one
    /// registered and cancelled per request. Polled only from the client
    /// connection's task: its requests, one at a time, and their delegated
    /// calls, run inline.
    pub fn answer_due(&self, due: tokio::time::Instant) -> Until<'_> {
        self.timer.until(due)
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

    /// Whether `h` may carry another request: open, and idle for less than
    /// `server.upstream_idle_timeout`, so that Paragon (whose own idle
    /// timeout should be longer) is not about to close it.
    fn usable(&self, h: &Held) -> bool {
        !h.sender.is_closed() && h.idle_since.elapsed() < self.idle_timeout
    }

    /// Puts `h` in the idle pool. Its idle time runs on from when it was
    /// last used, not from now: the time it spent in a client connection's
    /// slot counts too.
    fn checkin(&self, h: Held) {
        if self.max_idle == 0 || !self.usable(&h) {
            return;
        }
        let mut idle = self.idle[h.upstream]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        idle.retain(|x| self.usable(x));
        if idle.len() < self.max_idle {
            idle.push(h);
        }
    }

    fn checkout_idle(&self, upstream: usize, worker: usize) -> Option<Held> {
        let mut idle = self.idle[upstream]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        idle.retain(|h| self.usable(h));
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
    /// request of the same client connection. A request sent a second time
    /// (see the module doc) counts in `retries`.
    pub async fn send(
        self: &Arc<Self>,
        affinity: &Affinity,
        upstream: usize,
        mut req: Request<Body>,
        retries: &Counter,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mine = {
            let mut slot = affinity.held.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                // Closed, or idle so long that Paragon may close it under
                // the request: dropped, which closes it.
                Some((pool, h)) if Arc::ptr_eq(&pool, self) && h.upstream == upstream => {
                    self.usable(&h).then_some(h)
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
        let (mut held, mut reused) = match mine.or_else(|| self.checkout_idle(upstream, worker)) {
            Some(h) => (h, true),
            None => (Box::pin(self.connect(upstream, worker)).await?, false),
        };
        let mut retried = false;
        loop {
            if held.sender.ready().await.is_err() {
                // Closed since it was last used: nothing was sent on it.
                held = Box::pin(self.connect(upstream, worker)).await?;
                reused = false;
            }
            // Only a reused connection can have been closed by Paragon as
            // idle; a new one failing is an answer in itself.
            let replay = if reused && !retried {
                Replay::of(&req)
            } else {
                None
            };
            match held.sender.try_send_request(req).await {
                Ok(resp) => {
                    held.idle_since = Instant::now();
                    *affinity.held.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((self.clone(), held));
                    return Ok(resp);
                }
                Err(mut e) => {
                    let unsent = e.take_message();
                    let error = e.into_error();
                    req = match (unsent, replay) {
                        _ if retried => return Err(ForwardError::Request(error)),
                        // Not written: safe to send again.
                        (Some(back), _) => back,
                        // Written, idempotent and bodiless, and the
                        // connection closed before an answer.
                        (None, Some(replay)) if closed_before_answer(&error) => replay.rebuild(),
                        _ => return Err(ForwardError::Request(error)),
                    };
                    retried = true;
                    retries.inc();
                    tracing::debug!(error = %error, "upstream connection closed under the request; sending it again on a new one");
                    held = Box::pin(self.connect(upstream, worker)).await?;
                    reused = false;
                }
            }
        }
    }
}

/// What credgate needs to send a written request again: its head. Kept
/// only for the requests that may be sent twice (contract §1 step 7):
/// idempotent methods (RFC 9110 §9.2.2) without a body, so there is no
/// body that was streamed away and no copy of one. GET and HEAD are also
/// safe; PUT, DELETE and OPTIONS have the same effect however often they
/// arrive. POST and PATCH are neither, and are never kept.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
}

impl Replay {
    fn of(req: &Request<Body>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        if !idempotent || !http_body::Body::is_end_stream(req.body()) {
            return None;
        }
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
        })
    }

    fn rebuild(self) -> Request<Body> {
        let mut req = Request::new(crate::net::body::empty());
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        req
    }
}

/// Whether a written request's exchange failed because the connection
/// closed before the answer's head was complete, which is what Paragon
/// closing an idle kept-alive connection looks like from here:
///
/// - `is_incomplete_message`: end of stream before a whole response head
///   (a TCP FIN, or a TLS `close_notify`). hyper does not say whether part
///   of a head had arrived; either way the caller got no answer, and the
///   requests replayed are idempotent.
/// - `is_canceled`: hyper gave the request up because the connection went
///   away (it usually hands such requests back unwritten, above).
/// - An I/O error in the source chain of kind `ConnectionReset` (RST, e.g.
///   the request arrived after Paragon closed), `ConnectionAborted`,
///   `BrokenPipe` (writing to a closed socket) or `UnexpectedEof` (rustls:
///   TCP closed without `close_notify`).
///
/// Anything else (a malformed answer, a TLS alert, a refused or timed-out
/// connect, the connection task dropped at shutdown) is not retried.
fn closed_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = s.source();
    }
    false
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
