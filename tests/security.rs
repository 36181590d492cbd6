//! Security review, round 3 (contract §1 step 9, §5a, §5b, §9, §12): every
//! request audited whatever its client does; rules judging the operation
//! Paragon performs, not the request line; shadow mode never letting a
//! token or a secret leave; `/admin/decide` on `/mcp` running nothing; and
//! the audit gaps the review found. Each test shows what reached the
//! emulator and which records were written.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::time::Duration;

use common::*;
use credgate::emulator::{Behaviour, CredentialFixture, UserFixture};
use harness::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// globex's one account: another Connected User's.
const GLOBEX_SF: &str = "610be000-5a1e-4000-8000-000000000001";

fn world() -> credgate::emulator::Fixtures {
    let mut f = fixtures();
    f.users.push(UserFixture {
        id: "globex".into(),
        meta: json!({}),
        credentials: vec![owned(GLOBEX_SF, "salesforce", "gina")],
    });
    f
}

/// The gateway in front of [`world`], with `/mcp` on and `policy` lines.
async fn env_with(policy: &str, top: &str) -> Env {
    let (policy, top) = (policy.to_string(), top.to_string());
    Env::with(world(), move |mut b| {
        b.extra_top = format!("[mcp]\nenabled = true\nproxy_tool = true\n{top}");
        b.policy(&policy)
    })
    .await
}

/// [`env_with`] and a rules file holding `rules`.
async fn env_with_rules(rules: &str, policy: &str) -> (Env, TempDir) {
    let dir = TempDir::new("security-rules");
    let file = dir.write("rules.toml", rules);
    let policy = format!("rules_file = \"{}\"\n{policy}", file.display());
    (env_with(&policy, "").await, dir)
}

/// The records with this client-sent `X-Request-Id`.
fn records_of_client_id(env: &Env, id: &str) -> Vec<Value> {
    audit_records(&env.keys)
        .into_iter()
        .filter(|r| r["client_request_id"] == id)
        .collect()
}

