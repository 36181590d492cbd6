//! Connecting accounts through credgate (contract §13): the install
//! routes as Paragon's Connect SDK sends them, against the Paragon
//! emulator. What reached the emulator on every route: never the caller's
//! own token (a `userToken` credgate minted, verifying with the project
//! key), a member's new account labelled as hers, and a foreign label or
//! account reaching nothing. The list is dropped when Paragon reports a
//! new account, cooldown or not; the SDK's current account beside a
//! polled credential is judged and not forwarded.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::fixtures::*;
use credgate::emulator::RecordedRequest;
use harness::*;
use serde_json::{json, Value};

fn nonce(query: &str) -> String {
    format!("/projects/{PROJECT}/sdk/actions/oauth-nonce?{query}")
}

/// The decoded values of `name` in a recorded query.
fn query_values(r: &RecordedRequest, name: &str) -> Vec<String> {
    r.query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| {
            let v = v.replace('+', " ");
            let d = credgate::gateway::path::percent_decode(v.as_bytes()).unwrap();
            String::from_utf8(d.into_owned()).unwrap()
        })
        .collect()
}

/// What the SDK sends to start an install (session `k3x9q1`).
fn start_query(token: &str, options: Value) -> String {
    install_start_query(token, &options, "k3x9q1")
}

/// The one request that reached the emulator for `got`, asserting that
/// its `userToken` is not the caller's, is the upstream `Authorization`'s
/// token and verifies with the project key (returned: its claims).
fn forwarded_with_minted_token(env: &Env, got: &Got, caller: &str) -> (RecordedRequest, Value) {
    let fwd = env.forwarded(got);
    assert_eq!(fwd.len(), 1, "forwarded once: {fwd:#?}");
    let r = fwd.into_iter().next().unwrap();
    let tokens = query_values(&r, "userToken");
    assert_eq!(tokens.len(), 1, "one userToken: {:?}", r.query);
    assert_ne!(
        tokens[0], caller,
        "the caller's token never reaches Paragon"
    );
    assert!(
        !r.query.as_deref().unwrap_or("").contains(caller),
        "{:?}",
        r.query
    );
    let authorization = r.header("authorization").unwrap().to_string();
    assert_eq!(authorization, format!("Bearer {}", tokens[0]));
    let claims = env.keys.decode_upstream(&authorization);
    assert_eq!(claims["sub"], "acme");
    (r, claims)
}

fn options_of(r: &RecordedRequest) -> Value {
    let v = query_values(r, "installOptions");
    assert_eq!(v.len(), 1, "{:?}", r.query);
    serde_json::from_str(&v[0]).unwrap()
}

#[tokio::test]
async fn build_oauth_gets_a_minted_token_and_the_members_next_free_label() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let got = env
        .send(
            "GET",
            &build_oauth_path(&start_query(
                &alice,
                json!({"allowMultipleCredentials": true, "isApiInstallation": true}),
            )),
            &alice,
            &[("content-type", "application/json")],
            "",
        )
        .await;
    assert!(got.status.is_success(), "{} {:?}", got.status, got.body);
    let (r, _) = forwarded_with_minted_token(&env, &got, &alice);
    // Alice has a Salesforce account labelled `alice`: the next is `alice/2`.
    assert_eq!(
        options_of(&r),
        json!({"allowMultipleCredentials": true, "isApiInstallation": true, "externalId": "alice/2"})
    );
    // Every other parameter as sent.
    // The SDK's session id goes bound to her (32 hex digits, not hers).
    let session = query_values(&r, "oauthMetaKeyId");
    assert_eq!(session.len(), 1);
    assert_ne!(session[0], "k3x9q1");
    assert!(
        session[0].len() == 32 && session[0].bytes().all(|b| b.is_ascii_hexdigit()),
        "{session:?}"
    );
    assert_eq!(
        query_values(&r, "integrationId"),
        vec![DEMO_INTEGRATION_SALESFORCE]
    );
    // Dave has no Salesforce account: his first is `dave`.
    let dave = env.member("dave");
    let got = env
        .send(
            "GET",
            &build_oauth_path(&start_query(&dave, json!({}))),
            &dave,
            &[],
            "",
        )
        .await;
    let (r, _) = forwarded_with_minted_token(&env, &got, &dave);
    assert_eq!(options_of(&r), json!({"externalId": "dave"}));
    // A label of her own passes as she gave it.
    for own in ["alice/work", "alice"] {
        let got = env
            .send(
                "GET",
                &build_oauth_path(&start_query(&alice, json!({"externalId": own}))),
                &alice,
                &[],
                "",
            )
            .await;
        let (r, _) = forwarded_with_minted_token(&env, &got, &alice);
        assert_eq!(options_of(&r), json!({"externalId": own}));
    }
}

