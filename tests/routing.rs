//! End-to-end credential routing: the real gateway in front of the Paragon
//! emulator, proving that no member reaches another member's account on
//! any product of contract §3. Every allowed request is checked in the
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

/// The one message of `credential_forbidden` (contract §5: the same in every
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
            // Paragon's documented body (a member's is judged as an
            // install body: only the SDK's fields, tests/install_doors.rs).
            body: r#"{"config":{"sharedSettings":{}}}"#,
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

/// contract §3 × §5, every credential-routing product: alice's own credential
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
            .send_as(
                "PATCH",
                &p("/sdk/me"),
                token,
                SF_ALICE,
                r#"{"meta":{"x":1}}"#,
            )
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

/// contract §5 "Given twice" and malformed values: 400 `bad_request`, even when
/// the values agree, and nothing reaches Paragon. Every spelling of the
/// header counts, also one the `Connection` header lists.
#[tokio::test]
async fn credential_inputs_given_twice_or_malformed_are_400() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    let before = env.traffic().len();

    let twice: &[&[(&str, &str)]] = &[
        &[
            ("x-paragon-credential", SF_ALICE),
            ("x-paragon-credential", SF_ALICE),
        ],
        &[
            ("X-Paragon-Credential", SF_ALICE),
            ("x_paragon_credential", SF_ALICE),
        ],
        &[
            ("x-paragon-credential", SF_ALICE),
            ("X_PARAGON_CREDENTIAL", SF_BOB),
        ],
        &[(
            "x-paragon-credential",
            "a11ce000-5a1e-4000-8000-000000000001,a11ce000-5a1e-4000-8000-000000000001",
        )],
        &[(
            "x-paragon-credential",
            "a11ce000-5a1e-4000-8000-000000000001, b0b00000-5a1e-4000-8000-000000000001",
        )],
    ];
    for headers in twice {
        let got = env.send("GET", &sf, &alice, headers, "").await;
        env.assert_refused(&got, 400, "bad_request");
    }
    for bad in [
        "",
        "not-a-uuid",
        "ext:",
        "a11ce0005a1e40008000000000000001",
        "{a11ce000-5a1e-4000-8000-000000000001}",
        "urn:uuid:a11ce000-5a1e-4000-8000-000000000001",
        "a11ce000-5a1e-4000-8000-00000000000g",
        "a11ce000-5a1e-4000-8000-0000000000011",
        "EXT:alice",
        "credential:a11ce000-5a1e-4000-8000-000000000001",
    ] {
        let got = env.send_as("GET", &sf, &alice, bad, "").await;
        env.assert_refused(&got, 400, "bad_request");
        // Also on a route with no credential in its table row, and on sync.
        let got = env.send_as("GET", &p("/sdk/me"), &alice, bad, "").await;
        env.assert_refused(&got, 400, "bad_request");
    }

    // Sync bodies: header and body both (agreeing or not), duplicate keys
    // (also when one is escaped), wrong JSON types, malformed values,
    // bodies that are not JSON objects.
    let with = |cred: &str| {
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{cred}"}}"#)
    };
    let json_h = ("content-type", "application/json");
    let mut bad_bodies: Vec<(String, Option<&str>)> = vec![
        (with(SF_ALICE), Some(SF_ALICE)),
        (with(SF_ALICE), Some(SLACK_ALICE_1)),
        (with("ext:alice"), Some(SF_ALICE)),
        (
            format!(
                r#"{{"credentialId":"{SF_ALICE}","integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}"}}"#
            ),
            None,
        ),
        (
            format!(
                r#"{{"credentialId":"{SF_ALICE}","credential\u0049d":"{SF_BOB}","integration":"salesforce","pipeline":"p"}}"#
            ),
            None,
        ),
        (
            format!(
                r#"{{"credential\u0049d":"{SF_BOB}","credentialId":"{SF_ALICE}","integration":"salesforce","pipeline":"p"}}"#
            ),
            None,
        ),
        ("not json".to_string(), None),
        ("[]".to_string(), None),
        (r#""credentialId""#.to_string(), None),
        (format!(r#"{{"credentialId":"{SF_ALICE}""#), None),
    ];
    for v in [
        "5",
        "true",
        "null",
        "[]",
        "{}",
        r#"["a11ce000-5a1e-4000-8000-000000000001"]"#,
    ] {
        bad_bodies.push((
            format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":{v}}}"#),
            None,
        ));
    }
    for v in ["", "x", "ext:", "a11ce000-5a1e-4000-8000-00000000000g"] {
        bad_bodies.push((with(v), None));
    }
    // Nested deeper than 64 levels (contract §7).
    bad_bodies.push((
        format!(
            r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}","x":{}{}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        ),
        None,
    ));
    for (body, header) in &bad_bodies {
        let mut headers = vec![json_h];
        if let Some(h) = header {
            headers.push(("x-paragon-credential", h));
        }
        let got = env
            .send("POST", "/api/syncs", &alice, &headers, body.clone())
            .await;
        env.assert_refused(&got, 400, "bad_request");
        // PATCH reads its body the same way (the sync id is checked after).
        let got = env
            .send(
                "PATCH",
                "/api/syncs/5e5e0000-0000-4000-8000-000000000001",
                &alice,
                &headers,
                body.clone(),
            )
            .await;
        env.assert_refused(&got, 400, "bad_request");
    }
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");

    // Spellings one at a time: each is the credential header.
    for name in [
        "x_paragon_credential",
        "X-PARAGON-CREDENTIAL",
        "x-Paragon_Credential",
    ] {
        let got = env.send("GET", &sf, &alice, &[(name, SF_BOB)], "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
        let got = env.send("GET", &sf, &alice, &[(name, SF_ALICE)], "").await;
        env.assert_routed(&got, SF_ALICE, Place::Header);
    }
    // A spelling the Connection header lists still counts (and is removed).
    let got = env
        .send(
            "GET",
            &sf,
            &alice,
            &[
                ("connection", "x-paragon-credential"),
                ("x-paragon-credential", SF_BOB),
            ],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send(
            "GET",
            &sf,
            &alice,
            &[
                ("connection", "x_paragon_credential"),
                ("x_paragon_credential", SF_ALICE),
            ],
            "",
        )
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    // Upper-case ids are the same id; Paragon receives the canonical one.
    let got = env
        .send_as("GET", &sf, &alice, &SF_ALICE.to_uppercase(), "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    env.gw.shutdown().await;
}

/// contract §5 "When none is named": one permitted VALID credential of a known
/// integration is used (INVALID ones do not count); several are 400
/// `credential_required` listing them; none is 403
/// `no_permitted_credential`. With the integration unknown, exactly one
/// permitted credential at all is used.
#[tokio::test]
async fn default_credentials_follow_the_spec_rules() {
    let mut env = Env::start().await;
    // alice also has an INVALID Salesforce account and an INVALID HubSpot
    // one; erin has nothing; frank only an INVALID account.
    const SF_ALICE_BROKEN: &str = "a11ce000-5a1e-4000-8000-0000000000ff";
    const HUBSPOT_ALICE_BROKEN: &str = "a11ce000-4b5b-4000-8000-0000000000ff";
    const GMAIL_FRANK_BROKEN: &str = "f4a4c000-6a11-4000-8000-0000000000ff";
    for (id, integration, owner) in [
        (SF_ALICE_BROKEN, "salesforce", "alice"),
        (HUBSPOT_ALICE_BROKEN, "hubspot", "alice"),
        (GMAIL_FRANK_BROKEN, "gmail", "frank"),
    ] {
        let mut c = owned(id, integration, owner);
        c.status = "INVALID".into();
        env.add("acme", c);
    }
    let alice = env.member("alice");
    let proxy = |t: &str| p(&format!("/sdk/proxy/{t}/x"));

    // Known integration, one VALID permitted: used.
    let got = env.send("GET", &proxy("salesforce"), &alice, &[], "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    let got = env
        .send("GET", &proxy("googledrive"), &alice, &[], "")
        .await;
    env.assert_routed(&got, DRIVE_ALICE, Place::Header);
    let got = env
        .send("GET", &proxy("salesforce"), &env.member("carol"), &[], "")
        .await;
    env.assert_routed(&got, CAROL_SF, Place::Header);

    // Several: 400 with exactly the candidates.
    let got = env.send("GET", &proxy("slack"), &alice, &[], "").await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2])
    );

    // None VALID / none at all / an integration nobody connected: 403.
    for t in ["hubspot", "gmail", "jira"] {
        let got = env.send("GET", &proxy(t), &alice, &[], "").await;
        env.assert_refused(&got, 403, "no_permitted_credential");
    }
    let got = env
        .send("GET", &proxy("googledrive"), &env.member("bob"), &[], "")
        .await;
    env.assert_refused(&got, 403, "no_permitted_credential");
    // Named explicitly, an INVALID account of one's own is still routed
    // (Paragon decides what to do with it).
    let got = env
        .send_as("GET", &proxy("hubspot"), &alice, HUBSPOT_ALICE_BROKEN, "")
        .await;
    env.assert_routed(&got, HUBSPOT_ALICE_BROKEN, Place::Header);

    // Integration unknown (workflow trigger, app event, workflow settings,
    // actionkit listings): exactly one permitted at all.
    let unknown_integration_routes: [(&str, String); 4] = [
        ("POST", p("/sdk/triggers/wf-1")),
        ("POST", p("/sdk/events/trigger")),
        ("POST", p("/sdk/workflows/wf-1")),
        ("GET", p("/actions")),
    ];
    for (method, path) in &unknown_integration_routes {
        let got = env.send(method, path, &env.member("dave"), &[], "{}").await;
        env.assert_routed(&got, DAVE_SLACK, Place::Header);
        // frank's one account is INVALID: with the integration unknown it
        // still is "exactly one permitted credential".
        let got = env
            .send(method, path, &env.member("frank"), &[], "{}")
            .await;
        env.assert_routed(&got, GMAIL_FRANK_BROKEN, Place::Header);
        let got = env
            .send(method, path, &env.member("carol"), &[], "{}")
            .await;
        env.assert_refused(&got, 400, "credential_required");
        assert_eq!(
            strings(&got.json()["candidates"]),
            set(&[CAROL_SF, CAROL_DRIVE])
        );
        let got = env.send(method, path, &alice, &[], "{}").await;
        env.assert_refused(&got, 400, "credential_required");
        assert_eq!(
            strings(&got.json()["candidates"]),
            set(&[
                SF_ALICE,
                SF_ALICE_BROKEN,
                SLACK_ALICE_1,
                SLACK_ALICE_2,
                DRIVE_ALICE,
                HUBSPOT_ALICE_BROKEN
            ])
        );
        let got = env.send(method, path, &env.member("erin"), &[], "{}").await;
        env.assert_refused(&got, 403, "no_permitted_credential");
    }
    env.gw.shutdown().await;
}

/// `ext:<externalId>` resolves among the caller's permitted credentials of
/// the route's integration (or all of them): a unique match is routed,
/// an ambiguous or foreign one is 403 `credential_forbidden`.
#[tokio::test]
async fn ext_names_resolve_among_the_callers_own_credentials() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let proxy = |t: &str| p(&format!("/sdk/proxy/{t}/x"));

    let got = env
        .send_as("GET", &proxy("salesforce"), &alice, "ext:alice", "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    let got = env
        .send_as("GET", &proxy("googledrive"), &alice, "ext:alice", "")
        .await;
    env.assert_routed(&got, DRIVE_ALICE, Place::Header);
    let got = env
        .send_as(
            "POST",
            &p("/sdk/triggers/wf-1"),
            &env.member("dave"),
            "ext:dave",
            "{}",
        )
        .await;
    env.assert_routed(&got, DAVE_SLACK, Place::Header);
    // In a sync body, too.
    let got = env
        .send(
            "POST",
            "/api/syncs",
            &alice,
            &[],
            r#"{"integration":"googledrive","pipeline":"files","credentialId":"ext:alice"}"#,
        )
        .await;
    env.assert_routed(&got, DRIVE_ALICE, Place::Body);

    let before = env.traffic().len();
    for (path, method, name) in [
        // Two Slack accounts labelled alice: ambiguous.
        (proxy("slack"), "GET", "ext:alice"),
        // Four accounts labelled alice and the integration unknown.
        (p("/sdk/triggers/wf-1"), "POST", "ext:alice"),
        // Someone else's label, on a route with and without integration.
        (proxy("salesforce"), "GET", "ext:bob"),
        (p("/sdk/triggers/wf-1"), "POST", "ext:bob"),
        (p("/sdk/triggers/wf-1"), "POST", "ext:carol"),
        // Nobody's.
        (proxy("salesforce"), "GET", "ext:mallory"),
        // Case matters in labels.
        (proxy("salesforce"), "GET", "ext:ALICE"),
    ] {
        let got = env.send_as(method, &path, &alice, name, "{}").await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE, "{name}");
    }
    let got = env
        .send(
            "POST",
            "/api/syncs",
            &alice,
            &[],
            r#"{"integration":"salesforce","pipeline":"p","credentialId":"ext:bob"}"#,
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(env.traffic().len(), before);
    env.gw.shutdown().await;
}

/// ActionKit: with no credential named, the `action`/`tool` name picks the
/// integration (underscores ignored, case ignored, longest type wins), then
/// the default rules apply.
#[tokio::test]
async fn actionkit_action_names_pick_the_integration() {
    let mut env = Env::start().await;
    // A `google` account for alice, so GOOGLE_DRIVE_* must still pick the
    // longer `googledrive`.
    const GOOGLE_ALICE: &str = "a11ce000-9009-4000-8000-000000000001";
    env.add("acme", owned(GOOGLE_ALICE, "google", "alice"));
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let run = |key: &str, name: &str| format!(r#"{{"{key}":"{name}","parameters":{{}}}}"#);
    let json_h = [("content-type", "application/json")];

    for (key, name, token, expect) in [
        ("action", "GOOGLE_DRIVE_LIST_FILES", &alice, DRIVE_ALICE),
        ("action", "GOOGLEDRIVE_LIST_FILES", &alice, DRIVE_ALICE),
        ("tool", "GOOGLE_DRIVE_GET_FILE", &alice, DRIVE_ALICE),
        ("action", "GOOGLE_SEARCH", &alice, GOOGLE_ALICE),
        ("action", "SALESFORCE_CREATE_RECORD", &alice, SF_ALICE),
        ("action", "SLACK_SEND_MESSAGE", &bob, SLACK_BOB),
        ("action", "slack_send_message", &bob, SLACK_BOB),
        ("tool", "SALESFORCE_SEARCH_RECORDS", &bob, SF_BOB),
    ] {
        let path = p(if key == "tool" { "/tools" } else { "/actions" });
        let got = env
            .send("POST", &path, token, &json_h, run(key, name))
            .await;
        let r = env.assert_routed(&got, expect, Place::Header);
        assert_eq!(got.json()[key], name, "{r:?}");
    }
    let before = env.traffic().len();
    let got = env
        .send(
            "POST",
            &p("/actions"),
            &alice,
            &json_h,
            run("action", "SLACK_SEND_MESSAGE"),
        )
        .await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2])
    );
    // bob has no Google Drive: the action's integration is known and he has
    // nothing of it (his other accounts are not a fallback).
    let got = env
        .send(
            "POST",
            &p("/actions"),
            &bob,
            &json_h,
            run("action", "GOOGLE_DRIVE_LIST_FILES"),
        )
        .await;
    env.assert_refused(&got, 403, "no_permitted_credential");
    assert_eq!(env.traffic().len(), before);
    env.gw.shutdown().await;
}

/// The sync body's `integration` is the known integration for defaults.
#[tokio::test]
async fn sync_create_defaults_use_the_bodys_integration() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let body = |t: &str| format!(r#"{{"integration":"{t}","pipeline":"records","n":1.50}}"#);
    let got = env
        .send("POST", "/api/syncs", &alice, &[], body("salesforce"))
        .await;
    let r = env.assert_routed(&got, SF_ALICE, Place::Body);
    // Other fields kept as their original JSON text.
    assert!(String::from_utf8_lossy(&r.body).contains(r#""n":1.50"#));
    assert_eq!(
        env.state()
            .sync_credential(got.json()["id"].as_str().unwrap()),
        Some(SF_ALICE.to_string())
    );
    let got = env
        .send(
            "POST",
            "/api/syncs",
            &env.member("dave"),
            &[],
            body("slack"),
        )
        .await;
    env.assert_routed(&got, DAVE_SLACK, Place::Body);
    // The header is also accepted on sync, and moves into the body.
    let got = env
        .send_as(
            "POST",
            "/api/syncs",
            &alice,
            DRIVE_ALICE,
            body("googledrive"),
        )
        .await;
    env.assert_routed(&got, DRIVE_ALICE, Place::Body);

    let before = env.traffic().len();
    let got = env
        .send("POST", "/api/syncs", &alice, &[], body("slack"))
        .await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2])
    );
    let got = env
        .send(
            "POST",
            "/api/syncs",
            &env.member("bob"),
            &[],
            body("googledrive"),
        )
        .await;
    env.assert_refused(&got, 403, "no_permitted_credential");
    // A credential of another integration than the body says.
    let got = env
        .send_as(
            "POST",
            "/api/syncs",
            &alice,
            SLACK_ALICE_1,
            body("salesforce"),
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(env.traffic().len(), before);
    env.gw.shutdown().await;
}

/// `X-Paragon-Configuration-Id` must be a configuration of the routed
/// credential (contract §5), else 403; without a routed credential it is removed.
#[tokio::test]
async fn configuration_ids_must_belong_to_the_routed_credential() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let path = p("/sdk/proxy/slack/x");
    let cfg = DEMO_SLACK_ALICE_1_CONFIG;
    let got = env
        .send(
            "GET",
            &path,
            &alice,
            &[
                ("x-paragon-credential", SLACK_ALICE_1),
                ("x-paragon-configuration-id", cfg),
            ],
            "",
        )
        .await;
    let r = env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    assert_eq!(r.header_all("x-paragon-configuration-id"), vec![cfg]);
    for (cred, config) in [(SLACK_ALICE_2, cfg), (SLACK_ALICE_1, UNKNOWN)] {
        let got = env
            .send(
                "GET",
                &path,
                &alice,
                &[
                    ("x-paragon-credential", cred),
                    ("x-paragon-configuration-id", config),
                ],
                "",
            )
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    let got = env
        .send(
            "GET",
            &p("/sdk/me"),
            &alice,
            &[("x-paragon-configuration-id", cfg)],
            "",
        )
        .await;
    let r = env.assert_unrouted(&got, Some("alice"));
    assert!(r.header("x-paragon-configuration-id").is_none());
    env.gw.shutdown().await;
}

/// Admins reach every credential of their user; naming none, they are
/// forwarded unchanged (`admin_default = "passthrough"`) and Paragon picks.
#[tokio::test]
async fn admins_reach_every_credential_and_name_none_through() {
    let env = Env::start().await;
    let admin = env.admin();
    let admin_token = |r: &credgate::emulator::RecordedRequest| {
        let claims = env.upstream_claims(r);
        assert_eq!(claims["sub"], "acme");
        assert!(claims.get(PERMS).is_none(), "admin tokens carry no claim");
    };
    for cred in [SF_ALICE, SF_BOB, CAROL_SF] {
        let got = env
            .send_as("GET", &p("/sdk/proxy/salesforce/x"), &admin, cred, "")
            .await;
        assert_eq!(got.status, 200);
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1);
        assert_eq!(credential_headers(&fwd[0]), vec![cred.to_string()]);
        assert_eq!(fwd[0].credential.as_deref(), Some(cred));
        admin_token(&fwd[0]);
        // By id, too.
        let got = env
            .send(
                "GET",
                &p(&format!("/sdk/credentials/{cred}")),
                &admin,
                &[],
                "",
            )
            .await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert_eq!(got.json()["id"], cred);
        admin_token(&env.forwarded(&got)[0]);
    }
    // An id not in the user's list is refused for admins too.
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/credentials/{UNKNOWN}")),
            &admin,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    // Naming none: nothing added, Paragon's default (the oldest) serves.
    let got = env
        .send("GET", &p("/sdk/proxy/salesforce/x"), &admin, &[], "")
        .await;
    assert_eq!(got.status, 200);
    let fwd = env.forwarded(&got);
    assert!(credential_headers(&fwd[0]).is_empty());
    assert_eq!(fwd[0].credential.as_deref(), Some(SF_ALICE));
    // Another user's credential is foreign to an admin of acme too.
    env.state().add_user("globex");
    let mut g = CredentialFixture::new("91013e00-5a1e-4000-8000-000000000001", "salesforce");
    g.external_id = Some("alice".into());
    env.state().add_credential("globex", g).unwrap();
    for token in [&admin, &env.member("alice")] {
        let got = env
            .send_as(
                "GET",
                &p("/sdk/proxy/salesforce/x"),
                token,
                "91013e00-5a1e-4000-8000-000000000001",
                "",
            )
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    env.gw.shutdown().await;
}

/// contract §5 "Named but absent": an account connected after the cache is
/// warm works at once (one reload; `refresh_cooldown = "0s"`), while a new
/// account of someone else is still refused after that reload.
#[tokio::test]
async fn an_account_connected_after_the_cache_is_warm_works_at_once() {
    let mut env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"0s\"")).await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let slack = p("/sdk/proxy/slack/x");
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_1, "").await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    let loads = env.loads().len();

    const SLACK_ALICE_3: &str = "a11ce000-51ac-4000-8000-000000000003";
    const SLACK_BOB_2: &str = "b0b00000-51ac-4000-8000-000000000002";
    env.add("acme", owned(SLACK_ALICE_3, "slack", "alice"));
    env.add("acme", owned(SLACK_BOB_2, "slack", "bob"));
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_3, "").await;
    env.assert_routed(&got, SLACK_ALICE_3, Place::Header);
    assert!(env.loads().len() > loads, "the miss reloaded the list");
    let got = env.send_as("GET", &slack, &bob, SLACK_BOB_2, "").await;
    env.assert_routed(&got, SLACK_BOB_2, Place::Header);
    let got = env.send_as("GET", &slack, &alice, SLACK_BOB_2, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    // The new account also joins the default candidates.
    let got = env.send("GET", &slack, &alice, &[], "").await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2, SLACK_ALICE_3])
    );
    env.gw.shutdown().await;
}

