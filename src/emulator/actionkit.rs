//! ActionKit, `/projects/{p}/actions`, `/tools`, `/triggers` and
//! `/trigger-subscriptions` on Paragon's `actionkit` host
//! (`paragon-api.md` §4.4). Running an action resolves its integration from
//! the action name's prefix and its credential like the Proxy API does;
//! listings resolve a credential only when one is named or the caller has
//! exactly one. Trigger subscriptions are kept per user.

use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::call::{required_str, ApiError, Call, Handled, Outcome};
use super::catalog;
use super::state::{lock, SubscriptionRec, World};
use super::util::{format_iso, now_ms, query_value};

/// The integration types the caller has a usable credential of, narrowed
/// by the `integrations=a,b` query parameter when given.
fn available_types(call: &Call<'_>, w: &World) -> Vec<String> {
    let filter: Option<Vec<String>> = query_value(call.query, "integrations").map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let mut types: Vec<String> = call
        .visible(w)
        .into_iter()
        .map(|c| c.integration.clone())
        .filter(|t| filter.as_ref().is_none_or(|f| f.contains(t)))
        .collect();
    types.sort();
    types.dedup();
    types
}

/// `GET /actions` and `GET /tools` (the Tools API's name for it):
/// `{"<key>": {"<type>": [{"type": "function", "function": {...}}]},
/// "errors": []}`, `key` being `actions` or `tools`.
pub(crate) fn list_actions(call: &Call<'_>, key: &str) -> Handled {
    let w = lock(&call.state.world);
    let credential = call.optional_credential(&w)?;
    let mut actions = Map::new();
    for t in available_types(call, &w) {
        let list: Vec<Value> = catalog::actions(&t)
            .into_iter()
            .map(|name| {
                json!({
                    "type": "function",
                    "function": {
                        "sideEffect": catalog::side_effect(&name),
                        "name": name,
                        "description": format!("{} (emulated)", name.replace('_', " ").to_lowercase()),
                        "parameters": {
                            "type": "object",
                            "properties": {"input": {"type": "string"}},
                            "required": [],
                            "additionalProperties": true,
                        },
                    },
                })
            })
            .collect();
        actions.insert(t, Value::Array(list));
    }
    Ok(Outcome::ok(json!({key: actions, "errors": []}), credential))
}

/// `POST /actions` (`{"action", "parameters"}`) and `POST /tools`
/// (`{"tool", "parameters"}`): echoes the call. An action name that matches
/// none of the caller's integration types is 400.
pub(crate) fn run(call: &Call<'_>, key: &'static str) -> Handled {
    let body = call.json_object()?;
    let name = required_str(&body, key)?;
    let parameters = body.get("parameters").cloned().unwrap_or_else(|| json!({}));
    let w = lock(&call.state.world);
    let user_types: Vec<&str> = w
        .user_credentials(call.user())
        .into_iter()
        .map(|c| c.integration.as_str())
        .collect();
    let integration = catalog::integration_for_action(user_types, name)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{key} {name:?} belongs to no integration this user has connected"
            ))
        })?;
    let credential = call.credential_for(&w, &integration)?;
    if let Some(message) = call.state.behaviour().tool_run_error {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "tool_failed",
            message,
        ));
    }
    Ok(Outcome::ok(
        json!({
            key: name,
            "integration": integration,
            "parameters": parameters,
            "result": {"ok": true, "emulated": true},
        }),
        Some(credential),
    ))
}

/// `GET /triggers[?integrations=a,b]`: the trigger types per integration.
pub(crate) fn trigger_types(call: &Call<'_>) -> Handled {
    let w = lock(&call.state.world);
    let credential = call.optional_credential(&w)?;
    let mut triggers = Map::new();
    for t in available_types(call, &w) {
        let list: Vec<Value> = catalog::triggers(&t)
            .into_iter()
            .map(|kind| json!({"type": kind, "integration": t, "parameters": {}}))
            .collect();
        triggers.insert(t, Value::Array(list));
    }
    Ok(Outcome::ok(
        json!({"triggers": triggers, "errors": []}),
        credential,
    ))
}

