//! Decisions and their explanations (contract §5a, §9): a stable reason
//! for every decision in the audit record, shadow mode, and the admin
//! listener's decision API and access review, all against the Paragon
//! emulator.
//!
//! The world: Connected User `acme` (alice: Salesforce, two Slack, Google
//! Drive; bob: Salesforce, Slack; carol: Salesforce, Google Drive; dave:
//! Slack), labelled with their owners (`owner_external_id =
//! "{principal}"`), and Connected User `globex` with one Salesforce
//! account labelled `shared`. The ACL grants erin carol's Drive (grant 1)
//! and every member of globex the `shared` account (grant 2: grants are
//! numbered as a person counts them); a token's
//! `creds` claim lists more.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::UserFixture;
use harness::*;
use serde_json::{json, Value};

/// globex's one account.
const GLOBEX_SF: &str = "610be000-5a1e-4000-8000-000000000001";

const ACL: &str = r#"
[[grant]]
principal = "erin"
credentials = ["CAROL_DRIVE"]

[[grant]]
principal = "*"
users = ["globex"]
external_ids = ["shared"]
"#;

fn world() -> credgate::emulator::Fixtures {
    let mut f = fixtures();
    f.users.push(UserFixture {
        id: "globex".into(),
        meta: json!({}),
        credentials: vec![owned(GLOBEX_SF, "salesforce", "shared")],
    });
    f
}

/// The gateway in front of [`world`], with the suite's policy and `extra`.
async fn env_with(extra: &str) -> (Env, TempDir) {
    let dir = TempDir::new("decisions-acl");
    let acl = dir.write("acl.toml", &ACL.replace("CAROL_DRIVE", CAROL_DRIVE));
    let policy = format!(
        "credentials_claim = \"creds\"\nacl_file = \"{}\"\n{extra}",
        acl.display()
    );
    let env = Env::with(world(), |b| b.policy(&policy)).await;
    (env, dir)
}

/// One request of the reason table.
struct Case {
    reason: &'static str,
    token: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// The status and code of a refusal; `None`: allowed.
    refused: Option<(u16, &'static str)>,
}

impl Case {
    fn allowed(reason: &'static str, token: String, path: String, cred: Option<&str>) -> Case {
        Case {
            reason,
            token,
            method: "GET",
            path,
            headers: cred
                .map(|c| vec![("x-paragon-credential", c.to_string())])
                .unwrap_or_default(),
            body: String::new(),
            refused: None,
        }
    }

    fn refused(mut self, status: u16, code: &'static str) -> Case {
        self.refused = Some((status, code));
        self
    }

