//! `/mcp` (contract §12): MCP's Streamable HTTP transport, answered with
//! JSON (no server-sent events: credgate sends no requests or
//! notifications of its own, so every answer is one JSON-RPC response).
//!
//! | request | answer |
//! | --- | --- |
//! | `POST` a JSON-RPC request | 200 with its JSON-RPC response |
//! | `POST` a notification or response | 202, no body |
//! | `POST` `initialize` | a new session in `Mcp-Session-Id` |
//! | `POST` anything else without a session | 400 |
//! | another principal's, ended or idle session | 404 |
//! | `GET` (no event stream is offered) | 405 |
//! | `DELETE` with a session | 204, the session ends |
//!
//! The caller was authenticated and its product checked before this
//! (the gateway's front, `gateway::handle_local`); each tool call is a request of its own
//! (`tools::call`), with its own decision and audit record.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::session::{self, Rejected};
use super::tools::{self, Called};
use super::Agents;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::GatewayError;
use crate::gateway::{Caller, ConnInfo, Note};
use crate::net::body::{empty, full, read_body as read_body_limited, Body};
use crate::paragon::routes::{Operation, Product};
use crate::policy::rules::RequestFacts;

/// The session header (any case on the wire).
const MCP_SESSION_ID: &str = "mcp-session-id";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// RFC 9728's well-known path, and its form for the `/mcp` resource.
pub(super) const METADATA_PATHS: [&str; 2] = [
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
];

// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC answer: the result, or an error code and message.
type Answer = Result<Value, (i64, String)>;

