//! The request pipeline (contract §1) and the one place a request's outcome
//! becomes a response, a metric and an audit record.
//!
//! It owns the phases of one request, what travels between them, and
//! forwarding; and the entries the rooms above call: [`handle`] (traffic),
//! [`handle_local`] with an [`Endpoint`] (a route a room answers itself,
//! the agents' `/mcp`), [`run_internal`] (a [`Delegated`] call a room makes
//! for its client), [`judge`](judge::judge) (a request decided without
//! being forwarded) and [`list_of`] (a user's list). It must not know the
//! rooms above it (`mcp`, `admin`, `server`): no MCP, dashboard or
//! decision-API code lives here, and they reach it only through these
//! entries and the [`Endpoint`] and [`Refusals`] ports.
//!
//! State comes in two lifetimes: a [`Generation`] is everything built from
//! one config (keys, policy, minter, upstream client) and is swapped whole
//! on reload, so a request finishes on the generation it started with; the
//! caches and stores in [`State`] outlive reloads.

mod cors;
mod decide;
mod exchange;
pub mod forward;
pub mod headers;
mod hygiene;
mod inputs;
mod install;
pub mod judge;
mod list;
pub mod local;
pub mod path;
mod pdp;
mod pipeline;
mod respond;
mod rewrite;
mod route;
mod trace;
pub mod upstream;
mod webhook;

pub use exchange::Delegated;
pub use list::list_of;
pub use local::{Answer, Caller, Endpoint, Note};
pub use route::asks_account_auth;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::GatewayError;
use crate::net::body::Body;
use crate::paragon::directory::Directory;
use crate::paragon::mint::Minter;
use crate::paragon::replicas::{Invalidation, Replicas, StoreUnavailable};
use crate::paragon::subscriptions::Subscriptions;
use crate::paragon::syncs::SyncStore;
use crate::policy::Permitted;
use crate::telemetry::{clean, Metrics, ACCESS_TARGET};
use upstream::Upstreams;

/// Everything built from one config.
pub struct Generation {
    pub config: Arc<Config>,
    /// The audit sink of this config (a reload opens it again: rotation).
    pub audit: crate::audit::AuditLog,
    /// `[limits]` and the limit rules' buckets (contract §5c).
    pub limits: crate::policy::limits::Limits,
    pub auth: Authenticator,
    /// Mint mode only.
    pub minter: Option<Arc<Minter>>,
    pub upstreams: Upstreams,
    /// When this config was loaded (wall clock, ms).
    pub loaded_ms: i64,
    /// `[telemetry]`: the trace pipeline, when `otlp_endpoint` is set.
    pub tracing: Option<Arc<crate::net::otlp::Tracing>>,
}

/// Process-wide state shared by every connection.
pub struct State {
    pub current: ArcSwap<Generation>,
    /// Shared (an `Arc`) so that `[cluster]` can apply other replicas'
    /// invalidations to whichever directory is current.
    pub directory: Arc<ArcSwap<Directory>>,
    pub syncs: SyncStore,
    /// Trigger-subscription owners (learned, or looked up at Paragon).
    pub subscriptions: Subscriptions,
    pub metrics: Arc<Metrics>,
    /// `[cluster]`: where invalidations are recorded for other replicas.
    pub replicas: Option<Arc<dyn Replicas>>,
    /// Where refusals go besides the audit log (the admin dashboard's
    /// ring, contract §9): a port the room above fills.
    pub refusals: Arc<dyn Refusals>,
    /// The room that answers routes of its own (`/mcp`), which the
    /// listener hands its requests to (`handle_local`).
    pub local: Option<Arc<dyn Endpoint>>,
    ids: RequestIds,
    /// The AuthZEN decision point's cached answers (contract §14).
    pdp: pdp::PdpCache,
}

impl State {
    pub fn new(
        generation: Generation,
        directory: Directory,
        syncs: SyncStore,
        subscriptions: Subscriptions,
        metrics: Arc<Metrics>,
        replicas: Option<Arc<dyn Replicas>>,
        rooms: Rooms,
    ) -> State {
        let Rooms { refusals, local } = rooms;
        State {
            local,
            current: ArcSwap::from_pointee(generation),
            directory: Arc::new(ArcSwap::from_pointee(directory)),
            syncs,
            subscriptions,
            metrics,
            replicas,
            refusals,
            ids: RequestIds::new(),
            pdp: pdp::PdpCache::default(),
        }
    }

