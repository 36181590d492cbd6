//! Agent OS (`paragon-api.md`, "Additions, December 2026"): Paragon's
//! agent layer on its `agentos` host, two APIs under
//! `/api/tools/projects/{p}` and `/api/context/projects/{p}`. Tools run as
//! the Connected User in the token's `sub`; Agent OS documents no credential
//! selection, so the emulator uses, per tool, the oldest VALID credential of
//! its integration that the token's permissions claim allows (what the
//! Proxy API does when none is named) and says which in its answer.
//!
//! Paths (the docs name the operations; the paths under the prefix are the
//! emulator's reading of their page names):
//! * `POST .../search` `{query, limit?}`: `{"tools": [tool]}` of the
//!   integrations the token may use, matching `query` in name or
//!   description (all when empty);
//! * `GET .../tools/{intentName}`: one tool, 404 `tool_not_found`;
//! * `POST .../executions` `{intentName, args}`: runs it at once; `200`
//!   with the execution, or, with `Prefer: wait=0`, `202` with `Location`
//!   pointing at it;
//! * `GET .../executions/{id}`: the execution (the caller's own only);
//! * `GET .../results/{id}[/rows|/content]`: an execution's stored result;
//! * Context API: `POST .../search` `{query}`: `{"results": [...]}`, one
//!   entry per integration the token may use; `aud` is required (as the
//!   docs say, "matching the Managed Sync auth model").
//!
//! A tool is `{intentName, description, integration, sideEffect,
//! inputSchema}`; intent names are the ActionKit action names of the
//! catalog, and `sideEffect` is `read` for names containing `LIST`, `GET`
//! or `SEARCH`, else `write`.

use http::header::{HeaderValue, LOCATION};
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::call::{json_response, required_str, ApiError, Call, Handled, Outcome};
use super::catalog;
use super::state::{lock, World};

/// Which Agent OS API a path is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Tools,
    Context,
}

/// The tools of the integrations this call's token may use.
fn tools(call: &Call<'_>, w: &World) -> Vec<Value> {
    let mut types: Vec<String> = call
        .visible(w)
        .into_iter()
        .map(|c| c.integration.clone())
        .collect();
    types.sort();
    types.dedup();
    types
        .into_iter()
        .flat_map(|t| {
            catalog::actions(&t)
                .into_iter()
                .map(move |name| tool_json(&t, &name))
        })
        .collect()
}

fn tool_json(integration: &str, name: &str) -> Value {
    let read = ["LIST", "GET", "SEARCH"].iter().any(|k| name.contains(k));
    json!({
        "intentName": name,
        "description": format!("{} (emulated)", name.replace('_', " ").to_lowercase()),
        "integration": integration,
        "sideEffect": if read { "read" } else { "write" },
        "inputSchema": {
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "additionalProperties": true,
        },
    })
}

/// Dispatches an Agent OS call; `rest` is the path after the project id.
pub(crate) fn handle(call: &Call<'_>, api: Api, rest: &str) -> Handled {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let m = call.method;
    match (api, segs.as_slice()) {
        (Api::Tools, ["search"]) if *m == Method::POST => search(call),
        (Api::Tools, ["tools", name]) if *m == Method::GET => get_tool(call, name),
        (Api::Tools, ["executions"]) if *m == Method::POST => run(call),
        (Api::Tools, ["executions", id]) if *m == Method::GET => execution(call, id),
        (Api::Tools, ["results", id, ..]) if *m == Method::GET => result(call, id),
        (Api::Context, ["search"]) if *m == Method::POST => context_search(call),
        _ => Err(ApiError::not_found(
            "route_not_found",
            "no Agent OS route has this method and path",
        )),
    }
}

fn search(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let limit = body
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(20)
        .min(100) as usize;
    let w = lock(&call.state.world);
    let found: Vec<Value> = tools(call, &w)
        .into_iter()
        .filter(|t| query.is_empty() || t.to_string().to_ascii_lowercase().contains(query.as_str()))
        .take(limit)
        .collect();
    Ok(Outcome::ok(json!({"tools": found}), None))
}

fn get_tool(call: &Call<'_>, name: &str) -> Handled {
    let w = lock(&call.state.world);
    tools(call, &w)
        .into_iter()
        .find(|t| t["intentName"] == name)
        .map(|t| Outcome::ok(t, None))
        .ok_or_else(|| ApiError::not_found("tool_not_found", "no tool with this intent name"))
}

/// `Prefer: wait=<seconds>` (RFC 7240), when given.
fn preferred_wait(call: &Call<'_>) -> Option<u64> {
    call.headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("wait=")?.trim().parse().ok())
}

fn run(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let name = required_str(&body, "intentName")?.to_string();
    let args = body.get("args").cloned().unwrap_or_else(|| json!({}));
    let mut w = lock(&call.state.world);
    let tool = tools(call, &w)
        .into_iter()
        .find(|t| t["intentName"] == name.as_str())
        .ok_or_else(|| ApiError::not_found("tool_not_found", "no tool with this intent name"))?;
    let integration = tool["integration"].as_str().unwrap_or_default().to_string();
    let credential = call.default_credential(&w, &integration)?;
    let id = crate::keygen::uuid_v4();
    let execution = json!({
        "id": id,
        "intentName": name,
        "status": "SUCCEEDED",
        "integration": integration,
        "credentialId": credential,
        "result": {"ok": true, "emulated": true, "args": args},
    });
    w.executions
        .insert(id.clone(), (call.user().to_string(), execution.clone()));
    drop(w);
    if preferred_wait(call) == Some(0) {
        let location = format!(
            "/api/tools/projects/{}/executions/{id}",
            call.state.project_id
        );
        let mut r: Response<_> = json_response(StatusCode::ACCEPTED, &execution);
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        return Ok(Outcome::raw(r, Some(credential)));
    }
    Ok(Outcome::ok(execution, Some(credential)))
}

/// The caller's own execution, else 404.
fn own_execution(call: &Call<'_>, id: &str) -> Result<Value, ApiError> {
    let w = lock(&call.state.world);
    match w.executions.get(id) {
        Some((user, e)) if user == call.user() => Ok(e.clone()),
        _ => Err(ApiError::not_found(
            "execution_not_found",
            "no execution with this id",
        )),
    }
}

fn execution(call: &Call<'_>, id: &str) -> Handled {
    let e = own_execution(call, id)?;
    let credential = e["credentialId"].as_str().map(str::to_string);
    Ok(Outcome::ok(e, credential))
}

fn result(call: &Call<'_>, id: &str) -> Handled {
    let e = own_execution(call, id)?;
    let credential = e["credentialId"].as_str().map(str::to_string);
    Ok(Outcome::ok(
        json!({"id": id, "result": e["result"]}),
        credential,
    ))
}

/// (`aud` was required by the router, as on Managed Sync.)
fn context_search(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let query = body.get("query").cloned().unwrap_or(Value::Null);
    let w = lock(&call.state.world);
    let results: Vec<Value> = call
        .visible(&w)
        .into_iter()
        .map(|c| json!({"integration": c.integration, "credentialId": c.id, "query": query, "hits": []}))
        .collect();
    Ok(Outcome::ok(json!({"results": results}), None))
}
