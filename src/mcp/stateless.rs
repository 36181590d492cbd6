//! MCP's stateless revision, 2026-07-28 (contract §12), beside the session
//! revisions of `transport`, chosen per request: no `initialize` and no
//! session (SEP-2575, SEP-2567); each request carries its protocol version,
//! client capabilities and client info in `_meta`; `server/discover`
//! advertises what is spoken; the method and tool name travel in headers
//! as well (SEP-2243), and credgate, which reads the body and decides on
//! it, refuses any header that disagrees with it.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET` or `DELETE` naming 2026-07-28 | 405 |
//! | `MCP-Protocol-Version`, `Mcp-Method` or (`tools/call`) `Mcp-Name` missing, malformed or not the body's | 400, `-32020` |
//! | `server/discover` | the versions and capabilities |
//! | `tools/list`, `tools/call` | as in a session; `Mcp-Session-Id` ignored, none given |
//! | a notification or response | 202 |
//!
//! credgate requires no client capability, so it never answers `-32021`
//! (MissingRequiredClientCapability).

use base64::Engine;
use http::header::HeaderMap;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::message::Message;
use super::result::RawResult;
use super::rpc::METHOD_NOT_FOUND;
use super::rpc::{self, rpc_error, rpc_response, status_only};
use super::Agents;
use crate::error::GatewayError;
use crate::gateway::{Caller, Note};
use crate::net::body::Body;

/// The stateless revision.
pub(super) const VERSION: &str = "2026-07-28";

/// Every revision `/mcp` speaks, newest first (`server/discover`, and the
/// `supported` list of `-32022`).
pub(super) const SUPPORTED: [&str; 5] = [
    VERSION,
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// `_meta`'s key for a request's protocol version.
pub(super) const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

// MCP's error codes (2026-07-28).
const HEADER_MISMATCH: i64 = -32020;
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The protocol version a message's `_meta` names, if any.
pub(super) fn meta_version<'m>(message: &'m Message<'_>) -> Option<&'m str> {
    message
        .params
        .as_ref()
        .and_then(|p| p.meta.as_ref())
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str)
}

/// The 400 of a version `/mcp` does not speak (`-32022`), with the list of
/// those it does.
pub(super) fn unsupported(id: Option<Value>, requested: &str) -> Response<Body> {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id.unwrap_or(Value::Null),
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        Some(json!({"supported": SUPPORTED, "requested": requested})),
    )
}

/// One stateless request (the body already read and parsed).
pub(super) async fn serve(
    agents: &Agents,
    caller: &Caller<'_>,
    headers: &HeaderMap,
    message: Message<'_>,
    note: &mut Note<'_>,
) -> Result<Response<Body>, GatewayError> {
    let id = message.id.clone();
    let method = message.method.as_deref();
    let (Some(method), Some(id)) = (method, id) else {
        // A notification, or a response to us: nothing to say.
        note.housekeeping();
        return Ok(status_only(StatusCode::ACCEPTED));
    };
    if let Some(requested) = meta_version(&message).filter(|v| !SUPPORTED.contains(v)) {
        note.invalid_call(None);
        return Ok(unsupported(Some(id), requested));
    }
    if let Err(why) = check_headers(headers, &message, method) {
        // Nothing was decided or sent: refused as malformed.
        note.invalid_call(None);
        return Ok(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            HEADER_MISMATCH,
            &format!("Header mismatch: {why}"),
            None,
        ));
    }
    let cfg = &caller.generation.config;
    let answer = match method {
        // The protocol's housekeeping (contract §12): no allowed request,
        // no rate-limit token.
        "server/discover" => {
            note.housekeeping();
            Ok(RawResult::of(&discover(cfg)))
        }
        "ping" => {
            note.housekeeping();
            Ok(RawResult::of(&json!({})))
        }
        "tools/list" | "tools/call" => {
            let params = message.params.as_ref();
            rpc::dispatch(agents, caller, headers, method, params, note).await?
        }
        _ => Err((METHOD_NOT_FOUND, format!("method not found: {method}"))),
    };
    let answer = answer.map(|result| result.with_first_member("resultType", r#""complete""#));
    Ok(rpc_response(id, answer, None))
}

/// `server/discover`'s result: the revisions spoken, what credgate offers
/// (tools only). The same for every caller.
fn discover(cfg: &crate::config::Config) -> Value {
    json!({
        "supportedVersions": SUPPORTED,
        "capabilities": {"tools": {"listChanged": false}},
        "instructions": rpc::INSTRUCTIONS,
        "ttlMs": rpc::ttl_ms(cfg),
        "cacheScope": "public",
        "_meta": {"io.modelcontextprotocol/serverInfo": rpc::server_info()},
    })
}

/// SEP-2243's server validation: `MCP-Protocol-Version` is present and the
/// body's `_meta` version, `Mcp-Method` the body's `method`, and for
/// `tools/call` `Mcp-Name` (Base64 sentinel decoded) its `params.name`.
fn check_headers(headers: &HeaderMap, message: &Message<'_>, method: &str) -> Result<(), String> {
    let version = one(headers, "mcp-protocol-version")?
        .ok_or("the MCP-Protocol-Version header is required")?;
    match meta_version(message) {
        Some(v) if v == version => {}
        Some(v) => {
            return Err(format!(
                "MCP-Protocol-Version header value '{version}' does not match body value '{v}'"
            ))
        }
        None => return Err(format!("the body's _meta does not carry {META_VERSION}")),
    }
    let named = one(headers, MCP_METHOD)?.ok_or("the Mcp-Method header is required")?;
    if named != method {
        return Err(format!(
            "Mcp-Method header value '{named}' does not match body value '{method}'"
        ));
    }
    if method == "tools/call" {
        let name = one(headers, MCP_NAME)?.ok_or("the Mcp-Name header is required")?;
        let name = decoded(name)?;
        let body = message
            .params
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .unwrap_or_default();
        if name != body {
            return Err("Mcp-Name header value does not match body value".into());
        }
    }
    Ok(())
}

/// A header's only value, as text (`None`: absent; twice, or not visible
/// ASCII: malformed).
fn one<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("the {name} header is sent more than once"));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| format!("the {name} header is not plain ASCII"))
}

/// A header value with SEP-2243's Base64 sentinel (`=?base64?...?=`)
/// decoded.
fn decoded(value: &str) -> Result<String, String> {
    let Some(inner) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Ok(value.to_string());
    };
    base64::engine::general_purpose::STANDARD
        .decode(inner)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "a Base64-encoded header value does not decode".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_sentinel_values_are_decoded_before_comparing() {
        assert_eq!(decoded("SLACK_SEND").unwrap(), "SLACK_SEND");
        assert_eq!(
            decoded("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        assert!(decoded("=?base64?not base64!?=").is_err());
    }
}
