//! Phases 9 and 10, forward and respond (contract §7 "Forward" and
//! "Responses", §5 "Syncs", §3 trigger subscriptions): the upstream call
//! with credgate's timeouts, then what a successful answer changes (an
//! uninstall drops the user's cached list; a deleted sync or subscription
//! its record; a moved sync its owner), what credgate learns from answers
//! it must read (sync and subscription owners), and the narrowing of
//! answers that list credentials, syncs or subscriptions for members.
//! Errors: 502 `upstream_unavailable` (unreachable, a 101, an answer that
//! cannot be narrowed), 504 `upstream_timeout`, 400 when the caller's body
//! breaks off.

use std::collections::HashSet;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH};
use http::response::Parts as ResponseParts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use serde_json::Value;

use super::decide::{Decision, Routed};
use super::exchange::{Ctx, Exchange};
use super::headers;
use super::inputs::Inputs;
use super::State;
use crate::auth::Identity;
use crate::error::{GatewayError, UpstreamFailure};
use crate::net::body::{self, read_limited, Body, ReadError};
use crate::paragon::credentials::{Credential, CredentialList};
use crate::paragon::filter;
use crate::paragon::routes::{Operation, Route};
use crate::paragon::syncs::Owner;

/// Largest response credgate buffers to filter or to learn owners from.
const MAX_FILTERED_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// Sends the request (contract §7 "Forward"): streaming, over the client
/// connection's own upstream connection (HTTP/1.1 callers) or the shared
/// pool, within `server.upstream_timeout`.
pub(super) async fn forward(
    ex: &Exchange<'_>,
    req: Request<Body>,
) -> Result<Response<Incoming>, GatewayError> {
    let ctx = &ex.ctx;
    let resp = ctx
        .generation
        .upstreams
        .send(ctx.route.upstream, ctx.conn.affinity(), req)
        .await?;
    // credgate strips `Upgrade` and never tunnels, so a 101 from Paragon
    // cannot be honoured: relaying it would tell the client (or a proxy in
    // front of credgate) that the connection now carries another protocol,
    // the premise of WebSocket-upgrade smuggling.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Protocol("Paragon switched protocols, which credgate never asks for"),
        ));
    }
    Ok(resp)
}

/// Whether credgate reads a successful answer: to narrow it for a member,
/// or to learn which credential owns a sync or a subscription.
pub(super) fn reads_answer(ctx: &Ctx<'_>, method: &Method, uri: &Uri) -> bool {
    (ctx.route.filters_response() && !ctx.admin)
        || learns_from_answer(&ctx.route, method, uri.path())
}

/// The response the caller gets: Paragon's, streamed, unless it must be
/// read to learn from it or narrowed for a member.
pub(super) async fn respond(
    ex: &Exchange<'_>,
    method: &Method,
    uri: &Uri,
    inputs: &Inputs<'_>,
    decision: &Decision,
    resp: Response<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let ctx = &ex.ctx;
    // Its body may not stall longer than the headers could.
    let (mut rparts, rbody) = resp.into_parts();
    let rbody = body::StallGuard::new(rbody, ctx.cfg.server.upstream_timeout);
    // A proxy sends its own HTTP version (RFC 9110 §6.2). hyper writes the
    // version it is given to an HTTP/1.1 client, so an HTTP/1.0 answer from
    // Paragon would otherwise downgrade the client's connection to a
    // close-delimited HTTP/1.0 response and drop its pipelined requests.
    // (hyper itself answers HTTP/1.0 clients in HTTP/1.0.)
    rparts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut rparts.headers);
    let ok = rparts.status.is_success();
    if ok {
        Box::pin(after_success(ctx, inputs, &decision.routed)).await;
    }
    let filters = ctx.route.filters_response() && !ctx.admin;
    let learns = learns_from_answer(&ctx.route, method, uri.path());
    if !(ok && (filters || learns)) {
        return Ok(Response::from_parts(rparts, body::stream(rbody)));
    }
    let raw = Box::pin(read_answer(&rparts, rbody)).await?;
    let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
    if learns {
        Box::pin(learn_owners(ctx, method, &decision.routed, parsed.as_ref())).await;
    }
    if !filters {
        rparts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(raw.len()));
        return Ok(Response::from_parts(rparts, body::full(raw)));
    }
    let Some(mut value) = parsed else {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("Paragon's response is not JSON"),
        ));
    };
    Box::pin(narrow(ex, &mut value)).await?;
    let out = Bytes::from(serde_json::to_vec(&value).map_err(|_| {
        GatewayError::UpstreamUnavailable(UpstreamFailure::Unfilterable(
            "the filtered body could not be encoded",
        ))
    })?);
    rparts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(rparts, body::full(out)))
}

