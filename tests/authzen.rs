//! credgate as an AuthZEN decision point (contract §14), end to end against
//! the Paragon emulator: a plain HTTP client sends AuthZEN 1.0 shapes to
//! the admin listener and the answers are checked against what the
//! gateway does with real requests.
//!
//! The world: Connected User `acme` (alice: Salesforce, two Slack, Google
//! Drive; bob: Salesforce, Slack; carol: Salesforce, Google Drive; dave:
//! Slack), labelled with their owners, and `globex` (one Salesforce
//! account labelled `shared`). The ACL grants erin carol's Drive; a
//! subject's `creds` claim lists more; a deny rule refuses carol her
//! Google Drive.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::collections::HashMap;

use common::*;
use credgate::emulator::fixtures::*;
use credgate::emulator::{self, Behaviour, EmulatorConfig, UserFixture};
use harness::*;
use serde_json::{json, Value};

const TOKEN: &str = "authzen-test-token-0123456789";
const GLOBEX_SF: &str = "610be000-5a1e-4000-8000-000000000001";

const ACL: &str = r#"
[[grant]]
principal = "erin"
credentials = ["CAROL_DRIVE"]
"#;

const RULES: &str = r#"
[[rule]]
name = "no-drive-for-carol"
effect = "deny"
when = "caller.principal == 'carol' && credential.integration == 'googledrive'"
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

/// The gateway with `[authzen] serve = true`, the suite's ACL, rules and
/// claim, and `policy` besides.
async fn start(policy: &str) -> (Env, TempDir) {
    start_with(policy, "").await
}

/// As [`start`], with more `[authzen]` keys.
async fn start_with(policy: &str, authzen: &str) -> (Env, TempDir) {
    let dir = TempDir::new("authzen");
    let acl = dir.write("acl.toml", &ACL.replace("CAROL_DRIVE", CAROL_DRIVE));
    let rules = dir.write("rules.toml", RULES);
    let keys = Keys::new();
    let fixtures = world();
    let known = known_of(&fixtures);
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures,
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .expect("the emulator starts");
    let mut b = ConfigBuilder::new(&keys, Hosts::all(&emu.url())).policy(&format!(
        "credentials_claim = \"creds\"\nacl_file = \"{}\"\nrules_file = \"{}\"\n{policy}",
        acl.display(),
        rules.display()
    ));
    b.extra_top = format!("[authzen]\nserve = true\n{authzen}");
    let env_vars: HashMap<String, String> =
        HashMap::from([("CREDGATE_AUTHZEN_TOKEN".to_string(), TOKEN.to_string())]);
    let cfg = credgate::config::Config::from_toml(&b.toml(), keys.path(), &env_vars)
        .expect("config valid");
    let gw = credgate::app::start(cfg).await.expect("gateway starts");
    (
        Env {
            keys,
            emu,
            gw,
            cl: client(),
            known,
        },
        dir,
    )
}

/// `POST path` on the admin listener with `token` and `extra` headers.
async fn post_with(
    env: &Env,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", env.gw.admin_addr))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    send(
        &env.cl,
        b.body(credgate::net::body::full(body.to_string())).unwrap(),
    )
    .await
}

async fn post(env: &Env, path: &str, body: Value) -> Got {
    post_with(env, path, Some(TOKEN), &[], &body.to_string()).await
}

fn member(principal: &str) -> Value {
    json!({"type": "member", "id": principal, "properties": {"user": "acme"}})
}

fn cred(id: &str) -> Value {
    json!({"type": "credential", "id": id})
}

