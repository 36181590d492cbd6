//! The install routes' doors that another spelling, another method, a
//! query parameter, another body type or passthrough mode had left open
//! (contract §13, found by review): each test is a member trying one, and
//! nothing of it reaching Paragon (or reaching it only as judged). The last
//! test holds the doors that were already closed.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::fixtures::*;
use credgate::emulator::RecordedRequest;
use harness::*;
use serde_json::{json, Value};

fn build_oauth(token: &str, session: &str, options: Value) -> String {
    build_oauth_path(&install_start_query(token, &options, session))
}

/// A request a member tries: method, path, headers, body.
type Probe<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, String);

fn body_json(r: &RecordedRequest) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// README "Install sessions are the member's own", in passthrough mode:
/// every member's principal is the Connected User there (contract §4), so
/// the session id is bound to the member's permissions claim: Bob's scoped
/// Paragon token neither reads Alice's install session (and her new
/// account's id) nor ends it, and her poll still finds it.
#[tokio::test]
async fn passthrough_members_do_not_share_install_sessions() {
    let env = Env::with(fixtures(), |b| {
        b.auth("mode = \"passthrough\"")
            .paragon("public_key_file = \"paragon.pub.pem\"")
    })
    .await;
    let alice = env.paragon_token(json!({
        PERMS: {"integration:salesforce": {format!("credential:{DEMO_SALESFORCE_ALICE}"): true}}
    }));
    let bob = env.paragon_token(json!({
        PERMS: {"integration:salesforce": {format!("credential:{DEMO_SALESFORCE_BOB}"): true}}
    }));
    // Alice starts an install (the SDK's fetch), then consents on Paragon.
    env.install_consented(&alice, "k3x9q1").await;
    // Bob, who learned the SDK's session id, polls it.
    let session = p("/sdk/actions/session-id/k3x9q1");
    let mut open = Vec::new();
    for method in ["GET", "DELETE"] {
        let got = env.send(method, &session, &bob, &[], "").await;
        if got.status != 404 {
            open.push(format!(
                "{method} -> {} {}",
                got.status,
                String::from_utf8_lossy(&got.body)
            ));
        }
    }
    // Alice's own poll after Bob's DELETE.
    let got = env.send("GET", &session, &alice, &[], "").await;
    open.push(format!("(alice GET afterwards -> {})", got.status));
    assert!(
        open.len() == 1,
        "Bob reached Alice's install session: {open:#?}"
    );
}

/// README "Completing an account": the body of `complete-setup` is judged
/// in any spelling of the segment (case, percent-encoding), since a router
/// that matches without regard to case (Express's default) or decodes
/// first takes them all for the same route: Bob's own account completed
/// with Alice's label never reaches Paragon.
#[tokio::test]
async fn complete_setup_in_another_case_is_still_judged() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let body = json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": {"externalId": "alice"}})
        .to_string();
    let ct = [("content-type", "application/json")];
    // The exact spelling: refused, as documented.
    let got = env
        .send(
            "POST",
            &p(&format!(
                "/sdk/credentials/{DEMO_SALESFORCE_BOB}/complete-setup"
            )),
            &bob,
            &ct,
            body.clone(),
        )
        .await;
    assert_eq!(got.status, 403);
    let mut open = Vec::new();
    for seg in [
        "Complete-Setup",
        "COMPLETE-SETUP",
        "complete-Setup",
        "complete%2Dsetup",
        "complete%2dsetup",
    ] {
        let got = env
            .send(
                "POST",
                &p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}/{seg}")),
                &bob,
                &ct,
                body.clone(),
            )
            .await;
        let fwd = env.forwarded(&got);
        if !fwd.is_empty() {
            open.push(format!(
                "{seg}: {} forwarded {:?}",
                got.status,
                fwd.iter()
                    .map(|r| (&r.path, body_json(r)))
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        open.is_empty(),
        "Bob's body with Alice's label reached Paragon: {open:#?}"
    );
}

/// A member's body on `PATCH`/`PUT`/`POST /sdk/credentials/{id}` (the SDK sends
/// its settings, `{config}`) is judged as an install body: a label that is
/// not hers is refused (403), a field the SDK does not send too (400).
#[tokio::test]
async fn a_members_label_fields_on_other_credential_methods_are_not_passed() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let ct = [("content-type", "application/json")];
    let mut open = Vec::new();
    for (method, body, want) in [
        ("PATCH", json!({"externalId": "alice"}), 400),
        (
            "PATCH",
            json!({"installOptions": {"externalId": "alice"}}),
            403,
        ),
        (
            "PUT",
            json!({"installOptions": {"externalId": "alice"}}),
            403,
        ),
        (
            "POST",
            json!({"installOptions": {"externalId": "alice"}}),
            403,
        ),
    ] {
        let got = env
            .send(
                method,
                &p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}")),
                &bob,
                &ct,
                body.to_string(),
            )
            .await;
        let fwd = env.forwarded(&got);
        if !fwd.is_empty() && String::from_utf8_lossy(&fwd[0].body).contains("alice") {
            open.push(format!(
                "{method} {body}: {} forwarded {}",
                got.status,
                String::from_utf8_lossy(&fwd[0].body)
            ));
        }
        assert_eq!(got.status, want, "{method} {body}");
    }
    assert!(open.is_empty(), "{open:#?}");
    // The SDK's own settings change, and her own label, still pass.
    for body in [
        json!({"config": {"sharedMeta": {"a": 1}}}),
        json!({"config": {}, "installOptions": {"externalId": "bob"}}),
    ] {
        let got = env
            .send(
                "PATCH",
                &p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}")),
                &bob,
                &ct,
                body.to_string(),
            )
            .await;
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1, "{body}: {} {:?}", got.status, got.body);
        assert_eq!(body_json(&fwd[0]), body);
    }
}

