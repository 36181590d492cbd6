//! One request, as the named phases of contract §1, in the order that
//! makes the first failing check answer:
//!
//! | phase | file | contract | refuses with |
//! | --- | --- | --- | --- |
//! | hygiene | `hygiene.rs` | §8, §11 | 400, 503 (strict cluster) |
//! | authenticate | here | §4 | 401 |
//! | classify | `route.rs` | §3 | 404 |
//! | check_operation, proxy_target | `route.rs` | §3, §7 | 403, 400 |
//! | read_inputs, parse_inputs | `inputs.rs` | §5, §7 | 413, 408, 400 (reported after the list) |
//! | load_list | `list.rs` | §6 | 503 |
//! | decide | `decide.rs` | §5 | 400, 403, 503 |
//! | rewrite | `rewrite.rs` | §7 | 503 (signing), 400 |
//! | forward | `respond.rs` | §7 | 502, 504, 400 (caller's body) |
//! | respond | `respond.rs` | §7, §5, §3 | 502 (answers that cannot be narrowed) |
//!
//! What a phase needs from the ones before travels in [`Exchange`]: the
//! fixed context of the request ([`Ctx`]: who calls, what route, which
//! generation) and the user's credential list once loaded. Rate limits
//! (§5c) join after `authenticate`; rules (§5b) and shadow mode (§5a) at
//! `decide`, the one place that authorizes.

use std::sync::Arc;

use http::header::HeaderMap;
use http::{Request, Response};

use super::decide::{decide, shadow_decision, Decision, Routed};
use super::exchange::{Ctx, Exchange, Shadow};
use super::hygiene::hygiene;
use super::inputs::{parse_inputs, read_inputs, Inputs};
use super::list::load_list;
use super::respond::{forward, reads_answer, respond};
use super::rewrite::{rewrite, Rewrite};
use super::route::{check_operation, classify, proxy_target};
use super::{Audit, ConnInfo, Generation, State};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::GatewayError;
use crate::net::body::Body;
use crate::policy::Permitted;

pub(super) async fn process<B>(
    state: &State,
    generation: &Generation,
    conn: &ConnInfo,
    req: Request<B>,
    request_id: &str,
    audit: &mut Audit,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let cfg: &Config = &generation.config;
    let (parts, incoming) = req.into_parts();
    hygiene(state, &parts)?;
    let identity = authenticate(generation, &parts.headers, audit).await?;
    let uri = parts.uri.clone();
    let route = classify(cfg, &parts.method, &uri, audit)?;
    let mut shadow = Shadow {
        on: cfg.policy.shadows(route.product),
        refused: None,
    };
    check_operation(cfg, &identity, &route, uri.query()).or_else(|e| shadow.absorb(e))?;
    let proxy_url = proxy_target(cfg, &route, &parts.headers, &mut shadow)?;
    let mut ex = Exchange::new(
        state,
        generation,
        conn,
        request_id,
        &identity,
        route,
        &parts.headers,
    );
    ex.ctx.dry_run = audit.dry_run.is_some();
    let mut body = read_inputs(&ex.ctx, &parts, incoming).await?;
    let inputs = parse_inputs(&parts.headers, &ex.ctx.route, body.buffered.as_deref());
    load_list(&mut ex, inputs.as_ref().ok()).await?;
    let inputs = inputs?;
    let decision = authorize(&mut ex, &inputs, shadow, audit).await?;
    let method = parts.method.clone();
    let reads_answer = reads_answer(&ex.ctx, &method, &uri);
    let rewritten = Rewrite {
        parts,
        uri: &uri,
        buffered: body.buffered.clone(),
        streamed: body.streamed.take(),
        inputs: &inputs,
        decision: &decision,
        proxy_url,
        reads_answer,
    };
    let upstream_req = rewrite(&ex, rewritten, audit)?;
    let Some(upstream_req) = to_forward(audit, upstream_req) else {
        return Ok(Response::new(crate::net::body::empty()));
    };
    let resp = forward(&ex, upstream_req).await?;
    respond(&ex, &method, &uri, &inputs, &decision, resp).await
}

