//! The Connect (Users) API, `/projects/{p}/sdk/...` on Paragon's `zeus`
//! host (`paragon-api.md` §3, §4.1): the user object with its credentials,
//! metadata, the integration catalog, credential listing, uninstall and
//! workflow enablement. Every list is narrowed to what the token's
//! permissions claim allows, as Paragon does.

use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::call::{ApiError, Call, Handled, Outcome};
use super::catalog;
use super::state::{lock, Cred, World};
use super::util::{derived_uuid, query_value};
use crate::net::body::full;
use crate::paragon::credentials::is_uuid;

/// A credential object as `allCredentials` and `/sdk/credentials` show it.
pub(crate) fn credential_json(project: &str, c: &Cred, account_auth: bool) -> Value {
    let configurations: Vec<Value> = c
        .configurations
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "connectCredentialId": c.id,
                "isDefault": i == 0,
                "externalId": null,
                "workflowSettings": {},
                "sharedSettings": {},
                "configMeta": {},
                "dateCreated": c.date_created,
                "dateUpdated": c.date_created,
            })
        })
        .collect();
    let mut v = json!({
        "id": c.id,
        "projectId": project,
        "integrationId": c.integration_id,
        "personaId": World::persona_id(&c.user),
        "status": c.status,
        "providerId": c.provider_id,
        "providerData": c.provider_data,
        "dateCreated": c.date_created,
        "dateUpdated": c.date_created,
        "externalId": c.external_id,
        "isPreviewCredential": false,
        "refreshFailureCount": 0,
        "configurations": configurations,
    });
    if account_auth {
        if let Value::Object(m) = &mut v {
            m.insert("accountAuth".into(), json!({"accessToken": c.access_token}));
        }
    }
    v
}

/// `includeAccountAuth=true` (any letter case).
fn wants_account_auth(call: &Call<'_>) -> bool {
    query_value(call.query, "includeAccountAuth").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The `GET /sdk/me` object for the caller, narrowed by its claim.
fn me_json(call: &Call<'_>, w: &World) -> Value {
    let visible = call.visible(w);
    let mut integrations = Map::new();
    for t in w.integrations.keys() {
        let mine: Vec<&&Cred> = visible.iter().filter(|c| c.integration == *t).collect();
        let all: Vec<Value> = mine
            .iter()
            .map(|c| credential_json(&call.state.project_id, c, false))
            .collect();
        let entry = match mine.iter().find(|c| c.is_valid()) {
            Some(primary) => json!({
                "enabled": true,
                "credentialId": primary.id,
                "credentialStatus": primary.status,
                "providerId": primary.provider_id,
                "providerData": primary.provider_data,
                "configuredWorkflows": {},
                "allCredentials": all,
            }),
            None => json!({"enabled": false, "allCredentials": all}),
        };
        integrations.insert(t.clone(), entry);
    }
    let meta = w
        .users
        .get(call.user())
        .map(|u| Value::Object(u.meta.clone()))
        .unwrap_or_else(|| json!({}));
    json!({
        "authenticated": true,
        "userId": call.user(),
        "meta": meta,
        "integrations": integrations,
        "resources": [],
        "project": {
            "id": call.state.project_id,
            "accessibleFeatures": ACCESSIBLE_FEATURES,
        },
    })
}

/// `project.accessibleFeatures` of `GET /sdk/me`: every add-on of
/// Paragon's Enterprise plan, as the SDK names them. The SDK refuses
/// `installIntegration` and `uninstallIntegration` without `headless-cp`
/// (the Headless Connect Portal) and dynamic field mapping without `dfm`.
const ACCESSIBLE_FEATURES: &[&str] = &[
    "byo",
    "dfm",
    "headless-cp",
    "th-api",
    "monitoring",
    "rbac",
    "user-metadata",
    "whitelabel",
    "workflow-permissions",
];

/// `GET /sdk/me`, subject to the `me_*` behaviour switches.
pub(crate) fn get_me(call: &Call<'_>) -> Handled {
    let b = call.state.behaviour();
    if let Some(status) = b.me_status {
        // A 1xx is no final status: treat it, like nonsense, as a 500.
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.as_u16() >= 200)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(Outcome::json(
            status,
            json!({"message": "emulated /sdk/me failure (behaviour.me_status)", "code": "emulated_failure"}),
            None,
        ));
    }
    if b.me_malformed {
        let mut r = Response::new(full("<html>this is not JSON"));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(Outcome::raw(r, None));
    }
    if b.me_unauthenticated {
        return Ok(Outcome::ok(json!({"authenticated": false}), None));
    }
    let w = lock(&call.state.world);
    Ok(Outcome::ok(me_json(call, &w), None))
}

/// `PATCH /sdk/me` with `{"meta": {...}}`: the given keys are set (a
/// `null` value removes its key); answers the updated user object.
pub(crate) fn patch_me(call: &Call<'_>) -> Handled {
    let body = call.json_object()?;
    let Some(Value::Object(meta)) = body.get("meta") else {
        return Err(ApiError::bad_request("`meta` must be a JSON object"));
    };
    let mut w = lock(&call.state.world);
    let user = w
        .users
        .get_mut(call.user())
        .ok_or_else(|| ApiError::not_found("unknown_user", "the user no longer exists"))?;
    for (k, v) in meta {
        if v.is_null() {
            user.meta.remove(k);
        } else {
            user.meta.insert(k.clone(), v.clone());
        }
    }
    Ok(Outcome::ok(me_json(call, &w), None))
}

