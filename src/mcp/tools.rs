//! The tools of `/mcp` (contract §12): ActionKit's tools of the
//! integrations in which the caller holds a permitted credential, each
//! with a `credential` argument, and a tool call as one ActionKit request
//! through the whole pipeline (so it is decided, limited, shadowed and
//! audited as any request is), its answer made an MCP tool result.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::message::{Arguments, Key, Message, Params};
use super::result::{success_result, tool_error, RawResult};
use crate::config::{Config, Upstream};
use crate::error::GatewayError;
use crate::gateway::headers;
use crate::gateway::{Caller, ConnInfo, Delegated, Outcome, State};
use crate::net::body::{full, read_limited, Body};
use crate::paragon::credentials::Credential;
use crate::paragon::mint::Scope;
use crate::policy::rules::RequestFacts;

/// Largest tools listing or tool answer credgate reads.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// The door a tool call comes through (`request.via`, the audit's `via`):
/// also the product `policy.shadow_products` names to shadow agents.
const VIA: &str = "mcp";

/// The name of the Proxy API tool (`mcp.proxy_tool`).
const PROXY_TOOL: &str = "paragon_proxy_request";
/// The argument naming the account a tool call uses (credgate's own: it
/// becomes `X-Paragon-Credential`, never one of the tool's parameters).
const CREDENTIAL_ARGUMENT: &str = "credential";

/// One ActionKit tool as Paragon listed it.
#[derive(Debug)]
pub(crate) struct Offered {
    pub name: Arc<str>,
    pub integration: Arc<str>,
    pub description: String,
    /// Paragon's JSON Schema of the tool's parameters.
    pub parameters: Value,
    /// Paragon's `sideEffect` (`read`, `write`, `delete`, `send`, ...).
    pub side_effect: Option<Arc<str>>,
}

/// What `/mcp` keeps across requests: the tools listed per (user, scope,
/// permitted set), like credential lists (`cache.credentials_ttl`), and
/// whether Paragon runs tools on `/actions` only.
pub(super) struct Tools {
    listed: moka::future::Cache<Box<str>, Arc<Vec<Offered>>>,
    runs_on_actions: AtomicBool,
}

impl Tools {
    pub(super) fn new(ttl: std::time::Duration, max: u64) -> Tools {
        Tools {
            listed: moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max)
                .build(),
            runs_on_actions: AtomicBool::new(false),
        }
    }
}

/// The caller's permitted credentials (the list loaded whatever the
/// caller's role), and the tools of their integrations.
pub(super) async fn catalog(
    tools: &Tools,
    caller: &Caller<'_>,
    facts: &RequestFacts<'_>,
) -> Result<(Vec<Credential>, Arc<Vec<Offered>>), GatewayError> {
    let (mut permitted, scope) = caller.usable(facts).await?;
    permitted.sort_by(|a, b| (&a.integration, &a.id).cmp(&(&b.integration, &b.id)));
    let parts = [&*caller.identity.user, scope.as_deref().unwrap_or("")];
    let ids: usize = permitted.iter().map(|c| c.id.len() + 1).sum();
    // Each part, its length (at most 20 digits) and a colon; each id and a comma.
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 21).sum::<usize>() + ids);
    for part in parts {
        // Length-prefixed: no user and scope split the same key two ways.
        let _ = write!(key, "{}:", part.len());
        key.push_str(part);
    }
    for c in &permitted {
        key.push(',');
        key.push_str(&c.id);
    }
    if permitted.is_empty() {
        return Ok((permitted, Arc::default()));
    }
    // The usual case, a listing held, awaits no more than the lookup: the
    // miss's futures (moka's loader and Paragon's request, several KB)
    // are built on the heap only on a miss, instead of sizing (and being
    // moved with) every tool call's future.
    if let Some(held) = tools.listed.get(key.as_str()).await {
        return Ok((permitted, held));
    }
    let fetched = Box::pin(fetch_once(tools, key, caller, &permitted)).await?;
    Ok((permitted, fetched))
}