    async fn send(&self, env: &Env) -> Got {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.send(
            self.method,
            &self.path,
            &self.token,
            &headers,
            self.body.clone(),
        )
        .await
    }
}

fn sf() -> String {
    p("/sdk/proxy/salesforce/x")
}

/// A token of member `principal` of `user` with extra claims.
fn token(env: &Env, user: &str, principal: &str, extra: Value) -> String {
    let mut claims = json!({"sub": user, "principal": principal});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    env.keys.caller_token(claims)
}

/// Creates a sync of globex's shared account (as a globex member) and
/// returns its id: credgate records it as globex's.
async fn globex_sync(env: &Env) -> String {
    let gina = token(env, "globex", "gina", json!({}));
    let body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{GLOBEX_SF}"}}"#);
    let got = env.send("POST", "/api/syncs", &gina, &[], body).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.json()["id"].as_str().unwrap().to_string()
}

/// Every reason value of contract §5a but `passthrough_claim` (its own
/// mode, below) and `rule` (policy rules: `tests/rules.rs`).
async fn reason_table(env: &Env) -> Vec<Case> {
    let alice = env.member("alice");
    let globex_sync = globex_sync(env).await;
    vec![
        Case::allowed("admin", env.admin(), sf(), Some(SF_BOB)),
        Case::allowed("owner_label", alice.clone(), sf(), Some(SF_ALICE)),
        Case::allowed(
            "credentials_claim",
            token(env, "acme", "frank", json!({"creds": [SF_BOB]})),
            sf(),
            Some(SF_BOB),
        ),
        Case::allowed(
            "acl",
            env.member("erin"),
            p("/sdk/proxy/googledrive/x"),
            Some(CAROL_DRIVE),
        ),
        Case::allowed(
            "acl",
            token(env, "globex", "gina", json!({})),
            sf(),
            Some(GLOBEX_SF),
        ),
        Case::allowed("no_credential", alice.clone(), p("/sdk/me"), None),
        Case::allowed("not_in_list", alice.clone(), sf(), Some(UNKNOWN))
            .refused(403, "credential_forbidden"),
        Case::allowed(
            "other_user",
            alice.clone(),
            format!("/api/syncs/{globex_sync}"),
            None,
        )
        .refused(403, "credential_forbidden"),
        Case::allowed(
            "other_integration",
            alice.clone(),
            sf(),
            Some(SLACK_ALICE_1),
        )
        .refused(403, "credential_forbidden"),
        Case::allowed("no_grant", alice.clone(), sf(), Some(SF_BOB))
            .refused(403, "credential_forbidden"),
        Case {
            method: "POST",
            body: r##"{"channel":"#general","text":"hi"}"##.into(),
            ..Case::allowed(
                "ambiguous",
                alice.clone(),
                p("/sdk/proxy/slack/chat.postMessage"),
                None,
            )
        }
        .refused(400, "credential_required"),
        Case {
            method: "POST",
            body: r#"{"query":""}"#.into(),
            ..Case::allowed(
                "product_not_allowed",
                alice.clone(),
                format!("/api/tools/projects/{PROJECT}/search"),
                None,
            )
        }
        .refused(403, "operation_forbidden"),
        Case::allowed(
            "host_not_allowed",
            alice.clone(),
            p("/sdk/proxy/salesforce/https://evil.example/x"),
            Some(SF_ALICE),
        )
        .refused(403, "upstream_host_forbidden"),
        Case::allowed(
            "account_auth",
            alice.clone(),
            p("/sdk/me?includeAccountAuth=true"),
            None,
        )
        .refused(403, "operation_forbidden"),
        Case::allowed(
            "sync_not_owned",
            alice,
            "/api/syncs/5e5e0000-0000-4000-8000-00000000dead".into(),
            None,
        )
        .refused(403, "credential_forbidden"),
    ]
}

/// The audit record of the request that answered `got`.
async fn record_of(env: &Env, got: &Got) -> Value {
    let id = rid(got);
    wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await
}

/// contract §5a: one case per reason value, each checked in the audit
/// record (decision, reason, code, and the detail of `acl`); allowed ones
/// reached Paragon once, refused ones reached nothing; the response of a
/// refusal never names its reason.
#[tokio::test]
async fn every_decision_records_its_reason() {
    let (env, _acl) = env_with("").await;
    let table = reason_table(&env).await;
    let mut seen = std::collections::BTreeSet::new();
    for case in &table {
        let got = case.send(&env).await;
        let record = record_of(&env, &got).await;
        let what = format!("{} {} {}: {record}", case.reason, case.method, case.path);
        assert_eq!(record["reason"], case.reason, "{what}");
        assert_eq!(record["decision_id"], record["request_id"], "{what}");
        match case.refused {
            None => {
                assert!(got.status.is_success(), "{what} {:?}", got.body);
                assert_eq!(record["decision"], "allowed", "{what}");
                assert!(record["code"].is_null(), "{what}");
                assert_eq!(env.forwarded(&got).len(), 1, "{what}");
            }
            Some((status, code)) => {
                env.assert_refused(&got, status, code);
                assert_eq!(record["decision"], "refused", "{what}");
                assert_eq!(record["code"], code, "{what}");
                let body = String::from_utf8_lossy(&got.body);
                assert!(!body.contains(case.reason), "{what}: {body}");
            }
        }
        seen.insert(case.reason);
    }
    assert_eq!((table.len(), seen.len()), (15, 14), "{seen:?}");

    // The detail of `acl`: the grant's number (from 1) and principal.
    let erin = wait_for_audit(&env.keys, |r| r["principal"] == "erin").await;
    assert_eq!(
        (erin["grant"].clone(), erin["grant_principal"].clone()),
        (json!(1), json!("erin"))
    );
    let gina = wait_for_audit(&env.keys, |r| {
        r["principal"] == "gina" && r["credential"] == GLOBEX_SF && r["product"] == "proxy"
    })
    .await;
    assert_eq!(
        (gina["grant"].clone(), gina["grant_principal"].clone()),
        (json!(2), json!("*"))
    );
    // Other reasons carry no grant.
    let owner = wait_for_audit(&env.keys, |r| r["reason"] == "owner_label").await;
    assert!(
        owner["grant"].is_null() && owner["scope"].is_null(),
        "{owner}"
    );
    env.gw.shutdown().await;
}

/// Passthrough mode: the token's permissions claim permits, and the record
/// names the scope that decided.
#[tokio::test]
async fn passthrough_permits_name_the_deciding_scope() {
    let env = Env::with(fixtures(), |b| {
        b.auth("mode = \"passthrough\"")
            .paragon("public_key_file = \"paragon.pub.pem\"")
    })
    .await;
    let scoped = env.paragon_token(json!({
        PERMS: {"integration:salesforce": {format!("credential:{SF_ALICE}"): true}, "integration:slack": true}
    }));
    let got = env.send_as("GET", &sf(), &scoped, SF_ALICE, "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let r = record_of(&env, &got).await;
    assert_eq!(r["reason"], "passthrough_claim", "{r}");
    assert_eq!(
        r["scope"],
        format!("integration:salesforce/credential:{SF_ALICE}")
    );
    let got = env
        .send_as("GET", &p("/sdk/proxy/slack/x"), &scoped, SLACK_BOB, "")
        .await;
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["reason"].clone(), r["scope"].clone()),
        (json!("passthrough_claim"), json!("integration:slack"))
    );
    // Paragon narrows `/sdk/me` by the claim too: bob's account is not in
    // this caller's list at all.
    let got = env.send_as("GET", &sf(), &scoped, SF_BOB, "").await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(record_of(&env, &got).await["reason"], "not_in_list");
    env.gw.shutdown().await;
}