/// The install routes are on Paragon's Connect host (contract §13), and
/// credgate's `includeAccountAuth` guard (§3) covers them: a member's
/// `includeAccountAuth=true` (the account's raw secrets) on
/// `session-id/{id}` or `POST /sdk/credentials` is refused, never forwarded.
#[tokio::test]
async fn a_members_include_account_auth_is_not_forwarded_on_install_routes() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let got = env
        .send(
            "GET",
            &p("/sdk/actions/session-id/k3x9q1?includeAccountAuth=true"),
            &bob,
            &[],
            "",
        )
        .await;
    let fwd = env.forwarded(&got);
    let mut open = Vec::new();
    if !fwd.is_empty() {
        open.push(format!(
            "session-id: {} forwarded {:?}",
            got.status, fwd[0].query
        ));
    }
    let got = env
        .send(
            "POST",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &bob,
            &[("content-type", "application/json")],
            json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": {}}).to_string(),
        )
        .await;
    let fwd = env.forwarded(&got);
    if !fwd.is_empty() {
        open.push(format!(
            "credentials create: {} forwarded {:?}",
            got.status, fwd[0].query
        ));
    }
    assert!(open.is_empty(), "{open:#?}");
}

/// Contract §13: "an account a member connects through credgate belongs to
/// that member from its first request". A member's install body read as
/// JSON (no `Content-Type`, or an `application/*+json` one) reaches Paragon
/// typed `application/json`, with her label: a parser that reads only
/// `application/json` must not skip its `installOptions`.
#[tokio::test]
async fn a_labelled_body_reaches_paragon_as_json() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let body =
        json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": {}}).to_string();
    let mut open = Vec::new();
    for ct in [None, Some("application/merge-patch+json")] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let got = env
            .send("POST", &p("/sdk/credentials"), &bob, &headers, body.clone())
            .await;
        let fwd = env.forwarded(&got);
        assert_eq!(fwd.len(), 1, "{ct:?}: {} {:?}", got.status, got.body);
        let label = body_json(&fwd[0])["installOptions"]["externalId"].clone();
        assert!(
            label.as_str().is_some_and(|l| l.starts_with("bob/")),
            "{ct:?}: {label}"
        );
        if fwd[0].header("content-type") != Some("application/json") {
            open.push(format!(
                "sent {ct:?}: Paragon got content-type {:?} with body {}",
                fwd[0].header("content-type"),
                String::from_utf8_lossy(&fwd[0].body)
            ));
        }
    }
    assert!(open.is_empty(), "{open:#?}");
}