/// A listing not held: fetched once however many callers miss it at once
/// (moka's loader), and kept.
async fn fetch_once(
    tools: &Tools,
    key: String,
    caller: &Caller<'_>,
    permitted: &[Credential],
) -> Result<Arc<Vec<Offered>>, GatewayError> {
    tools
        .listed
        .try_get_with(key.into_boxed_str(), fetch(caller, permitted))
        .await
        .map_err(|e: Arc<GatewayError>| match &*e {
            GatewayError::UpstreamTimeout => GatewayError::UpstreamTimeout,
            _ => GatewayError::Unavailable("Paragon's tools could not be listed"),
        })
}

/// `GET /projects/{p}/tools` (`/actions` where that is missing) with a
/// token narrowed to `permitted` (an admin's: unrestricted; passthrough:
/// the caller's own); the tools of their integrations.
async fn fetch(
    caller: &Caller<'_>,
    permitted: &[Credential],
) -> Result<Arc<Vec<Offered>>, GatewayError> {
    let g = caller.generation;
    let mut pairs: Vec<(&str, &str)> = permitted
        .iter()
        .map(|c| (&*c.integration, &*c.id))
        .collect();
    pairs.sort_unstable();
    let scope = if caller.identity.is_admin() {
        Scope::Admin
    } else {
        Scope::Many(&pairs)
    };
    let authorization = caller.own_authorization(scope).map_err(|e| {
        tracing::error!(error = %e, "no upstream token for listing tools");
        GatewayError::Unavailable("an upstream token could not be signed")
    })?;
    let project = &g.config.paragon.project_id;
    let answer = async {
        for key in ["tools", "actions"] {
            let path = format!("/projects/{project}/{key}");
            let resp = caller
                .own_get(Upstream::ActionKit, &path, authorization.clone())
                .await
                .map_err(upstream_failure)?;
            if resp.status() == StatusCode::NOT_FOUND && key == "tools" {
                continue;
            }
            if !resp.status().is_success() {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "Paragon refused to list tools"
                );
                return Err(GatewayError::Unavailable(
                    "Paragon's tools could not be listed",
                ));
            }
            let raw = read_limited(resp.into_body(), MAX_ANSWER_BYTES)
                .await
                .map_err(|e| upstream_failure(e.to_string()))?;
            let v: Value = serde_json::from_slice(&raw)
                .map_err(|_| GatewayError::Unavailable("Paragon's tools could not be listed"))?;
            return Ok(Arc::new(offered(&v, key, permitted)));
        }
        Err(GatewayError::Unavailable(
            "Paragon's tools could not be listed",
        ))
    };
    tokio::time::timeout(g.config.server.upstream_timeout, answer)
        .await
        .unwrap_or(Err(GatewayError::UpstreamTimeout))
}

fn upstream_failure(e: String) -> GatewayError {
    GatewayError::UpstreamUnavailable(crate::error::UpstreamFailure::Transport(e.into()))
}

/// Paragon's listing (`{"tools": {"<integration>": [{"type": "function",
/// "function": {...}}]}}`, or `actions` in the older shape) as the tools
/// of the integrations `permitted` covers. A name listed twice is kept once.
fn offered(v: &Value, key: &str, permitted: &[Credential]) -> Vec<Offered> {
    let mut out: Vec<Offered> = Vec::new();
    let Some(by_integration) = v.get(key).and_then(Value::as_object) else {
        return out;
    };
    let mut seen = std::collections::HashSet::new();
    for (integration, tools) in by_integration {
        let Some(c) = permitted.iter().find(|c| &*c.integration == integration) else {
            continue;
        };
        for tool in tools.as_array().into_iter().flatten() {
            let function = tool.get("function").unwrap_or(tool);
            let Some(name) = function.get("name").and_then(Value::as_str) else {
                continue;
            };
            if name.is_empty() || name == PROXY_TOOL || !seen.insert(name.to_string()) {
                continue;
            }
            let side_effect = [tool, function]
                .iter()
                .find_map(|o| o.get("sideEffect").and_then(Value::as_str))
                .map(Arc::from);
            out.push(Offered {
                name: name.into(),
                integration: c.integration.clone(),
                description: function
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                parameters: function
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
                side_effect,
            });
        }
    }
    out
}

/// Characters of a credential id that tell accounts of one title apart.
const SHORT_ID: usize = 8;

/// What an agent sees of a credential: a title (its `externalId`, else the
/// integration and the id's start).
fn title(c: &Credential) -> String {
    match c.external_id.as_deref() {
        Some(ext) if !ext.is_empty() => ext.to_string(),
        _ => format!("{} account {}", c.integration, short_id(&c.id, SHORT_ID)),
    }
}

