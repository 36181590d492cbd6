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

pub mod admin;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

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

/// Serves the traffic listener until `shutdown` resolves, then stops
/// accepting and lets in-flight connections finish within
/// `server.shutdown_grace`.
pub async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<TlsAcceptorHandle>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let counter = Arc::new(ConnCounter::default());
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
        let guard = ConnGuard(counter.clone(), state.metrics.clone());
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            serve_connection(state, stream, remote, tls, server_cfg, watcher).await;
            drop(guard);
        });
    }
    drop(listener);
    let grace = state.current.load().config.server.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace = ?grace, "shutdown grace expired with connections still open"),
    }
}

async fn serve_connection(
    state: Arc<State>,
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptorHandle>,
    cfg: ServerConfig,
    watcher: Watcher,
) {
    let result = match tls {
        Some(acceptor) => {
            let acceptor = acceptor.current();
            match tokio::time::timeout(cfg.tls_handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let conn = Arc::new(ConnInfo::new(remote, true, h2));
                    let io = Prefixed::new(Bytes::new(), tls_stream);
                    run_http(state.clone(), io, conn, h2, &cfg, watcher).await
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
            let conn = Arc::new(ConnInfo::new(remote, false, h2));
            run_http(
                state.clone(),
                Prefixed::new(prefix, stream),
                conn,
                h2,
                &cfg,
                watcher,
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
    watcher: Watcher,
) -> Result<(), hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(gateway::handle(&state, &conn, req).await) }
    });
    let io = TokioIo::new(io);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        watcher.watch(b.serve_connection(io, service)).await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .keep_alive(true)
            .half_close(false)
            .header_read_timeout(cfg.header_read_timeout)
            .max_headers(cfg.max_headers)
            .max_header_size(cfg.max_header_bytes)
            .max_buf_size(cfg.max_header_bytes.max(8192) + 8192);
        watcher.watch(b.serve_connection(io, service)).await
    }
}

/// An IO that first replays bytes already read (the sniffed preface).
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Prefixed { prefix, inner }
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

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
