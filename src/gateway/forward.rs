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
//! One task per client connection: an upstream connection opened for a
//! client connection is driven by that connection's own task, not by a task
//! of its own. The request's future polls it while it waits for the
//! answer's head ([`ConnPool::send`]), and the client connection's future
//! polls it afterwards, while the answer's body streams and while it is
//! held between requests ([`Affinity::poll_connection`], called by
//! `server`), with the wake-ups between the two coalesced. A
//! request on a kept-alive pair thus wakes one task, not two, and no
//! hand-off between tasks sits on the path (`benches/load/ANALYSIS.md`).
//! A connection that goes to the idle pool gets a task of its own then,
//! since no client connection polls it there; one taken from the pool keeps
//! that task.
//!
//! HTTP/2 clients multiplex many requests on one connection; they use the
//! shared client in `upstream.rs`, which negotiates HTTP/2 with Paragon when
//! Paragon offers it.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
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

/// Paragon's hosts (`config::Upstream::ALL`).
const UPSTREAMS: usize = crate::config::Upstream::ALL.len();

type Sender = SendRequest<Body>;

/// hyper's connection future for one upstream connection: reads and writes
/// its socket. Boxed once per connection, so that one type covers plain and
/// TLS connections.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An upstream connection and where it goes.
struct Held {
    upstream: usize,
    /// The worker whose runtime drives the connection's task: only a
    /// client connection of that worker takes it from the idle pool, so a
    /// request never wakes another worker's thread.
    worker: usize,
    sender: Sender,
    /// The connection's future while the client connection that holds it
    /// polls it; `None` once a task of its own drives it (the idle pool),
    /// or once it has ended.
    driver: Option<Driver>,
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
    wakes: Arc<Wakes>,
    /// Handed to the upstream connection's future when this task polls it.
    driver_waker: Waker,
    /// Handed to the client connection's future (and so to the request's).
    task_waker: Waker,
}

/// Wake-ups of one client connection's task, coalesced. The task polls two
/// things: the client connection (hyper's server, and through it the
/// request's future) and the upstream connection it holds. Each wakes the
/// other while the task runs (a request handed to the upstream connection,
/// an answer's head or body chunk handed back), and a wake-up of a running
/// task makes the runtime poll the whole task once more afterwards, request
/// future included, for nothing. So while the task runs, a wake-up only
/// notes which side was woken, and [`Affinity::poll_connection`] polls that
/// side again before it returns; only a wake-up from elsewhere (a socket
/// ready, a timer) wakes the task.
struct Wakes {
    /// Set while [`Affinity::poll_connection`] runs.
    in_poll: AtomicBool,
    /// The upstream connection was woken since it was last polled.
    driver: AtomicBool,
    /// The client connection was woken since it was last polled.
    task: AtomicBool,
    /// The task's own waker, for wake-ups from elsewhere.
    outer: Mutex<Option<Waker>>,
}

impl Wakes {
    fn woken(&self, flag: &AtomicBool) {
        flag.store(true, Ordering::SeqCst);
        if !self.in_poll.load(Ordering::SeqCst) {
            let outer = self.outer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = outer.as_ref() {
                w.wake_by_ref();
            }
        }
    }

    /// Keeps `waker` as the task's own waker, unless it is one of ours
    /// (polled from inside [`Affinity::poll_connection`]).
    fn outer_is(&self, waker: &Waker) {
        if self.in_poll.load(Ordering::SeqCst) {
            return;
        }
        let mut outer = self.outer.lock().unwrap_or_else(|p| p.into_inner());
        if !outer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *outer = Some(waker.clone());
        }
    }
}

struct DriverWake(Arc<Wakes>);
struct TaskWake(Arc<Wakes>);

impl Wake for DriverWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.woken(&self.0.driver);
    }
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.woken(&self.0.task);
    }
}

/// How many times [`Affinity::poll_connection`] polls again for wake-ups
/// of its own before it yields to the task's other work (fairness).
const MAX_ROUNDS: usize = 16;

