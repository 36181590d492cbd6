//! What an agent met at `/mcp` (issue 29, item 8; contract §12): accounts
//! it could not tell apart, refusals that sent it to its other accounts,
//! a header it has no way to set, and the session's own housekeeping
//! spending the rate-limit tokens its tool calls needed. Against the
//! gateway and the Paragon emulator; the client is the official MCP Rust
//! SDK (rmcp) where a client's own behaviour matters, raw HTTP elsewhere.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_BOB, DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_2};
use harness::*;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// The suite's gateway with `/mcp` on, `top` added at the config's top
/// and `policy` to `[policy]`.
async fn gateway(top: &str, policy: &str) -> Env {
    let top = format!("[mcp]\nenabled = true\n{top}\n");
    let policy = policy.to_string();
    Env::with(fixtures(), move |mut b| {
        b.extra_top.push_str(&top);
        b.policy(&policy)
    })
    .await
}

async fn rpc(env: &Env, token: &str, session: Option<&str>, body: Value) -> Got {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    send(
        &env.cl,
        req(
            "POST",
            &env.gw,
            "/mcp",
            Some(token),
            &headers,
            body.to_string(),
        ),
    )
    .await
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    }})
}

async fn open(env: &Env, token: &str) -> String {
    let got = rpc(env, token, None, initialize()).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    got.headers["mcp-session-id"].to_str().unwrap().to_string()
}

