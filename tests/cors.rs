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

// ---------------------------------------------------------------------
// Tables (contract §13 "CORS"): every route family x every routed method
// x allowed and other origins; every request header; every refusal;
// Paragon's own `Access-Control-*`; `[cors]` off. Each failing case names
// its inputs.
// ---------------------------------------------------------------------

/// The methods credgate routes (contract §13), as a preflight asks for them.
const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const EXPOSE: &str = "X-Request-Id, Retry-After, WWW-Authenticate";
/// What the SDK sends on every call besides its token.
const SDK: (&str, &str) = ("x-paragon-sdk-version", "2.4.0");

/// One path per route family of contract §3 (and §13's install routes,
/// which credgate may not serve yet), and paths no route has: a preflight
/// must not tell them apart.
fn every_path() -> Vec<(&'static str, String)> {
    let v2 = |rest: &str| format!("/v2/projects/{PROJECT}{rest}");
    vec![
        ("connect", p("/sdk/me")),
        ("connect", p("/sdk/integrations")),
        ("connect", p("/sdk/metadata")),
        ("connect", p("/sdk/integrations/int-1")),
        ("connect", p("/sdk/credentials")),
        ("connect", p(&format!("/sdk/credentials/{SF_ALICE}"))),
        (
            "connect",
            p(&format!("/sdk/credentials/{SF_ALICE}/configurations")),
        ),
        ("connect", p("/sdk/workflows/wf-1")),
        ("connect", p("/sdk/credentials?includeAccountAuth=true")),
        ("install", v2("/sdk/actions/build-oauth?userToken=t")),
        ("install", p("/sdk/actions/oauth-nonce?userToken=t")),
        ("install", p("/sdk/actions/session-id/s-1")),
        ("workflows", p("/sdk/triggers/wf-1")),
        ("events", p("/sdk/events/trigger")),
        ("events", v2("/sdk/events/trigger")),
        (
            "proxy",
            p("/sdk/proxy/salesforce/services/data/v59.0/query?q=x"),
        ),
        ("proxy", p("/sdk/proxy/slack")),
        ("proxy", p("/sdk/proxy/custom/abc/items")),
        ("proxy", p("/sdk/proxy/salesforce/https://evil.example/x")),
        ("actionkit", p("/actions")),
        ("actionkit", p("/tools")),
        ("actionkit", p("/triggers")),
        ("actionkit", p("/trigger-subscriptions")),
        ("actionkit", p("/trigger-subscriptions/ts-1/events")),
        ("sync", "/api/syncs".into()),
        ("sync", "/api/syncs/s-1".into()),
        ("sync", "/api/syncs/s-1/records/r-1/content".into()),
        ("sync", "/api/permissions/s-1/batch-check".into()),
        ("agentos", format!("/api/tools/projects/{PROJECT}/search")),
        ("agentos", format!("/api/context/projects/{PROJECT}")),
        ("mcp", "/mcp".into()),
        ("mcp", "/.well-known/oauth-protected-resource".into()),
        ("mcp", "/.well-known/oauth-protected-resource/mcp".into()),
        ("unknown", p("/no/such/route")),
        ("unknown", "/projects/other-project/sdk/me".into()),
        ("unknown", "/nothing".into()),
        ("unknown", "/".into()),
        ("unknown", "/metrics".into()),
        ("unknown", "/admin/access".into()),
    ]
}

type Headers<'a> = Vec<(&'a str, &'a str)>;
/// What, path, token, headers, status, whether forwarded, whether
/// readable by `APP`.
type NotPreflight<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    Headers<'a>,
    u16,
    bool,
    bool,
);
/// Route family, method, path, headers, body, status for a member and for
/// an admin.
type Upstreamed<'a> = (&'a str, &'a str, String, Headers<'a>, &'a str, (u16, u16));
/// What, method, path, headers, status.
type Ordinary<'a> = (&'a str, &'a str, String, Headers<'a>, u16);

/// An allowed origin as configured, and as a browser might spell it
/// (origins' scheme and host are case-insensitive, RFC 6454 §4).
const ALLOWED_ORIGINS: [&str; 3] = [APP, "http://localhost:5173", "HTTPS://App.Example.COM"];
/// Near misses of the allowed origins, `null` and foreign ones.
const OTHER_ORIGINS: [&str; 12] = [
    EVIL,
    "null",
    "",
    "https://app.example.com/",
    "https://app.example.com:443",
    "https://app.example.com:8443",
    "http://app.example.com",
    "https://app.example.com.evil.example",
    "https://evil.example/https://app.example.com",
    "http://localhost:5174",
    "http://localhost",
    "https://app.example.com, https://evil.example",
];

/// `Access-Control-*` values never say `*` and credentials are never
/// allowed (contract §13), whatever the answer.
fn assert_no_wildcard_nor_credentials(got: &Got, case: &str) {
    assert!(
        !got.headers.contains_key("access-control-allow-credentials"),
        "{case}: {:?}",
        got.headers
    );
    for (k, v) in &got.headers {
        if k.as_str().starts_with("access-control-") {
            let v = v.to_str().unwrap_or_default();
            assert!(
                !v.split(',').any(|item| item.trim() == "*"),
                "{case}: {k}: {v}"
            );
        }
    }
}

