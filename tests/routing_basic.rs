//! Credential routing against a minimal recorded Paragon (a fixed `/sdk/me`
//! plus echo on every other path). The full product matrix runs against the
//! emulator in `routing.rs`; these pin the pipeline's core decisions.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const SF_ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const SF_BOB: &str = "b0b00000-0000-4000-8000-000000000001";
const SL_ALICE1: &str = "a11ce000-0000-4000-8000-000000000002";
const SL_ALICE2: &str = "a11ce000-0000-4000-8000-000000000003";
const SL_BOB: &str = "b0b00000-0000-4000-8000-000000000002";

struct Fake {
    paragon: Recorder,
    me: Arc<Mutex<Value>>,
}

async fn fake_paragon() -> Fake {
    let me = Arc::new(Mutex::new(me_body(
        "acme",
        &[
            (SF_ALICE, "salesforce", "alice"),
            (SF_BOB, "salesforce", "bob"),
            (SL_ALICE1, "slack", "alice"),
            (SL_ALICE2, "slack", "alice"),
            (SL_BOB, "slack", "bob"),
        ],
    )));
    let me2 = me.clone();
    let paragon = spawn_recorder(Arc::new(move |r: Recorded| {
        let me = me2.clone();
        Box::pin(async move {
            if r.path.ends_with("/sdk/me") && r.method == "GET" {
                let body = me.lock().unwrap().clone();
                return json_response(StatusCode::OK, body);
            }
            if r.path == "/api/syncs" && r.method == "POST" {
                return json_response(
                    StatusCode::OK,
                    json!({"id": "5e5e0000-0000-4000-8000-000000000001", "status": "INITIALIZING"}),
                );
            }
            json_response(StatusCode::OK, json!({"echo": r.path}))
        })
    }))
    .await;
    Fake { paragon, me }
}

fn non_me(rec: &Recorder) -> Vec<Recorded> {
    rec.requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/sdk/me"))
        .collect()
}

