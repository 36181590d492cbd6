//! The admin listener answers only requests a web page cannot forge
//! (contract §9): a `Host` naming it (loopback, its own address, or
//! `server.admin_hosts`) against DNS rebinding, and for a state change
//! `Content-Type: application/json` and, when sent, an `Origin` of an
//! allowed host, against cross-site requests. Against the Paragon
//! emulator, so a test sees that a refused request loaded nothing.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::time::Duration;

use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use harness::*;
use serde_json::json;

/// A name an operator reaches the admin listener by.
const OPS_NAME: &str = "credgate-admin.internal";

async fn env() -> Env {
    Env::with(fixtures(), |b| {
        b.server(&format!("admin_hosts = [\"{OPS_NAME}\"]"))
    })
    .await
}

/// One request to the admin listener with exactly these headers (a `Host`
/// among them replaces the client's own).
async fn admin(env: &Env, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", env.gw.admin_addr));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(
        &env.cl,
        b.body(credgate::net::body::full(body.to_string())).unwrap(),
    )
    .await
}

fn assert_forbidden(got: &Got, code: &str, what: &str) {
    assert_eq!(got.status, 403, "{what}: {:?}", got.body);
    assert_eq!(got.code(), code, "{what}");
    assert_eq!(got.headers["content-type"], "application/json", "{what}");
    let text = String::from_utf8_lossy(&got.body);
    for leak in [
        DEMO_SALESFORCE_ALICE,
        DEMO_SALESFORCE_BOB,
        "credgate_",
        "<html",
        "acme",
        "ready",
    ] {
        assert!(!text.contains(leak), "{what} leaked {leak:?}: {text}");
    }
}

fn me_loads(env: &Env) -> usize {
    env.state()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/sdk/me"))
        .count()
}

fn refused_count(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("credgate_admin_refused_total{{reason=\"{reason}\"}}"),
    )
}

/// A page whose name rebinds to 127.0.0.1 reads nothing: the access
/// review, the dashboard, metrics and health all answer 403
/// `forbidden_host` without loading anything from Paragon, however the
/// foreign host is spelled (with a port, in an absolute-form target) or
/// left out.
#[tokio::test]
async fn a_rebound_host_reads_nothing() {
    let env = env().await;
    env.state().clear_requests();
    for path in [
        "/admin/access?user=acme",
        "/?user=acme",
        "/metrics",
        "/healthz",
        "/readyz",
        "/nope",
    ] {
        for host in [
            "evil.example",
            "evil.example:9901",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "foo.localhost",
        ] {
            let got = admin(&env, "GET", path, &[("host", host)], "").await;
            assert_forbidden(&got, "forbidden_host", &format!("GET {path} Host: {host}"));
        }
    }
    assert!(
        env.state().requests().is_empty(),
        "a refused review reached Paragon: {:#?}",
        env.state().requests()
    );
    // No Host at all (HTTP/1.1 and 1.0), two of them, or a foreign host in
    // the request target: refused too.
    let addr = env.gw.admin_addr;
    let own = format!("Host: {addr}\r\n");
    for head in [
        "GET /metrics HTTP/1.1\r\n\r\n".to_string(),
        "GET /metrics HTTP/1.0\r\n\r\n".to_string(),
        format!("GET /metrics HTTP/1.1\r\n{own}Host: evil.example\r\n\r\n"),
        format!("GET http://evil.example/metrics HTTP/1.1\r\n{own}\r\n"),
    ] {
        let out = raw(addr, head.as_bytes(), Duration::from_secs(2)).await;
        let status = out.get(..12).unwrap_or_default();
        assert!(status.ends_with(" 403"), "{head:?}: {out}");
        assert!(out.contains("forbidden_host"), "{out}");
        assert!(!out.contains("credgate_"), "{out}");
    }
    // Counted by reason.
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(refused_count(&metrics, "forbidden_host"), 34.0);
    env.gw.shutdown().await;
}