#[tokio::test]
async fn a_foreign_label_or_account_or_parameter_reaches_nothing() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let before = env.traffic().len();
    for (options, status, code) in [
        (json!({"externalId": "bob"}), 403, "credential_forbidden"),
        (
            json!({"externalId": "bob/alice"}),
            403,
            "credential_forbidden",
        ),
        (json!({"externalId": "alicex"}), 403, "credential_forbidden"),
        (
            json!({"selectedCredentialId": DEMO_SALESFORCE_BOB}),
            403,
            "credential_forbidden",
        ),
        (
            json!({"selectedCredentialId": "ext:bob"}),
            403,
            "credential_forbidden",
        ),
        (
            json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE, "externalId": "alice"}),
            400,
            "bad_request",
        ),
        (json!({"externalId": 7}), 400, "bad_request"),
        (json!([1]), 400, "bad_request"),
    ] {
        let got = env
            .send(
                "GET",
                &build_oauth_path(&start_query(&alice, options.clone())),
                &alice,
                &[],
                "",
            )
            .await;
        assert_eq!(
            (got.status.as_u16(), got.code()),
            (status, code.to_string()),
            "{options}"
        );
    }
    // The reason of a foreign label.
    let r = wait_for_audit(&env.keys, |r| r["reason"] == "owner_label_mismatch").await;
    assert_eq!(r["principal"], "alice");
    // A parameter Paragon would read as an object, and one given twice.
    for extra in [
        "&installOptions%5BexternalId%5D=bob",
        "&installOptions[externalId]=bob",
        "&action=slack",
        "&selectedCredentialId=x",
    ] {
        let q = format!("{}{extra}", start_query(&alice, json!({})));
        let got = env
            .send("GET", &build_oauth_path(&q), &alice, &[], "")
            .await;
        assert_eq!(got.status, 400, "{extra}");
    }
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    // Her own account re-connected: routed, the token narrowed to it.
    let got = env
        .send(
            "GET",
            &build_oauth_path(&start_query(
                &alice,
                json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE}),
            )),
            &alice,
            &[],
            "",
        )
        .await;
    let (r, claims) = forwarded_with_minted_token(&env, &got, &alice);
    assert_eq!(
        options_of(&r),
        json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE}),
        "no label set on a re-connect"
    );
    let perms = claims[PERMS].to_string();
    assert!(perms.contains(DEMO_SALESFORCE_ALICE), "{perms}");
    assert!(!perms.contains(DEMO_SALESFORCE_BOB), "{perms}");
}