/// Probes that were closed before the review: path spellings,
/// methods, encoded names, duplicate and escaped keys, header smuggling.
#[tokio::test]
async fn closed_doors_stay_closed() {
    let env = Env::start().await;
    let bob = env.member("bob");
    let before = env.traffic().len();
    let ct = [("content-type", "application/json")];
    let mut open = Vec::new();
    let q = |opts: Value| build_oauth(&bob, "s1", opts);
    let comma = format!("{DEMO_SALESFORCE_BOB},{DEMO_SALESFORCE_ALICE}");
    let cases: Vec<Probe> = vec![
        ("GET", p("/sdk/actions/Session-Id/s1"), vec![], String::new()),
        ("GET", p("/sdk/actions/session-id/s1/"), vec![], String::new()),
        ("GET", p("/sdk/actions/session%2Did/s1"), vec![], String::new()),
        ("GET", p("/sdk/actions/session-id/a%2Fb"), vec![], String::new()),
        ("GET", p("/sdk/actions/session-id/%2e%2e"), vec![], String::new()),
        ("HEAD", p("/sdk/actions/session-id/s1"), vec![], String::new()),
        ("PATCH", p("/sdk/actions/session-id/s1"), vec![], String::new()),
        ("OPTIONS", p("/sdk/actions/session-id/s1"), vec![], String::new()),
        ("HEAD", q(json!({})), vec![], String::new()),
        ("GET", format!("{}/", q(json!({}))).replace("build-oauth?", "build-oauth/?"), vec![], String::new()),
        ("GET", p("/sdk/actions/build-oauth"), vec![], String::new()),
        ("GET", format!("/v2/projects/{PROJECT}/sdk/actions/Build-OAuth"), vec![], String::new()),
        ("POST", p("/sdk/actions"), ct.to_vec(), "{}".into()),
        ("POST", p("/sdk/Credentials"), ct.to_vec(), "{}".into()),
        ("PUT", p("/sdk/credentials"), ct.to_vec(), "{}".into()),
        // Encoded parameter name: decoded, then judged (foreign label).
        ("GET", format!("{}&%69nstallOptions=x", q(json!({})).replace("&installOptions=", "&x=")), vec![], String::new()),
        ("GET", format!("{}&installOptions%5BexternalId%5D=alice", q(json!({}))), vec![], String::new()),
        ("GET", q(json!({"externalId": "alice"})), vec![], String::new()),
        ("GET", q(json!({"external\u{0049}d": "alice"})), vec![], String::new()),
        ("GET", q(json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE.to_uppercase()})), vec![], String::new()),
        ("GET", q(json!({"selectedCredentialId": "ext:alice"})), vec![], String::new()),
        ("GET", q(json!({})), vec![("x-paragon-credential", DEMO_SALESFORCE_ALICE)], String::new()),
        ("GET", q(json!({})), vec![("x-paragon-credential", comma.as_str())], String::new()),
        ("GET", q(json!({})), vec![("x-paragon-credential", DEMO_SALESFORCE_BOB), ("X_Paragon_Credential", DEMO_SALESFORCE_BOB)], String::new()),
        ("POST", p("/sdk/credentials"), ct.to_vec(), r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","installOptions":{"externalId":"bob","extern\u0061lId":"alice"}}"#.into()),
        ("POST", p("/sdk/credentials"), ct.to_vec(), r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","install\u004fptions":{"externalId":"alice"}}"#.into()),
        ("POST", p("/sdk/credentials"), ct.to_vec(), r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","installOptions":"{\"externalId\":\"alice\"}"}"#.into()),
        ("POST", p("/sdk/credentials"), ct.to_vec(), r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","installOptions":{},"externalId":"alice"}"#.into()),
        ("POST", p("/sdk/credentials"), vec![("content-type", "text/plain")], r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","installOptions":{"externalId":"alice"}}"#.into()),
        ("POST", p(&format!("/sdk/credentials/{DEMO_SALESFORCE_ALICE}/complete-setup")), ct.to_vec(), r#"{"installOptions":{"externalId":"alice"}}"#.into()),
        ("POST", p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}/complete-setup/")), ct.to_vec(), r#"{"installOptions":{"externalId":"alice"}}"#.into()),
        ("GET", p("/sdk/credentials/ext:alice"), vec![], String::new()),
        ("GET", p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}/..%2F{DEMO_SALESFORCE_ALICE}")), vec![], String::new()),
    ];
    for (method, path, headers, body) in &cases {
        let got = env.send(method, path, &bob, headers, body.clone()).await;
        let fwd = env.forwarded(&got);
        if !fwd.is_empty() {
            open.push(format!(
                "{method} {path} -> {} forwarded {:?} {}",
                got.status,
                fwd[0].path,
                String::from_utf8_lossy(&fwd[0].body)
            ));
        } else {
            eprintln!("closed: {method} {path} -> {}", got.status);
        }
    }
    assert!(open.is_empty(), "{open:#?}");
    assert_eq!(env.traffic().len(), before);
    // `__proto__` carrying a label: credgate's own label is set as an own
    // property (first), so a JS reader sees Bob's label.
    let got = env
        .send("POST", &p("/sdk/credentials"), &bob, &ct,
            r#"{"integrationId":"c0ffee00-0000-4000-8000-000000000001","installOptions":{"__proto__":{"externalId":"alice"}}}"#)
        .await;
    let fwd = env.forwarded(&got);
    eprintln!(
        "__proto__: {} {:?}",
        got.status,
        fwd.first()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
    );
}