    /// Drops the cached credential lists of `user`, or of everyone, and
    /// records the invalidation for the other replicas (`[cluster]`). The
    /// one entry point for invalidation: the admin endpoint, an uninstall
    /// through credgate, a reload that finds a credential gone.
    pub async fn invalidate(&self, user: Option<&str>) -> Result<(), StoreUnavailable> {
        let directory = self.directory.load();
        match user {
            Some(u) => directory.invalidate_user(u).await,
            None => directory.invalidate_all(),
        }
        match &self.replicas {
            Some(r) => {
                let what = match user {
                    Some(u) => Invalidation::User(u.to_string()),
                    None => Invalidation::All,
                };
                r.record(&what).await
            }
            None => Ok(()),
        }
    }
}

/// What the rooms above the gateway plug into it (its ports).
pub struct Rooms {
    /// Where refusals go besides the audit log.
    pub refusals: Arc<dyn Refusals>,
    /// The room that answers routes of its own.
    pub local: Option<Arc<dyn Endpoint>>,
}

/// Where a refused (or shadow-refused) request is told, besides the audit
/// log: the port through which the admin room keeps the latest refusals
/// for its dashboard without the pipeline knowing of it.
pub trait Refusals: Send + Sync {
    fn refused(&self, record: &crate::audit::Record<'_>, method: &http::Method, path: &str);
}

/// One client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The client address as an `X-Forwarded-For` element.
    pub client_ip: HeaderValue,
    pub tls: bool,
    served: AtomicU64,
    /// HTTP/1.1 clients keep their upstream connections (`forward.rs`);
    /// HTTP/2 clients multiplex and use the shared client. Shared with the
    /// delegated calls of the connection's requests.
    affinity: Option<Arc<forward::Affinity>>,
    /// A call credgate makes for this connection's client (a delegated
    /// call, contract §12): whatever the client's address, its headers are
    /// the client's (an agent's), so it is never a trusted proxy.
    internal: bool,
}

impl ConnInfo {
    /// A connection accepted by `worker` (its index among the runtimes of
    /// `server.scheduler = "workers"`; 0 otherwise).
    pub fn new(remote: SocketAddr, tls: bool, http2: bool, worker: usize) -> Self {
        ConnInfo {
            remote,
            client_ip: headers::client_ip_value(remote.ip()),
            tls,
            served: AtomicU64::new(0),
            affinity: (!http2).then(|| Arc::new(forward::Affinity::new(worker))),
            internal: false,
        }
    }

    /// The connection of the delegated calls a request makes for its
    /// client: the same client, never trusted as a proxy, on the client
    /// connection's own upstream connections (an HTTP/1.1 client's request
    /// and its delegated calls run in one task, one after another) or, for
    /// an HTTP/2 client, the shared upstream client.
    pub fn for_delegated_calls(&self) -> ConnInfo {
        ConnInfo {
            remote: self.remote,
            client_ip: self.client_ip.clone(),
            tls: self.tls,
            served: AtomicU64::new(0),
            affinity: self.affinity.clone(),
            internal: true,
        }
    }

    pub fn affinity(&self) -> Option<&forward::Affinity> {
        self.affinity.as_deref()
    }

    /// Whether the client is one of `server.trusted_proxies`, whose
    /// forwarding headers and request id are kept (contract §7).
    pub fn trusted_proxy(&self, cfg: &Config) -> bool {
        !self.internal
            && cfg
                .server
                .trusted_proxies
                .iter()
                .any(|c| c.contains(self.remote.ip()))
    }
}

/// Request ids: a random per-process prefix and a counter. Unique, cheap
/// (no RNG call per request), and a safe token for logs and headers.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let b = crate::keygen::random_bytes::<6>();
        RequestIds {
            prefix: b.iter().map(|x| format!("{x:02x}")).collect(),
            next: AtomicU64::new(1),
        }
    }

    /// `{prefix}-{counter in hex}`, written by hand: `format!` costs a
    /// noticeable share of the per-request budget.
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 16];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b"0123456789abcdef"[(rest & 0xf) as usize];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        let mut id = String::with_capacity(self.prefix.len() + 1 + digits.len() - at);
        id.push_str(&self.prefix);
        id.push('-');
        id.extend(digits[at..].iter().map(|&d| char::from(d)));
        id
    }
}