#[tokio::test]
async fn the_user_token_authenticates_only_as_the_callers_own_bearer_token() {
    let env = Env::start().await;
    let (alice, bob) = (env.member("alice"), env.member("bob"));
    let nonce_query = |token: &str| {
        format!(
            "action=salesforce&integrationId={DEMO_INTEGRATION_SALESFORCE}&originForPostMessage=http://127.0.0.1:1&userToken={token}"
        )
    };
    // The popup: a navigation, the token in the query only.
    let got = send(
        &env.cl,
        req("GET", &env.gw, &nonce(&nonce_query(&alice)), None, &[], ""),
    )
    .await;
    assert!(got.status.is_success(), "{}", got.status);
    let (_, claims) = forwarded_with_minted_token(&env, &got, &alice);
    assert!(claims.get(PERMS).is_some(), "a member's narrowed token");
    let before = env.traffic().len();
    // No token, a bad one, two, or one differing from Authorization: 401.
    let no_token = send(
        &env.cl,
        req(
            "GET",
            &env.gw,
            &nonce("action=salesforce&originForPostMessage=x"),
            None,
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(no_token.status, 401);
    let bad = send(
        &env.cl,
        req("GET", &env.gw, &nonce(&nonce_query("a.b.c")), None, &[], ""),
    )
    .await;
    assert_eq!(bad.status, 401);
    let twice = format!("{}&userToken={alice}", nonce_query(&alice));
    let got = send(&env.cl, req("GET", &env.gw, &nonce(&twice), None, &[], "")).await;
    assert_eq!(got.status, 401);
    let respelled = format!("{}&USERTOKEN={alice}", nonce_query(&alice));
    let got = send(
        &env.cl,
        req("GET", &env.gw, &nonce(&respelled), None, &[], ""),
    )
    .await;
    assert_eq!(got.status, 401);
    let got = env
        .send("GET", &nonce(&nonce_query(&bob)), &alice, &[], "")
        .await;
    assert_eq!(got.status, 401);
    let got = env
        .send(
            "GET",
            &build_oauth_path(&start_query(&bob, json!({}))),
            &alice,
            &[],
            "",
        )
        .await;
    assert_eq!(got.status, 401);
    // Nowhere else does a userToken authenticate.
    let got = send(
        &env.cl,
        req(
            "GET",
            &env.gw,
            &p(&format!("/sdk/me?userToken={alice}")),
            None,
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 401);
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    // No query string, no token, is ever written to the audit log.
    let audit = std::fs::read_to_string(env.keys.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(&alice) && !audit.contains(&bob));
    assert!(!audit.contains("userToken"), "{audit}");
}

#[tokio::test]
async fn an_admins_options_pass_unchanged_and_its_token_is_replaced() {
    let env = Env::start().await;
    let admin = env.admin();
    let options = json!({"externalId": "anything", "selectedCredentialId": DEMO_SALESFORCE_BOB});
    let got = env
        .send(
            "GET",
            &build_oauth_path(&start_query(&admin, options.clone())),
            &admin,
            &[],
            "",
        )
        .await;
    let (r, _) = forwarded_with_minted_token(&env, &got, &admin);
    assert_eq!(options_of(&r), options);
}

#[tokio::test]
async fn a_created_account_is_labelled_and_usable_at_once_whatever_the_cooldown() {
    let mut env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"1h\"")).await;
    let alice = env.member("alice");
    // The one reload of the cooldown is spent on an unknown account.
    let got = env.salesforce_get("alice", "x", UNKNOWN, &[]).await;
    assert_eq!(got.status, 403);
    // Bob cannot create an account labelled as Alice's.
    let bob = env.member("bob");
    let body = json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": {"externalId": "alice/3"}});
    let got = env
        .send(
            "POST",
            &p("/sdk/credentials"),
            &bob,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(got.status, 403);
    assert!(env.forwarded(&got).is_empty());
    // Alice creates one, naming no label: credgate gives her `alice/2`.
    let body = json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "config": {}, "payload": {}, "installOptions": {}});
    let got = env
        .send(
            "POST",
            &p("/sdk/credentials"),
            &alice,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert!(got.status.is_success(), "{} {:?}", got.status, got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    let sent: Value = serde_json::from_slice(&fwd[0].body).unwrap();
    assert_eq!(sent["installOptions"], json!({"externalId": "alice/2"}));
    let created = got.json()["id"].as_str().unwrap().to_string();
    env.learn(&created, "salesforce", "alice/2");
    // Usable by her at once (the list was dropped), not by Bob.
    let got = env.salesforce_get("alice", "x", &created, &[]).await;
    env.assert_routed(&got, &created, Place::Header);
    let got = env.salesforce_get("bob", "x", &created, &[]).await;
    assert_eq!(got.status, 403);
}

#[tokio::test]
async fn the_install_popup_flow_ends_with_an_account_that_is_hers_at_once() {
    let mut env = Env::with(fixtures(), |b| b.cache("refresh_cooldown = \"1h\"")).await;
    let alice = env.member("alice");
    let got = env.salesforce_get("alice", "x", UNKNOWN, &[]).await;
    assert_eq!(got.status, 403);
    // The provider's consent, straight at the emulator (not through credgate).
    env.install_consented(&alice, "k3x9q1").await;
    let session = p("/sdk/actions/session-id/k3x9q1");
    // The session is bound to Alice: Paragon got another id than the
    // SDK's, and Bob, who learns the SDK's, can neither read nor end it.
    let sent = env
        .traffic()
        .into_iter()
        .find(|r| r.path.ends_with("/build-oauth"))
        .unwrap();
    let bound = query_values(&sent, "oauthMetaKeyId");
    assert_eq!(bound.len(), 1);
    assert_ne!(bound[0], "k3x9q1");
    let bob = env.member("bob");
    for method in ["GET", "DELETE"] {
        let got = env.send(method, &session, &bob, &[], "").await;
        assert_eq!(got.status, 404, "{method}: {:?}", got.body);
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1);
        assert!(!fwd[0].path.contains("k3x9q1"), "{}", fwd[0].path);
        assert!(!fwd[0].path.ends_with(&bound[0]), "{}", fwd[0].path);
    }
    let got = env
        .send(
            "GET",
            &session,
            &alice,
            &[("x-paragon-sdk-version", "2.4.0")],
            "",
        )
        .await;
    assert!(got.status.is_success(), "{}", got.status);
    assert_eq!(
        env.forwarded(&got)[0].path,
        p(&format!("/sdk/actions/session-id/{}", bound[0]))
    );
    let created = got.json()["connectCredentialId"]
        .as_str()
        .unwrap()
        .to_string();
    env.learn(&created, "salesforce", "alice/2");
    // The SDK reads the new account with its current one in the header:
    // judged, not forwarded.
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/credentials/{created}")),
            &alice,
            &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
            "",
        )
        .await;
    let r = env.assert_routed(&got, &created, Place::Token);
    assert!(credential_headers(&r).is_empty());
    assert_eq!(got.json()["externalId"], "alice/2");
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/credentials/{created}")),
            &alice,
            &[("x-paragon-credential", DEMO_SALESFORCE_BOB)],
            "",
        )
        .await;
    assert_eq!(got.status, 403);
    assert!(env.forwarded(&got).is_empty());
    // Another route keeps §3's rule: a header naming another id is 400.
    let got = env
        .send(
            "GET",
            &p(&format!("/sdk/credentials/{created}/configurations")),
            &alice,
            &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
            "",
        )
        .await;
    assert_eq!(got.status, 400);
    // Hers from its first request; Bob's request naming it is refused.
    let got = env.salesforce_get("alice", "x", &created, &[]).await;
    env.assert_routed(&got, &created, Place::Header);
    let got = env.salesforce_get("bob", "x", &created, &[]).await;
    assert_eq!(got.status, 403);
    let got = env.send("DELETE", &session, &alice, &[], "").await;
    assert!(got.status.is_success(), "{}", got.status);
}

