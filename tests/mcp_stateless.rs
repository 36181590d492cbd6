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

// ---- 2026-07-28 over raw HTTP ---------------------------------------

const V: &str = "2026-07-28";

/// A 2026-07-28 request body: `method` with `params` and the per-request
/// `_meta`.
fn modern(id: u32, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": V,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// A 2026-07-28 `tools/call` of `name`, with the headers a client sends.
async fn call(env: &Env, token: &str, name: &str, arguments: Value) -> Got {
    let body = modern(
        9,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    );
    let headers = [
        ("mcp-protocol-version", V),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ];
    post(env, token, &headers, &body).await
}

#[tokio::test]
async fn server_discover_advertises_the_versions_without_a_session() {
    let env = gateway().await;
    let token = env.member("alice");
    let got = post(
        &env,
        &token,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "server/discover"),
        ],
        &modern(1, "server/discover", json!({})),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(got.headers.get("mcp-session-id").is_none());
    let v = got.json();
    let r = &v["result"];
    assert_eq!(v["id"], 1);
    assert_eq!(r["supportedVersions"][0], V, "{r}");
    assert!(r["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("2025-11-25")));
    assert!(r["capabilities"]["tools"].is_object());
    assert_eq!(r["resultType"], "complete");
    assert!(r["ttlMs"].is_u64() && r["cacheScope"].is_string(), "{r}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "credgate"
    );
}

#[tokio::test]
async fn tools_list_and_call_need_no_session_and_keep_each_member_to_their_own() {
    let env = gateway().await;
    let token = env.member("bob");
    let list = modern(1, "tools/list", json!({}));
    // A session id sent anyway is ignored, and none is given.
    let headers = [
        ("mcp-protocol-version", V),
        ("mcp-method", "tools/list"),
        ("mcp-session-id", "bm90LWEtc2Vzc2lvbg"),
    ];
    let first = post(&env, &token, &headers, &list).await;
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert!(first.headers.get("mcp-session-id").is_none());
    let second = post(&env, &token, &headers[..2], &list).await;
    let (first, second) = (first.json(), second.json());
    let r = &first["result"];
    assert_eq!(r["cacheScope"], "private");
    assert!(r["ttlMs"].as_u64().unwrap() <= 60_000, "{r}");
    assert_eq!(r["resultType"], "complete");
    assert_eq!(r["tools"], second["result"]["tools"], "a stable order");
    let names: Vec<&str> = r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"SALESFORCE_CREATE_RECORD"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    // Bob's own account: run at Paragon with it.
    let before = tool_runs(&env);
    let got = call(
        &env,
        &token,
        "SALESFORCE_CREATE_RECORD",
        json!({"credential": DEMO_SALESFORCE_BOB}),
    )
    .await;
    let v = got.json();
    assert_eq!(v["result"]["isError"], false, "{v}");
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(tool_runs(&env), before + 1);
    let run = env.traffic().pop().unwrap();
    assert_eq!(
        credential_headers(&run),
        vec![DEMO_SALESFORCE_BOB.to_string()]
    );
    // Alice's account: a tool error, and nothing reaches Paragon.
    let got = call(
        &env,
        &token,
        "SALESFORCE_CREATE_RECORD",
        json!({"credential": DEMO_SALESFORCE_ALICE}),
    )
    .await;
    let v = got.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("credential_forbidden"));
    assert_eq!(tool_runs(&env), before + 1, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["via"] == "mcp" && r["decision"] == "refused" && r["requested"] == DEMO_SALESFORCE_ALICE
    })
    .await;
    assert_eq!(rec["principal"], "bob");
}

#[tokio::test]
async fn get_and_delete_are_405_for_a_2026_request() {
    let env = gateway().await;
    let token = env.member("alice");
    for method in ["GET", "DELETE"] {
        let got = send(
            &env.cl,
            req(
                method,
                &env.gw,
                "/mcp",
                Some(&token),
                &[
                    ("mcp-protocol-version", V),
                    ("mcp-session-id", "bm90LWEtc2Vzc2lvbg"),
                ],
                "",
            ),
        )
        .await;
        assert_eq!(got.status, 405, "{method}");
        assert_eq!(got.headers["allow"], "POST");
    }
}