/// One `/mcp` request of an authenticated caller.
pub(super) async fn serve(
    agents: &Agents,
    caller: Caller<'_>,
    parts: Parts,
    body: Body,
    mut note: Note<'_>,
) -> Result<Response<Body>, GatewayError> {
    let cfg: &Config = &caller.generation.config;
    let sessions = &agents.sessions;
    let rules = session::Rules::of(cfg);
    // The transport's own records (a tool call writes its own).
    note.reason("mcp");
    let session_id = parts
        .headers
        .get(MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match parts.method {
        Method::GET => {
            // An ended session still answers 404, so a client learns it
            // here too.
            if let Some(id) = &session_id {
                sessions
                    .resume(rules, caller.identity, id)
                    .map_err(rejected)?;
            }
            // What MCP asks of a server without a stream; not a refusal.
            let mut resp = GatewayError::MethodNotAllowed.into_response(caller.request_id);
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
            return Ok(resp);
        }
        Method::DELETE => {
            let id = session_id.ok_or(GatewayError::BadRequest(
                "DELETE /mcp needs the Mcp-Session-Id of the session to end",
            ))?;
            sessions
                .close(rules, caller.identity, &id)
                .map_err(rejected)?;
            return Ok(status_only(StatusCode::NO_CONTENT));
        }
        _ => {}
    }
    if !accepts_json(&parts.headers) {
        return Err(GatewayError::BadRequest(
            "an MCP client must accept application/json",
        ));
    }
    let raw = read_body(cfg, body).await?;
    let message = match parse_message(&raw) {
        Ok(m) => m,
        Err((code, why)) => return Ok(rpc_http_error(code, why)),
    };
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id").cloned();
    if method == Some("initialize") {
        let id = id.ok_or(GatewayError::BadRequest("initialize must be a request"))?;
        return initialize(agents, cfg, caller.identity, &message, id);
    }
    let id_header = session_id.ok_or(GatewayError::BadRequest(
        "this MCP request needs the Mcp-Session-Id that initialize gave",
    ))?;
    let session = sessions
        .resume(rules, caller.identity, &id_header)
        .map_err(rejected)?;
    // MCP: later requests name the version negotiated (none: 2025-03-26's
    // clients, which send no header); any other is 400.
    if let Some(v) = parts.headers.get(MCP_PROTOCOL_VERSION) {
        if v.to_str().ok() != Some(session.protocol) {
            return Err(GatewayError::BadRequest(
                "MCP-Protocol-Version is not the version this session negotiated",
            ));
        }
    }
    let (Some(method), Some(id)) = (method.map(str::to_string), id) else {
        // A notification or a response to us: accepted, nothing to say.
        return Ok(status_only(StatusCode::ACCEPTED));
    };
    let params = message.get("params").and_then(Value::as_object);
    let answer = dispatch(agents, &caller, &parts.headers, &method, params, &mut note).await?;
    Ok(rpc_response(id, answer, None))
}

/// The body as one JSON-RPC 2.0 message, or the JSON-RPC error of its 400.
fn parse_message(raw: &[u8]) -> Result<Map<String, Value>, (i64, &'static str)> {
    let message: Value =
        serde_json::from_slice(raw).map_err(|_| (PARSE_ERROR, "the body is not JSON"))?;
    let Value::Object(message) = message else {
        return Err((
            INVALID_REQUEST,
            "a POST carries one JSON-RPC message (batches are not part of this protocol version)",
        ));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((INVALID_REQUEST, "not a JSON-RPC 2.0 message"));
    }
    Ok(message)
}

/// A request of an open session, by method.
async fn dispatch(
    agents: &Agents,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    method: &str,
    params: Option<&Map<String, Value>>,
    note: &mut Note<'_>,
) -> Result<Answer, GatewayError> {
    let cfg = &caller.generation.config;
    if !matches!(method, "ping" | "tools/list" | "tools/call") {
        return Ok(Err((
            METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )));
    }
    if method == "ping" {
        return Ok(Ok(json!({})));
    }
    // Allow rules (contract §5b) count as grants here as at the call, as
    // far as they can be judged without the tool: they see a tool call's
    // request with `tool` and `side_effect` empty.
    let path = format!("/projects/{}/tools", cfg.paragon.project_id);
    let facts = RequestFacts {
        product: Product::ActionKit.as_str(),
        operation: Operation::ActionKit.name(),
        method: Method::POST.as_str(),
        path: path.as_str().into(),
        proxy_host: Box::default(),
        tool: "",
        side_effect: "",
        via: "mcp",
        integration: std::sync::OnceLock::new(),
    };
    let (permitted, offered) = tools::catalog(&agents.tools, caller, &facts).await?;
    if method == "tools/list" {
        let tools = tools::listed(&permitted, &offered, cfg.mcp.proxy_tool);
        return Ok(Ok(list_result(cfg, tools)));
    }
    let (name, arguments) = match tools::call_params(params) {
        Ok(p) => p,
        Err(m) => {
            // Nothing was decided: refused as malformed (contract §12).
            note.invalid_call(None);
            return Ok(Err((INVALID_PARAMS, m)));
        }
    };
    // The call's own record is the audit of this request.
    note.delegated(true);
    let authorization = headers.get(AUTHORIZATION).cloned();
    let call = tools::Call {
        authorization,
        permitted: &permitted,
        offered: &offered,
        name: &name,
        arguments,
    };
    Ok(
        match tools::call(&agents.tools, caller.state, cfg, caller.conn, call).await {
            Called::Result(v) => Ok(v),
            Called::Invalid(m) => {
                // A tool never offered, or bad arguments: nothing was
                // decided or sent, and this request's record says it was
                // refused as malformed (contract §12), never allowed.
                note.delegated(false);
                note.invalid_call(Some(name.into()));
                Err((INVALID_PARAMS, m))
            }
        },
    )
}

/// `tools/list`'s result (contract §12, MCP's SEP-2549 caching in every
/// revision): the list differs per member, so only this caller's context
/// may reuse it (`cacheScope: private`), and for no longer than credgate
/// itself keeps the credential list it was made from
/// (`cache.credentials_ttl`).
fn list_result(cfg: &Config, tools: Vec<Value>) -> Value {
    json!({
        "tools": tools,
        "ttlMs": ttl_ms(cfg),
        "cacheScope": "private",
    })
}

/// `cache.credentials_ttl` in milliseconds.
pub(super) fn ttl_ms(cfg: &Config) -> u64 {
    u64::try_from(cfg.cache.credentials_ttl.as_millis()).unwrap_or(u64::MAX)
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp
}

/// `initialize`: the protocol version negotiated, a new session bound to
/// this caller, and what credgate offers (tools only).
fn initialize(
    agents: &Agents,
    cfg: &Config,
    identity: &Identity,
    message: &Map<String, Value>,
    id: Value,
) -> Result<Response<Body>, GatewayError> {
    let requested = message
        .get("params")
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let protocol = session::negotiate(requested);
    let session = agents
        .sessions
        .open(session::Rules::of(cfg), identity, protocol)
        .map_err(rejected)?;
    let result = json!({
        "protocolVersion": protocol,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {
            "name": "credgate",
            "title": "credgate: Paragon's tools with your own accounts",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": "Each tool acts in one of your own connected accounts. When a tool's `credential` argument lists several, choose one; accounts of other people are refused.",
    });
    Ok(rpc_response(id, Ok(result), Some(&session)))
}

fn rejected(r: Rejected) -> GatewayError {
    match r {
        Rejected::NotFound => GatewayError::SessionNotFound,
        Rejected::Full => GatewayError::Unavailable("too many open MCP sessions; retry later"),
        Rejected::PrincipalFull => GatewayError::Unavailable(
            "too many open MCP sessions of this caller; end one (DELETE /mcp) or retry later",
        ),
    }
}

/// An `Accept` that allows JSON (MCP clients send `application/json,
/// text/event-stream`); none at all is taken as anything.
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut any = false;
    for v in headers.get_all(ACCEPT) {
        any = true;
        let Ok(v) = v.to_str() else { continue };
        if v.split(',').any(|m| {
            let m = m
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(m.as_str(), "application/json" | "application/*" | "*/*")
        }) {
            return true;
        }
    }
    !any
}

async fn read_body(cfg: &Config, body: Body) -> Result<Bytes, GatewayError> {
    let limit = cfg.server.max_body_bytes;
    match tokio::time::timeout(
        cfg.server.header_read_timeout,
        read_body_limited(body, limit),
    )
    .await
    {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Err(crate::net::body::ReadError::TooLarge)) => Err(GatewayError::BodyTooLarge),
        Ok(Err(_)) => Err(GatewayError::BadRequest(
            "the request body could not be read",
        )),
        Ok(Ok(b)) => Ok(b),
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(serde_json::to_vec(v).unwrap_or_default())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn rpc_response(id: Value, answer: Answer, session: Option<&str>) -> Response<Body> {
    let v = match answer {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    };
    let mut resp = json_response(StatusCode::OK, &v);
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(MCP_SESSION_ID, s);
    }
    resp
}

/// A message that is not one JSON-RPC request: 400 with a JSON-RPC error
/// without an id.
fn rpc_http_error(code: i64, message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
    )
}