// ------------------------------------------------------------ shadow mode

/// contract §5a: in shadow, a member naming another member's account is
/// forwarded with the credential named and a token narrowed to it; the
/// record says `shadow_refused` with the reason and code it would have
/// had, and `requests_total` counts it under that decision.
#[tokio::test]
async fn a_shadowed_refusal_reaches_paragon_with_the_named_credential() {
    let (env, _acl) = env_with("enforce = \"shadow\"").await;
    let alice = env.member("alice");
    let got = env.send_as("GET", &sf(), &alice, SF_BOB, "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1, "{fwd:#?}");
    assert_eq!(credential_headers(&fwd[0]), vec![SF_BOB.to_string()]);
    assert_eq!(fwd[0].credential.as_deref(), Some(SF_BOB));
    let claims = env.upstream_claims(&fwd[0]);
    assert_eq!(
        claims[PERMS],
        credgate::paragon::permissions::claim_for([("salesforce", SF_BOB)]),
        "narrowed to the credential named"
    );
    let r = record_of(&env, &got).await;
    assert_eq!(r["decision"], "shadow_refused", "{r}");
    assert_eq!(r["reason"], "no_grant", "{r}");
    assert_eq!(r["code"], "credential_forbidden", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["requested"], SF_BOB, "{r}");

    // Allowed requests stay allowed, with their own reason.
    let own = env.send_as("GET", &sf(), &alice, SF_ALICE, "").await;
    env.assert_routed(&own, SF_ALICE, Place::Header);
    let r = record_of(&env, &own).await;
    assert_eq!(
        (r["decision"].clone(), r["reason"].clone()),
        (json!("allowed"), json!("owner_label"))
    );

    // Named none of several: forwarded with none, Paragon picks.
    let slack = p("/sdk/proxy/slack/chat.postMessage");
    let got = env
        .send("POST", &slack, &alice, &[], r#"{"text":"hi"}"#)
        .await;
    assert!(got.status.is_success(), "{:?}", got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    assert!(credential_headers(&fwd[0]).is_empty());
    let r = record_of(&env, &got).await;
    assert_eq!(
        (
            r["decision"].clone(),
            r["reason"].clone(),
            r["code"].clone()
        ),
        (
            json!("shadow_refused"),
            json!("ambiguous"),
            json!("credential_required")
        )
    );

    // An unknown credential goes as named; Paragon refuses it itself.
    let got = env.send_as("GET", &sf(), &alice, UNKNOWN, "").await;
    assert_eq!(got.status, 404, "Paragon's own answer: {:?}", got.body);
    let fwd = env.forwarded(&got);
    assert_eq!(credential_headers(&fwd[0]), vec![UNKNOWN.to_string()]);
    let r = record_of(&env, &got).await;
    assert_eq!(
        (
            r["decision"].clone(),
            r["reason"].clone(),
            r["status"].clone()
        ),
        (json!("shadow_refused"), json!("not_in_list"), json!(404))
    );

    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(
        metric(
            &metrics,
            "credgate_requests_total{product=\"proxy\",decision=\"shadow_refused\",status=\"200\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "credgate_policy_shadow{product=\"proxy\"}"),
        1.0
    );
    let ready = get(
        &env.cl,
        &format!("http://{}/readyz", env.gw.admin_addr),
        None,
    )
    .await;
    assert_eq!(ready.status, 200);
    assert!(ready.json()["shadow"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("proxy"))));
    env.gw.shutdown().await;
}

/// Authentication, path and framing errors are never shadowed: they are
/// answered by credgate and reach nothing.
#[tokio::test]
async fn authentication_and_path_errors_are_never_shadowed() {
    let (env, _acl) = env_with("enforce = \"shadow\"").await;
    let alice = env.member("alice");
    let anonymous = send(
        &env.cl,
        req(
            "GET",
            &env.gw,
            &sf(),
            None,
            &[("x-paragon-credential", SF_BOB)],
            "",
        ),
    )
    .await;
    env.assert_refused(&anonymous, 401, "unauthenticated");
    let expired = token(&env, "acme", "alice", json!({"exp": 1_000_000}));
    let got = env.send_as("GET", &sf(), &expired, SF_BOB, "").await;
    env.assert_refused(&got, 401, "unauthenticated");
    for path in [
        p("/sdk/proxy/salesforce/a/../b"),
        p("/sdk/proxy/salesforce/%2e%2e/x"),
    ] {
        let got = env.send_as("GET", &path, &alice, SF_BOB, "").await;
        env.assert_refused(&got, 400, "bad_request");
        assert_eq!(record_of(&env, &got).await["decision"], "refused");
    }
    let got = env
        .send_as("GET", &sf(), &alice, "not-a-credential", "")
        .await;
    env.assert_refused(&got, 400, "bad_request");
    env.gw.shutdown().await;
}

/// `shadow_products` shadows what it names; every other product enforces.
#[tokio::test]
async fn shadow_products_shadow_only_what_they_name() {
    let (env, _acl) = env_with("shadow_products = [\"proxy\"]").await;
    let alice = env.member("alice");
    let got = env.send_as("GET", &sf(), &alice, SF_BOB, "").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(record_of(&env, &got).await["decision"], "shadow_refused");

    let action = p("/actions");
    let got = env
        .send(
            "POST",
            &action,
            &alice,
            &[
                ("x-paragon-credential", SF_BOB),
                ("content-type", "application/json"),
            ],
            r#"{"action":"SALESFORCE_CREATE_RECORD","parameters":{}}"#,
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["decision"].clone(), r["reason"].clone()),
        (json!("refused"), json!("no_grant"))
    );
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(
        metric(&metrics, "credgate_policy_shadow{product=\"proxy\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "credgate_policy_shadow{product=\"actionkit\"}"),
        0.0
    );
    env.gw.shutdown().await;
}

/// A refusal before the credential decision (a product members may not
/// use) is shadowed too: the request goes on, to the credential decision
/// and to Paragon. (A host outside `proxy_url_hosts` never is: §5a.)
#[tokio::test]
async fn early_refusals_by_policy_are_shadowed_too() {
    let (env, _acl) = env_with("enforce = \"shadow\"").await;
    let alice = env.member("alice");
    let got = env
        .send(
            "POST",
            &format!("/api/tools/projects/{PROJECT}/search"),
            &alice,
            &[],
            r#"{"query":""}"#,
        )
        .await;
    assert!(got.status.is_success(), "{:?}", got.body);
    let r = record_of(&env, &got).await;
    assert_eq!(
        (
            r["decision"].clone(),
            r["reason"].clone(),
            r["code"].clone()
        ),
        (
            json!("shadow_refused"),
            json!("product_not_allowed"),
            json!("operation_forbidden")
        )
    );
    assert_eq!(env.forwarded(&got).len(), 1);
    env.gw.shutdown().await;
}

// --------------------------------------------------------- /admin/decide

/// The decide question for a case of the table.
fn question(case: &Case) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &case.headers {
        headers.insert(k.to_string(), json!(v));
    }
    let mut q = json!({
        "token": case.token,
        "method": case.method,
        "path": case.path,
        "headers": headers,
    });
    if !case.body.is_empty() {
        q["body"] = json!(case.body);
    }
    q
}

/// contract §9: for every case of the reason table `/admin/decide` answers
/// what the gateway then does (decision, reason, code, grant, routed
/// credential; for allowed ones the credential header and the narrowed
/// token Paragon gets; for refused ones credgate's own answer), and while
/// answering reaches nothing of the emulator but `/sdk/me`.
#[tokio::test]
async fn decide_agrees_with_the_gateway_and_forwards_nothing() {
    let (env, _acl) = env_with("").await;
    let table = reason_table(&env).await;
    env.state().clear_requests();
    let mut answers = Vec::new();
    for case in &table {
        answers.push(env.admin_post("/admin/decide", question(case)).await);
    }
    let reached: Vec<_> = env
        .state()
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/sdk/me"))
        .collect();
    assert!(reached.is_empty(), "decide reached Paragon: {reached:#?}");

    for (case, (status, a)) in table.iter().zip(answers) {
        let what = format!("{} {}: {a:#}", case.reason, case.path);
        assert_eq!(status, 200, "{what}");
        let got = case.send(&env).await;
        let r = record_of(&env, &got).await;
        for field in [
            "decision",
            "reason",
            "code",
            "grant",
            "grant_principal",
            "product",
        ] {
            assert_eq!(a[field], r[field], "{field} of {what}\nrecord {r}");
        }
        assert_eq!(
            a["credential"]["id"].as_str().unwrap_or(""),
            r["credential"].as_str().unwrap(),
            "{what}"
        );
        assert_eq!(a["caller"]["principal"], r["principal"], "{what}");
        match case.refused {
            Some((status, code)) => {
                assert_eq!(a["response"]["status"], status, "{what}");
                assert_eq!(a["response"]["body"]["code"], code, "{what}");
                assert!(a["upstream"].is_null(), "{what}");
            }
            None => {
                let fwd = &env.forwarded(&got)[0];
                let up = &a["upstream"];
                assert_eq!(up["method"], fwd.method, "{what}");
                assert!(up["url"].as_str().unwrap().ends_with(&fwd.path), "{what}");
                let named = up["headers"]["x-paragon-credential"].clone();
                let sent = credential_headers(fwd);
                assert_eq!(
                    named,
                    if sent.is_empty() {
                        Value::Null
                    } else {
                        json!(sent)
                    },
                    "{what}"
                );
                assert_eq!(
                    up["headers"]["authorization"],
                    json!(["Bearer <redacted>"]),
                    "{what}"
                );
                assert_eq!(
                    up["token_claims"][PERMS],
                    env.upstream_claims(fwd)[PERMS],
                    "the same narrowed token: {what}"
                );
            }
        }
    }
    env.gw.shutdown().await;
}

/// What-if callers (no token), shadow mode, and the questions refused as
/// malformed; tokens never appear in an answer.
#[tokio::test]
async fn decide_answers_what_if_questions_and_redacts_tokens() {
    let (env, _acl) = env_with("shadow_products = [\"proxy\"]").await;
    let ask = |identity: Value, cred: &str| json!({"identity": identity, "path": sf(), "headers": {"X-Paragon-Credential": cred}});
    let (_, a) = env
        .admin_post(
            "/admin/decide",
            ask(json!({"user": "acme", "principal": "bob"}), SF_BOB),
        )
        .await;
    assert_eq!(
        (a["decision"].clone(), a["reason"].clone()),
        (json!("allowed"), json!("owner_label")),
        "{a:#}"
    );
    assert_eq!(a["credential"]["externalId"], "bob");
    assert_eq!(a["credential"]["status"], "VALID");
    let (_, a) = env
        .admin_post(
            "/admin/decide",
            ask(
                json!({"user": "acme", "principal": "carol", "admin": true}),
                SF_BOB,
            ),
        )
        .await;
    assert_eq!(
        (a["decision"].clone(), a["reason"].clone()),
        (json!("allowed"), json!("admin")),
        "{a:#}"
    );
    assert!(
        a["upstream"]["token_claims"].get(PERMS).is_none(),
        "an admin token has no claim"
    );
    // Shadowed: the answer says so, and what would go out.
    let (_, a) = env
        .admin_post(
            "/admin/decide",
            ask(json!({"user": "acme", "principal": "alice"}), SF_BOB),
        )
        .await;
    assert_eq!(
        (
            a["decision"].clone(),
            a["reason"].clone(),
            a["code"].clone()
        ),
        (
            json!("shadow_refused"),
            json!("no_grant"),
            json!("credential_forbidden")
        ),
        "{a:#}"
    );
    assert_eq!(
        a["upstream"]["headers"]["x-paragon-credential"],
        json!([SF_BOB])
    );
    assert!(a["explanation"].as_str().unwrap().contains("no grant"));

    let alice = env.member("alice");
    let (_, a) = env
        .admin_post(
            "/admin/decide",
            json!({"token": alice, "path": sf(), "headers": {"x-paragon-credential": SF_ALICE}}),
        )
        .await;
    let text = a.to_string();
    assert!(!text.contains(&alice), "the caller's token is not echoed");
    assert!(!text.contains("eyJ"), "no token at all: {text}");
    // An expired token: the cause and the claimed principal.
    let expired = token(&env, "acme", "mallory", json!({"exp": 1_000_000}));
    let (_, a) = env
        .admin_post("/admin/decide", json!({"token": expired, "path": sf()}))
        .await;
    assert_eq!(
        (
            a["decision"].clone(),
            a["reason"].clone(),
            a["cause"].clone(),
            a["claimed_principal"].clone()
        ),
        (
            json!("refused"),
            json!("unauthenticated"),
            json!("expired"),
            json!("mallory")
        ),
        "{a:#}"
    );

    for bad in [
        json!({"token": "x", "identity": {"user": "acme", "principal": "a"}, "path": "/"}),
        json!({"path": "no-slash"}),
        json!({"path": "/", "surprise": 1}),
        json!({"identity": {"user": "acme"}, "path": "/"}),
        json!({"path": "/", "method": "GE T"}),
        json!({"path": "/", "headers": {"bad name": "x"}}),
        json!({"token": "t", "path": "/", "headers": {"authorization": "Bearer u"}}),
    ] {
        let (status, a) = env.admin_post("/admin/decide", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {a}");
        assert!(a["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Never on the traffic listener.
    let admin = env.admin();
    for (method, path) in [
        ("POST", "/admin/decide"),
        ("GET", "/admin/access?user=acme"),
    ] {
        let got = env.send(method, path, &admin, &[], "{}").await;
        env.assert_refused(&got, 404, "route_not_found");
    }
    env.gw.shutdown().await;
}

/// `credgate explain` prints the answer for a person (the token read from
/// standard input, never from the command line).
#[tokio::test]
async fn explain_command_prints_the_decision() {
    let (env, _acl) = env_with("").await;
    let alice = env.member("alice");
    let text = env
        .explain(&alice, &sf(), &format!("X-Paragon-Credential: {SF_BOB}"))
        .await;
    assert!(
        text.contains("decision     refused: credgate answers 403 credential_forbidden"),
        "{text}"
    );
    assert!(text.contains("reason       no_grant"), "{text}");
    assert!(text.contains(&format!("requested    {SF_BOB}")), "{text}");
    assert!(
        text.contains("caller       alice of Connected User acme (member)\n"),
        "{text}"
    );
    // An agent acting for alice (the token's `act`) is named.
    let agent = env.keys.caller_token(json!({
        "sub": "acme", "principal": "alice", "act": {"sub": "agent-7"}
    }));
    let text = env
        .explain(&agent, &sf(), &format!("X-Paragon-Credential: {SF_ALICE}"))
        .await;
    assert!(
        text.contains("caller       alice of Connected User acme (member), through agent agent-7"),
        "{text}"
    );
    env.gw.shutdown().await;
}

/// `credgate explain` as a policy assertion (issue 29): exit 0 when the
/// request would be allowed, 3 when the policy refuses it, 64 for a bad
/// `--claim`, 1 when the admin listener cannot be asked; a what-if caller
/// takes token claims with `--claim name=value`.
#[tokio::test]
async fn explain_exits_by_decision_and_takes_claims() {
    let (env, _acl) = env_with("").await;
    let own = format!("X-Paragon-Credential: {SF_ALICE}");
    let bobs = format!("X-Paragon-Credential: {SF_BOB}");
    let what_if = ["--user", "acme", "--principal", "alice"];
    let (code, text) = env.explain_status(&what_if, "", &sf(), &own).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("decision     allowed"), "{text}");
    let (code, text) = env.explain_status(&what_if, "", &sf(), &bobs).await;
    assert_eq!(code, Some(3), "{text}");
    // A claim the policy reads: the token claim that grants bob's account.
    let mut with_claim = what_if.to_vec();
    let claim = format!("creds=[\"{SF_BOB}\"]");
    with_claim.extend(["--claim", &claim]);
    let (code, text) = env.explain_status(&with_claim, "", &sf(), &bobs).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("credentials_claim"), "{text}");
    let mut bad = what_if.to_vec();
    bad.extend(["--claim", "no-equals-sign"]);
    let (code, text) = env.explain_status(&bad, "", &sf(), &own).await;
    assert_eq!(code, Some(64), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["explain", "--admin", "http://127.0.0.1:1", "--path", "/x"])
        .args(what_if)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    env.gw.shutdown().await;
}

// -------------------------------------------------------- /admin/access

/// The row of `id` in an access review.
fn row<'a>(a: &'a Value, id: &str) -> &'a Value {
    a["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {a:#}"))
}

fn grants(row: &Value) -> Vec<(String, Value, Value)> {
    row["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["grant"].as_str().unwrap().to_string(),
                g["index"].clone(),
                g["principals"].clone(),
            )
        })
        .collect()
}