/// `GET /sdk/integrations`: the project's integrations (every type in the
/// fixtures), with `hasCredential` for the caller, in the shape the SDK's
/// bootstrap reads: it loads only integrations with a `configs[0].values`
/// (the Connect Portal's settings: `workflowMeta` by workflow id,
/// `sharedMeta.inputs`), and its install flow reads `needPreOauthInputs`
/// and `sdkIntegrationConfig.accountTypes`. The emulated project has no
/// workflows and no settings to ask for.
pub(crate) fn integrations(call: &Call<'_>) -> Handled {
    let w = lock(&call.state.world);
    let visible = call.visible(&w);
    let list: Vec<Value> = w
        .integrations
        .iter()
        .map(|(t, id)| {
            // The SDK names a custom integration by its `slug`.
            let custom = catalog::is_custom(t).then(|| {
                json!({
                    "id": id,
                    "name": catalog::name(t),
                    "slug": t,
                    "icon": catalog::icon(t),
                })
            });
            json!({
                "id": id,
                "type": t,
                "name": catalog::name(t),
                "brandColor": catalog::brand_color(t),
                "isActive": true,
                "hasCredential": visible.iter().any(|c| c.integration == *t),
                "providerType": t,
                "authenticationType": "oauth",
                "customIntegration": custom,
                "needPreOauthInputs": false,
                "sdkIntegrationConfig": {"accountTypes": []},
                "configs": [{
                    "id": derived_uuid("integration-config", id),
                    "values": {"workflowMeta": {}, "sharedMeta": {"inputs": []}},
                }],
                "workflows": [],
            })
        })
        .collect();
    Ok(Outcome::ok(Value::Array(list), None))
}

/// `GET /sdk/metadata`.
pub(crate) fn metadata(call: &Call<'_>) -> Handled {
    let w = lock(&call.state.world);
    let list: Vec<Value> = w
        .integrations
        .keys()
        .map(|t| {
            json!({
                "type": t,
                "name": catalog::name(t),
                "brandColor": catalog::brand_color(t),
                "icon": catalog::icon(t),
            })
        })
        .collect();
    Ok(Outcome::ok(Value::Array(list), None))
}

/// `DELETE /sdk/integrations/{integrationId}` with `X-Paragon-Credential`
/// (required here: 400 without it): disconnects that account. The path
/// takes the integration's UUID; an unknown one is 404
/// `integration_not_found`.
pub(crate) fn uninstall(call: &Call<'_>, integration_id: &str) -> Handled {
    let named = call.named_credential()?.ok_or_else(|| {
        ApiError::bad_request("X-Paragon-Credential is required to uninstall an account")
    })?;
    let mut w = lock(&call.state.world);
    let integration = w
        .integration_with_id(integration_id)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::not_found("integration_not_found", "no integration with this id")
        })?;
    let id = call.check_named(&w, &named, Some(&integration))?;
    w.remove_credential(&id);
    Ok(Outcome::ok(json!({"success": true}), Some(id)))
}

/// `GET /sdk/credentials[?integration=<type>][&includeAccountAuth=true]`:
/// the caller's credentials the claim allows; with `X-Paragon-Credential`,
/// only that one. `accountAuth` only on request.
pub(crate) fn list_credentials(call: &Call<'_>) -> Handled {
    let w = lock(&call.state.world);
    let named = match call.named_credential()? {
        Some(id) => Some(call.check_named(&w, &id, None)?),
        None => None,
    };
    let integration = query_value(call.query, "integration");
    let auth = wants_account_auth(call);
    let list: Vec<Value> = call
        .visible(&w)
        .into_iter()
        .filter(|c| integration.as_deref().is_none_or(|i| c.integration == i))
        .filter(|c| named.as_deref().is_none_or(|n| c.id == n))
        .map(|c| credential_json(&call.state.project_id, c, auth))
        .collect();
    Ok(Outcome::ok(Value::Array(list), named))
}

/// `GET|PATCH|POST /sdk/credentials/{id}[/...]`: that credential (404 when
/// it is not the caller's, 403 `7210` when the claim does not allow it).
/// A PATCH or POST body must be a JSON object; its content is not kept.
pub(crate) fn credential(call: &Call<'_>, id: &str) -> Handled {
    if *call.method != Method::GET {
        call.json_object()?;
    }
    if !is_uuid(id) {
        return Err(ApiError::credential_not_found());
    }
    let w = lock(&call.state.world);
    let id = call.check_named(&w, id, None)?;
    let c = w
        .credential(&id)
        .ok_or_else(ApiError::credential_not_found)?;
    let body = credential_json(&call.state.project_id, c, wants_account_auth(call));
    Ok(Outcome::ok(body, Some(id)))
}

/// `POST|DELETE /sdk/workflows/{workflowId}`: enables or disables a
/// workflow for the credential the header names (or the caller's only one).
pub(crate) fn workflow_setting(call: &Call<'_>, workflow_id: &str) -> Handled {
    let w = lock(&call.state.world);
    let credential = call.optional_credential(&w)?;
    let enabled = *call.method == Method::POST;
    Ok(Outcome::ok(
        json!({"workflowId": workflow_id, "enabled": enabled}),
        credential,
    ))
}