/// The URL of this gateway's `/mcp` as the caller reached it: its `Host`
/// (only host characters; else none) and the scheme of the connection or,
/// from a trusted proxy, of `X-Forwarded-Proto`.
fn resource_url(conn: &ConnInfo, trusted: bool, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return None;
    }
    let forwarded = trusted
        .then(|| headers.get("x-forwarded-proto"))
        .flatten()
        .and_then(|v| v.to_str().ok());
    let scheme = match forwarded {
        Some("https") => "https",
        Some("http") => "http",
        _ if conn.tls => "https",
        _ => "http",
    };
    Some(format!("{scheme}://{host}/mcp"))
}

/// RFC 9728's Protected Resource Metadata at its well-known path, for
/// anyone (it names where to sign in, nothing else): `None` for every
/// other request, or while `/mcp` is off.
pub(super) fn metadata(cfg: &Config, conn: &ConnInfo, parts: &Parts) -> Option<Response<Body>> {
    if !cfg.mcp.enabled || !METADATA_PATHS.contains(&parts.uri.path()) {
        return None;
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let mut resp = GatewayError::MethodNotAllowed.into_response("");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return Some(resp);
    }
    let resource = resource_url(conn, conn.trusted_proxy(cfg), &parts.headers);
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": cfg.auth.issuer.iter().collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "resource_name": "credgate",
    });
    if let Some(o) = doc.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    Some(json_response(StatusCode::OK, &doc))
}

/// A 401 from `/mcp` names where the metadata is (RFC 9728 §5.1), so an
/// MCP client can find the identity provider.
pub(super) fn challenge(
    cfg: &Config,
    conn: &ConnInfo,
    headers: &HeaderMap,
    resp: &mut Response<Body>,
) {
    let Some(resource) = resource_url(conn, conn.trusted_proxy(cfg), headers) else {
        return;
    };
    let at = resource.trim_end_matches("/mcp");
    // RFC 6750 §3.1: `error` only when a token was presented.
    let error = if headers.contains_key(AUTHORIZATION) {
        ", error=\"invalid_token\""
    } else {
        ""
    };
    let value = format!(
        "Bearer resource_metadata=\"{at}{}\"{error}",
        METADATA_PATHS[1]
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
}