/// The reload on a miss happens at most once per `refresh_cooldown`: with
/// a long cooldown, an account connected just after a load is refused
/// until the cache is invalidated.
#[tokio::test]
async fn misses_within_the_refresh_cooldown_do_not_reload() {
    let mut env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"1h\"")).await;
    let alice = env.member("alice");
    let slack = p("/sdk/proxy/slack/x");
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_1, "").await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    const SLACK_ALICE_3: &str = "a11ce000-51ac-4000-8000-000000000003";
    env.add("acme", owned(SLACK_ALICE_3, "slack", "alice"));
    let loads = env.loads().len();
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_3, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(env.loads().len(), loads, "no reload within the cooldown");
    env.invalidate(json!({"user": "acme"})).await;
    let got = env.send_as("GET", &slack, &alice, SLACK_ALICE_3, "").await;
    env.assert_routed(&got, SLACK_ALICE_3, Place::Header);
    env.gw.shutdown().await;
}

/// An account removed from Paragon keeps its cached permission until the
/// list is dropped (`POST /admin/cache/invalidate`, for one user or all);
/// then it is refused before anything is forwarded.
#[tokio::test]
async fn a_removed_account_stops_working_after_an_invalidation() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let sf = p("/sdk/proxy/salesforce/x");
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);

    assert!(env.state().remove_credential(SF_ALICE));
    // Still cached: credgate forwards and Paragon itself refuses.
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    assert_eq!(got.status, 404, "{:?}", got.body);
    assert_eq!(env.forwarded(&got).len(), 1);

    env.invalidate(json!({"user": "acme"})).await;
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    let got = env.send("GET", &sf, &alice, &[], "").await;
    env.assert_refused(&got, 403, "no_permitted_credential");

    // `{}` drops every user's list.
    let got = env.send_as("GET", &sf, &bob, SF_BOB, "").await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    assert!(env.state().remove_credential(SF_BOB));
    env.invalidate(json!({})).await;
    let got = env.send_as("GET", &sf, &bob, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// ... or once `cache.credentials_ttl` has passed.
#[tokio::test]
async fn a_removed_account_stops_working_after_the_ttl() {
    let env = Env::with(fixtures(), |b| b.cache("credentials_ttl = \"300ms\"")).await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    assert!(env.state().remove_credential(SF_ALICE));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// contract §6: a failed `/sdk/me` load (an error status, `authenticated:
/// false`, a body that does not parse) is 503 `credentials_unavailable`
/// and nothing is forwarded; a failed reload on a miss is 503 too.
#[tokio::test]
async fn paragon_failing_to_list_credentials_is_503_and_forwards_nothing() {
    let env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"0s\"")).await;
    let alice = env.member("alice");
    let behaviours = [
        Behaviour {
            me_status: Some(500),
            ..Behaviour::default()
        },
        Behaviour {
            me_status: Some(401),
            ..Behaviour::default()
        },
        Behaviour {
            me_unauthenticated: true,
            ..Behaviour::default()
        },
        Behaviour {
            me_malformed: true,
            ..Behaviour::default()
        },
    ];
    let sync_body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}"}}"#);
    for b in behaviours {
        env.invalidate(json!({})).await;
        env.state().set_behaviour(b.clone());
        let before = env.traffic().len();
        let loads = env.loads().len();
        for got in [
            env.send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, SF_ALICE, "")
                .await,
            env.send("GET", &p("/sdk/proxy/salesforce/x"), &alice, &[], "")
                .await,
            env.send("POST", "/api/syncs", &alice, &[], sync_body.clone())
                .await,
            env.send("GET", &p("/sdk/me"), &alice, &[], "").await,
            env.send("GET", "/api/syncs", &alice, &[], "").await,
            // A bad input is reported after the list (contract §1 order).
            env.send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, "nope", "")
                .await,
        ] {
            env.assert_refused(&got, 503, "credentials_unavailable");
        }
        assert_eq!(env.traffic().len(), before, "{b:?}: nothing forwarded");
        assert!(env.loads().len() > loads, "{b:?}: credgate asked Paragon");
    }

    // Warm, then a miss whose reload fails: 503, nothing forwarded.
    env.state().set_behaviour(Behaviour::default());
    let got = env
        .send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, SF_ALICE, "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    env.state().set_behaviour(Behaviour {
        me_status: Some(503),
        ..Behaviour::default()
    });
    let got = env
        .send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, UNKNOWN, "")
        .await;
    env.assert_refused(&got, 503, "credentials_unavailable");
    // The warm list still serves known accounts meanwhile.
    let got = env
        .send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, SF_ALICE, "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    env.gw.shutdown().await;
}

