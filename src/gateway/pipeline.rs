//! One request, as the named phases of contract §1, in the order that
//! makes the first failing check answer:
//!
//! | phase | file | contract | refuses with |
//! | --- | --- | --- | --- |
//! | hygiene | `hygiene.rs` | §8, §11 | 400, 503 (strict cluster) |
//! | CORS preflight | `cors.rs` | §13 | 204, 403 |
//! | authenticate | here | §4 | 401 |
//! | classify | `route.rs` | §3 | 404 |
//! | check_operation, proxy_target | `route.rs` | §3, §7 | 403, 400 |
//! | read_inputs, parse_inputs | `inputs.rs` | §5, §7 | 413, 408, 400 (reported after the list) |
//! | webhook check | `webhook.rs` | §3 | 400, 403 (never shadowed) |
//! | load_list | `list.rs` | §6 | 503 |
//! | decide | `decide.rs` | §5 | 400, 403, 503 |
//! | rewrite | `rewrite.rs` | §7 | 503 (signing), 400 |
//! | forward | `respond.rs` | §7 | 502, 504, 400 (caller's body) |
//! | respond | `respond.rs` | §7, §5, §3 | 502 (answers that cannot be narrowed) |
//!
//! What a phase needs from the ones before travels in [`Exchange`]: the
//! fixed context of the request ([`Ctx`]: who calls, what route, which
//! generation) and the user's credential list once loaded. Rate limits
//! (§5c) join after `authenticate` and `classify` (so a 429 names its
//! product; a room's request takes its token in the room, §12); rules
//! (§5b) and shadow mode (§5a) at `decide`, the one place that authorizes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::HeaderMap;
use http::{Request, Response};

use super::decide::{decide, shadow_decision, Decision, Routed};
use super::exchange::{take_limits, Ctx, Delegated, Exchange, Shadow};
use super::hygiene::hygiene;
use super::inputs::{parse_inputs, read_inputs, Inputs};
use super::list::load_list;
use super::respond::{forward, reads_answer, respond};
use super::rewrite::{rewrite, Rewrite};
use super::route::{check_operation, classify, proxy_target};
use super::{Audit, ConnInfo, Generation, State};
use crate::auth::Identity;
use crate::config::rules::Effect;
use crate::config::Config;
use crate::error::GatewayError;
use crate::error::Refused;
use crate::net::body::Body;
use crate::paragon::routes::Operation;
use crate::policy::rules::{RequestFacts, RuleView, Subject};
use crate::policy::Permitted;

pub(super) async fn process<B>(
    state: &State,
    generation: &Generation,
    conn: &ConnInfo,
    req: Request<B>,
    request_id: &str,
    audit: &mut Audit,
    endpoint: Option<&dyn super::local::Endpoint>,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let cfg: &Config = &generation.config;
    let (mut parts, incoming) = req.into_parts();
    hygiene(state, &parts)?;
    if let Some(answer) = super::cors::preflight(cfg, &parts, &state.metrics) {
        audit.preflight = true;
        return answer;
    }
    if let Some(resp) = endpoint.and_then(|e| e.public(cfg, conn, &parts)) {
        return Ok(resp);
    }
    let tool = parts.extensions.get::<Delegated>().cloned();
    // The install popup authenticates with its query (contract §13).
    super::install::adopt_user_token(&mut parts)?;
    let identity = authenticate(generation, &parts.headers, audit).await?;
    let uri = parts.uri.clone();
    let front = Front {
        state,
        generation,
        conn,
        request_id,
        identity: &identity,
        tool: tool.as_ref(),
    };
    let route = classify_limited(&front, &parts.method, &uri, endpoint, audit)?;
    // The rare arms are boxed: an async fn's state holds every arm's
    // future, and hyper moves the request's whole future once per request
    // (`metadata_ignored` holds a second pipeline; unboxed, it doubled what
    // every Proxy API request copies).
    match (route.is_local(), endpoint) {
        (false, None)
            if route.op == Operation::PatchUser
                && !identity.is_admin()
                && cfg.policy.member_metadata == crate::config::MemberMetadata::Ignore =>
        {
            drop(incoming);
            Box::pin(metadata_ignored::<B>(front, route, &uri, parts, audit)).await
        }
        (false, None) => process_route(front, route, &uri, parts, incoming, audit).await,
        (true, Some(e)) if e.enabled(cfg) => {
            Box::pin(serve_local(e, front, route, &uri, parts, incoming, audit)).await
        }
        _ => Err(GatewayError::RouteNotFound),
    }
}

