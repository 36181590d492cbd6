//! Operations: the admin listener, metrics that move with traffic, reload
//! by SIGHUP (valid and invalid), HTTPS with HTTP/1.1 and HTTP/2 and a
//! certificate swap, graceful shutdown, and no token in any log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use credgate::net::body;
use http::{Request, StatusCode};
use serde_json::json;

#[tokio::test]
async fn admin_endpoints_answer() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .start()
        .await;
    let cl = client();
    let admin = |path: &str| format!("http://{}{}", gw.admin_addr, path);
    assert_eq!(get(&cl, &admin("/healthz"), None).await.status, 200);
    let ready = get(&cl, &admin("/readyz"), None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    let m = get(&cl, &admin("/metrics"), None).await;
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(String::from_utf8_lossy(&m.body).contains("credgate_credential_cache_users"));
    assert_eq!(get(&cl, &admin("/nope"), None).await.status, 404);
    // The admin listener is not the traffic listener.
    assert_eq!(
        get(&cl, &format!("http://{}/healthz", gw.addr), None)
            .await
            .status,
        401
    );

    let post = |b: &'static str| {
        Request::post(admin("/admin/cache/invalidate"))
            .header("content-type", "application/json")
            .body(body::full(b))
            .unwrap()
    };
    let got = send(&cl, post("{}")).await;
    assert_eq!(
        (got.status, got.json()["invalidated"].clone()),
        (StatusCode::OK, json!("all"))
    );
    let got = send(&cl, post(r#"{"user": "acme"}"#)).await;
    assert_eq!(got.json()["invalidated"], json!({"user": "acme"}));
    for bad in ["[]", r#"{"user": 5}"#, r#"{"users": "x"}"#, "nope"] {
        assert_eq!(send(&cl, post(bad)).await.status, 400, "{bad}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn metrics_count_requests_and_cache_activity() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .start()
        .await;
    let cl = client();
    let before = scrape_metrics(&gw).await;
    let alice = keys.member("acme", "alice");
    let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/x");
    for _ in 0..3 {
        let got = get_naming(&cl, &gw, &path, &alice, ACME_SF_ALICE).await;
        assert_eq!(got.status, 200);
    }
    let got = get_naming(&cl, &gw, &path, &alice, ACME_SF_BOB).await;
    assert_eq!(got.status, 403);
    let got = send(&cl, req("GET", &gw, &path, None, &[], "")).await;
    assert_eq!(got.status, 401);
    let after = scrape_metrics(&gw).await;
    let delta = |s: &str| metric(&after, s) - metric(&before, s);
    assert_eq!(
        delta("credgate_requests_total{product=\"proxy\",decision=\"allowed\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        delta("credgate_requests_total{product=\"proxy\",decision=\"refused\",status=\"403\"}"),
        1.0
    );
    assert_eq!(
        delta("credgate_requests_total{product=\"none\",decision=\"refused\",status=\"401\"}"),
        1.0
    );
    assert_eq!(
        delta("credgate_credential_cache_loads_total"),
        1.0,
        "one /sdk/me load for four requests"
    );
    assert_eq!(delta("credgate_credential_cache_hits_total"), 3.0);
    assert_eq!(
        delta("credgate_token_mints_total"),
        2.0,
        "one admin token for /sdk/me, one member token"
    );
    assert_eq!(delta("credgate_mint_cache_hits_total"), 2.0);
    assert_eq!(delta("credgate_verified_token_cache_hits_total"), 3.0);
    assert!(delta("credgate_request_duration_seconds_count{product=\"proxy\"}") >= 4.0);
    assert!(delta("credgate_upstream_duration_seconds_count{upstream=\"proxy_url\"}") >= 3.0);
    assert_eq!(metric(&after, "credgate_credential_cache_users"), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn reload_swaps_policy_and_an_invalid_config_changes_nothing() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let builder = ConfigBuilder::new(&keys, Hosts::all(&p.url()));
    let path = keys.dir.write("credgate.toml", &builder.toml());
    let bin = Binary::serve(&path, &[]);
    let cl = client();
    let alice = keys.member("acme", "alice");
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
    assert_eq!(get(&cl, &url, Some(&alice)).await.status, 200);
    let metrics_url = format!("http://{}/metrics", bin.admin_addr);
    let scrape = || async {
        String::from_utf8(get(&client(), &metrics_url, None).await.body.to_vec()).unwrap()
    };
    // Which config is in force: the SHA-256 of the file credgate read.
    let info = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("credgate_config_info{"))
            .map(str::to_string)
            .collect()
    };
    let first = info(&scrape().await);
    assert_eq!(first.len(), 1, "{first:?}");
    let sha = credgate::config::sha256_hex(builder.toml().as_bytes());
    assert!(
        first[0].contains(&format!("sha256=\"{sha}\"")) && first[0].ends_with(" 1"),
        "{first:?}"
    );

    // An invalid config: logged and counted, the old one keeps serving.
    keys.dir.write(
        "credgate.toml",
        &builder.toml().replace("[cache]", "[cache]\nnonsense = 1"),
    );
    bin.signal("HUP");
    bin.wait_for_log("the new config is invalid").await;
    assert_eq!(get(&cl, &url, Some(&alice)).await.status, 200);
    let after_bad = scrape().await;
    assert_eq!(
        metric(
            &after_bad,
            "credgate_config_reloads_total{kind=\"invalid\"}"
        ),
        1.0
    );
    assert_eq!(info(&after_bad), first, "still the first config");

    // A valid one that takes the Proxy API away from members.
    let swapped = builder.policy("member_products = [\"user\"]").toml();
    keys.dir.write("credgate.toml", &swapped);
    bin.signal("HUP");
    bin.wait_for_log("config reloaded").await;
    let got = get(&cl, &url, Some(&alice)).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "operation_forbidden")
    );
    let after_good = scrape().await;
    assert_eq!(
        metric(&after_good, "credgate_config_reloads_total{kind=\"ok\"}"),
        1.0
    );
    let now = info(&after_good);
    assert_eq!(now.len(), 1, "the old series is gone: {now:?}");
    let sha = credgate::config::sha256_hex(swapped.as_bytes());
    assert!(now[0].contains(&sha), "{now:?}");
    drop(bin);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    // One worker (one current-thread runtime), two workers (two runtimes
    // and listeners), and tokio's work-stealing runtime.
    for server in [
        "worker_threads = 1",
        "worker_threads = 2",
        "worker_threads = 2\nscheduler = \"work_stealing\"",
    ] {
        sigterm_drains(server).await;
    }
}

async fn sigterm_drains(server: &str) {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url()))
            .server(server)
            .toml(),
    );
    let mut bin = Binary::serve(&path, &[]);
    let admin = keys.admin("acme");
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/slow"));
    let in_flight = tokio::spawn(async move { get(&client(), &url, Some(&admin)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.signal("TERM");
    bin.wait_for_log("shutting down").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every worker's listener: new connections are spread over them.
    for _ in 0..16 {
        let refused = tokio::net::TcpStream::connect(bin.addr).await;
        assert!(
            refused.is_err(),
            "{server}: every listener is closed once shutdown starts"
        );
    }
    let got = in_flight.await.unwrap();
    assert_eq!(got.status, 200, "{server}: the in-flight request finished");
    let status = tokio::task::spawn_blocking(move || bin.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit 0 after a graceful shutdown");
}

#[tokio::test]
async fn no_token_appears_in_logs_even_at_trace() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url())).toml(),
    );
    let bin = Binary::serve(&path, &[("RUST_LOG", "trace")]);
    let alice = keys.member("acme", "alice");
    let cl = client();
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
    let got = send(
        &cl,
        Request::get(&url)
            .header("authorization", format!("Bearer {alice}"))
            .header("x-paragon-credential", ACME_SF_ALICE)
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    let minted = p
        .requests()
        .iter()
        .find(|r| r.path.ends_with("/x"))
        .unwrap()
        .headers["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    // A forged line attempt through a header credgate logs (none should be logged raw).
    get(&cl, &bin.url("/nothing%0d%0aFAKE"), Some(&alice)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = std::fs::read_to_string(keys.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("credgate::audit"),
        "the audit trail is written"
    );
    // The logs and the audit trail, both.
    let logs = format!("{}\n{audit}", bin.log_text());
    let signature = alice.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(signature),
        "the caller's token is not logged"
    );
    assert!(
        !logs.contains(minted.rsplit('.').next().unwrap()),
        "the minted token is not logged"
    );
    assert!(
        !logs.contains(&keys.paragon.private_pem[40..80]),
        "the signing key is not logged"
    );
    for line in logs.lines() {
        assert!(!line.starts_with("FAKE"), "no forged log line");
    }
}

/// The audit trail is its own sink: `RUST_LOG=warn` (or `off`) leaves it
/// on; it goes to standard output without `[audit] file`; only
/// `[audit] enabled = false` stops it, and `check-config` says so.
#[tokio::test]
async fn the_log_filter_cannot_switch_the_audit_trail_off() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let alice = keys.member("acme", "alice");
    let call = |bin: &Binary| {
        let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
        let req = Request::get(&url)
            .header("authorization", format!("Bearer {alice}"))
            .header("x-paragon-credential", ACME_SF_ALICE)
            .body(body::empty())
            .unwrap();
        async move { send(&client(), req).await.status }
    };
    // To the file, with the logs filtered down to nothing.
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url())).toml(),
    );
    // (`credgate::app=info` keeps the line that says where it listens.)
    for filter in [
        "warn,credgate::app=info",
        "off,credgate::app=info",
        "error,credgate::audit=off,credgate::app=info",
    ] {
        let _ = std::fs::remove_file(keys.path().join("audit.jsonl"));
        let bin = Binary::serve(&path, &[("RUST_LOG", filter)]);
        assert_eq!(call(&bin).await, 200);
        let r = wait_for_audit(&keys, |r| r["product"] == "proxy").await;
        assert_eq!(r["credential"], ACME_SF_ALICE, "{filter}");
        drop(bin);
    }
    // To standard output, without a file.
    let mut b = ConfigBuilder::new(&keys, Hosts::all(&p.url()));
    b.audit_file.clear();
    let stdout_cfg = b.toml().replace("[audit]\nfile = \"\"\n", "");
    let path = keys.dir.write("stdout.toml", &stdout_cfg);
    let bin = Binary::serve(&path, &[("RUST_LOG", "off,credgate::app=info")]);
    assert_eq!(call(&bin).await, 200);
    bin.wait_for_log("\"target\":\"credgate::audit\"").await;
    drop(bin);
    // Off only when written so.
    let off_cfg = stdout_cfg + "[audit]\nenabled = false\n";
    let path = keys.dir.write("off.toml", &off_cfg);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit.enabled = false"));
    let bin = Binary::serve(&path, &[("RUST_LOG", "info")]);
    assert_eq!(call(&bin).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !bin.log_text().contains("credgate::audit"),
        "{}",
        bin.log_text()
    );
}

