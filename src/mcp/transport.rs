//! `/mcp` (contract §12): MCP's Streamable HTTP transport, answered with
//! JSON (no server-sent events: credgate sends no requests or
//! notifications of its own, so every answer is one JSON-RPC response).
//! A request naming 2026-07-28 (`MCP-Protocol-Version`, or `_meta`'s
//! `io.modelcontextprotocol/protocolVersion`) is `stateless`'s; the table
//! is the session revisions' (2024-11-05 to 2025-11-25), and a version
//! spoken by neither is 400 with `-32022`.
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
//!
//! The session's housekeeping (`initialize`, notifications, `ping`, `GET`,
//! `DELETE`) is marked as such (`Note::housekeeping`): answered, it is no
//! allowed request in the metrics (it is audited, as every request) and
//! takes no rate-limit token, so a client with a small `principal_burst` still gets to its
//! tools. `tools/list` and `tools/call` take the caller's token before
//! any work (`rpc::dispatch`); anything else takes it when answered.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, HOST};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::message::Message;
use super::session::{self, Rejected};
use super::stateless;
use super::Agents;
use crate::auth::Identity;
use crate::config::Config;
use crate::error::GatewayError;
use crate::gateway::{Caller, ConnInfo, Note};
use crate::net::body::{read_body as read_body_limited, Body};

const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// RFC 9728's well-known path, and its form for the `/mcp` resource.
pub(super) const METADATA_PATHS: [&str; 2] = [
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-protected-resource/mcp",
];

use super::result::RawResult;
use super::rpc::{
    dispatch, json_response, rpc_http_error, rpc_response, server_info, status_only, INSTRUCTIONS,
    INVALID_REQUEST, MCP_SESSION_ID, PARSE_ERROR,
};

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
    let version = parts
        .headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok());
    let stateless = version == Some(stateless::VERSION);
    if stateless && matches!(parts.method, Method::GET | Method::DELETE) {
        // 2026-07-28 has no stream and no session to end (its session id,
        // if sent, is ignored).
        let mut resp = GatewayError::MethodNotAllowed.into_response(caller.request_id);
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(resp);
    }
    match parts.method {
        Method::GET => {
            // An ended session still answers 404, so a client learns it
            // here too.
            if let Some(id) = &session_id {
                sessions
                    .resume(rules, caller.identity, id)
                    .map_err(rejected)?;
            }
            // What MCP asks of a server without a stream; not a refusal,
            // and not a request of the caller's own (contract §12).
            note.housekeeping();
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
            note.housekeeping();
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
    if stateless || stateless::meta_version(&message) == Some(stateless::VERSION) {
        return stateless::serve(agents, &caller, &parts.headers, message, &mut note).await;
    }
    let method = message.method.as_deref();
    let id = message.id.clone();
    if method != Some("initialize") {
        // A version spoken nowhere here (header or `_meta`): -32022.
        let named = [version, stateless::meta_version(&message)];
        if let Some(v) = named
            .into_iter()
            .flatten()
            .find(|v| !stateless::SUPPORTED.contains(v))
        {
            note.invalid_call(None);
            return Ok(stateless::unsupported(id, v));
        }
    }
    if method == Some("initialize") {
        let id = id.ok_or(GatewayError::BadRequest("initialize must be a request"))?;
        let opened = initialize(agents, cfg, caller.identity, &message, id)?;
        note.housekeeping();
        return Ok(opened);
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
        note.housekeeping();
        return Ok(status_only(StatusCode::ACCEPTED));
    };
    let params = message.params.as_ref();
    let answer = dispatch(agents, &caller, &parts.headers, &method, params, &mut note).await?;
    Ok(rpc_response(id, answer, None))
}

/// The body as one JSON-RPC 2.0 message, or the JSON-RPC error of its 400.
fn parse_message(raw: &[u8]) -> Result<Message<'_>, (i64, &'static str)> {
    let message = Message::parse(raw).map_err(|_| (PARSE_ERROR, "the body is not JSON"))?;
    let Some(message) = message else {
        return Err((
            INVALID_REQUEST,
            "a POST carries one JSON-RPC message (batches are not part of this protocol version)",
        ));
    };
    if message.jsonrpc.as_deref() != Some("2.0") {
        return Err((INVALID_REQUEST, "not a JSON-RPC 2.0 message"));
    }
    Ok(message)
}

/// `initialize`: the protocol version negotiated, a new session bound to
/// this caller, and what credgate offers (tools only).
fn initialize(
    agents: &Agents,
    cfg: &Config,
    identity: &Identity,
    message: &Message<'_>,
    id: Value,
) -> Result<Response<Body>, GatewayError> {
    let requested = message
        .params
        .as_ref()
        .and_then(|p| p.protocol_version.as_deref());
    let protocol = session::negotiate(requested);
    let session = agents
        .sessions
        .open(session::Rules::of(cfg), identity, protocol)
        .map_err(rejected)?;
    let result = json!({
        "protocolVersion": protocol,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    });
    Ok(rpc_response(id, Ok(RawResult::of(&result)), Some(&session)))
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
