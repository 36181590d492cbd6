//! Agents (contract §12): `/mcp` driven by the official MCP Rust SDK's
//! client (rmcp, Streamable HTTP over reqwest) and, for what the protocol
//! says about framing, sessions and errors, by raw HTTP. The gateway runs
//! against the Paragon emulator; what reached it is checked for every
//! call: the credential, the narrowed token, nothing at all on a refusal.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use credgate::emulator::fixtures::{
    DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB, DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_2,
    DEMO_SLACK_BOB,
};
use futures::stream::BoxStream;
use harness::*;
use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientJsonRpcMessage};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

/// rmcp's reqwest client with a token that the test may change between
/// requests (a refreshed token, or another principal's).
#[derive(Clone)]
struct Tokened {
    inner: reqwest::Client,
    token: Arc<Mutex<String>>,
}

impl Tokened {
    fn current(&self) -> Option<String> {
        Some(self.token.lock().unwrap().clone())
    }
}

impl StreamableHttpClient for Tokened {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.inner
            .post_message(uri, message, session_id, self.current(), headers)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>> {
        self.inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                self.current(),
                headers,
                limits,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        self.inner
            .delete_session(uri, session_id, self.current(), headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth: Option<String>,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<reqwest::Error>,
    > {
        self.inner
            .get_stream(uri, session_id, last_event_id, self.current(), headers)
            .await
    }
}

type Client = RunningService<RoleClient, ()>;

/// An agent session: the rmcp client and the token it sends.
struct Agent {
    client: Client,
    token: Arc<Mutex<String>>,
}

impl Agent {
    fn set_token(&self, token: String) {
        *self.token.lock().unwrap() = token;
    }

    /// A call that must succeed as a tool result.
    async fn ok(&self, name: &str, arguments: Value) -> CallToolResult {
        let r = self.call(name, arguments).await.expect("a tool result");
        assert_eq!(r.is_error, Some(false), "{name}: {}", text_of(&r));
        r
    }

    /// A call that must come back a tool error; its text.
    async fn refused(&self, name: &str, arguments: Value) -> String {
        let r = self
            .call(name, arguments)
            .await
            .expect("a tool error, not a protocol error");
        assert_eq!(r.is_error, Some(true), "{name}: {}", text_of(&r));
        text_of(&r)
    }

    async fn call(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(arguments))
            .await
    }
}

/// The suite's gateway with `/mcp` on (and `extra` in `[mcp]`).
async fn gateway(extra: &str) -> Env {
    gateway_with(extra, |b| b).await
}

/// [`gateway`], with `cfg` on top of the config.
async fn gateway_with(
    extra: &str,
    cfg: impl for<'k> FnOnce(ConfigBuilder<'k>) -> ConfigBuilder<'k>,
) -> Env {
    let top = format!("[mcp]\nenabled = true\n{extra}\n");
    Env::with(fixtures(), move |mut b| {
        b.extra_top.push_str(&top);
        cfg(b)
    })
    .await
}

/// [`gateway`] with `rules` as its rules file (kept in the returned
/// directory).
async fn gateway_with_rules(rules: &str) -> (Env, TempDir) {
    let dir = TempDir::new("mcp-rules");
    let file = dir.write("rules.toml", rules);
    let policy = format!("rules_file = \"{}\"", file.display());
    (gateway_with("", move |b| b.policy(&policy)).await, dir)
}

fn mcp_url(env: &Env) -> String {
    format!("http://{}/mcp", env.gw.addr)
}

/// An rmcp client session as `token`; `reinit`: whether the client opens a
/// new session by itself when its session is gone (404).
async fn connect(env: &Env, token: String, reinit: bool) -> Agent {
    let token = Arc::new(Mutex::new(token));
    let http = Tokened {
        inner: reqwest::Client::new(),
        token: token.clone(),
    };
    let config = StreamableHttpClientTransportConfig::with_uri(mcp_url(env))
        .reinit_on_expired_session(reinit);
    let transport = StreamableHttpClientTransport::with_client(http, config);
    let client = ().serve(transport).await.expect("the MCP session initializes");
    Agent { client, token }
}

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What reached the emulator's ActionKit host to run tools.
fn tool_runs(env: &Env) -> Vec<credgate::emulator::RecordedRequest> {
    env.traffic()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && (r.path.ends_with("/tools") || r.path.ends_with("/actions"))
        })
        .collect()
}

