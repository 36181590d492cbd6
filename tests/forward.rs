//! Connection-affine forwarding (src/gateway/forward.rs): an HTTP/1.1 client
//! connection reuses one upstream connection; closed upstream connections
//! are replaced without failing requests; connections are handed over
//! between client connections through the idle pool.

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
    let gw = ConfigBuilder::new(&keys, Hosts::all(&up.url)).start().await;
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
