//! Every door around credgate's central guarantee (issue 13, contract §3, §5,
//! §6, §7, §8): the Proxy API's `X-Paragon-Proxy-Url`, sync bodies on every
//! method, trigger subscriptions, Paragon control headers, the refresh
//! race, methods as part of a route, Agent OS, and ActionKit's `actionkit`
//! permission. Each test runs the real gateway in front of the in-process
//! Paragon emulator and checks what reached the emulator: a refused request
//! reached nothing, an allowed one carried exactly what credgate decided.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::paragon::permissions::claim_for;
use harness::*;
use serde_json::{json, Value};

/// The host `policy.proxy_url_hosts` allows in these tests.
const SHEETS: &str = "sheets.googleapis.com";

async fn env_with_hosts() -> Env {
    Env::with(fixtures(), |b| {
        b.policy(&format!("proxy_url_hosts = [\"{SHEETS}\"]"))
    })
    .await
}

/// The body of a proxied answer's provider echo (`output`).
fn output(got: &Got) -> Value {
    got.json()["output"].clone()
}

// ------------------------------------------------- X-Paragon-Proxy-Url

/// Hole 1: `X-Paragon-Proxy-Url` holding a full URL used to pass unread,
/// so Paragon would send a permitted credential's provider token to any
/// host. Every spelling and form of the header, as a member and as an
/// admin: refused before Paragon unless the target is a path in normal
/// form or a URL to a listed host; what is allowed reaches the emulator
/// once, in the canonical spelling, naming the provider host it should.
#[tokio::test]
async fn proxy_url_header_obeys_the_rules_of_the_path() {
    let env = env_with_hosts().await;
    let alice = env.member("alice");
    let admin = env.admin();
    let bare = p("/sdk/proxy/slack");
    let with_rest = p("/sdk/proxy/slack/api/chat.postMessage");
    let evil = "https://evil.example/steal";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let refused: Vec<Case> = vec![
        (
            "full URL",
            vec![("x-paragon-proxy-url", evil)],
            403,
            "upstream_host_forbidden",
        ),
        (
            "underscores",
            vec![("x_paragon_proxy_url", evil)],
            403,
            "upstream_host_forbidden",
        ),
        (
            "mixed case name",
            vec![("X-Paragon-PROXY-url", evil)],
            403,
            "upstream_host_forbidden",
        ),
        (
            "mixed spelling",
            vec![("X_Paragon-Proxy_Url", evil)],
            403,
            "upstream_host_forbidden",
        ),
        (
            "scheme-relative",
            vec![("x-paragon-proxy-url", "//evil.example/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "backslashes",
            vec![("x-paragon-proxy-url", "\\\\evil.example/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "encoded backslashes",
            vec![("x-paragon-proxy-url", "%5C%5Cevil.example/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "upper case URL",
            vec![("x-paragon-proxy-url", "HTTPS://EVIL.EXAMPLE/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "no slashes",
            vec![("x-paragon-proxy-url", "https:evil.example")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "one slash",
            vec![("x-paragon-proxy-url", "https:/evil.example")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "encoded colon",
            vec![("x-paragon-proxy-url", "https%3A//evil.example/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "encoded scheme",
            vec![("x-paragon-proxy-url", "%68ttps://evil.example/x")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "userinfo",
            vec![(
                "x-paragon-proxy-url",
                "https://sheets.googleapis.com@evil.example/",
            )],
            403,
            "upstream_host_forbidden",
        ),
        (
            "two readings",
            vec![(
                "x-paragon-proxy-url",
                "https://sheets.googleapis.com%23@evil.example/",
            )],
            403,
            "upstream_host_forbidden",
        ),
        (
            "other scheme",
            vec![("x-paragon-proxy-url", "ftp://evil.example/")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "no host",
            vec![("x-paragon-proxy-url", "mailto:x@evil.example")],
            403,
            "upstream_host_forbidden",
        ),
        (
            "listed in Connection",
            vec![
                ("connection", "x-paragon-proxy-url"),
                ("x-paragon-proxy-url", evil),
            ],
            403,
            "upstream_host_forbidden",
        ),
        (
            "encoded NBSP",
            vec![("x-paragon-proxy-url", "%C2%A0https:evil.example")],
            400,
            "bad_request",
        ),
        (
            "encoded BOM",
            vec![("x-paragon-proxy-url", "%EF%BB%BFhttps://evil.example")],
            400,
            "bad_request",
        ),
        (
            "encoded ideographic space",
            vec![("x-paragon-proxy-url", "%E3%80%80https://evil.example")],
            400,
            "bad_request",
        ),
        (
            "encoded space",
            vec![("x-paragon-proxy-url", "%20https://evil.example")],
            400,
            "bad_request",
        ),
        (
            "given twice",
            vec![("x-paragon-proxy-url", "/a"), ("x-paragon-proxy-url", "/a")],
            400,
            "bad_request",
        ),
        (
            "two spellings",
            vec![("x-paragon-proxy-url", "/a"), ("x_paragon_proxy_url", "/a")],
            400,
            "bad_request",
        ),
        (
            "dot segments",
            vec![("x-paragon-proxy-url", "/api/../admin")],
            400,
            "bad_request",
        ),
        (
            "encoded slash",
            vec![("x-paragon-proxy-url", "/api/a%2Fb")],
            400,
            "bad_request",
        ),
        (
            "empty segment",
            vec![("x-paragon-proxy-url", "/api//x")],
            400,
            "bad_request",
        ),
        (
            "URL with dot segments",
            vec![("x-paragon-proxy-url", "https://sheets.googleapis.com/../x")],
            400,
            "bad_request",
        ),
    ];
    for (what, headers, status, code) in &refused {
        for token in [&alice, &admin] {
            let mut h = headers.clone();
            h.push(("x-paragon-credential", SLACK_ALICE_1));
            let got = env.send("GET", &bare, token, &h, "").await;
            assert_eq!(
                (got.status.as_u16(), got.code().as_str()),
                (*status, *code),
                "{what}: {}",
                String::from_utf8_lossy(&got.body)
            );
            env.assert_refused(&got, *status, code);
        }
    }
    // With a non-empty `{rest}`, any header is ambiguous (Paragon does not
    // say which it would use): 400, even a harmless one.
    let got = env
        .send(
            "GET",
            &with_rest,
            &alice,
            &[
                ("x-paragon-credential", SLACK_ALICE_1),
                ("x-paragon-proxy-url", "/api/x"),
            ],
            "",
        )
        .await;
    env.assert_refused(&got, 400, "bad_request");

    // Allowed: paths in normal form, and a URL to the listed host.
    for (value, host, path) in [
        (
            "/api/chat.postMessage",
            "provider.invalid",
            "/api/chat.postMessage",
        ),
        (
            "api/users.list?limit=2,3",
            "provider.invalid",
            "/api/users.list",
        ),
        (
            "https://sheets.googleapis.com/v4/spreadsheets",
            SHEETS,
            "/v4/spreadsheets",
        ),
        ("HTTPS://Sheets.GoogleAPIs.com/v4/x", SHEETS, "/v4/x"),
    ] {
        let got = env
            .send(
                "GET",
                &bare,
                &alice,
                &[
                    ("x-paragon-credential", SLACK_ALICE_1),
                    ("X_Paragon_Proxy_Url", value),
                ],
                "",
            )
            .await;
        let r = env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
        assert_eq!(r.header_all("x-paragon-proxy-url"), vec![value], "{value}");
        assert!(r.header("x_paragon_proxy_url").is_none());
        let target = &output(&got)["target"];
        assert_eq!(
            (target["host"].as_str(), target["path"].as_str()),
            (Some(host), Some(path)),
            "{value}"
        );
    }

    // On every other product the header is removed, whatever it says.
    for (method, path, body) in [
        (
            "POST",
            p("/actions"),
            r#"{"action":"SLACK_SEND_MESSAGE","parameters":{}}"#,
        ),
        ("GET", p("/sdk/me"), ""),
        ("POST", p("/sdk/triggers/wf-1"), "{}"),
    ] {
        let got = env
            .send(
                method,
                &path,
                &alice,
                &[
                    ("x-paragon-credential", SLACK_ALICE_1),
                    ("x-paragon-proxy-url", evil),
                ],
                body,
            )
            .await;
        assert!(got.status.is_success(), "{method} {path}: {}", got.status);
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1);
        assert!(fwd[0].header("x-paragon-proxy-url").is_none(), "{path}");
    }
    env.gw.shutdown().await;
}

/// contract §7: leading Unicode white space or U+FEFF before a `{rest}` is 400
/// (a JavaScript `trim()` before `new URL()` would make a URL of it).
#[tokio::test]
async fn white_space_before_a_proxy_path_target_is_refused() {
    let env = env_with_hosts().await;
    let alice = env.member("alice");
    for lead in [
        "%20",
        "%C2%A0",
        "%c2%a0",
        "%E2%80%83",
        "%EF%BB%BF",
        "%E2%80%A8",
        "%E3%80%80",
    ] {
        for rest in ["https:evil.example", "https://evil.example/x", "api/x"] {
            let path = p(&format!("/sdk/proxy/slack/{lead}{rest}"));
            let got = env.send_as("GET", &path, &alice, SLACK_ALICE_1, "").await;
            env.assert_refused(&got, 400, "bad_request");
        }
    }
    // White space inside the target is text.
    let got = env
        .send_as(
            "GET",
            &p("/sdk/proxy/slack/files/a%C2%A0b"),
            &alice,
            SLACK_ALICE_1,
            "",
        )
        .await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    env.gw.shutdown().await;
}

// ------------------------------------------------------ methods, syncs

/// Hole 2: a member could move its sync onto another member's credential
/// with `PUT`, `POST`, `patch` or `Patch` (only `PATCH` was read). Every
/// other method on `/api/syncs/{id}` is now `route_not_found`, and a body
/// on any sync route has its `credentialId` judged.
#[tokio::test]
async fn sync_bodies_are_judged_on_every_method() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let json_h = [("content-type", "application/json")];
    let created = env
        .send(
            "POST",
            "/api/syncs",
            &alice,
            &json_h,
            format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}"}}"#),
        )
        .await;
    env.assert_routed(&created, SF_ALICE, Place::Body);
    let sync = created.json()["id"].as_str().unwrap().to_string();
    let item = format!("/api/syncs/{sync}");
    let foreign = format!(r#"{{"credentialId":"{SF_BOB}"}}"#);

    for method in ["PUT", "POST", "patch", "Patch", "OPTIONS", "PROPFIND"] {
        let got = env
            .send(method, &item, &alice, &json_h, foreign.clone())
            .await;
        env.assert_refused(&got, 404, "route_not_found");
    }
    let got = env
        .send("PATCH", &item, &alice, &json_h, foreign.clone())
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(
        env.state().sync_credential(&sync),
        Some(SF_ALICE.to_string())
    );

    // Sub-routes take any method; their bodies are read and judged.
    for (method, path) in [
        ("POST", format!("{item}/disable")),
        ("PUT", format!("{item}/reenable")),
        ("DELETE", format!("{item}/records")),
        ("POST", format!("/api/permissions/{sync}/check")),
        ("GET", "/api/syncs".to_string()),
    ] {
        let got = env
            .send(method, &path, &alice, &json_h, foreign.clone())
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
        // A body credgate cannot read as JSON is refused, not passed on.
        let got = env
            .send(
                method,
                &path,
                &alice,
                &[("content-type", "application/x-www-form-urlencoded")],
                format!("credentialId={SF_BOB}"),
            )
            .await;
        env.assert_refused(&got, 400, "bad_request");
    }
    // Naming one of her own accounts is allowed, written as its uuid, and
    // the token names it beside the sync's own.
    let got = env
        .send(
            "POST",
            &format!("/api/permissions/{sync}/check"),
            &alice,
            &json_h,
            format!(
                r#"{{"credentialId":"{}","object":"o","user":"u","role":"can_read"}}"#,
                SF_ALICE.to_uppercase()
            ),
        )
        .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    let body: Value = serde_json::from_slice(&fwd[0].body).unwrap();
    assert_eq!(body["credentialId"], SF_ALICE);
    assert_eq!(body["object"], "o");
    assert_eq!(
        env.upstream_claims(&fwd[0])[PERMS],
        claim_for([("salesforce", SF_ALICE)])
    );
    env.gw.shutdown().await;
}

/// contract §3: methods are part of a route. Every route of the table against
/// standard and extension methods, as an admin (so no product or credential
/// rule interferes): `CONNECT`, `TRACE` and `TRACK` are 400 everywhere;
/// a method a route does not list is credgate's 404 `route_not_found` and
/// reaches nothing; a listed one reaches the emulator with that method.
#[tokio::test]
async fn every_route_times_every_method() {
    let env = Env::start().await;
    let admin = env.admin();
    const METHODS: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "patch", "Patch",
        "PROPFIND", "FOO",
    ];
    let json_h = [
        ("content-type", "application/json"),
        ("x-paragon-credential", SF_ALICE),
    ];
    let rows: Vec<(String, Option<&[&str]>)> = vec![
        (p("/sdk/proxy/salesforce/x"), None),
        (p("/sdk/triggers/wf-1"), Some(&["POST"])),
        (p("/sdk/events/trigger"), Some(&["POST"])),
        (
            format!("/v2/projects/{PROJECT}/sdk/events/trigger"),
            Some(&["POST"]),
        ),
        (p("/sdk/me"), Some(&["GET", "PATCH"])),
        (p("/sdk/integrations"), Some(&["GET"])),
        (p("/sdk/metadata"), Some(&["GET"])),
        (p("/sdk/credentials"), Some(&["GET", "POST"])),
        (p(&format!("/sdk/credentials/{SF_ALICE}")), None),
        (
            format!("/v2/projects/{PROJECT}/sdk/actions/build-oauth"),
            Some(&["GET"]),
        ),
        (p("/sdk/actions/oauth-nonce"), Some(&["GET"])),
        (p("/sdk/actions/session-id/k3x9"), Some(&["GET", "DELETE"])),
        (p("/sdk/workflows/wf-1"), Some(&["POST", "DELETE"])),
        (p("/actions"), None),
        (p("/tools"), None),
        (p("/triggers"), None),
        (p("/trigger-subscriptions"), None),
        ("/api/syncs".to_string(), Some(&["GET", "POST"])),
        (
            format!("/api/syncs/{UNKNOWN}"),
            Some(&["GET", "PATCH", "DELETE"]),
        ),
        (format!("/api/syncs/{UNKNOWN}/disable"), None),
        (format!("/api/permissions/{UNKNOWN}/check"), None),
        (format!("/api/tools/projects/{PROJECT}/search"), None),
        (format!("/api/context/projects/{PROJECT}/search"), None),
    ];
    for (path, listed) in &rows {
        for method in METHODS {
            // POST /api/syncs must carry its body; the credential header
            // goes in it (and a body on a read is judged like any other).
            let body = if path == "/api/syncs" && *method == "POST" {
                r#"{"integration":"salesforce","pipeline":"p"}"#
            } else if path.starts_with("/api/syncs") || path.starts_with("/api/permissions") {
                "{}"
            } else {
                ""
            };
            let got = env.send(method, path, &admin, &json_h, body).await;
            let fwd = env.forwarded(&got);
            if listed.is_none_or(|l| l.contains(method)) {
                assert_eq!(
                    fwd.len(),
                    1,
                    "{method} {path}: {} {:?}",
                    got.status,
                    got.body
                );
                assert_eq!(fwd[0].method, *method, "{method} {path}");
            } else {
                assert_eq!(got.status, 404, "{method} {path}");
                assert!(fwd.is_empty(), "{method} {path} reached Paragon");
                if *method != "HEAD" {
                    assert_eq!(got.code(), "route_not_found", "{method} {path}");
                }
            }
        }
        // (CONNECT needs an authority-form target, which the client cannot
        // send here; hostile.rs sends it raw.)
        for method in ["TRACE", "TRACK"] {
            let got = env.send(method, path, &admin, &[], "").await;
            env.assert_refused(&got, 400, "bad_request");
        }
    }
    env.gw.shutdown().await;
}

// ------------------------------------------------ trigger subscriptions

/// Creates a trigger subscription straight at the emulator (not through
/// credgate, which then does not know it), as `cred`'s; returns its id.
async fn subscribe_directly(env: &Env, cred: &str, secret: &str) -> String {
    let token = env.paragon_token(json!({}));
    let r = http::Request::post(format!("{}{}", env.emu.url(), p("/trigger-subscriptions")))
        .header("authorization", format!("Bearer {token}"))
        .header("x-paragon-credential", cred)
        .header("content-type", "application/json")
        .body(credgate::net::body::full(
            json!({"integration": "slack", "type": "SLACK_NEW_MESSAGE",
                   "webhookOverride": {"url": "https://hooks.example/x", "headers": {"Authorization": secret}}})
            .to_string(),
        ))
        .unwrap();
    let got = send(&env.cl, r).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.json()["id"].as_str().unwrap().to_string()
}

/// Hole 3: a member's list held every member's subscriptions, with their
/// `credentialId` and secret `webhookOverride` headers, and another
/// member's subscription could be deleted. Now a member sees only the
/// subscriptions of credentials it may use, and reaches one only when its
/// credential is permitted, also when credgate never saw it created (it
/// asks Paragon once, and remembers).
#[tokio::test]
async fn trigger_subscriptions_belong_to_their_credential() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let bobs = subscribe_directly(&env, SLACK_BOB, "bob-secret").await;
    let alices = subscribe_directly(&env, SLACK_ALICE_1, "alice-secret").await;

    // Lists: alice sees hers only, whatever she names.
    for headers in [vec![], vec![("x-paragon-credential", SLACK_ALICE_1)]] {
        let got = env
            .send("GET", &p("/trigger-subscriptions"), &alice, &headers, "")
            .await;
        assert_eq!(got.status, 200);
        let text = String::from_utf8_lossy(&got.body);
        assert!(
            !text.contains(&bobs) && !text.contains("bob-secret"),
            "{text}"
        );
        assert!(text.contains(&alices), "{text}");
    }
    // bob's list naming alice's account: refused.
    let got = env
        .send_as("GET", &p("/trigger-subscriptions"), &bob, SLACK_ALICE_1, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");

    // One subscription: a lookup decides when credgate does not know it.
    let before = scrape_metrics(&env.gw).await;
    for method in ["GET", "DELETE"] {
        for cred in [None, Some(SLACK_ALICE_1), Some(SLACK_BOB)] {
            let h: Vec<(&str, &str)> = cred.iter().map(|c| ("x-paragon-credential", *c)).collect();
            let got = env
                .send(
                    method,
                    &p(&format!("/trigger-subscriptions/{bobs}")),
                    &alice,
                    &h,
                    "",
                )
                .await;
            env.assert_refused(&got, 403, "credential_forbidden");
        }
    }
    let after = scrape_metrics(&env.gw).await;
    let lookups = "credgate_subscription_lookups_total";
    assert_eq!(
        metric(&after, lookups) - metric(&before, lookups),
        0.0,
        "alice's list already told credgate whose bob's subscription is"
    );

    // Unknown to credgate (created after the list): one lookup, then known.
    let bobs2 = subscribe_directly(&env, SLACK_BOB, "bob-secret-2").await;
    let before = scrape_metrics(&env.gw).await;
    for _ in 0..3 {
        let got = env
            .send(
                "DELETE",
                &p(&format!("/trigger-subscriptions/{bobs2}")),
                &alice,
                &[],
                "",
            )
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    let got = env
        .send_as(
            "GET",
            &p(&format!("/trigger-subscriptions/{bobs2}")),
            &bob,
            SLACK_BOB,
            "",
        )
        .await;
    env.assert_routed(&got, SLACK_BOB, Place::Header);
    let after = scrape_metrics(&env.gw).await;
    assert_eq!(metric(&after, lookups) - metric(&before, lookups), 1.0);
    // The lookup was credgate's own GET with an unrestricted token.
    let lookup: Vec<_> = env
        .state()
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "GET" && r.path.ends_with(&bobs2) && r.header("x-forwarded-for").is_none()
        })
        .collect();
    assert_eq!(lookup.len(), 1);
    assert!(env.upstream_claims(&lookup[0]).get(PERMS).is_none());

    // An id no one has: refused for members, forwarded for admins.
    let got = env
        .send(
            "GET",
            &p(&format!("/trigger-subscriptions/{UNKNOWN}")),
            &alice,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send(
            "GET",
            &p(&format!("/trigger-subscriptions/{UNKNOWN}")),
            &env.admin(),
            &[],
            "",
        )
        .await;
    assert_eq!(got.status, 404);
    assert_eq!(env.forwarded(&got).len(), 1);

    // bob deletes his own; it is then forgotten.
    let got = env
        .send_as(
            "DELETE",
            &p(&format!("/trigger-subscriptions/{bobs}")),
            &bob,
            SLACK_BOB,
            "",
        )
        .await;
    env.assert_routed(&got, SLACK_BOB, Place::Header);
    env.gw.shutdown().await;
}

// ---------------------------------------------------- control headers

/// contract §7: a member's `X-Paragon-*` fields pass only when credgate knows
/// them; the rest are removed and counted. Admins keep theirs. Re-routing
/// headers and `X-Envoy-*` are removed for everyone.
#[tokio::test]
async fn paragon_control_headers_pass_only_when_known() {
    let env = Env::with(fixtures(), |b| {
        b.policy("member_paragon_headers = [\"x-paragon-sdk-version\"]")
    })
    .await;
    let alice = env.member("alice");
    let path = p("/sdk/proxy/slack/api/x");
    let sent = [
        ("x-paragon-credential", SLACK_ALICE_1),
        ("x-paragon-use-raw-response", "1"),
        ("x-paragon-use-slack-token-type", "user"),
        ("x-paragon-sdk-version", "2.4.0"),
        ("x-paragon-route-to", "elsewhere"),
        ("x_paragon_use_raw_response", "1"),
        ("x-paragon-user-metadata", "{}"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-original-method", "DELETE"),
        ("x-original-host", "evil.example"),
        ("x-host", "evil.example"),
        ("x-envoy-original-path", "/admin"),
        ("x_envoy_retry_on", "5xx"),
    ];
    let before = scrape_metrics(&env.gw).await;
    let got = env.send("GET", &path, &alice, &sent, "").await;
    let r = env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    let mut names: Vec<&str> = r
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            n.starts_with("x-paragon")
                || n.starts_with("x_")
                || n.starts_with("x-original")
                || n.starts_with("x-envoy")
                || *n == "x-host"
                || *n == "x-rewrite-url"
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "x-paragon-credential",
            "x-paragon-sdk-version",
            "x-paragon-use-raw-response",
            "x-paragon-use-slack-token-type"
        ]
    );
    let after = scrape_metrics(&env.gw).await;
    let removed = "credgate_headers_removed_total";
    assert_eq!(metric(&after, removed) - metric(&before, removed), 2.0);

    let got = env.send("GET", &path, &env.admin(), &sent, "").await;
    let fwd = env.forwarded(&got);
    let r = &fwd[0];
    for kept in [
        "x-paragon-route-to",
        "x_paragon_use_raw_response",
        "x-paragon-sdk-version",
    ] {
        assert!(r.header(kept).is_some(), "admins keep {kept}");
    }
    for gone in [
        "x-paragon-user-metadata",
        "x-original-url",
        "x-rewrite-url",
        "x-original-method",
        "x-original-host",
        "x-host",
        "x-envoy-original-path",
        "x_envoy_retry_on",
    ] {
        assert!(r.header(gone).is_none(), "{gone} is removed for admins too");
    }
    env.gw.shutdown().await;
}

/// The audit record names the control headers it removed (the real
/// binary, its JSON audit line).
#[tokio::test]
async fn the_audit_record_names_removed_control_headers() {
    let env = Env::start().await;
    let cfg = ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url()));
    let path = env.keys.dir.write("credgate.toml", &cfg.toml());
    let bin = Binary::serve(&path, &[]);
    let cl = client();
    let r = http::Request::get(bin.url(&p("/sdk/proxy/slack/api/x")))
        .header("authorization", format!("Bearer {}", env.member("alice")))
        .header("x-paragon-credential", SLACK_ALICE_1)
        .header("x-paragon-route-to", "elsewhere")
        .body(credgate::net::body::empty())
        .unwrap();
    let got = send(&cl, r).await;
    assert_eq!(got.status, 200);
    let record = wait_for_audit(&env.keys, |r| r["product"] == "proxy").await;
    assert_eq!(record["removed_headers"], "x-paragon-route-to");
    assert_eq!(record["requested"], SLACK_ALICE_1);
    assert_eq!(audit_records(&env.keys).len(), 1);
    drop(bin);
}

// ---------------------------------------------------------- refresh race

/// Hole 4: a request naming an account connected a moment ago was refused
/// when another request had refreshed the same user's list in between
/// (the miss-triggered reload settled for that earlier list). Now it loads
/// again, and the account works.
#[tokio::test]
async fn a_new_account_works_even_after_someone_elses_refresh() {
    let mut env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"0s\"")).await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    // Alice's list is cached (her token remembers it).
    let got = env
        .send_as("GET", &p("/sdk/proxy/slack/x"), &alice, SLACK_ALICE_1, "")
        .await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    // Bob names an unknown account: his miss refreshes acme's list now.
    let got = env
        .send_as("GET", &p("/sdk/proxy/slack/x"), &bob, UNKNOWN, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    // Then alice connects a new account, and names it.
    const NEW: &str = "a11ce000-9e11-4000-8000-000000000009";
    env.add("acme", owned(NEW, "slack", "alice"));
    let loads_before = env.loads().len();
    let got = env
        .send_as("GET", &p("/sdk/proxy/slack/x"), &alice, NEW, "")
        .await;
    env.assert_routed(&got, NEW, Place::Header);
    assert_eq!(
        env.loads().len(),
        loads_before + 1,
        "one fresh load for the miss"
    );
    env.gw.shutdown().await;
}

// ------------------------------------------------ Agent OS, permissions

/// Agent OS is not a member product by default (Paragon does not document
/// whether it honours the permissions claim): members are refused before
/// Paragon, admins pass; listed in `member_products`, a member's token
/// names its own accounts only.
#[tokio::test]
async fn agent_os_is_admin_only_unless_listed() {
    let env = Env::start().await;
    let search = format!("/api/tools/projects/{PROJECT}/search");
    let got = env
        .send(
            "POST",
            &search,
            &env.member("alice"),
            &[],
            r#"{"query":""}"#,
        )
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    let got = env
        .send("POST", &search, &env.admin(), &[], r#"{"query":""}"#)
        .await;
    env.assert_unrouted(&got, None);
    let other = format!("/api/tools/projects/not-{PROJECT}/search");
    let got = env.send("POST", &other, &env.admin(), &[], "{}").await;
    env.assert_refused(&got, 404, "unknown_project");
    env.gw.shutdown().await;

    let products = "member_products = [\"proxy\", \"agentos\"]";
    let env = Env::with(fixtures(), |b| b.policy(products)).await;
    let got = env
        .send("POST", &search, &env.member("bob"), &[], r#"{"query":""}"#)
        .await;
    env.assert_unrouted(&got, Some("bob"));
    let tools = got.json()["tools"].as_array().unwrap().clone();
    assert!(!tools.is_empty());
    assert!(tools
        .iter()
        .all(|t| ["salesforce", "slack"].contains(&t["integration"].as_str().unwrap())));
    env.gw.shutdown().await;
}

/// `paragon.member_token_permissions` is merged into every minted member
/// claim: an emulator asking for ActionKit's `actionkit` permission refuses
/// a member without it and serves one with it.
#[tokio::test]
async fn member_token_permissions_reach_paragon() {
    let mut f = fixtures();
    f.actionkit_permission = true;
    let run = r#"{"action":"SLACK_SEND_MESSAGE","parameters":{}}"#;
    let env = Env::with(f.clone(), |b| b).await;
    let got = env
        .send_as(
            "POST",
            &p("/actions"),
            &env.member("alice"),
            SLACK_ALICE_1,
            run,
        )
        .await;
    assert_eq!((got.status.as_u16(), got.code().as_str()), (403, "7210"));
    env.gw.shutdown().await;

    let env = Env::with(f, |b| {
        b.paragon("member_token_permissions = { actionkit = true }")
    })
    .await;
    let got = env
        .send_as(
            "POST",
            &p("/actions"),
            &env.member("alice"),
            SLACK_ALICE_1,
            run,
        )
        .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let fwd = env.forwarded(&got);
    let mut expected = claim_for([("slack", SLACK_ALICE_1)]);
    expected["actionkit"] = json!(true);
    assert_eq!(env.upstream_claims(&fwd[0])[PERMS], expected);
    // Admin tokens carry no claim at all.
    let got = env
        .send_as("POST", &p("/actions"), &env.admin(), SLACK_ALICE_1, run)
        .await;
    assert!(env
        .upstream_claims(&env.forwarded(&got)[0])
        .get(PERMS)
        .is_none());
    env.gw.shutdown().await;
}

/// A scope key in `member_token_permissions` would widen every member's
/// token: refused at load, naming the key.
#[test]
fn member_token_permissions_may_not_hold_scopes() {
    let keys = Keys::new();
    for scope in [
        "\"integration:*\" = true",
        "\"credential:x\" = true",
        "\"Integration:slack\" = true",
    ] {
        let toml = ConfigBuilder::new(&keys, Hosts::all("http://127.0.0.1:9"))
            .paragon(&format!("member_token_permissions = {{ {scope} }}"))
            .toml();
        let err = credgate::config::Config::from_toml(
            &toml,
            keys.path(),
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("paragon.member_token_permissions"),
            "{err}"
        );
    }
}

// ------------------------------------------------------- smaller holes

/// A malformed chunked body from the caller, on a route whose body
/// streams, is the caller's fault: 400 `bad_request`, not 502, and no
/// upstream error is counted.
#[tokio::test]
async fn a_malformed_chunked_body_is_the_callers_fault() {
    let env = Env::start().await;
    let before = scrape_metrics(&env.gw).await;
    let token = env.member("alice");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Paragon-Credential: {SLACK_ALICE_1}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n\r\n",
        p("/sdk/proxy/slack/__upload")
    );
    let out = raw(
        env.gw.addr,
        head.as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    assert!(out.contains("bad_request"), "{out}");
    let after = scrape_metrics(&env.gw).await;
    for kind in ["connect", "timeout", "other"] {
        let s = format!("credgate_upstream_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(metric(&after, &s), metric(&before, &s), "{kind}");
    }
    env.gw.shutdown().await;
}
