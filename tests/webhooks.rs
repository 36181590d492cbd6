//! Trigger subscriptions' `webhookOverride` (contract §3, §5a, §9): a
//! subscription keeps sending an account's events to the URL its creator
//! chose, after the creator loses access. A member may name only a host in
//! `policy.webhook_hosts` (by §7's WHATWG-compatible parser), on `POST`
//! and `PATCH`, never shadowed; admins are not restricted; and the access
//! review lists each credential's subscriptions with who created them
//! through credgate. Each test runs the real gateway in front of the
//! in-process Paragon emulator and checks what reached it.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use harness::*;
use serde_json::{json, Value};

/// The host `policy.webhook_hosts` allows in these tests.
const HOOKS: &str = "hooks.example";

async fn env_with(policy: &str) -> Env {
    let policy = policy.to_string();
    Env::with(fixtures(), move |b| {
        b.policy(&format!("webhook_hosts = [\"{HOOKS}\"]\n{policy}"))
    })
    .await
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// A new subscription's body, with `webhook` as its `webhookOverride`
/// (raw JSON text, so duplicate keys can be sent), or none.
fn create_body(webhook: Option<&str>) -> String {
    match webhook {
        Some(w) => format!(
            r#"{{"integration":"slack","type":"SLACK_NEW_MESSAGE","parameters":{{}},"webhookOverride":{w}}}"#
        ),
        None => r#"{"integration":"slack","type":"SLACK_NEW_MESSAGE"}"#.to_string(),
    }
}

fn override_to(url: &str) -> String {
    format!(
        r#"{{"url":{},"headers":{{"Authorization":"hook-secret"}}}}"#,
        json!(url)
    )
}

/// `POST .../trigger-subscriptions` naming `cred`.
async fn create(env: &Env, token: &str, cred: &str, body: &str) -> Got {
    env.send(
        "POST",
        &p("/trigger-subscriptions"),
        token,
        &[("x-paragon-credential", cred), JSON],
        body.to_string(),
    )
    .await
}

/// `PATCH .../trigger-subscriptions/{id}` naming `cred`.
async fn patch(env: &Env, token: &str, id: &str, cred: &str, body: &str) -> Got {
    env.send(
        "PATCH",
        &p(&format!("/trigger-subscriptions/{id}")),
        token,
        &[("x-paragon-credential", cred), JSON],
        body.to_string(),
    )
    .await
}

/// Asserts that `got` reached Paragon once with exactly the body sent.
fn assert_forwarded_unchanged(env: &Env, got: &Got, sent: &str) {
    assert!(
        got.status.is_success(),
        "{} {}",
        got.status,
        String::from_utf8_lossy(&got.body)
    );
    let fwd = env.forwarded(got);
    assert_eq!(fwd.len(), 1, "{fwd:#?}");
    assert_eq!(
        String::from_utf8_lossy(&fwd[0].body),
        sent,
        "the body as sent"
    );
}

/// The audit record of the request that answered `got`.
async fn audit_of(env: &Env, got: &Got) -> Value {
    let id = rid(got);
    wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await
}

/// URLs a member may not aim a subscription at, with the answer: another
/// host in any spelling (403), or not a plain absolute http(s) URL (400).
const REFUSED: &[(&str, u16, &str)] = &[
    ("https://evil.example/x", 403, "upstream_host_forbidden"),
    ("HTTPS://EVIL.EXAMPLE/X", 403, "upstream_host_forbidden"),
    (
        "https://hooks.example@evil.example/",
        403,
        "upstream_host_forbidden",
    ),
    (
        "https://hooks.example%23@evil.example/",
        403,
        "upstream_host_forbidden",
    ),
    (
        "https://hooks.example.evil.example/",
        403,
        "upstream_host_forbidden",
    ),
    ("https:/evil.example", 400, "bad_request"),
    ("https:evil.example", 400, "bad_request"),
    ("https:\\\\evil.example", 400, "bad_request"),
    ("https:\\\\hooks.example", 400, "bad_request"),
    ("//evil.example/x", 400, "bad_request"),
    ("//hooks.example/x", 400, "bad_request"),
    (" https://hooks.example/", 400, "bad_request"),
    ("ftp://hooks.example/", 400, "bad_request"),
];

/// contract §3: a member's `webhookOverride.url` to a host outside
/// `policy.webhook_hosts`, in every spelling and parser trick, is refused
/// before Paragon (audit reason `host_not_allowed` for the host refusals);
/// to a listed host (any letter case), without `url`, or `null`, the body
/// reaches Paragon exactly as sent.
#[tokio::test]
async fn a_members_webhook_override_must_name_a_listed_host() {
    let env = env_with("").await;
    let alice = env.member("alice");
    for (url, status, code) in REFUSED {
        let got = create(
            &env,
            &alice,
            SLACK_ALICE_1,
            &create_body(Some(&override_to(url))),
        )
        .await;
        env.assert_refused(&got, *status, code);
        if *status == 403 {
            let record = audit_of(&env, &got).await;
            assert_eq!(record["reason"], "host_not_allowed", "{url}: {record}");
            assert_eq!(record["decision"], "refused", "{url}: {record}");
        }
    }
    for body in [
        create_body(Some(&override_to("https://hooks.example/events"))),
        create_body(Some(&override_to("HTTPS://HOOKS.EXAMPLE/events"))),
        create_body(Some(&override_to("https://hooks.example:8443/e?x=1"))),
        create_body(Some(r#"{"headers":{"Authorization":"s"}}"#)),
        create_body(Some("null")),
        create_body(None),
    ] {
        let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
        assert_forwarded_unchanged(&env, &got, &body);
        env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    }
    // Without a named credential too (the body is also read for its
    // integration).
    let body = create_body(Some(&override_to("https://evil.example/x")));
    let got = env
        .send(
            "POST",
            &p("/trigger-subscriptions"),
            &env.member("dave"),
            &[JSON],
            body,
        )
        .await;
    env.assert_refused(&got, 403, "upstream_host_forbidden");
    env.gw.shutdown().await;
}

/// The default `policy.webhook_hosts` is empty: every member
/// `webhookOverride.url` is 403, an override without one still passes.
#[tokio::test]
async fn by_default_no_member_may_name_a_webhook_url() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let body = create_body(Some(&override_to("https://hooks.example/events")));
    let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
    env.assert_refused(&got, 403, "upstream_host_forbidden");
    let body = create_body(Some(r#"{"headers":{"X":"y"}}"#));
    let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
    assert_forwarded_unchanged(&env, &got, &body);
    env.gw.shutdown().await;
}

/// Bodies credgate cannot judge as Paragon would read them are 400 before
/// Paragon: duplicate `webhookOverride` or `url` keys (also spelled with
/// escapes), a `url` that is not a string, an override that is not an
/// object, invalid JSON, a body not sent as JSON; beyond
/// `server.max_body_bytes`, 413.
#[tokio::test]
async fn malformed_or_duplicate_webhook_inputs_are_refused() {
    let env = Env::with(fixtures(), |b| {
        b.policy(&format!("webhook_hosts = [\"{HOOKS}\"]"))
            .server("max_body_bytes = 2048")
    })
    .await;
    let alice = env.member("alice");
    let ok = r#"{"url":"https://hooks.example/x"}"#;
    for body in [
        format!(
            r#"{{"integration":"slack","type":"T","webhookOverride":{ok},"webhookOverride":{ok}}}"#
        ),
        format!(
            r#"{{"integration":"slack","type":"T","webhookOverride":null,"webhook\u004fverride":{}}}"#,
            override_to("https://evil.example/")
        ),
        r#"{"integration":"slack","type":"T","webhookOverride":{"url":"https://hooks.example/x","url":"https://evil.example/"}}"#.to_string(),
        r#"{"integration":"slack","type":"T","webhookOverride":{"url":"https://hooks.example/x","\u0075rl":"https://hooks.example/y"}}"#.to_string(),
        create_body(Some(r#"{"url":null}"#)),
        create_body(Some(r#"{"url":42}"#)),
        create_body(Some(r#"{"url":{"href":"https://evil.example"}}"#)),
        create_body(Some(r#""https://evil.example/""#)),
        create_body(Some("[]")),
        r#"{"integration":"slack","webhookOverride":{"url":"https://evil"#.to_string(),
        "[]".to_string(),
    ] {
        let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
        env.assert_refused(&got, 400, "bad_request");
    }
    // A form body could carry an override credgate did not read as JSON.
    let got = env
        .send(
            "POST",
            &p("/trigger-subscriptions"),
            &alice,
            &[
                ("x-paragon-credential", SLACK_ALICE_1),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            create_body(None),
        )
        .await;
    env.assert_refused(&got, 400, "bad_request");
    let big = create_body(Some(&override_to(&format!(
        "https://hooks.example/{}",
        "a".repeat(4096)
    ))));
    let got = create(&env, &alice, SLACK_ALICE_1, &big).await;
    env.assert_refused(&got, 413, "body_too_large");
    env.gw.shutdown().await;
}

/// `PATCH` of a subscription obeys the same rule (it replaces the
/// override); Paragon's subscription keeps its URL after a refusal.
#[tokio::test]
async fn patching_a_subscription_obeys_the_same_rule() {
    let env = env_with("").await;
    let alice = env.member("alice");
    let got = create(&env, &alice, SLACK_ALICE_1, &create_body(None)).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let id = got.json()["id"].as_str().unwrap().to_string();
    for (url, status, code) in REFUSED {
        let body = format!(r#"{{"webhookOverride":{}}}"#, override_to(url));
        let got = patch(&env, &alice, &id, SLACK_ALICE_1, &body).await;
        env.assert_refused(&got, *status, code);
    }
    let body =
        r#"{"webhookOverride":{"url":"https://hooks.example/a","url":"https://evil.example/"}}"#;
    let got = patch(&env, &alice, &id, SLACK_ALICE_1, body).await;
    env.assert_refused(&got, 400, "bad_request");
    // Also on a path below the subscription, and with another method.
    for (method, path) in [
        ("PATCH", format!("/trigger-subscriptions/{id}/x")),
        ("PUT", format!("/trigger-subscriptions/{id}")),
        ("PUT", "/trigger-subscriptions".to_string()),
    ] {
        let got = env
            .send(
                method,
                &p(&path),
                &alice,
                &[("x-paragon-credential", SLACK_ALICE_1), JSON],
                format!(
                    r#"{{"webhookOverride":{}}}"#,
                    override_to("https://evil.example/")
                ),
            )
            .await;
        env.assert_refused(&got, 403, "upstream_host_forbidden");
    }
    let got = env
        .send(
            "GET",
            &p(&format!("/trigger-subscriptions/{id}")),
            &alice,
            &[("x-paragon-credential", SLACK_ALICE_1)],
            "",
        )
        .await;
    assert_eq!(got.json()["webhookOverride"], Value::Null, "unchanged");

    let body = format!(
        r#"{{"webhookOverride":{}}}"#,
        override_to("https://hooks.example/new")
    );
    let got = patch(&env, &alice, &id, SLACK_ALICE_1, &body).await;
    assert_forwarded_unchanged(&env, &got, &body);
    assert_eq!(
        got.json()["webhookOverride"]["url"],
        "https://hooks.example/new"
    );
    env.gw.shutdown().await;
}

/// Admins are not restricted: their override to any host reaches Paragon
/// as sent, on `POST` and `PATCH`.
#[tokio::test]
async fn admins_may_name_any_webhook_host() {
    let env = env_with("").await;
    let admin = env.admin();
    let body = create_body(Some(&override_to("https://evil.example/x")));
    let got = create(&env, &admin, SLACK_BOB, &body).await;
    assert_forwarded_unchanged(&env, &got, &body);
    let id = got.json()["id"].as_str().unwrap().to_string();
    let body = format!(
        r#"{{"webhookOverride":{}}}"#,
        override_to("https://elsewhere.example/y")
    );
    let got = patch(&env, &admin, &id, SLACK_BOB, &body).await;
    assert_forwarded_unchanged(&env, &got, &body);
    env.gw.shutdown().await;
}

/// contract §5a: the host refusal is never shadowed, neither with
/// `enforce = "shadow"` nor with `actionkit` in `shadow_products`: the
/// events (and the override's secret headers) would leave for good.
#[tokio::test]
async fn the_webhook_host_refusal_is_never_shadowed() {
    for policy in ["enforce = \"shadow\"", "shadow_products = [\"actionkit\"]"] {
        let env = env_with(policy).await;
        let alice = env.member("alice");
        let body = create_body(Some(&override_to("https://evil.example/x")));
        let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
        env.assert_refused(&got, 403, "upstream_host_forbidden");
        let record = audit_of(&env, &got).await;
        assert_eq!(record["decision"], "refused", "{policy}: {record}");
        assert_eq!(record["reason"], "host_not_allowed", "{policy}: {record}");
        // Shadowing still applies to what it may: alice's subscription on
        // bob's account goes out, recorded as shadow_refused.
        let body = create_body(Some(&override_to("https://hooks.example/x")));
        let got = create(&env, &alice, SLACK_BOB, &body).await;
        assert_forwarded_unchanged(&env, &got, &body);
        let record = audit_of(&env, &got).await;
        assert_eq!(record["decision"], "shadow_refused", "{policy}: {record}");
        env.gw.shutdown().await;
    }
}

/// contract §3, §9: the access review lists each credential's known
/// subscriptions: created through credgate with the creating principal,
/// learned from a list with `created_by: null`; a subscription deleted
/// through credgate leaves it. `credgate access` shows them.
#[tokio::test]
async fn the_access_review_lists_subscriptions_with_their_creator() {
    let env = env_with("").await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let body = create_body(Some(&override_to("https://hooks.example/a")));
    let got = create(&env, &alice, SLACK_ALICE_1, &body).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let alices = got.json()["id"].as_str().unwrap().to_string();

    // One made at Paragon directly, which credgate then sees in bob's list.
    let token = env.paragon_token(json!({}));
    let r = http::Request::post(format!("{}{}", env.emu.url(), p("/trigger-subscriptions")))
        .header("authorization", format!("Bearer {token}"))
        .header("x-paragon-credential", SLACK_BOB)
        .header("content-type", "application/json")
        .body(credgate::net::body::full(create_body(None)))
        .unwrap();
    let direct = send(&env.cl, r).await;
    let bobs = direct.json()["id"].as_str().unwrap().to_string();
    let got = env
        .send("GET", &p("/trigger-subscriptions"), &bob, &[], "")
        .await;
    assert_eq!(got.status, 200);

    let subs = |a: &Value, id: &str| -> Value {
        a["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {a:#}"))["subscriptions"]
            .clone()
    };
    let (status, a) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        subs(&a, SLACK_ALICE_1),
        json!([{"id": alices, "created_by": "alice"}])
    );
    assert_eq!(
        subs(&a, SLACK_BOB),
        json!([{"id": bobs, "created_by": null}])
    );
    assert_eq!(subs(&a, SF_ALICE), json!([]));

    // The command line shows them (JSON as the endpoint; a table row).
    let admin = format!("http://{}", env.gw.admin_addr);
    let out = tokio::task::spawn_blocking(move || {
        let run = |format: &str| {
            std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
                .args([
                    "access", "--admin", &admin, "--user", "acme", "--format", format,
                ])
                .output()
                .unwrap()
        };
        (run("json"), run("table"))
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_slice(&out.0.stdout).unwrap();
    assert_eq!(
        subs(&v, SLACK_ALICE_1),
        json!([{"id": alices, "created_by": "alice"}])
    );
    let table = String::from_utf8(out.1.stdout).unwrap();
    assert!(
        table.lines().any(|l| l.starts_with(SLACK_ALICE_1)
            && l.contains("trigger_subscription")
            && l.contains("alice")
            && l.contains(&alices)),
        "{table}"
    );

    // Deleted through credgate: gone from the review.
    let got = env
        .send_as(
            "DELETE",
            &p(&format!("/trigger-subscriptions/{alices}")),
            &alice,
            SLACK_ALICE_1,
            "",
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let (_, a) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(subs(&a, SLACK_ALICE_1), json!([]));
    env.gw.shutdown().await;
}