/// Classifies the request (contract §3), then takes a token of the
/// caller's rate limits (§5c, 429): classified first, so that a 429 names
/// its product; a route that does not classify is limited all the same.
/// A delegated call's carrier took its caller's token already; a request
/// a room answers takes it in the room, which knows which of its requests
/// are its protocol's housekeeping (§12); a dry run takes none.
fn classify_limited<'u>(
    front: &Front<'_>,
    method: &http::Method,
    uri: &'u http::Uri,
    endpoint: Option<&dyn super::local::Endpoint>,
    audit: &mut Audit,
) -> Result<crate::paragon::routes::Route<'u>, GatewayError> {
    let cfg: &Config = &front.generation.config;
    let route = classify(cfg, method, uri, front.tool, audit);
    let room =
        route.as_ref().is_ok_and(|r| r.is_local()) && endpoint.is_some_and(|e| e.enabled(cfg));
    if front.tool.is_none() && !room && audit.dry_run.is_none() {
        take_limits(front.state, front.generation, front.identity)?;
    }
    route
}

/// A member's `PATCH /sdk/me` where `policy.member_metadata = "ignore"`
/// (contract §13; with `refuse` it was refused before): the metadata is
/// not written, and the member gets its own filtered `GET /sdk/me`.
async fn metadata_ignored<B>(
    front: Front<'_>,
    route: crate::paragon::routes::Route<'_>,
    uri: &http::Uri,
    mut parts: http::request::Parts,
    audit: &mut Audit,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let route = crate::paragon::routes::Route {
        op: Operation::GetUser,
        ..route
    };
    parts.method = http::Method::GET;
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::CONTENT_TYPE,
        http::header::TRANSFER_ENCODING,
    ] {
        parts.headers.remove(h);
    }
    // No body: of the caller's body's type, so that this is the pipeline
    // the caller's request runs in.
    let none = NoBody::<B::Error>(std::marker::PhantomData);
    let resp = process_route(front, route, uri, parts, none, audit).await?;
    audit.permitted = Some(Permitted::MetadataIgnored);
    Ok(resp)
}

/// An empty body with the error type `E`.
struct NoBody<E>(std::marker::PhantomData<fn() -> E>);

