//! Contract §1 step 7, "no lost request": Paragon closing a kept-alive
//! connection just as credgate reuses it loses no request that may be sent
//! twice. The race is made deterministic by a scripted upstream that reads
//! the second request of every connection whole and then closes the
//! connection without answering (with a FIN or a reset; over TLS with or
//! without a `close_notify`), while it answers the first request of every
//! connection. An idempotent bodiless request is then sent again on a new
//! connection and counted in `credgate_upstream_retries_total`; POST, PATCH
//! and requests with a body get 502 and reached Paragon once. Connections
//! idle for `server.upstream_idle_timeout` are not reused at all, whether a
//! client connection or the idle pool holds them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use credgate::app::Running;
use credgate::net::body;
use http::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const RETRIES: &str = "credgate_upstream_retries_total";
const UPSTREAM_OTHER: &str = "credgate_upstream_errors_total{kind=\"other\"}";

/// How the scripted upstream ends a connection on its second request.
#[derive(Clone, Copy)]
enum Close {
    /// An orderly close (FIN): hyper sees the stream end before an answer.
    Fin,
    /// A reset (RST, `SO_LINGER` 0): hyper sees `ConnectionReset`.
    Reset,
    /// Over TLS, the TCP connection closed without a `close_notify`:
    /// rustls reports `UnexpectedEof`.
    TlsAbrupt,
    /// Over TLS, a `close_notify` then the close: hyper sees the stream end.
    TlsCloseNotify,
}

/// A request the scripted upstream read, and on which of its connections
/// (numbered from 1 in accept order).
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    method: String,
    path: String,
    body: Vec<u8>,
}

struct Scripted {
    url: String,
    /// The certificate to trust (`paragon.ca_file`) for the TLS modes.
    ca_pem: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many times a request for `path` arrived.
    fn times(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.ends_with(path))
            .count()
    }

    fn connections(&self) -> usize {
        self.seen().iter().map(|s| s.conn).max().unwrap_or(0)
    }
}

/// A raw-TCP HTTP/1.1 upstream on loopback (over TLS for the TLS modes):
/// answers the first request of each connection `200 {"ok":true}`
/// (keep-alive) and, on the second, reads the request whole and closes the
/// connection without a byte of answer.
async fn scripted(close: Close) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tls, ca_pem) = match close {
        Close::TlsAbrupt | Close::TlsCloseNotify => {
            let (acceptor, ca) = tls_acceptor();
            (Some(acceptor), Some(ca))
        }
        Close::Fin | Close::Reset => (None, None),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((stream, _)) = listener.accept().await {
            conn += 1;
            if let Close::Reset = close {
                // Every close of this connection is a reset; the only one
                // that matters is the close on the second request.
                stream.set_zero_linger().unwrap();
            }
            let log = log.clone();
            match &tls {
                None => {
                    tokio::spawn(serve(stream, conn, close, log));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, conn, close, log).await;
                        }
                    });
                }
            }
        }
    });
    Scripted {
        url: format!("{scheme}://127.0.0.1:{port}"),
        ca_pem,
        seen,
    }
}

/// A TLS acceptor (HTTP/1.1) with a self-signed certificate for
/// `127.0.0.1`, and that certificate's PEM.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), cert.pem())
}