fn short_id(id: &str, n: usize) -> &str {
    id.get(..n).unwrap_or(id)
}

/// The titles of `creds`, one each and all different, so an agent can
/// tell the accounts apart (issue 29: two accounts of one member share
/// the `externalId` its owner label gives them). A title shared by several
/// gets the account's integration where theirs differ, and where several
/// of one integration share it, the account's short id (the first
/// [`SHORT_ID`] characters of its id), or its whole id where the short
/// ones are the same too. The list credgate keeps holds no provider
/// account name to add instead.
fn titles(creds: &[&Credential]) -> Vec<String> {
    let plain: Vec<String> = creds.iter().map(|c| title(c)).collect();
    creds
        .iter()
        .zip(&plain)
        .map(|(c, t)| {
            let twins: Vec<&Credential> = creds
                .iter()
                .zip(&plain)
                .filter(|(_, u)| *u == t)
                .map(|(d, _)| *d)
                .collect();
            if twins.len() < 2 {
                return t.clone();
            }
            let mut tell: Vec<&str> = Vec::new();
            if twins.iter().any(|d| d.integration != c.integration) {
                tell.push(&c.integration);
            }
            let kin: Vec<&&Credential> = twins
                .iter()
                .filter(|d| d.integration == c.integration)
                .collect();
            if kin.len() > 1 {
                let short = short_id(&c.id, SHORT_ID);
                let alike = kin
                    .iter()
                    .filter(|d| short_id(&d.id, SHORT_ID) == short)
                    .count();
                tell.push(if alike == 1 { short } else { &c.id });
            }
            format!("{t} ({})", tell.join(" "))
        })
        .collect()
}

/// The `credential` argument: an enum of `creds`, each with its title.
fn credential_schema(creds: &[&Credential]) -> Value {
    let ids: Vec<&str> = creds.iter().map(|c| &*c.id).collect();
    let titles = titles(creds);
    let titled: Vec<Value> = creds
        .iter()
        .zip(&titles)
        .map(|(c, t)| json!({"const": &*c.id, "title": t}))
        .collect();
    let named: Vec<String> = creds
        .iter()
        .zip(&titles)
        .map(|(c, t)| format!("{} ({t})", c.id))
        .collect();
    json!({
        "type": "string",
        "enum": ids,
        "oneOf": titled,
        "description": format!("Which of your accounts to act with: {}", named.join(", ")),
    })
}