/// Loopback in every spelling, the listener's own address with any port
/// (port-forwarding changes it), and a name in `server.admin_hosts` are
/// served.
#[tokio::test]
async fn hosts_naming_the_listener_are_served() {
    let env = env().await;
    let own = env.gw.admin_addr.to_string();
    let ops_with_port = format!("{OPS_NAME}:9901");
    let ops_upper = format!("{}.", OPS_NAME.to_ascii_uppercase());
    for host in [
        "localhost",
        "localhost:1234",
        "LocalHost.:9901",
        own.as_str(),
        "127.0.0.1",
        "127.0.0.2:80",
        "[::1]",
        "[::1]:9901",
        OPS_NAME,
        &ops_with_port,
        &ops_upper,
    ] {
        let got = admin(&env, "GET", "/metrics", &[("host", host)], "").await;
        assert_eq!(got.status, 200, "Host: {host}: {:?}", got.body);
        assert!(String::from_utf8_lossy(&got.body).contains("credgate_credential_cache_users"));
        let got = admin(
            &env,
            "GET",
            "/admin/access?user=acme",
            &[("host", host)],
            "",
        )
        .await;
        assert_eq!(got.status, 200, "Host: {host}: {:?}", got.body);
        assert!(
            got.body
                .windows(DEMO_SALESFORCE_ALICE.len())
                .any(|w| w == DEMO_SALESFORCE_ALICE.as_bytes()),
            "the review lists the accounts"
        );
        let got = admin(&env, "GET", "/?user=acme", &[("host", host)], "").await;
        assert_eq!(got.status, 200, "Host: {host}");
    }
    // A name close to the listed one is not it.
    for host in ["admin.internal", "x.credgate-admin.internal"] {
        let got = admin(&env, "GET", "/healthz", &[("host", host)], "").await;
        assert_forbidden(&got, "forbidden_host", host);
    }
    env.gw.shutdown().await;
}

/// `POST /admin/cache/invalidate` as a web page could send it (text/plain,
/// a form, no type, a foreign or opaque `Origin`, `Sec-Fetch-Site:
/// cross-site`) is refused and the cached list stays; as credgate's own
/// clients send it (JSON, no Origin or a local one) it is dropped.
#[tokio::test]
async fn invalidation_needs_json_from_a_local_origin() {
    let env = env().await;
    let use_alice = || env.salesforce_get("alice", "x", DEMO_SALESFORCE_ALICE, &[]);
    assert_eq!(use_alice().await.status, 200);
    assert_eq!(me_loads(&env), 1);
    let json = ("content-type", "application/json");
    let refusals: &[(&[(&str, &str)], &str)] = &[
        (&[("content-type", "text/plain")], "forbidden_content_type"),
        (
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("origin", "https://evil.example"),
            ],
            "forbidden_origin",
        ),
        (
            &[("content-type", "application/x-www-form-urlencoded")],
            "forbidden_content_type",
        ),
        (
            &[("content-type", "multipart/form-data; boundary=x")],
            "forbidden_content_type",
        ),
        (
            &[("content-type", "application/json;,text/plain")],
            "forbidden_content_type",
        ),
        (&[], "forbidden_content_type"),
        (
            &[json, ("origin", "https://evil.example")],
            "forbidden_origin",
        ),
        (
            &[json, ("origin", "http://localhost.evil.example:9901")],
            "forbidden_origin",
        ),
        (&[json, ("origin", "null")], "forbidden_origin"),
        (
            &[json, ("sec-fetch-site", "cross-site")],
            "forbidden_origin",
        ),
        (&[json, ("host", "evil.example")], "forbidden_host"),
    ];
    for (headers, code) in refusals {
        let got = admin(&env, "POST", "/admin/cache/invalidate", headers, "{}").await;
        assert_forbidden(&got, code, &format!("{headers:?}"));
        assert_eq!(use_alice().await.status, 200);
        assert_eq!(me_loads(&env), 1, "{headers:?} dropped the cached list");
    }
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(refused_count(&metrics, "forbidden_content_type"), 5.0);
    assert_eq!(refused_count(&metrics, "forbidden_origin"), 5.0);
    assert_eq!(refused_count(&metrics, "forbidden_host"), 1.0);

    // credgate's own way, and a browser on the listener's own origin.
    let mut loads = 1;
    for headers in [
        vec![json],
        vec![("content-type", "Application/JSON; charset=utf-8")],
        vec![json, ("origin", "http://localhost:9901")],
        vec![
            json,
            ("origin", "http://127.0.0.1:9901"),
            ("sec-fetch-site", "same-origin"),
        ],
    ] {
        let got = admin(
            &env,
            "POST",
            "/admin/cache/invalidate",
            &headers,
            r#"{"user": "acme"}"#,
        )
        .await;
        assert_eq!(got.status, 200, "{headers:?}: {:?}", got.body);
        assert_eq!(got.json()["invalidated"], json!({"user": "acme"}));
        assert_eq!(use_alice().await.status, 200);
        loads += 1;
        assert_eq!(
            me_loads(&env),
            loads,
            "{headers:?}: the list was loaded again"
        );
    }
    env.gw.shutdown().await;
}

