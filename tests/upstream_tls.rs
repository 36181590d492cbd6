//! Paragon over HTTPS (contract §7 Forward, §10 `paragon.ca_file`): the real
//! Paragon is only reachable over TLS, so both forwarding paths (HTTP/1.1
//! callers' connection-affine pool, HTTP/2 callers' shared client) must
//! verify Paragon's certificate against the configured trust and speak the
//! right protocol inside the tunnel. An upstream whose certificate does not
//! verify is a 502 `upstream_unavailable`, and nothing is sent to it.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// What the TLS upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    /// The request target as written (origin form for HTTP/1.1).
    target: String,
    host: Option<String>,
    authorization: bool,
}

struct TlsUpstream {
    port: u16,
    ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    handshakes: Arc<Mutex<u32>>,
}

/// A Paragon stand-in on 127.0.0.1 with a self-signed certificate for
/// `127.0.0.1`, offering ALPN `h2` and `http/1.1`, answering 200 JSON.
async fn tls_upstream() -> TlsUpstream {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca_pem = cert.pem();
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
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handshakes = Arc::new(Mutex::new(0));
    let (log, shakes) = (seen.clone(), handshakes.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log, shakes) = (acceptor.clone(), log.clone(), shakes.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                *shakes.lock().unwrap() += 1;
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = service_fn(move |r: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        log.lock().unwrap().push(Seen {
                            version: r.version(),
                            target: r.uri().to_string(),
                            host: r
                                .headers()
                                .get("host")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                                .or_else(|| r.uri().authority().map(|a| a.to_string())),
                            authorization: r.headers().contains_key("authorization"),
                        });
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"{\"ok\":true}",
                                )))
                                .unwrap(),
                        )
                    }
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TlsUpstream {
        port,
        ca_pem,
        seen,
        handshakes,
    }
}

fn path() -> String {
    format!("/projects/{PROJECT}/sdk/proxy/salesforce/sobjects/Account?limit=1")
}

#[tokio::test]
async fn both_forwarding_paths_reach_an_https_paragon_trusted_through_ca_file() {
    let up = tls_upstream().await;
    let keys = Keys::new();
    std::fs::write(keys.path().join("paragon-ca.pem"), &up.ca_pem).unwrap();
    let gw = ConfigBuilder::new(&keys, Hosts::all(&format!("https://127.0.0.1:{}", up.port)))
        .paragon("ca_file = \"paragon-ca.pem\"")
        .start()
        .await;
    let admin = keys.admin("acme");

    let got = send(&client(), req("GET", &gw, &path(), Some(&admin), &[], "")).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.json()["ok"], true);
    let got = send(
        &h2_client(),
        req("GET", &gw, &path(), Some(&admin), &[], ""),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);

    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let authority = format!("127.0.0.1:{}", up.port);
    // The HTTP/1.1 caller went through the affine pool, which offers
    // HTTP/1.1 only; the request target is the origin form.
    assert_eq!(seen[0].version, Version::HTTP_11, "{seen:?}");
    assert_eq!(seen[0].target, path(), "{seen:?}");
    assert_eq!(seen[0].host.as_deref(), Some(authority.as_str()));
    // The HTTP/2 caller went through the shared client, which negotiated
    // HTTP/2 with a Paragon that offers it.
    assert_eq!(seen[1].version, Version::HTTP_2, "{seen:?}");
    assert!(seen[1].target.ends_with(&path()), "{seen:?}");
    assert_eq!(seen[1].host.as_deref(), Some(authority.as_str()));
    assert!(
        seen.iter().all(|s| s.authorization),
        "a minted token rides along"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_https_paragon_whose_certificate_does_not_verify_is_a_502_and_gets_nothing() {
    let up = tls_upstream().await;
    let keys = Keys::new();
    // No ca_file: the self-signed certificate is not in the web PKI roots.
    let gw = ConfigBuilder::new(&keys, Hosts::all(&format!("https://127.0.0.1:{}", up.port)))
        .start()
        .await;
    let admin = keys.admin("acme");
    for (name, c) in [("HTTP/1.1", client()), ("HTTP/2", h2_client())] {
        let got = send(&c, req("GET", &gw, &path(), Some(&admin), &[], "")).await;
        assert_eq!(got.status, 502, "{name}: {:?}", got.body);
        assert_eq!(got.code(), "upstream_unavailable", "{name}");
    }
    assert!(
        up.seen.lock().unwrap().is_empty(),
        "no request crosses a tunnel that did not verify"
    );
    assert_eq!(*up.handshakes.lock().unwrap(), 0, "no handshake completed");
    gw.shutdown().await;
}
