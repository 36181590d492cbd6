//! Helpers for the load harness (`benches/load/run.sh`), built with
//! `cargo build --release --example benchkit`:
//!
//! * `upstream --listen ADDR [--tls-cert PEM --tls-key PEM]` — the
//!   minimal upstream every proxy forwards to: a canned 45-byte JSON
//!   answer; `GET /__stats` reports the connections and requests it has
//!   seen (for connection reuse), and `GET /projects/{p}/tools` lists one
//!   Salesforce tool in ActionKit's shape (for `/mcp`'s `tools/call`
//!   figure). With `--tls-cert`/`--tls-key` it speaks HTTPS (rustls,
//!   aws-lc-rs, TLS 1.3 and 1.2, ALPN `http/1.1`) with keep-alive, and
//!   `/__stats` also counts the completed TLS handshakes and those that
//!   negotiated TLS 1.3.
//! * `prepare --dir DIR ...` — keys, emulator fixtures (users × members,
//!   one credential each), a credgate config, and token files for wrk.
//! * `coldstart --gateway URL --emulator URL --tokens FILE` — the first
//!   request of a new user, and 100 concurrent first requests of another.
//! * `memory --users N --credentials K` — bytes per cached user.
//! * `floor --listen ADDR --upstream ADDR` — the forwarding floor: a
//!   minimal hyper 1 proxy with no authentication, on a current-thread
//!   runtime, each client connection owning one upstream connection
//!   through hyper's connection-level client. It shows what the HTTP
//!   plumbing alone costs, so credgate's own share can be read off.
//!   `--tls-cert PEM --tls-key PEM --ca PEM`: HTTPS to its callers and to
//!   the upstream, verifying the upstream's certificate against `--ca`
//!   (the TLS mode's floor).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use credgate::config::CacheConfig;
use credgate::paragon::credentials::CredentialList;
use credgate::paragon::directory::{DirKey, Directory};
use credgate::telemetry::Metrics;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

static BODY: &[u8] = br#"{"status":"ok","service":"upstream","n":42}"#;
/// ActionKit's tools listing, as the upstream answers `GET .../tools`.
static TOOLS: &[u8] = br#"{"tools":{"salesforce":[{"type":"function","function":{"name":"SALESFORCE_SEARCH_RECORDS","description":"Search records","sideEffect":"read","parameters":{"type":"object","properties":{"query":{"type":"string"}}}}}]},"errors":[]}"#;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn arg_or(args: &[String], name: &str, default: &str) -> String {
    arg(args, name).unwrap_or_else(|| default.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = rt.enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("floor") {
        let tls = arg(&args, "--tls-cert").map(|cert| {
            let key = arg(&args, "--tls-key").expect("--tls-key with --tls-cert");
            let ca = arg(&args, "--ca").expect("--ca with --tls-cert");
            (tls_acceptor(&cert, &key), tls_connector(&ca))
        });
        return floor(
            arg_or(&args, "--listen", "127.0.0.1:18088")
                .parse()
                .unwrap(),
            arg_or(&args, "--upstream", "127.0.0.1:18080")
                .parse()
                .unwrap(),
            tls,
        );
    }
    match args.first().map(String::as_str) {
        Some("upstream") => {
            let tls = arg(&args, "--tls-cert").map(|cert| {
                tls_acceptor(
                    &cert,
                    &arg(&args, "--tls-key").expect("--tls-key with --tls-cert"),
                )
            });
            rt.block_on(upstream(
                arg_or(&args, "--listen", "127.0.0.1:18080")
                    .parse()
                    .unwrap(),
                tls,
            ))
        }
        Some("prepare") => prepare(&args),
        Some("coldstart") => rt.block_on(coldstart(&args)),
        Some("memory") => rt.block_on(memory(&args)),
        _ => {
            eprintln!("usage: benchkit upstream|prepare|coldstart|memory|floor ...");
            std::process::exit(2);
        }
    }
}

