//! The forwarding core over real sockets: routing to the five Paragon hosts,
//! streaming both ways, header hygiene, transport errors and path hygiene.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::net::body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

async fn five_echoes() -> (Recorder, Recorder, Recorder, Recorder, Recorder, Hosts) {
    let (c, w, p, a, s) = tokio::join!(
        spawn_echo("connect"),
        spawn_echo("workflows"),
        spawn_echo("proxy"),
        spawn_echo("actionkit"),
        spawn_echo("sync")
    );
    let hosts = Hosts {
        connect: c.url(),
        workflows: w.url(),
        proxy: p.url(),
        actionkit: a.url(),
        sync: s.url(),
        agentos: s.url(),
    };
    (c, w, p, a, s, hosts)
}

/// Each upstream key receives its routes with method, path, query and body
/// byte for byte (admin caller: no credential is routed, nothing rewritten).
#[tokio::test]
async fn each_upstream_key_reaches_its_host_intact() {
    let keys = Keys::new();
    let (c, w, p, a, s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");
    let cl = client();
    let cases: Vec<(&str, String, &Recorder, &str)> = vec![
        ("GET", format!("/projects/{PROJECT}/sdk/integrations?x=1&y=%20z"), &c, ""),
        ("POST", format!("/projects/{PROJECT}/sdk/triggers/wf-1?a=b"), &w, r#"{"hello": [1, 2.50]}"#),
        ("POST", format!("/v2/projects/{PROJECT}/sdk/events/trigger"), &w, r#"{"name":"e"}"#),
        ("PUT", format!("/projects/{PROJECT}/sdk/proxy/salesforce/services/data/v59.0/sobjects/A%20B?q=SELECT+Id"), &p, "raw \x00 bytes"),
        ("GET", format!("/projects/{PROJECT}/actions?format=json_schema"), &a, ""),
        ("GET", "/api/syncs?cursor=abc".to_string(), &s, ""),
    ];
    for (method, path, rec, body_text) in cases {
        rec.clear();
        let got = send(
            &cl,
            req(method, &gw, &path, Some(&admin), &[], body_text.to_string()),
        )
        .await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "{method} {path}: {:?}",
            got.body
        );
        let seen = rec.requests();
        assert_eq!(seen.len(), 1, "{path} reached its host once");
        let r = &seen[0];
        assert_eq!(r.method, method);
        let (p, q) = path
            .split_once('?')
            .map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
        assert_eq!(r.path, p);
        assert_eq!(r.query.as_deref(), q);
        assert_eq!(r.body, body_text.as_bytes());
        assert_eq!(
            r.headers["host"],
            rec.addr.to_string(),
            "Host is the upstream authority"
        );
        let upstream_token = r.headers["authorization"].to_str().unwrap();
        assert_ne!(
            upstream_token,
            format!("Bearer {admin}"),
            "the caller's token never reaches Paragon"
        );
        assert_eq!(keys.decode_upstream(upstream_token)["sub"], "acme");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_are_set_and_hop_by_hop_removed() {
    let keys = Keys::new();
    let (_c, _w, p, _a, _s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");
    let path = format!("/projects/{PROJECT}/sdk/proxy/slack/chat.postMessage");
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &path,
            Some(&admin),
            &[
                ("connection", "keep-alive, X-Custom-Secret, x-forwarded-for"),
                ("x-custom-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "for=6.6.6.6"),
                ("x-http-method-override", "DELETE"),
                ("x-paragon-user-metadata", "{}"),
                ("x-request-id", "trace-abc_123"),
                ("x-kept", "yes"),
            ],
            "{}",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    // From a caller that is not a trusted proxy, its request id is not
    // kept (it is only recorded, as `client_request_id`): credgate's own
    // goes upstream and back.
    let ours = got.headers["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(ours, "trace-abc_123");
    let r = &p.requests()[0];
    for gone in [
        "x-custom-secret",
        "keep-alive",
        "forwarded",
        "x-http-method-override",
        "x-paragon-user-metadata",
        "connection",
    ] {
        assert!(
            !r.headers.contains_key(gone),
            "{gone} must not be forwarded"
        );
    }
    assert_eq!(r.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(r.headers["x-forwarded-proto"], "http");
    assert_eq!(
        r.headers["x-forwarded-host"],
        gw.addr.to_string(),
        "the client's own value is replaced"
    );
    assert_eq!(r.headers["x-request-id"], ours.as_str());
    assert_eq!(r.headers["x-kept"], "yes");

    // An unsafe request id is replaced by a generated one.
    let got = send(
        &client(),
        req(
            "GET",
            &gw,
            &path,
            Some(&admin),
            &[("x-request-id", "a\"b")],
            "",
        ),
    )
    .await;
    let id = got.headers["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "a\"b");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    gw.shutdown().await;
}

#[tokio::test]
async fn trusted_proxies_keep_their_forwarded_headers() {
    let keys = Keys::new();
    let (_c, _w, p, _a, _s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts)
        .server("trusted_proxies = [\"127.0.0.0/8\"]")
        .start()
        .await;
    let admin = keys.admin("acme");
    let path = format!("/projects/{PROJECT}/sdk/proxy/slack/x");
    send(
        &client(),
        req(
            "GET",
            &gw,
            &path,
            Some(&admin),
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ],
            "",
        ),
    )
    .await;
    let r = &p.requests()[0];
    assert_eq!(r.headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(r.headers["x-forwarded-proto"], "https");
    // A trusted proxy's request id is kept, both ways.
    let got = send(
        &client(),
        req(
            "GET",
            &gw,
            &path,
            Some(&admin),
            &[("x-request-id", "trace-abc_123")],
            "",
        ),
    )
    .await;
    assert_eq!(got.headers["x-request-id"], "trace-abc_123");
    assert_eq!(p.requests()[1].headers["x-request-id"], "trace-abc_123");
    gw.shutdown().await;
}

/// A 100 MB upload streams: the upstream must see the first bytes before
/// the client sends the rest (a buffering proxy would deadlock here, and
/// the test would time out).
#[tokio::test]
async fn a_100_mb_upload_streams_through() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let received = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let rx = received.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(move |req: Request<Incoming>| {
            let rx = rx.clone();
            async move {
                let mut body = req.into_body();
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        rx.fetch_add(data.len() as u64, Ordering::SeqCst);
                    }
                }
                Ok::<_, Infallible>(Response::new(body::full(format!(
                    "{{\"bytes\":{}}}",
                    rx.load(Ordering::SeqCst)
                ))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let keys = Keys::new();
    let mut hosts = Hosts::all("http://127.0.0.1:9");
    hosts.proxy = format!("http://{up}");
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");

    let (tx, rx_chunks) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = ChannelBody(rx_chunks);
    let request = Request::post(format!(
        "http://{}/projects/{PROJECT}/sdk/proxy/googledrive/upload",
        gw.addr
    ))
    .header("authorization", format!("Bearer {admin}"))
    .header("content-length", TOTAL.to_string())
    .body(body::stream(stream))
    .unwrap();
    let cl = client();
    let response = tokio::spawn(async move { send(&cl, request).await });
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    tx.send(chunk.clone()).await.unwrap();
    // The rest is sent only once the upstream has seen the first chunk.
    tokio::time::timeout(Duration::from_secs(10), async {
        while received.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the upstream saw the first bytes before the upload finished: the gateway streams");
    let mut sent = CHUNK as u64;
    while sent < TOTAL {
        tx.send(chunk.clone()).await.unwrap();
        sent += CHUNK as u64;
    }
    drop(tx);
    let got = response.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["bytes"], json!(TOTAL));
    gw.shutdown().await;
}

/// A 100 MB download streams: the client must see the first bytes before
/// the upstream sends the rest.
#[tokio::test]
async fn a_100_mb_download_streams_through() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = service_fn(move |_req: Request<Incoming>| {
            let go_rx = go_rx.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                tokio::spawn(async move {
                    let chunk = Bytes::from(vec![b'd'; CHUNK]);
                    tx.send(chunk.clone()).await.unwrap();
                    if let Some(go) = go_rx.lock().await.take() {
                        let _ = go.await;
                    }
                    let mut sent = CHUNK as u64;
                    while sent < TOTAL {
                        if tx.send(chunk.clone()).await.is_err() {
                            return;
                        }
                        sent += CHUNK as u64;
                    }
                });
                let mut resp = Response::new(body::stream(ChannelBody(rx)));
                resp.headers_mut().insert("content-length", TOTAL.into());
                Ok::<_, Infallible>(resp)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let keys = Keys::new();
    let mut hosts = Hosts::all("http://127.0.0.1:9");
    hosts.proxy = format!("http://{up}");
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");
    let resp = client()
        .request(req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/googledrive/files/x?alt=media"),
            Some(&admin),
            &[],
            "",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first bytes arrive before the upstream sent the rest: the gateway streams")
        .unwrap()
        .unwrap();
    let mut total = first.into_data().map(|d| d.len() as u64).unwrap_or(0);
    go_tx.send(()).unwrap();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            total += d.len() as u64;
        }
    }
    assert_eq!(total, TOTAL);
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_refused_is_502_and_no_answer_in_time_is_504() {
    let keys = Keys::new();
    // Port 9 (discard) on loopback: nothing listens, the connect is refused.
    let gw = ConfigBuilder::new(&keys, Hosts::all("http://127.0.0.1:9"))
        .server("upstream_timeout = \"300ms\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let got = send(
        &client(),
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/integrations"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 502);
    assert_eq!(got.code(), "upstream_unavailable");
    gw.shutdown().await;

    // An upstream that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = ConfigBuilder::new(&keys, Hosts::all(&format!("http://{silent_addr}")))
        .server("upstream_timeout = \"300ms\"")
        .start()
        .await;
    let got = send(
        &client(),
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/integrations"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 504);
    assert_eq!(got.code(), "upstream_timeout");
    gw.shutdown().await;
}

/// Every §8 path form is 400 before authentication, and nothing reaches
/// Paragon; a normal path without a token is 401 (not 404: an
/// unauthenticated caller learns nothing about routes).
#[tokio::test]
async fn non_normalized_paths_are_400_before_authentication() {
    let keys = Keys::new();
    let (_c, _w, p, _a, _s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let base = format!("/projects/{PROJECT}/sdk/proxy/slack");
    for path in [
        format!("{base}//x"),
        format!("{base}/./x"),
        format!("{base}/../x"),
        format!("{base}/x/."),
        format!("{base}/x/.."),
        format!("{base}/a%2Fb"),
        format!("{base}/a%2fb"),
        format!("{base}/%2E%2E/x"),
        format!("{base}/a%5Cb"),
        format!("{base}/a%00b"),
        format!("{base}/a%252Fb"),
        format!("{base}/a%0D%0Ab"),
    ] {
        let raw_req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let out = raw(gw.addr, raw_req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(statuses(&out), vec![400], "{path}: {out}");
        assert!(out.contains("\"code\":\"bad_request\""), "{path}: {out}");
    }
    for path in [
        format!("{base}/x"),
        "/nothing/here".to_string(),
        "/projects/other/sdk/me".to_string(),
    ] {
        let out = raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(statuses(&out), vec![401], "{path}: {out}");
        assert!(out
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer error=\"invalid_token\""));
    }
    assert!(p.requests().is_empty(), "nothing reached Paragon");
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_projects_are_404_after_authentication() {
    let keys = Keys::new();
    let (c, _w, _p, _a, _s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");
    let cl = client();
    let got = send(
        &cl,
        req("GET", &gw, "/projects/other/sdk/me", Some(&admin), &[], ""),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "unknown_project")
    );
    let got = send(
        &cl,
        req("GET", &gw, "/projects/other/nothing", Some(&admin), &[], ""),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "route_not_found")
    );
    let got = send(
        &cl,
        req(
            // (`POST` creates an account: contract §13.)
            "PUT",
            &gw,
            &format!("/projects/{PROJECT}/sdk/credentials"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "route_not_found")
    );
    assert!(c.requests().is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let keys = Keys::new();
    let (c, _w, _p, _a, _s, hosts) = five_echoes().await;
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let admin = keys.admin("acme");
    let got = send(
        &h2_client(),
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/integrations"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["upstream"], "connect");
    assert_eq!(c.requests().len(), 1);
    gw.shutdown().await;
}

/// `server.upstream_timeout` counts from the request body's last byte: an
/// upload that keeps moving may take longer than the timeout, one that
/// stalls for the timeout gets 504.
#[tokio::test]
async fn slow_but_moving_uploads_are_not_cut_and_stalled_ones_are() {
    let (_c, _w, p, _a, _s, hosts) = five_echoes().await;
    let keys = Keys::new();
    let gw = ConfigBuilder::new(&keys, hosts)
        .server("upstream_timeout = \"600ms\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let url = format!(
        "http://{}/projects/{PROJECT}/sdk/proxy/googledrive/upload",
        gw.addr
    );
    let upload = |gaps: Vec<u64>| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let request = Request::post(&url)
            .header("authorization", format!("Bearer {admin}"))
            .body(body::stream(ChannelBody(rx)))
            .unwrap();
        tokio::spawn(async move {
            for gap in gaps {
                tokio::time::sleep(Duration::from_millis(gap)).await;
                if tx.send(Bytes::from_static(b"chunk")).await.is_err() {
                    return;
                }
            }
        });
        request
    };
    // Five chunks 300 ms apart: 1.5 s in all, never idle for 600 ms.
    let got = send(&client(), upload(vec![300; 5])).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(p.requests().last().unwrap().body.len(), 25);
    // One chunk, then silence for longer than the timeout.
    let got = send(&client(), upload(vec![0, 2000])).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (504, "upstream_timeout")
    );
    gw.shutdown().await;
}