/// `POST /sdk/credentials/{id}/complete-setup` (the SDK finishes a pending
/// account with the install's options): for a member the path's account
/// must be hers, and the body is judged as a new account's, so nobody
/// relabels an account as someone else's.
#[tokio::test]
async fn completing_an_account_cannot_relabel_it_as_someone_elses() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let complete = |id: &str| p(&format!("/sdk/credentials/{id}/complete-setup"));
    let body = |options: Value| {
        json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "config": {}, "payload": {}, "installOptions": options})
            .to_string()
    };
    let json_ct = [("content-type", "application/json")];
    let before = env.traffic().len();
    for (id, sent, status, code) in [
        (
            DEMO_SALESFORCE_ALICE,
            body(json!({"externalId": "bob"})),
            403,
            "credential_forbidden",
        ),
        (
            DEMO_SALESFORCE_ALICE,
            body(json!({"externalId": "bob/alice"})),
            403,
            "credential_forbidden",
        ),
        (
            DEMO_SALESFORCE_ALICE,
            body(json!({"selectedCredentialId": DEMO_SALESFORCE_BOB})),
            403,
            "credential_forbidden",
        ),
        (
            DEMO_SALESFORCE_BOB,
            body(json!({})),
            403,
            "credential_forbidden",
        ),
        (
            DEMO_SALESFORCE_ALICE,
            json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "externalId": "bob"}).to_string(),
            400,
            "bad_request",
        ),
        (
            DEMO_SALESFORCE_ALICE,
            body(json!({"externalId": 7})),
            400,
            "bad_request",
        ),
        (
            DEMO_SALESFORCE_ALICE,
            "not json".to_string(),
            400,
            "bad_request",
        ),
    ] {
        let got = env
            .send("POST", &complete(id), &alice, &json_ct, sent.clone())
            .await;
        assert_eq!(
            (got.status.as_u16(), got.code()),
            (status, code.to_string()),
            "{id} {sent}"
        );
    }
    let r = wait_for_audit(&env.keys, |r| {
        r["reason"] == "owner_label_mismatch" && r["product"] == "credentials"
    })
    .await;
    assert_eq!(r["principal"], "alice");
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    // Her own label, or none (credgate sets none on an existing account):
    // forwarded as sent.
    for options in [json!({"externalId": "alice/work"}), json!({})] {
        let sent = body(options);
        let got = env
            .send(
                "POST",
                &complete(DEMO_SALESFORCE_ALICE),
                &alice,
                &json_ct,
                sent.clone(),
            )
            .await;
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1, "{sent}");
        assert_eq!(fwd[0].body, sent.as_bytes(), "{sent}");
    }
    // An admin's body passes unchanged.
    let admin = env.admin();
    let sent = body(json!({"externalId": "anything"}));
    let got = env
        .send(
            "POST",
            &complete(DEMO_SALESFORCE_BOB),
            &admin,
            &json_ct,
            sent.clone(),
        )
        .await;
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].body, sent.as_bytes());
}