fn credential_enum(tool: &rmcp::model::Tool) -> Vec<String> {
    let schema = Value::Object((*tool.input_schema).clone());
    schema["properties"]["credential"]["enum"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn required(tool: &rmcp::model::Tool) -> Vec<String> {
    let schema = Value::Object((*tool.input_schema).clone());
    schema["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_member_lists_only_integrations_they_hold_an_account_in_with_their_own_accounts() {
    let env = gateway("").await;
    // Bob holds Salesforce and Slack accounts (one each).
    let bob = connect(&env, env.member("bob"), false).await;
    let info = bob.client.peer_info().expect("initialized").clone();
    assert_eq!(info.protocol_version.as_str(), "2025-11-25");
    assert_eq!(
        info.server_info.as_ref().map(|s| &*s.name),
        Some("credgate")
    );
    let tools = bob.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| &*t.name).collect();
    assert!(names.contains(&"SALESFORCE_CREATE_RECORD"), "{names:?}");
    assert!(names.contains(&"SLACK_SEND_MESSAGE"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("GOOGLE_DRIVE")),
        "bob holds no Google Drive account: {names:?}"
    );
    let sf = tools
        .iter()
        .find(|t| t.name == "SALESFORCE_CREATE_RECORD")
        .unwrap();
    assert_eq!(credential_enum(sf), vec![DEMO_SALESFORCE_BOB.to_string()]);
    assert!(
        !required(sf).contains(&"credential".to_string()),
        "one account: the credential is optional"
    );
    let delete = tools
        .iter()
        .find(|t| t.name == "SALESFORCE_DELETE_RECORD")
        .unwrap();
    let annotations = delete.annotations.as_ref().expect("sideEffect is kept");
    assert_eq!(annotations.destructive_hint, Some(true));

    // Alice holds two Slack accounts: both in the enum, and one required.
    let alice = connect(&env, env.member("alice"), false).await;
    let tools = alice.client.list_all_tools().await.unwrap();
    let slack = tools
        .iter()
        .find(|t| t.name == "SLACK_SEND_MESSAGE")
        .unwrap();
    let mut ids = credential_enum(slack);
    ids.sort();
    assert_eq!(
        ids,
        vec![
            DEMO_SLACK_ALICE_1.to_string(),
            DEMO_SLACK_ALICE_2.to_string()
        ]
    );
    assert!(required(slack).contains(&"credential".to_string()));
    assert!(
        tools
            .iter()
            .all(|t| !credential_enum(t).contains(&DEMO_SLACK_BOB.to_string())),
        "no other member's account is offered"
    );
    // The listing went to Paragon with a token narrowed to alice's own.
    let listing = env
        .state()
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "GET" && r.path.ends_with("/tools"))
        .expect("the tools were listed at Paragon");
    let claims = env.upstream_claims(&listing);
    let perms = claims[PERMS].to_string();
    assert!(perms.contains(DEMO_SLACK_ALICE_1) && perms.contains(DEMO_SALESFORCE_ALICE));
    assert!(!perms.contains(DEMO_SLACK_BOB), "{perms}");
    // Listings are cached per (user, permitted set): alice's second
    // session lists without asking Paragon again.
    let listings = |env: &Env| {
        env.state()
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/tools"))
            .count()
    };
    assert_eq!(listings(&env), 2, "bob's and alice's");
    let again = connect(&env, env.member("alice"), false).await;
    assert_eq!(
        again.client.list_all_tools().await.unwrap().len(),
        tools.len()
    );
    assert_eq!(listings(&env), 2);
    again.client.cancel().await.unwrap();
    alice.client.cancel().await.unwrap();
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_call_with_their_own_account_reaches_paragon_with_that_credential_and_a_narrowed_token() {
    let env = gateway("").await;
    let bob = connect(&env, env.member("bob"), false).await;
    let before = tool_runs(&env).len();
    let r = bob
        .ok(
            "SALESFORCE_CREATE_RECORD",
            json!({"credential": DEMO_SALESFORCE_BOB, "input": "a lead"}),
        )
        .await;
    let runs = tool_runs(&env);
    assert_eq!(runs.len(), before + 1);
    let run = runs.last().unwrap();
    assert_eq!(
        credential_headers(run),
        vec![DEMO_SALESFORCE_BOB.to_string()]
    );
    let claims = env.upstream_claims(run);
    assert_eq!(
        claims[PERMS],
        json!({"integration:salesforce": {format!("credential:{DEMO_SALESFORCE_BOB}"): true}})
    );
    let sent: Value = serde_json::from_slice(&run.body).unwrap();
    assert_eq!(sent["tool"], "SALESFORCE_CREATE_RECORD");
    assert_eq!(
        sent["parameters"],
        json!({"input": "a lead"}),
        "the credential argument is not a parameter"
    );
    let answer = r.structured_content.expect("Paragon's JSON answer");
    assert_eq!(answer["tool"], "SALESFORCE_CREATE_RECORD");

    // One account: the credential may be left out.
    bob.ok("SALESFORCE_SEARCH_RECORDS", json!({})).await;
    let run = tool_runs(&env).pop().unwrap();
    assert_eq!(
        credential_headers(&run),
        vec![DEMO_SALESFORCE_BOB.to_string()]
    );

    // One audit record per call, naming the tool.
    let rec = wait_for_audit(&env.keys, |r| {
        r["product"] == "actionkit" && r["via"] == "mcp" && r["tool"] == "SALESFORCE_SEARCH_RECORDS"
    })
    .await;
    assert_eq!(rec["decision"], "allowed");
    assert_eq!(rec["credential"], DEMO_SALESFORCE_BOB);
    assert_eq!(rec["principal"], "bob");
    assert_eq!(rec["reason"], "owner_label");
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn naming_another_members_account_is_a_tool_error_and_nothing_reaches_paragon() {
    let env = gateway("").await;
    let bob = connect(&env, env.member("bob"), false).await;
    let before = tool_runs(&env).len();
    let text = bob
        .refused(
            "SALESFORCE_CREATE_RECORD",
            json!({"credential": DEMO_SALESFORCE_ALICE}),
        )
        .await;
    assert!(text.contains("credential_forbidden"), "{text}");
    assert!(
        !text.contains("alice"),
        "nothing about the other member: {text}"
    );
    assert_eq!(tool_runs(&env).len(), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["via"] == "mcp" && r["decision"] == "refused" && r["principal"] == "bob"
    })
    .await;
    let transport: Vec<Value> = audit_records(&env.keys)
        .into_iter()
        .filter(|r| r["tool"].is_null())
        .collect();
    assert!(
        transport
            .iter()
            .all(|r| r["decision"] == "allowed" && r["reason"] == "mcp"),
        "the session's own requests are no refusals: {transport:#?}"
    );
    assert_eq!(rec["tool"], "SALESFORCE_CREATE_RECORD");
    assert_eq!(rec["reason"], "no_grant");
    assert_eq!(rec["requested"], DEMO_SALESFORCE_ALICE);

    // A credential of another integration, even one's own, is refused too.
    bob.refused(
        "SALESFORCE_CREATE_RECORD",
        json!({"credential": DEMO_SLACK_BOB}),
    )
    .await;
    assert_eq!(tool_runs(&env).len(), before, "nothing reached Paragon");
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn several_accounts_and_none_chosen_is_a_tool_error_listing_the_candidates() {
    let env = gateway("").await;
    let alice = connect(&env, env.member("alice"), false).await;
    let before = tool_runs(&env).len();
    let text = alice
        .refused("SLACK_SEND_MESSAGE", json!({"input": "hi"}))
        .await;
    assert!(text.contains("credential_required"), "{text}");
    assert!(
        text.contains(DEMO_SLACK_ALICE_1) && text.contains(DEMO_SLACK_ALICE_2),
        "{text}"
    );
    assert!(!text.contains(DEMO_SLACK_BOB), "{text}");
    assert_eq!(tool_runs(&env).len(), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["via"] == "mcp" && r["code"] == "credential_required"
    })
    .await;
    assert_eq!(rec["reason"], "ambiguous");
    assert_eq!(rec["tool"], "SLACK_SEND_MESSAGE");

    // Choosing one of them runs it with that one.
    alice
        .ok(
            "SLACK_SEND_MESSAGE",
            json!({"input": "hi", "credential": DEMO_SLACK_ALICE_2}),
        )
        .await;
    let run = tool_runs(&env).pop().unwrap();
    assert_eq!(
        credential_headers(&run),
        vec![DEMO_SLACK_ALICE_2.to_string()]
    );
    alice.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_refreshed_token_continues_the_session_and_another_principal_gets_404() {
    let env = gateway("").await;
    let alice = connect(&env, env.member("alice"), false).await;
    let tools = alice.client.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    // A refreshed token: same principal, another token.
    let refreshed = env.keys.caller_token(json!({
        "sub": "acme", "principal": "alice", "exp": credgate::auth::unix_now() + 7200,
    }));
    assert_ne!(refreshed, *alice.token.lock().unwrap());
    alice.set_token(refreshed);
    alice.ok("SALESFORCE_SEARCH_RECORDS", json!({})).await;

    // Bob's token on alice's session: 404, as for an unknown session.
    let before = env.traffic().len();
    alice.set_token(env.member("bob"));
    let hijack = alice.call("SALESFORCE_SEARCH_RECORDS", json!({})).await;
    let err = hijack.expect_err("another principal cannot use the session");
    let text = format!("{err:?}");
    assert!(
        text.contains("404") || text.to_lowercase().contains("session"),
        "{text}"
    );
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| {
        r["product"] == "mcp" && r["code"] == "session_not_found"
    })
    .await;
    assert_eq!(rec["principal"], "bob");
    assert_eq!(rec["decision"], "refused");
}

#[tokio::test]
async fn an_idle_session_expires_and_the_client_opens_a_new_one() {
    let env = gateway("session_idle = \"1s\"").await;
    let alice = connect(&env, env.member("alice"), false).await;
    alice.client.list_all_tools().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let expired = alice.call("SALESFORCE_SEARCH_RECORDS", json!({})).await;
    assert!(expired.is_err(), "an idle session is gone: {expired:?}");

    // A client that re-initializes on 404 carries on in a new session.
    let again = connect(&env, env.member("alice"), true).await;
    again.client.list_all_tools().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    again.ok("SALESFORCE_SEARCH_RECORDS", json!({})).await;
}

// ---- the protocol over raw HTTP -------------------------------------

/// One raw request to `gw`'s `/mcp`.
async fn mcp_http(
    env: &Env,
    gw: &credgate::app::Running,
    method: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> Got {
    send(&env.cl, req(method, gw, "/mcp", token, headers, body)).await
}

async fn rpc(env: &Env, token: Option<&str>, session: Option<&str>, body: Value) -> Got {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(s) = session {
        headers.push(("mcp-session-id", s));
    }
    mcp_http(env, &env.gw, "POST", token, &headers, body.to_string()).await
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    }})
}