fn cert(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let c = params.self_signed(&key).unwrap();
    (c.pem(), key.serialize_pem())
}

fn tls_client(
    ca_pem: &str,
    h2: bool,
) -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    credgate::net::body::Body,
> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg)
        .https_only();
    let conn = if h2 {
        b.enable_http2().build()
    } else {
        b.enable_http1().build()
    };
    let mut cb = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    if h2 {
        cb.http2_only(true);
    }
    cb.build(conn)
}

#[tokio::test]
async fn https_serves_http1_and_http2_and_reloads_its_certificate() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let (cert_a, key_a) = cert("cert-a");
    let (cert_b, key_b) = cert("cert-b");
    keys.dir.write("tls.crt", &cert_a);
    keys.dir.write("tls.key", &key_a);
    let builder = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .server("tls = { cert_file = \"tls.crt\", key_file = \"tls.key\" }");
    let gw = builder.start().await;
    let admin = keys.admin("acme");
    let url = format!(
        "https://localhost:{}/projects/{PROJECT}/sdk/integrations",
        gw.addr.port()
    );
    let request = || {
        Request::get(&url)
            .header("authorization", format!("Bearer {admin}"))
            .body(body::empty())
            .unwrap()
    };
    for h2 in [false, true] {
        let resp = tls_client(&cert_a, h2).request(request()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let want = if h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        assert_eq!(resp.version(), want);
    }
    let forwarded = p.requests().last().unwrap().headers["x-forwarded-proto"].clone();
    assert_eq!(
        forwarded, "https",
        "X-Forwarded-Proto reflects the TLS listener"
    );

    // Swap the certificate on disk and reload: new handshakes use cert B.
    keys.dir.write("tls.crt", &cert_b);
    keys.dir.write("tls.key", &key_b);
    gw.reload(builder.build()).unwrap();
    assert_eq!(
        tls_client(&cert_b, false)
            .request(request())
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        tls_client(&cert_a, false).request(request()).await.is_err(),
        "cert A is no longer served"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn healthcheck_command_probes_the_admin_listener() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url())).toml(),
    );
    let bin = Binary::serve(&path, &[]);
    let probe = |url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
            .status
            .success()
    };
    let admin = bin.admin_addr;
    assert!(
        tokio::task::spawn_blocking(move || probe(format!("http://{admin}/healthz")))
            .await
            .unwrap()
    );
    assert!(
        !tokio::task::spawn_blocking(move || probe(format!("http://{admin}/nope")))
            .await
            .unwrap()
    );
}