impl<E> http_body::Body for NoBody<E> {
    type Data = bytes::Bytes;
    type Error = E;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, E>>> {
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

/// A route the room above answers itself (`handle_local`): never
/// shadowed; what it sends on to Paragon goes through this pipeline as
/// requests of their own.
async fn serve_local<B>(
    endpoint: &dyn super::local::Endpoint,
    front: Front<'_>,
    route: crate::paragon::routes::Route<'_>,
    uri: &http::Uri,
    parts: http::request::Parts,
    incoming: B,
    audit: &mut Audit,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let cfg: &Config = &front.generation.config;
    // Whether this request took its rate-limit token (contract §5c).
    let charged = AtomicBool::new(false);
    let checked = check_operation(cfg, front.identity, &route, uri.query());
    let answer = match checked {
        Ok(()) => {
            let caller = super::local::Caller::new(
                front.state,
                front.generation,
                front.conn,
                front.request_id,
                front.identity,
                route,
                &parts.headers,
                &charged,
            );
            let body = crate::net::body::stream(incoming);
            endpoint
                .serve(caller, parts, body, super::local::Note(audit))
                .await
        }
        Err(e) => Err(e),
    };
    // Deny by default: every request but the housekeeping the room
    // answered takes its token, if the room did not take it before its
    // work (a refusal or failure included, so none comes for free).
    let free = answer.is_ok() && audit.housekeeping;
    if !free && !charged.swap(true, Ordering::AcqRel) {
        take_limits(front.state, front.generation, front.identity)?;
    }
    answer
}

/// What the front of the pipeline (hygiene, authenticate, classify) hands
/// to the rest.
struct Front<'r> {
    state: &'r State,
    generation: &'r Generation,
    conn: &'r ConnInfo,
    request_id: &'r str,
    identity: &'r Arc<Identity>,
    tool: Option<&'r Delegated>,
}

/// Every phase after classify, for a route that goes to Paragon.
async fn process_route<B>(
    front: Front<'_>,
    route: crate::paragon::routes::Route<'_>,
    uri: &http::Uri,
    parts: http::request::Parts,
    incoming: B,
    audit: &mut Audit,
) -> Result<Response<Body>, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let Front {
        state,
        generation,
        conn,
        request_id,
        identity,
        tool,
    } = front;
    let cfg: &Config = &generation.config;
    // A delegated call is shadowed with its product, and with the product
    // of the door it came through (`shadow_products = ["mcp"]`: agents).
    let shadowed = cfg.policy.shadows(route.product)
        || tool.is_some_and(|t| {
            t.via
                .parse::<crate::config::Product>()
                .is_ok_and(|p| cfg.policy.shadows(p))
        });
    let mut shadow = Shadow::new(shadowed);
    check_operation(cfg, identity, &route, uri.query()).or_else(|e| shadow.absorb(e))?;
    let proxy_url = proxy_target(cfg, &route, &parts.headers)?;
    // What policy rules see of the request (contract §5b), if there are any.
    let method = parts.method.clone();
    let facts = (!cfg.policy.rules.is_empty())
        .then(|| request_facts(&route, &method, uri, proxy_url.as_ref(), tool));
    let view = facts.as_ref().map(|f| rule_view(cfg, identity, f));
    let mut ex = Exchange::new(
        state,
        generation,
        conn,
        request_id,
        identity,
        route,
        &parts.headers,
    );
    ex.ctx.with_rules(view.as_ref());
    ex.ctx.dry_run = audit.dry_run.is_some();
    let mut body = read_inputs(&ex.ctx, &parts, incoming).await?;
    super::webhook::check(&ex.ctx, &parts.headers, &body)?;
    let listed = tool.and_then(|t| t.integration.as_deref());
    let inputs = parse_inputs(
        &parts.headers,
        &ex.ctx.route,
        body.buffered.as_deref(),
        listed,
        (!ex.ctx.admin).then(|| uri.query().unwrap_or("")),
    );
    load_list(&mut ex, inputs.as_ref().ok()).await?;
    let inputs = inputs?;
    let decision = authorize(&mut ex, &inputs, shadow, audit).await?;
    let reads_answer = reads_answer(&ex.ctx, &method, uri);
    let rewritten = Rewrite {
        parts,
        uri,
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
    respond(&ex, &method, uri, &inputs, &decision, resp).await
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
    audit.mark("load_list");
    if let Some(view) = ex.ctx.rules {
        note_integration(view, ex, inputs);
    }
    let decision = match decide(ex, inputs).await {
        Ok(d) => d,
        Err(e) => {
            audit.requested = inputs.requested.as_ref().map(|r| r.to_string().into());
            if let (Some(view), Some(dry)) = (ex.ctx.rules, audit.dry_run.as_mut()) {
                // Refused before the rules: show how they would have come
                // out on the credential named.
                let d = shadow_decision(ex, inputs);
                dry.rules = trace_rules(view, subject_of(&d));
            }
            shadow.absorb(e)?;
            shadow_decision(ex, inputs)
        }
    };
    // Recorded first: a rule or limit that refuses leaves the credential
    // named and routed in the record (contract §5a).
    record_decision(audit, &ex.ctx, &decision, inputs);
    if let Some(view) = ex.ctx.rules {
        apply_rules(&ex.ctx, view, &decision, &mut shadow, audit)?;
    }
    if let Some(e) = &shadow.refused {
        audit.shadowed = Some((e.code(), e.reason()));
    }
    Ok(decision)
}

/// What rules read as `request.*` (contract §5b): the operation Paragon
/// will be asked to perform, not the request line as sent. The product is
/// the route's (a tool call's too: the proxy tool is `proxy`), `via` says
/// `mcp` for a tool call; the path is the one Paragon receives,
/// percent-decoded once, and on the Proxy API the provider's path, from
/// `{rest}` or `X-Paragon-Proxy-Url` (whichever names the target), with
/// the provider host of a full URL. The integration is filled in once the
/// inputs are read (and, unknown there, is the routed credential's).
fn request_facts<'r>(
    route: &crate::paragon::routes::Route<'_>,
    method: &'r http::Method,
    uri: &'r http::Uri,
    proxy_url: Option<&http::HeaderValue>,
    tool: Option<&'r Delegated>,
) -> RequestFacts<'r> {
    let (path, proxy_host) = match route.op {
        Operation::Proxy { rest, .. } => {
            let target = proxy_url.and_then(|v| v.to_str().ok()).unwrap_or(rest);
            let host = match super::path::full_url_host(target) {
                super::path::FullUrl::Host { host, .. } => host.into(),
                _ => Box::default(),
            };
            (super::path::provider_path(target).into(), host)
        }
        _ => (super::path::decoded_once(uri.path()), Box::default()),
    };
    RequestFacts {
        product: route.product.as_str(),
        operation: route.op.name(),
        method: method.as_str(),
        path,
        proxy_host,
        tool: tool.map_or("", |t| &*t.name),
        side_effect: tool.and_then(|t| t.side_effect.as_deref()).unwrap_or(""),
        via: tool.map_or("", |t| t.via),
        integration: std::sync::OnceLock::new(),
    }
}