impl Affinity {
    /// For a client connection accepted by `worker` (server::serve).
    pub fn new(worker: usize) -> Self {
        let wakes = Arc::new(Wakes {
            in_poll: AtomicBool::new(false),
            driver: AtomicBool::new(false),
            task: AtomicBool::new(false),
            outer: Mutex::new(None),
        });
        Affinity {
            worker,
            held: Mutex::new(None),
            driver_waker: Waker::from(Arc::new(DriverWake(wakes.clone()))),
            task_waker: Waker::from(Arc::new(TaskWake(wakes.clone()))),
            wakes,
        }
    }

    /// Polls the client connection (`client`: hyper's server connection)
    /// and the upstream connection this client connection holds, in one
    /// task, with wake-ups between the two coalesced ([`Wakes`]). The
    /// upstream connection is polled first, so that what it read (an
    /// answer's body) is there for the client side. The client connection's
    /// future calls this each time its task wakes (server::run_http), so
    /// the upstream socket's readiness wakes that task and the answer's
    /// body, or Paragon closing the connection, is read there.
    pub fn poll_connection<T>(
        &self,
        cx: &mut Context<'_>,
        mut client: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let wakes = &*self.wakes;
        wakes.outer_is(cx.waker());
        wakes.in_poll.store(true, Ordering::SeqCst);
        let mut rounds = 0;
        let out = loop {
            wakes.driver.store(false, Ordering::SeqCst);
            self.drive();
            wakes.task.store(false, Ordering::SeqCst);
            if let Poll::Ready(out) = client(&mut Context::from_waker(&self.task_waker)) {
                break Poll::Ready(out);
            }
            let again = wakes.driver.load(Ordering::SeqCst) || wakes.task.load(Ordering::SeqCst);
            rounds += 1;
            if !again || rounds == MAX_ROUNDS {
                break Poll::Pending;
            }
        };
        wakes.in_poll.store(false, Ordering::SeqCst);
        // Woken in the last round, or from another thread after the last
        // look: poll again later.
        if out.is_pending()
            && (wakes.driver.load(Ordering::SeqCst) || wakes.task.load(Ordering::SeqCst))
        {
            cx.waker().wake_by_ref();
        }
        out
    }

    /// Polls the held upstream connection, when this client connection
    /// drives it.
    fn drive(&self) {
        let mut slot = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = slot.as_mut() {
            poll_driver(&mut h.driver, &self.driver_waker);
        }
    }

    /// Waits for `fut` (a request's exchange on `driver`'s connection) while
    /// polling the connection itself, in the caller's task. After the
    /// connection has made progress (written the request, read the answer's
    /// head) `fut` is polled again at once rather than on the next wake.
    async fn drive_until<F: Future>(&self, driver: &mut Option<Driver>, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if driver.is_none() {
                return Poll::Pending;
            }
            self.wakes.outer_is(cx.waker());
            self.wakes.driver.store(false, Ordering::SeqCst);
            poll_driver(driver, &self.driver_waker);
            fut.as_mut().poll(cx)
        })
        .await
    }
}