/// `cache.stale_if_error`: once the list is past its TTL and Paragon fails,
/// the stale list serves (and still refuses others' accounts); without it,
/// 503.
#[tokio::test]
async fn a_stale_list_serves_within_stale_if_error_only() {
    let failing = Behaviour {
        me_status: Some(500),
        ..Behaviour::default()
    };
    let sf = p("/sdk/proxy/salesforce/x");

    let env = Env::with(fixtures(), |b| {
        b.cache("credentials_ttl = \"200ms\"\nstale_if_error = \"1h\"")
    })
    .await;
    let alice = env.member("alice");
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    env.state().set_behaviour(failing.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loads = env.loads().len();
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    assert!(env.loads().len() > loads, "a reload was tried first");
    let got = env.send_as("GET", &sf, &alice, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;

    let env = Env::with(fixtures(), |b| b.cache("credentials_ttl = \"200ms\"")).await;
    let alice = env.member("alice");
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    env.state().set_behaviour(failing);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_refused(&got, 503, "credentials_unavailable");
    env.gw.shutdown().await;
}

/// Every credential id anywhere in a `/sdk/me` or `/sdk/credentials` body.
fn credential_ids_in(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if matches!(k.as_str(), "id" | "credentialId" | "connectCredentialId") {
                        if let Some(s) = x.as_str() {
                            out.insert(s.to_ascii_lowercase());
                        }
                    }
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Whether any object in `v` has an `accountAuth` member.
fn has_account_auth(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("accountAuth") || m.values().any(has_account_auth),
        Value::Array(a) => a.iter().any(has_account_auth),
        _ => false,
    }
}

/// contract §7 "Responses": a member's `GET /sdk/me` and `/sdk/credentials`
/// show only the member's accounts, with integration-level fields
/// describing one of them (or none); admins get Paragon's answer untouched.
#[tokio::test]
async fn sdk_me_and_credentials_show_members_only_their_accounts() {
    let env = Env::start().await;
    let all: BTreeSet<String> = env.known.iter().map(|k| k.id.clone()).collect();
    for who in ["alice", "bob", "carol", "dave", "erin"] {
        let token = env.member(who);
        let mine: BTreeSet<String> = env.owned_by(who).iter().map(|k| k.id.clone()).collect();

        let got = env.send("GET", &p("/sdk/me"), &token, &[], "").await;
        env.assert_unrouted(&got, Some(who));
        let me = got.json();
        let shown: BTreeSet<String> = credential_ids_in(&me)
            .into_iter()
            .filter(|id| all.contains(id))
            .collect();
        assert_eq!(shown, mine, "{who}'s /sdk/me shows exactly their accounts");
        for (integration, entry) in me["integrations"].as_object().unwrap() {
            let listed: BTreeSet<String> = entry["allCredentials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect();
            let expected: BTreeSet<String> = env
                .owned_by(who)
                .iter()
                .filter(|k| k.integration == *integration)
                .map(|k| k.id.clone())
                .collect();
            assert_eq!(listed, expected, "{who}: {integration}");
            match entry.get("credentialId").and_then(Value::as_str) {
                Some(id) => assert!(listed.contains(id), "{who}: {integration}: {id}"),
                None => {
                    assert!(listed.is_empty(), "{who}: {integration}");
                    assert!(entry.get("providerData").is_none());
                    assert!(entry.get("providerId").is_none());
                }
            }
        }
        assert!(!has_account_auth(&me));

        let got = env
            .send("GET", &p("/sdk/credentials"), &token, &[], "")
            .await;
        env.assert_unrouted(&got, Some(who));
        assert_eq!(
            credential_ids_in(&got.json())
                .intersection(&all)
                .cloned()
                .collect::<BTreeSet<_>>(),
            mine
        );
        let got = env
            .send(
                "GET",
                &p("/sdk/credentials?integration=slack"),
                &token,
                &[],
                "",
            )
            .await;
        let slack: BTreeSet<String> = env
            .owned_by(who)
            .iter()
            .filter(|k| k.integration == "slack")
            .map(|k| k.id.clone())
            .collect();
        assert_eq!(
            credential_ids_in(&got.json())
                .intersection(&all)
                .cloned()
                .collect::<BTreeSet<_>>(),
            slack
        );
        let got = env
            .send(
                "GET",
                &p("/sdk/credentials?includeAccountAuth=false"),
                &token,
                &[],
                "",
            )
            .await;
        assert_eq!(got.status, 200);
        assert!(!has_account_auth(&got.json()));
    }

    // Admins: exactly what Paragon answers an unrestricted token.
    let direct = env.paragon_token(json!({}));
    for path in [
        p("/sdk/me"),
        p("/sdk/credentials"),
        p("/sdk/credentials?includeAccountAuth=true"),
        p(&format!(
            "/sdk/credentials/{SF_BOB}?includeAccountAuth=true"
        )),
    ] {
        let got = env.send("GET", &path, &env.admin(), &[], "").await;
        assert_eq!(got.status, 200);
        let straight = send(
            &env.cl,
            http::Request::get(format!("{}{path}", env.emu.url()))
                .header("authorization", format!("Bearer {direct}"))
                .body(credgate::net::body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            got.json(),
            straight.json(),
            "{path}: admin answer untouched"
        );
    }
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &env.admin(),
            &[],
            "",
        )
        .await;
    assert!(has_account_auth(&got.json()));
    assert_eq!(
        credential_ids_in(&got.json())
            .intersection(&all)
            .cloned()
            .collect::<BTreeSet<_>>(),
        all
    );
    env.gw.shutdown().await;
}

/// contract §3: a member's `includeAccountAuth` (any value but `false`, any
/// case, repeated) is 403 `operation_forbidden` on every connect route and
/// reaches nothing, unless `policy.allow_account_auth`; then the member
/// gets `accountAuth` for their own accounts only.
#[tokio::test]
async fn members_asking_for_account_auth_are_refused_unless_allowed() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let before = env.traffic().len();
    let routes: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", p("/sdk/me"), None),
        ("GET", p("/sdk/credentials"), None),
        ("GET", p(&format!("/sdk/credentials/{SF_ALICE}")), None),
        ("GET", p("/sdk/integrations"), None),
        ("GET", p("/sdk/metadata"), None),
        ("POST", p("/sdk/workflows/wf-1"), Some(SF_ALICE)),
        (
            "DELETE",
            p(&format!("/sdk/integrations/{DEMO_INTEGRATION_SALESFORCE}")),
            Some(SF_ALICE),
        ),
    ];
    for (method, path, cred) in &routes {
        for q in [
            "includeAccountAuth=true",
            "INCLUDEACCOUNTAUTH=TRUE",
            "includeAccountAuth=1",
            "includeAccountAuth=null",
            "includeAccountAuth=false&includeAccountAuth=true",
            "x=1&include%41ccountAuth=true",
        ] {
            let url = format!("{path}?{q}");
            let got = match cred {
                Some(c) => env.send_as(method, &url, &alice, c, "").await,
                None => env.send(method, &url, &alice, &[], "").await,
            };
            env.assert_refused(&got, 403, "operation_forbidden");
        }
    }
    assert_eq!(env.traffic().len(), before);
    assert!(env.state().credential_owner(SF_ALICE).is_some());
    env.gw.shutdown().await;

    let env = Env::with(fixtures(), |b| b.policy("allow_account_auth = true")).await;
    let alice = env.member("alice");
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &alice,
            &[],
            "",
        )
        .await;
    env.assert_unrouted(&got, Some("alice"));
    let list = got.json();
    let all: BTreeSet<String> = env.known.iter().map(|k| k.id.clone()).collect();
    let mine: BTreeSet<String> = env.owned_by("alice").iter().map(|k| k.id.clone()).collect();
    assert_eq!(
        credential_ids_in(&list)
            .intersection(&all)
            .cloned()
            .collect::<BTreeSet<_>>(),
        mine
    );
    for c in list.as_array().unwrap() {
        assert!(c["accountAuth"]["accessToken"].is_string(), "{c}");
    }
    let got = env
        .send(
            "GET",
            &p(&format!(
                "/sdk/credentials/{SF_BOB}?includeAccountAuth=true"
            )),
            &alice,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// contract §3 uninstall: the credential is required (none: 400 with the
/// candidates), must be the caller's and of the path's integration (else
/// 403, one message, nothing forwarded); on success Paragon removed it and
/// credgate dropped the cached list, so the next request naming it is
/// refused before Paragon.
#[tokio::test]
async fn uninstall_removes_the_account_and_the_cached_list() {
    let env = Env::start().await;
    let (alice, bob, admin) = (env.member("alice"), env.member("bob"), env.admin());
    let sf_uninstall = p(&format!("/sdk/integrations/{DEMO_INTEGRATION_SALESFORCE}"));
    let proxy = p("/sdk/proxy/salesforce/x");
    // Warm the cache with alice's account.
    let got = env.send_as("GET", &proxy, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);

    let before = env.traffic().len();
    for other in [SF_BOB, UNKNOWN, SLACK_ALICE_1] {
        let got = env
            .send_as("DELETE", &sf_uninstall, &alice, other, "")
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    }
    let got = env.send("DELETE", &sf_uninstall, &alice, &[], "").await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(strings(&got.json()["candidates"]), set(&[SF_ALICE]));
    // Admins must name one too.
    let got = env.send("DELETE", &sf_uninstall, &admin, &[], "").await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SF_ALICE, SF_BOB, CAROL_SF])
    );
    // An integration id nobody has.
    let got = env
        .send_as(
            "DELETE",
            &p(&format!("/sdk/integrations/{UNKNOWN}")),
            &alice,
            SF_ALICE,
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(env.traffic().len(), before);
    assert!(env.state().credential_owner(SF_BOB).is_some());

    let got = env
        .send_as("DELETE", &sf_uninstall, &alice, SF_ALICE, "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    assert_eq!(
        env.state().credential_owner(SF_ALICE),
        None,
        "Paragon removed it"
    );
    let got = env.send_as("GET", &proxy, &alice, SF_ALICE, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env.send("GET", &proxy, &alice, &[], "").await;
    env.assert_refused(&got, 403, "no_permitted_credential");

    // An admin uninstalls bob's account; bob's next use is refused.
    let got = env.send_as("GET", &proxy, &bob, SF_BOB, "").await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    let got = env
        .send_as("DELETE", &sf_uninstall, &admin, SF_BOB, "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(env.state().credential_owner(SF_BOB), None);
    let got = env.send_as("GET", &proxy, &bob, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// Creates a sync as `token` naming `cred` in the body; returns its id.
async fn create_sync(env: &Env, token: &str, integration: &str, cred: Option<&str>) -> String {
    let body = match cred {
        Some(c) => {
            format!(r#"{{"integration":"{integration}","pipeline":"p","credentialId":"{c}"}}"#)
        }
        None => format!(r#"{{"integration":"{integration}","pipeline":"p"}}"#),
    };
    let got = env.send("POST", "/api/syncs", token, &[], body).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.json()["id"].as_str().unwrap().to_string()
}

fn sync_ids(got: &Got) -> BTreeSet<String> {
    got.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// contract §5 "Syncs": a sync created through credgate belongs to its
/// credential. Its creator reaches it on every sync route (with a token
/// narrowed to that credential); another member, an unknown sync and a
/// deleted one are 403 and reach nothing.
#[tokio::test]
async fn syncs_are_reachable_only_by_the_member_whose_account_they_use() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let s1 = create_sync(&env, &alice, "salesforce", Some(SF_ALICE)).await;
    let json_h = [("content-type", "application/json")];

    let item_routes = |s: &str| -> Vec<(&'static str, String, &'static str)> {
        vec![
            ("GET", format!("/api/syncs/{s}"), ""),
            ("GET", format!("/api/syncs/{s}/records?pageSize=2"), ""),
            ("GET", format!("/api/syncs/{s}/records/rec-1"), ""),
            ("GET", format!("/api/syncs/{s}/records/rec-1/content"), ""),
            ("POST", format!("/api/syncs/{s}/disable"), ""),
            ("POST", format!("/api/syncs/{s}/reenable"), ""),
            ("POST", format!("/api/permissions/{s}/list-users"), "{}"),
            ("POST", format!("/api/permissions/{s}/list-objects"), "{}"),
            (
                "POST",
                format!("/api/permissions/{s}/batch-check"),
                r#"{"checks":[{"user":"u","object":"o"}]}"#,
            ),
            (
                "PATCH",
                format!("/api/syncs/{s}"),
                r#"{"incrementalAccumulatorFrequency":"1h"}"#,
            ),
        ]
    };
    for (method, path, body) in item_routes(&s1) {
        let got = env.send(method, &path, &alice, &json_h, body).await;
        env.assert_routed(&got, SF_ALICE, Place::Token);
        // Sync ids are exact, as Paragon wrote them: another letter case
        // is another, unknown, sync (contract §5).
        let upper = path.replace(&s1, &s1.to_uppercase());
        let got = env.send(method, &upper, &alice, &json_h, body).await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }

    let before = env.traffic().len();
    let mut messages = BTreeSet::new();
    for s in [s1.clone(), UNKNOWN.to_string()] {
        for (method, path, body) in item_routes(&s) {
            for token in [&bob, &env.member("carol")] {
                let got = env.send(method, &path, token, &json_h, body).await;
                env.assert_refused(&got, 403, "credential_forbidden");
                messages.insert(got.json()["message"].as_str().unwrap().to_string());
            }
        }
        let got = env
            .send("DELETE", &format!("/api/syncs/{s}"), &bob, &[], "")
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    assert_eq!(messages, set(&[FORBIDDEN_MESSAGE]));
    assert_eq!(env.traffic().len(), before);
    assert_eq!(env.state().sync_credential(&s1), Some(SF_ALICE.to_string()));

    // Deleting it drops the record: afterwards it is refused before Paragon.
    let got = env
        .send("DELETE", &format!("/api/syncs/{s1}"), &alice, &[], "")
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Token);
    assert_eq!(env.state().sync_credential(&s1), None);
    let got = env
        .send("GET", &format!("/api/syncs/{s1}"), &alice, &[], "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");

    // A sync of an account that was since removed (and the cache dropped)
    // is out of reach too.
    let s2 = create_sync(&env, &bob, "slack", Some(SLACK_BOB)).await;
    let got = env
        .send("GET", &format!("/api/syncs/{s2}"), &bob, &[], "")
        .await;
    env.assert_routed(&got, SLACK_BOB, Place::Token);
    env.state().remove_credential(SLACK_BOB);
    env.invalidate(json!({"user": "acme"})).await;
    let got = env
        .send("GET", &format!("/api/syncs/{s2}"), &bob, &[], "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// A sync an admin created naming no credential has no known credential:
/// admin-only for members. One an admin created naming a member's account
/// belongs to that account. `GET /api/syncs` lists for members only the
/// syncs they may reach; admins see all.
#[tokio::test]
async fn sync_listings_and_admin_created_syncs() {
    let env = Env::start().await;
    let (alice, bob, admin) = (env.member("alice"), env.member("bob"), env.admin());
    let a1 = create_sync(&env, &alice, "salesforce", Some(SF_ALICE)).await;
    let a2 = create_sync(&env, &alice, "googledrive", None).await;
    let b1 = create_sync(&env, &bob, "salesforce", None).await;
    // Paragon's default for an admin naming none is the oldest account:
    // alice's, but credgate cannot know that.
    let orphan = create_sync(&env, &admin, "salesforce", None).await;
    assert_eq!(
        env.state().sync_credential(&orphan),
        Some(SF_ALICE.to_string())
    );
    let for_alice = create_sync(&env, &admin, "googledrive", Some(DRIVE_ALICE)).await;
    assert_eq!(
        env.state().sync_credential(&a2),
        Some(DRIVE_ALICE.to_string())
    );

    let before = env.traffic().len();
    for token in [&alice, &bob] {
        let got = env
            .send("GET", &format!("/api/syncs/{orphan}"), token, &[], "")
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
        let got = env
            .send(
                "PATCH",
                &format!("/api/syncs/{orphan}"),
                token,
                &[],
                r#"{"incrementalAccumulatorFrequency":"1h"}"#,
            )
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    assert_eq!(env.traffic().len(), before);
    let got = env
        .send("GET", &format!("/api/syncs/{orphan}"), &admin, &[], "")
        .await;
    assert_eq!(got.status, 200);
    let got = env
        .send("GET", &format!("/api/syncs/{for_alice}"), &alice, &[], "")
        .await;
    env.assert_routed(&got, DRIVE_ALICE, Place::Token);
    let got = env
        .send("GET", &format!("/api/syncs/{for_alice}"), &bob, &[], "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");

    let got = env.send("GET", "/api/syncs", &alice, &[], "").await;
    env.assert_unrouted(&got, Some("alice"));
    assert_eq!(sync_ids(&got), set(&[&a1, &a2, &for_alice]));
    let got = env.send("GET", "/api/syncs", &bob, &[], "").await;
    env.assert_unrouted(&got, Some("bob"));
    assert_eq!(sync_ids(&got), set(&[&b1]));
    let got = env
        .send("GET", "/api/syncs", &env.member("dave"), &[], "")
        .await;
    assert_eq!(sync_ids(&got), BTreeSet::new());
    let got = env.send("GET", "/api/syncs", &admin, &[], "").await;
    env.assert_unrouted(&got, None);
    assert_eq!(sync_ids(&got), set(&[&a1, &a2, &b1, &orphan, &for_alice]));
    env.gw.shutdown().await;
}

/// `PATCH /api/syncs/{id}` with `credentialId`: the sync must be the
/// caller's, and the new credential permitted; moving it to another of the
/// member's accounts works (and the sync follows it), to a foreign one is
/// 403 and reaches nothing.
#[tokio::test]
async fn moving_a_sync_to_another_account() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let s = create_sync(&env, &alice, "slack", Some(SLACK_ALICE_1)).await;
    let patch = |cred: &str| format!(r#"{{"credentialId":"{cred}"}}"#);
    let path = format!("/api/syncs/{s}");

    let before = env.traffic().len();
    for (token, cred) in [
        (&alice, SLACK_BOB),
        (&alice, UNKNOWN),
        (&alice, "ext:bob"),
        (&bob, SLACK_BOB),
        (&bob, SLACK_ALICE_2),
    ] {
        let got = env.send("PATCH", &path, token, &[], patch(cred)).await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    assert_eq!(env.traffic().len(), before);
    assert_eq!(
        env.state().sync_credential(&s),
        Some(SLACK_ALICE_1.to_string())
    );

    let got = env
        .send("PATCH", &path, &alice, &[], patch(SLACK_ALICE_2))
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    assert!(credential_headers(&fwd[0]).is_empty());
    assert_eq!(
        String::from_utf8_lossy(&fwd[0].body),
        patch(SLACK_ALICE_2),
        "the body names the new account once"
    );
    // The move touches both of alice's accounts, and only those.
    assert_eq!(
        env.upstream_claims(&fwd[0])[PERMS],
        claim_for([("slack", SLACK_ALICE_1), ("slack", SLACK_ALICE_2)])
    );
    assert_eq!(
        env.state().sync_credential(&s),
        Some(SLACK_ALICE_2.to_string())
    );
    // The ownership record followed: later calls carry the new account.
    let got = env.send("GET", &path, &alice, &[], "").await;
    env.assert_routed(&got, SLACK_ALICE_2, Place::Token);
    // A move Paragon refuses (an account of another integration) leaves
    // the ownership record as it was.
    let got = env.send("PATCH", &path, &alice, &[], patch(SF_ALICE)).await;
    assert_eq!(got.status, 404, "{:?}", got.body);
    assert_eq!(
        env.state().sync_credential(&s),
        Some(SLACK_ALICE_2.to_string())
    );
    let got = env.send("GET", &path, &alice, &[], "").await;
    env.assert_routed(&got, SLACK_ALICE_2, Place::Token);
    // By label, back to the first account is ambiguous (two Slack accounts
    // labelled alice): 403.
    let got = env
        .send("PATCH", &path, &alice, &[], patch("ext:alice"))
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

async fn passthrough_env() -> Env {
    Env::with(fixtures(), |b| {
        b.auth("mode = \"passthrough\"")
            .paragon("public_key_file = \"paragon.pub.pem\"")
    })
    .await
}

/// contract §4 passthrough: callers present Paragon user tokens; the token is
/// forwarded byte for byte; its permissions claim is the caller's policy,
/// so a scoped token cannot use an account outside its claim (403, nothing
/// forwarded), and no claim means every account of the user.
#[tokio::test]
async fn passthrough_tokens_are_forwarded_unchanged_and_scope_the_caller() {
    let env = passthrough_env().await;
    let sf = p("/sdk/proxy/salesforce/x");
    let unscoped = env.paragon_token(json!({}));
    let alice_sf = env.paragon_token(json!({
        PERMS: {"integration:salesforce": {format!("credential:{SF_ALICE}"): true}}
    }));
    let slack_all = env.paragon_token(json!({PERMS: {"integration:slack": true}}));
    let forwarded_token = |got: &Got, token: &str, cred: Option<&str>| {
        assert!(got.status.is_success(), "{} {:?}", got.status, got.body);
        let fwd = env.forwarded(got);
        assert_eq!(fwd.len(), 1);
        assert_eq!(
            fwd[0].header_all("authorization"),
            vec![format!("Bearer {token}")],
            "the caller's token, unchanged"
        );
        if let Some(c) = cred {
            assert_eq!(credential_headers(&fwd[0]), vec![c.to_string()]);
            assert_eq!(fwd[0].credential.as_deref(), Some(c));
        }
    };

    // No claim: every account of acme.
    for cred in [SF_ALICE, SF_BOB] {
        let got = env.send_as("GET", &sf, &unscoped, cred, "").await;
        forwarded_token(&got, &unscoped, Some(cred));
    }
    // Scoped to alice's Salesforce account.
    let got = env.send_as("GET", &sf, &alice_sf, SF_ALICE, "").await;
    forwarded_token(&got, &alice_sf, Some(SF_ALICE));
    let got = env.send("GET", &sf, &alice_sf, &[], "").await;
    forwarded_token(&got, &alice_sf, Some(SF_ALICE));
    let got = env
        .send("POST", &p("/sdk/triggers/wf-1"), &alice_sf, &[], "{}")
        .await;
    forwarded_token(&got, &alice_sf, Some(SF_ALICE));
    let before = env.traffic().len();
    for (path, cred) in [
        (sf.clone(), SF_BOB),
        (sf.clone(), UNKNOWN),
        (p("/sdk/proxy/slack/x"), SLACK_ALICE_1),
        (p("/sdk/triggers/wf-1"), SLACK_ALICE_1),
    ] {
        let got = env.send_as("POST", &path, &alice_sf, cred, "{}").await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    }
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/credentials/{SF_BOB}")),
            &alice_sf,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send(
            "POST",
            "/api/syncs",
            &alice_sf,
            &[],
            format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_BOB}"}}"#),
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send("GET", &p("/sdk/proxy/slack/x"), &alice_sf, &[], "")
        .await;
    env.assert_refused(&got, 403, "no_permitted_credential");
    // Scoped callers are members: no includeAccountAuth, no PATCH /sdk/me.
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &alice_sf,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    let got = env
        .send("PATCH", &p("/sdk/me"), &alice_sf, &[], r#"{"meta":{}}"#)
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    assert_eq!(env.traffic().len(), before);

    // What the scoped caller sees of the user.
    let got = env.send("GET", &p("/sdk/me"), &alice_sf, &[], "").await;
    forwarded_token(&got, &alice_sf, None);
    let all: BTreeSet<String> = env.known.iter().map(|k| k.id.clone()).collect();
    let shown: BTreeSet<String> = credential_ids_in(&got.json())
        .intersection(&all)
        .cloned()
        .collect();
    assert_eq!(shown, set(&[SF_ALICE]));

    // An integration-wide scope: every Slack account, nothing else.
    for cred in [SLACK_ALICE_1, SLACK_BOB, DAVE_SLACK] {
        let got = env
            .send_as("GET", &p("/sdk/proxy/slack/x"), &slack_all, cred, "")
            .await;
        forwarded_token(&got, &slack_all, Some(cred));
    }
    let got = env.send_as("GET", &sf, &slack_all, SF_ALICE, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send("GET", &p("/sdk/proxy/slack/x"), &slack_all, &[], "")
        .await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2, SLACK_BOB, DAVE_SLACK])
    );
    env.gw.shutdown().await;
}

/// In passthrough the cached list is keyed by user AND claim (Paragon
/// narrows `/sdk/me` by the claim): a second caller with another scope
/// does not get the first caller's list, even within the refresh cooldown.
#[tokio::test]
async fn passthrough_lists_are_cached_per_scope() {
    let env = Env::with(fixtures(), |b| {
        b.auth("mode = \"passthrough\"")
            .paragon("public_key_file = \"paragon.pub.pem\"")
            .cache("refresh_cooldown = \"1h\"")
    })
    .await;
    let sf = p("/sdk/proxy/salesforce/x");
    let only = |id: &str| {
        env.paragon_token(json!({
            PERMS: {"integration:salesforce": {format!("credential:{id}"): true}}
        }))
    };
    let (a, b) = (only(SF_ALICE), only(SF_BOB));
    let got = env.send_as("GET", &sf, &a, SF_ALICE, "").await;
    assert_eq!(got.status, 200);
    let got = env.send_as("GET", &sf, &b, SF_BOB, "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(env.forwarded(&got)[0].credential.as_deref(), Some(SF_BOB));
    let got = env.send_as("GET", &sf, &b, SF_ALICE, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env.send_as("GET", &sf, &a, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    env.gw.shutdown().await;
}

/// contract §3: a trigger subscription belongs to its credential. Its owner
/// reaches it; another member is refused by credgate, whichever of its own
/// accounts it names, and nothing reaches Paragon. A member's list holds
/// only its own subscriptions.
#[tokio::test]
async fn another_members_trigger_subscription_stays_out_of_reach() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let got = env
        .send_as(
            "POST",
            &p("/trigger-subscriptions"),
            &bob,
            SLACK_BOB,
            r#"{"integration":"slack","type":"SLACK_NEW_MESSAGE"}"#,
        )
        .await;
    env.assert_routed(&got, SLACK_BOB, Place::Header);
    let sub = got.json()["id"].as_str().unwrap().to_string();
    let path = p(&format!("/trigger-subscriptions/{sub}"));
    for method in ["GET", "PATCH", "DELETE"] {
        if method != "DELETE" {
            let got = env.send_as(method, &path, &bob, SLACK_BOB, "{}").await;
            env.assert_routed(&got, SLACK_BOB, Place::Header);
            // Naming none: the subscription's own credential is routed.
            let got = env.send(method, &path, &bob, &[], "{}").await;
            env.assert_routed(&got, SLACK_BOB, Place::Header);
        }
        for cred in [None, Some(SLACK_ALICE_1), Some(SLACK_BOB)] {
            let headers: Vec<(&str, &str)> =
                cred.iter().map(|c| ("x-paragon-credential", *c)).collect();
            let got = env.send(method, &path, &alice, &headers, "{}").await;
            env.assert_refused(&got, 403, "credential_forbidden");
        }
    }
    let got = env
        .send_as(
            "GET",
            &p("/trigger-subscriptions"),
            &alice,
            SLACK_ALICE_1,
            "",
        )
        .await;
    env.assert_routed(&got, SLACK_ALICE_1, Place::Header);
    assert!(!String::from_utf8_lossy(&got.body).contains(&sub));
    // bob deletes his own.
    let got = env.send_as("DELETE", &path, &bob, SLACK_BOB, "").await;
    env.assert_routed(&got, SLACK_BOB, Place::Header);
    env.gw.shutdown().await;
}

/// `proxy/custom/{integrationId}/...`: the integration is the custom one
/// whose credentials carry that id; another member's account of it, or an
/// account of another integration, is refused.
#[tokio::test]
async fn custom_integration_proxy_routes_by_integration_id() {
    let mut env = Env::start().await;
    const BILLING: &str = "c0ffee00-0000-4000-8000-0000000000b1";
    const BILLING_ALICE: &str = "a11ce000-b111-4000-8000-000000000001";
    const BILLING_BOB: &str = "b0b00000-b111-4000-8000-000000000001";
    for (id, who) in [(BILLING_ALICE, "alice"), (BILLING_BOB, "bob")] {
        let mut c = owned(id, "custom.billing", who);
        c.integration_id = Some(BILLING.into());
        env.add("acme", c);
    }
    let alice = env.member("alice");
    let path = p(&format!("/sdk/proxy/custom/{BILLING}/v1/invoices"));
    let got = env.send_as("GET", &path, &alice, BILLING_ALICE, "").await;
    env.assert_routed(&got, BILLING_ALICE, Place::Header);
    let got = env.send("GET", &path, &alice, &[], "").await;
    env.assert_routed(&got, BILLING_ALICE, Place::Header);
    let got = env.send("GET", &path, &env.member("bob"), &[], "").await;
    env.assert_routed(&got, BILLING_BOB, Place::Header);
    for other in [BILLING_BOB, SF_ALICE, UNKNOWN] {
        let got = env.send_as("GET", &path, &alice, other, "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    }
    // An integration id nobody has: nothing can match.
    let got = env
        .send_as(
            "GET",
            &p(&format!("/sdk/proxy/custom/{UNKNOWN}/v1")),
            &alice,
            BILLING_ALICE,
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/proxy/custom/{UNKNOWN}/v1")),
            &alice,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "no_permitted_credential");
    env.gw.shutdown().await;
}

/// What a planned request in the concurrency test must come to.
#[derive(Debug, Clone)]
enum Expect {
    /// Allowed, reaching Paragon once with this credential at this place.
    Routed(String, Place),
    /// Allowed, reaching Paragon once with no credential (`GET /sdk/me`).
    Unrouted,
    /// Refused by credgate with this status and code; nothing forwarded.
    Refused(u16, &'static str),
}

#[derive(Debug, Clone)]
struct Planned {
    principal: &'static str,
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    expect: Expect,
}

/// A deterministic pseudo-random stream (xorshift64*), so a failure
/// replays the same mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

fn action_for(integration: &str) -> &'static str {
    match integration {
        "salesforce" => "SALESFORCE_CREATE_RECORD",
        "slack" => "SLACK_SEND_MESSAGE",
        "googledrive" => "GOOGLE_DRIVE_LIST_FILES",
        other => panic!("no action for {other}"),
    }
}

fn plan(env: &Env, principal: &'static str, rng: &mut Rng) -> Planned {
    let own: Vec<&Known> = env.owned_by(principal);
    let foreign: Vec<&Known> = env.known.iter().filter(|k| k.owner != principal).collect();
    let mine_of =
        |t: &str| -> Vec<&Known> { own.iter().copied().filter(|k| k.integration == t).collect() };
    let is_own = rng.next().is_multiple_of(2);
    let c: Known = if is_own {
        (*rng.pick(&own)).clone()
    } else {
        (*rng.pick(&foreign)).clone()
    };
    let forbidden = Expect::Refused(403, "credential_forbidden");
    let named = |place| {
        if is_own {
            Expect::Routed(c.id.clone(), place)
        } else {
            forbidden.clone()
        }
    };
    let header = vec![("x-paragon-credential", c.id.clone())];
    let n = rng.next() % 1000;
    let mut out = Planned {
        principal,
        what: "",
        method: "GET",
        path: String::new(),
        headers: header.clone(),
        body: String::new(),
        expect: named(Place::Header),
    };
    match rng.next() % 10 {
        0 => {
            out.what = "proxy";
            out.path = p(&format!("/sdk/proxy/{}/items/{n}", c.integration));
        }
        1 => {
            out.what = "workflow trigger";
            out.method = "POST";
            out.path = p(&format!("/sdk/triggers/wf-{n}"));
            out.body = format!(r#"{{"n":{n}}}"#);
        }
        2 => {
            out.what = "app event";
            out.method = "POST";
            out.path = format!("/v2/projects/{PROJECT}/sdk/events/trigger");
            out.body = r#"{"name":"Deal Won","payload":{}}"#.into();
        }
        3 => {
            out.what = "actionkit action";
            out.method = "POST";
            out.path = p("/actions");
            out.body = format!(r#"{{"action":"{}"}}"#, action_for(&c.integration));
        }
        4 => {
            out.what = "credential by id";
            out.path = p(&format!("/sdk/credentials/{}", c.id));
            out.headers = vec![];
            out.expect = named(Place::Token);
        }
        5 => {
            out.what = "sync create";
            out.method = "POST";
            out.path = "/api/syncs".into();
            out.headers = vec![];
            out.body = format!(
                r#"{{"integration":"{}","pipeline":"p{n}","credentialId":"{}"}}"#,
                c.integration, c.id
            );
            out.expect = named(Place::Body);
        }
        6 => {
            out.what = "sdk me";
            out.path = p("/sdk/me");
            out.headers = vec![];
            out.expect = Expect::Unrouted;
        }
        7 => {
            out.what = "proxy by label";
            out.path = p(&format!("/sdk/proxy/{}/items/{n}", c.integration));
            out.headers = vec![("x-paragon-credential", format!("ext:{}", c.owner))];
            let matches = mine_of(&c.integration);
            out.expect = match (is_own, matches.as_slice()) {
                (true, [one]) => Expect::Routed(one.id.clone(), Place::Header),
                _ => forbidden.clone(),
            };
        }
        8 => {
            out.what = "workflow settings";
            out.method = if n.is_multiple_of(2) {
                "POST"
            } else {
                "DELETE"
            };
            out.path = p(&format!("/sdk/workflows/wf-{n}"));
        }
        _ => {
            let t = *rng.pick(&["salesforce", "slack", "googledrive"]);
            out.what = "actionkit default";
            out.method = "POST";
            out.path = p("/actions");
            out.headers = vec![];
            out.body = format!(r#"{{"action":"{}"}}"#, action_for(t));
            out.expect = match mine_of(t).as_slice() {
                [one] => Expect::Routed(one.id.clone(), Place::Header),
                [] => Expect::Refused(403, "no_permitted_credential"),
                _ => Expect::Refused(400, "credential_required"),
            };
        }
    }
    out
}

/// Every credential id a permissions claim grants
/// (`{"integration:t": {"credential:id": true}}`).
fn claim_credentials(claim: &Value) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for scope in claim.as_object()?.values() {
        for k in scope.as_object()?.keys() {
            out.push(k.strip_prefix("credential:")?.to_string());
        }
    }
    Some(out)
}

/// 4 members × 500 requests, 64 in flight, mixing their own and each
/// other's accounts over eight products while the credential cache is
/// invalidated underneath them: no request may be misrouted or wrongly
/// allowed. Checked from both ends: each response against its plan, and
/// every request the emulator received (joined by `x-request-id`) against
/// the principal who sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_members_in_parallel_are_never_misrouted() {
    const PER_MEMBER: usize = 500;
    const IN_FLIGHT: usize = 64;
    const MEMBERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
    let env = Arc::new(Env::start().await);
    let tokens: HashMap<&str, String> = MEMBERS.iter().map(|m| (*m, env.member(m))).collect();
    let mut rng = Rng(0x5eed_c0de_2024_0001);
    let mut plans = Vec::new();
    for _ in 0..PER_MEMBER {
        for m in MEMBERS {
            plans.push(plan(&env, m, &mut rng));
        }
    }

    // Invalidate the cache now and then while the load runs, so lists are
    // loaded concurrently with decisions.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let invalidator = {
        let (env, stop) = (env.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = if n.is_multiple_of(2) {
                    json!({})
                } else {
                    json!({"user": "acme"})
                };
                env.invalidate(body).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, plan) in plans.iter().cloned().enumerate() {
        let (env, permits) = (env.clone(), permits.clone());
        let token = tokens[plan.principal].clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let mut headers: Vec<(&str, &str)> =
                plan.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            headers.push(("content-type", "application/json"));
            let got = env
                .send(plan.method, &plan.path, &token, &headers, plan.body.clone())
                .await;
            (i, got)
        });
    }
    let mut results: Vec<Option<Got>> = (0..plans.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, got) = done.expect("a request task");
        results[i] = Some(got);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    invalidator.await.unwrap();
    let results: Vec<Got> = results.into_iter().map(Option::unwrap).collect();

    // Join what Paragon received to who asked.
    let mut by_rid: HashMap<String, usize> = HashMap::new();
    for (i, got) in results.iter().enumerate() {
        assert!(
            by_rid.insert(rid(got), i).is_none(),
            "request ids are unique"
        );
    }
    let mut received: HashMap<usize, Vec<credgate::emulator::RecordedRequest>> = HashMap::new();
    let mut violations: Vec<String> = Vec::new();
    let owner_of: HashMap<&str, &str> = env
        .known
        .iter()
        .map(|k| (k.id.as_str(), k.owner.as_str()))
        .collect();
    let traffic = env.traffic();
    for r in &traffic {
        let Some(&i) = r.header("x-request-id").and_then(|id| by_rid.get(id)) else {
            violations.push(format!(
                "unattributed request at Paragon: {} {}",
                r.method, r.path
            ));
            continue;
        };
        let who = plans[i].principal;
        let mut carried: Vec<String> = credential_headers(r);
        if let Some(c) = &r.credential {
            carried.push(c.clone());
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
            if let Some(c) = v.get("credentialId").and_then(Value::as_str) {
                carried.push(c.to_string());
            }
        }
        let claims = env.upstream_claims(r);
        match claims.get(PERMS).and_then(claim_credentials) {
            Some(granted) => carried.extend(granted),
            None => violations.push(format!("#{i} {who}: an unnarrowed token reached Paragon")),
        }
        for c in carried {
            let owner = owner_of.get(c.to_ascii_lowercase().as_str()).copied();
            if owner != Some(who) {
                violations.push(format!(
                    "#{i} {who} {}: Paragon received {c} (owner {owner:?}) for {} {}",
                    plans[i].what, r.method, r.path
                ));
            }
        }
        received.entry(i).or_default().push(r.clone());
    }

    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, (plan, got)) in plans.iter().zip(&results).enumerate() {
        let recs = received.remove(&i).unwrap_or_default();
        let tag = format!("#{i} {} {} {}", plan.principal, plan.what, plan.path);
        let entry = counts.entry(plan.what).or_default();
        match &plan.expect {
            Expect::Refused(status, code) => {
                entry.1 += 1;
                let got_code = serde_json::from_slice::<Value>(&got.body)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_string));
                if got.status.as_u16() != *status || got_code.as_deref() != Some(code) {
                    violations.push(format!(
                        "{tag}: expected {status} {code}, got {} {}",
                        got.status,
                        String::from_utf8_lossy(&got.body)
                    ));
                }
                if !recs.is_empty() {
                    violations.push(format!("{tag}: refused but reached Paragon"));
                }
            }
            Expect::Routed(cred, place) => {
                entry.0 += 1;
                if !got.status.is_success() {
                    violations.push(format!(
                        "{tag}: expected success, got {} {}",
                        got.status,
                        String::from_utf8_lossy(&got.body)
                    ));
                }
                let [r] = recs.as_slice() else {
                    violations.push(format!("{tag}: reached Paragon {} times", recs.len()));
                    continue;
                };
                let headers = credential_headers(r);
                let ok = r.credential.as_deref() == Some(cred.as_str())
                    && match place {
                        Place::Header => headers == vec![cred.clone()],
                        Place::Body | Place::Token => headers.is_empty(),
                    }
                    && env.upstream_claims(r)[PERMS]
                        == claim_for([(env.cred(cred).integration.as_str(), cred.as_str())]);
                if !ok {
                    violations.push(format!("{tag}: misrouted: {r:?}"));
                }
            }
            Expect::Unrouted => {
                entry.0 += 1;
                let mine: BTreeSet<String> = env
                    .owned_by(plan.principal)
                    .iter()
                    .map(|k| k.id.clone())
                    .collect();
                let shown = ids_in(&String::from_utf8_lossy(&got.body), &env.known);
                if got.status != 200 || shown.iter().any(|id| !mine.contains(*id)) {
                    violations.push(format!("{tag}: {} shows {shown:?}", got.status));
                }
                if recs.len() != 1 || !credential_headers(&recs[0]).is_empty() {
                    violations.push(format!("{tag}: forwarded {recs:?}"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The mix really exercised both sides on every product.
    for (what, (allowed, refused)) in &counts {
        assert!(*allowed > 0, "{what}: nothing allowed in the mix");
        if *what != "sdk me" {
            assert!(*refused > 0, "{what}: nothing refused in the mix");
        }
    }
    assert_eq!(counts.len(), 10);
    assert!(env.loads().len() > 1, "lists were reloaded during the run");

    let env = Arc::try_unwrap(env).unwrap_or_else(|_| panic!("tasks are done"));
    env.gw.shutdown().await;
}

/// Connected Users are separate worlds: a member called alice of another
/// user (`globex`), whose accounts carry the same `alice` label, reaches
/// only globex's accounts, never acme's alice's, nor her syncs; and each
/// user's cached list stays its own.
#[tokio::test]
async fn the_same_principal_of_another_user_is_a_stranger() {
    let mut env = Env::start().await;
    const GLOBEX_SF: &str = "91013e00-5a1e-4000-8000-000000000001";
    env.state().add_user("globex");
    env.add("globex", owned(GLOBEX_SF, "salesforce", "alice"));
    let acme_alice = env.member("alice");
    let globex_alice = env.keys.member("globex", "alice");
    let sf = p("/sdk/proxy/salesforce/x");

    let s = create_sync(&env, &acme_alice, "salesforce", Some(SF_ALICE)).await;
    let got = env.send("GET", &sf, &acme_alice, &[], "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);

    let got = env.send("GET", &sf, &globex_alice, &[], "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    assert_eq!(credential_headers(&fwd[0]), vec![GLOBEX_SF.to_string()]);
    let claims = env.upstream_claims(&fwd[0]);
    assert_eq!(claims["sub"], "globex");
    assert_eq!(claims[PERMS], claim_for([("salesforce", GLOBEX_SF)]));

    let before = env.traffic().len();
    for (method, path, cred) in [
        ("GET", sf.clone(), Some(SF_ALICE)),
        ("GET", sf.clone(), Some("ext:alice")),
        ("GET", p(&format!("/sdk/credentials/{SF_ALICE}")), None),
        ("GET", format!("/api/syncs/{s}"), None),
        ("DELETE", format!("/api/syncs/{s}"), None),
    ] {
        let got = match cred {
            Some(c) if c.starts_with("ext:") => {
                // globex's own alice-labelled account is the only match.
                let got = env.send_as(method, &path, &globex_alice, c, "").await;
                assert_eq!(
                    env.forwarded(&got)[0].credential.as_deref(),
                    Some(GLOBEX_SF)
                );
                continue;
            }
            Some(c) => env.send_as(method, &path, &globex_alice, c, "").await,
            None => env.send(method, &path, &globex_alice, &[], "").await,
        };
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    assert_eq!(
        env.traffic().len(),
        before + 1,
        "only the ext: call was forwarded"
    );
    let got = env.send("GET", &p("/sdk/me"), &globex_alice, &[], "").await;
    assert_eq!(
        ids_in(&String::from_utf8_lossy(&got.body), &env.known),
        [GLOBEX_SF].into_iter().collect()
    );
    let got = env.send("GET", "/api/syncs", &globex_alice, &[], "").await;
    assert!(sync_ids(&got).is_empty());
    assert!(env.state().sync_credential(&s).is_some());
    env.gw.shutdown().await;
}

/// `/sdk/credentials/{id}` with `X-Paragon-Credential` naming another id is
/// 400 (contract §3); naming the same id is fine; sub-paths of a foreign id are
/// refused like the id itself.
#[tokio::test]
async fn credential_paths_and_headers_must_agree() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let path = p(&format!("/sdk/credentials/{SF_ALICE}"));
    let got = env.send_as("GET", &path, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Token);
    // Another id beside the path is 400, except on `GET` of the credential
    // itself, which the SDK polls mid-install with its current account in
    // the header (contract §13): judged, and not forwarded.
    let sub = p(&format!("/sdk/credentials/{SF_ALICE}/configurations"));
    for other in [SLACK_ALICE_1, SF_BOB] {
        let got = env.send_as("GET", &sub, &alice, other, "").await;
        env.assert_refused(&got, 400, "bad_request");
        let got = env.send_as("DELETE", &path, &alice, other, "").await;
        env.assert_refused(&got, 400, "bad_request");
    }
    let got = env.send_as("GET", &path, &alice, SLACK_ALICE_1, "").await;
    let r = env.assert_routed(&got, SF_ALICE, Place::Token);
    assert!(credential_headers(&r).is_empty(), "{r:?}");
    let got = env.send_as("GET", &path, &alice, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let before = env.traffic().len();
    for bad in [
        format!("/sdk/credentials/{SF_BOB}/configurations"),
        "/sdk/credentials/ext:bob".to_string(),
        "/sdk/credentials/not-a-uuid".to_string(),
    ] {
        let got = env.send("GET", &p(&bad), &alice, &[], "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(got.json()["message"], FORBIDDEN_MESSAGE);
    }
    assert_eq!(env.traffic().len(), before);
    env.gw.shutdown().await;
}

/// Bodies credgate must read are capped at `server.max_body_bytes`: 413
/// `body_too_large`, and nothing reaches Paragon.
#[tokio::test]
async fn oversized_sync_bodies_are_413_and_reach_nothing() {
    let env = Env::with(fixtures(), |b| b.server("max_body_bytes = 1024")).await;
    let alice = env.member("alice");
    let big = format!(
        r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}","pad":"{}"}}"#,
        "x".repeat(2048)
    );
    let got = env
        .send("POST", "/api/syncs", &alice, &[], big.clone())
        .await;
    env.assert_refused(&got, 413, "body_too_large");
    let got = env
        .send("PATCH", &format!("/api/syncs/{UNKNOWN}"), &alice, &[], big)
        .await;
    env.assert_refused(&got, 413, "body_too_large");
    assert!(env.traffic().is_empty());
    env.gw.shutdown().await;
}

/// The other grant sources of contract §5 route the same way: the token's
/// `credentials_claim` and the ACL file (by id, by `externalId`, by
/// integration) permit exactly what they name.
#[tokio::test]
async fn token_claims_and_acl_grants_permit_exactly_what_they_name() {
    let acl_dir = TempDir::new("acl");
    let acl = acl_dir.write(
        "acl.toml",
        &format!(
            r#"
[[grant]]
principal = "zoe"
integrations = ["slack"]

[[grant]]
principal = "yuri"
credentials = ["{}"]

[[grant]]
principal = "xena"
external_ids = ["carol"]
"#,
            SF_BOB.to_uppercase()
        ),
    );
    let policy = format!(
        "credentials_claim = \"paragon_credentials\"\nacl_file = \"{}\"",
        acl.display()
    );
    let env = Env::with(fixtures(), |b| b.policy(&policy)).await;
    let sf = p("/sdk/proxy/salesforce/x");
    let slack = p("/sdk/proxy/slack/x");
    let wanda = env.keys.caller_token(json!({
        "sub": "acme",
        "principal": "wanda",
        "paragon_credentials": [DRIVE_ALICE.to_uppercase()],
    }));
    let (zoe, yuri, xena) = (env.member("zoe"), env.member("yuri"), env.member("xena"));

    let allowed: [(&String, &String, &str); 6] = [
        (&zoe, &slack, SLACK_BOB),
        (&zoe, &slack, SLACK_ALICE_2),
        (&yuri, &sf, SF_BOB),
        (&xena, &sf, CAROL_SF),
        (&wanda, &p("/sdk/proxy/googledrive/x"), DRIVE_ALICE),
        (&env.member("alice"), &sf, SF_ALICE),
    ];
    for (token, path, cred) in allowed {
        let got = env.send_as("GET", path, token, cred, "").await;
        env.assert_routed(&got, cred, Place::Header);
    }
    let refused: [(&String, &String, &str); 6] = [
        (&zoe, &sf, SF_BOB),
        (&yuri, &sf, SF_ALICE),
        (&yuri, &slack, SLACK_BOB),
        (&xena, &sf, SF_BOB),
        (&wanda, &sf, SF_ALICE),
        (&env.member("alice"), &sf, SF_BOB),
    ];
    for (token, path, cred) in refused {
        let got = env.send_as("GET", path, token, cred, "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    let got = env.send("GET", &slack, &zoe, &[], "").await;
    env.assert_refused(&got, 400, "credential_required");
    assert_eq!(
        strings(&got.json()["candidates"]),
        set(&[SLACK_ALICE_1, SLACK_ALICE_2, SLACK_BOB, DAVE_SLACK])
    );
    let got = env.send("GET", &p("/sdk/me"), &wanda, &[], "").await;
    assert_eq!(got.status, 200);
    assert_eq!(
        ids_in(&String::from_utf8_lossy(&got.body), &env.known),
        [DRIVE_ALICE].into_iter().collect()
    );
    let fwd = env.forwarded(&got);
    assert_eq!(
        env.upstream_claims(&fwd[0])[PERMS],
        claim_for([("googledrive", DRIVE_ALICE)])
    );
    env.gw.shutdown().await;
}

/// contract §1 check order, the middle of the chain: "product allowed for the
/// caller (403) → body size (413) → the user's credential list (503)".
/// An oversized body to a product the member may not use is the product
/// refusal, not 413; the same oversized body from an admin (who may call
/// every product) is 413; and with Paragon failing to list credentials, a
/// member's oversized body is still 413, not 503. None reaches Paragon.
#[tokio::test]
async fn product_refusal_precedes_body_size_which_precedes_the_credential_list() {
    let env = Env::with(fixtures(), |b| {
        b.server("max_body_bytes = 1024").policy(
            "member_products = [\"proxy\", \"workflow\", \"app_event\", \"user\", \"catalog\", \
             \"uninstall\", \"credentials\", \"workflow_settings\", \"actionkit\"]",
        )
    })
    .await;
    let (alice, admin) = (env.member("alice"), env.admin());
    let pad = "x".repeat(2048);
    let big_sync = format!(
        r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}","pad":"{pad}"}}"#
    );
    let big_action =
        format!(r#"{{"action":"SALESFORCE_CREATE_RECORD","parameters":{{"pad":"{pad}"}}}}"#);
    let json_h = [("content-type", "application/json")];

    // A product the member may not use: 403 before the body is judged.
    let got = env
        .send("POST", "/api/syncs", &alice, &json_h, big_sync.clone())
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    let got = env
        .send(
            "PATCH",
            &format!("/api/syncs/{UNKNOWN}"),
            &alice,
            &json_h,
            big_sync.clone(),
        )
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");

    // The admin may use it: the body size answers.
    let got = env
        .send("POST", "/api/syncs", &admin, &json_h, big_sync.clone())
        .await;
    env.assert_refused(&got, 413, "body_too_large");

    // The credential list cannot be loaded.
    env.state().set_behaviour(Behaviour {
        me_status: Some(500),
        ..Behaviour::default()
    });
    env.invalidate(json!({})).await;
    // A member's oversized body that must be read (an ActionKit action with
    // no credential named): 413, not 503.
    let got = env
        .send("POST", &p("/actions"), &alice, &json_h, big_action.clone())
        .await;
    env.assert_refused(&got, 413, "body_too_large");
    // The admin's oversized sync body: still 413.
    let got = env
        .send("POST", "/api/syncs", &admin, &json_h, big_sync.clone())
        .await;
    env.assert_refused(&got, 413, "body_too_large");
    // And the product refusal still comes first.
    let got = env
        .send("POST", "/api/syncs", &alice, &json_h, big_sync)
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    // The list really is failing: the same action, small, is 503.
    let got = env
        .send(
            "POST",
            &p("/actions"),
            &alice,
            &json_h,
            r#"{"action":"SALESFORCE_CREATE_RECORD","parameters":{}}"#,
        )
        .await;
    env.assert_refused(&got, 503, "credentials_unavailable");

    assert!(
        env.traffic().is_empty(),
        "nothing reached Paragon: {:#?}",
        env.traffic()
    );
    env.gw.shutdown().await;
}