/// The input schema Paragon gave, with the `credential` argument added
/// (required when there are several to choose from).
fn with_credential(parameters: &Value, creds: &[&Credential]) -> Value {
    let mut schema = match parameters {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    schema.insert("type".into(), Value::from("object"));
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    if let Some(p) = properties.as_object_mut() {
        p.insert(CREDENTIAL_ARGUMENT.into(), credential_schema(creds));
    }
    if creds.len() > 1 {
        let required = schema
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !required.is_array() {
            *required = Value::Array(Vec::new());
        }
        if let Some(r) = required.as_array_mut() {
            if !r.iter().any(|v| v == CREDENTIAL_ARGUMENT) {
                r.push(Value::from(CREDENTIAL_ARGUMENT));
            }
        }
    }
    Value::Object(schema)
}

/// `tools/list`'s `tools`: each offered tool with the caller's accounts of
/// its integration, and the Proxy API tool when `mcp.proxy_tool` is on.
/// In a stable order (contract §12): by name (names are unique), the Proxy
/// API tool last, whatever order Paragon listed them in; each
/// `credential` enum in `permitted`'s order (by integration, then id).
pub(super) fn listed(
    permitted: &[Credential],
    offered: &[Offered],
    proxy_tool: bool,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(offered.len() + 1);
    let mut by_name: Vec<&Offered> = offered.iter().collect();
    by_name.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for tool in by_name {
        let creds: Vec<&Credential> = permitted
            .iter()
            .filter(|c| c.integration == tool.integration)
            .collect();
        let mut t = json!({
            "name": &*tool.name,
            "description": tool.description,
            "inputSchema": with_credential(&tool.parameters, &creds),
        });
        if let Some(se) = tool.side_effect.as_deref() {
            t["annotations"] = json!({
                "readOnlyHint": se == "read",
                "destructiveHint": se == "delete",
            });
            t["_meta"] = json!({"paragon/sideEffect": se});
        }
        out.push(t);
    }
    if proxy_tool && !permitted.is_empty() {
        out.push(proxy_tool_schema(permitted));
    }
    out
}

fn proxy_tool_schema(permitted: &[Credential]) -> Value {
    let mut integrations: Vec<&str> = permitted.iter().map(|c| &*c.integration).collect();
    integrations.dedup();
    let creds: Vec<&Credential> = permitted.iter().collect();
    let mut schema = json!({
        "type": "object",
        "properties": {
            "integration": {"type": "string", "enum": integrations},
            "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "path": {
                "type": "string",
                "description": "The provider API path (starting with /), or a full URL on a host credgate allows",
            },
            "body": {"description": "The JSON body to send"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["integration", "method", "path"],
    });
    schema["properties"][CREDENTIAL_ARGUMENT] = credential_schema(&creds);
    if integrations.len() < creds.len() {
        schema["properties"][CREDENTIAL_ARGUMENT]["description"] = Value::from(format!(
            "Required when you hold several accounts of the integration. {}",
            schema["properties"][CREDENTIAL_ARGUMENT]["description"]
                .as_str()
                .unwrap_or("")
        ));
    }
    json!({
        "name": PROXY_TOOL,
        "description": "Call an integration's own API through Paragon's Proxy API with one of your accounts",
        "inputSchema": schema,
    })
}

/// A tool call's answer: a tool result (success or a tool error), or a
/// protocol error (an unknown tool, malformed arguments).
pub(super) enum Called {
    Result(RawResult),
    Invalid(String),
}

/// One `tools/call`: the caller's own `Authorization`, what it may use
/// and was offered, the tool and its arguments.
pub(super) struct Call<'a> {
    pub authorization: Option<HeaderValue>,
    pub permitted: &'a [Credential],
    pub offered: &'a [Offered],
    pub name: &'a str,
    pub arguments: &'a Arguments<'a>,
}

/// One tool call, through the whole pipeline as an ActionKit (or Proxy
/// API) request, on `cfg` (the generation of the `/mcp` request).
pub(super) async fn call(
    tools: &Tools,
    state: &State,
    cfg: &Config,
    conn: &ConnInfo,
    call: Call<'_>,
) -> Called {
    let conn = &conn.for_delegated_calls();
    let tr = match build(
        cfg,
        call.name,
        call.arguments,
        call.authorization,
        Some(call.offered),
    ) {
        Ok(tr) => tr,
        Err(message) => return Called::Invalid(message),
    };
    let project = &cfg.paragon.project_id;
    let answer = if tr.parameters.is_some() {
        run_actionkit(tools, state, conn, project, &tr).await
    } else {
        run(state, conn, tr.request(&tr.path, tr.body.clone())).await
    };
    Called::Result(match answer {
        Ok((resp, outcome)) => {
            // The answer's body too is bounded by `server.upstream_timeout`.
            let within = cfg.server.upstream_timeout;
            tool_result(resp, outcome, call.permitted, within).await
        }
        Err(message) => tool_error(message),
    })
}

/// The request a `tools/call` would make, for `/admin/decide` (contract
/// §9): judged by the pipeline without running it, so without the tool
/// list either (an ActionKit tool's integration is read from its name, as
/// for any ActionKit request, and its `sideEffect` is not known).
pub fn dry_run_request(
    cfg: &Config,
    message: &[u8],
    authorization: Option<HeaderValue>,
) -> Result<Request<Body>, String> {
    let message = match Message::parse(message) {
        Ok(Some(m)) => m,
        _ => return Err(format!("{DRY_RUN_ONLY}: the body is not one")),
    };
    if message.method.as_deref() != Some("tools/call") {
        return Err(DRY_RUN_ONLY.into());
    }
    let (name, arguments) = call_params(message.params.as_ref())?;
    let tr = build(cfg, name, arguments, authorization, None)?;
    match tr.parameters {
        Some(_) => tr.actionkit(&cfg.paragon.project_id, false),
        None => tr.request(&tr.path, tr.body.clone()),
    }
}

/// What `/admin/decide` judges on `/mcp` (contract §9).
pub const DRY_RUN_ONLY: &str = "on /mcp, /admin/decide judges one `tools/call` message (POST)";

/// `tools/call`'s tool name and arguments (an object, or none), borrowed
/// from the message.
pub(super) fn call_params<'p>(
    params: Option<&'p Params<'p>>,
) -> Result<(&'p str, &'p Arguments<'p>), String> {
    let Some(params) = params else {
        return Err("tools/call needs a tool `name`".into());
    };
    let name = params
        .name
        .as_deref()
        .ok_or("tools/call needs a tool `name`")?;
    let arguments = params
        .arguments()
        .map_err(|()| "`arguments` must be an object".to_string())?;
    Ok((name, arguments))
}