fn subscription_json(s: &SubscriptionRec) -> Value {
    json!({
        "id": s.id,
        "type": s.kind,
        "integration": s.integration,
        "parameters": s.parameters,
        "status": "ACTIVE",
        "dateCreated": s.date_created,
        "dateLastReceivedEvent": null,
        "credentialId": s.credential,
        "webhookOverride": s.webhook_override,
    })
}

/// `GET /trigger-subscriptions` (`{"data": [...]}`) and `POST
/// /trigger-subscriptions` (`{integration, type, parameters?,
/// webhookOverride?}`).
///
/// The list is what Paragon's reference says: "If `X-Paragon-Credential` is
/// specified, only that credential's trigger subscriptions are listed.
/// Otherwise, all credentials' trigger subscriptions are listed." Whether
/// the permissions claim narrows it is not documented; the emulator does
/// not narrow it (the worst case, which credgate must filter itself).
pub(crate) fn subscriptions(call: &Call<'_>) -> Handled {
    if *call.method == Method::GET {
        let w = lock(&call.state.world);
        let named = match call.named_credential()? {
            Some(id) => Some(call.check_named(&w, &id, None)?),
            None => None,
        };
        let data: Vec<Value> = w
            .subscriptions
            .values()
            .filter(|s| s.user == call.user())
            .filter(|s| named.as_ref().is_none_or(|n| *n == s.credential))
            .map(subscription_json)
            .collect();
        return Ok(Outcome::ok(json!({"data": data}), named));
    }
    let body = call.json_object()?;
    let integration = required_str(&body, "integration")?.to_string();
    let kind = required_str(&body, "type")?.to_string();
    let parameters = body.get("parameters").cloned().unwrap_or_else(|| json!({}));
    let webhook_override = body.get("webhookOverride").cloned().unwrap_or(Value::Null);
    let mut w = lock(&call.state.world);
    let credential = call.credential_for(&w, &integration)?;
    let rec = SubscriptionRec {
        id: crate::keygen::uuid_v4(),
        user: call.user().to_string(),
        credential: credential.clone(),
        integration,
        kind,
        parameters,
        webhook_override,
        date_created: format_iso(now_ms()),
    };
    let out = subscription_json(&rec);
    w.subscriptions.insert(rec.id.clone(), rec);
    Ok(Outcome::json(StatusCode::OK, out, Some(credential)))
}

/// `GET|PATCH|DELETE /trigger-subscriptions/{id}`: the caller's own only
/// (404 otherwise); 403 `7210` when the claim does not allow its credential.
/// PATCH replaces `parameters` and/or `webhookOverride`.
pub(crate) fn subscription(call: &Call<'_>, id: &str) -> Handled {
    let patch = if *call.method == Method::PATCH {
        Some(call.json_object()?)
    } else {
        None
    };
    let mut w = lock(&call.state.world);
    let key = id.to_ascii_lowercase();
    let credential = match w.subscriptions.get(&key) {
        Some(s) if s.user == call.user() => s.credential.clone(),
        _ => {
            return Err(ApiError::not_found(
                "subscription_not_found",
                "no trigger subscription with this id",
            ))
        }
    };
    if let Some(c) = w.credential(&credential) {
        if !call.caller.may_use(c) {
            return Err(ApiError::insufficient_permission());
        }
    }
    if *call.method == Method::DELETE {
        w.subscriptions.remove(&key);
        return Ok(Outcome::ok(
            json!({"id": key, "deleted": true}),
            Some(credential),
        ));
    }
    let Some(s) = w.subscriptions.get_mut(&key) else {
        return Err(ApiError::not_found(
            "subscription_not_found",
            "no trigger subscription with this id",
        ));
    };
    if let Some(patch) = patch {
        if let Some(p) = patch.get("parameters") {
            s.parameters = p.clone();
        }
        if let Some(o) = patch.get("webhookOverride") {
            s.webhook_override = o.clone();
        }
    }
    Ok(Outcome::ok(subscription_json(s), Some(credential)))
}
