//! What Paragon's Connect SDK needs of credgate's answers (contract §13),
//! as the SDK sends its requests (`X-Paragon-SDK-Version`), against the
//! Paragon emulator: refusals it does not sign its user out on (403 and
//! `credential_required` in Paragon's shape, code `7210`), a 401 that
//! still signs out, and `includeAccountAuth=undefined` (the SDK's default)
//! forwarded as one `includeAccountAuth=false`.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use harness::*;

const SDK: (&str, &str) = ("x-paragon-sdk-version", "2.4.0");

#[tokio::test]
async fn the_sdk_gets_refusals_in_paragons_shape_and_a_401_as_it_is() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    // Bob's account: 403, Paragon's code, credgate's own inside.
    let got = env
        .send(
            "GET",
            &sf,
            &alice,
            &[SDK, ("x-paragon-credential", SF_BOB)],
            "",
        )
        .await;
    assert_eq!(got.status, 403);
    let v = got.json();
    assert_eq!(v["code"], "7210", "{v}");
    assert_eq!(v["status"], 403);
    assert_eq!(v["credgate"]["code"], "credential_forbidden");
    assert_eq!(v["credgate"]["requestId"], rid(&got));
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(env.forwarded(&got).is_empty(), "nothing reached Paragon");
    // Several Slack accounts and none named: 400 with the candidates.
    let got = env
        .send(
            "POST",
            &p("/sdk/proxy/slack/chat.postMessage"),
            &alice,
            &[SDK],
            "{}",
        )
        .await;
    assert_eq!(got.status, 400);
    let v = got.json();
    assert_eq!(
        (v["code"].as_str(), v["status"].as_u64()),
        (Some("7210"), Some(400)),
        "{v}"
    );
    assert_eq!(v["credgate"]["code"], "credential_required");
    let mut candidates: Vec<&str> = v["credgate"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    candidates.sort_unstable();
    assert_eq!(candidates, vec![SLACK_ALICE_1, SLACK_ALICE_2]);
    // Admin-only PATCH /sdk/me: 403 in the SDK's shape too.
    let got = env
        .send("PATCH", &p("/sdk/me"), &alice, &[SDK], r#"{"meta":{}}"#)
        .await;
    assert_eq!(got.json()["code"], "7210");
    // A bad token must sign the user out: credgate's own 401.
    let got = env.send("GET", &sf, "not-a-token", &[SDK], "").await;
    assert_eq!(got.status, 401);
    assert_eq!(got.code(), "unauthenticated");
    // Other errors keep credgate's shape; without the SDK's header, every
    // refusal does.
    let got = env.send("GET", &p("/no/such"), &alice, &[SDK], "").await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "route_not_found")
    );
    let got = env.salesforce_get("alice", "x", SF_BOB, &[]).await;
    env.assert_refused(&got, 403, "credential_forbidden");
    // The SDK's version header is a known member header: forwarded.
    let got = env
        .send(
            "GET",
            &sf,
            &alice,
            &[SDK, ("x-paragon-credential", SF_ALICE)],
            "",
        )
        .await;
    let r = env.assert_routed(&got, SF_ALICE, Place::Header);
    assert_eq!(r.header("x-paragon-sdk-version"), Some("2.4.0"));
}

/// `includeAccountAuth=undefined` (the SDK's default), `false` and empty
/// do not ask: a member's request goes with exactly one
/// `includeAccountAuth=false`; `true` stays refused; admins' queries pass
/// as sent.
#[tokio::test]
async fn the_sdks_include_account_auth_default_is_not_asking() {
    let env = Env::start().await;
    let alice = env.member("alice");
    for q in [
        "includeAccountAuth=undefined",
        "includeAccountAuth=",
        "includeAccountAuth",
        "integration=slack&includeAccountAuth=undefined&includeAccountAuth=false",
    ] {
        let got = env
            .send(
                "GET",
                &p(&format!("/sdk/credentials?{q}")),
                &alice,
                &[SDK],
                "",
            )
            .await;
        assert_eq!(got.status, 200, "{q}: {:?}", got.body);
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1, "{q}");
        let sent = fwd[0].query.clone().unwrap_or_default();
        assert_eq!(
            sent.matches("includeAccountAuth").count(),
            1,
            "{q} went as {sent}"
        );
        assert!(
            sent.ends_with("includeAccountAuth=false"),
            "{q} went as {sent}"
        );
        assert_eq!(
            sent.contains("integration=slack"),
            q.contains("integration=slack")
        );
    }
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &alice,
            &[SDK],
            "",
        )
        .await;
    assert_eq!(
        (got.status.as_u16(), got.json()["code"].as_str()),
        (403, Some("7210"))
    );
    assert!(env.forwarded(&got).is_empty());
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=undefined"),
            &env.admin(),
            &[],
            "",
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        env.forwarded(&got)[0].query.as_deref(),
        Some("includeAccountAuth=undefined"),
        "an admin's query goes as sent"
    );
}

/// `policy.member_metadata = "ignore"`: a member's `PATCH /sdk/me` (the
/// SDK's `authenticate(..., {metadata})`) is answered with its own filtered
/// `GET /sdk/me` and writes nothing; admins' metadata is written.
#[tokio::test]
async fn a_members_metadata_is_ignored_when_the_policy_says_so() {
    let env = Env::with(fixtures(), |b| b.policy("member_metadata = \"ignore\"")).await;
    let alice = env.member("alice");
    let got = env
        .send(
            "PATCH",
            &p("/sdk/me"),
            &alice,
            &[SDK, ("content-type", "application/json")],
            r#"{"meta":{"Name":"Mallory"}}"#,
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let text = String::from_utf8_lossy(&got.body).to_string();
    assert!(text.contains(SF_ALICE) && !text.contains(SF_BOB), "{text}");
    assert!(
        env.state().requests().iter().all(|r| r.method != "PATCH"),
        "nothing was written"
    );
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    assert_eq!((fwd[0].method.as_str(), fwd[0].body_len), ("GET", 0));
    let id = rid(&got);
    let r = common::wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
    assert_eq!(
        (r["decision"].as_str(), r["reason"].as_str()),
        (Some("allowed"), Some("metadata_ignored")),
        "{r}"
    );
    // An admin's metadata is written.
    let got = env
        .send(
            "PATCH",
            &p("/sdk/me"),
            &env.admin(),
            &[("content-type", "application/json")],
            r#"{"meta":{"Name":"Acme"}}"#,
        )
        .await;
    assert_eq!(got.status, 200);
    assert!(env.state().requests().iter().any(|r| r.method == "PATCH"));
}
