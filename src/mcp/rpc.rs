//! The JSON-RPC answers of `/mcp` and the methods both its revisions
//! serve alike (contract §12): `ping`, `tools/list` and `tools/call`,
//! what credgate says of itself, and the response framing. `transport`
//! (the session revisions) and `stateless` (2026-07-28) use it.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::message::Params;
use super::result::RawResult;
use super::tools::{self, Called};
use super::Agents;
use crate::config::Config;
use crate::error::GatewayError;
use crate::gateway::{Caller, Note};
use crate::net::body::{empty, full, Body};
use crate::paragon::routes::{Operation, Product};
use crate::policy::rules::RequestFacts;

/// The session header (any case on the wire).
pub(super) const MCP_SESSION_ID: &str = "mcp-session-id";

// JSON-RPC error codes.
pub(super) const PARSE_ERROR: i64 = -32700;
pub(super) const INVALID_REQUEST: i64 = -32600;
pub(super) const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// A JSON-RPC answer: the result, or an error code and message.
pub(super) type Answer = Result<RawResult, (i64, String)>;

/// `tools/list` or `tools/call` (else `ping`; any other method is not
/// found), of an open session or a stateless request.
pub(super) async fn dispatch(
    agents: &Agents,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    method: &str,
    params: Option<&Params<'_>>,
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
        note.housekeeping();
        return Ok(Ok(RawResult::of(&json!({}))));
    }
    // Before any work (contract §5c): the list is loaded, Paragon asked.
    caller.take_rate_limit()?;
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
        return Ok(Ok(RawResult::of(&list_result(cfg, tools))));
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
        name,
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

pub(super) fn status_only(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    resp
}

/// What credgate tells an agent about itself (`initialize`,
/// `server/discover`).
pub(super) const INSTRUCTIONS: &str = "Each tool acts in one of your own connected accounts. When a tool's `credential` argument lists several, choose one; accounts of other people are refused.";

/// MCP's `Implementation` of credgate.
pub(super) fn server_info() -> Value {
    json!({
        "name": "credgate",
        "title": "credgate: Paragon's tools with your own accounts",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

pub(super) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    json_bytes(status, serde_json::to_vec(v).unwrap_or_default())
}

/// JSON already written, as a response.
fn json_bytes(status: StatusCode, json: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(json)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(super) fn rpc_response(id: Value, answer: Answer, session: Option<&str>) -> Response<Body> {
    let mut resp = match answer {
        Ok(result) => {
            let result = result.get();
            let mut out = Vec::with_capacity(48 + result.len());
            out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
            let _ = serde_json::to_writer(&mut out, &id);
            out.extend_from_slice(br#","result":"#);
            out.extend_from_slice(result.as_bytes());
            out.push(b'}');
            json_bytes(StatusCode::OK, out)
        }
        Err((code, message)) => json_response(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        ),
    };
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(MCP_SESSION_ID, s);
    }
    resp
}

/// A JSON-RPC error answered with `status` (MCP's 2026-07-28 errors are
/// 400s), with `data` when given.
pub(super) fn rpc_error(
    status: StatusCode,
    id: Value,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response<Body> {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json_response(status, &json!({"jsonrpc": "2.0", "id": id, "error": error}))
}

/// A message that is not one JSON-RPC request: 400 with a JSON-RPC error
/// without an id.
pub(super) fn rpc_http_error(code: i64, message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The response written around a raw result is the JSON-RPC response
    /// of its `Value` form, for any id.
    #[tokio::test]
    async fn a_raw_result_is_answered_as_json_rpc() {
        for id in [json!(1), json!("a\"b"), json!(null)] {
            let result = json!({"content": [{"type": "text", "text": "x"}], "isError": false});
            let resp = rpc_response(id.clone(), Ok(RawResult::of(&result)), Some("s1"));
            assert_eq!(resp.headers()[MCP_SESSION_ID], "s1");
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let got: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, json!({"jsonrpc": "2.0", "id": id, "result": result}));
        }
    }
}