fn session_of(got: &Got) -> String {
    got.headers
        .get("mcp-session-id")
        .expect("initialize answers a session id")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_protocol_version_is_negotiated_as_mcp_says() {
    let env = gateway("").await;
    let token = env.member("alice");
    for (asked, answered) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2025-11-25", "2025-11-25"),
        // Unknown or newer (no initialize there): the newest spoken here.
        ("2099-01-01", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
    ] {
        let got = rpc(&env, Some(&token), None, initialize(asked)).await;
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
        let v = got.json();
        assert_eq!(v["result"]["protocolVersion"], answered, "{asked}");
        assert_eq!(v["id"], 1);
        assert!(v["result"]["capabilities"]["tools"].is_object());
        let id = session_of(&got);
        assert!(
            id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "visible ASCII: {id}"
        );
    }
    // Later requests name the negotiated version: an unknown one, or a
    // spoken one that this session did not negotiate, is 400; the same
    // one, or none, is served.
    let got = rpc(&env, Some(&token), None, initialize("2025-06-18")).await;
    let session = session_of(&got);
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    for (version, status) in [
        ("1999-01-01", 400),
        ("2025-11-25", 400),
        ("2025-06-18", 200),
    ] {
        let got = mcp_http(
            &env,
            &env.gw,
            "POST",
            Some(&token),
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", &session),
                ("mcp-protocol-version", version),
            ],
            ping.to_string(),
        )
        .await;
        assert_eq!(got.status, status, "{version}");
    }
    let ok = rpc(&env, Some(&token), Some(&session), ping).await;
    assert_eq!(ok.json()["result"], json!({}));
}

