//! The gateway's entry for a route a room above answers itself (contract
//! §12's `/mcp` is one): the listener hands such a request to
//! [`handle_local`](super::handle_local) with the room's [`Endpoint`], and
//! the pipeline runs its front as for any request (hygiene, authentication
//! and rate limits, classification, the product check) and its audit
//! record, then lets the endpoint answer. What the endpoint needs of the
//! pipeline it asks through [`Caller`]: the credentials the caller may use,
//! credgate's own calls to Paragon. Calls it makes for its client go back
//! through the whole pipeline as requests of their own
//! ([`run_internal`](super::run_internal), marked
//! [`Delegated`](super::Delegated)). The gateway knows the endpoint only
//! by this trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use http::request::Parts;
use http::Response;
use hyper::body::Incoming;

use super::exchange::{CallerMemo, Exchange};
use super::list::load_now;
use super::{Audit, ConnInfo, Generation, State};
use crate::auth::Identity;
use crate::config::{Config, Upstream};
use crate::error::GatewayError;
use crate::net::body::Body;
use crate::paragon::credentials::Credential;
use crate::paragon::mint::Scope;
use crate::paragon::routes::Route;
use crate::policy::rules::{RequestFacts, RuleView};

/// The answer of an endpoint: a response, or the error credgate answers.
pub type Answer<'a> =
    Pin<Box<dyn Future<Output = Result<Response<Body>, GatewayError>> + Send + 'a>>;

/// A room that answers its own routes.
pub trait Endpoint: Send + Sync {
    /// Whether the room is on in this config (off: its route is 404).
    fn enabled(&self, cfg: &Config) -> bool;

    /// An answer for anyone, before authentication (a metadata document),
    /// or `None` to go on.
    fn public(&self, cfg: &Config, conn: &ConnInfo, parts: &Parts) -> Option<Response<Body>>;

    /// Answers an authenticated caller allowed the route's product.
    fn serve<'a>(
        &'a self,
        caller: Caller<'a>,
        parts: Parts,
        body: Body,
        note: Note<'a>,
    ) -> Answer<'a>;

    /// Amends credgate's 401 on the room's route (where to sign in).
    fn unauthenticated(
        &self,
        cfg: &Config,
        conn: &ConnInfo,
        headers: &HeaderMap,
        resp: &mut Response<Body>,
    );

    /// Sets the room's gauges before a metrics scrape.
    fn before_scrape(&self, metrics: &crate::telemetry::Metrics);
}

/// What the audit record of a request an endpoint answers says of it.
pub struct Note<'a>(pub(super) &'a mut Audit);

impl Note<'_> {
    /// The record's reason when the request is answered.
    pub fn reason(&mut self, reason: &'static str) {
        self.0.reason = reason;
    }

    /// Whether a delegated call made for this request writes the record
    /// (and counts the metrics) instead of it.
    pub fn delegated(&mut self, yes: bool) {
        self.0.delegated = yes;
    }

    /// The request is its protocol's housekeeping (MCP's `initialize`, a
    /// notification, `GET /mcp`: contract §12): answered, it counts in no
    /// request metric and takes no rate-limit token; its audit record is
    /// written as every request's (contract §1 step 9). A room marks it only once it answers it; anything it does
    /// not mark takes a token (contract §5c).
    pub fn housekeeping(&mut self) {
        self.0.housekeeping = true;
    }

    /// The request was a malformed call (naming `tool` when it did):
    /// recorded as refused, `bad_request`, whatever it was answered.
    pub fn invalid_call(&mut self, tool: Option<Arc<str>>) {
        self.0.invalid_call = true;
        if tool.is_some() {
            self.0.tool = tool;
        }
    }
}

/// The authenticated caller of an endpoint's request.
pub struct Caller<'r> {
    pub state: &'r State,
    pub generation: &'r Generation,
    pub conn: &'r ConnInfo,
    pub request_id: &'r str,
    pub identity: &'r Arc<Identity>,
    route: Route<'r>,
    authorization: HeaderMap,
    /// Whether the request took its rate-limit token.
    charged: &'r AtomicBool,
}

impl<'r> Caller<'r> {
    // The pipeline's front, field by field: one call site.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        state: &'r State,
        generation: &'r Generation,
        conn: &'r ConnInfo,
        request_id: &'r str,
        identity: &'r Arc<Identity>,
        route: Route<'r>,
        headers: &HeaderMap,
        charged: &'r AtomicBool,
    ) -> Self {
        let mut authorization = HeaderMap::new();
        if let Some(v) = headers.get(AUTHORIZATION) {
            authorization.insert(AUTHORIZATION, v.clone());
        }
        Caller {
            state,
            generation,
            conn,
            request_id,
            identity,
            route,
            authorization,
            charged,
        }
    }

    /// Takes the request's rate-limit token (contract §5c; 429 over the
    /// limit), once: a room calls it before any work its request asks for.
    /// What a room answers without calling it takes its token when
    /// answered, unless the room marked it as housekeeping
    /// ([`Note::housekeeping`]).
    pub fn take_rate_limit(&self) -> Result<(), GatewayError> {
        if self.charged.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        super::exchange::take_limits(self.state, self.generation, self.identity)
    }

    fn exchange(&self) -> Exchange<'r> {
        Exchange::new(
            self.state,
            self.generation,
            self.conn,
            self.request_id,
            self.identity,
            self.route,
            &self.authorization,
        )
    }

    /// The credentials this caller may use on a request described by
    /// `facts` (its list loaded whatever its role; §5's grants, allow
    /// rules, and no deny rule refusing), in list order; and the scope its
    /// list is cached under (passthrough mode: the token's claim).
    pub async fn usable(
        &self,
        facts: &RequestFacts<'_>,
    ) -> Result<(Vec<Credential>, Option<Arc<str>>), GatewayError> {
        let cfg = &self.generation.config;
        let memo = &self.identity.memo.get::<CallerMemo>().rules;
        let view = (!cfg.policy.rules.is_empty())
            .then(|| RuleView::new(&cfg.policy.rules, self.identity, facts, memo));
        let mut ex = self.exchange();
        ex.ctx.with_rules(view.as_ref());
        load_now(&mut ex).await?;
        let list = ex.list.as_ref().map(|s| s.list.clone()).unwrap_or_default();
        super::pdp::ask(&ex.ctx, list.credentials.iter()).await;
        let usable = list
            .credentials
            .iter()
            .filter(|c| ex.ctx.usable(c))
            .cloned()
            .collect();
        Ok((usable, ex.ctx.dir_key.scope.clone()))
    }

    /// The token of a call credgate makes itself for this caller: minted
    /// with `scope` (mint mode), or the caller's own (passthrough).
    pub fn own_authorization(&self, scope: Scope<'_>) -> Result<HeaderValue, String> {
        self.exchange().ctx.own_authorization(scope)
    }

    /// A `GET` credgate makes itself to `upstream`: JSON asked for, the
    /// given token, this request's id, no forwarding headers.
    pub async fn own_get(
        &self,
        upstream: Upstream,
        path: &str,
        authorization: HeaderValue,
    ) -> Result<Response<Incoming>, String> {
        self.exchange()
            .ctx
            .own_get(upstream, path, authorization)
            .await
    }
}