/// Every comma-separated item of every `name` header, lowercase.
fn items(got: &Got, name: &str) -> Vec<String> {
    got.headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|i| i.trim().to_ascii_lowercase())
        .filter(|i| !i.is_empty())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<String> {
    sorted(list.iter().map(|s| s.to_ascii_lowercase()).collect())
}

/// An answer as the caller sees it, less what differs per request (its
/// id, its date, and so its body's length).
fn signature(got: &Got) -> (u16, Vec<(String, String)>, String) {
    let mut headers: Vec<(String, String)> = got
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date" | "content-length"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    let body = match serde_json::from_slice::<serde_json::Value>(&got.body) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.remove("requestId");
            }
            v.to_string()
        }
        Err(_) => String::from_utf8_lossy(&got.body).into_owned(),
    };
    (got.status.as_u16(), headers, body)
}

/// A credgate refusal in contract §8's shape with this code.
fn assert_refusal_body(got: &Got, code: &str, case: &str) {
    let v = got.json();
    assert_eq!(v["code"], code, "{case}: {v}");
    assert_eq!(
        v["requestId"].as_str(),
        header(got, "x-request-id"),
        "{case}: {v}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: {v}"
    );
    assert_eq!(
        header(got, "content-type"),
        Some("application/json"),
        "{case}"
    );
}

/// Checks an allowed preflight's answer: 204 and exactly contract §13's
/// headers.
fn assert_preflight_allowed(
    got: &Got,
    origin: &str,
    expect_headers: &[&str],
    max_age: &str,
    case: &str,
) {
    assert_eq!(got.status, StatusCode::NO_CONTENT, "{case}: {:?}", got.body);
    let mut present: Vec<String> = got
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k != "x-request-id" && k != "date")
        .collect();
    present.sort();
    let mut expected = vec![
        "access-control-allow-methods",
        "access-control-allow-origin",
        "access-control-max-age",
        "vary",
    ];
    if !expect_headers.is_empty() {
        expected.push("access-control-allow-headers");
    }
    assert_eq!(present, names(&expected), "{case}: {:?}", got.headers);
    assert_eq!(
        got.headers
            .get_all("access-control-allow-origin")
            .iter()
            .count(),
        1,
        "{case}"
    );
    assert_eq!(
        header(got, "access-control-allow-origin"),
        Some(origin),
        "{case}"
    );
    assert_eq!(
        sorted(items(got, "access-control-allow-methods")),
        names(&METHODS),
        "{case}"
    );
    let allowed = items(got, "access-control-allow-headers");
    assert_eq!(sorted(allowed.clone()), names(expect_headers), "{case}");
    assert_eq!(
        allowed.len(),
        names(expect_headers).len(),
        "{case}: each once: {allowed:?}"
    );
    assert_eq!(
        header(got, "access-control-max-age"),
        Some(max_age),
        "{case}"
    );
    assert_eq!(
        sorted(items(got, "vary")),
        names(&[
            "Origin",
            "Access-Control-Request-Method",
            "Access-Control-Request-Headers"
        ]),
        "{case}"
    );
    assert!(got.body.is_empty(), "{case}: {:?}", got.body);
}

/// A request that reaches no audit record: sends an ordinary refused
/// request and waits for its record, then expects it to be the only one
/// written since `before` records.
async fn assert_no_audit_since(env: &Env, before: usize, what: &str) {
    let got = send(&env.cl, req("GET", &env.gw, "/nothing", None, &[], "")).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    let id = rid(&got);
    wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
    let records = audit_records(&env.keys);
    assert_eq!(
        records.len(),
        before + 1,
        "{what} wrote audit records: {:#?}",
        &records[before..]
    );
}

