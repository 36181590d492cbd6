//! End-to-end credential routing: the real gateway in front of the Paragon
//! emulator, proving that no member reaches another member's account on
//! any product of SPEC §3. Every allowed request is checked in the
//! emulator's log (exactly one credential, a token narrowed to it), every
//! refused one is checked to have reached nothing.
//!
//! Members of Connected User `acme` (`owner_external_id = "{principal}"`):
//! alice (Salesforce, two Slack, Google Drive), bob (Salesforce, Slack),
//! carol (Salesforce, Google Drive), dave (Slack).

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use credgate::emulator::fixtures::*;
use credgate::emulator::{Behaviour, CredentialFixture};
use credgate::paragon::permissions::claim_for;
use harness::*;
use serde_json::{json, Value};

/// The one message of `credential_forbidden` (SPEC §5: the same in every
/// case, so a caller cannot tell another member's id from an unknown one).
const FORBIDDEN_MESSAGE: &str = "the requested credential is not permitted for this caller";

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A product call naming a credential: `{cred}` in `path` or `body` is
/// replaced by the named value; with [`Place::Header`] it goes in
/// `X-Paragon-Credential`.
struct Row {
    what: &'static str,
    method: &'static str,
    path: String,
    body: &'static str,
    place: Place,
    own: &'static str,
    /// Refused: bob's, an unknown one, and (where the route knows its
    /// integration) alice's own of another integration.
    foreign: Vec<&'static str>,
}

async fn probe(env: &Env, token: &str, row: &Row, cred: &str) -> Got {
    let path = row.path.replace("{cred}", cred);
    let body = row.body.replace("{cred}", cred);
    let mut headers = vec![("content-type", "application/json")];
    if row.place == Place::Header {
        headers.push(("x-paragon-credential", cred));
    }
    env.send(row.method, &path, token, &headers, body).await
}

fn rows() -> Vec<Row> {
    let sync_body = r#"{"integration":"salesforce","pipeline":"contacts","credentialId":"{cred}"}"#;
    vec![
        Row {
            what: "proxy, salesforce",
            method: "GET",
            path: p("/sdk/proxy/salesforce/services/data/v59.0/query?q=SELECT+Id"),
            body: "",
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN, SLACK_ALICE_1],
        },
        Row {
            what: "proxy, slack, with a body",
            method: "POST",
            path: p("/sdk/proxy/slack/api/chat.postMessage"),
            body: r#"{"channel":"C1","text":"hi"}"#,
            place: Place::Header,
            own: SLACK_ALICE_2,
            foreign: vec![SLACK_BOB, UNKNOWN, DRIVE_ALICE],
        },
        Row {
            what: "workflow trigger",
            method: "POST",
            path: p("/sdk/triggers/2a0d2f2e-0000-4000-8000-00000000f10e"),
            body: r#"{"deal":1}"#,
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "app event",
            method: "POST",
            path: p("/sdk/events/trigger"),
            body: r#"{"name":"Contact Created","payload":{}}"#,
            place: Place::Header,
            own: SLACK_ALICE_1,
            foreign: vec![SLACK_BOB, UNKNOWN],
        },
        Row {
            what: "app event, v2 path",
            method: "POST",
            path: format!("/v2/projects/{PROJECT}/sdk/events/trigger"),
            body: r#"{"name":"Contact Created","payload":{}}"#,
            place: Place::Header,
            own: DRIVE_ALICE,
            foreign: vec![CAROL_DRIVE, UNKNOWN],
        },
        Row {
            what: "credentials, list with a header",
            method: "GET",
            path: p("/sdk/credentials"),
            body: "",
            place: Place::Header,
            own: DRIVE_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "credentials, by id",
            method: "GET",
            path: p("/sdk/credentials/{cred}"),
            body: "",
            place: Place::Token,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "credentials, by id, PATCH",
            method: "PATCH",
            path: p("/sdk/credentials/{cred}"),
            body: r#"{"externalId":"alice"}"#,
            place: Place::Token,
            own: SLACK_ALICE_1,
            foreign: vec![SLACK_BOB, UNKNOWN],
        },
        Row {
            what: "workflow settings, enable",
            method: "POST",
            path: p("/sdk/workflows/2a0d2f2e-0000-4000-8000-00000000f10e"),
            body: "",
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "workflow settings, disable",
            method: "DELETE",
            path: p("/sdk/workflows/2a0d2f2e-0000-4000-8000-00000000f10e"),
            body: "",
            place: Place::Header,
            own: SLACK_ALICE_2,
            foreign: vec![DAVE_SLACK, UNKNOWN],
        },
        Row {
            what: "actionkit, list actions",
            method: "GET",
            path: p("/actions"),
            body: "",
            place: Place::Header,
            own: SLACK_ALICE_1,
            foreign: vec![SLACK_BOB, UNKNOWN],
        },
        Row {
            what: "actionkit, run an action",
            method: "POST",
            path: p("/actions"),
            body: r#"{"action":"SLACK_SEND_MESSAGE","parameters":{"text":"hi"}}"#,
            place: Place::Header,
            own: SLACK_ALICE_1,
            foreign: vec![SLACK_BOB, UNKNOWN],
        },
        Row {
            what: "actionkit, run a tool",
            method: "POST",
            path: p("/tools"),
            body: r#"{"tool":"SALESFORCE_CREATE_RECORD","parameters":{}}"#,
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![CAROL_SF, UNKNOWN],
        },
        Row {
            what: "actionkit, trigger types",
            method: "GET",
            path: p("/triggers"),
            body: "",
            place: Place::Header,
            own: DRIVE_ALICE,
            foreign: vec![CAROL_DRIVE, UNKNOWN],
        },
        Row {
            what: "actionkit, list trigger subscriptions",
            method: "GET",
            path: p("/trigger-subscriptions"),
            body: "",
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "actionkit, subscribe",
            method: "POST",
            path: p("/trigger-subscriptions"),
            body: r#"{"integration":"salesforce","type":"SALESFORCE_RECORD_CREATED"}"#,
            place: Place::Header,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN],
        },
        Row {
            what: "sync, create",
            method: "POST",
            path: "/api/syncs".to_string(),
            body: sync_body,
            place: Place::Body,
            own: SF_ALICE,
            foreign: vec![SF_BOB, UNKNOWN, SLACK_ALICE_1],
        },
    ]
}