#[tokio::test]
async fn members_reach_only_their_own_credentials() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    let cl = client();
    let sf = format!("/projects/{PROJECT}/sdk/proxy/salesforce/query");

    // Own credential: allowed, exactly one header, narrowed token.
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &sf,
            Some(&alice),
            &[("X-Paragon-Credential", &SF_ALICE.to_uppercase())],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let seen = non_me(&fake.paragon);
    assert_eq!(seen.len(), 1);
    let creds: Vec<_> = seen[0]
        .headers
        .get_all("x-paragon-credential")
        .iter()
        .collect();
    assert_eq!(creds, vec![SF_ALICE]);
    let claims = keys.decode_upstream(seen[0].headers["authorization"].to_str().unwrap());
    assert_eq!(claims["sub"], "acme");
    assert_eq!(claims["aud"], format!("useparagon.com/{PROJECT}"));
    assert_eq!(
        claims["urn:useparagon:connect:permissions"],
        json!({"integration:salesforce": {format!("credential:{SF_ALICE}"): true}})
    );

    // Bob's, another integration's, an unknown one: one 403, nothing forwarded.
    fake.paragon.clear();
    for other in [SF_BOB, SL_ALICE1, "99999999-9999-4999-8999-999999999999"] {
        let got = send(
            &cl,
            req(
                "GET",
                &gw,
                &sf,
                Some(&alice),
                &[("x-paragon-credential", other)],
                "",
            ),
        )
        .await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (403, "credential_forbidden"),
            "{other}"
        );
        assert_eq!(
            got.json()["message"],
            "the requested credential is not permitted for this caller"
        );
    }
    assert!(
        non_me(&fake.paragon).is_empty(),
        "refused requests never reach Paragon"
    );

    // Spellings: underscore, doubled, comma-joined.
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &sf,
            Some(&alice),
            &[("x_paragon_credential", SF_BOB)],
            "",
        ),
    )
    .await;
    assert_eq!(
        got.status, 403,
        "an underscore spelling is still the credential header"
    );
    for hs in [
        vec![
            ("x-paragon-credential", SF_ALICE),
            ("x-paragon-credential", SF_ALICE),
        ],
        vec![
            ("x-paragon-credential", SF_ALICE),
            ("X_Paragon_Credential", SF_ALICE),
        ],
        vec![(
            "x-paragon-credential",
            "a11ce000-0000-4000-8000-000000000001, a11ce000-0000-4000-8000-000000000001",
        )],
    ] {
        let got = send(&cl, req("GET", &gw, &sf, Some(&alice), &hs, "")).await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (400, "bad_request"),
            "{hs:?}"
        );
    }
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &sf,
            Some(&alice),
            &[("x-paragon-credential", "not-a-uuid")],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 400);
    assert!(non_me(&fake.paragon).is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn defaults_and_ext_resolution() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    let cl = client();

    let got = send(
        &cl,
        req(
            "POST",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&alice),
            &[],
            "{}",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        non_me(&fake.paragon)[0].headers["x-paragon-credential"],
        SF_ALICE
    );

    let got = send(
        &cl,
        req(
            "POST",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/slack/x"),
            Some(&alice),
            &[],
            "{}",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (400, "credential_required")
    );
    assert_eq!(got.json()["candidates"], json!([SL_ALICE1, SL_ALICE2]));

    let got = send(
        &cl,
        req(
            "POST",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/gmail/x"),
            Some(&alice),
            &[],
            "{}",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "no_permitted_credential")
    );

    fake.paragon.clear();
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&alice),
            &[("x-paragon-credential", "ext:alice")],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        non_me(&fake.paragon)[0].headers["x-paragon-credential"],
        SF_ALICE
    );
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&alice),
            &[("x-paragon-credential", "ext:bob")],
            "",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "credential_forbidden")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn me_is_filtered_for_members_and_untouched_for_admins() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let cl = client();
    let path = format!("/projects/{PROJECT}/sdk/me");
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &path,
            Some(&keys.member("acme", "bob")),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains(SF_BOB) && text.contains(SL_BOB));
    assert!(
        !text.contains(SF_ALICE) && !text.contains(SL_ALICE1),
        "{text}"
    );
    let got = send(
        &cl,
        req("GET", &gw, &path, Some(&keys.admin("acme")), &[], ""),
    )
    .await;
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains(SF_ALICE) && text.contains(SF_BOB));
    gw.shutdown().await;
}

