//! CORS (contract §13) against the Paragon emulator: preflights answered
//! before authentication, the same on every path, only for the origins of
//! `[cors] allowed_origins`, with only the request headers credgate knows;
//! every other answer to an allowed origin (credgate's refusals included)
//! readable by it, and by no other; Paragon's own `Access-Control-*`
//! never passed on. A preflight is never forwarded or audited.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::sync::Arc;

use common::*;
use harness::*;
use http::StatusCode;
use serde_json::json;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";

async fn env_cors(extra: &str) -> Env {
    let cors = format!("[cors]\nallowed_origins = [\"{APP}\", \"http://localhost:5173\"]\n{extra}");
    Env::with(fixtures(), move |mut b| {
        b.extra_top = cors;
        b
    })
    .await
}

fn header<'g>(got: &'g Got, name: &str) -> Option<&'g str> {
    got.headers.get(name).and_then(|v| v.to_str().ok())
}

fn access_control(got: &Got) -> Vec<String> {
    got.headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(env: &Env, path: &str, origin: &str, method: &str, headers: &str) -> Got {
    let mut h = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if !headers.is_empty() {
        h.push(("access-control-request-headers", headers));
    }
    send(&env.cl, req("OPTIONS", &env.gw, path, None, &h, "")).await
}

/// The SDK's preflight, from an allowed origin, on every kind of path:
/// one answer, before authentication, naming only known headers.
#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_the_same_on_every_path() {
    let env = env_cors("allowed_headers = [\"x-app-trace\"]\nmax_age = \"5m\"").await;
    let asked = "authorization, content-type, x-paragon-sdk-version, x-paragon-credential, \
                 x-paragon-use-raw-response, x-app-trace, x-evil, cookie, x-paragon-user-metadata";
    let paths = [
        p("/sdk/me"),
        p("/sdk/proxy/salesforce/sobjects/User"),
        p("/sdk/credentials"),
        "/api/syncs".to_string(),
        "/mcp".to_string(),
        p("/no/such/route"),
        "/projects/other-project/sdk/me".to_string(),
        "/nothing".to_string(),
    ];
    let mut answers = Vec::new();
    for path in &paths {
        for method in ["GET", "POST", "DELETE", "PATCH"] {
            let got = preflight(&env, path, APP, method, asked).await;
            assert_eq!(got.status, StatusCode::NO_CONTENT, "{path} {method}");
            let mut seen: Vec<(String, String)> = got
                .headers
                .iter()
                .filter(|(k, _)| *k != "x-request-id" && *k != "date")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            seen.sort();
            answers.push(seen);
        }
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one answer: {answers:#?}"
    );
    let got = preflight(&env, &p("/sdk/me"), APP, "GET", asked).await;
    assert_eq!(header(&got, "access-control-allow-origin"), Some(APP));
    assert_eq!(
        header(&got, "access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE")
    );
    assert_eq!(
        header(&got, "access-control-allow-headers"),
        Some("authorization, content-type, x-paragon-sdk-version, x-paragon-credential, x-paragon-use-raw-response, x-app-trace")
    );
    assert_eq!(header(&got, "access-control-max-age"), Some("300"));
    assert_eq!(
        header(&got, "vary"),
        Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
    );
    assert!(header(&got, "access-control-allow-credentials").is_none());
    // Never forwarded, never audited; counted.
    assert!(env.state().requests().is_empty(), "nothing reached Paragon");
    assert!(audit_records(&env.keys).is_empty());
    let metrics = env.metrics_text().await;
    assert_eq!(
        metric(
            &metrics,
            "credgate_cors_preflights_total{result=\"allowed\"}"
        ),
        (paths.len() * 4 + 1) as f64
    );
}

/// A preflight from any other origin: 403 `cors_origin_forbidden`, no
/// `Access-Control-*`; with `[cors]` off a preflight is an ordinary
/// request (401 without a token).
#[tokio::test]
async fn a_preflight_from_another_origin_gets_nothing() {
    let env = env_cors("").await;
    for origin in [
        EVIL,
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
    ] {
        let got = preflight(&env, &p("/sdk/me"), origin, "GET", "authorization").await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(got.code(), "cors_origin_forbidden");
        assert!(
            access_control(&got).is_empty(),
            "{origin}: {:?}",
            got.headers
        );
    }
    let metrics = env.metrics_text().await;
    assert_eq!(
        metric(
            &metrics,
            "credgate_cors_preflights_total{result=\"forbidden\"}"
        ),
        5.0
    );
    assert!(env.state().requests().is_empty());
    assert!(audit_records(&env.keys).is_empty());

    let off = Env::start().await;
    let got = preflight(&off, &p("/sdk/me"), APP, "GET", "authorization").await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert!(access_control(&got).is_empty());
}

/// One request of the table: method, path, token, headers, the status.
type Case<'a> = (
    &'a str,
    String,
    Option<String>,
    Vec<(&'a str, &'a str)>,
    u16,
);