#[tokio::test]
async fn headers_missing_or_disagreeing_with_the_body_are_400_header_mismatch() {
    let env = gateway().await;
    let token = env.member("bob");
    let before = tool_runs(&env);
    // The header names a tool bob may use with his account; the body
    // names another.
    let body = modern(
        3,
        "tools/call",
        json!({"name": "SALESFORCE_DELETE_RECORD", "arguments": {"credential": DEMO_SALESFORCE_BOB}}),
    );
    let cases: [&[(&str, &str)]; 6] = [
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "SALESFORCE_SEARCH_RECORDS"),
        ],
        &[("mcp-protocol-version", V), ("mcp-method", "tools/call")],
        &[
            ("mcp-protocol-version", V),
            ("mcp-name", "SALESFORCE_DELETE_RECORD"),
        ],
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/list"),
            ("mcp-name", "SALESFORCE_DELETE_RECORD"),
        ],
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "SALESFORCE_DELETE_RECORD"),
        ],
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            (
                "mcp-name",
                "=?base64?U0FMRVNGT1JDRV9TRUFSQ0hfUkVDT1JEUw==?=",
            ),
        ],
    ];
    for (i, headers) in cases.iter().enumerate() {
        let got = post(&env, &token, headers, &body).await;
        assert_eq!(
            got.status,
            400,
            "case {i}: {}",
            String::from_utf8_lossy(&got.body)
        );
        let v = got.json();
        assert_eq!(v["error"]["code"], -32020, "case {i}: {v}");
        assert_eq!(v["id"], 3);
    }
    assert_eq!(tool_runs(&env), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["product"] == "mcp" && r["decision"] == "refused"
    })
    .await;
    assert_eq!(rec["reason"], "bad_request", "{rec}");
    // The same name Base64-encoded agrees, and runs.
    let got = post(
        &env,
        &token,
        &[
            ("mcp-protocol-version", V),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?U0FMRVNGT1JDRV9ERUxFVEVfUkVDT1JE?="),
        ],
        &body,
    )
    .await;
    assert_eq!(got.json()["result"]["isError"], false, "{}", got.json());
    assert_eq!(tool_runs(&env), before + 1);
}

#[tokio::test]
async fn an_unknown_protocol_version_is_unsupported_with_the_supported_list() {
    let env = gateway().await;
    let token = env.member("alice");
    let mut body = modern(4, "tools/list", json!({}));
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    for headers in [
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ][..],
        &[("mcp-method", "tools/list")][..],
    ] {
        let got = post(&env, &token, headers, &body).await;
        assert_eq!(got.status, 400);
        let v = got.json();
        assert_eq!(v["error"]["code"], -32022, "{v}");
        assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
        let supported = v["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!(V)) && supported.contains(&json!("2025-11-25")));
    }
}

// ---- 2026-07-28 with the official Rust SDK (rmcp 3.11) --------------

/// rmcp's client in its `server/discover` lifecycle (2026-07-28 only, no
/// fallback to `initialize`), as `token`.
async fn modern_client(
    env: &Env,
    token: String,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::model::ProtocolVersion;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", env.gw.addr))
            .auth_header(token);
    let transport =
        rmcp::transport::StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
    ().serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("rmcp discovers credgate as a 2026-07-28 server")
}

#[tokio::test]
async fn the_rust_sdk_speaks_2026_07_28_without_a_session() {
    use rmcp::model::CallToolRequestParams;
    let env = gateway().await;
    let bob = modern_client(&env, delegated(&env, "bob", "agent-7")).await;
    let info = bob.peer_info().expect("discovered").clone();
    assert_eq!(info.protocol_version.as_str(), V);
    let tools = bob.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| &*t.name).collect();
    assert!(names.contains(&"SALESFORCE_CREATE_RECORD"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "a stable order");
    let args = |cred: &str| {
        let Value::Object(m) = json!({"credential": cred}) else {
            unreachable!()
        };
        m
    };
    let before = tool_runs(&env);
    let ok = bob
        .call_tool(
            CallToolRequestParams::new("SALESFORCE_CREATE_RECORD")
                .with_arguments(args(DEMO_SALESFORCE_BOB)),
        )
        .await
        .unwrap();
    assert_eq!(ok.is_error, Some(false));
    assert_eq!(tool_runs(&env), before + 1);
    let refused = bob
        .call_tool(
            CallToolRequestParams::new("SALESFORCE_CREATE_RECORD")
                .with_arguments(args(DEMO_SALESFORCE_ALICE)),
        )
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert_eq!(tool_runs(&env), before + 1, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["via"] == "mcp" && r["decision"] == "allowed" && r["tool"] == "SALESFORCE_CREATE_RECORD"
    })
    .await;
    assert_eq!(rec["actor"], "agent-7");
    assert_eq!(rec["principal"], "bob");
    bob.cancel().await.unwrap();
}