/// `server.max_requests_per_connection`: the response that reaches the limit
/// says `Connection: close`, and the connection ends after it.
#[tokio::test]
async fn connections_close_after_the_request_limit() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .server("max_requests_per_connection = 2")
        .start()
        .await;
    let admin = keys.admin("acme");
    let one = format!(
        "GET /projects/{PROJECT}/sdk/integrations HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    // Three pipelined requests on one connection: two answers, then close.
    let out = raw(gw.addr, one.repeat(3).as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), vec![200, 200], "{out}");
    assert_eq!(
        out.to_ascii_lowercase()
            .matches("connection: close")
            .count(),
        1
    );
    gw.shutdown().await;
}

/// A reload that changes listen addresses says they need a restart, and
/// keeps serving on the old ones.
#[tokio::test]
async fn reloads_report_settings_that_need_a_restart() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .start()
        .await;
    let moved = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .server("worker_threads = 3")
        .build();
    let mut moved_listen = moved.clone();
    moved_listen.server.listen = "127.0.0.1:1".parse().unwrap();
    let notes = gw.reload(moved_listen).unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("server.listen") && n.contains("restart")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("worker_threads")),
        "{notes:?}"
    );
    let admin = keys.admin("acme");
    let got = get(
        &client(),
        &format!("http://{}/projects/{PROJECT}/sdk/integrations", gw.addr),
        Some(&admin),
    )
    .await;
    assert_eq!(got.status, 200, "still serving on the old address");
    gw.shutdown().await;
}

