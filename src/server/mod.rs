//! The traffic listener: accept loop, connection limits, protocol choice,
//! TLS, and graceful shutdown.
//!
//! Protocol choice is done here rather than by hyper-util's auto builder,
//! because the auto builder reads the connection preface with no timeout
//! (hyper#3962): a client that connects and sends nothing, or a partial
//! HTTP/2 preface, would hold a connection slot forever. credgate reads the
//! first bytes under `server.header_read_timeout`, then hands the
//! connection, prefix replayed, to hyper's HTTP/1.1 or HTTP/2 server. Over
//! TLS, ALPN decides.
//!
//! Idle connections: hyper's HTTP/1 server applies the header read timeout
//! between keep-alive requests too, but its HTTP/2 server has no idle
//! timeout at all, and a client that answers PINGs keeps an HTTP/2
//! connection (and a `server.max_connections` slot) forever without
//! sending a request. credgate shuts down an HTTP/2 connection gracefully
//! (GOAWAY) once it has had no open request for `server.header_read_timeout`.
//! That needs `graceful_shutdown` on the connection from two causes, which
//! hyper-util's `GracefulShutdown` cannot compose (its watcher takes the
//! connection by value and its trait is sealed), so the server-wide drain
//! is the same few lines here: a watch channel whose receivers each
//! connection holds until it has finished.

pub mod tls;
pub mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::gateway::{self, ConnInfo, State};
use crate::telemetry::KindLabel;
use tls::TlsAcceptorHandle;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Counts open connections; the guard gives the slot back when dropped.
#[derive(Debug, Default)]
pub struct ConnCounter(AtomicUsize);

pub struct ConnGuard(Arc<ConnCounter>, Arc<crate::telemetry::Metrics>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
        self.1.connections_active.dec();
    }
}

/// Serves one traffic listener until `shutdown` resolves, then stops
/// accepting and lets in-flight connections finish within
/// `server.shutdown_grace`. `worker` is this listener's index among the
/// workers (app.rs), `counter` the open connections of all of them, so
/// `server.max_connections` bounds the process, not each worker.
pub async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<TlsAcceptorHandle>,
    (counter, worker): (Arc<ConnCounter>, usize),
    shutdown: impl Future<Output = ()>,
) {
    // Sending on `drain` asks every connection to shut down gracefully;
    // `drain.closed()` resolves once every connection dropped its receiver.
    let (drain, _) = watch::channel(());
    let accepted_here = state
        .metrics
        .connections_accepted
        .get_or_create(&crate::telemetry::WorkerLabel {
            worker: u32::try_from(worker).unwrap_or(u32::MAX),
        })
        .clone();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let server_cfg = state.current.load().config.server.clone();
        if counter.0.fetch_add(1, Ordering::AcqRel) >= server_cfg.max_connections {
            counter.0.fetch_sub(1, Ordering::AcqRel);
            state
                .metrics
                .connections_refused
                .get_or_create(&KindLabel {
                    kind: "max_connections",
                })
                .inc();
            drop(stream);
            continue;
        }
        state.metrics.connections_active.inc();
        accepted_here.inc();
        let guard = ConnGuard(counter.clone(), state.metrics.clone());
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let stop = drain.subscribe();
        tokio::spawn(async move {
            serve_connection(state, (stream, remote, worker), tls, server_cfg, stop).await;
            drop(guard);
        });
    }
    drop(listener);
    let grace = state.current.load().config.server.shutdown_grace;
    let _ = drain.send(());
    tokio::select! {
        _ = drain.closed() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace = ?grace, "shutdown grace expired with connections still open"),
    }
}

async fn serve_connection(
    state: Arc<State>,
    (stream, remote, worker): (TcpStream, SocketAddr, usize),
    tls: Option<TlsAcceptorHandle>,
    cfg: ServerConfig,
    stop: watch::Receiver<()>,
) {
    let result = match tls {
        Some(acceptor) => {
            let acceptor = acceptor.current();
            match tokio::time::timeout(cfg.tls_handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let conn = Arc::new(ConnInfo::new(remote, true, h2, worker));
                    let io = Prefixed::new(Bytes::new(), tls_stream);
                    run_http(state.clone(), io, conn, h2, &cfg, stop).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    count_refused(&state, "tls_handshake");
                    return;
                }
                Err(_) => {
                    count_refused(&state, "tls_handshake_timeout");
                    return;
                }
            }
        }
        None => {
            let mut stream = stream;
            let prefix = match tokio::time::timeout(
                cfg.header_read_timeout,
                read_preface(&mut stream),
            )
            .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return,
                Err(_) => {
                    count_error(&state, "header_timeout");
                    return;
                }
            };
            if prefix.is_empty() {
                return;
            }
            let h2 = prefix.len() == H2_PREFACE.len() && prefix[..] == *H2_PREFACE;
            let conn = Arc::new(ConnInfo::new(remote, false, h2, worker));
            run_http(
                state.clone(),
                Prefixed::new(prefix, stream),
                conn,
                h2,
                &cfg,
                stop,
            )
            .await
        }
    };
    if let Err(e) = result {
        let kind = if e.is_timeout() {
            "header_timeout"
        } else if e.is_parse_too_large() {
            "header_too_large"
        } else if e.is_parse() || e.is_parse_status() {
            "malformed"
        } else if e.is_incomplete_message() {
            "incomplete"
        } else {
            "other"
        };
        count_error(&state, kind);
        tracing::debug!(%remote, kind, error = %e, "connection ended with an error");
    }
}