/// A tool call's internal request, before its path is fixed: the proxy
/// tool's, or an ActionKit tool's (one of `offered`, when the list is
/// known). `Err` is an invalid call (an unknown tool, bad arguments).
fn build<'a>(
    cfg: &Config,
    name: &str,
    arguments: &'a Arguments<'a>,
    authorization: Option<HeaderValue>,
    offered: Option<&[Offered]>,
) -> Result<ToolRequest<'a>, String> {
    let credential = match arguments.get(&Key(Cow::Borrowed(CREDENTIAL_ARGUMENT))) {
        None => None,
        Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
            .map_err(|_| "`credential` must be a string".to_string())?,
    };
    let mut tr = if name == PROXY_TOOL && cfg.mcp.proxy_tool {
        proxy_request(&cfg.paragon.project_id, &tree(arguments))?
    } else {
        let call = match offered {
            Some(offered) => {
                let Some(tool) = offered.iter().find(|t| &*t.name == name) else {
                    return Err(format!("unknown tool: {name}"));
                };
                Delegated {
                    name: tool.name.clone(),
                    side_effect: tool.side_effect.clone(),
                    integration: Some(tool.integration.clone()),
                    via: VIA,
                }
            }
            None => Delegated {
                name: name.into(),
                side_effect: None,
                integration: None,
                via: VIA,
            },
        };
        ToolRequest {
            method: Method::POST,
            path: String::new(),
            proxy_url: None,
            body: Bytes::new(),
            headers: Vec::new(),
            call,
            parameters: Some(arguments),
        }
    };
    if let Some(a) = authorization {
        tr.headers.push((AUTHORIZATION, a));
    }
    if let Some(c) = credential {
        match HeaderValue::from_str(&c) {
            Ok(v) => tr
                .headers
                .push((HeaderName::from_static(headers::X_PARAGON_CREDENTIAL), v)),
            Err(_) => return Err("`credential` is not a credential id".into()),
        }
    }
    Ok(tr)
}

/// Runs an ActionKit tool: `POST /tools {tool, parameters}`, and where
/// Paragon has no `/tools` (404) `POST /actions {action, parameters}`, which
/// is then used from the start.
async fn run_actionkit(
    tools: &Tools,
    state: &State,
    conn: &ConnInfo,
    project: &str,
    tr: &ToolRequest<'_>,
) -> Result<(Response<Body>, Outcome), String> {
    let on_actions = &tools.runs_on_actions;
    let tools = !on_actions.load(Ordering::Relaxed);
    let first = run(state, conn, tr.actionkit(project, !tools)).await?;
    if tools && first.1.forwarded && first.0.status() == StatusCode::NOT_FOUND {
        let second = run(state, conn, tr.actionkit(project, true)).await?;
        if second.1.forwarded && second.0.status() != StatusCode::NOT_FOUND {
            on_actions.store(true, Ordering::Relaxed);
        }
        return Ok(second);
    }
    Ok(first)
}

/// An internal request of a tool call, before its path is fixed.
struct ToolRequest<'a> {
    method: Method,
    path: String,
    proxy_url: Option<HeaderValue>,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    call: Delegated,
    /// An ActionKit tool's parameters: the call's arguments but
    /// `credential`, as sent (`None`: the Proxy API tool).
    parameters: Option<&'a Arguments<'a>>,
}

