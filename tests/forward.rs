//! Connection-affine forwarding (src/gateway/forward.rs): an HTTP/1.1 client
//! connection reuses one upstream connection; closed upstream connections
//! are replaced without failing requests; connections are handed over
//! between client connections through the idle pool; workers share the
//! port, the connection bound and nothing else.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use credgate::net::body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An upstream that counts connections and requests; with `close_every`,
/// it closes each connection after that many requests.
struct Counting {
    url: String,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

async fn counting(close_every: usize) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let served = Arc::new(AtomicUsize::new(0));
                let service = service_fn(move |_req: Request<Incoming>| {
                    let (r, served) = (r.clone(), served.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        let mut resp = Response::new(body::full(r#"{"ok":true}"#));
                        if close_every > 0 && n >= close_every {
                            resp.headers_mut()
                                .insert("connection", "close".parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Counting {
        url,
        connections,
        requests,
    }
}

/// A client with exactly one connection (HTTP/1.1 keep-alive).
fn one_connection_client() -> TestClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http()
}

async fn proxied(cl: &TestClient, gw: &credgate::app::Running, token: &str) -> u16 {
    let req = Request::get(format!(
        "http://{}/projects/{PROJECT}/sdk/proxy/slack/x",
        gw.addr
    ))
    .header("authorization", format!("Bearer {token}"))
    .body(body::empty())
    .unwrap();
    send(cl, req).await.status.as_u16()
}

#[tokio::test]
async fn one_client_connection_reuses_one_upstream_connection() {
    let keys = Keys::new();
    let up = counting(0).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url)).start().await;
    let admin = keys.admin("acme");
    let cl = one_connection_client();
    for _ in 0..50 {
        assert_eq!(proxied(&cl, &gw, &admin).await, 200);
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 50);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "50 requests over one upstream connection"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_connections_closed_by_paragon_are_replaced_without_failing_requests() {
    let keys = Keys::new();
    // Paragon closes every connection after 3 requests.
    let up = counting(3).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url)).start().await;
    let admin = keys.admin("acme");
    let cl = one_connection_client();
    for i in 0..30 {
        assert_eq!(proxied(&cl, &gw, &admin).await, 200, "request {i}");
        if i % 7 == 0 {
            // Give the close time to land, so both the "noticed before use"
            // and the "raced with the request" paths are exercised.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 30);
    assert_eq!(up.connections.load(Ordering::SeqCst), 10);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_new_client_connection_takes_over_an_idle_upstream_connection() {
    let keys = Keys::new();
    let up = counting(0).await;
    // One worker: the idle pool hands connections over within a worker only.
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("worker_threads = 1")
        .start()
        .await;
    let admin = keys.admin("acme");
    for _ in 0..5 {
        // A fresh client (and client connection) each time, closed after use.
        let cl = one_connection_client();
        assert_eq!(proxied(&cl, &gw, &admin).await, 200);
        drop(cl);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 5);
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "the idle pool handed the connection over"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn concurrent_client_connections_get_their_own_upstream_connections() {
    let keys = Keys::new();
    let up = counting(0).await;
    let gw = Arc::new(ConfigBuilder::new(&keys, Hosts::all(&up.url)).start().await);
    let admin = keys.admin("acme");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (gw, admin) = (gw.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let cl = one_connection_client();
            for _ in 0..20 {
                assert_eq!(proxied(&cl, &gw, &admin).await, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.requests.load(Ordering::SeqCst), 160);
    let conns = up.connections.load(Ordering::SeqCst);
    assert!(
        (1..=8).contains(&conns),
        "at most one upstream connection per client connection, got {conns}"
    );
}

/// Client connections accepted by each of `workers`, from `/metrics`.
async fn accepted_by_worker(gw: &credgate::app::Running, workers: usize) -> Vec<f64> {
    let text = scrape_metrics(gw).await;
    (0..workers)
        .map(|w| {
            metric(
                &text,
                &format!("credgate_connections_accepted_total{{worker=\"{w}\"}}"),
            )
        })
        .collect()
}

#[tokio::test]
async fn workers_share_the_port_and_each_keeps_its_own_upstream_connections() {
    let keys = Keys::new();
    let up = counting(0).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("worker_threads = 2")
        .start()
        .await;
    let admin = keys.admin("acme");
    // Fresh client connections, one after another: the kernel spreads them
    // over both listeners by their source ports (all 40 on one worker has
    // a chance of 2^-39).
    for _ in 0..40 {
        let cl = one_connection_client();
        assert_eq!(proxied(&cl, &gw, &admin).await, 200);
        drop(cl);
        // Closed on credgate's side too (its upstream connection back in
        // the idle pool) before the next one opens.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while metric(&scrape_metrics(&gw).await, "credgate_connections_active") != 0.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the connection never closed"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let accepted = accepted_by_worker(&gw, 2).await;
    assert_eq!(accepted.iter().sum::<f64>(), 40.0, "{accepted:?}");
    assert!(
        accepted.iter().all(|&n| n > 0.0),
        "both workers served: {accepted:?}"
    );
    assert_eq!(up.requests.load(Ordering::SeqCst), 40);
    // Each worker reuses its own idle upstream connection, and never one
    // another worker's runtime drives: one upstream connection per worker.
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn max_connections_bounds_all_workers_together() {
    let keys = Keys::new();
    let up = counting(0).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url))
        .server("worker_threads = 2\nmax_connections = 3")
        .start()
        .await;
    let admin = keys.admin("acme");
    // Hold connections open (each has served one request) until the bound.
    let mut held = Vec::new();
    for _ in 0..3 {
        let cl = one_connection_client();
        assert_eq!(proxied(&cl, &gw, &admin).await, 200);
        held.push(cl);
    }
    // Whichever worker takes them, more connections are closed at once.
    for _ in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
        )
        .await
        .expect("a refused connection is closed, not left open");
        assert!(matches!(read, Ok(0) | Err(_)), "closed without a byte");
    }
    let text = scrape_metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "credgate_connections_refused_total{kind=\"max_connections\"}"
        ),
        6.0
    );
    let accepted = accepted_by_worker(&gw, 2).await;
    assert_eq!(accepted.iter().sum::<f64>(), 3.0, "{accepted:?}");
    drop(held);
    gw.shutdown().await;
}