/// contract §1 step 9: one structured audit record per request, with the
/// decision and the reason. The real binary with JSON logs; each request
/// carries its own `X-Request-Id`, and exactly one `credgate::audit` line
/// names it, with the decision, the reason (`forwarded`, else the error
/// code the response carries), the routed credential (only when allowed),
/// the product and the status.
#[tokio::test]
async fn each_request_writes_one_audit_record_with_decision_and_reason() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url())).toml(),
    );
    let bin = Binary::serve(&path, &[("RUST_LOG", "info")]);
    let alice = keys.member("acme", "alice");
    let cl = client();
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
    let request = |id: &str, token: Option<&str>, cred: Option<&str>| {
        let mut b = Request::get(&url).header("x-request-id", id);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(c) = cred {
            b = b.header("x-paragon-credential", c);
        }
        b.body(body::empty()).unwrap()
    };

    let allowed = send(
        &cl,
        request("audit-allowed-1", Some(&alice), Some(ACME_SF_ALICE)),
    )
    .await;
    assert_eq!(allowed.status, 200);
    let foreign = send(
        &cl,
        request("audit-foreign-2", Some(&alice), Some(ACME_SF_BOB)),
    )
    .await;
    assert_eq!(foreign.status, 403);
    let foreign_code = foreign.code();
    assert_eq!(foreign_code, "credential_forbidden");
    let anonymous = send(&cl, request("audit-anonymous-3", None, None)).await;
    assert_eq!(anonymous.status, 401);
    let anonymous_code = anonymous.code();
    assert_eq!(anonymous_code, "unauthenticated");

    // (request id, decision, reason, credential, product, status,
    //  principal, integration)
    let expected = [
        (
            "audit-allowed-1",
            "allowed",
            "owner_label",
            ACME_SF_ALICE,
            "proxy",
            200,
            "alice",
            "salesforce",
        ),
        (
            "audit-foreign-2",
            "refused",
            "no_grant",
            "",
            "proxy",
            403,
            "alice",
            "salesforce",
        ),
        (
            "audit-anonymous-3",
            "refused",
            "unauthenticated",
            "",
            "none",
            401,
            "",
            "",
        ),
    ];
    // The caller is no trusted proxy: its ids are recorded as
    // `client_request_id`, beside credgate's own `request_id`.
    let audit_lines = |id: &str| -> Vec<serde_json::Value> {
        audit_records(&keys)
            .into_iter()
            .filter(|v| {
                v["target"] == credgate::audit::AUDIT_TARGET && v["client_request_id"] == id
            })
            .collect()
    };
    // The record is written as the response is made: allow the log a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while expected.iter().any(|e| audit_lines(e.0).is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "missing audit records: {}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Any duplicate would have been written with the first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (id, decision, reason, credential, product, status, principal, integration) in expected {
        let lines = audit_lines(id);
        assert_eq!(
            lines.len(),
            1,
            "exactly one audit record for {id}: {lines:#?}"
        );
        let a = &lines[0];
        assert_eq!(a["decision"], decision, "{id}: {a}");
        assert_eq!(a["reason"], reason, "{id}: {a}");
        assert_eq!(a["credential"], credential, "{id}: {a}");
        assert_eq!(a["product"], product, "{id}: {a}");
        assert_eq!(a["status"], status, "{id}: {a}");
        assert_eq!(a["principal"], principal, "{id}: {a}");
        assert_eq!(
            a["user"],
            if principal.is_empty() { "" } else { "acme" },
            "{id}: {a}"
        );
        assert_eq!(a["integration"], integration, "{id}: {a}");
        assert_eq!(a["level"], "INFO", "{id}: {a}");
        assert!(a["latency_ms"].is_number(), "{id}: {a}");
        assert_ne!(a["request_id"], id, "{id}: {a}");
    }
    // Who named whose account, and why a token was refused.
    let foreign = &audit_lines("audit-foreign-2")[0];
    assert_eq!(foreign["requested"], ACME_SF_BOB);
    assert_eq!(foreign["code"], foreign_code.as_str());
    assert_eq!(
        audit_lines("audit-anonymous-3")[0]["code"],
        anonymous_code.as_str()
    );
    assert!(audit_lines("audit-allowed-1")[0]["code"].is_null());
    for id in ["audit-allowed-1", "audit-foreign-2", "audit-anonymous-3"] {
        let a = &audit_lines(id)[0];
        assert_eq!(a["decision_id"], a["request_id"], "{a}");
    }
    assert!(audit_lines("audit-allowed-1")[0]["cause"].is_null());
    assert_eq!(audit_lines("audit-anonymous-3")[0]["cause"], "missing");
    // Only the allowed request reached Paragon (besides credgate's own
    // credential-list load).
    let forwarded: Vec<_> = p
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/sdk/me"))
        .collect();
    assert_eq!(forwarded.len(), 1, "{forwarded:#?}");
    assert_eq!(forwarded[0].headers["x-paragon-credential"], ACME_SF_ALICE);
    drop(bin);
}