/// SPEC §3 × §5, every credential-routing product: alice's own credential
/// is routed exactly once with a token narrowed to it; bob's, an unknown
/// one and (where the route knows its integration) one of another
/// integration are 403 `credential_forbidden` with one message, and
/// nothing of them reaches Paragon.
#[tokio::test]
async fn every_product_routes_the_members_own_credential_and_refuses_others() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let mut messages = BTreeSet::new();
    for row in rows() {
        let got = probe(&env, &alice, &row, row.own).await;
        env.assert_routed(&got, row.own, row.place);

        let before = env.traffic().len();
        for other in &row.foreign {
            let got = probe(&env, &alice, &row, other).await;
            env.assert_refused(&got, 403, "credential_forbidden");
            messages.insert(got.json()["message"].as_str().unwrap().to_string());
            // The uppercase spelling of a foreign id is just as foreign.
            let got = probe(&env, &alice, &row, &other.to_uppercase()).await;
            env.assert_refused(&got, 403, "credential_forbidden");
        }
        assert_eq!(
            env.traffic().len(),
            before,
            "{}: refused requests reached Paragon",
            row.what
        );
    }
    assert_eq!(
        messages,
        set(&[FORBIDDEN_MESSAGE]),
        "one message for every refusal"
    );
    env.gw.shutdown().await;
}

/// Bob's own calls work the same way (the check is not alice-shaped), and
/// alice's credentials are as foreign to him.
#[tokio::test]
async fn the_same_products_work_for_bob_and_refuse_alices_accounts() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let cases: &[(&str, &str, &str, Place, &str, &str)] = &[
        (
            "GET",
            "/sdk/proxy/salesforce/x",
            "",
            Place::Header,
            SF_BOB,
            SF_ALICE,
        ),
        (
            "POST",
            "/sdk/triggers/wf-1",
            "{}",
            Place::Header,
            SLACK_BOB,
            SLACK_ALICE_2,
        ),
        (
            "GET",
            "/sdk/credentials/{cred}",
            "",
            Place::Token,
            SLACK_BOB,
            SLACK_ALICE_1,
        ),
        (
            "POST",
            "/actions",
            r#"{"action":"SLACK_LIST_CHANNELS"}"#,
            Place::Header,
            SLACK_BOB,
            SLACK_ALICE_1,
        ),
    ];
    for (method, path, body, place, own, foreign) in cases {
        let row = Row {
            what: "bob",
            method,
            path: p(path),
            body,
            place: *place,
            own,
            foreign: vec![foreign],
        };
        let got = probe(&env, &bob, &row, own).await;
        env.assert_routed(&got, own, *place);
        let got = probe(&env, &bob, &row, foreign).await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    }
    env.gw.shutdown().await;
}

/// Routes that carry no credential (`GET /sdk/me`, the catalog,
/// `GET /api/syncs`) forward a member's call with no credential header and
/// a token listing exactly the member's accounts; a credential header the
/// member sends is removed, not forwarded. `PATCH /sdk/me` is admin-only.
#[tokio::test]
async fn unrouted_products_carry_the_members_accounts_only() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    for path in [
        p("/sdk/me"),
        p("/sdk/integrations"),
        p("/sdk/metadata"),
        "/api/syncs".to_string(),
    ] {
        for (who, token) in [("alice", &alice), ("bob", &bob)] {
            let got = env.send("GET", &path, token, &[], "").await;
            env.assert_unrouted(&got, Some(who));
        }
        // A foreign credential named on a route that routes none is
        // dropped, not forwarded.
        let got = env.send_as("GET", &path, &alice, SF_BOB, "").await;
        let r = env.assert_unrouted(&got, Some("alice"));
        assert!(credential_headers(&r).is_empty());
    }

    // PATCH /sdk/me: members never, whatever they name; admins yes.
    let before = env.traffic().len();
    for token in [&alice, &bob] {
        let got = env
            .send("PATCH", &p("/sdk/me"), token, &[], r#"{"meta":{"x":1}}"#)
            .await;
        env.assert_refused(&got, 403, "operation_forbidden");
        let got = env
            .send_as("PATCH", &p("/sdk/me"), token, SF_ALICE, r#"{"meta":{"x":1}}"#)
            .await;
        env.assert_refused(&got, 403, "operation_forbidden");
    }
    assert_eq!(env.traffic().len(), before);
    let got = env
        .send(
            "PATCH",
            &p("/sdk/me"),
            &env.admin(),
            &[("content-type", "application/json")],
            r#"{"meta":{"Plan":"gold"}}"#,
        )
        .await;
    env.assert_unrouted(&got, None);
    assert_eq!(got.json()["meta"]["Plan"], "gold");
    env.gw.shutdown().await;
}
