//! `POST /admin/decide` (contract §9): a request described in JSON runs
//! through the very pipeline traffic takes (authentication, route, policy,
//! the credential list from the cache or Paragon, shadow mode, the
//! rewrite) and stops before the forward. The answer is the decision, its
//! reason, the credential routed, and the request Paragon would have
//! received with its tokens redacted (the minted token's claims shown).
//! Nothing reaches Paragon but `/sdk/me` loads: a trigger subscription
//! whose credential this replica does not know is answered as such, not
//! looked up. No audit record and no request metric is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::gateway::State;
use crate::net::body;

/// The question: a request as a caller would send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The caller's token (sent as `Authorization: Bearer`).
    pub token: Option<String>,
    /// Or a what-if caller, judged by the config's claim rules.
    pub identity: Option<WhatIf>,
    #[serde(default = "get")]
    pub method: String,
    /// Path and query, as the caller would send them.
    pub path: String,
    /// Header name to a value or a list of values.
    #[serde(default)]
    pub headers: BTreeMap<String, OneOrMany>,
    /// A string is sent as is; any other JSON value as its JSON text.
    pub body: Option<Value>,
}

fn get() -> String {
    "GET".into()
}

/// A caller without a token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    pub user: String,
    pub principal: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub claims: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Runs the decision; `Err` is a malformed question (400).
pub async fn decide(state: &State, q: DecideRequest) -> Result<Value, String> {
    let generation = state.current.load_full();
    let identity = match (&q.token, q.identity) {
        (Some(_), Some(_)) => return Err("give `token` or `identity`, not both".into()),
        (_, Some(w)) => Some(Arc::new(generation.auth.what_if(
            &w.user,
            w.principal.as_deref(),
            w.admin,
            w.claims,
        )?)),
        (_, None) => None,
    };
    let mut req = request(&q.method, &q.path, &q.headers, q.token.as_deref(), q.body)?;
    if generation.config.mcp.enabled && req.uri().path() == "/mcp" {
        req = tool_call(&generation.config, req).await?;
    }
    let judged = crate::gateway::judge::judge(state, req, identity).await;
    let (request_id, decision, refused, status) = (
        &judged.decision_id,
        judged.decision,
        judged.refused,
        judged.status,
    );
    let answer_body = &judged.body;
    let mut out = judged.record.clone();
    let o = out.as_object_mut().expect("a record is an object");
    for k in [
        "request_id",
        "client_request_id",
        "removed_headers",
        "status",
        "latency_ms",
        // Nothing was forwarded, nor could the client go away.
        "forwarded",
        "outcome",
    ] {
        o.remove(k);
    }
    if let Some(text) = crate::policy::explain_reason(judged.reason) {
        o.insert("explanation".into(), Value::from(text));
    }
    if let Some(i) = &judged.caller {
        o.insert(
            "caller".into(),
            json!({
                "user": &*i.user,
                "principal": &*i.principal,
                "actor": i.actor.as_deref(),
                "admin": i.is_admin(),
            }),
        );
    }
    o.insert(
        "credential".into(),
        match &judged.credential {
            Some(c) => json!({
                "id": &*c.id,
                "integration": &*c.integration,
                "externalId": c.external_id.as_deref(),
                "status": c.status.as_str(),
            }),
            None => Value::Null,
        },
    );
    if !judged.rules.is_empty() {
        o.insert("rules".into(), Value::from(judged.rules.clone()));
    }
    if refused {
        // credgate's own answer, as the caller would get it.
        o.insert(
            "response".into(),
            json!({"status": status, "body": serde_json::from_slice::<Value>(answer_body).unwrap_or(Value::Null)}),
        );
    }
    if let Some(up) = &judged.upstream {
        o.insert("upstream".into(), describe(up));
    }
    tracing::info!(decision_id = %request_id, decision, reason = judged.reason, "admin decide");
    Ok(out)
}

/// A question about `/mcp` (contract §9): the `tools/call` in its body,
/// as the request the call would make, judged by the pipeline and never
/// run: no tool list is fetched, no session opened (so a tool not offered
/// to the caller is judged on its name, by the credential it would use).
async fn tool_call(
    cfg: &crate::config::Config,
    req: Request<body::Body>,
) -> Result<Request<body::Body>, String> {
    const ONLY: &str = crate::mcp::DRY_RUN_ONLY;
    if req.method() != Method::POST {
        return Err(ONLY.into());
    }
    let authorization = req.headers().get(AUTHORIZATION).cloned();
    let raw = req
        .into_body()
        .collect()
        .await
        .map_err(|_| "the body could not be read")?
        .to_bytes();
    crate::mcp::dry_run_request(cfg, &raw, authorization)
}

/// The request the question describes.
fn request(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, OneOrMany>,
    token: Option<&str>,
    body_value: Option<Value>,
) -> Result<Request<body::Body>, String> {
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| "`method` is not an HTTP method")?;
    if !path.starts_with('/') {
        return Err("`path` must start with /".into());
    }
    let uri: Uri = path.parse().map_err(|_| "`path` is not a request target")?;
    let bytes = match body_value {
        None => bytes::Bytes::new(),
        Some(Value::String(s)) => s.into(),
        Some(v) => v.to_string().into(),
    };
    let mut req = Request::new(body::full(bytes));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    for (name, values) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header `{name}` is not a header name"))?;
        if name == AUTHORIZATION && token.is_some() {
            return Err("give the token in `token` or in headers.authorization, not both".into());
        }
        let values: Vec<&str> = match values {
            OneOrMany::One(v) => vec![v.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        };
        for v in values {
            let v = HeaderValue::from_str(v)
                .map_err(|_| format!("header `{name}` has a value that is not visible ASCII"))?;
            h.append(name.clone(), v);
        }
    }
    if let Some(t) = token {
        let v =
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| "`token` is not a token")?;
        h.insert(AUTHORIZATION, v);
    }
    Ok(req)
}

/// The upstream request, its `Authorization` redacted to the claims of the
/// token (never its signature or the token itself).
fn describe(up: &Request<body::Body>) -> Value {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut token_claims = Value::Null;
    if let Some(host) = up.uri().authority() {
        headers.insert("host".into(), vec![host.to_string()]);
    }
    for (name, value) in up.headers() {
        let shown = if name == AUTHORIZATION {
            token_claims = claims_of(value);
            "Bearer <redacted>".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        headers.entry(name.to_string()).or_default().push(shown);
    }
    json!({
        "method": up.method().as_str(),
        "url": redacted_url(up.uri()),
        "headers": headers,
        "token_claims": token_claims,
    })
}

/// The upstream URL with the install flow's `userToken` (a token, contract
/// §13) redacted like `Authorization`.
fn redacted_url(uri: &http::Uri) -> String {
    let Some(q) = uri.query() else {
        return uri.to_string();
    };
    let query: Vec<&str> = q
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if name.eq_ignore_ascii_case("userToken") {
                "userToken=<redacted>"
            } else {
                pair
            }
        })
        .collect();
    let base = uri.to_string();
    let base = base.split_once('?').map_or(&*base, |(b, _)| b);
    format!("{base}?{}", query.join("&"))
}

/// The claims of a `Bearer` JWT, decoded without verification: credgate
/// minted it a moment ago, or it is the caller's own (passthrough).
fn claims_of(v: &HeaderValue) -> Value {
    v.to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}