/// Before the identity provider's first key set has loaded, a request is
/// not the caller's fault: 503 `unavailable` with `Retry-After`, not 401;
/// readiness says not ready, and the log says no key set was ever loaded.
#[tokio::test]
async fn requests_before_the_first_key_set_are_503_with_retry_after() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let idp = spawn_recorder(std::sync::Arc::new(|_r: Recorded| {
        Box::pin(async {
            json_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({}),
            )
        })
    }))
    .await;
    let toml = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .auth(&format!("jwks_url = \"{}/jwks.json\"", idp.url()))
        .auth("issuer = \"https://idp.example\"")
        .auth("audience = \"credgate\"")
        .toml()
        .replace(
            "[[auth.keys]]\nalgorithm = \"RS256\"\npem_file = \"idp.pub.pem\"\n",
            "",
        );
    assert!(!toml.contains("[[auth.keys]]"));
    let path = keys.dir.write("credgate.toml", &toml);
    let bin = Binary::serve(&path, &[]);
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"));
    let got = get(&client(), &url, Some(&keys.member("acme", "alice"))).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (503, "unavailable")
    );
    assert_eq!(got.headers["retry-after"], "1");
    let ready = get(
        &client(),
        &format!("http://{}/readyz", bin.admin_addr),
        None,
    )
    .await;
    assert_eq!(ready.status, 503);
    bin.wait_for_log("no key set was ever loaded").await;
    assert!(!bin.log_text().contains("keeping the last good key set"));
}

/// `credgate invalidate` (for images without curl): drops the named
/// Connected User's cached list on a running instance, so the next request
/// loads it again; an unreachable admin listener exits 1.
#[tokio::test]
async fn invalidate_command_drops_a_users_cached_list() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(1500)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .start()
        .await;
    let cl = client();
    let alice = keys.member("acme", "alice");
    let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/x");
    let call = || get_naming(&cl, &gw, &path, &alice, ACME_SF_ALICE);
    let loads = || {
        p.requests()
            .iter()
            .filter(|r| r.path.ends_with("/sdk/me"))
            .count()
    };
    assert_eq!(call().await.status, 200);
    assert_eq!(call().await.status, 200);
    assert_eq!(loads(), 1, "the second request is served from the cache");

    let invalidate = |admin: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
                .args(["invalidate", "--admin", &admin, "--user", "acme"])
                .output()
                .unwrap()
        })
    };
    let out = invalidate(format!("http://{}", gw.admin_addr))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["invalidated"], json!({"user": "acme"}));
    assert_eq!(call().await.status, 200);
    assert_eq!(loads(), 2, "the list was loaded again after invalidate");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = invalidate(nobody).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalidate:"));
    gw.shutdown().await;
}