#[tokio::test]
async fn unknown_methods_notifications_and_framing_are_answered_as_the_spec_says() {
    let env = gateway("").await;
    let token = env.member("alice");
    let session = session_of(&rpc(&env, Some(&token), None, initialize("2025-11-25")).await);
    let s = Some(session.as_str());
    // Unknown method: JSON-RPC -32601, same id.
    let got = rpc(
        &env,
        Some(&token),
        s,
        json!({"jsonrpc": "2.0", "id": "x7", "method": "resources/list"}),
    )
    .await;
    assert_eq!(got.status, 200);
    let v = got.json();
    assert_eq!(v["id"], "x7");
    assert_eq!(v["error"]["code"], -32601);
    // A notification: 202, no body.
    let got = rpc(
        &env,
        Some(&token),
        s,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(got.status, 202);
    assert!(got.body.is_empty());
    // An unknown tool: -32602.
    let got = rpc(&env, Some(&token), s, json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "NO_SUCH_TOOL", "arguments": {}}})).await;
    assert_eq!(got.json()["error"]["code"], -32602);
    // Not JSON: 400 with a parse error; a batch: 400 invalid request.
    let got = mcp_http(
        &env,
        &env.gw,
        "POST",
        Some(&token),
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", &session),
        ],
        "{nope",
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"]["code"], -32700);
    let got = rpc(
        &env,
        Some(&token),
        s,
        json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.json()["error"]["code"], -32600);
    // No session on a request other than initialize: 400; an unknown one: 404.
    let got = rpc(
        &env,
        Some(&token),
        None,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    )
    .await;
    assert_eq!(got.status, 400);
    let got = rpc(
        &env,
        Some(&token),
        Some("bm90LWEtc2Vzc2lvbg"),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    )
    .await;
    assert_eq!(got.status, 404);
    // GET offers no event stream: 405 with Allow.
    let got = mcp_http(
        &env,
        &env.gw,
        "GET",
        Some(&token),
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", &session),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 405);
    assert_eq!(got.headers["allow"], "POST, DELETE");
    // DELETE ends the session: 204, then 404.
    let got = mcp_http(
        &env,
        &env.gw,
        "DELETE",
        Some(&token),
        &[("mcp-session-id", &session)],
        "",
    )
    .await;
    assert_eq!(got.status, 204);
    let got = rpc(
        &env,
        Some(&token),
        s,
        json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
    )
    .await;
    assert_eq!(got.status, 404);
}