/// What the audit record says about one request.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    /// Whether the audit log is on: fields that cost an allocation are only
    /// filled when it is.
    pub enabled: bool,
    pub principal: Option<Arc<str>>,
    pub user: Option<Arc<str>>,
    /// The agent acting for the principal (`act.sub`, contract §12).
    pub actor: Option<Arc<str>>,
    pub product: Option<&'static str>,
    pub integration: Option<Arc<str>>,
    pub credential: Option<Box<str>>,
    /// The credential the caller named, as named (or, when
    /// `requested_is_routed`, exactly the routed one).
    pub requested: Option<Box<str>>,
    pub requested_is_routed: bool,
    /// Why a token was refused, and who it claims to be (not verified).
    pub cause: Option<&'static str>,
    pub claimed_principal: Option<String>,
    pub reason: &'static str,
    /// What permitted an allowed request (filled when the audit is on).
    pub permitted: Option<crate::policy::Permitted>,
    /// The error code of a refusal or failure (or of the shadowed refusal).
    pub code: Option<&'static str>,
    /// A refusal by policy that shadow mode recorded instead of answering:
    /// its code and reason (contract §5a).
    pub shadowed: Option<(&'static str, &'static str)>,
    /// The policy rule that refused (or would have, in shadow) or limited
    /// the request (contract §5b); an allow rule's is in `permitted`.
    pub rule: Option<std::sync::Arc<str>>,
    /// Rules in shadow mode that would have taken effect, comma-separated.
    pub shadow_rules: Option<String>,
    /// Whether the request went to Paragon.
    pub forwarded: bool,
    /// `/admin/decide`: stop before the forward (see `explain`).
    pub dry_run: Option<Box<exchange::DryRun>>,
    /// A member's `X-Paragon-*` fields credgate did not know and removed.
    pub removed_headers: Vec<http::HeaderName>,
    /// The request id as a header value, made once.
    pub request_id: Option<HeaderValue>,
    /// The request's spans, when `[telemetry]` exports traces.
    pub trace: Option<Box<trace::Trace>>,
    /// An MCP tool call: the tool called (contract §12), and `mcp`.
    pub tool: Option<Arc<str>>,
    pub via: Option<&'static str>,
    /// An `/mcp` request whose tool call wrote the record (and counted the
    /// metrics) as a request of its own: this one writes none.
    pub delegated: bool,
    /// The caller is Paragon's Connect SDK (`X-Paragon-SDK-Version`): its
    /// refusals take Paragon's shape (contract §13).
    pub sdk: bool,
    /// A CORS preflight credgate answered (contract §13): no audit record
    /// and no request metric (it has its own).
    pub preflight: bool,
    /// An `/mcp` `tools/call` that was not a valid call (a tool never
    /// offered, bad arguments): answered with a JSON-RPC error, recorded
    /// as refused (`bad_request`).
    pub invalid_call: bool,
    /// Which rate limit refused the request (contract §5c): `principal`,
    /// `user` or `rule` (then `rule` names it); the record's `scope`.
    pub limit: Option<&'static str>,
    /// A request a room answered as its protocol's housekeeping (MCP's
    /// `initialize`, a notification, `GET /mcp`; contract §12): allowed,
    /// it counts in no request metric, as it took no rate-limit token; it
    /// is audited like every request.
    pub housekeeping: bool,
}

/// What became of a request, for a caller inside credgate (a delegated
/// call reads whether Paragon was asked, and what refused it).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub forwarded: bool,
    /// The record's `reason` (contract §5a): `rule` for a deny rule.
    pub reason: &'static str,
}

/// Handles one request end to end. Never fails: every outcome is a response.
pub async fn handle(state: &State, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
    run(state, conn, req, None).await.0
}

/// [`handle`] for a request the listener hands to a room that answers its
/// own routes (`local`): the pipeline's front and audit, then the room.
pub async fn handle_local(
    state: &State,
    conn: &ConnInfo,
    req: Request<Incoming>,
    endpoint: &dyn Endpoint,
) -> Response<Body> {
    run(state, conn, req, Some(endpoint)).await.0
}