/// A TLS server config from PEM files: rustls on aws-lc-rs, its safe
/// default versions (TLS 1.3 and 1.2), ALPN `http/1.1` (every proxy here
/// speaks HTTP/1.1 to the upstream).
fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("--tls-cert")
        .collect::<Result<_, _>>()
        .expect("--tls-cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("--tls-key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS client config trusting only the CA in `ca` (verification on).
fn tls_connector(ca: &str) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("--ca") {
        roots.add(cert.expect("--ca")).expect("--ca");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn upstream(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let conns = Arc::new(AtomicU64::new(0));
    let reqs = Arc::new(AtomicU64::new(0));
    // Completed TLS handshakes, and those that negotiated TLS 1.3 (the
    // harness checks that all did).
    let handshakes = Arc::new(AtomicU64::new(0));
    let tls13 = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        conns.fetch_add(1, Ordering::Relaxed);
        let stats = Stats {
            conns: conns.clone(),
            reqs: reqs.clone(),
            handshakes: handshakes.clone(),
            tls13: tls13.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        stats.handshakes.fetch_add(1, Ordering::Relaxed);
                        if stream.get_ref().1.protocol_version()
                            == Some(rustls::ProtocolVersion::TLSv1_3)
                        {
                            stats.tls13.fetch_add(1, Ordering::Relaxed);
                        }
                        upstream_conn(stream, stats).await;
                    }
                }
                None => upstream_conn(stream, stats).await,
            }
        });
    }
}

/// The upstream's counters, reported by `GET /__stats`.
#[derive(Clone)]
struct Stats {
    conns: Arc<AtomicU64>,
    reqs: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    tls13: Arc<AtomicU64>,
}

/// Serves one upstream connection (plain or TLS) with keep-alive.
async fn upstream_conn<S>(stream: S, stats: Stats)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let stats = stats.clone();
        async move {
            let n = stats.reqs.fetch_add(1, Ordering::Relaxed) + 1;
            let body = if req.uri().path() == "/__stats" {
                Bytes::from(
                    json!({"connections": stats.conns.load(Ordering::Relaxed), "requests": n,
                           "tls_connections": stats.handshakes.load(Ordering::Relaxed),
                           "tls13_connections": stats.tls13.load(Ordering::Relaxed)})
                    .to_string(),
                )
            } else if req.method() == http::Method::GET && req.uri().path().ends_with("/tools") {
                Bytes::from_static(TOOLS)
            } else {
                Bytes::from_static(BODY)
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The forwarding floor (see the module notes). Bodies stream through
/// untouched; only the request target is cut to its path for the upstream.
/// With `tls`, callers and the upstream speak HTTPS (the upstream's
/// certificate verified for the name `127.0.0.1`).
fn floor(
    listen: SocketAddr,
    upstream: SocketAddr,
    tls: Option<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector)>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let tls = tls.clone();
            tokio::task::spawn_local(async move {
                match tls {
                    Some((acceptor, connector)) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            floor_conn(stream, upstream, Some(connector)).await;
                        }
                    }
                    None => floor_conn(stream, upstream, None).await,
                }
            });
        }
    });
}