/// What a successful answer changes in credgate's own records.
async fn after_success(ctx: &Ctx<'_>, inputs: &Inputs<'_>, routed: &Routed) {
    let (state, request_id, identity) = (ctx.state, ctx.request_id, ctx.identity);
    match (&ctx.route.op, routed) {
        // An account gone, created or completed (contract §13): the next
        // request naming it finds the list as Paragon has it, cooldown or
        // not.
        (
            Operation::Uninstall { .. }
            | Operation::CredentialCreate
            | Operation::Credential {
                install_body: true, ..
            },
            _,
        ) => {
            if let Err(e) = Box::pin(state.invalidate(Some(&identity.user))).await {
                tracing::warn!(request_id, error = %e, "could not record the invalidation after an account was removed or created");
            }
        }
        (
            Operation::SyncItem {
                sync_id,
                deletes_sync: true,
            },
            _,
        ) => {
            if let Err(e) = Box::pin(state.syncs.remove(sync_id)).await {
                tracing::warn!(request_id, error = %e, "could not drop a deleted sync's ownership record");
            }
        }
        (Operation::SyncPatch { sync_id }, routed) if inputs.requested.is_some() => {
            if let Some(c) = routed.credential() {
                record_owner(state, request_id, sync_id, identity, &c.get().id).await;
            }
        }
        (Operation::Subscription { id, deletes: true }, _) => {
            state.subscriptions.forget(&identity.user, id).await;
        }
        _ => {}
    }
}

/// Reads an answer credgate must see whole: uncompressed, at most
/// [`MAX_FILTERED_RESPONSE_BYTES`], else 502.
async fn read_answer<B>(rparts: &ResponseParts, rbody: B) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<body::BoxError>,
{
    if rparts
        .headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("Paragon sent a compressed body credgate must filter"),
        ));
    }
    match read_limited(rbody, MAX_FILTERED_RESPONSE_BYTES).await {
        Ok(b) => Ok(b),
        Err(ReadError::TooLarge) => Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("Paragon's response is too large to filter"),
        )),
        Err(ReadError::Io(e)) => Err(GatewayError::UpstreamUnavailable(UpstreamFailure::Body(e))),
    }
}

/// Narrows a member's answer to what it may see (contract §7 "Responses",
/// §5 `GET /api/syncs`, §3 subscriptions); a shape credgate does not know
/// is 502, never passed on.
async fn narrow(ex: &Exchange<'_>, value: &mut Value) -> Result<(), GatewayError> {
    let ctx = &ex.ctx;
    let list = ex.list.as_ref().map(|s| s.list.clone()).unwrap_or_default();
    let allow_account_auth = ctx.cfg.policy.allow_account_auth;
    let permitted = |id: &str| -> Option<&Credential> {
        let lower = id.to_ascii_lowercase();
        list.find(&lower).filter(|c| ctx.usable(c))
    };
    let filtered = match ctx.route.op {
        Operation::GetUser => filter::filter_me(
            value,
            &|integration, id| permitted(id).is_some_and(|c| *c.integration == *integration),
            allow_account_auth,
        ),
        Operation::ListCredentials | Operation::Credential { .. } => {
            filter::filter_credentials(value, &|id| permitted(id).is_some(), allow_account_auth)
        }
        Operation::SyncList => {
            let reachable = reachable_syncs(ctx, &list, value).await;
            filter::filter_syncs(value, &|id| reachable.contains(id))
        }
        Operation::SubscriptionList => {
            filter::filter_subscriptions(value, &|c| permitted(c).is_some())
        }
        _ => Ok(()),
    };
    filtered.map_err(|filter::Unfilterable(why)| {
        GatewayError::UpstreamUnavailable(UpstreamFailure::Unfilterable(why))
    })
}