/// `POST /admin/decide` follows the same rules: a cross-site question is
/// refused before it loads anything; a JSON one from no or a local origin
/// is answered.
#[tokio::test]
async fn decide_needs_json_from_a_local_origin() {
    let env = env().await;
    let question = json!({
        "identity": {"user": "acme", "principal": "alice"},
        "path": format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
        "headers": {"X-Paragon-Credential": DEMO_SALESFORCE_BOB},
    })
    .to_string();
    env.state().clear_requests();
    let json = ("content-type", "application/json");
    for (headers, code) in [
        (
            vec![("content-type", "text/plain")],
            "forbidden_content_type",
        ),
        (
            vec![json, ("origin", "https://evil.example")],
            "forbidden_origin",
        ),
        (vec![json, ("origin", "null")], "forbidden_origin"),
        (vec![json, ("host", "evil.example")], "forbidden_host"),
    ] {
        let got = admin(&env, "POST", "/admin/decide", &headers, &question).await;
        assert_forbidden(&got, code, &format!("{headers:?}"));
    }
    assert!(
        env.state().requests().is_empty(),
        "a refused question reached Paragon"
    );
    for headers in [vec![json], vec![json, ("origin", "http://localhost:9901")]] {
        let got = admin(&env, "POST", "/admin/decide", &headers, &question).await;
        assert_eq!(got.status, 200, "{headers:?}: {:?}", got.body);
        assert_eq!(
            got.json()["decision"],
            "refused",
            "bob's account is not alice's"
        );
    }
    env.gw.shutdown().await;
}

/// credgate's own clients pass: `credgate invalidate`, `explain`,
/// `access` and `healthcheck` against the admin listener.
#[tokio::test]
async fn credgates_own_admin_commands_pass() {
    let env = env().await;
    let admin = format!("http://{}", env.gw.admin_addr);
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
                .args(&args)
                .output()
                .unwrap()
        })
    };
    let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/x");
    for args in [
        vec!["invalidate", "--admin", &admin, "--user", "acme"],
        vec!["invalidate", "--admin", &admin],
        vec![
            "access", "--admin", &admin, "--user", "acme", "--format", "json",
        ],
        vec![
            "explain",
            "--admin",
            &admin,
            "--user",
            "acme",
            "--principal",
            "alice",
            "--path",
            &path,
            "--header",
            &format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}"),
        ],
    ] {
        let out = run(args.iter().map(ToString::to_string).collect())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(vec![
        "healthcheck".into(),
        "--url".into(),
        format!("{admin}/healthz"),
    ])
    .await
    .unwrap();
    assert!(out.status.success());
    let metrics = scrape_metrics(&env.gw).await;
    assert!(
        !metrics.contains("credgate_admin_refused_total{"),
        "nothing was refused: {metrics}"
    );
    env.gw.shutdown().await;
}

/// A refusal is logged once at warn, with the path but not its query (a
/// Connected User's name) and the foreign Host escaped.
#[tokio::test]
async fn a_refusal_is_logged_without_the_query() {
    let keys = Keys::new();
    let builder = ConfigBuilder::new(&keys, Hosts::all("http://127.0.0.1:9"));
    let path = keys.dir.write("credgate.toml", &builder.toml());
    let bin = Binary::serve(&path, &[]);
    let got = send(
        &client(),
        http::Request::get(format!(
            "http://{}/admin/access?user=secret-user-name",
            bin.admin_addr
        ))
        .header("host", "evil.example")
        .body(credgate::net::body::empty())
        .unwrap(),
    )
    .await;
    assert_eq!(got.status, 403);
    bin.wait_for_log("admin request refused").await;
    let line = bin
        .log_text()
        .lines()
        .find(|l| l.contains("admin request refused"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
    assert_eq!(v["path"], "/admin/access", "{line}");
    assert_eq!(v["code"], "forbidden_host", "{line}");
    assert!(
        v["host"].as_str().unwrap().contains("evil.example"),
        "{line}"
    );
    assert!(!bin.log_text().contains("secret-user-name"), "{line}");
}