#[tokio::test]
async fn sync_bodies_carry_the_resolved_credential() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    let cl = client();
    let body = r#"{"integration":"salesforce","pipeline":"contacts","n":1.50}"#;
    let got = send(
        &cl,
        req(
            "POST",
            &gw,
            "/api/syncs",
            Some(&alice),
            &[("content-type", "application/json")],
            body,
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let sent = non_me(&fake.paragon);
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        format!(
            r#"{{"credentialId":"{SF_ALICE}","integration":"salesforce","pipeline":"contacts","n":1.50}}"#
        )
    );
    assert_eq!(
        sent[0].headers["content-length"],
        sent[0].body.len().to_string()
    );
    assert!(sent[0].headers.get("x-paragon-credential").is_none());

    // The sync is now alice's: she reaches it, bob does not.
    let sync = "/api/syncs/5e5e0000-0000-4000-8000-000000000001/records";
    let got = send(&cl, req("GET", &gw, sync, Some(&alice), &[], "")).await;
    assert_eq!(got.status, 200);
    let got = send(
        &cl,
        req("GET", &gw, sync, Some(&keys.member("acme", "bob")), &[], ""),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "credential_forbidden")
    );

    // Duplicate keys, header plus body, wrong type: 400.
    for (b, h) in [
        (
            format!(r#"{{"credentialId":"{SF_ALICE}","credentialId":"{SF_ALICE}"}}"#),
            None,
        ),
        (
            format!(r#"{{"credentialId":"{SF_ALICE}"}}"#),
            Some(SF_ALICE),
        ),
        (r#"{"credentialId":5}"#.to_string(), None),
        (r#"{"credentialId":"x"}"#.to_string(), None),
        ("not json".to_string(), None),
    ] {
        let hs: Vec<(&str, &str)> = h
            .map(|v| vec![("x-paragon-credential", v)])
            .unwrap_or_default();
        let got = send(
            &cl,
            req("POST", &gw, "/api/syncs", Some(&alice), &hs, b.clone()),
        )
        .await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (400, "bad_request"),
            "{b}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn paragon_failing_sdk_me_is_503_and_nothing_is_forwarded() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    *fake.me.lock().unwrap() = json!({"authenticated": false});
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let got = send(
        &client(),
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&keys.member("acme", "alice")),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (503, "credentials_unavailable")
    );
    assert!(non_me(&fake.paragon).is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn trace_duplicate_hosts_and_non_json_sync_bodies_are_refused() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    let cl = client();
    let sf = format!("/projects/{PROJECT}/sdk/proxy/salesforce/x");
    let got = send(&cl, req("TRACE", &gw, &sf, Some(&alice), &[], "")).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (400, "bad_request")
    );
    let raw_req = format!(
        "GET {sf} HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer {alice}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        statuses(
            &raw(
                gw.addr,
                raw_req.as_bytes(),
                std::time::Duration::from_secs(5)
            )
            .await
        ),
        vec![400]
    );
    for (ct, ce) in [
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        ("application/json", Some("gzip")),
    ] {
        let mut hs = vec![("content-type", ct)];
        if let Some(e) = ce {
            hs.push(("content-encoding", e));
        }
        let got = send(
            &cl,
            req(
                "POST",
                &gw,
                "/api/syncs",
                Some(&alice),
                &hs,
                r#"{"integration":"salesforce"}"#,
            ),
        )
        .await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (400, "bad_request"),
            "{ct} {ce:?}"
        );
    }
    assert!(
        non_me(&fake.paragon).is_empty(),
        "nothing refused reached Paragon"
    );
    // A JSON media type with parameters is fine, and Paragon is told it is JSON.
    let got = send(
        &cl,
        req(
            "POST",
            &gw,
            "/api/syncs",
            Some(&alice),
            &[("content-type", "application/json; charset=utf-8")],
            r#"{"integration":"salesforce"}"#,
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        non_me(&fake.paragon)[0].headers["content-type"],
        "application/json"
    );
    // Client-address headers from an untrusted client are dropped.
    fake.paragon.clear();
    send(
        &cl,
        req(
            "GET",
            &gw,
            &sf,
            Some(&alice),
            &[
                ("x-real-ip", "6.6.6.6"),
                ("true-client-ip", "6.6.6.6"),
                ("cf-connecting-ip", "6.6.6.6"),
            ],
            "",
        ),
    )
    .await;
    let r = &non_me(&fake.paragon)[0];
    for h in ["x-real-ip", "true-client-ip", "cf-connecting-ip"] {
        assert!(!r.headers.contains_key(h), "{h}");
    }
    gw.shutdown().await;
}

/// `policy.admin_default = "resolve"`: an admin naming no credential gets the
/// member default rules over every credential of the user, instead of being
/// forwarded without one.
#[tokio::test]
async fn admin_default_resolve_applies_the_default_rules_to_admins() {
    let keys = Keys::new();
    let fake = fake_paragon().await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .policy("admin_default = \"resolve\"")
        .start()
        .await;
    let admin = keys.admin("acme");
    let cl = client();
    // Two salesforce accounts (alice's and bob's): the admin must choose.
    let got = send(
        &cl,
        req(
            "GET",
            &gw,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (400, "credential_required")
    );
    assert_eq!(got.json()["candidates"], json!([SF_ALICE, SF_BOB]));
    assert!(non_me(&fake.paragon).is_empty());

    // With the default passthrough, the same request goes out without a credential.
    let passthrough = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let got = send(
        &cl,
        req(
            "GET",
            &passthrough,
            &format!("/projects/{PROJECT}/sdk/proxy/salesforce/x"),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(non_me(&fake.paragon)[0]
        .headers
        .get("x-paragon-credential")
        .is_none());
    gw.shutdown().await;
    passthrough.shutdown().await;
}