/// Waits for exactly one record of client id `id`, and checks that it
/// stays the only one once the delayed answer would have come.
async fn the_one_record(env: &Env, id: &str) -> Value {
    wait_for_audit(&env.keys, |r| r["client_request_id"] == id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = records_of_client_id(env, id);
    assert_eq!(records.len(), 1, "exactly one record: {records:#?}");
    records.into_iter().next().unwrap()
}

fn slow(ms: u64) -> Behaviour {
    Behaviour {
        delay_ms: ms,
        ..Behaviour::default()
    }
}

fn sf_path(rest: &str) -> String {
    p(&format!("/sdk/proxy/salesforce/{rest}"))
}

// ---- 1. the audit trail does not depend on the client -------------------

/// An HTTP/1.1 client that closes its connection after credgate forwarded
/// its request: one record, 499, `client_closed`, forwarded, with the
/// credential it used.
#[tokio::test]
async fn an_http1_client_that_hangs_up_after_the_forward_is_audited_once() {
    let env = env_with("", "").await;
    // Warm the list so the forward happens at once.
    let got = env.salesforce_get("alice", "x", SF_ALICE, &[]).await;
    assert_eq!(got.status, 200);
    env.state().set_behaviour(slow(1000));
    let mut s = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let head = format!(
        "DELETE {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nx-paragon-credential: {SF_ALICE}\r\nx-request-id: hangup-h1\r\n\r\n",
        sf_path("sobjects/Account/1"),
        env.member("alice")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The request reaches the emulator, which holds its answer back.
    let reached = tokio::time::timeout(Duration::from_secs(5), async {
        while env.state().in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "the request reached Paragon");
    drop(s);
    let r = the_one_record(&env, "hangup-h1").await;
    assert_eq!(r["status"], 499, "{r}");
    assert_eq!(r["outcome"], "client_closed");
    assert_eq!(r["forwarded"], true);
    assert_eq!(r["decision"], "allowed");
    assert_eq!(r["reason"], "owner_label");
    assert_eq!(r["credential"], SF_ALICE);
    assert_eq!(r["principal"], "alice");
    let metrics = env.metrics_text().await;
    assert!(
        metrics.contains("status=\"499\""),
        "counted as 499: {metrics}"
    );
}

/// A client that hangs up before anything reached Paragon (its list is
/// still loading) leaves a record too: not forwarded, `failed`.
#[tokio::test]
async fn a_client_that_hangs_up_before_the_forward_is_audited_as_not_forwarded() {
    let env = env_with("", "").await;
    env.state().set_behaviour(Behaviour {
        me_delay_ms: 1000,
        ..Behaviour::default()
    });
    let mut s = tokio::net::TcpStream::connect(env.gw.addr).await.unwrap();
    let head = format!(
        "GET {} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nx-paragon-credential: {SF_ALICE}\r\nx-request-id: hangup-early\r\n\r\n",
        sf_path("x"),
        env.member("alice")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    let r = the_one_record(&env, "hangup-early").await;
    assert_eq!(
        (
            r["status"].as_u64(),
            r["outcome"].as_str(),
            r["forwarded"].as_bool(),
            r["decision"].as_str(),
            r["reason"].as_str()
        ),
        (
            Some(499),
            Some("client_closed"),
            Some(false),
            Some("failed"),
            Some("client_closed")
        ),
        "{r}"
    );
    assert!(env.traffic().is_empty(), "nothing reached Paragon");
}

/// An HTTP/2 client that resets its stream after the forward: one record.
#[tokio::test]
async fn an_http2_stream_reset_after_the_forward_is_audited_once() {
    let env = env_with("", "").await;
    let h2 = h2_client();
    let warm = send(
        &h2,
        req(
            "GET",
            &env.gw,
            &sf_path("x"),
            Some(&env.member("alice")),
            &[("x-paragon-credential", SF_ALICE)],
            "",
        ),
    )
    .await;
    assert_eq!(warm.status, 200);
    env.state().set_behaviour(slow(1000));
    let request = req(
        "GET",
        &env.gw,
        &sf_path("sobjects/User"),
        Some(&env.member("alice")),
        &[
            ("x-paragon-credential", SF_ALICE),
            ("x-request-id", "reset-h2"),
        ],
        "",
    );
    // Dropping the response future resets the stream.
    let cut = tokio::time::timeout(Duration::from_millis(400), h2.request(request)).await;
    assert!(cut.is_err(), "the answer was held back");
    let r = the_one_record(&env, "reset-h2").await;
    assert_eq!(r["status"], 499, "{r}");
    assert_eq!(r["outcome"], "client_closed");
    assert_eq!(r["forwarded"], true);
    assert_eq!(r["credential"], SF_ALICE);
}

/// One raw `/mcp` JSON-RPC request (no timeout of its own).
fn rpc_request(
    env: &Env,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> http::Request<credgate::net::body::Body> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    req(
        "POST",
        &env.gw,
        "/mcp",
        Some(token),
        &headers,
        body.to_string(),
    )
}

async fn rpc(env: &Env, token: &str, session: Option<&str>, body: Value) -> Got {
    send(&env.cl, rpc_request(env, token, session, body)).await
}

async fn mcp_session(env: &Env, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let got = rpc(env, token, None, init).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    got.headers["mcp-session-id"].to_str().unwrap().to_string()
}

fn tool_call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": name, "arguments": arguments}})
}

/// An MCP tool call whose `/mcp` request is dropped mid-call: the call's
/// own record is written (499, forwarded, its credential and tool), and
/// the carrier writes none.
#[tokio::test]
async fn a_tool_call_dropped_with_its_carrier_is_audited_once() {
    let env = env_with("", "").await;
    let bob = env.member("bob");
    let session = mcp_session(&env, &bob).await;
    let list = rpc(
        &env,
        &bob,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(list.status, 200);
    env.state().set_behaviour(slow(1000));
    let call = rpc_request(
        &env,
        &bob,
        Some(&session),
        tool_call("SALESFORCE_SEARCH_RECORDS", json!({"credential": SF_BOB})),
    );
    let cut = tokio::time::timeout(Duration::from_millis(400), env.cl.request(call)).await;
    assert!(cut.is_err(), "the tool's answer was held back");
    let r = wait_for_audit(&env.keys, |r| r["tool"] == "SALESFORCE_SEARCH_RECORDS").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = audit_records(&env.keys);
    // initialize, tools/list, the call: nothing for the carrier.
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(r["status"], 499, "{r}");
    assert_eq!(r["outcome"], "client_closed");
    assert_eq!(r["forwarded"], true);
    assert_eq!(r["credential"], SF_BOB);
    assert_eq!(r["product"], "actionkit");
    assert_eq!(r["via"], "mcp");
}

// ---- 2. /admin/decide on /mcp runs nothing --------------------------------

#[tokio::test]
async fn decide_on_mcp_judges_the_tool_call_without_running_it() {
    let env = env_with("", "").await;
    let bob = env.member("bob");
    let question = |credential: &str| {
        json!({"token": bob, "method": "POST", "path": "/mcp", "body":
            tool_call("SALESFORCE_DELETE_RECORD", json!({"credential": credential, "id": "1"}))})
    };
    let (status, own) = env.admin_post("/admin/decide", question(SF_BOB)).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["decision"], "allowed", "{own}");
    assert_eq!(own["product"], "actionkit");
    assert_eq!(own["tool"], "SALESFORCE_DELETE_RECORD");
    assert_eq!(own["credential"]["id"], SF_BOB);
    assert!(
        own["upstream"]["url"]
            .as_str()
            .is_some_and(|p| p.ends_with("/tools")),
        "{own}"
    );
    let (_, other) = env.admin_post("/admin/decide", question(SF_ALICE)).await;
    assert_eq!(other["decision"], "refused", "{other}");
    assert_eq!(other["reason"], "no_grant");
    // Only `/sdk/me` loads reached Paragon: no tool ran, no tool list was
    // fetched; no session was opened and no record written.
    assert!(env.traffic().is_empty(), "{:#?}", env.traffic());
    assert!(env
        .state()
        .requests()
        .iter()
        .all(|r| r.path.ends_with("/sdk/me")));
    assert!(audit_records(&env.keys).is_empty());
    let metrics = env.metrics_text().await;
    assert!(
        metrics.contains("credgate_mcp_sessions 0"),
        "no session: {metrics}"
    );
    // Anything but a tool call is a malformed question.
    let (status, _) = env
        .admin_post(
            "/admin/decide",
            json!({"token": bob, "method": "POST", "path": "/mcp", "body":
                {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}}),
        )
        .await;
    assert_eq!(status, 400);
}

// ---- 3. the proxy tool is the Proxy API ----------------------------------

#[tokio::test]
async fn the_proxy_tool_is_product_proxy_for_member_products_and_rules() {
    // Members without `proxy`: the proxy tool is refused like the route.
    let env = env_with("member_products = [\"mcp\", \"actionkit\", \"user\"]\n", "").await;
    let alice = env.member("alice");
    let session = mcp_session(&env, &alice).await;
    let call = tool_call(
        "paragon_proxy_request",
        json!({"credential": SF_ALICE, "integration": "salesforce", "method": "GET", "path": "/sobjects/User"}),
    );
    let got = rpc(&env, &alice, Some(&session), call).await;
    assert_eq!(got.json()["result"]["isError"], true, "{:?}", got.json());
    assert!(env.traffic().is_empty(), "{:#?}", env.traffic());
    let r = wait_for_audit(&env.keys, |r| r["tool"] == "paragon_proxy_request").await;
    assert_eq!(
        (
            r["product"].as_str(),
            r["via"].as_str(),
            r["reason"].as_str()
        ),
        (Some("proxy"), Some("mcp"), Some("product_not_allowed")),
        "{r}"
    );

    // The README's rule: nobody deletes on Salesforce through the Proxy
    // API, the proxy tool included.
    let rules = include_str!("../config/rules.example.toml");
    let (env, _dir) = env_with_rules(rules, "").await;
    let alice = env.member("alice");
    let session = mcp_session(&env, &alice).await;
    let call = |method: &str| {
        tool_call(
            "paragon_proxy_request",
            json!({"credential": SF_ALICE, "integration": "salesforce", "method": method, "path": "/sobjects/Account/1"}),
        )
    };
    let got = rpc(&env, &alice, Some(&session), call("DELETE")).await;
    assert_eq!(got.json()["result"]["isError"], true, "{:?}", got.json());
    assert!(env.traffic().is_empty(), "{:#?}", env.traffic());
    let r = wait_for_audit(&env.keys, |r| r["tool"] == "paragon_proxy_request").await;
    assert_eq!(r["rule"], "no-salesforce-proxy-delete", "{r}");
    let got = rpc(&env, &alice, Some(&session), call("GET")).await;
    assert_eq!(got.json()["result"]["isError"], false, "{:?}", got.json());
}

// ---- 4, 5. rules see the integration and the provider path ----------------

const NO_SF: &str = r#"
[[rule]]
name = "no-salesforce"
effect = "deny"
when = "request.integration == 'salesforce'"
"#;

/// ActionKit with a credential named (its body is then not read for the
/// integration): the routed credential's integration is the request's.
#[tokio::test]
async fn naming_a_credential_on_actionkit_gives_rules_its_integration() {
    let (env, _dir) = env_with_rules(NO_SF, "").await;
    let body = r#"{"action":"SALESFORCE_SEARCH_RECORDS","parameters":{}}"#;
    for token in [env.member("alice"), env.admin()] {
        let got = env
            .send_as("POST", &p("/actions"), &token, SF_ALICE, body)
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
        let id = rid(&got);
        let r = wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
        assert_eq!(r["integration"], "salesforce", "{r}");
        assert_eq!(r["rule"], "no-salesforce");
        // The record names the credential whatever refused it (§5a).
        assert_eq!(r["credential"], SF_ALICE, "{r}");
        assert_eq!(r["requested"], SF_ALICE, "{r}");
    }
    let got = env
        .send_as(
            "POST",
            &p("/actions"),
            &env.member("alice"),
            SLACK_ALICE_1,
            r#"{"action":"SLACK_SEND_MESSAGE","parameters":{}}"#,
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
}

const NO_USERS: &str = r#"
[[rule]]
name = "no-salesforce-users"
effect = "deny"
when = "request.product == 'proxy' && request.path.startsWith('/sobjects/User')"
"#;

/// The provider path, however the target is written.
#[tokio::test]
async fn a_path_rule_sees_the_provider_path_in_every_form() {
    let (env, _dir) =
        env_with_rules(NO_USERS, "proxy_url_hosts = [\"x.my.salesforce.com\"]\n").await;
    let alice = env.member("alice");
    let refused: &[(&str, Option<&str>)] = &[
        ("sobjects/User", None),
        ("sobjects/%55ser", None),
        ("sobjects/%55%73%65%72/1", None),
        ("https://x.my.salesforce.com/sobjects/User", None),
        ("", Some("/sobjects/User")),
        ("", Some("sobjects/%55ser")),
        ("", Some("https://x.my.salesforce.com/sobjects/User?x=1")),
    ];
    for (rest, header) in refused {
        let mut headers = vec![("x-paragon-credential", SF_ALICE)];
        if let Some(h) = header {
            headers.push(("x-paragon-proxy-url", h));
        }
        let got = env.send("GET", &sf_path(rest), &alice, &headers, "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    for (rest, header) in [("sobjects/Account", None), ("", Some("/sobjects/Account"))] {
        let mut headers = vec![("x-paragon-credential", SF_ALICE)];
        if let Some(h) = header {
            headers.push(("x-paragon-proxy-url", h));
        }
        let got = env.send("GET", &sf_path(rest), &alice, &headers, "").await;
        env.assert_routed(&got, SF_ALICE, Place::Header);
    }
}

// ---- 8. rule results follow the credential --------------------------------

const NOT_VALID: &str = r#"
[[rule]]
name = "only-valid"
effect = "deny"
when = "credential.status != 'VALID' || credential.externalId == 'frozen'"
"#;

/// A cached rule result is not reused once the credential's status or
/// label changed (the same token: its memo holds the old result).
#[tokio::test]
async fn a_rule_is_judged_again_when_the_credentials_status_changes() {
    let (env, _dir) = env_with_rules(NOT_VALID, "credentials_claim = \"creds\"\n").await;
    let token = env
        .keys
        .caller_token(json!({"sub": "acme", "principal": "frank", "creds": [SF_BOB]}));
    let path = sf_path("x");
    let got = env.send_as("GET", &path, &token, SF_BOB, "").await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    for changed in ["status", "label"] {
        assert!(env.state().remove_credential(SF_BOB));
        let mut c = CredentialFixture::new(SF_BOB, "salesforce");
        c.external_id = Some(if changed == "label" { "frozen" } else { "bob" }.into());
        if changed == "status" {
            c.status = "INVALID".into();
        }
        env.state().add_credential("acme", c).unwrap();
        env.invalidate(json!({"user": "acme"})).await;
        let got = env.send_as("GET", &path, &token, SF_BOB, "").await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
}

const FREEZE_SF_BOB: &str = r#"
[[rule]]
name = "freeze-bob-salesforce"
effect = "deny"
when = "credential.id == 'b0b00000-5a1e-4000-8000-000000000001'"
"#;

/// An admin cannot move a sync off a credential a deny rule freezes: the
/// sync's current credential is judged for admins too.
#[tokio::test]
async fn an_admin_cannot_move_a_sync_off_a_frozen_credential() {
    let dir = TempDir::new("freeze");
    let file = dir.write(
        "rules.toml",
        "[[rule]]\nname = \"nothing\"\neffect = \"deny\"\nwhen = \"false\"\n",
    );
    let policy = format!("rules_file = \"{}\"\n", file.display());
    let env = env_with(&policy, "").await;
    // Bob's sync on his account, made before the freeze.
    let body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_BOB}"}}"#);
    let got = env
        .send("POST", "/api/syncs", &env.member("bob"), &[], body)
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let sync = got.json()["id"].as_str().unwrap().to_string();
    // The freeze comes in by a reload.
    dir.write("rules.toml", FREEZE_SF_BOB);
    let config = ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url()))
        .policy(&policy)
        .build();
    env.gw.reload(config).expect("the reload applies");
    let admin = env.admin();
    let off = format!(r#"{{"credentialId":"{SF_ALICE}"}}"#);
    let got = env
        .send("PATCH", &format!("/api/syncs/{sync}"), &admin, &[], off)
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let id = rid(&got);
    let r = wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
    assert_eq!(r["rule"], "freeze-bob-salesforce", "{r}");
    // Without a move, an admin's other calls on the sync are judged on its
    // credential too.
    let got = env
        .send("GET", &format!("/api/syncs/{sync}"), &admin, &[], "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    // A sync of an account nobody froze is the admin's to move.
    let body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_ALICE}"}}"#);
    let got = env
        .send("POST", "/api/syncs", &env.member("alice"), &[], body)
        .await;
    let other = got.json()["id"].as_str().unwrap().to_string();
    let got = env
        .send(
            "PATCH",
            &format!("/api/syncs/{other}"),
            &admin,
            &[],
            format!(r#"{{"credentialId":"{CAROL_SF}"}}"#),
        )
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
}

// ---- 9. shadow mode never lets a token or a secret leave ------------------

#[tokio::test]
async fn shadow_mode_keeps_the_host_guard_account_auth_and_admin_only_operations() {
    let env = env_with("enforce = \"shadow\"\n", "").await;
    let alice = env.member("alice");
    for token in [alice.clone(), env.admin()] {
        let got = env
            .send_as(
                "GET",
                &sf_path("https://evil.example/steal"),
                &token,
                SF_ALICE,
                "",
            )
            .await;
        env.assert_refused(&got, 403, "upstream_host_forbidden");
        let got = env
            .send(
                "GET",
                &sf_path(""),
                &token,
                &[
                    ("x-paragon-credential", SF_ALICE),
                    ("x-paragon-proxy-url", "https://evil.example/steal"),
                ],
                "",
            )
            .await;
        env.assert_refused(&got, 403, "upstream_host_forbidden");
    }
    let got = env
        .send("PATCH", &p("/sdk/me"), &alice, &[], r#"{"meta":{"x":1}}"#)
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    let got = env
        .send(
            "GET",
            &p("/sdk/credentials?includeAccountAuth=true"),
            &alice,
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
    // What shadow mode is for still goes: bob's account, recorded.
    let got = env.salesforce_get("alice", "x", SF_BOB, &[]).await;
    assert_eq!(got.status, 200);
    let id = rid(&got);
    let r = wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
    assert_eq!(r["decision"], "shadow_refused", "{r}");
}

/// Shadowing members' products does not lift `PATCH /sdk/me` either.
#[tokio::test]
async fn a_shadowed_product_refusal_does_not_hide_the_admin_only_guard() {
    let env = env_with("enforce = \"shadow\"\nmember_products = [\"proxy\"]\n", "").await;
    let got = env
        .send(
            "PATCH",
            &p("/sdk/me"),
            &env.member("alice"),
            &[],
            r#"{"meta":{"x":1}}"#,
        )
        .await;
    env.assert_refused(&got, 403, "operation_forbidden");
}

// ---- 12. audit gaps -------------------------------------------------------

/// A `tools/call` of a tool never offered, or with bad arguments, is
/// recorded as refused (`bad_request`), never as allowed.
#[tokio::test]
async fn an_invalid_tool_call_is_audited_as_refused() {
    let env = env_with("", "").await;
    let bob = env.member("bob");
    let session = mcp_session(&env, &bob).await;
    for call in [
        tool_call("NO_SUCH_TOOL", json!({})),
        tool_call("SALESFORCE_SEARCH_RECORDS", json!({"credential": 7})),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {}}}),
    ] {
        let got = rpc(&env, &bob, Some(&session), call).await;
        assert_eq!(got.json()["error"]["code"], -32602, "{:?}", got.json());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let records = wait_for_records(&env, 4).await;
    let calls: Vec<&Value> = records[1..].iter().collect();
    assert!(
        calls
            .iter()
            .all(|r| r["decision"] == "refused" && r["code"] == "bad_request"),
        "{calls:#?}"
    );
    assert!(env.traffic().iter().all(|r| !r.path.ends_with("/tools")));
}

async fn wait_for_records(env: &Env, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = audit_records(&env.keys);
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} records: {:#?}", audit_records(&env.keys));
}

/// Another Connected User's credential that credgate has cached is a
/// cross-tenant attempt (`other_user`), answered as any refusal.
#[tokio::test]
async fn another_tenants_cached_credential_is_audited_as_other_user() {
    let env = env_with("", "").await;
    let gina = env
        .keys
        .caller_token(json!({"sub": "globex", "principal": "gina"}));
    let got = env
        .send_as("GET", &sf_path("x"), &gina, GLOBEX_SF, "")
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let alice = env.member("alice");
    let cross = env
        .send_as("GET", &sf_path("x"), &alice, GLOBEX_SF, "")
        .await;
    env.assert_refused(&cross, 403, "credential_forbidden");
    let unknown = env.send_as("GET", &sf_path("x"), &alice, UNKNOWN, "").await;
    env.assert_refused(&unknown, 403, "credential_forbidden");
    assert_eq!(
        cross.json()["message"],
        unknown.json()["message"],
        "one message"
    );
    let reason = |got: &Got| {
        let id = rid(got);
        audit_records(&env.keys)
            .into_iter()
            .find(|r| r["request_id"] == id.as_str())
            .map(|r| r["reason"].clone())
    };
    wait_for_audit(&env.keys, |r| r["requested"] == UNKNOWN).await;
    assert_eq!(reason(&cross), Some(json!("other_user")));
    assert_eq!(reason(&unknown), Some(json!("not_in_list")));
}

/// A member reaching another member's sync is `sync_not_owned`.
#[tokio::test]
async fn another_members_sync_is_audited_as_sync_not_owned() {
    let env = env_with("", "").await;
    let bob = env.member("bob");
    let body =
        format!(r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{SF_BOB}"}}"#);
    let got = env.send("POST", "/api/syncs", &bob, &[], body).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let sync = got.json()["id"].as_str().unwrap().to_string();
    let got = env
        .send(
            "GET",
            &format!("/api/syncs/{sync}"),
            &env.member("alice"),
            &[],
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let id = rid(&got);
    let r = wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await;
    assert_eq!(r["reason"], "sync_not_owned", "{r}");
}

/// `/admin/decide` with an identity needs no token claims, also where the
/// config checks the issuer and audience.
#[tokio::test]
async fn decide_with_an_identity_needs_no_token_claims() {
    let env = Env::with(world(), |b| {
        b.auth("issuer = \"https://idp.example\"\naudience = [\"credgate\"]")
    })
    .await;
    let (status, v) = env
        .admin_post(
            "/admin/decide",
            json!({"identity": {"user": "acme", "principal": "alice"},
                   "path": sf_path("x"), "headers": {"x-paragon-credential": SF_ALICE}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decision"], "allowed", "{v}");
    assert_eq!(v["reason"], "owner_label");
}

// ---- rules judge the forwarded target: a property ------------------------

const TARGET_RULES: &str = r#"
[[rule]]
name = "no-secret"
effect = "deny"
when = "request.product == 'proxy' && request.path.startsWith('/secret')"

[[rule]]
name = "no-slack"
effect = "deny"
when = "request.integration == 'slack'"
"#;

/// One generated Proxy API request: a method spelling, an integration
/// (alice's account of it named), the provider path as segments, which of
/// its letters are percent-encoded, and where the target is written.
#[derive(Debug, Clone)]
struct TargetCase {
    method: &'static str,
    slack: bool,
    segments: Vec<&'static str>,
    encode: u64,
    lower_hex: bool,
    form: u8,
}

impl TargetCase {
    /// The provider path Paragon is asked for.
    fn logical(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }

    /// The path with the chosen letters percent-encoded.
    fn encoded(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.logical().chars().enumerate() {
            if c.is_ascii_alphanumeric() && self.encode & (1 << (i % 64)) != 0 {
                if self.lower_hex {
                    out.push_str(&format!("%{:02x}", c as u8));
                } else {
                    out.push_str(&format!("%{:02X}", c as u8));
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The gateway path and the `X-Paragon-Proxy-Url` value, if any.
    fn request(&self) -> (String, Option<String>) {
        let integration = if self.slack { "slack" } else { "salesforce" };
        let base = p(&format!("/sdk/proxy/{integration}/"));
        let encoded = self.encoded();
        let full = format!("https://x.my.salesforce.com{encoded}");
        match self.form {
            0 => (format!("{base}{}", &encoded[1..]), None),
            1 => (base, Some(encoded)),
            2 => (base, Some(full)),
            3 => (format!("{base}{full}"), None),
            _ => (base, Some(encoded[1..].to_string())),
        }
    }

    /// What the rules must do: refuse exactly the targets they name.
    fn refused(&self) -> bool {
        self.slack || self.logical().starts_with("/secret")
    }
}

fn target_case() -> impl proptest::strategy::Strategy<Value = TargetCase> {
    use proptest::prelude::*;
    let method = prop::sample::select(vec![
        "GET", "get", "POST", "post", "DELETE", "delete", "PATCH", "Patch", "PUT",
    ]);
    let segment = prop::sample::select(vec!["secret", "Secret", "secrets", "public", "data", "x1"]);
    (
        method,
        any::<bool>(),
        prop::collection::vec(segment, 1..4),
        any::<u64>(),
        any::<bool>(),
        0u8..5,
    )
        .prop_map(
            |(method, slack, segments, encode, lower_hex, form)| TargetCase {
                method,
                slack,
                segments,
                encode,
                lower_hex,
                form,
            },
        )
}

/// For generated Proxy API requests (methods in every spelling, `{rest}`
/// and `X-Paragon-Proxy-Url`, paths and full URLs, percent-encoded
/// letters), a deny rule on a provider path or an integration refuses
/// exactly the requests whose target it names: a refused one reaches
/// nothing, any other reaches Paragon once, naming the account.
#[test]
fn deny_rules_refuse_exactly_the_targets_they_name() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (env, _dir) = rt.block_on(env_with_rules(
        TARGET_RULES,
        "proxy_url_hosts = [\"x.my.salesforce.com\"]\n",
    ));
    let alice = env.member("alice");
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 96,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    runner
        .run(&target_case(), |case| {
            let (path, header) = case.request();
            let credential = if case.slack { SLACK_ALICE_1 } else { SF_ALICE };
            let mut headers = vec![("x-paragon-credential", credential)];
            if let Some(h) = &header {
                headers.push(("x-paragon-proxy-url", h.as_str()));
            }
            let got = rt.block_on(env.send(case.method, &path, &alice, &headers, ""));
            let reached = env.forwarded(&got);
            if case.refused() {
                proptest::prop_assert_eq!(got.status.as_u16(), 403, "{:?} {:?}", case, got.body);
                proptest::prop_assert_eq!(got.code(), "credential_forbidden");
                proptest::prop_assert!(reached.is_empty(), "{:?} reached Paragon", case);
            } else {
                proptest::prop_assert_eq!(reached.len(), 1, "{:?} {:?}", case, got.body);
                proptest::prop_assert_eq!(&reached[0].method, case.method);
                proptest::prop_assert_eq!(reached[0].credential.as_deref(), Some(credential));
            }
            Ok(())
        })
        .unwrap();
}

// ---- listing and calling: one decision -----------------------------------

/// A shared HubSpot account nobody's label names; carol gets it by rule.
const SHARED_HUBSPOT: &str = "5a5a0000-0000-4000-8000-000000000001";

const LISTING_RULES: &str = r#"
[[rule]]
name = "freeze-alice-second-slack"
effect = "deny"
when = "credential.id == 'a11ce000-51ac-4000-8000-000000000002'"

[[rule]]
name = "carol-uses-the-shared-hubspot"
effect = "allow"
when = "caller.principal == 'carol' && credential.externalId == 'shared'"
"#;

/// Every credential id (lowercased) a text mentions, among `ids`.
fn mentioned(text: &str, ids: &[String]) -> std::collections::BTreeSet<String> {
    let lower = text.to_ascii_lowercase();
    ids.iter()
        .filter(|id| lower.contains(id.as_str()))
        .cloned()
        .collect()
}

/// The credential ids the `credential` enums of a `tools/list` offer.
fn offered(list: &Value) -> std::collections::BTreeSet<String> {
    list["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["inputSchema"]["properties"]["credential"]["enum"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// What `/sdk/me`, `/sdk/credentials`, the trigger-subscription list and
/// `tools/list` show a member is exactly what that member can use (an
/// allow rule's grant shown and usable, a frozen account neither), by
/// each member of the world.
#[tokio::test]
async fn what_a_member_is_shown_is_exactly_what_it_can_use() {
    let dir = TempDir::new("listing-rules");
    // The freeze comes after the subscriptions are made (an admin may not
    // make one on a frozen account either).
    let file = dir.write(
        "rules.toml",
        &LISTING_RULES.replace("effect = \"deny\"", "effect = \"deny\"\nmode = \"shadow\""),
    );
    let policy = format!("rules_file = \"{}\"\n", file.display());
    let mut world = world();
    world.users[0]
        .credentials
        .push(owned(SHARED_HUBSPOT, "hubspot", "shared"));
    fn config<'k>(mut b: ConfigBuilder<'k>, policy: &str) -> ConfigBuilder<'k> {
        b.extra_top = "[mcp]\nenabled = true\n".into();
        b.policy(policy)
    }
    let first = policy.clone();
    let env = Env::with(world, move |b| config(b, &first)).await;
    let acme: Vec<(String, String)> = env
        .known
        .iter()
        .filter(|k| k.id != GLOBEX_SF)
        .map(|k| (k.id.clone(), k.integration.clone()))
        .collect();
    let ids: Vec<String> = acme.iter().map(|(id, _)| id.clone()).collect();
    // One trigger subscription per account, made by an admin.
    let admin = env.admin();
    for (id, integration) in &acme {
        let got = env
            .send_as(
                "POST",
                &p("/trigger-subscriptions"),
                &admin,
                id,
                json!({"integration": integration, "type": "RECORD_CREATED"}).to_string(),
            )
            .await;
        assert_eq!(got.status, 200, "{:?}", got.body);
    }
    dir.write("rules.toml", LISTING_RULES);
    let reloaded = config(
        ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url())),
        &policy,
    )
    .build();
    env.gw.reload(reloaded).expect("the reload applies");
    // Which integrations have tools at all (an admin sees every account).
    let session = mcp_session(&env, &admin).await;
    let all_tools = offered(
        &rpc(
            &env,
            &admin,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await
        .json(),
    );
    for principal in ["alice", "bob", "carol", "dave"] {
        let token = env.member(principal);
        let mut usable = std::collections::BTreeSet::new();
        for (id, integration) in &acme {
            let path = p(&format!("/sdk/proxy/{integration}/x"));
            let got = env.send_as("GET", &path, &token, id, "").await;
            match got.status.as_u16() {
                200 => {
                    usable.insert(id.clone());
                }
                403 => assert!(env.forwarded(&got).is_empty()),
                s => panic!("{principal} {id}: {s}"),
            }
        }
        assert!(!usable.is_empty(), "{principal} uses something");
        let me = env.send("GET", &p("/sdk/me"), &token, &[], "").await;
        assert_eq!(
            mentioned(std::str::from_utf8(&me.body).unwrap(), &ids),
            usable,
            "{principal}: /sdk/me"
        );
        let creds = env
            .send("GET", &p("/sdk/credentials"), &token, &[], "")
            .await;
        assert_eq!(
            mentioned(std::str::from_utf8(&creds.body).unwrap(), &ids),
            usable,
            "{principal}: /sdk/credentials"
        );
        let subs = env
            .send("GET", &p("/trigger-subscriptions"), &token, &[], "")
            .await;
        let listed: std::collections::BTreeSet<String> = subs.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["credentialId"].as_str().unwrap().to_ascii_lowercase())
            .collect();
        assert_eq!(listed, usable, "{principal}: trigger subscriptions");
        let session = mcp_session(&env, &token).await;
        let tools = rpc(
            &env,
            &token,
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        let expected: std::collections::BTreeSet<String> =
            usable.intersection(&all_tools).cloned().collect();
        assert_eq!(offered(&tools.json()), expected, "{principal}: tools/list");
    }
}