/// One client connection of the floor, owning (at most) one upstream
/// connection, kept alive across its requests.
async fn floor_conn<S>(stream: S, upstream: SocketAddr, tls: Option<tokio_rustls::TlsConnector>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    use std::cell::RefCell;
    use std::rc::Rc;
    type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

    let held: Rc<RefCell<Option<Sender>>> = Rc::default();
    let service = service_fn(move |mut req: Request<Incoming>| {
        let held = held.clone();
        let tls = tls.clone();
        async move {
            let kept = held.borrow_mut().take();
            let mut sender = match kept {
                Some(s) if !s.is_closed() => s,
                _ => {
                    let tcp = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        Some(connector) => {
                            let name =
                                rustls_pki_types::ServerName::IpAddress(upstream.ip().into());
                            let tls = connector.connect(name, tcp).await.expect("upstream TLS");
                            let (s, conn) =
                                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                            tokio::task::spawn_local(conn);
                            s
                        }
                        None => {
                            let (s, conn) =
                                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                            tokio::task::spawn_local(conn);
                            s
                        }
                    }
                }
            };
            sender.ready().await?;
            if let Some(pq) = req.uri().path_and_query().cloned() {
                *req.uri_mut() = pq.as_str().parse().unwrap();
            }
            let resp = sender.send_request(req).await;
            *held.borrow_mut() = Some(sender);
            resp
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Writes everything a credgate run needs into `--dir`.
fn prepare(args: &[String]) {
    let dir = PathBuf::from(arg(args, "--dir").expect("--dir"));
    let users: usize = arg_or(args, "--users", "100").parse().unwrap();
    let members: usize = arg_or(args, "--members", "10").parse().unwrap();
    let project = arg_or(args, "--project", "be4c0000-0000-4000-8000-000000000000");
    let upstream = arg_or(args, "--upstream", "http://127.0.0.1:18080");
    let emulator = arg_or(args, "--emulator", "http://127.0.0.1:18085");
    let listen = arg_or(args, "--listen", "127.0.0.1:18084");
    let admin = arg_or(args, "--admin", "127.0.0.1:19904");
    let churn: usize = arg_or(args, "--churn-tokens", "10000").parse().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    // `--rules FILE`: policy rules (copied beside the config); `--limits`:
    // `[limits]` on, high enough that nothing is refused (every request
    // still takes its tokens).
    let rules = match arg(args, "--rules") {
        Some(file) => {
            std::fs::copy(&file, dir.join("rules.toml")).expect("--rules names a file");
            "rules_file = \"rules.toml\"\n"
        }
        None => "",
    };
    let limits = if args.iter().any(|a| a == "--limits") {
        "[limits]\nprincipal_rps = 1000000\nuser_rps = 1000000\n"
    } else {
        ""
    };
    let paragon = credgate::keygen::rsa().unwrap();
    let idp = credgate::keygen::rsa().unwrap();
    std::fs::write(dir.join("paragon-signing.pem"), &paragon.private_pem).unwrap();
    std::fs::write(dir.join("paragon-public.pem"), &paragon.public_pem).unwrap();
    std::fs::write(dir.join("idp-public.pem"), &idp.public_pem).unwrap();

    let cred_id = |u: usize, m: usize| format!("{u:08x}-{m:04x}-4000-8000-000000000000");
    let fixtures = json!({
        "project_id": project,
        // Two users more than the token pool: the cold-start figures use them.
        "users": (0..users + 2).map(|u| json!({
            "id": format!("org-{u:03}"),
            "credentials": (0..members).map(|m| json!({
                "id": cred_id(u, m),
                "integration": "salesforce",
                "external_id": format!("org-{u:03}-m{m}"),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("fixtures.json"),
        serde_json::to_vec_pretty(&fixtures).unwrap(),
    )
    .unwrap();

    let config = format!(
        r#"[server]
listen = "{listen}"
admin_listen = "{admin}"
worker_threads = 1
max_connections = 20000

[paragon]
project_id = "{project}"
connect_url = "{emulator}"
workflows_url = "{upstream}"
proxy_url = "{upstream}"
actionkit_url = "{upstream}"
sync_url = "{upstream}"
agentos_url = "{upstream}"
signing_key_file = "paragon-signing.pem"

[auth]
algorithms = ["RS256"]
principal_claim = "principal"

[[auth.keys]]
algorithm = "RS256"
pem_file = "idp-public.pem"

[policy]
owner_external_id = "{{principal}}"
{rules}
[cache]
credentials_ttl = "1h"

{limits}"#
    );
    std::fs::write(dir.join("credgate.toml"), config).unwrap();

    let key = jsonwebtoken::EncodingKey::from_rsa_pem(idp.private_pem.as_bytes()).unwrap();
    let exp = credgate::auth::unix_now() + 6 * 3600;
    let token = |u: usize, principal: &str, nonce: usize| {
        let claims =
            json!({"sub": format!("org-{u:03}"), "principal": principal, "exp": exp, "jti": nonce});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    };
    // The pool of members: one token per (user, member), naming its own credential.
    let mut lines = String::new();
    for u in 0..users {
        for m in 0..members {
            lines.push_str(&format!(
                "{} {}\n",
                token(u, &format!("org-{u:03}-m{m}"), 0),
                cred_id(u, m)
            ));
        }
    }
    std::fs::write(dir.join("tokens.txt"), lines).unwrap();
    // Token-cache churn: many distinct tokens for the same members.
    let mut churn_lines = String::new();
    for i in 0..churn {
        let (u, m) = ((i / members) % users, i % members);
        churn_lines.push_str(&format!(
            "{} {}\n",
            token(u, &format!("org-{u:03}-m{m}"), i + 1),
            cred_id(u, m)
        ));
    }
    std::fs::write(dir.join("tokens-churn.txt"), churn_lines).unwrap();
    // A user the warm-up never touches, for the cold-start figures.
    let mut cold = String::new();
    for u in [users, users + 1] {
        cold.push_str(&format!(
            "{} {}\n",
            token(u, &format!("org-{u:03}-m0"), 0),
            cred_id(u, 0)
        ));
    }
    std::fs::write(dir.join("tokens-cold.txt"), cold).unwrap();
    println!("{}", dir.display());
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn me_loads(client: &Client, emulator: &str) -> usize {
    let resp = client
        .request(
            Request::get(format!("{emulator}/_emulator/requests"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with("/sdk/me")))
                .count()
        })
        .unwrap_or(0)
}

async fn call(client: &Client, gateway: &str, path: &str, token: &str, cred: &str) -> u16 {
    let req = Request::get(format!("{gateway}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-paragon-credential", cred)
        .body(Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// Cold-start figures: prints JSON.
async fn coldstart(args: &[String]) {
    let gateway = arg(args, "--gateway").expect("--gateway");
    let emulator = arg(args, "--emulator").expect("--emulator");
    let path = arg(args, "--path").expect("--path");
    let tokens = std::fs::read_to_string(arg(args, "--tokens").expect("--tokens")).unwrap();
    let lines: Vec<(&str, &str)> = tokens.lines().filter_map(|l| l.split_once(' ')).collect();
    let client: Client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();

    let before = me_loads(&client, &emulator).await;
    let (t, c) = lines[0];
    let start = Instant::now();
    let status = call(&client, &gateway, &path, t, c).await;
    let first_ms = start.elapsed().as_secs_f64() * 1000.0;
    let start = Instant::now();
    let status_warm = call(&client, &gateway, &path, t, c).await;
    let warm_ms = start.elapsed().as_secs_f64() * 1000.0;
    let after_one = me_loads(&client, &emulator).await;

    let (t2, c2) = lines[1];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, gateway, path, t2, c2) = (
            client.clone(),
            gateway.clone(),
            path.clone(),
            t2.to_string(),
            c2.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            call(&client, &gateway, &path, &t2, &c2).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        if task.await.unwrap() == 200 {
            ok += 1;
        }
    }
    let burst_ms = start.elapsed().as_secs_f64() * 1000.0;
    let after_burst = me_loads(&client, &emulator).await;
    println!(
        "{}",
        json!({
            "first_request_ms": first_ms, "first_status": status, "second_request_ms": warm_ms, "second_status": status_warm,
            "loads_for_first_user": after_one - before,
            "burst_requests": 100, "burst_ok": ok, "burst_ms": burst_ms, "loads_for_burst": after_burst - after_one,
        })
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Bytes of resident memory per cached user (credential directory only).
async fn memory(args: &[String]) {
    let users: usize = arg_or(args, "--users", "1000").parse().unwrap();
    let creds: usize = arg_or(args, "--credentials", "5").parse().unwrap();
    let cfg = CacheConfig {
        credentials_ttl: Duration::from_secs(3600),
        max_users: users as u64 + 1,
        refresh_cooldown: Duration::from_secs(5),
        stale_if_error: Duration::ZERO,
        max_concurrent_loads: 64,
    };
    let dir = Directory::new(&cfg, Duration::from_secs(5), Metrics::new());
    // Bodies shaped like Paragon's /sdk/me, parsed as credgate parses them.
    let body = |u: usize| {
        let all: Vec<_> = (0..creds)
            .map(|m| json!({"id": format!("{u:08x}-{m:04x}-4000-8000-000000000000"), "integrationId": "c0ffee00-0000-4000-8000-000000000001",
                            "status": "VALID", "externalId": format!("org-{u}-m{m}"), "providerData": {"instanceURL": "https://x.example"},
                            "configurations": [{"id": format!("{u:08x}-{m:04x}-4000-9000-000000000000")}]}))
            .collect();
        json!({"authenticated": true, "integrations": {"salesforce": {"enabled": true, "allCredentials": all}}}).to_string()
    };
    let before = rss_bytes();
    for u in 0..users {
        let b = body(u);
        let key = DirKey::user(Arc::from(format!("org-{u:07}")));
        dir.get(&key, || async move {
            Ok(CredentialList::parse(b.as_bytes()).unwrap())
        })
        .await
        .unwrap();
    }
    dir.sync().await;
    let after = rss_bytes();
    println!(
        "{}",
        json!({"users": users, "credentials_per_user": creds, "cached": dir.user_count(), "rss_growth_bytes": after.saturating_sub(before),
               "bytes_per_user": after.saturating_sub(before) as f64 / users as f64})
    );
}
