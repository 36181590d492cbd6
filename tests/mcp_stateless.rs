//! Agents (contract §12): MCP's stateless 2026-07-28 revision at `/mcp`
//! (no `initialize`, no session; `server/discover`; the SEP-2243 headers
//! that must agree with the body; its error codes), driven by the
//! official Rust SDK's client (rmcp, which speaks 2026-07-28) where it
//! can be and by raw HTTP for what a client hides; and the acting agent
//! of a delegation token (`act`) in the audit, on `/mcp` and on a plain
//! Proxy API request. The gateway runs against the Paragon emulator.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use harness::*;
use serde_json::{json, Value};

/// The suite's gateway with `/mcp` on.
async fn gateway() -> Env {
    Env::with(fixtures(), |mut b| {
        b.extra_top.push_str("[mcp]\nenabled = true\n");
        b
    })
    .await
}

/// A member token of user `acme` for `principal`, delegated to `agent`
/// (RFC 8693 `act`).
fn delegated(env: &Env, principal: &str, agent: &str) -> String {
    env.keys.caller_token(json!({
        "sub": "acme", "principal": principal, "act": {"sub": agent},
    }))
}

/// One raw POST to `/mcp` with these headers besides the content type.
async fn post(env: &Env, token: &str, headers: &[(&str, &str)], body: &Value) -> Got {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    send(
        &env.cl,
        req("POST", &env.gw, "/mcp", Some(token), &all, body.to_string()),
    )
    .await
}

/// What reached the emulator's ActionKit host to run tools.
fn tool_runs(env: &Env) -> usize {
    env.traffic()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && (r.path.ends_with("/tools") || r.path.ends_with("/actions"))
        })
        .count()
}

// ---- the acting agent (`act`) in the audit --------------------------

#[tokio::test]
async fn an_agent_acting_for_a_member_is_the_actor_of_its_proxy_api_requests() {
    let env = gateway().await;
    let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/sobjects/Account");
    let token = delegated(&env, "bob", "agent-7");
    let got = env
        .send_as("GET", &path, &token, DEMO_SALESFORCE_BOB, "")
        .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let refused = env
        .send_as("GET", &path, &token, DEMO_SALESFORCE_ALICE, "")
        .await;
    assert_eq!(refused.status, 403);
    let allowed = wait_for_audit(&env.keys, |r| {
        r["product"] == "proxy" && r["decision"] == "allowed"
    })
    .await;
    assert_eq!(allowed["principal"], "bob");
    assert_eq!(allowed["actor"], "agent-7");
    let refused = wait_for_audit(&env.keys, |r| {
        r["product"] == "proxy" && r["decision"] == "refused"
    })
    .await;
    assert_eq!(refused["actor"], "agent-7");
    // Without `act`, no actor.
    let plain = env.member("bob");
    env.send_as("GET", &path, &plain, DEMO_SALESFORCE_BOB, "")
        .await;
    let last = wait_for_audit(&env.keys, |r| {
        r["product"] == "proxy" && r["decision"] == "allowed" && r["actor"] != "agent-7"
    })
    .await;
    assert_eq!(last["principal"], "bob");
    assert!(last.get("actor").is_none(), "{last}");
    // A delegation whose actor cannot be read fails the token.
    let broken = env.keys.caller_token(json!({
        "sub": "acme", "principal": "bob", "act": "agent-7",
    }));
    let got = env
        .send_as("GET", &path, &broken, DEMO_SALESFORCE_BOB, "")
        .await;
    assert_eq!(got.status, 401);
}

#[tokio::test]
async fn an_agent_acting_for_a_member_is_the_actor_of_its_tool_calls() {
    let env = gateway().await;
    let token = delegated(&env, "bob", "agent-7");
    // The 2025 session revision.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    }});
    let got = post(&env, &token, &[], &init).await;
    let session = got.headers["mcp-session-id"].to_str().unwrap().to_string();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "SALESFORCE_SEARCH_RECORDS", "arguments": {},
    }});
    let got = post(&env, &token, &[("mcp-session-id", &session)], &call).await;
    assert_eq!(got.json()["result"]["isError"], false, "{}", got.json());
    let rec = wait_for_audit(&env.keys, |r| {
        r["via"] == "mcp" && r["tool"] == "SALESFORCE_SEARCH_RECORDS"
    })
    .await;
    assert_eq!(rec["decision"], "allowed");
    assert_eq!(rec["principal"], "bob");
    assert_eq!(rec["actor"], "agent-7");
    // The transport's own record (initialize) names the agent too.
    let transport = wait_for_audit(&env.keys, |r| r["reason"] == "mcp").await;
    assert_eq!(transport["actor"], "agent-7");
    assert!(tool_runs(&env) > 0);
}