/// The syncs of a list this member may reach: one store query for the
/// whole list; a store that cannot answer reaches nothing (fail closed).
async fn reachable_syncs(ctx: &Ctx<'_>, list: &CredentialList, value: &Value) -> HashSet<String> {
    let (state, identity) = (ctx.state, ctx.identity);
    let permitted = |id: &str| {
        list.find(&id.to_ascii_lowercase())
            .is_some_and(|c| ctx.usable(c))
    };
    let ids: Vec<&str> = value
        .get("data")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|s| s.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let owners = state.syncs.owners(&ids).await.unwrap_or_default();
    owners
        .into_iter()
        .filter(|(_, o)| o.user == identity.user && permitted(&o.credential))
        .map(|(id, _)| id)
        .collect()
}

async fn record_owner(
    state: &State,
    request_id: &str,
    sync_id: &str,
    identity: &Identity,
    credential: &str,
) {
    let owner = Owner {
        user: identity.user.clone(),
        credential: credential.to_ascii_lowercase().into(),
    };
    if let Err(e) = state.syncs.record(sync_id, owner).await {
        tracing::warn!(request_id, error = %e, "could not record a sync's owner; the sync is admin-only until it is learned again");
    }
}

/// Whether a successful answer is read to learn which credential owns a
/// sync or a trigger subscription (sync create, update, list and
/// `GET /api/syncs/{id}`; subscription create and list).
fn learns_from_answer(route: &Route<'_>, method: &Method, path: &str) -> bool {
    match route.op {
        Operation::SyncCreate
        | Operation::SyncPatch { .. }
        | Operation::SyncList
        | Operation::SubscriptionCreate
        | Operation::SubscriptionList => true,
        Operation::SyncItem { sync_id, .. } => {
            *method == Method::GET && path.strip_prefix("/api/syncs/") == Some(sync_id)
        }
        // Whether the install session names its new account.
        Operation::InstallSession { deletes: false } => true,
        _ => false,
    }
}

/// Learns sync or subscription → credential from a successful answer, and
/// who created a subscription: the caller of a `POST` that Paragon
/// answered with one subscription (contract §3, for the access review).
async fn learn_owners(ctx: &Ctx<'_>, method: &Method, routed: &Routed, body: Option<&Value>) {
    let Some(body) = body else { return };
    let (state, request_id, route, identity) =
        (ctx.state, ctx.request_id, &ctx.route, ctx.identity);
    if let Operation::InstallSession { .. } = route.op {
        // The install popup finished: Paragon names the account it made
        // (contract §13), so the user's list is dropped for it.
        let created = body
            .get("connectCredentialId")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty());
        if created {
            if let Err(e) = Box::pin(state.invalidate(Some(&identity.user))).await {
                tracing::warn!(request_id, error = %e, "could not record the invalidation after an install");
            }
        }
        return;
    }
    if matches!(
        route.op,
        Operation::SubscriptionCreate | Operation::SubscriptionList
    ) {
        let created = route.op == Operation::SubscriptionCreate
            && *method == Method::POST
            && body.get("id").is_some();
        for (id, credential) in crate::paragon::subscriptions::stated_owners(body) {
            let subs = &state.subscriptions;
            if created {
                subs.learn_created(&identity.user, id, credential, &identity.principal)
                    .await;
            } else {
                subs.learn(&identity.user, id, credential).await;
            }
        }
        return;
    }
    learn_sync_owners(state, request_id, route, identity, routed, body).await;
}

/// Learns sync → credential from a successful sync call's answer.
async fn learn_sync_owners(
    state: &State,
    request_id: &str,
    route: &Route<'_>,
    identity: &Identity,
    routed: &Routed,
    body: &Value,
) {
    if let (Operation::SyncCreate, Some(id)) = (&route.op, body.get("id").and_then(Value::as_str)) {
        let credential = match routed.credential() {
            Some(c) => Some(c.get().id.to_string()),
            None => body
                .get("credentialId")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if let Some(credential) = credential {
            record_owner(state, request_id, id, identity, &credential).await;
        }
        return;
    }
    for (sync_id, credential) in filter::sync_owners(body) {
        record_owner(state, request_id, &sync_id, identity, &credential).await;
    }
}