/// Item 1: a preflight on every route family, for every routed method,
/// from allowed origins (any case), near misses, `null` and foreign ones:
/// one answer per origin whatever the path and method, nothing forwarded,
/// nothing audited, every one counted.
#[tokio::test]
async fn preflight_table_every_route_family_method_and_origin() {
    // MCP on: `/mcp` and its metadata documents are served routes too.
    let env = env_cors("max_age = \"5m\"\n[mcp]\nenabled = true").await;
    // `x-app-trace` is not configured here, `x-evil` never allowed.
    let asked = "authorization, content-type, x-paragon-sdk-version, x-paragon-credential, x-app-trace, x-evil";
    let echoed = [
        "authorization",
        "content-type",
        "x-paragon-sdk-version",
        "x-paragon-credential",
    ];
    let paths = every_path();
    let mut first: std::collections::HashMap<&str, (_, String)> = Default::default();
    let mut cases = 0;
    // Preflights sent from an allowed origin, and from any other.
    let (mut allowed, mut forbidden) = (0, 0);
    for (family, path) in &paths {
        for method in METHODS {
            for origin in ALLOWED_ORIGINS.iter().chain(OTHER_ORIGINS.iter()) {
                let case = format!(
                    "[{family}] OPTIONS {path} Access-Control-Request-Method: {method} Origin: {origin:?}"
                );
                let got = preflight(&env, path, origin, method, asked).await;
                assert_no_wildcard_nor_credentials(&got, &case);
                if ALLOWED_ORIGINS.contains(origin) {
                    allowed += 1;
                    assert_preflight_allowed(&got, origin, &echoed, "300", &case);
                } else {
                    forbidden += 1;
                    assert_eq!(got.status, StatusCode::FORBIDDEN, "{case}: {:?}", got.body);
                    assert_refusal_body(&got, "cors_origin_forbidden", &case);
                    assert!(access_control(&got).is_empty(), "{case}: {:?}", got.headers);
                }
                let sig = signature(&got);
                match first.get(origin) {
                    None => {
                        first.insert(origin, (sig, case));
                    }
                    Some((s, c)) => assert_eq!(s, &sig, "{case}\nanswered unlike\n{c}"),
                }
                cases += 1;
            }
        }
    }
    // Over HTTP/2 (h2c), the same answers.
    let h2 = h2_client();
    for (family, path) in paths.iter().step_by(5) {
        for origin in [APP, EVIL, "null"] {
            let case = format!("HTTP/2 [{family}] OPTIONS {path} Origin: {origin:?}");
            let got = send(
                &h2,
                req(
                    "OPTIONS",
                    &env.gw,
                    path,
                    None,
                    &[
                        ("origin", origin),
                        ("access-control-request-method", "POST"),
                        ("access-control-request-headers", asked),
                    ],
                    "",
                ),
            )
            .await;
            let (s, c) = &first[origin];
            if origin == APP {
                allowed += 1;
            } else {
                forbidden += 1;
            }
            assert_eq!(s, &signature(&got), "{case}\nanswered unlike\n{c}");
            cases += 1;
        }
    }
    // Two `Origin` fields, even both allowed, are no allowed origin.
    let two = send(
        &env.cl,
        req(
            "OPTIONS",
            &env.gw,
            &p("/sdk/me"),
            None,
            &[
                ("origin", APP),
                ("origin", APP),
                ("access-control-request-method", "GET"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(two.status, StatusCode::FORBIDDEN);
    forbidden += 1;
    assert!(access_control(&two).is_empty(), "{:?}", two.headers);
    cases += 1;

    assert!(
        env.state().requests().is_empty(),
        "a preflight reached Paragon: {:#?}",
        env.state().requests()
    );
    assert_no_audit_since(&env, 0, "preflights").await;
    assert_eq!(allowed + forbidden, cases);
    let metrics = env.metrics_text().await;
    assert_eq!(
        metric(
            &metrics,
            "credgate_cors_preflights_total{result=\"allowed\"}"
        ),
        allowed as f64
    );
    assert_eq!(
        metric(
            &metrics,
            "credgate_cors_preflights_total{result=\"forbidden\"}"
        ),
        forbidden as f64
    );
    println!("preflight table: {cases} cases");
}

/// Item 1 (the edges of "a preflight"): an `OPTIONS` without `Origin` or
/// without `Access-Control-Request-Method` is an ordinary request (the
/// Proxy API's `OPTIONS`), neither answered as a preflight nor counted; a
/// preflight-shaped request on a non-normalized path is refused by path
/// hygiene first (400), readable by an allowed origin only.
#[tokio::test]
async fn options_that_are_no_preflight_are_ordinary_requests() {
    let env = env_cors("").await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    let cases: Vec<NotPreflight> = vec![
        (
            "Origin, no request method, no token",
            p("/sdk/me"),
            None,
            vec![("origin", APP)],
            401,
            false,
            true,
        ),
        (
            "Origin (foreign), no request method, no token",
            p("/sdk/me"),
            None,
            vec![("origin", EVIL)],
            401,
            false,
            false,
        ),
        (
            "request method, no Origin, no token",
            p("/sdk/me"),
            None,
            vec![("access-control-request-method", "GET")],
            401,
            false,
            false,
        ),
        (
            "Proxy API OPTIONS from an allowed page",
            sf.clone(),
            Some(&alice),
            vec![("origin", APP), ("x-paragon-credential", SF_ALICE)],
            200,
            true,
            true,
        ),
        (
            "Proxy API OPTIONS with a request method, no Origin",
            sf.clone(),
            Some(&alice),
            vec![
                ("access-control-request-method", "GET"),
                ("x-paragon-credential", SF_ALICE),
            ],
            200,
            true,
            false,
        ),
        (
            "preflight on a non-normalized path, allowed origin",
            p("/sdk/proxy/salesforce/a%2Fb"),
            None,
            vec![("origin", APP), ("access-control-request-method", "GET")],
            400,
            false,
            true,
        ),
        (
            "preflight on a non-normalized path, foreign origin",
            p("/sdk/proxy/salesforce/a/../b"),
            None,
            vec![("origin", EVIL), ("access-control-request-method", "GET")],
            400,
            false,
            false,
        ),
    ];
    for (case, path, token, headers, status, forwarded, readable) in &cases {
        let case = format!("{case}: OPTIONS {path} {headers:?}");
        let got = send(&env.cl, req("OPTIONS", &env.gw, path, *token, headers, "")).await;
        assert_eq!(got.status.as_u16(), *status, "{case}: {:?}", got.body);
        assert_no_wildcard_nor_credentials(&got, &case);
        if *status >= 400 {
            let code = if *status == 400 {
                "bad_request"
            } else {
                "unauthenticated"
            };
            assert_refusal_body(&got, code, &case);
        }
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), usize::from(*forwarded), "{case}: {fwd:#?}");
        if *forwarded {
            assert_eq!(fwd[0].method, "OPTIONS", "{case}");
        }
        if *readable {
            assert_eq!(
                header(&got, "access-control-allow-origin"),
                Some(APP),
                "{case}"
            );
            assert_eq!(
                header(&got, "access-control-expose-headers"),
                Some(EXPOSE),
                "{case}"
            );
            assert!(
                !got.headers.contains_key("access-control-allow-methods"),
                "{case}"
            );
        } else {
            assert!(access_control(&got).is_empty(), "{case}: {:?}", got.headers);
        }
    }
    let metrics = env.metrics_text().await;
    for result in ["allowed", "forbidden"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("credgate_cors_preflights_total{{result=\"{result}\"}}")
            ),
            0.0,
            "{result}"
        );
    }
}