impl ToolRequest<'_> {
    /// `POST /tools {tool, parameters}`, or `/actions {action, parameters}`.
    fn actionkit(&self, project: &str, actions: bool) -> Result<Request<Body>, String> {
        let (path, key) = if actions {
            (format!("/projects/{project}/actions"), "action")
        } else {
            (format!("/projects/{project}/tools"), "tool")
        };
        // `{"tool":NAME,"parameters":{...}}` written straight from the
        // arguments, neither copied nor built as a tree first.
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(b"{\"");
        body.extend_from_slice(key.as_bytes());
        body.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut body, &*self.call.name);
        body.extend_from_slice(b",\"parameters\":");
        body.push(b'{');
        let parameters = self.parameters.into_iter().flatten();
        let mut first = true;
        for (k, v) in parameters.filter(|(k, _)| k.0 != CREDENTIAL_ARGUMENT) {
            if !first {
                body.push(b',');
            }
            first = false;
            let _ = serde_json::to_writer(&mut body, &*k.0);
            body.push(b':');
            body.extend_from_slice(v.get().as_bytes());
        }
        body.extend_from_slice(b"}}");
        self.request(&path, Bytes::from(body))
    }

    fn request(&self, path: &str, body: Bytes) -> Result<Request<Body>, String> {
        // Built in place (not through `request::Builder`, which moves the
        // whole request head at each step).
        let uri =
            http::Uri::try_from(path).map_err(|e| format!("the call could not be made: {e}"))?;
        let json = !body.is_empty();
        let mut req = Request::new(full(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        req.extensions_mut().insert(self.call.clone());
        let map = req.headers_mut();
        map.reserve(self.headers.len() + 2);
        if json {
            map.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in &self.headers {
            map.append(name, value.clone());
        }
        if let Some(u) = &self.proxy_url {
            map.append(headers::X_PARAGON_PROXY_URL, u.clone());
        }
        Ok(req)
    }
}

/// Headers an agent may not set on the Proxy API tool: who is calling,
/// the length of the body, and the credential and target, which are the
/// tool's own arguments. Everything else it sets meets the rules of any
/// member request (contract §7: hop-by-hop and forwarding headers removed,
/// since a tool call is never from a trusted proxy; unknown `X-Paragon-*`
/// removed for members).
fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "host" | "content-length" | "cookie"
    ) || headers::spelled_as(&n, headers::X_PARAGON_CREDENTIAL)
        || headers::spelled_as(&n, headers::X_PARAGON_PROXY_URL)
}

/// The arguments as a tree, for the Proxy API tool, which reads them.
fn tree(arguments: &Arguments<'_>) -> Map<String, Value> {
    arguments
        .iter()
        .filter_map(|(k, v)| Some((k.0.to_string(), serde_json::from_str(v.get()).ok()?)))
        .collect()
}

/// The Proxy API tool's request: `{method} /projects/{p}/sdk/proxy/{integration}{path}`,
/// or the full URL in `X-Paragon-Proxy-Url` (the pipeline checks its host
/// against `policy.proxy_url_hosts`, and the path's normal form).
fn proxy_request(project: &str, args: &Map<String, Value>) -> Result<ToolRequest<'static>, String> {
    let text = |args: &Map<String, Value>, k: &str| -> Result<String, String> {
        args.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("`{k}` is required and must be a string"))
    };
    let integration = text(args, "integration")?;
    let method = text(args, "method")?;
    let path = text(args, "path")?;
    let method: Method = match method.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => method.parse().map_err(|_| "bad method")?,
        _ => return Err("`method` must be GET, POST, PUT, PATCH or DELETE".into()),
    };
    if integration.is_empty()
        || !integration
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err("`integration` is not an integration type".into());
    }
    let body = match args.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    };
    let mut headers = Vec::new();
    if let Some(h) = args.get("headers") {
        let Some(h) = h.as_object() else {
            return Err("`headers` must be an object of strings".into());
        };
        for (name, value) in h {
            let value = value
                .as_str()
                .ok_or("`headers` must be an object of strings")?;
            let parsed = HeaderName::from_bytes(name.as_bytes());
            let Some(parsed) = parsed.ok().filter(|_| !reserved(name)) else {
                return Err(format!("the header {name:?} may not be set"));
            };
            let v = HeaderValue::from_str(value)
                .map_err(|_| format!("the header {name:?} has a value that cannot be sent"))?;
            headers.push((parsed, v));
        }
    }
    let base = format!("/projects/{project}/sdk/proxy/{integration}");
    let (path, proxy_url) = if path.starts_with('/') && !path.starts_with("//") {
        (format!("{base}{path}"), None)
    } else {
        let v = HeaderValue::from_str(&path).map_err(|_| "`path` cannot be sent".to_string())?;
        (base, Some(v))
    };
    if path.parse::<http::Uri>().is_err() {
        return Err("`path` is not a valid request path (encode spaces and the like)".into());
    }
    Ok(ToolRequest {
        method,
        path,
        proxy_url,
        body,
        headers,
        call: Delegated {
            name: PROXY_TOOL.into(),
            side_effect: None,
            integration: Some(integration.into()),
            via: VIA,
        },
        parameters: None,
    })
}