/// Decides (contract §5) and records the decision; in shadow mode a
/// refusal by policy, here or in an earlier phase, is recorded and the
/// request goes as sent (§5a).
async fn authorize(
    ex: &mut Exchange<'_>,
    inputs: &Inputs<'_>,
    mut shadow: Shadow,
    audit: &mut Audit,
) -> Result<Decision, GatewayError> {
    let decision = match decide(ex, inputs).await {
        Ok(d) => d,
        Err(e) => {
            audit.requested = inputs.requested.as_ref().map(|r| r.to_string().into());
            shadow.absorb(e)?;
            shadow_decision(ex, inputs)
        }
    };
    record_decision(audit, &ex.ctx, &decision, inputs);
    if let Some(e) = &shadow.refused {
        audit.shadowed = Some((e.code(), e.reason()));
    }
    Ok(decision)
}

/// The request is forwarded from here on: returned, or, in a dry run
/// (`/admin/decide`), kept as what would have gone out.
fn to_forward(audit: &mut Audit, upstream_req: Request<Body>) -> Option<Request<Body>> {
    audit.forwarded = true;
    match audit.dry_run.as_mut() {
        Some(dry) => {
            dry.upstream = Some(upstream_req);
            None
        }
        None => Some(upstream_req),
    }
}

/// Authenticates the caller (contract §4) and records who it is. 401.
async fn authenticate(
    generation: &Generation,
    headers: &HeaderMap,
    audit: &mut Audit,
) -> Result<Arc<Identity>, GatewayError> {
    let given = audit.dry_run.as_ref().and_then(|d| d.identity.clone());
    let verified = match given {
        Some(i) => Ok(i),
        None => generation.auth.authenticate(headers).await,
    };
    let identity = match verified {
        Ok(i) => i,
        Err(e) => {
            // Who the refused token says it is, marked as not verified.
            audit.claimed_principal =
                crate::auth::unverified_claim(headers, &generation.config.auth.principal_claim);
            return Err(match e {
                // Not the caller's fault: keys have not loaded yet (503).
                crate::auth::AuthError::KeysUnavailable => GatewayError::KeysUnavailable,
                e => GatewayError::Unauthenticated(e),
            });
        }
    };
    audit.user = Some(identity.user.clone());
    audit.principal = Some(identity.principal.clone());
    if let Some(dry) = audit.dry_run.as_mut() {
        dry.identity = Some(identity.clone());
    }
    Ok(identity)
}

/// The routed credential, the one named (as named) and what permitted it,
/// for the audit record.
fn record_decision(audit: &mut Audit, ctx: &Ctx<'_>, decision: &Decision, inputs: &Inputs<'_>) {
    if let Some(c) = decision.routed.credential() {
        if audit.enabled {
            audit.credential = Some(c.get().id.clone());
        }
        audit.integration = Some(c.get().integration.clone());
    }
    if let Some(dry) = audit.dry_run.as_mut() {
        dry.credential = decision.routed.credential().map(|c| c.get().clone());
    }
    if audit.enabled {
        audit.permitted = Some(match &decision.routed {
            _ if ctx.admin => Permitted::Admin,
            // Every routed credential passed the permit (shadowed ones are
            // recorded with their refusal instead).
            Routed::Credential(c) => ctx.permit.why(c.get()).unwrap_or(Permitted::NoCredential),
            _ => Permitted::NoCredential,
        });
        audit.requested = match &inputs.requested {
            // Named as routed: the record repeats `credential`.
            Some(crate::policy::Requested::Id(id)) if audit.credential.as_deref() == Some(id) => {
                audit.requested_is_routed = true;
                None
            }
            Some(r) => Some(r.to_string().into()),
            None => None,
        };
    }
}
