//! Workflow request triggers and App Events, Paragon's `hermes` host
//! (`paragon-api.md` §4.2): a trigger is accepted with 202 (no Response
//! step), an event with 201; neither validates its body. The credential is
//! the one `X-Paragon-Credential` names, or the caller's only one.

use http::StatusCode;
use serde_json::{json, Value};

use super::call::{Call, Handled, Outcome};
use super::state::lock;

/// `POST /projects/{p}/sdk/triggers/{workflowId}`.
pub(crate) fn trigger(call: &Call<'_>, workflow_id: &str) -> Handled {
    let credential = call.optional_credential(&lock(&call.state.world))?;
    Ok(Outcome::json(
        StatusCode::ACCEPTED,
        json!({
            "workflowId": workflow_id,
            "status": "accepted",
            "received": {"query": call.query, "body": call.body_value()},
        }),
        credential,
    ))
}

/// `POST /projects/{p}/sdk/events/trigger` and
/// `/v2/projects/{p}/sdk/events/trigger`, body `{"name", "payload"}`.
pub(crate) fn event(call: &Call<'_>) -> Handled {
    let credential = call.optional_credential(&lock(&call.state.world))?;
    let body = call.body_value();
    let name = body.get("name").cloned().unwrap_or(Value::Null);
    Ok(Outcome::json(
        StatusCode::CREATED,
        json!({"name": name, "received": true}),
        credential,
    ))
}