/// A request a room makes for its client (a [`Delegated`] call), through
/// the whole pipeline with its own decision and audit record. Type-erased:
/// the pipeline that runs it is what called the room in the first place,
/// and a named future type here is what ends that recursion for the
/// compiler.
pub fn run_internal<'a>(
    state: &'a State,
    conn: &'a ConnInfo,
    req: Request<Body>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = (Response<Body>, Outcome)> + Send + 'a>> {
    Box::pin(run(state, conn, req, None))
}

/// [`handle`] for any body, with what became of the request.
async fn run<B>(
    state: &State,
    conn: &ConnInfo,
    req: Request<B>,
    endpoint: Option<&dyn Endpoint>,
) -> (Response<Body>, Outcome)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::net::body::BoxError>,
{
    let started = Instant::now();
    let generation = state.current.load_full();
    // A caller's request id is kept only from a trusted proxy: anyone else
    // could give every record one id. It is recorded beside credgate's.
    let caller_id = headers::safe_request_id(req.headers());
    let trusted = conn.trusted_proxy(&generation.config);
    let (request_id, client_request_id) = match caller_id {
        Some(id) if trusted => (id.to_string(), None),
        other => (state.ids.next(), other.map(Box::<str>::from)),
    };
    let http1 = req.version() < Version::HTTP_2;
    let has_body = !http_body::Body::is_end_stream(req.body());
    // A page on an allowed origin may read the answer (contract §13).
    let origin = if generation.config.cors.enabled() {
        cors::allowed_origin(&generation.config, req.headers()).cloned()
    } else {
        None
    };
    // A room's 401 may name where to sign in, from these (contract §12).
    let local_headers = endpoint.map(|_| req.headers().clone());
    let served = conn.served.fetch_add(1, Ordering::Relaxed) + 1;

    let audit = Audit {
        enabled: generation.audit.is_enabled(),
        sdk: req.headers().contains_key(SDK_VERSION),
        reason: "forwarded",
        request_id: HeaderValue::from_str(&request_id).ok(),
        trace: generation.tracing.as_ref().map(|t| {
            let trust = trusted || generation.config.telemetry.trust_incoming_trace;
            trace::Trace::start(
                &t.tracer,
                req.headers(),
                trust,
                req.method(),
                req.uri().path(),
            )
        }),
        ..Audit::default()
    };
    // Owns what the record needs, so that it is written also when the
    // client hangs up and hyper drops this future (contract §1 step 9).
    let mut pending = Pending {
        state,
        conn,
        generation: &generation,
        started,
        request_id,
        client_request_id,
        // For the access log and the dashboard's refusals (shared clones).
        method: req.method().clone(),
        uri: req.uri().clone(),
        audit,
        done: false,
    };
    let outcome = pipeline::process(
        state,
        &generation,
        conn,
        req,
        &pending.request_id,
        &mut pending.audit,
        endpoint,
    )
    .await;
    // From here on nothing awaits: the record below is written whatever
    // the client does.
    pending.done = true;
    let audit = &mut pending.audit;
    audit.mark("filter");
    let (mut resp, decision) = audit.conclude(outcome, &pending.request_id);
    if let (Some(e), Some(h)) = (endpoint, &local_headers) {
        if resp.status() == 401 {
            e.unauthenticated(&generation.config, conn, h, &mut resp);
        }
    }
    let limit = generation.config.server.max_requests_per_connection;
    // A refused request whose body was never read must not leave that body
    // on the connection to be parsed as the next request (contract §8).
    let close = (decision != "allowed" && has_body) || (limit > 0 && served >= limit);
    if http1 && close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(v) = audit.request_id.take() {
        resp.headers_mut().insert(headers::X_REQUEST_ID, v);
    }
    if let Some(o) = origin.filter(|_| !audit.preflight) {
        cors::mark(o, &mut resp);
    }
    let outcome = Outcome {
        forwarded: audit.forwarded,
        reason: audit.reason,
    };
    pending.write(decision, resp.status().as_u16(), None);
    (resp, outcome)
}