/// contract §9: with an ACL file, an owner label template and a claim
/// policy together, the review names for every account who may use it and
/// by which grant; the token claim is named as not enumerable. Checked
/// against the gateway: each member listed is allowed, every other member
/// refused.
#[tokio::test]
async fn the_access_review_names_who_may_use_each_account() {
    let (env, _acl) = env_with("").await;
    let (status, a) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(status, 200, "{a}");
    let admin = ("admin".to_string(), Value::Null, json!([]));
    let claim = ("credentials_claim".to_string(), Value::Null, Value::Null);
    assert_eq!(
        grants(row(&a, CAROL_DRIVE)),
        vec![
            admin.clone(),
            ("owner_label".into(), Value::Null, json!(["carol"])),
            ("acl".into(), json!(1), json!(["erin"])),
            claim.clone(),
        ]
    );
    assert_eq!(
        grants(row(&a, SF_ALICE)),
        vec![
            admin.clone(),
            ("owner_label".into(), Value::Null, json!(["alice"])),
            claim.clone()
        ]
    );
    let r = row(&a, SLACK_ALICE_1);
    assert_eq!(
        (
            r["integration"].clone(),
            r["externalId"].clone(),
            r["status"].clone()
        ),
        (json!("slack"), json!("alice"), json!("VALID"))
    );
    assert!(r["access"][2]["who"]
        .as_str()
        .unwrap()
        .contains("not enumerable"));
    assert_eq!(a["by_principal"]["erin"], json!([CAROL_DRIVE]));

    // The review agrees with the gateway for every member and account.
    let members = ["alice", "bob", "carol", "dave", "erin"];
    for c in a["credentials"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let path = p(&format!(
            "/sdk/proxy/{}/x",
            c["integration"].as_str().unwrap()
        ));
        for m in members {
            let listed = a["by_principal"][m]
                .as_array()
                .is_some_and(|ids| ids.contains(&json!(id)));
            let got = env.send_as("GET", &path, &env.member(m), id, "").await;
            assert_eq!(
                got.status.is_success(),
                listed,
                "{m} {id}: {} {:?}",
                got.status,
                got.body
            );
        }
    }

    // Another Connected User: the "*" grant that names it.
    let (_, g) = env.admin_get("/admin/access?user=globex").await;
    assert_eq!(
        grants(row(&g, GLOBEX_SF)),
        vec![
            admin,
            ("owner_label".into(), Value::Null, json!(["shared"])),
            ("acl".into(), json!(2), json!(["*"])),
            claim,
        ]
    );
    let (status, _) = env.admin_get("/admin/access").await;
    assert_eq!(status, 400);
    let (status, m) = env.admin_get("/admin/access?user=nobody").await;
    assert_eq!(status, 404, "Paragon does not know the user: {m}");
    assert!(m.to_string().contains("unknown to Paragon"), "{m}");
    env.gw.shutdown().await;
}