async fn serve<S>(mut stream: S, conn: usize, close: Close, log: Arc<Mutex<Vec<Seen>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    for n in 1.. {
        let Some((method, path, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        log.lock().unwrap().push(Seen {
            conn,
            method,
            path,
            body,
        });
        if n >= 2 {
            if let Close::TlsCloseNotify = close {
                // tokio-rustls: `close_notify`, then the write side shut.
                let _ = stream.shutdown().await;
            }
            return; // dropped: closed, unanswered
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
    }
}

/// Reads one request (head, then a `Content-Length` or chunked body) from
/// `stream`, keeping any bytes after it in `buf`. None at end of stream.
async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<(String, String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let method = start.next()?.to_string();
    let path = start.next()?.to_string();
    let mut length = 0;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    buf.drain(..head_end);
    let body = if chunked {
        // The tests' bodies are short ASCII: the last chunk ends the body.
        let end = loop {
            if let Some(i) = buf.windows(5).position(|w| w == b"0\r\n\r\n") {
                break i + 5;
            }
            fill(stream, buf).await?;
        };
        buf.drain(..end).collect()
    } else {
        while buf.len() < length {
            fill(stream, buf).await?;
        }
        buf.drain(..length).collect()
    };
    Some((method, path, body))
}

async fn fill(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// A client with exactly one connection (HTTP/1.1 keep-alive).
fn one_connection_client() -> TestClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http()
}

/// An admin's passthrough Proxy API call (no credential list to load):
/// `method /sdk/proxy/slack/{tail}` with `body`.
async fn proxied(
    cl: &TestClient,
    gw: &Running,
    token: &str,
    method: &str,
    tail: &str,
    body: &'static str,
) -> Got {
    let req = Request::builder()
        .method(method)
        .uri(format!(
            "http://{}/projects/{PROJECT}/sdk/proxy/slack/{tail}",
            gw.addr
        ))
        .header("authorization", format!("Bearer {token}"))
        .body(if body.is_empty() {
            body::empty()
        } else {
            body::full(body)
        })
        .unwrap();
    send(cl, req).await
}

/// The deltas of `series` between two scrapes.
fn deltas(before: &str, after: &str, series: &[&str]) -> Vec<f64> {
    series
        .iter()
        .map(|s| metric(after, s) - metric(before, s))
        .collect()
}

/// One client connection: a GET that opens an upstream connection, then
/// `method` (with `body`) on the same client connection, which credgate
/// sends on the reused upstream connection that Paragon then closes
/// unanswered. Returns the second answer, how many times Paragon saw the
/// second request, and the deltas of the retries and of the `other`
/// upstream errors.
async fn race(close: Close, method: &str, body: &'static str) -> (Got, usize, Vec<f64>, Vec<Seen>) {
    let keys = Keys::new();
    let up = scripted(close).await;
    let mut config = ConfigBuilder::new(&keys, Hosts::all(&up.url));
    if let Some(ca) = &up.ca_pem {
        std::fs::write(keys.path().join("paragon-ca.pem"), ca).unwrap();
        config = config.paragon("ca_file = \"paragon-ca.pem\"");
    }
    let gw = config.start().await;
    let admin = keys.admin("acme");
    let cl = one_connection_client();
    let before = scrape_metrics(&gw).await;
    let first = proxied(&cl, &gw, &admin, "GET", "first", "").await;
    assert_eq!(first.status, StatusCode::OK);
    let second = proxied(&cl, &gw, &admin, method, "second", body).await;
    let after = scrape_metrics(&gw).await;
    let times = up.times("/second");
    let seen = up.seen();
    gw.shutdown().await;
    (
        second,
        times,
        deltas(&before, &after, &[RETRIES, UPSTREAM_OTHER]),
        seen,
    )
}

#[tokio::test]
async fn a_get_whose_reused_connection_closes_unanswered_is_retried_on_a_new_connection() {
    let (got, times, d, seen) = race(Close::Fin, "GET", "").await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.json()["ok"], true);
    assert_eq!(
        times, 2,
        "sent on the reused connection, then on a new one: {seen:?}"
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        (seen[1].conn, seen[2].conn),
        (1, 2),
        "the retry went on a new connection: {seen:?}"
    );
    assert_eq!(seen[2].method, "GET");
    assert_eq!(d, [1.0, 0.0], "one retry counted, no upstream error");
}

#[tokio::test]
async fn a_get_whose_reused_connection_is_reset_is_retried_on_a_new_connection() {
    let (got, times, d, seen) = race(Close::Reset, "GET", "").await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(times, 2, "{seen:?}");
    assert_eq!(seen[2].conn, 2, "{seen:?}");
    assert_eq!(d, [1.0, 0.0], "one retry counted, no upstream error");
}

#[tokio::test]
async fn over_tls_a_get_whose_connection_closes_without_close_notify_is_retried() {
    let (got, times, d, seen) = race(Close::TlsAbrupt, "GET", "").await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(times, 2, "{seen:?}");
    assert_eq!(seen[2].conn, 2, "{seen:?}");
    assert_eq!(d, [1.0, 0.0], "one retry counted, no upstream error");
}

#[tokio::test]
async fn over_tls_a_get_whose_connection_closes_with_close_notify_is_retried() {
    let (got, times, d, seen) = race(Close::TlsCloseNotify, "GET", "").await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(times, 2, "{seen:?}");
    assert_eq!(d, [1.0, 0.0], "one retry counted, no upstream error");
}

#[tokio::test]
async fn over_tls_a_post_in_the_race_is_never_retried() {
    let (got, times, d, seen) = race(Close::TlsAbrupt, "POST", r#"{"text":"hello"}"#).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{:?}", got.body);
    assert_eq!(times, 1, "{seen:?}");
    assert_eq!(d, [0.0, 1.0]);
}

#[tokio::test]
async fn a_bodiless_delete_in_the_race_is_retried() {
    let (got, times, d, seen) = race(Close::Fin, "DELETE", "").await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(times, 2, "{seen:?}");
    assert!(seen[1..].iter().all(|s| s.method == "DELETE"), "{seen:?}");
    assert_eq!(d, [1.0, 0.0]);
}

#[tokio::test]
async fn a_post_with_a_body_that_may_have_reached_paragon_is_never_retried() {
    let (got, times, d, seen) = race(Close::Fin, "POST", r#"{"text":"hello"}"#).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{:?}", got.body);
    assert_eq!(got.code(), "upstream_unavailable");
    assert_eq!(times, 1, "Paragon saw the POST once: {seen:?}");
    assert_eq!(seen[1].body, br#"{"text":"hello"}"#, "it was written whole");
    assert_eq!(d, [0.0, 1.0], "no retry; one upstream error");
}

#[tokio::test]
async fn a_bodiless_patch_is_never_retried() {
    let (got, times, d, seen) = race(Close::Reset, "PATCH", "").await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{:?}", got.body);
    assert_eq!(times, 1, "{seen:?}");
    assert_eq!(d, [0.0, 1.0]);
}

#[tokio::test]
async fn a_put_with_a_body_is_never_retried() {
    let (got, times, d, seen) = race(Close::Fin, "PUT", r#"{"name":"x"}"#).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{:?}", got.body);
    assert_eq!(
        times, 1,
        "the body was streamed away, credgate holds no copy: {seen:?}"
    );
    assert_eq!(d, [0.0, 1.0]);
}

/// The client connection's own upstream connection, idle longer than
/// `server.upstream_idle_timeout`, is dropped before use: the second GET
/// goes on a new connection, so Paragon's close never meets it (no retry).
#[tokio::test]
async fn a_held_connection_idle_past_upstream_idle_timeout_is_not_reused() {
    let keys = Keys::new();
    let up = scripted(Close::Fin).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("upstream_idle_timeout = \"300ms\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let cl = one_connection_client();
    let before = scrape_metrics(&gw).await;
    assert_eq!(
        proxied(&cl, &gw, &admin, "GET", "first", "").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        proxied(&cl, &gw, &admin, "GET", "second", "").await.status,
        StatusCode::OK
    );
    let after = scrape_metrics(&gw).await;
    let seen = up.seen();
    assert_eq!(
        up.times("/second"),
        1,
        "sent once, on a new connection: {seen:?}"
    );
    assert_eq!(up.connections(), 2, "{seen:?}");
    assert_eq!(
        deltas(&before, &after, &[RETRIES]),
        [0.0],
        "no retry was needed"
    );
    gw.shutdown().await;
}

/// A connection handed to the idle pool when its client connection ends
/// keeps the idle time it already had: the pool does not restart the clock,
/// so the next client connection gets a new connection instead.
#[tokio::test]
async fn the_idle_pool_counts_idle_time_from_the_last_use_not_the_hand_over() {
    let keys = Keys::new();
    let up = scripted(Close::Fin).await;
    // One worker: the idle pool hands connections over within a worker only.
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("worker_threads = 1\nupstream_idle_timeout = \"600ms\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let before = scrape_metrics(&gw).await;
    let first = one_connection_client();
    assert_eq!(
        proxied(&first, &gw, &admin, "GET", "first", "")
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The client connection ends: its upstream connection goes to the pool,
    // idle for 400 ms already.
    drop(first);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = one_connection_client();
    assert_eq!(
        proxied(&second, &gw, &admin, "GET", "second", "")
            .await
            .status,
        StatusCode::OK
    );
    let after = scrape_metrics(&gw).await;
    let seen = up.seen();
    assert_eq!(
        up.times("/second"),
        1,
        "sent once, on a new connection: {seen:?}"
    );
    assert_eq!(up.connections(), 2, "{seen:?}");
    assert_eq!(deltas(&before, &after, &[RETRIES]), [0.0]);
    gw.shutdown().await;
}

/// Control for the test above: within the idle timeout the pool does hand
/// the connection over (so the test above measures the clock, not a pool
/// that never hands over).
#[tokio::test]
async fn the_idle_pool_hands_over_a_connection_idle_for_less_than_the_timeout() {
    let keys = Keys::new();
    let up = scripted(Close::Fin).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("worker_threads = 1\nupstream_idle_timeout = \"10s\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let before = scrape_metrics(&gw).await;
    let first = one_connection_client();
    assert_eq!(
        proxied(&first, &gw, &admin, "GET", "first", "")
            .await
            .status,
        StatusCode::OK
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = one_connection_client();
    // The handed-over connection is the scripted one's second request: it
    // closes unanswered and the GET is retried on a new connection.
    assert_eq!(
        proxied(&second, &gw, &admin, "GET", "second", "")
            .await
            .status,
        StatusCode::OK
    );
    let after = scrape_metrics(&gw).await;
    let seen = up.seen();
    assert_eq!(up.times("/second"), 2, "{seen:?}");
    assert_eq!(seen[1].conn, 1, "handed over: {seen:?}");
    assert_eq!(deltas(&before, &after, &[RETRIES]), [1.0]);
    gw.shutdown().await;
}