fn count_refused(state: &State, kind: &'static str) {
    state
        .metrics
        .connections_refused
        .get_or_create(&KindLabel { kind })
        .inc();
}

fn count_error(state: &State, kind: &'static str) {
    state
        .metrics
        .connection_errors
        .get_or_create(&KindLabel { kind })
        .inc();
}

/// Reads until the bytes seen either are the whole HTTP/2 preface or
/// diverge from it. Empty on EOF before any byte.
async fn read_preface(stream: &mut TcpStream) -> io::Result<Bytes> {
    let mut buf = vec![0u8; H2_PREFACE.len()];
    let mut n = 0;
    loop {
        let got = stream.read(&mut buf[n..]).await?;
        if got == 0 {
            buf.truncate(n);
            return Ok(buf.into());
        }
        n += got;
        if n == H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] {
            buf.truncate(n);
            return Ok(buf.into());
        }
    }
}

async fn run_http<T>(
    state: Arc<State>,
    io: Prefixed<T>,
    conn: Arc<ConnInfo>,
    h2: bool,
    cfg: &ServerConfig,
    mut stop: watch::Receiver<()>,
) -> Result<(), hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracked = activity.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        let open = tracked.open();
        async move {
            // `/mcp` and its metadata go to the agents' room (contract §12).
            let local = state
                .local
                .as_deref()
                .filter(|_| crate::mcp::Agents::claims(req.uri().path()));
            let resp = match local {
                Some(endpoint) => gateway::handle_local(&state, &conn, req, endpoint).await,
                None => gateway::handle(&state, &conn, req).await,
            };
            drop(open);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(io);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = b.serve_connection(io, service);
        tokio::pin!(conn);
        let idle = activity.idle_for(cfg.header_read_timeout);
        tokio::pin!(idle);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => return done,
                _ = stop.changed(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = &mut idle, if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // The header read timeout on one timer per connection, not one
        // registered and cancelled per request (net::deadline).
        b.timer(crate::net::deadline::ConnectionTimer::new())
            .keep_alive(true)
            .half_close(false)
            .header_read_timeout(cfg.header_read_timeout)
            .max_headers(cfg.max_headers)
            .max_header_size(cfg.max_header_bytes)
            .max_buf_size(cfg.max_header_bytes.max(8192) + 8192);
        let conn = b.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            done = conn.as_mut() => return done,
            _ = stop.changed() => conn.as_mut().graceful_shutdown(),
        }
        conn.await
    }
}

/// Open requests on one connection and when the last one started or
/// ended, for the HTTP/2 idle timeout.
struct Activity {
    base: Instant,
    open: AtomicUsize,
    last_ms: AtomicU64,
}

/// Counts a request as open until dropped.
struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Self {
        Activity {
            base: Instant::now(),
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }

    fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.touch();
        OpenRequest(self.clone())
    }

    /// Resolves once no request has been open for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let deadline = self.base + last + limit;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline.into()).await;
                continue;
            }
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            // A request is still open; its end resets the deadline.
            tokio::time::sleep(limit).await;
        }
    }
}

/// How long a closing connection keeps reading what the client still
/// sends, at most, and how much of it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// An IO that first replays bytes already read (the sniffed preface), and
/// closes with a lingering close: on shutdown it sends its FIN, then reads
/// and discards what the client still sends (up to [`LINGER_BYTES`], for
/// at most [`LINGER_TIME`]) before the socket is closed. A refused request
/// whose body was not read (413, or a refusal before the body) is answered
/// and the connection closed while the client may still be writing that
/// body; closing a socket with unread data sends a reset, which can
/// destroy the answer in flight to the client. Lingering lets it arrive (as
/// nginx's `lingering_close` does).
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
    linger: Option<Linger>,
}

struct Linger {
    until: Pin<Box<tokio::time::Sleep>>,
    sent_fin: bool,
    drained: usize,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Prefixed {
            prefix,
            inner,
            linger: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let linger = this.linger.get_or_insert_with(|| Linger {
            until: Box::pin(tokio::time::sleep(LINGER_TIME)),
            sent_fin: false,
            drained: 0,
        });
        if !linger.sent_fin {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            linger.sent_fin = true;
        }
        let mut scratch = [0u8; 8192];
        loop {
            if linger.drained >= LINGER_BYTES || linger.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                // The client closed its side, or the connection broke:
                // nothing is left to absorb.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.drained += buf.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