#[tokio::test]
async fn an_unauthenticated_client_is_pointed_at_the_identity_provider() {
    let env = gateway_with("", |b| b.auth("issuer = \"https://idp.example.com/\"")).await;
    let got = rpc(&env, None, None, initialize("2025-11-25")).await;
    assert_eq!(got.status, 401);
    let challenge = got.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let at = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        env.gw.addr
    );
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{at}\""));
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let got = send(&env.cl, req("GET", &env.gw, path, None, &[], "")).await;
        assert_eq!(got.status, 200, "{path}");
        let doc = got.json();
        assert_eq!(doc["resource"], mcp_url(&env));
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://idp.example.com/"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    }
    // With a bad token, the challenge also says why.
    let got = rpc(&env, Some("not.a.token"), None, initialize("2025-11-25")).await;
    assert_eq!(got.status, 401);
    assert!(got.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn mcp_is_off_unless_enabled_and_members_need_the_product() {
    let env = Env::start().await;
    let token = env.member("alice");
    let got = rpc(&env, Some(&token), None, initialize("2025-11-25")).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "route_not_found");
    let got = send(
        &env.cl,
        req(
            "GET",
            &env.gw,
            "/.well-known/oauth-protected-resource",
            Some(&token),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "route_not_found");

    // Methods other than the route's are no route.
    let env = gateway("").await;
    let got = mcp_http(&env, &env.gw, "PUT", Some(&env.member("alice")), &[], "{}").await;
    assert_eq!(got.status, 404);
    assert_eq!(got.code(), "route_not_found");

    let env = gateway_with("", |b| b.policy("member_products = [\"proxy\"]")).await;
    let got = rpc(
        &env,
        Some(&env.member("alice")),
        None,
        initialize("2025-11-25"),
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(got.code(), "operation_forbidden");
}

#[tokio::test]
async fn a_rule_sees_the_tool_and_its_side_effect() {
    let (env, _rules) = gateway_with_rules(
        r#"
[[rule]]
name = "agents-never-delete"
effect = "deny"
when = 'request.via == "mcp" && request.side_effect == "delete"'
"#,
    )
    .await;
    let bob = connect(&env, env.member("bob"), false).await;
    let before = tool_runs(&env).len();
    bob.refused("SALESFORCE_DELETE_RECORD", json!({})).await;
    assert_eq!(tool_runs(&env).len(), before, "nothing reached Paragon");
    let rec = wait_for_audit(&env.keys, |r| r["rule"] == "agents-never-delete").await;
    assert_eq!(rec["tool"], "SALESFORCE_DELETE_RECORD");
    assert_eq!(rec["reason"], "rule");
    bob.ok("SALESFORCE_SEARCH_RECORDS", json!({})).await;
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_proxy_tool_keeps_the_host_guard_and_the_callers_own_account() {
    // The agent's client is a trusted proxy: its own forwarding headers
    // would be kept, the agent's must not be.
    let env = gateway_with("proxy_tool = true", |b| {
        b.server("trusted_proxies = [\"127.0.0.1/32\"]")
    })
    .await;
    let bob = connect(&env, env.member("bob"), false).await;
    let tools = bob.client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "paragon_proxy_request"));
    bob.ok(
        "paragon_proxy_request",
        json!({"integration": "salesforce", "method": "GET", "path": "/services/data/v60.0/query?q=x",
               "headers": {"Accept": "application/json", "X-Forwarded-For": "6.6.6.6",
                           "X-Real-IP": "6.6.6.6", "X-Paragon-Unknown": "1", "X-Request-Id": "forged-by-agent"}}),
    )
    .await;
    let run = env.traffic().pop().unwrap();
    assert_eq!(run.host, "proxy");
    assert_eq!(
        credential_headers(&run),
        vec![DEMO_SALESFORCE_BOB.to_string()]
    );
    // The agent's headers meet the rules of any member request.
    assert_eq!(run.header("accept"), Some("application/json"));
    assert!(
        !run.header_all("x-forwarded-for")
            .iter()
            .any(|v| v.contains("6.6.6.6")),
        "{:?}",
        run.headers
    );
    assert_eq!(run.header("x-real-ip"), None);
    assert_eq!(run.header("x-paragon-unknown"), None);
    assert_ne!(run.header("x-request-id"), Some("forged-by-agent"));
    let before = env.traffic().len();
    // A full URL on a host not allowed: refused, nothing sent.
    let text = bob
        .refused(
            "paragon_proxy_request",
            json!({"integration": "salesforce", "method": "GET", "path": "https://evil.example/steal"}),
        )
        .await;
    assert!(text.contains("upstream_host_forbidden"), "{text}");
    // Another member's account: refused, nothing sent.
    bob
        .refused(
            "paragon_proxy_request",
            json!({"integration": "salesforce", "method": "GET", "path": "/x", "credential": DEMO_SALESFORCE_ALICE}),
        )
        .await;
    // The agent cannot set who is calling.
    let r = bob
        .call(
            "paragon_proxy_request",
            json!({"integration": "salesforce", "method": "GET", "path": "/x", "headers": {"Authorization": "Bearer mine"}}),
        )
        .await;
    assert!(r.is_err(), "a protocol error: {r:?}");
    assert_eq!(env.traffic().len(), before, "nothing reached Paragon");
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn paragons_errors_come_back_as_tool_errors_with_paragons_message() {
    let env = gateway("").await;
    let bob = connect(&env, env.member("bob"), false).await;
    env.state().set_behaviour(credgate::emulator::Behaviour {
        tool_run_error: Some("the record is missing a Name".into()),
        ..Default::default()
    });
    let text = bob.refused("SALESFORCE_CREATE_RECORD", json!({})).await;
    assert!(
        text.contains("422") && text.contains("the record is missing a Name"),
        "{text}"
    );
    bob.client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_session_opened_on_one_replica_continues_on_another() {
    let env = gateway("").await;
    // A second replica: same config (and so the same signing key), its
    // own process state.
    let mut b = ConfigBuilder::new(&env.keys, Hosts::all(&env.emu.url()));
    b.extra_top.push_str("[mcp]\nenabled = true\n");
    b.audit_file = "audit-second.jsonl".into();
    let second = b.start().await;
    let token = env.member("bob");
    let session = session_of(&rpc(&env, Some(&token), None, initialize("2025-06-18")).await);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let got = mcp_http(
        &env,
        &second,
        "POST",
        Some(&token),
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        list.to_string(),
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(!got.json()["result"]["tools"].as_array().unwrap().is_empty());
    // Bound to bob there too.
    let got = mcp_http(
        &env,
        &second,
        "POST",
        Some(&env.member("alice")),
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", &session),
        ],
        list.to_string(),
    )
    .await;
    assert_eq!(got.status, 404);
    second.shutdown().await;
}

#[tokio::test]
async fn sessions_are_capped_per_replica_until_one_ends() {
    let env = gateway("max_sessions = 2").await;
    let token = env.member("alice");
    let first = session_of(&rpc(&env, Some(&token), None, initialize("2025-11-25")).await);
    rpc(&env, Some(&token), None, initialize("2025-11-25")).await;
    let full = rpc(&env, Some(&token), None, initialize("2025-11-25")).await;
    assert_eq!(full.status, 503, "{}", String::from_utf8_lossy(&full.body));
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(metric(&metrics, "credgate_mcp_sessions"), 2.0);
    let got = mcp_http(
        &env,
        &env.gw,
        "DELETE",
        Some(&token),
        &[("mcp-session-id", &first)],
        "",
    )
    .await;
    assert_eq!(got.status, 204);
    let again = rpc(&env, Some(&token), None, initialize("2025-11-25")).await;
    assert_eq!(again.status, 200);
}

/// contract §12: one principal filling its `max_sessions_per_principal`
/// gets 503 on `initialize` (whichever of its tokens it uses), as for the
/// replica's cap, while another member and an admin of the same user still
/// open sessions; ending one of its sessions frees its slot.
#[tokio::test]
async fn one_principal_is_capped_and_others_still_get_sessions() {
    let env = gateway("max_sessions = 10\nmax_sessions_per_principal = 2").await;
    let alice = env.member("alice");
    let first = session_of(&rpc(&env, Some(&alice), None, initialize("2025-11-25")).await);
    rpc(&env, Some(&alice), None, initialize("2025-11-25")).await;
    let another_token = env.keys.caller_token(json!({
        "sub": "acme", "principal": "alice", "jti": "alice-2",
        "iat": credgate::auth::unix_now() - 1,
    }));
    assert_ne!(another_token, alice);
    for token in [&alice, &another_token] {
        let full = rpc(&env, Some(token), None, initialize("2025-11-25")).await;
        assert_eq!(full.status, 503, "{}", String::from_utf8_lossy(&full.body));
        assert_eq!(full.code(), "unavailable");
    }
    for other in [env.member("bob"), env.admin()] {
        let got = rpc(&env, Some(&other), None, initialize("2025-11-25")).await;
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
        session_of(&got);
    }
    let metrics = scrape_metrics(&env.gw).await;
    assert_eq!(metric(&metrics, "credgate_mcp_sessions"), 4.0);
    let got = mcp_http(
        &env,
        &env.gw,
        "DELETE",
        Some(&another_token),
        &[("mcp-session-id", &first)],
        "",
    )
    .await;
    assert_eq!(got.status, 204);
    let again = rpc(&env, Some(&alice), None, initialize("2025-11-25")).await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn shadow_mode_and_rate_limits_apply_to_tool_calls() {
    let env = gateway_with("[limits]\nprincipal_rps = 1\nprincipal_burst = 6", |b| {
        b.policy("shadow_products = [\"mcp\"]")
    })
    .await;
    let bob = connect(&env, env.member("bob"), false).await;
    // Shadowed: another member's account goes as named, and is recorded.
    bob.ok(
        "SALESFORCE_CREATE_RECORD",
        json!({"credential": DEMO_SALESFORCE_ALICE}),
    )
    .await;
    let rec = wait_for_audit(&env.keys, |r| r["decision"] == "shadow_refused").await;
    assert_eq!(rec["product"], "actionkit");
    assert_eq!(rec["via"], "mcp");
    assert_eq!(rec["code"], "credential_forbidden");
    assert_eq!(rec["tool"], "SALESFORCE_CREATE_RECORD");
    // The burst runs out: a tool call over the limit is a tool error.
    let mut limited = None;
    for _ in 0..8 {
        match bob.call("SALESFORCE_SEARCH_RECORDS", json!({})).await {
            Ok(r) if r.is_error == Some(true) => {
                limited = Some(text_of(&r));
                break;
            }
            Ok(_) => {}
            Err(e) => {
                limited = Some(format!("{e:?}"));
                break;
            }
        }
    }
    let limited = limited.expect("the rate limit applies");
    assert!(
        limited.contains("rate_limited") || limited.contains("429"),
        "{limited}"
    );
}

#[tokio::test]
async fn an_allow_rule_grants_accounts_to_list_and_call_with() {
    let (env, _rules) = gateway_with_rules(
        r#"
[[rule]]
name = "erin-runs-the-sales-desk"
effect = "allow"
when = 'caller.principal == "erin" && credential.integration == "salesforce" && credential.externalId == "bob"'
"#,
    )
    .await;
    // Erin owns no account; the rule grants her bob's Salesforce one.
    let erin = connect(&env, env.member("erin"), false).await;
    let tools = erin.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| &*t.name).collect();
    assert!(
        names.iter().all(|n| n.starts_with("SALESFORCE_")),
        "{names:?}"
    );
    let sf = tools
        .iter()
        .find(|t| t.name == "SALESFORCE_SEARCH_RECORDS")
        .expect("the granted integration's tools");
    assert_eq!(credential_enum(sf), vec![DEMO_SALESFORCE_BOB.to_string()]);
    erin.ok("SALESFORCE_SEARCH_RECORDS", json!({})).await;
    let run = tool_runs(&env).pop().unwrap();
    assert_eq!(
        credential_headers(&run),
        vec![DEMO_SALESFORCE_BOB.to_string()]
    );
    let rec = wait_for_audit(&env.keys, |r| {
        r["principal"] == "erin" && r["tool"] == "SALESFORCE_SEARCH_RECORDS"
    })
    .await;
    assert_eq!(rec["reason"], "rule");
    assert_eq!(rec["rule"], "erin-runs-the-sales-desk");
    // Alice's account is not granted: refused, nothing sent.
    let before = tool_runs(&env).len();
    let text = erin
        .refused(
            "SALESFORCE_SEARCH_RECORDS",
            json!({"credential": DEMO_SALESFORCE_ALICE}),
        )
        .await;
    assert!(text.contains("credential_forbidden"), "{text}");
    assert_eq!(tool_runs(&env).len(), before);
    erin.client.cancel().await.unwrap();
}

#[tokio::test]
async fn each_tool_call_is_one_audit_record_and_the_request_carrying_it_writes_none() {
    let env = gateway("").await;
    let token = env.member("bob");
    let session = session_of(&rpc(&env, Some(&token), None, initialize("2025-11-25")).await);
    let s = Some(session.as_str());
    let call = |credential: &str| {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "SALESFORCE_SEARCH_RECORDS", "arguments": {"credential": credential}}})
    };
    let list = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"});
    assert_eq!(rpc(&env, Some(&token), s, list).await.status, 200);
    let ok = rpc(&env, Some(&token), s, call(DEMO_SALESFORCE_BOB)).await;
    assert_eq!(ok.json()["result"]["isError"], false, "{:?}", ok.json());
    let refused = rpc(&env, Some(&token), s, call(DEMO_SALESFORCE_ALICE)).await;
    assert_eq!(refused.json()["result"]["isError"], true);
    wait_for_audit(&env.keys, |r| r["decision"] == "refused").await;
    let records = audit_records(&env.keys);
    // initialize and tools/list, then one record per call (with its
    // tool), nothing else.
    assert_eq!(records.len(), 4, "{records:#?}");
    assert!(records[..2]
        .iter()
        .all(|r| r["tool"].is_null() && r["reason"] == "mcp"));
    assert!(records[2..]
        .iter()
        .all(|r| r["tool"] == "SALESFORCE_SEARCH_RECORDS"
            && r["product"] == "actionkit"
            && r["via"] == "mcp"));
    assert_eq!(records[2]["decision"], "allowed");
    assert_eq!(records[3]["decision"], "refused");
    assert_eq!(records[3]["requested"], DEMO_SALESFORCE_ALICE);
    let metrics = scrape_metrics(&env.gw).await;
    // The transport's request (tools/list; initialize is housekeeping)
    // counts as `mcp`, each call as the product
    // it reached (contract §5b).
    let counted = |product: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("credgate_requests_total{")
                    && l.contains(&format!("product=\"{product}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(counted("mcp"), 1.0, "counted as audited: {metrics}");
    assert_eq!(counted("actionkit"), 2.0, "counted as audited: {metrics}");
}

/// contract §12: every `tools/list` result says it is private to this
/// caller, cacheable no longer than `cache.credentials_ttl`, and lists the
/// tools in a stable order (here: the 2025 session revision).
#[tokio::test]
async fn tools_list_is_private_short_lived_and_in_a_stable_order() {
    let env = gateway_with("proxy_tool = true", |b| b.cache("credentials_ttl = \"7s\"")).await;
    let token = env.member("alice");
    let session = session_of(&rpc(&env, Some(&token), None, initialize("2025-11-25")).await);
    let list = |id: u32| json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
    let first = rpc(&env, Some(&token), Some(&session), list(1))
        .await
        .json();
    let second = rpc(&env, Some(&token), Some(&session), list(2))
        .await
        .json();
    let result = &first["result"];
    assert_eq!(result["cacheScope"], "private", "{result}");
    let ttl = result["ttlMs"].as_u64().expect("ttlMs is a number");
    assert!(ttl <= 7_000, "ttlMs {ttl} is longer than credentials_ttl");
    assert_eq!(result["tools"], second["result"]["tools"]);
    let names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"paragon_proxy_request"), "{names:?}");
    let mut sorted = names[..names.len() - 1].to_vec();
    sorted.sort_unstable();
    assert_eq!(names[..names.len() - 1], sorted[..], "by name");
}