fn rule_view<'a>(
    cfg: &'a Config,
    identity: &'a Identity,
    facts: &'a RequestFacts<'a>,
) -> RuleView<'a> {
    let memo = &identity.memo.get::<super::exchange::CallerMemo>().rules;
    RuleView::new(&cfg.policy.rules, identity, facts, memo)
}

/// `request.integration`: the integration the route names (the proxy
/// path, a sync body's `integration`, an ActionKit action's name, resolved
/// against the user's list when it takes one), else empty.
fn note_integration(view: &RuleView<'_>, ex: &Exchange<'_>, inputs: &Inputs<'_>) {
    let hint = super::inputs::integration_of(&ex.ctx.route, inputs);
    let named: Box<str> = match &ex.list {
        Some(s) => match hint.resolve(&s.list) {
            super::inputs::Resolved::Type(t) => t.into(),
            _ => Box::default(),
        },
        None => match hint {
            super::inputs::IntegrationHint::Type(t) => t.into(),
            _ => Box::default(),
        },
    };
    let _ = view.request.integration.set(named);
}

/// Deny, shadow and limit rules on what the decision routes (contract
/// §5b, §5c): a deny rule refuses (recorded instead in shadow mode), a
/// shadow rule is recorded, a limit rule counts the request against its
/// bucket (429, never shadowed).
fn apply_rules(
    ctx: &Ctx<'_>,
    view: &RuleView<'_>,
    decision: &Decision,
    shadow: &mut Shadow,
    audit: &mut Audit,
) -> Result<(), GatewayError> {
    let subject = subject_of(decision);
    if let Some(dry) = audit.dry_run.as_mut() {
        dry.rules = trace_rules(view, subject);
    }
    let also = decision.also.as_ref().map(|c| Subject::Credential(c.get()));
    let metrics = &ctx.state.metrics;
    let count = |i: usize, effect: &'static str| {
        metrics
            .rule_matches
            .get_or_create(&crate::telemetry::RuleLabel {
                rule: view.rules.rules[i].name.clone(),
                effect,
            })
            .inc();
    };
    let refusal = || match subject {
        Subject::Nothing => GatewayError::OperationForbidden(Refused::Rule),
        _ => GatewayError::CredentialForbidden(Refused::Rule),
    };
    let mut judged = view.judge(subject);
    if let Some(a) = also {
        judged.merge(view.judge(a));
    }
    if let Some(i) = judged.denied {
        count(i, "deny");
        audit.rule = Some(view.rules.rules[i].name.clone());
        shadow.absorb(refusal())?;
    }
    for &i in &judged.shadowed {
        count(i, "shadow");
        let rule = &view.rules.rules[i];
        if rule.effect == Effect::Deny && shadow.refused.is_none() {
            // Would have refused: recorded as a shadowed refusal.
            audit.rule = Some(rule.name.clone());
            shadow.refused = Some(refusal());
        }
    }
    if !judged.shadowed.is_empty() {
        let names: Vec<&str> = judged
            .shadowed
            .iter()
            .map(|&i| &*view.rules.rules[i].name)
            .collect();
        audit.shadow_rules = Some(names.join(","));
    }
    if audit.dry_run.is_none() {
        for i in judged.limits {
            count(i, "limit");
            if let Err(e) = ctx.generation.limits.check_rule(i, ctx.identity, metrics) {
                audit.rule = Some(view.rules.rules[i].name.clone());
                return Err(e);
            }
        }
    }
    Ok(())
}