/// Runs one internal request through the pipeline (boxed: the pipeline
/// is what called `/mcp` in the first place).
async fn run(
    state: &State,
    conn: &ConnInfo,
    req: Result<Request<Body>, String>,
) -> Result<(Response<Body>, Outcome), String> {
    Ok(crate::gateway::run_internal(state, conn, req?).await)
}

/// An internal request's answer, at most [`MAX_ANSWER_BYTES`]
/// (`net::body::read_body`, not `read_limited`: the latter's generic error
/// bound trips the compiler's `Send` check on this recursive path).
async fn read_answer(body: Body) -> Result<Bytes, String> {
    crate::net::body::read_body(body, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            crate::net::body::ReadError::TooLarge => {
                format!("it is larger than {MAX_ANSWER_BYTES} bytes")
            }
            crate::net::body::ReadError::Io(e) => e.to_string(),
        })
}

/// What an agent is told of credgate's refusal of its call: the code, and
/// what to do about it in the agent's own terms. A deny rule's refusal says
/// it was a policy rule (not which), so the agent does not try its other
/// accounts as it would for an account not permitted; `credential_required`
/// names the tool's `credential` argument and the accounts to choose from
/// (an agent has no `X-Paragon-Credential` header to set).
fn refusal_text(answer: Option<&Value>, reason: &str, permitted: &[Credential]) -> String {
    let field = |k: &str| {
        answer
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let code = field("code");
    if reason == "rule" {
        return format!(
            "credgate refused this call ({code}): refused by a policy rule of this deployment; \
             another account or a retry will not change that"
        );
    }
    let candidates = answer
        .and_then(|v| v.get("candidates"))
        .and_then(Value::as_array);
    match candidates {
        Some(c) if code == "credential_required" => {
            let ids: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
            let creds: Vec<&Credential> = ids
                .iter()
                .filter_map(|id| permitted.iter().find(|p| &*p.id == *id))
                .collect();
            let titles = titles(&creds);
            let named: Vec<String> = ids
                .iter()
                .map(|id| match creds.iter().position(|p| &*p.id == *id) {
                    Some(i) => format!("{id} ({})", titles[i]),
                    None => id.to_string(),
                })
                .collect();
            format!(
                "credgate refused this call ({code}): several of your accounts can make it; \
                 choose one with the `credential` argument: {}",
                named.join(", ")
            )
        }
        _ => format!("credgate refused this call ({code}): {}", field("message")),
    }
}

/// The tool result of an internal request's answer: credgate's refusal
/// (nothing reached Paragon) or Paragon's error as a tool error with its
/// message; a success as text, and as structured content when a JSON
/// object.
async fn tool_result(
    resp: Response<Body>,
    outcome: Outcome,
    permitted: &[Credential],
    within: std::time::Duration,
) -> RawResult {
    let status = resp.status();
    let read = tokio::time::timeout(within, read_answer(resp.into_body())).await;
    let raw = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return tool_error(format!("Paragon's answer could not be read: {e}")),
        Err(_) => return tool_error("Paragon's answer did not arrive in time".into()),
    };
    if !outcome.forwarded || !status.is_success() {
        let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
        if !outcome.forwarded {
            return tool_error(refusal_text(parsed.as_ref(), outcome.reason, permitted));
        }
        let message = parsed
            .as_ref()
            .and_then(|v| {
                ["message", "error"]
                    .iter()
                    .find_map(|k| v.get(*k).and_then(Value::as_str))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&raw).chars().take(2000).collect());
        return tool_error(format!("Paragon answered {}: {message}", status.as_u16()));
    }
    success_result(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> Offered {
        Offered {
            name: name.into(),
            integration: "slack".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
            side_effect: None,
        }
    }

    fn credential(id: &str, ext: Option<&str>) -> Credential {
        let me = json!({"authenticated": true, "integrations": {"slack": {"allCredentials": [
            {"id": id, "status": "VALID", "externalId": ext}
        ]}}});
        let list =
            crate::paragon::credentials::CredentialList::parse(me.to_string().as_bytes()).unwrap();
        list.credentials[0].clone()
    }

    /// Issue 29: two accounts with one `externalId` get different titles;
    /// a title nobody shares is left as it is.
    #[test]
    fn accounts_of_one_label_get_titles_of_their_own() {
        let a = credential("a11ce000-51ac-4000-8000-000000000001", Some("alice"));
        let b = credential("b0b00000-51ac-4000-8000-000000000002", Some("alice"));
        let c = credential("c0c00000-51ac-4000-8000-000000000003", Some("carol"));
        assert_eq!(
            titles(&[&a, &b, &c]),
            ["alice (a11ce000)", "alice (b0b00000)", "carol"]
        );
        // Short ids alike too: the whole id.
        let a2 = credential("a11ce000-51ac-4000-8000-000000000002", Some("alice"));
        assert_eq!(
            titles(&[&a, &a2]),
            [
                "alice (a11ce000-51ac-4000-8000-000000000001)",
                "alice (a11ce000-51ac-4000-8000-000000000002)"
            ]
        );
        // Of several integrations (the Proxy API tool's enum): the
        // integration first, the id where it is not enough.
        let sf = {
            let me = json!({"authenticated": true, "integrations": {"salesforce": {"allCredentials": [
                {"id": "a11ce000-5a1e-4000-8000-000000000001", "status": "VALID", "externalId": "alice"}
            ]}}});
            crate::paragon::credentials::CredentialList::parse(me.to_string().as_bytes())
                .unwrap()
                .credentials[0]
                .clone()
        };
        assert_eq!(
            titles(&[&sf, &a, &b]),
            [
                "alice (salesforce)",
                "alice (slack a11ce000)",
                "alice (slack b0b00000)"
            ]
        );
        let schema = credential_schema(&[&a, &b]);
        let one_of: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["title"].as_str().unwrap())
            .collect();
        assert_eq!(one_of, ["alice (a11ce000)", "alice (b0b00000)"]);
    }

    /// Issue 29: a deny rule's refusal reads as a policy refusal, without
    /// the rule's name; `credential_required` speaks of the `credential`
    /// argument, never of a header.
    #[test]
    fn refusals_are_told_in_an_agents_terms() {
        let forbidden = json!({"code": "credential_forbidden", "message": "the requested credential is not permitted for this caller"});
        let text = refusal_text(Some(&forbidden), "rule", &[]);
        assert!(text.contains("refused by a policy rule"), "{text}");
        assert!(!text.contains("not permitted"), "{text}");
        let text = refusal_text(Some(&forbidden), "no_grant", &[]);
        assert!(text.contains("not permitted"), "{text}");
        let a = credential("a11ce000-51ac-4000-8000-000000000001", Some("alice"));
        let required = json!({"code": "credential_required",
            "message": "several credentials are permitted; name one with X-Paragon-Credential",
            "candidates": [&*a.id]});
        let text = refusal_text(Some(&required), "ambiguous", &[a]);
        assert!(text.contains("`credential` argument"), "{text}");
        assert!(
            text.contains("a11ce000-51ac-4000-8000-000000000001 (alice)"),
            "{text}"
        );
        assert!(!text.contains("X-Paragon-Credential"), "{text}");
    }

    /// contract §12: `tools/list` is in a stable order whatever order
    /// Paragon listed the tools in.
    #[test]
    fn tools_are_listed_by_name_whatever_paragons_order() {
        let names = |offered: &[Offered]| -> Vec<String> {
            listed(&[], offered, false)
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string())
                .collect()
        };
        let one = [
            tool("SLACK_SEND"),
            tool("SLACK_LIST"),
            tool("SLACK_ARCHIVE"),
        ];
        let other = [
            tool("SLACK_LIST"),
            tool("SLACK_ARCHIVE"),
            tool("SLACK_SEND"),
        ];
        assert_eq!(names(&one), ["SLACK_ARCHIVE", "SLACK_LIST", "SLACK_SEND"]);
        assert_eq!(names(&one), names(&other));
    }
}