/// A request on its way through the pipeline, and what its audit record,
/// metrics and access-log line are made of. Dropped before the pipeline
/// answered (the client closed its connection or reset its stream, and
/// hyper dropped the request's future), it writes them itself: status
/// 499, `outcome = "client_closed"`, with whether the request had reached
/// Paragon. So a request is audited once, whatever its client does.
struct Pending<'a> {
    state: &'a State,
    conn: &'a ConnInfo,
    generation: &'a Generation,
    started: Instant,
    request_id: String,
    client_request_id: Option<Box<str>>,
    method: http::Method,
    uri: http::Uri,
    audit: Audit,
    /// The pipeline answered: the record is written by [`run`].
    done: bool,
}

/// What Paragon's Connect SDK sends on every call (contract §13).
const SDK_VERSION: &str = "x-paragon-sdk-version";

/// The status recorded for a request whose client went away before its
/// answer (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

impl Pending<'_> {
    /// Counts the request and writes its audit record (unless a tool call
    /// it carried wrote its own), its refusal for the dashboard, its trace
    /// and its access-log line.
    fn write(&mut self, decision: &'static str, status: u16, outcome: Option<&'static str>) {
        let (state, generation, audit) = (self.state, self.generation, &mut self.audit);
        let elapsed = self.started.elapsed();
        // Whole microseconds: no float noise in the record.
        let latency_ms = elapsed.as_micros() as f64 / 1000.0;
        let trace = audit.trace.take();
        let trace_id = trace.as_deref().map(trace::Trace::trace_id);
        // A room's answered housekeeping (MCP's `initialize`, ...) is no
        // request in the metrics, but it is audited like every request
        // (contract §1 step 9).
        let housekeeping = audit.housekeeping && decision == "allowed";
        if !audit.delegated && !audit.preflight {
            let product = audit.product.unwrap_or("none");
            if !housekeeping {
                state.metrics.count_request(product, decision, status);
                state.metrics.request_histogram(product).observe(elapsed);
            }
            let refused = matches!(decision, "refused" | "shadow_refused");
            if audit.enabled || refused || trace.is_some() || outcome.is_some() {
                let record = audit.record(
                    &self.request_id,
                    self.client_request_id.as_deref(),
                    decision,
                );
                let removed = removed_headers(&audit.removed_headers);
                let record = crate::audit::Record {
                    product,
                    removed_headers: &removed,
                    status,
                    latency_ms,
                    trace_id,
                    outcome,
                    ..record
                };
                generation.audit.write(&record);
                if refused {
                    state
                        .refusals
                        .refused(&record, &self.method, self.uri.path());
                }
                if let Some(t) = &trace {
                    t.finish(&record);
                }
            }
        }
        // Caller-controlled values are recorded as strings (`&str`), which
        // the text format prints quoted: a principal `x decision=allowed`
        // cannot add a field to the line, as a Display value (`%`) printed
        // bare could.
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %self.request_id,
            remote = %self.conn.remote,
            method = %self.method,
            path = &*clean(self.uri.path()),
            status,
            latency_ms,
            trace_id,
            outcome,
        );
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let decision = self.audit.conclude_closed();
        self.write(decision, CLIENT_CLOSED, Some("client_closed"));
    }
}

impl Audit {
    /// A §1 phase completed (an event on the request's span).
    pub(crate) fn mark(&self, phase: &'static str) {
        if let Some(t) = &self.trace {
            t.mark(phase);
        }
    }

    /// What the outcome means (contract §5a): the response and the
    /// decision; `reason` and `code` are set to match. A shadowed refusal
    /// that went to Paragon is `shadow_refused`, with the code and reason
    /// it would have had, whatever Paragon answered.
    fn conclude(
        &mut self,
        outcome: Result<Response<Body>, GatewayError>,
        request_id: &str,
    ) -> (Response<Body>, &'static str) {
        let (resp, decision) = match outcome {
            Ok(resp) if self.invalid_call => {
                self.reason = "bad_request";
                self.code = Some("bad_request");
                self.permitted = None;
                (resp, "refused")
            }
            Ok(resp) => {
                if let Some(p) = &self.permitted {
                    self.reason = p.as_str();
                }
                (resp, "allowed")
            }
            Err(e) => {
                let decision = if e.is_refusal() { "refused" } else { "failed" };
                self.reason = e.reason();
                self.code = Some(e.code());
                self.permitted = None;
                if let GatewayError::Unauthenticated(a) = &e {
                    self.cause = Some(a.cause());
                }
                if let GatewayError::RateLimited { scope, .. } = &e {
                    self.limit = Some(scope);
                }
                if !e.is_refusal() {
                    let source = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(request_id = %request_id, code = e.code(), error = %e, source = source.as_deref().unwrap_or(""), "request failed");
                }
                let resp = if self.sdk {
                    e.into_sdk_response(request_id)
                } else {
                    e.into_response(request_id)
                };
                (resp, decision)
            }
        };
        match self.shadowed {
            Some((code, reason)) if self.forwarded => {
                self.code = Some(code);
                self.reason = reason;
                self.permitted = None;
                (resp, "shadow_refused")
            }
            _ => (resp, decision),
        }
    }