/// What the rules are asked about for a decision: the credential it
/// routes, none, or one Paragon picks.
fn subject_of(decision: &Decision) -> Subject<'_> {
    match &decision.routed {
        Routed::Credential(c) | Routed::AsSent { known: Some(c), .. } => {
            Subject::Credential(c.get())
        }
        Routed::None | Routed::AsSent { named: None, .. } => Subject::Nothing,
        Routed::Passthrough | Routed::AsSent { .. } => Subject::Unknown,
    }
}

/// `/admin/decide`'s account of every rule: its effect, mode and outcome.
fn trace_rules(view: &RuleView<'_>, subject: Subject<'_>) -> Vec<serde_json::Value> {
    view.trace(subject)
        .into_iter()
        .map(|(rule, outcome)| {
            let mut v = serde_json::json!({
                "name": &*rule.name,
                "effect": rule.effect.as_str(),
                "mode": if rule.shadow { "shadow" } else { "enforce" },
                "outcome": outcome.as_str(),
                "takes_effect": outcome.applies(rule.effect),
            });
            if let crate::policy::rules::Outcome::Error(e) = &outcome {
                v["error"] = serde_json::Value::from(e.as_str());
            }
            v
        })
        .collect()
}

/// The request is forwarded from here on: returned, or, in a dry run
/// (`/admin/decide`), kept as what would have gone out.
fn to_forward(audit: &mut Audit, mut upstream_req: Request<Body>) -> Option<Request<Body>> {
    audit.forwarded = true;
    audit.mark("rewrite");
    if let Some(t) = audit.trace.as_mut() {
        t.forward(&mut upstream_req);
    }
    match audit.dry_run.as_mut() {
        Some(dry) => {
            dry.upstream = Some(upstream_req);
            None
        }
        None => Some(upstream_req),
    }
}

/// Authenticates the caller (contract §4) and records who it is (401).
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
    audit.actor = identity.actor.clone();
    if let Some(dry) = audit.dry_run.as_mut() {
        dry.identity = Some(identity.clone());
    }
    audit.mark("authenticate");
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