/// Item 2: which requested headers a preflight allows: each always-allowed
/// name (any case), every member `X-Paragon-*` header credgate knows, the
/// configured extras; never anything else; lists in any spacing, repeated,
/// over several fields.
#[tokio::test]
async fn preflight_request_headers_table() {
    let env = Env::with(fixtures(), |mut b| {
        b.extra_top =
            format!("[cors]\nallowed_origins = [\"{APP}\"]\nallowed_headers = [\"X-App-Trace\"]\n");
        b.policy("member_paragon_headers = [\"X-Paragon-Custom-Flag\"]")
    })
    .await;
    let mut always: Vec<&str> = vec![
        "authorization",
        "content-type",
        "x-paragon-credential",
        "x-paragon-configuration-id",
        "x-paragon-proxy-url",
        "x-paragon-use-raw-response",
        "x-paragon-use-slack-token-type",
        "x-paragon-sdk-version",
        "x-request-id",
        "traceparent",
        "tracestate",
    ];
    for h in credgate::gateway::headers::MEMBER_PARAGON_HEADERS {
        if !always.contains(h) {
            always.push(h);
        }
    }
    let configured = ["x-app-trace", "x-paragon-custom-flag"];
    let never = [
        "x-paragon-admin",
        "x-paragon-admin-token",
        "x-paragon-user-metadata",
        "x-paragon-credentials",
        "x-paragon",
        "x_paragon_credential",
        "x-paragon_credential",
        "x-paragon-sdk-version2",
        "cookie",
        "cookie2",
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-original-method",
        "x-http-method-override",
        "x-envoy-original-path",
        "proxy-authorization",
        "connection",
        "origin",
        "access-control-allow-origin",
        "x-foo",
        "x-app-tracex",
        "x-app",
        "authorizationx",
    ];
    // (asked, one value per field; expected names)
    let mut cases: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for h in always.iter().chain(configured.iter()) {
        cases.push((vec![h.to_string()], vec![h.to_string()]));
        cases.push((vec![h.to_ascii_uppercase()], vec![h.to_string()]));
        let title: String = h
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        cases.push((vec![title], vec![h.to_string()]));
    }
    for h in never {
        cases.push((vec![h.to_string()], vec![]));
        cases.push((vec![h.to_ascii_uppercase()], vec![]));
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (asked, expected) in [
        (
            s(&["authorization,content-type"]),
            s(&["authorization", "content-type"]),
        ),
        (
            s(&["authorization ,\tcontent-type  ,x-paragon-sdk-version"]),
            s(&["authorization", "content-type", "x-paragon-sdk-version"]),
        ),
        (
            s(&["authorization, Authorization, AUTHORIZATION"]),
            s(&["authorization"]),
        ),
        (s(&[",,authorization,, ,"]), s(&["authorization"])),
        (s(&[""]), s(&[])),
        (s(&[" , "]), s(&[])),
        (
            s(&["x-foo, authorization, cookie, X-Paragon-Credential, x-paragon-admin"]),
            s(&["authorization", "x-paragon-credential"]),
        ),
        (
            s(&[
                "authorization",
                "x-paragon-credential, x-foo",
                "X-App-Trace",
            ]),
            s(&["authorization", "x-paragon-credential", "x-app-trace"]),
        ),
        (
            s(&["authorization", "authorization"]),
            s(&["authorization"]),
        ),
        (s(&["authorization;x-foo"]), s(&[])),
        (
            vec![always.join(", ") + ", " + &configured.join(",") + "," + &never.join(",")],
            always
                .iter()
                .chain(configured.iter())
                .map(|x| x.to_string())
                .collect(),
        ),
    ] {
        cases.push((asked, expected));
    }
    // No `Access-Control-Request-Headers` at all.
    cases.push((vec![], vec![]));

    for (asked, expected) in &cases {
        let case = format!("Access-Control-Request-Headers: {asked:?}");
        let mut h = vec![("origin", APP), ("access-control-request-method", "POST")];
        for a in asked {
            h.push(("access-control-request-headers", a));
        }
        let got = send(
            &env.cl,
            req(
                "OPTIONS",
                &env.gw,
                &p("/sdk/proxy/salesforce/x"),
                None,
                &h,
                "",
            ),
        )
        .await;
        assert_no_wildcard_nor_credentials(&got, &case);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_preflight_allowed(&got, APP, &expected, "600", &case);
    }

    // Without the config, the extras are not allowed.
    let plain = env_cors("").await;
    for h in configured {
        let got = preflight(&plain, &p("/sdk/me"), APP, "GET", h).await;
        assert_preflight_allowed(&got, APP, &[], "600", &format!("{h} unconfigured"));
    }
    assert!(env.state().requests().is_empty());
    println!(
        "request header table: {} cases",
        cases.len() + configured.len()
    );
}

/// One request of the refusal table and what credgate must answer.
struct Refusal {
    what: &'static str,
    method: &'static str,
    path: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: u16,
    /// credgate's code; `None` for an answer that is Paragon's.
    code: Option<&'static str>,
}

impl Refusal {
    fn new(what: &'static str, method: &'static str, path: String, token: Option<&str>) -> Self {
        Refusal {
            what,
            method,
            path,
            token: token.map(str::to_string),
            headers: Vec::new(),
            body: String::new(),
            status: 0,
            code: None,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    fn body(mut self, body: String) -> Self {
        self.body = body;
        self
    }

    fn is(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn passes(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same request as Paragon's SDK sends it.
    fn sdk(&self) -> Self {
        Refusal {
            what: self.what,
            method: self.method,
            path: self.path.clone(),
            token: self.token.clone(),
            headers: self
                .headers
                .iter()
                .cloned()
                .chain([(SDK.0, SDK.1.to_string())])
                .collect(),
            body: self.body.clone(),
            status: self.status,
            code: self.code,
        }
    }
}

/// Sends `case` from an allowed origin, a foreign one and none, and
/// checks each answer: status, body (contract §8, or §13's SDK shape when
/// the SDK sent it), and who may read it. Returns the number of requests.
async fn check_refusal(env: &Env, case: &Refusal) -> usize {
    let sdk = case.headers.iter().any(|(k, _)| *k == SDK.0);
    for origin in [APP, EVIL, ""] {
        let what = format!(
            "{} ({}): {} {} token={} headers={:?} body={}B Origin: {origin:?}",
            case.what,
            if sdk { "SDK" } else { "no SDK" },
            case.method,
            case.path,
            case.token.is_some(),
            case.headers,
            case.body.len()
        );
        let mut h: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if !origin.is_empty() {
            h.push(("origin", origin));
        }
        let got = send(
            &env.cl,
            req(
                case.method,
                &env.gw,
                &case.path,
                case.token.as_deref(),
                &h,
                case.body.clone(),
            ),
        )
        .await;
        assert_eq!(
            got.status.as_u16(),
            case.status,
            "{what}: {}",
            String::from_utf8_lossy(&got.body)
        );
        assert_no_wildcard_nor_credentials(&got, &what);
        if let Some(code) = case.code {
            let sdk_shaped = sdk && (case.status == 403 || code == "credential_required");
            if sdk_shaped {
                let v = got.json();
                assert_eq!(v["code"], "7210", "{what}: {v}");
                assert_eq!(v["status"], case.status, "{what}: {v}");
                assert_eq!(v["credgate"]["code"], code, "{what}: {v}");
                assert_eq!(
                    v["credgate"]["requestId"].as_str(),
                    header(&got, "x-request-id"),
                    "{what}: {v}"
                );
                assert!(
                    v["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{what}: {v}"
                );
                if code == "credential_required" {
                    assert!(v["credgate"]["candidates"].is_array(), "{what}: {v}");
                }
            } else {
                assert_refusal_body(&got, code, &what);
                if code == "credential_required" {
                    assert!(got.json()["candidates"].is_array(), "{what}");
                }
            }
            if !code.starts_with("upstream_") {
                assert!(env.forwarded(&got).is_empty(), "{what}: reached Paragon");
            }
        }
        match case.status {
            401 => assert!(got.headers.contains_key("www-authenticate"), "{what}"),
            429 => assert!(got.headers.contains_key("retry-after"), "{what}"),
            _ => {}
        }
        if origin == APP {
            let mut seen = access_control(&got);
            seen.sort();
            assert_eq!(
                seen,
                [
                    "access-control-allow-origin",
                    "access-control-expose-headers"
                ],
                "{what}: {:?}",
                got.headers
            );
            assert_eq!(
                got.headers
                    .get_all("access-control-allow-origin")
                    .iter()
                    .count(),
                1,
                "{what}"
            );
            assert_eq!(
                header(&got, "access-control-allow-origin"),
                Some(APP),
                "{what}"
            );
            assert_eq!(
                header(&got, "access-control-expose-headers"),
                Some(EXPOSE),
                "{what}"
            );
            assert!(
                items(&got, "vary").iter().any(|v| v == "origin"),
                "{what}: {:?}",
                got.headers
            );
        } else {
            assert!(access_control(&got).is_empty(), "{what}: {:?}", got.headers);
        }
    }
    3
}

/// Item 3: credgate's own refusals, each status of contract §8 it can
/// reach here, with and without `X-Paragon-SDK-Version`: readable by an
/// allowed origin (`Access-Control-Allow-Origin`, `Vary: Origin`, the
/// exposed headers), by no other; the SDK gets §13's shape on 403 and
/// `credential_required`, §8's elsewhere. Paragon's own answers too.
#[tokio::test]
async fn refusal_table_to_allowed_and_other_origins() {
    let env = Env::with(fixtures(), |mut b| {
        b.extra_top = format!("[cors]\nallowed_origins = [\"{APP}\"]\n[mcp]\nenabled = true\n");
        b.server("max_body_bytes = 1024\nupstream_timeout = \"1s\"")
    })
    .await;
    let alice = env.member("alice");
    let dave = env.member("dave");
    let expired = env.keys.caller_token(json!({
        "sub": "acme", "principal": "alice", "exp": credgate::auth::unix_now() - 3600
    }));
    let sf = p("/sdk/proxy/salesforce/x");
    let a = Some(alice.as_str());
    let big = format!(
        "{{\"credentialId\": \"{SF_ALICE}\", \"pad\": \"{}\"}}",
        "x".repeat(2048)
    );
    let base = vec![
        Refusal::new("malformed credential header", "GET", sf.clone(), a)
            .header("x-paragon-credential", "not-a-uuid")
            .is(400, "bad_request"),
        Refusal::new("credential header twice", "GET", sf.clone(), a)
            .header("x-paragon-credential", SF_ALICE)
            .header("x-paragon-credential", SF_ALICE)
            .is(400, "bad_request"),
        Refusal::new(
            "non-normalized path",
            "GET",
            p("/sdk/proxy/salesforce/a//b"),
            a,
        )
        .is(400, "bad_request"),
        Refusal::new(
            "several permitted, none named",
            "GET",
            p("/sdk/proxy/slack/x"),
            a,
        )
        .is(400, "credential_required"),
        Refusal::new("no token", "GET", sf.clone(), None).is(401, "unauthenticated"),
        Refusal::new("not a token", "GET", sf.clone(), Some("not-a-token"))
            .is(401, "unauthenticated"),
        Refusal::new("expired token", "GET", sf.clone(), Some(&expired)).is(401, "unauthenticated"),
        Refusal::new("another member's credential", "GET", sf.clone(), a)
            .header("x-paragon-credential", SF_BOB)
            .is(403, "credential_forbidden"),
        Refusal::new(
            "nothing permitted for the integration",
            "GET",
            sf.clone(),
            Some(&dave),
        )
        .is(403, "no_permitted_credential"),
        Refusal::new("member's PATCH /sdk/me", "PATCH", p("/sdk/me"), a)
            .header("content-type", "application/json")
            .body("{\"meta\":{}}".into())
            .is(403, "operation_forbidden"),
        Refusal::new(
            "includeAccountAuth",
            "GET",
            p("/sdk/credentials?includeAccountAuth=true"),
            a,
        )
        .is(403, "operation_forbidden"),
        Refusal::new(
            "full URL to a foreign host",
            "GET",
            p("/sdk/proxy/salesforce/https://evil.example/x"),
            a,
        )
        .header("x-paragon-credential", SF_ALICE)
        .is(403, "upstream_host_forbidden"),
        Refusal::new("unknown route", "GET", p("/no/such/route"), a).is(404, "route_not_found"),
        Refusal::new("unknown route method", "PUT", p("/sdk/me"), a).is(404, "route_not_found"),
        Refusal::new("unknown project", "GET", "/projects/other/sdk/me".into(), a)
            .is(404, "unknown_project"),
        Refusal::new("body too large", "POST", "/api/syncs".into(), a)
            .header("content-type", "application/json")
            .body(big)
            .is(413, "body_too_large"),
        Refusal::new(
            "Paragon too slow",
            "GET",
            p("/sdk/proxy/salesforce/__slow/3000"),
            a,
        )
        .header("x-paragon-credential", SF_ALICE)
        .is(504, "upstream_timeout"),
        Refusal::new("MCP without a token", "POST", "/mcp".into(), None)
            .header("content-type", "application/json")
            .body("{}".into())
            .is(401, "unauthenticated"),
        Refusal::new(
            "MCP metadata, wrong method",
            "POST",
            "/.well-known/oauth-protected-resource".into(),
            None,
        )
        .passes(405),
        Refusal::new(
            "MCP metadata",
            "GET",
            "/.well-known/oauth-protected-resource/mcp".into(),
            None,
        )
        .passes(200),
        Refusal::new("allowed", "GET", sf.clone(), a)
            .header("x-paragon-credential", SF_ALICE)
            .passes(200),
        Refusal::new("allowed, filtered", "GET", p("/sdk/me"), a).passes(200),
        Refusal::new("allowed HEAD", "HEAD", sf.clone(), a)
            .header("x-paragon-credential", SF_ALICE)
            .passes(200),
        Refusal::new("HEAD on no route", "HEAD", p("/no/such/route"), a).passes(404),
        Refusal::new(
            "streamed answer",
            "GET",
            p("/sdk/proxy/salesforce/__download/100000"),
            a,
        )
        .header("x-paragon-credential", SF_ALICE)
        .passes(200),
        Refusal::new(
            "Paragon's own 404",
            "GET",
            p("/sdk/proxy/salesforce/__status/404"),
            a,
        )
        .header("x-paragon-credential", SF_ALICE)
        .passes(404),
        Refusal::new(
            "Paragon's own 500",
            "GET",
            p("/sdk/proxy/salesforce/__status/500"),
            a,
        )
        .header("x-paragon-credential", SF_ALICE)
        .passes(500),
    ];
    let mut requests = 0;
    for case in &base {
        requests += check_refusal(&env, case).await;
        requests += check_refusal(&env, &case.sdk()).await;
    }

    // 429 and 503 need a deployment of their own: a principal may send
    // six requests (then 429), and Paragon's /sdk/me fails (503).
    let env = Env::with(fixtures(), |mut b| {
        b.extra_top = format!(
            "[cors]\nallowed_origins = [\"{APP}\"]\n[limits]\nprincipal_rps = 0.001\nprincipal_burst = 6\n"
        );
        b
    })
    .await;
    env.state().set_behaviour(credgate::emulator::Behaviour {
        me_status: Some(500),
        ..Default::default()
    });
    let bob = env.member("bob");
    let carol = env.member("carol");
    let unavailable = Refusal::new("credential list unavailable", "GET", sf.clone(), Some(&bob))
        .header("x-paragon-credential", SF_BOB)
        .is(503, "credentials_unavailable");
    requests += check_refusal(&env, &unavailable).await;
    requests += check_refusal(&env, &unavailable.sdk()).await;
    for _ in 0..6 {
        let got = env.send("GET", &p("/no/such/route"), &carol, &[], "").await;
        assert_eq!(got.status, 404, "carol's burst");
    }
    let limited = Refusal::new("over the rate limit", "GET", sf.clone(), Some(&carol))
        .header("x-paragon-credential", CAROL_SF)
        .is(429, "rate_limited");
    requests += check_refusal(&env, &limited).await;
    requests += check_refusal(&env, &limited.sdk()).await;
    println!("refusal table: {requests} requests");
}

/// Item 4: whatever `Access-Control-*` Paragon answers with, on any route
/// family, any status, to an admin or a member, with `[cors]` on or off,
/// the caller sees only credgate's own. The emulator has no way to add
/// answer headers, so a recording Paragon answers every request with its
/// own CORS headers.
#[tokio::test]
async fn paragons_access_control_headers_are_removed_on_every_route() {
    let upstream = spawn_recorder(Arc::new(|r: Recorded| {
        Box::pin(async move {
            let mut resp = if r.path.ends_with("/sdk/me") {
                json_response(
                    StatusCode::OK,
                    me_body(
                        "acme",
                        &[
                            (ACME_SF_ALICE, "salesforce", "alice"),
                            (ACME_SF_BOB, "salesforce", "bob"),
                        ],
                    ),
                )
            } else if r.path.ends_with("/sdk/credentials") {
                let mut resp = http::Response::new(credgate::net::body::full("not JSON"));
                resp.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
                resp
            } else if r.path.contains("/fail") {
                json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"message": "x"}))
            } else if r.path.contains("/denied") {
                json_response(
                    StatusCode::FORBIDDEN,
                    json!({"message": "x", "code": "7210"}),
                )
            } else {
                json_response(StatusCode::OK, json!({"ok": true}))
            };
            let h = resp.headers_mut();
            for (k, v) in [
                ("access-control-allow-origin", "*"),
                ("access-control-allow-origin", "https://evil.example"),
                ("Access-Control-Allow-Credentials", "true"),
                ("access-control-expose-headers", "*"),
                ("ACCESS-CONTROL-EXPOSE-HEADERS", "x-secret"),
                ("access-control-allow-methods", "*"),
                ("access-control-allow-headers", "*"),
                ("access-control-max-age", "86400"),
                ("access-control-allow-private-network", "true"),
            ] {
                h.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            resp
        })
    }))
    .await;
    let keys = Keys::new();
    let member = keys.member("acme", "alice");
    let admin = keys.admin("acme");
    let json_ct = ("content-type", "application/json");
    let cred = ("x-paragon-credential", ACME_SF_ALICE);
    let sync_body = format!("{{\"credentialId\": \"{ACME_SF_ALICE}\"}}");
    let routes: Vec<Upstreamed> = vec![
        (
            "proxy",
            "GET",
            p("/sdk/proxy/salesforce/x"),
            vec![cred],
            "",
            (200, 200),
        ),
        (
            "proxy",
            "HEAD",
            p("/sdk/proxy/salesforce/x"),
            vec![cred],
            "",
            (200, 200),
        ),
        (
            "proxy",
            "OPTIONS",
            p("/sdk/proxy/salesforce/x"),
            vec![cred],
            "",
            (200, 200),
        ),
        (
            "proxy",
            "POST",
            p("/sdk/proxy/salesforce/fail"),
            vec![cred],
            "{}",
            (500, 500),
        ),
        (
            "proxy",
            "GET",
            p("/sdk/proxy/salesforce/denied"),
            vec![cred],
            "",
            (403, 403),
        ),
        ("connect", "GET", p("/sdk/me"), vec![], "", (200, 200)),
        (
            "connect",
            "GET",
            p("/sdk/integrations"),
            vec![],
            "",
            (200, 200),
        ),
        // Paragon's list is not JSON: a member's filter refuses it (502),
        // an admin's answer passes untouched.
        (
            "connect",
            "GET",
            p("/sdk/credentials"),
            vec![],
            "",
            (502, 200),
        ),
        (
            "workflows",
            "POST",
            p("/sdk/triggers/wf-1"),
            vec![cred, json_ct],
            "{}",
            (200, 200),
        ),
        (
            "events",
            "POST",
            p("/sdk/events/trigger"),
            vec![json_ct],
            "{}",
            (200, 200),
        ),
        (
            "actionkit",
            "GET",
            p("/actions"),
            vec![cred],
            "",
            (200, 200),
        ),
        (
            "actionkit",
            "POST",
            p("/tools"),
            vec![cred, json_ct],
            "{}",
            (200, 200),
        ),
        (
            "sync",
            "POST",
            "/api/syncs".into(),
            vec![json_ct],
            &sync_body,
            (200, 200),
        ),
        // Agent OS is down (connection refused): 502 for an admin; not a
        // member product (403).
        (
            "agentos",
            "GET",
            format!("/api/tools/projects/{PROJECT}/search"),
            vec![],
            "",
            (403, 502),
        ),
    ];
    let mut cases = 0;
    for cors in [
        format!("[cors]\nallowed_origins = [\"{APP}\"]\n"),
        String::new(),
    ] {
        let mut hosts = Hosts::all(&upstream.url());
        // Nothing listens there.
        hosts.agentos = "http://127.0.0.1:1".into();
        let mut b = ConfigBuilder::new(&keys, hosts);
        b.extra_top = cors.clone();
        let gw = b.start().await;
        let cl = client();
        for (family, method, path, headers, body, (as_member, as_admin)) in &routes {
            for (who, token, status) in
                [("member", &member, as_member), ("admin", &admin, as_admin)]
            {
                for origin in [APP, EVIL, ""] {
                    let case = format!(
                        "[{family}] {who} {method} {path} Origin: {origin:?} cors: {}",
                        !cors.is_empty()
                    );
                    let mut h = headers.clone();
                    if !origin.is_empty() {
                        h.push(("origin", origin));
                    }
                    let got = send(
                        &cl,
                        req(method, &gw, path, Some(token), &h, body.to_string()),
                    )
                    .await;
                    assert_eq!(got.status.as_u16(), *status, "{case}: {:?}", got.body);
                    assert_no_wildcard_nor_credentials(&got, &case);
                    let mut seen = access_control(&got);
                    seen.sort();
                    if origin == APP && !cors.is_empty() {
                        assert_eq!(
                            seen,
                            [
                                "access-control-allow-origin",
                                "access-control-expose-headers"
                            ],
                            "{case}: {:?}",
                            got.headers
                        );
                        let acao: Vec<_> = got
                            .headers
                            .get_all("access-control-allow-origin")
                            .iter()
                            .collect();
                        assert_eq!(acao, [APP], "{case}");
                        let expose: Vec<_> = got
                            .headers
                            .get_all("access-control-expose-headers")
                            .iter()
                            .collect();
                        assert_eq!(expose, [EXPOSE], "{case}");
                    } else {
                        assert!(seen.is_empty(), "{case}: {:?}", got.headers);
                    }
                    cases += 1;
                }
            }
        }
        gw.shutdown().await;
    }
    println!("Paragon's CORS headers table: {cases} cases");
}

/// Item 5: with `[cors]` off, a preflight on every path is an ordinary
/// request (401 without a token, audited, not counted), and no answer
/// carries `Access-Control-*`, whatever its `Origin`.
#[tokio::test]
async fn with_cors_off_a_preflight_is_an_ordinary_request_everywhere() {
    let env = Env::with(fixtures(), |mut b| {
        b.extra_top = "[mcp]\nenabled = true\n".into();
        b
    })
    .await;
    let mut cases = 0;
    for (family, path) in every_path() {
        for method in METHODS {
            for origin in [APP, EVIL, "null"] {
                let case = format!(
                    "[{family}] OPTIONS {path} Access-Control-Request-Method: {method} Origin: {origin}"
                );
                let got = preflight(&env, &path, origin, method, "authorization").await;
                // MCP's metadata documents answer anyone, GET only.
                let (status, code) = if path.starts_with("/.well-known/") {
                    (405, "method_not_allowed")
                } else {
                    (401, "unauthenticated")
                };
                assert_eq!(got.status.as_u16(), status, "{case}: {:?}", got.body);
                assert_eq!(got.code(), code, "{case}");
                if status == 401 {
                    assert_refusal_body(&got, code, &case);
                }
                assert!(access_control(&got).is_empty(), "{case}: {:?}", got.headers);
                cases += 1;
            }
        }
    }
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    let others: Vec<Ordinary> = vec![
        (
            "preflight-shaped Proxy API OPTIONS",
            "OPTIONS",
            sf.clone(),
            vec![
                ("x-paragon-credential", SF_ALICE),
                ("access-control-request-method", "GET"),
            ],
            // Forwarded as an ordinary request; Paragon (the emulator, like
            // any CORS-aware API) answers a preflight-shaped OPTIONS itself,
            // and credgate removes its Access-Control-* (checked below).
            204,
        ),
        (
            "allowed",
            "GET",
            sf.clone(),
            vec![("x-paragon-credential", SF_ALICE)],
            200,
        ),
        (
            "forbidden",
            "GET",
            sf.clone(),
            vec![("x-paragon-credential", SF_BOB)],
            403,
        ),
        (
            "forbidden, SDK",
            "GET",
            sf.clone(),
            vec![("x-paragon-credential", SF_BOB), SDK],
            403,
        ),
        ("unknown route", "GET", p("/no/such"), vec![], 404),
        ("filtered", "GET", p("/sdk/me"), vec![], 200),
    ];
    for (what, method, path, headers, status) in &others {
        for origin in [APP, EVIL, "null"] {
            let case = format!("{what}: {method} {path} Origin: {origin}");
            let mut h = headers.clone();
            h.push(("origin", origin));
            let got = env.send(method, path, &alice, &h, "").await;
            assert_eq!(got.status.as_u16(), *status, "{case}: {:?}", got.body);
            assert!(access_control(&got).is_empty(), "{case}: {:?}", got.headers);
            cases += 1;
        }
    }
    let metrics = env.metrics_text().await;
    for result in ["allowed", "forbidden"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("credgate_cors_preflights_total{{result=\"{result}\"}}")
            ),
            0.0,
            "{result}"
        );
    }
    println!("CORS off: {cases} cases");
}