/// Every answer to an allowed origin is readable by it, credgate's own
/// refusals included; answers to other origins carry no `Access-Control-*`.
#[tokio::test]
async fn every_answer_to_an_allowed_origin_names_it_and_no_other() {
    let env = env_cors("").await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    let cases: Vec<Case> = vec![
        (
            "GET",
            sf.clone(),
            Some(alice.clone()),
            vec![("x-paragon-credential", SF_ALICE)],
            200,
        ),
        (
            "GET",
            sf.clone(),
            Some(alice.clone()),
            vec![("x-paragon-credential", SF_BOB)],
            403,
        ),
        ("GET", sf.clone(), None, vec![], 401),
        ("GET", sf.clone(), Some("not-a-token".into()), vec![], 401),
        ("GET", p("/no/such/route"), Some(alice.clone()), vec![], 404),
        (
            "GET",
            p("/sdk/proxy/salesforce/a//b"),
            Some(alice.clone()),
            vec![],
            400,
        ),
        ("GET", p("/sdk/me"), Some(alice.clone()), vec![], 200),
        ("PATCH", p("/sdk/me"), Some(alice.clone()), vec![], 403),
        (
            "OPTIONS",
            sf.clone(),
            Some(alice.clone()),
            vec![("x-paragon-credential", SF_ALICE)],
            200,
        ),
    ];
    for (method, path, token, extra, status) in &cases {
        for (origin, readable) in [(APP, true), (EVIL, false), ("", false)] {
            let mut h = extra.clone();
            if !origin.is_empty() {
                h.push(("origin", origin));
            }
            let got = send(
                &env.cl,
                req(method, &env.gw, path, token.as_deref(), &h, ""),
            )
            .await;
            assert_eq!(got.status.as_u16(), *status, "{method} {path} {origin}");
            if readable {
                assert_eq!(
                    header(&got, "access-control-allow-origin"),
                    Some(APP),
                    "{method} {path}"
                );
                assert_eq!(
                    header(&got, "access-control-expose-headers"),
                    Some("X-Request-Id, Retry-After, WWW-Authenticate")
                );
                assert!(got
                    .headers
                    .get_all("vary")
                    .iter()
                    .any(|v| v.to_str().unwrap().contains("Origin")));
                assert!(header(&got, "access-control-allow-credentials").is_none());
            } else {
                assert!(
                    access_control(&got).is_empty(),
                    "{method} {path} {origin}: {:?}",
                    got.headers
                );
            }
        }
    }
}