/// Polls a connection's future; forgets it once it has ended.
fn poll_driver(driver: &mut Option<Driver>, waker: &Waker) {
    if let Some(d) = driver {
        if d.as_mut().poll(&mut Context::from_waker(waker)).is_ready() {
            *driver = None;
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

    /// Whether `h` may carry another request: open, and idle for less than
    /// `server.upstream_idle_timeout`, so that Paragon (whose own idle
    /// timeout should be longer) is not about to close it.
    fn usable(&self, h: &Held) -> bool {
        !h.sender.is_closed() && h.idle_since.elapsed() < self.idle_timeout
    }

    /// Puts `h` in the idle pool. Its idle time runs on from when it was
    /// last used, not from now: the time it spent in a client connection's
    /// slot counts too.
    ///
    /// A connection that its client connection drove gets a task of its own
    /// here, on the current worker's runtime. One that is not kept is
    /// dropped, which closes it.
    fn checkin(&self, mut h: Held) {
        if self.max_idle == 0 || !self.usable(&h) {
            return;
        }
        if let Some(driver) = h.driver.take() {
            // No runtime: the worker is shutting down, and so is the
            // connection.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(driver);
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
            let (sender, driver) = if target.is_https() {
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
                driver: Some(driver),
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
            if affinity
                .drive_until(&mut held.driver, held.sender.ready())
                .await
                .is_err()
            {
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
            let sent = held.sender.try_send_request(req);
            match affinity.drive_until(&mut held.driver, sent).await {
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

async fn handshake<T>(io: T) -> Result<(Sender, Driver), ForwardError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake::<_, Body>(io)
        .await
        .map_err(|e| ForwardError::Connect(e.to_string()))?;
    let driver = Box::pin(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok((sender, driver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback upstream answering every request with `ok`; keeps
    /// connections alive unless `once`. Counts the connections it accepted.
    /// It runs on a runtime of its own, so that the test's runtime counts
    /// only credgate's tasks.
    async fn upstream(once: bool) -> (Arc<ConnPool>, Arc<AtomicUsize>) {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                while let Ok((tcp, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let svc = service_fn(|_req| async {
                            let ok = crate::net::body::full("ok");
                            Ok::<_, std::convert::Infallible>(Response::new(ok))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(!once)
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            })
        });
        let base: UpstreamBase = format!("http://{addr}").parse().unwrap();
        let pool = ConnPool::new(
            std::array::from_fn(|_| base.clone()),
            crate::net::client::tls_client_config(None).unwrap(),
            Duration::from_secs(5),
            Duration::from_secs(60),
            4,
        );
        (pool, accepted)
    }

    fn get() -> Request<Body> {
        let mut req = Request::new(crate::net::body::empty());
        *req.uri_mut() = Uri::from_static("/x");
        req
    }

    /// Reads an answer's body while driving `affinity`, as the client
    /// connection's future does (server::run_http).
    async fn read(affinity: &Affinity, resp: Response<Incoming>) -> bytes::Bytes {
        let collect = http_body_util::BodyExt::collect(resp.into_body());
        let mut collect = pin!(collect);
        let got =
            std::future::poll_fn(|cx| affinity.poll_connection(cx, |cx| collect.as_mut().poll(cx)))
                .await;
        got.unwrap().to_bytes()
    }

    fn tasks() -> usize {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    }

    /// The upstream connection a client connection opened is driven by the
    /// client connection's own task: requests on it spawn no task. Once the
    /// client connection ends, the connection goes to the idle pool with a
    /// task of its own, and the next client connection reuses it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_held_connection_is_driven_by_its_client_connections_task() {
        let (pool, accepted) = upstream(false).await;
        let retries = Counter::default();
        let before = tasks();
        let affinity = Affinity::new(0);
        for _ in 0..3 {
            let resp = pool.send(&affinity, 0, get(), &retries).await.unwrap();
            assert_eq!(&read(&affinity, resp).await[..], b"ok");
            assert_eq!(tasks(), before, "no task of its own while held");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        drop(affinity);
        assert_eq!(tasks(), before + 1, "in the idle pool it has a task");

        let next = Affinity::new(0);
        let resp = pool.send(&next, 0, get(), &retries).await.unwrap();
        assert_eq!(&read(&next, resp).await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the pooled one reused");
        assert_eq!(retries.get(), 0);
    }

    /// The upstream closing a held connection is seen by driving the
    /// affinity alone, with no request in flight, so the next request opens
    /// a new connection instead of failing on the closed one.
    #[tokio::test(flavor = "current_thread")]
    async fn a_close_between_requests_is_seen_by_driving_the_affinity() {
        let (pool, accepted) = upstream(true).await;
        let retries = Counter::default();
        let affinity = Affinity::new(0);
        let resp = pool.send(&affinity, 0, get(), &retries).await.unwrap();
        assert_eq!(&read(&affinity, resp).await[..], b"ok");
        let seen = std::future::poll_fn(|cx| {
            affinity.poll_connection(cx, |_| {
                let slot = affinity.held.lock().unwrap();
                match slot.as_ref() {
                    Some((_, h)) if h.sender.is_closed() => Poll::Ready(()),
                    _ => Poll::Pending,
                }
            })
        });
        tokio::time::timeout(Duration::from_secs(5), seen)
            .await
            .expect("the close is seen by driving the affinity");
        let resp = pool.send(&affinity, 0, get(), &retries).await.unwrap();
        assert_eq!(&read(&affinity, resp).await[..], b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(retries.get(), 0, "the closed connection was not tried");
    }
}