/// One evaluation: (decision, context).
async fn eval(env: &Env, subject: Value, action: &str, resource: Value) -> (bool, Value) {
    let got = post(
        env,
        "/access/v1/evaluation",
        json!({"subject": subject, "action": {"name": action}, "resource": resource}),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let v = got.json();
    (
        v["decision"].as_bool().expect("a boolean decision"),
        v["context"].clone(),
    )
}

#[tokio::test]
async fn evaluation_answers_as_the_gateway_decides() {
    let (env, _dir) = start("").await;
    // Owner label.
    let (d, c) = eval(&env, member("alice"), "use", cred(DEMO_SALESFORCE_ALICE)).await;
    assert!(d, "{c}");
    assert_eq!(c["reason"], "owner_label");
    assert_eq!(c["credential"], DEMO_SALESFORCE_ALICE);
    assert!(c["decision_id"].as_str().is_some_and(|s| !s.is_empty()));
    // One audit record, product authzen.
    let id = c["decision_id"].as_str().unwrap().to_string();
    let r = wait_for_audit(&env.keys, |r| r["decision_id"] == id.as_str()).await;
    assert_eq!(r["product"], "authzen");
    assert_eq!(r["decision"], "allowed");
    assert_eq!(r["reason"], "owner_label");
    assert_eq!(r["principal"], "alice");
    assert_eq!(r["credential"], DEMO_SALESFORCE_ALICE);
    // Another member's.
    let (d, c) = eval(&env, member("alice"), "use", cred(DEMO_SALESFORCE_BOB)).await;
    assert!(!d);
    assert_eq!(c["reason"], "no_grant");
    assert!(c.get("credential").is_none());
    // ACL.
    let (d, c) = eval(&env, member("erin"), "use", cred(CAROL_DRIVE)).await;
    assert!(d, "{c}");
    assert_eq!(c["reason"], "acl");
    // Claim.
    let with_claim = json!({"type": "member", "id": "zed", "properties": {"user": "acme", "claims": {"creds": [DAVE_SLACK]}}});
    let (d, c) = eval(&env, with_claim, "use", cred(DAVE_SLACK)).await;
    assert!(d, "{c}");
    assert_eq!(c["reason"], "credentials_claim");
    let (d, _) = eval(&env, member("zed"), "use", cred(DAVE_SLACK)).await;
    assert!(!d);
    // An admin.
    let admin =
        json!({"type": "member", "id": "root", "properties": {"user": "acme", "admin": true}});
    let (d, c) = eval(&env, admin, "use", cred(DEMO_SALESFORCE_BOB)).await;
    assert!(d, "{c}");
    assert_eq!(c["reason"], "admin");
    // A deny rule wins over the owner label.
    let (d, c) = eval(&env, member("carol"), "use", cred(CAROL_DRIVE)).await;
    assert!(!d);
    assert_eq!(c["reason"], "rule");
    let (d, _) = eval(&env, member("carol"), "use", cred(CAROL_SF)).await;
    assert!(d);
    // Another Connected User's account (globex's list cached first).
    let globex = json!({"type": "member", "id": "shared", "properties": {"user": "globex"}});
    let (d, _) = eval(&env, globex, "use", cred(GLOBEX_SF)).await;
    assert!(d);
    let (d, c) = eval(&env, member("alice"), "use", cred(GLOBEX_SF)).await;
    assert!(!d);
    assert_eq!(c["reason"], "other_user");
    // An id nobody has.
    let (d, c) = eval(&env, member("alice"), "use", cred(UNKNOWN)).await;
    assert!(!d);
    assert_eq!(c["reason"], "not_in_list");
    // Nothing but /sdk/me loads reached Paragon.
    assert!(env.traffic().is_empty(), "{:?}", env.traffic());
}

#[tokio::test]
async fn ext_labels_and_integration_resources() {
    let (env, _dir) = start("").await;
    // bob's label names one account per integration: name the integration.
    let res =
        json!({"type": "credential", "id": "ext:bob", "properties": {"integration": "salesforce"}});
    let (d, c) = eval(&env, member("bob"), "use", res).await;
    assert!(d, "{c}");
    assert_eq!(c["credential"], DEMO_SALESFORCE_BOB);
    // dave's label is on one account only.
    let (d, c) = eval(&env, member("dave"), "use", cred("ext:dave")).await;
    assert!(d, "{c}");
    assert_eq!(c["credential"], DAVE_SLACK);
    // Another member's label.
    let (d, _) = eval(&env, member("alice"), "use", cred("ext:dave")).await;
    assert!(!d);
    // A label over several integrations without one named: malformed.
    let got = post(
        &env,
        "/access/v1/evaluation",
        json!({"subject": member("bob"), "action": {"name": "use"}, "resource": cred("ext:bob")}),
    )
    .await;
    assert_eq!(got.status, 400);
    // Integration: exactly one permitted credential of it.
    let integ = |t: &str| json!({"type": "integration", "id": t});
    let (d, c) = eval(&env, member("bob"), "use", integ("salesforce")).await;
    assert!(d, "{c}");
    assert_eq!(c["credential"], DEMO_SALESFORCE_BOB);
    // alice has two Slack accounts: no default.
    let (d, c) = eval(&env, member("alice"), "use", integ("slack")).await;
    assert!(!d, "{c}");
    // carol has no Slack account.
    let (d, _) = eval(&env, member("carol"), "use", integ("slack")).await;
    assert!(!d);
}

#[tokio::test]
async fn product_actions_check_member_products() {
    let (env, _dir) = start("member_products = [\"proxy\", \"credentials\"]").await;
    let (d, c) = eval(&env, member("alice"), "proxy", cred(DEMO_SALESFORCE_ALICE)).await;
    assert!(d, "{c}");
    let (d, c) = eval(
        &env,
        member("alice"),
        "actionkit",
        cred(DEMO_SALESFORCE_ALICE),
    )
    .await;
    assert!(!d);
    assert_eq!(c["reason"], "product_not_allowed");
    let (d, c) = eval(
        &env,
        member("alice"),
        "credentials",
        cred(DEMO_SALESFORCE_ALICE),
    )
    .await;
    assert!(d, "{c}");
}

#[tokio::test]
async fn malformed_questions_are_400() {
    let (env, _dir) = start("").await;
    let ok = json!({"subject": member("alice"), "action": {"name": "use"}, "resource": cred(DEMO_SALESFORCE_ALICE)});
    let mut cases = vec![];
    for (path, value) in [
        ("/subject/type", json!("user")),
        ("/subject/properties", json!({})),
        ("/subject/properties", json!({"user": "acme", "role": "x"})),
        ("/action/name", json!("read")),
        ("/action/name", json!("catalog")),
        ("/resource/id", json!("not-a-uuid")),
        ("/resource/type", json!("document")),
        ("/context", json!("text")),
    ] {
        let mut q = ok.clone();
        q["context"] = json!({});
        *q.pointer_mut(path).unwrap() = value;
        cases.push(q.to_string());
    }
    cases.push("{not json".into());
    cases.push("[]".into());
    for body in cases {
        let got = post_with(&env, "/access/v1/evaluation", Some(TOKEN), &[], &body).await;
        assert_eq!(got.status, 400, "{body}");
        assert!(got.json()["error"].is_string());
    }
}

#[tokio::test]
async fn bearer_token_and_request_id() {
    let (env, _dir) = start("").await;
    let q = json!({"subject": member("alice"), "action": {"name": "use"}, "resource": cred(DEMO_SALESFORCE_ALICE)}).to_string();
    for token in [None, Some("wrong-token-wrong-token-wrong"), Some("")] {
        let got = post_with(&env, "/access/v1/evaluation", token, &[], &q).await;
        assert_eq!(got.status, 401, "{token:?}");
        let meta = get(
            &env.cl,
            &format!(
                "http://{}/.well-known/authzen-configuration",
                env.gw.admin_addr
            ),
            token,
        )
        .await;
        assert_eq!(meta.status, 401);
    }
    let got = post_with(
        &env,
        "/access/v1/evaluation",
        Some(TOKEN),
        &[("x-request-id", "pep-42")],
        &q,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["x-request-id"], "pep-42");
    let meta = get(
        &env.cl,
        &format!(
            "http://{}/.well-known/authzen-configuration",
            env.gw.admin_addr
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(meta.status, 200);
    let m = meta.json();
    let base = format!("http://{}", env.gw.admin_addr);
    assert_eq!(m["policy_decision_point"], base.as_str());
    assert_eq!(
        m["access_evaluation_endpoint"],
        format!("{base}/access/v1/evaluation")
    );
    assert_eq!(
        m["access_evaluations_endpoint"],
        format!("{base}/access/v1/evaluations")
    );
    assert_eq!(
        m["search_resource_endpoint"],
        format!("{base}/access/v1/search/resource")
    );
    assert_eq!(
        m["search_subject_endpoint"],
        format!("{base}/access/v1/search/subject")
    );
}

#[tokio::test]
async fn a_list_that_cannot_be_loaded_is_never_a_permit() {
    let (env, _dir) = start("").await;
    env.state().set_behaviour(Behaviour {
        me_status: Some(500),
        ..Behaviour::default()
    });
    let got = post(
        &env,
        "/access/v1/evaluation",
        json!({"subject": member("alice"), "action": {"name": "use"}, "resource": cred(DEMO_SALESFORCE_ALICE)}),
    )
    .await;
    assert_eq!(got.status, 503);
    let got = post(
        &env,
        "/access/v1/evaluations",
        json!({"subject": member("alice"), "action": {"name": "use"},
               "evaluations": [{"resource": cred(DEMO_SALESFORCE_ALICE)}, {"resource": cred(DEMO_SLACK_ALICE_1)}]}),
    )
    .await;
    assert_eq!(got.status, 200);
    let items = got.json()["evaluations"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    for i in items {
        assert_eq!(i["decision"], false);
        assert_eq!(i["context"]["error"]["status"], 503);
    }
    let got = post(
        &env,
        "/access/v1/search/resource",
        json!({"subject": member("alice"), "action": {"name": "use"}, "resource": {"type": "credential"}}),
    )
    .await;
    assert_eq!(got.status, 503);
}

#[tokio::test]
async fn evaluations_merge_defaults_and_follow_the_semantic() {
    let (env, _dir) = start("").await;
    let items = json!([
        {"resource": cred(DEMO_SALESFORCE_ALICE)},
        {"resource": cred(DEMO_SALESFORCE_BOB)},
        {"resource": cred(DEMO_SLACK_BOB), "subject": member("bob")},
        {"resource": cred(DEMO_SLACK_ALICE_1)},
    ]);
    let run = |semantic: Option<&str>| {
        let mut q =
            json!({"subject": member("alice"), "action": {"name": "use"}, "evaluations": items});
        if let Some(s) = semantic {
            q["options"] = json!({"evaluations_semantic": s});
        }
        q
    };
    let decisions = |got: Got| -> Vec<bool> {
        assert_eq!(got.status, 200);
        got.json()["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["decision"].as_bool().unwrap())
            .collect()
    };
    let all = decisions(post(&env, "/access/v1/evaluations", run(None)).await);
    assert_eq!(all, [true, false, true, true]);
    let all = decisions(post(&env, "/access/v1/evaluations", run(Some("execute_all"))).await);
    assert_eq!(all, [true, false, true, true]);
    let deny = decisions(
        post(
            &env,
            "/access/v1/evaluations",
            run(Some("deny_on_first_deny")),
        )
        .await,
    );
    assert_eq!(deny, [true, false]);
    let permit = decisions(
        post(
            &env,
            "/access/v1/evaluations",
            run(Some("permit_on_first_permit")),
        )
        .await,
    );
    assert_eq!(permit, [true]);
    // No items: one evaluation of the top level.
    let got = post(
        &env,
        "/access/v1/evaluations",
        json!({"subject": member("alice"), "action": {"name": "use"}, "resource": cred(DEMO_SALESFORCE_ALICE)}),
    )
    .await;
    assert_eq!(got.json()["decision"], true);
    // An unknown semantic, an item missing its resource: 400.
    let got = post(&env, "/access/v1/evaluations", run(Some("first"))).await;
    assert_eq!(got.status, 400);
    let got = post(
        &env,
        "/access/v1/evaluations",
        json!({"subject": member("alice"), "action": {"name": "use"}, "evaluations": [{}]}),
    )
    .await;
    assert_eq!(got.status, 400);
}

#[tokio::test]
async fn searches_list_exactly_what_the_gateway_allows_page_by_page() {
    let (env, _dir) = start("").await;
    // alice's four accounts, two per page.
    let q = |token: Option<&str>| {
        let mut page = json!({"limit": 2});
        if let Some(t) = token {
            page["token"] = json!(t);
        }
        json!({"subject": member("alice"), "action": {"name": "use"}, "resource": {"type": "credential"}, "page": page})
    };
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for round in 0.. {
        assert!(round < 5);
        let got = post(&env, "/access/v1/search/resource", q(token.as_deref())).await;
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        let v = got.json();
        assert_eq!(v["page"]["total"], 4);
        for r in v["results"].as_array().unwrap() {
            assert_eq!(r["type"], "credential");
            ids.push(r["id"].as_str().unwrap().to_string());
        }
        let next = v["page"]["next_token"].as_str().unwrap().to_string();
        if next.is_empty() {
            break;
        }
        token = Some(next);
    }
    ids.sort();
    let mut want = vec![
        DEMO_SALESFORCE_ALICE,
        DEMO_SLACK_ALICE_1,
        DEMO_SLACK_ALICE_2,
        DEMO_GOOGLEDRIVE_ALICE,
    ]
    .into_iter()
    .map(str::to_ascii_lowercase)
    .collect::<Vec<_>>();
    want.sort();
    assert_eq!(ids, want);
    // A token with a changed question is refused.
    let first = post(&env, "/access/v1/search/resource", q(None))
        .await
        .json();
    let t = first["page"]["next_token"].as_str().unwrap();
    let mut changed = q(Some(t));
    changed["subject"] = member("bob");
    assert_eq!(
        post(&env, "/access/v1/search/resource", changed)
            .await
            .status,
        400
    );
    // carol: the deny rule takes her Drive away.
    let got = post(
        &env,
        "/access/v1/search/resource",
        json!({"subject": member("carol"), "action": {"name": "use"}, "resource": {"type": "credential"}}),
    )
    .await
    .json();
    let ids: Vec<&str> = got["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [CAROL_SF]);
    // Who may use carol's Drive: erin (ACL); carol's label is denied by the rule.
    let sq = |page: Value| {
        json!({"subject": {"type": "member"}, "action": {"name": "use"},
               "resource": {"type": "credential", "id": CAROL_DRIVE, "properties": {"user": "acme"}}, "page": page})
    };
    let got = post(&env, "/access/v1/search/subject", sq(json!({}))).await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let v = got.json();
    let who: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["erin"]);
    assert_eq!(v["results"][0]["type"], "member");
    assert!(v["context"]["not_enumerable"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    // bob's Salesforce: bob only; one per page.
    let sq = |page: Value| {
        json!({"subject": {"type": "member"}, "action": {"name": "use"},
               "resource": {"type": "credential", "id": DEMO_SALESFORCE_BOB, "properties": {"user": "acme"}}, "page": page})
    };
    let v = post(&env, "/access/v1/search/subject", sq(json!({"limit": 1})))
        .await
        .json();
    assert_eq!(v["results"][0]["id"], "bob");
    assert_eq!(v["page"]["next_token"], "");
    assert_eq!(v["page"]["total"], 1);
}

/// For every credential of acme and every member, the evaluation's
/// decision equals what the gateway does with a real Proxy API request
/// naming it.
#[tokio::test]
async fn evaluations_agree_with_real_requests() {
    let (env, _dir) = start("").await;
    let acme: Vec<Known> = env
        .known
        .iter()
        .filter(|k| k.id != GLOBEX_SF)
        .cloned()
        .collect();
    for principal in ["alice", "bob", "carol", "dave", "erin", "zed"] {
        for k in &acme {
            let (decision, ctx) = eval(&env, member(principal), "use", cred(&k.id)).await;
            let path = format!("/projects/{PROJECT}/sdk/proxy/{}/", k.integration);
            let got = env
                .send_as("GET", &path, &env.member(principal), &k.id, "")
                .await;
            let allowed = got.status.is_success();
            assert_eq!(
                decision,
                allowed,
                "{principal} on {} ({}): evaluation {ctx}, gateway {} {:?}",
                k.id,
                k.integration,
                got.status,
                String::from_utf8_lossy(&got.body)
            );
        }
    }
}

/// `authzen.listen`: the decision point answers there, and only there; the
/// listener serves nothing else (no metrics, no dashboard, no decide), and
/// the admin listener no longer serves the AuthZEN routes.
#[tokio::test]
async fn the_decision_point_on_a_listener_of_its_own_serves_only_authzen() {
    let (env, _dir) = start_with("", "listen = \"127.0.0.1:0\"\n").await;
    let own = env.gw.authzen_addr.expect("authzen.listen is bound");
    assert_ne!(own, env.gw.admin_addr);
    let question = json!({"subject": {"type": "member", "id": "alice", "properties": {"user": "acme"}},
                          "action": {"name": "use"},
                          "resource": {"type": "credential", "id": "ext:alice", "properties": {"integration": "salesforce"}}})
    .to_string();
    let ask = |addr: std::net::SocketAddr, method: &str, path: &str, body: String| {
        http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(credgate::net::body::full(body))
            .unwrap()
    };
    let got = send(
        &env.cl,
        ask(own, "POST", "/access/v1/evaluation", question.clone()),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.json()["decision"], true, "{:?}", got.body);
    // Without the token: 401 there too.
    let bare = http::Request::builder()
        .method("POST")
        .uri(format!("http://{own}/access/v1/evaluation"))
        .header("content-type", "application/json")
        .body(credgate::net::body::full(question.clone()))
        .unwrap();
    assert_eq!(send(&env.cl, bare).await.status, 401);
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/healthz"),
        ("POST", "/admin/decide"),
    ] {
        let got = send(&env.cl, ask(own, method, path, "{}".into())).await;
        assert_eq!(got.status, 404, "{method} {path} on authzen.listen");
    }
    // The admin listener keeps its own routes and drops the AuthZEN ones.
    let got = send(
        &env.cl,
        ask(env.gw.admin_addr, "POST", "/access/v1/evaluation", question),
    )
    .await;
    assert_eq!(got.status, 404, "{:?}", got.body);
    let got = send(
        &env.cl,
        ask(env.gw.admin_addr, "GET", "/healthz", String::new()),
    )
    .await;
    assert_eq!(got.status, 200);
}
