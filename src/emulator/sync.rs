//! Managed Sync, `/api/syncs...` and `/api/permissions/{syncId}/...` on
//! Paragon's `sync` host (`paragon-api.md` §4.5). Tokens must carry `aud`
//! here (checked in `auth`). A sync is bound to one credential: the body's
//! `credentialId`, or the oldest VALID credential of the integration. A
//! sync of another user is 404, one whose credential the token's claim
//! does not allow is 403 `7210`, and `GET /api/syncs` lists only the
//! caller's syncs the claim allows.
//!
//! `X-Paragon-Credential` is not read on these routes: Managed Sync takes
//! the credential from the body only.
//!
//! Each sync has [`RECORDS`] generated records, `rec-1`...`rec-5`.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::call::{required_str, ApiError, Call, Handled, Outcome};
use super::state::{lock, SyncRec, World};
use super::util::{format_iso, now_ms, query_value};
use crate::net::body::full;
use crate::paragon::credentials::is_uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncOp<'a> {
    Create,
    List,
    Get,
    Patch,
    Delete,
    Disable,
    Reenable,
    Records,
    Record { record: &'a str, content: bool },
    Permissions(&'a str),
}

/// Generated records per sync.
pub(crate) const RECORDS: usize = 5;
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;
/// `incrementalAccumulatorFrequency` values Paragon documents.
const FREQUENCIES: [&str; 8] = ["1m", "5m", "10m", "30m", "1h", "3h", "6h", "24h"];

pub(crate) fn handle(call: &Call<'_>, id: Option<&str>, op: SyncOp<'_>) -> Handled {
    match (op, id) {
        (SyncOp::Create, _) => create(call),
        (SyncOp::List, _) => list(call),
        (op, Some(id)) => item(call, &id.to_ascii_lowercase(), op),
        (_, None) => Err(ApiError::not_found("sync_not_found", "no sync id")),
    }
}

/// `credentialId` of a sync body: absent or `null` is `None`; otherwise a
/// credential UUID string.
fn body_credential(body: &serde_json::Map<String, Value>) -> Result<Option<&str>, ApiError> {
    match body.get("credentialId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if is_uuid(s) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(
            "`credentialId` must be a credential UUID",
        )),
    }
}

/// `POST /api/syncs` `{integration, pipeline, configuration?,
/// configurationName?, credentialId?}`.
fn create(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let integration = required_str(&body, "integration")?.to_string();
    let pipeline = required_str(&body, "pipeline")?.to_string();
    let configuration_name = match body.get("configurationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`configurationName` must be a string",
            ))
        }
    };
    let named = body_credential(&body)?;
    let mut w = lock(&call.state.world);
    let credential = match named {
        Some(id) => call.check_named(&w, id, Some(&integration))?,
        None => call.default_credential(&w, &integration)?,
    };
    let now = format_iso(now_ms());
    let rec = SyncRec {
        id: crate::keygen::uuid_v4(),
        user: call.user().to_string(),
        credential: credential.clone(),
        integration,
        pipeline,
        configuration: body.get("configuration").cloned().unwrap_or(Value::Null),
        configuration_name,
        status: "INITIALIZING".to_string(),
        frequency: None,
        date_created: now.clone(),
        date_updated: now,
    };
    let out = json!({
        "id": rec.id,
        "userId": rec.user,
        "integration": rec.integration,
        "pipeline": rec.pipeline,
        "projectId": call.state.project_id,
        "status": rec.status,
    });
    w.syncs.insert(rec.id.clone(), rec);
    Ok(Outcome::ok(out, Some(credential)))
}

fn sync_summary_json(s: &SyncRec) -> Value {
    json!({
        "id": s.id,
        "integration": s.integration,
        "pipeline": s.pipeline,
        "status": s.status,
        "configurationName": s.configuration_name,
        "dateCreated": s.date_created,
        "dateUpdated": s.date_updated,
    })
}

/// `GET /api/syncs`.
fn list(call: &Call<'_>) -> Handled {
    let w = lock(&call.state.world);
    let data: Vec<Value> = w
        .syncs
        .values()
        .filter(|s| s.user == call.user() && call.caller.allows(&s.integration, &s.credential))
        .map(sync_summary_json)
        .collect();
    Ok(Outcome::ok(json!({"data": data}), None))
}

/// The caller's sync `id`, refusing others' (404) and ones the claim does
/// not allow (403 `7210`).
fn owned<'w>(call: &Call<'_>, w: &'w mut World, id: &str) -> Result<&'w mut SyncRec, ApiError> {
    let s = w
        .syncs
        .get_mut(id)
        .filter(|s| s.user == call.user())
        .ok_or_else(|| ApiError::not_found("sync_not_found", "no sync with this id"))?;
    if !call.caller.allows(&s.integration, &s.credential) {
        return Err(ApiError::insufficient_permission());
    }
    Ok(s)
}

fn record_json(s: &SyncRec, i: usize) -> Value {
    json!({
        "id": format!("rec-{i}"),
        "externalId": format!("ext-{i}"),
        "name": format!("Emulated record {i}"),
        "integration": s.integration,
        "mimeType": "text/plain",
        "isDeleted": false,
        "createdAt": s.date_created,
        "updatedAt": s.date_updated,
    })
}

/// `rec-{i}` → `i` when it names one of the sync's records.
fn record_index(record: &str) -> Option<usize> {
    let i: usize = record.strip_prefix("rec-")?.parse().ok()?;
    (1..=RECORDS).contains(&i).then_some(i)
}