fn call(id: u32, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// A `tools/call`'s tool result, which must be a tool error; its text.
fn tool_error(got: &Got) -> String {
    let v = got.json();
    assert_eq!(v["result"]["isError"], true, "{v}");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `credential` argument's titled choices of `tool` in a `tools/list`.
fn titles(list: &Value, tool: &str) -> Vec<(String, String)> {
    let t = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tool)
        .unwrap_or_else(|| panic!("{tool} is listed: {list}"));
    t["inputSchema"]["properties"]["credential"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["const"].as_str().unwrap().to_string(),
                c["title"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Alice's two Slack accounts both carry her label `alice`: their titles
/// differ (each with its id, as their short ids are alike too), and so do
/// the candidates a call without a `credential` is told of, in words for
/// an agent, not of a header it cannot set.
#[tokio::test]
async fn accounts_of_one_label_get_titles_an_agent_can_tell_apart() {
    let env = gateway("", "").await;
    let token = env.member("alice");
    let session = open(&env, &token).await;
    let list = rpc(
        &env,
        &token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await
    .json();
    let mut slack = titles(&list, "SLACK_SEND_MESSAGE");
    slack.sort();
    assert_eq!(
        slack,
        vec![
            (
                DEMO_SLACK_ALICE_1.to_string(),
                format!("alice ({DEMO_SLACK_ALICE_1})")
            ),
            (
                DEMO_SLACK_ALICE_2.to_string(),
                format!("alice ({DEMO_SLACK_ALICE_2})")
            ),
        ]
    );
    // A title nobody else has is left as it is.
    let sf = titles(&list, "SALESFORCE_CREATE_RECORD");
    assert_eq!(sf.len(), 1);
    assert_eq!(sf[0].1, "alice");

    let before = env.traffic().len();
    let got = rpc(
        &env,
        &token,
        Some(&session),
        call(3, "SLACK_SEND_MESSAGE", json!({"input": "hi"})),
    )
    .await;
    let text = tool_error(&got);
    assert!(text.contains("credential_required"), "{text}");
    assert!(text.contains("`credential` argument"), "{text}");
    assert!(!text.contains("X-Paragon-Credential"), "{text}");
    for id in [DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_2] {
        assert!(text.contains(&format!("{id} (alice ({id}))")), "{text}");
    }
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
}

/// A deny rule's refusal reads as a policy refusal, without the rule's
/// name, and not as an account that is not permitted (an agent would try
/// its other accounts); an account that is not the caller's still reads
/// as such. The audit record keeps the rule.
#[tokio::test]
async fn a_rule_refusal_reads_as_a_policy_refusal() {
    let dir = TempDir::new("mcp-friction-rules");
    let rules = dir.write(
        "rules.toml",
        r#"
[[rule]]
name = "no-agent-deletes-secret-7"
effect = "deny"
when = 'request.via == "mcp" && request.side_effect == "delete"'
"#,
    );
    let env = gateway("", &format!("rules_file = \"{}\"", rules.display())).await;
    let token = env.member("bob");
    let session = open(&env, &token).await;
    let before = env.traffic().len();
    let got = rpc(
        &env,
        &token,
        Some(&session),
        call(2, "SALESFORCE_DELETE_RECORD", json!({})),
    )
    .await;
    let text = tool_error(&got);
    assert!(text.contains("refused by a policy rule"), "{text}");
    assert!(!text.contains("secret-7"), "the rule is not named: {text}");
    assert!(!text.contains("not permitted"), "{text}");
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| r["reason"] == "rule").await;
    assert_eq!(rec["rule"], "no-agent-deletes-secret-7");
    assert_eq!(rec["credential"], DEMO_SALESFORCE_BOB);

    // Another member's account is still "not permitted".
    let got = rpc(
        &env,
        &token,
        Some(&session),
        call(
            3,
            "SALESFORCE_SEARCH_RECORDS",
            json!({"credential": credgate::emulator::fixtures::DEMO_SALESFORCE_ALICE}),
        ),
    )
    .await;
    let text = tool_error(&got);
    assert!(text.contains("credential_forbidden"), "{text}");
    assert!(text.contains("not permitted"), "{text}");
    assert!(!text.contains("policy rule"), "{text}");
}

/// The session's housekeeping (initialize, the `initialized`
/// notification, the client's `GET /mcp`, `ping`, `DELETE`) takes no
/// rate-limit token and is no allowed request in the metrics (it is
/// audited, like every request: contract §1 step 9): with `principal_burst = 3`, the official client initializes,
/// lists the tools and calls one; `tools/list` and `tools/call` take a
/// token each, and what is over the limit is 429.
#[tokio::test]
async fn housekeeping_is_free_and_a_small_burst_reaches_the_tools() {
    let env = gateway("[limits]\nprincipal_rps = 0.01\nprincipal_burst = 3", "").await;
    let token = env.member("bob");
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", env.gw.addr))
            .auth_header(token.clone());
    let transport = StreamableHttpClientTransport::from_config(config);
    let client = ().serve(transport).await.expect("the MCP session initializes");
    let tools = client.list_all_tools().await.expect("the tools are listed");
    assert!(tools.iter().any(|t| t.name == "SALESFORCE_SEARCH_RECORDS"));
    let mut args = serde_json::Map::new();
    args.insert("credential".into(), json!(DEMO_SALESFORCE_BOB));
    let r = client
        .call_tool(CallToolRequestParams::new("SALESFORCE_SEARCH_RECORDS").with_arguments(args))
        .await
        .expect("a tool result");
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    client.cancel().await.unwrap();

    // Raw: more housekeeping than the burst, all answered.
    let session = open(&env, &token).await;
    let s = Some(session.as_str());
    for i in 0..5 {
        let n = rpc(
            &env,
            &token,
            s,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(n.status, 202, "notification {i}");
        let p = rpc(
            &env,
            &token,
            s,
            json!({"jsonrpc": "2.0", "id": i, "method": "ping"}),
        )
        .await;
        assert_eq!(p.status, 200, "ping {i}");
        let g = send(
            &env.cl,
            req(
                "GET",
                &env.gw,
                "/mcp",
                Some(&token),
                &[
                    ("accept", "text/event-stream"),
                    ("mcp-session-id", &session),
                ],
                "",
            ),
        )
        .await;
        assert_eq!(g.status, 405, "GET {i}");
    }
    // The burst's third token, then 429: only the tools took tokens.
    let list = json!({"jsonrpc": "2.0", "id": 90, "method": "tools/list"});
    assert_eq!(rpc(&env, &token, s, list.clone()).await.status, 200);
    let over = rpc(&env, &token, s, list).await;
    assert_eq!(over.status, 429, "{}", String::from_utf8_lossy(&over.body));
    let over = rpc(
        &env,
        &token,
        s,
        call(91, "SALESFORCE_SEARCH_RECORDS", json!({})),
    )
    .await;
    assert_eq!(over.status, 429);
    // A refused request pays too (deny by default): an unknown session.
    let unknown = rpc(
        &env,
        &token,
        Some("bm90LWEtc2Vzc2lvbg"),
        json!({"jsonrpc": "2.0", "id": 92, "method": "ping"}),
    )
    .await;
    assert_eq!(unknown.status, 429);

    // In the audit: every request, the housekeeping too (the five raw
    // notifications, answered 202, among them), the call and the 429s.
    let rec = wait_for_audit(&env.keys, |r| r["status"] == 429 && r["product"] == "mcp").await;
    assert_eq!(rec["scope"], "principal");
    let records = audit_records(&env.keys);
    let notifications = records
        .iter()
        .filter(|r| r["product"] == "mcp" && r["decision"] == "allowed" && r["status"] == 202)
        .count();
    assert!(notifications >= 5, "{records:#?}");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["tool"] == "SALESFORCE_SEARCH_RECORDS" && r["decision"] == "allowed")
            .count(),
        1
    );
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(
        metric(
            &metrics,
            "credgate_requests_total{product=\"mcp\",decision=\"allowed\",status=\"200\"}"
        ),
        2.0,
        "{metrics}"
    );
}

/// 2026-07-28 (no session): `server/discover`, `ping` and notifications
/// are housekeeping too; `tools/list` takes a token.
#[tokio::test]
async fn stateless_discovery_and_notifications_are_free() {
    let env = gateway("[limits]\nprincipal_rps = 0.01\nprincipal_burst = 1", "").await;
    let token = env.member("bob");
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let post = |method: &'static str, id: Option<u32>| {
        let mut body =
            json!({"jsonrpc": "2.0", "method": method, "params": {"_meta": meta.clone()}});
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        let headers = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
        ];
        send(
            &env.cl,
            req(
                "POST",
                &env.gw,
                "/mcp",
                Some(&token),
                &headers,
                body.to_string(),
            ),
        )
    };
    for i in 0..3 {
        assert_eq!(post("server/discover", Some(i)).await.status, 200);
        assert_eq!(post("ping", Some(10 + i)).await.status, 200);
        assert_eq!(post("notifications/initialized", None).await.status, 202);
    }
    assert_eq!(post("tools/list", Some(20)).await.status, 200);
    assert_eq!(post("tools/list", Some(21)).await.status, 429);
}