/// Paragon's own `Access-Control-*` headers never reach the caller, with
/// `[cors]` on or off.
#[tokio::test]
async fn paragons_access_control_headers_are_removed() {
    let upstream = spawn_recorder(Arc::new(|r: Recorded| {
        Box::pin(async move {
            if r.path.ends_with("/sdk/me") {
                return json_response(
                    StatusCode::OK,
                    me_body("acme", &[(ACME_SF_ALICE, "salesforce", "alice")]),
                );
            }
            let mut resp = json_response(StatusCode::OK, json!({"ok": true}));
            let h = resp.headers_mut();
            h.insert("access-control-allow-origin", "*".parse().unwrap());
            h.insert("access-control-allow-credentials", "true".parse().unwrap());
            h.insert("Access-Control-Expose-Headers", "x-secret".parse().unwrap());
            resp
        })
    }))
    .await;
    let keys = Keys::new();
    for cors in [
        format!("[cors]\nallowed_origins = [\"{APP}\"]\n"),
        String::new(),
    ] {
        let mut b = ConfigBuilder::new(&keys, Hosts::all(&upstream.url()));
        b.extra_top = cors.clone();
        let gw = b.start().await;
        let got = send(
            &client(),
            req(
                "GET",
                &gw,
                &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
                Some(&keys.member("acme", "alice")),
                &[("origin", EVIL), ("x-paragon-credential", ACME_SF_ALICE)],
                "",
            ),
        )
        .await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert!(access_control(&got).is_empty(), "{cors}: {:?}", got.headers);
        let got = send(
            &client(),
            req(
                "GET",
                &gw,
                &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
                Some(&keys.member("acme", "alice")),
                &[("origin", APP), ("x-paragon-credential", ACME_SF_ALICE)],
                "",
            ),
        )
        .await;
        let expected: Vec<String> = if cors.is_empty() {
            vec![]
        } else {
            vec![
                "access-control-allow-origin".into(),
                "access-control-expose-headers".into(),
            ]
        };
        let mut seen = access_control(&got);
        seen.sort();
        assert_eq!(seen, expected, "{cors}");
        if !cors.is_empty() {
            assert_eq!(header(&got, "access-control-allow-origin"), Some(APP));
        }
        gw.shutdown().await;
    }
}

/// `check-config` refuses what is not exactly an origin, warns on plain
/// http to anything but loopback, and caps `max_age`.
#[test]
fn cors_config_is_checked() {
    let keys = Keys::new();
    for (cors, key) in [
        ("allowed_origins = [\"*\"]", "cors.allowed_origins"),
        ("allowed_origins = [\"null\"]", "cors.allowed_origins"),
        (
            "allowed_origins = [\"https://app.example.com/\"]",
            "cors.allowed_origins",
        ),
        (
            "allowed_origins = [\"https://*.example.com\"]",
            "cors.allowed_origins",
        ),
        ("allowed_headers = [\"bad header\"]", "cors.allowed_headers"),
        ("allowed_headers = [\"cookie\"]", "cors.allowed_headers"),
        ("max_age = \"3h\"", "cors.max_age"),
        ("allow_credentials = true", "cors.allow_credentials"),
    ] {
        let mut b = ConfigBuilder::new(&keys, Hosts::all("http://127.0.0.1:1"));
        b.extra_top = format!("[cors]\n{cors}\n");
        let err = credgate::config::Config::from_toml(
            &b.toml(),
            keys.path(),
            &std::collections::HashMap::<String, String>::new(),
        )
        .expect_err(cors);
        assert_eq!(err.key, key, "{cors}: {err:?}");
    }
    let mut b = ConfigBuilder::new(&keys, Hosts::all("http://127.0.0.1:1"));
    b.extra_top =
        "[cors]\nallowed_origins = [\"http://app.example.com\", \"http://localhost:3000\"]\n"
            .into();
    let c = b.build();
    let warned: Vec<&String> = c.warnings.iter().filter(|w| w.contains("cors")).collect();
    assert_eq!(warned.len(), 1, "{:?}", c.warnings);
    assert!(warned[0].contains("http://app.example.com"));
    assert!(c.to_effective_toml().contains("[cors]"));
}