fn item(call: &Call<'_>, id: &str, op: SyncOp<'_>) -> Handled {
    let body = match op {
        SyncOp::Patch | SyncOp::Permissions(_) => call.json_object()?,
        _ => serde_json::Map::new(),
    };
    let mut guard = lock(&call.state.world);
    let w = &mut *guard;
    // Check the credential a PATCH names before touching the sync.
    let new_credential = if let SyncOp::Patch = op {
        let integration = owned(call, w, id)?.integration.clone();
        match body_credential(&body)? {
            Some(c) => Some(call.check_named(w, c, Some(&integration))?),
            None => None,
        }
    } else {
        None
    };
    let s = owned(call, w, id)?;
    let credential = Some(s.credential.clone());
    let now = format_iso(now_ms());
    let answer = match op {
        SyncOp::Get => json!({
            "id": s.id,
            "status": s.status,
            "configuration": s.configuration,
            "incrementalAccumulatorFrequency": s.frequency,
            "summary": {
                "totalRecords": RECORDS,
                "syncedRecordsCount": RECORDS,
                "lastSyncedAt": s.date_updated,
                "latestCursor": RECORDS.to_string(),
            },
        }),
        SyncOp::Patch => {
            let frequency = match body.get("incrementalAccumulatorFrequency") {
                None | Some(Value::Null) => None,
                Some(Value::String(f)) if FREQUENCIES.contains(&f.as_str()) => Some(f.clone()),
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "`incrementalAccumulatorFrequency` must be one of 1m, 5m, 10m, 30m, 1h, 3h, 6h, 24h",
                    ))
                }
            };
            if new_credential.is_none() && frequency.is_none() {
                return Err(ApiError::bad_request(
                    "give `credentialId` and/or `incrementalAccumulatorFrequency`",
                ));
            }
            let mut data = serde_json::Map::new();
            if let Some(c) = new_credential {
                // A new credential means a full re-sync.
                s.credential = c.clone();
                s.status = "INITIALIZING".to_string();
                data.insert("credentialId".into(), json!(c));
            }
            if let Some(f) = frequency {
                s.frequency = Some(f.clone());
                data.insert("incrementalAccumulatorFrequency".into(), json!(f));
            }
            s.date_updated = now;
            let out = json!({"id": s.id, "data": data, "message": "Sync updated"});
            return Ok(Outcome::ok(out, Some(s.credential.clone())));
        }
        SyncOp::Disable | SyncOp::Reenable => {
            s.status = if op == SyncOp::Disable {
                "DISABLED"
            } else {
                "ACTIVE"
            }
            .to_string();
            s.date_updated = now;
            json!({"id": s.id, "status": s.status})
        }
        SyncOp::Delete => {
            let out = json!({"id": s.id, "deleted": true});
            w.syncs.remove(id);
            return Ok(Outcome::ok(out, credential));
        }
        SyncOp::Records => records_page(call, s)?,
        SyncOp::Record { record, content } => {
            let i = record_index(record).ok_or_else(|| {
                ApiError::not_found("record_not_found", "no record with this id in this sync")
            })?;
            if content {
                let mut r = Response::new(full(format!(
                    "emulated content of rec-{i} in sync {}\n",
                    s.id
                )));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                return Ok(Outcome::raw(r, credential));
            }
            record_json(s, i)
        }
        SyncOp::Permissions(kind) => permissions(kind, &body)?,
        SyncOp::Create | SyncOp::List => {
            return Err(ApiError::not_found(
                "route_not_found",
                "no such sync operation",
            ))
        }
    };
    Ok(Outcome::json(StatusCode::OK, answer, credential))
}

/// `GET /api/syncs/{id}/records?pageSize=&cursor=`; the cursor is the
/// number of records already returned.
fn records_page(call: &Call<'_>, s: &SyncRec) -> Result<Value, ApiError> {
    let page_size = match query_value(call.query, "pageSize") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| ApiError::bad_request("pageSize must be 1 to 1000"))?,
    };
    let start = match query_value(call.query, "cursor") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= RECORDS)
            .ok_or_else(|| ApiError::bad_request("cursor is not one this sync issued"))?,
    };
    let end = (start + page_size).min(RECORDS);
    let data: Vec<Value> = (start + 1..=end).map(|i| record_json(s, i)).collect();
    let next = (end < RECORDS).then(|| end.to_string());
    Ok(json!({
        "data": data,
        "paging": {
            "totalRecords": RECORDS,
            "totalActiveRecords": RECORDS,
            "remainingRecords": RECORDS - end,
            "cursor": next,
            "lastSeen": (end > start).then(|| format!("rec-{end}")),
        },
    }))
}

/// `POST /api/permissions/{syncId}/check|batch-check|list-users|list-objects`.
fn permissions(kind: &str, body: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
    Ok(match kind {
        "check" => json!({"hasAccess": true, "request": Value::Object(body.clone())}),
        "batch-check" => {
            let Some(Value::Array(checks)) = body.get("checks") else {
                return Err(ApiError::bad_request("`checks` must be an array"));
            };
            let result: Vec<Value> = checks
                .iter()
                .map(|c| json!({"allowed": true, "request": c}))
                .collect();
            json!({"result": result})
        }
        "list-users" => json!({"users": []}),
        _ => json!({"objects": []}),
    })
}