/// `credgate access` prints the review as a table, JSON or CSV.
#[tokio::test]
async fn access_command_prints_table_json_and_csv() {
    let (env, _acl) = env_with("").await;
    let admin = format!("http://{}", env.gw.admin_addr);
    let run = |format: &'static str| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
                .args([
                    "access", "--admin", &admin, "--user", "acme", "--format", format,
                ])
                .output()
                .unwrap()
        })
    };
    let csv = run("csv").await.unwrap();
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("credential,integration,external_id,status,grant,grant_index,principals,who")
    );
    assert!(
        lines.any(|l| l.starts_with(&format!(
            "{CAROL_DRIVE},googledrive,carol,VALID,acl,1,erin,ACL grant 1"
        ))),
        "{csv}"
    );
    assert!(
        csv.contains(&format!(
            "{SF_ALICE},salesforce,alice,VALID,credentials_claim,,(not enumerable),"
        )),
        "{csv}"
    );

    let json_out = run("json").await.unwrap();
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(v["by_principal"]["erin"], json!([CAROL_DRIVE]));

    let table = run("table").await.unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.starts_with("Connected User acme\nCREDENTIAL"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(CAROL_DRIVE) && l.contains("acl") && l.contains("erin")),
        "{table}"
    );
    env.gw.shutdown().await;
}

/// Passthrough mode has no whole list to review: 409 with the reason.
#[tokio::test]
async fn the_access_review_needs_mint_mode() {
    let env = Env::with(fixtures(), |b| {
        b.auth("mode = \"passthrough\"")
            .paragon("public_key_file = \"paragon.pub.pem\"")
    })
    .await;
    let (status, a) = env.admin_get("/admin/access?user=acme").await;
    assert_eq!(status, 409, "{a}");
    assert!(a["message"].as_str().unwrap().contains("mint mode"));
    env.gw.shutdown().await;
}