    /// What a request whose client went away before its answer had come
    /// to: a forwarded one is `allowed` (or `shadow_refused`) as decided,
    /// one that had not reached Paragon is `failed`, `client_closed`.
    fn conclude_closed(&mut self) -> &'static str {
        match (self.forwarded, self.shadowed) {
            (true, Some((code, reason))) => {
                self.code = Some(code);
                self.reason = reason;
                self.permitted = None;
                "shadow_refused"
            }
            (true, None) => {
                if let Some(p) = &self.permitted {
                    self.reason = p.as_str();
                }
                "allowed"
            }
            (false, _) => {
                self.reason = "client_closed";
                self.code = Some("client_closed");
                self.permitted = None;
                "failed"
            }
        }
    }

    /// The audit record of a concluded request, but for the fields only
    /// the caller of the pipeline knows (product, removed headers, status,
    /// latency).
    fn record<'a>(
        &'a self,
        request_id: &'a str,
        client_request_id: Option<&'a str>,
        decision: &'a str,
    ) -> crate::audit::Record<'a> {
        let (grant, grant_principal, scope) = match &self.permitted {
            Some(Permitted::Acl { grant, everyone }) => (
                Some(*grant),
                Some(if *everyone {
                    "*"
                } else {
                    self.principal.as_deref().unwrap_or("")
                }),
                None,
            ),
            Some(Permitted::PassthroughClaim { scope }) => (None, None, Some(&**scope)),
            _ => (None, None, None),
        };
        let rule = match &self.permitted {
            Some(Permitted::Rule { name }) => Some(&**name),
            _ => self.rule.as_deref(),
        };
        // A 429 says which limit refused: a limit rule by its name.
        let scope = scope.or(match self.limit {
            Some("rule") => self.rule.as_deref(),
            other => other,
        });
        crate::audit::Record {
            request_id,
            decision_id: request_id,
            client_request_id,
            principal: self.principal.as_deref().unwrap_or(""),
            user: self.user.as_deref().unwrap_or(""),
            actor: self.actor.as_deref(),
            claimed_principal: self.claimed_principal.as_deref(),
            product: self.product.unwrap_or("none"),
            integration: self.integration.as_deref().unwrap_or(""),
            requested: if self.requested_is_routed {
                self.credential.as_deref().unwrap_or("")
            } else {
                self.requested.as_deref().unwrap_or("")
            },
            credential: self.credential.as_deref().unwrap_or(""),
            removed_headers: "",
            decision,
            reason: self.reason,
            code: self.code,
            grant,
            grant_principal,
            scope,
            rule,
            shadow_rules: self.shadow_rules.as_deref(),
            cause: self.cause,
            tool: self.tool.as_deref(),
            via: self.via,
            forwarded: self.forwarded,
            outcome: None,
            status: 0,
            latency_ms: 0.0,
            trace_id: None,
        }
    }
}

/// The removed header names, comma-separated (empty when none).
fn removed_headers(names: &[http::HeaderName]) -> String {
    let mut out = String::new();
    for n in names {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(n.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_prefix_and_the_counter_in_hex() {
        let ids = RequestIds::new();
        assert_eq!(ids.prefix.len(), 12);
        for expected in [1u64, 2, 3] {
            assert_eq!(ids.next(), format!("{}-{expected:x}", ids.prefix));
        }
        for n in [0u64, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            ids.next.store(n, Ordering::Relaxed);
            assert_eq!(ids.next(), format!("{}-{n:x}", ids.prefix));
        }
    }
}
