//! Phase 6, the credential list (contract §6): the user's live list from
//! `GET /sdk/me`, through the caller's memo and the per-user cache, loaded
//! only when the decision needs it; and credgate's own other calls to
//! Paragon (trigger-subscription lookups, contract §3). Errors: 503
//! `credentials_unavailable`.

use http::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::exchange::{CallerMemo, Ctx, Exchange};
use super::headers::X_REQUEST_ID;
use super::inputs::Inputs;
use crate::config::{AuthMode, Upstream};
use crate::error::GatewayError;
use crate::net::body::{self, read_limited};
use crate::paragon::credentials::CredentialList;
use crate::paragon::directory::LoadError;
use crate::paragon::mint::Scope;
use crate::paragon::routes::{CredentialLocation, Operation};

/// The credential list of `user` as credgate loads it for any caller of
/// that user (an unrestricted token, the shared cache), outside any
/// request: for the access review (contract §9). Mint mode only (in
/// passthrough mode lists are per caller's claim).
pub async fn list_of(
    state: &super::State,
    generation: &super::Generation,
    user: &str,
) -> Result<crate::paragon::directory::Snapshot, LoadError> {
    use std::sync::Arc;
    let reviewer = crate::auth::Identity::new(
        Arc::from(user),
        Arc::from("credgate-access-review"),
        crate::auth::Role::Admin,
        crate::clock::unix_now() + 60,
        None,
    );
    // `GET /sdk/me`: the route the list is loaded for.
    let route = crate::paragon::routes::Route {
        product: crate::config::Product::User,
        upstream: Upstream::Connect,
        op: Operation::GetUser,
    };
    let request_id = state.ids.next();
    let conn = super::ConnInfo::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        false,
        true,
        0,
    );
    let mut ex = Exchange::new(
        state,
        generation,
        &conn,
        &request_id,
        &reviewer,
        route,
        &http::HeaderMap::new(),
    );
    ex.ctx.dry_run = true;
    let ctx = &ex.ctx;
    Box::pin(ctx.directory.get(&ctx.dir_key, || ctx.load())).await
}

/// Largest `/sdk/me` (or lookup) body credgate reads.
const MAX_ME_BYTES: u64 = 8 * 1024 * 1024;

/// Loads the list into the exchange when the decision needs it: always for
/// members; for admins only when they name a credential or a
/// configuration, resolve defaults (`admin_default = "resolve"`),
/// uninstall, or name a credential in the path (which must be in the list
/// for admins too). `inputs` is `None` when they did not parse (the error
/// is reported after this phase).
pub(super) async fn load_list(
    ex: &mut Exchange<'_>,
    inputs: Option<&Inputs<'_>>,
) -> Result<(), GatewayError> {
    let ctx = &ex.ctx;
    let location = ctx.route.credential_location();
    let needs_list = !ctx.admin
        || matches!(ctx.route.op, Operation::Uninstall { .. })
        || location == CredentialLocation::Path
        // Rules judge the credential of an admin's sync too (contract §5b).
        || (ctx.rules.is_some() && location == CredentialLocation::SyncOwner)
        || (ctx.rules.is_some() && matches!(ctx.route.op, Operation::SyncPatch { .. }))
        || inputs.is_some_and(|i| {
            i.requested.is_some()
                || i.configuration.is_some()
                || (ctx.resolves_for_caller
                    && matches!(
                        location,
                        CredentialLocation::Header | CredentialLocation::Body
                    ))
        });
    if !needs_list {
        return Ok(());
    }
    load_now(ex).await
}

/// Loads the user's list into the exchange, whoever calls (`/mcp` lists
/// an admin's accounts too).
pub(super) async fn load_now(ex: &mut Exchange<'_>) -> Result<(), GatewayError> {
    let ctx = &ex.ctx;
    let memo = &ctx.identity.memo.get::<CallerMemo>().list;
    if let Some(s) = ctx.directory.memo_get(memo) {
        ex.list = Some(s);
        return Ok(());
    }
    let epoch = ctx.directory.epoch();
    // Boxed: the cache's load machinery is large and this path is rare
    // (memo miss), so it must not size every request's future.
    let s = Box::pin(ctx.directory.get(&ctx.dir_key, || ctx.load()))
        .await
        .map_err(GatewayError::CredentialsUnavailable)?;
    ctx.directory.memo_put(memo, &s, epoch);
    ex.list = Some(s);
    Ok(())
}

impl Ctx<'_> {
    /// The whole load, body included, within `server.upstream_timeout`: a
    /// load holds the user's per-key lock and one of
    /// `cache.max_concurrent_loads` slots, so a Paragon that sends headers
    /// and then stalls the body must not keep them (and every request of
    /// that user waiting on them) forever.
    pub(super) async fn load(&self) -> Result<CredentialList, LoadError> {
        let limit = self.cfg.server.upstream_timeout;
        tokio::time::timeout(limit, self.load_unbounded())
            .await
            .unwrap_or_else(|_| {
                Err(LoadError::Upstream(
                    "no complete /sdk/me answer within server.upstream_timeout".into(),
                ))
            })
    }

    /// Asks Paragon which credential trigger subscription `id` of this
    /// user belongs to: a `GET` with an unrestricted token (mint mode; the
    /// caller's own in passthrough), bounded by `server.upstream_timeout`.
    /// `Ok(None)` when Paragon has no such subscription for this user.
    pub(super) async fn subscription(
        &self,
        id: &str,
    ) -> Result<Option<String>, crate::paragon::subscriptions::LookupError> {
        use crate::paragon::subscriptions::LookupError;
        if self.dry_run {
            return Err(LookupError::NotAsked);
        }
        let g = self.generation;
        let limit = g.config.server.upstream_timeout;
        self.state.metrics.subscription_lookups.inc();
        let exchange = async {
            let authorization = self
                .upstream_admin_authorization()
                .map_err(LookupError::Upstream)?;
            let path = format!(
                "/projects/{}/trigger-subscriptions/{}",
                g.config.paragon.project_id, id
            );
            let resp = self
                .own_get(Upstream::ActionKit, &path, authorization)
                .await
                .map_err(LookupError::Upstream)?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(None),
                other => return Err(LookupError::Status(other.as_u16())),
            }
            let raw = read_limited(resp.into_body(), MAX_ME_BYTES)
                .await
                .map_err(|e| LookupError::Upstream(e.to_string()))?;
            let v: Value = serde_json::from_slice(&raw).map_err(|_| LookupError::Malformed)?;
            let owners = crate::paragon::subscriptions::stated_owners(&v);
            match owners.as_slice() {
                [(sid, credential)] if *sid == id => Ok(Some(credential.to_string())),
                _ => Err(LookupError::Malformed),
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(LookupError::Upstream(
                    "no complete answer within server.upstream_timeout".into(),
                ))
            })
    }

    /// An unrestricted token for this user: minted (mint mode), or the
    /// caller's own (passthrough, where Paragon narrows by its claim).
    fn upstream_admin_authorization(&self) -> Result<HeaderValue, String> {
        self.own_authorization(Scope::Admin)
    }

    /// The token of a call credgate makes itself for this caller: minted
    /// with `scope` (mint mode), or the caller's own (passthrough).
    pub(super) fn own_authorization(&self, scope: Scope<'_>) -> Result<HeaderValue, String> {
        let g = self.generation;
        match (&g.minter, g.config.auth.mode) {
            (Some(m), AuthMode::Mint) => m
                .authorization(&self.identity.user, scope)
                .map_err(|e| e.to_string()),
            _ => self
                .caller_authorization
                .clone()
                .ok_or_else(|| "no caller token to forward".to_string()),
        }
    }

    /// A `GET` credgate makes itself (not a caller's request): JSON asked
    /// for, the given token, this request's id, no forwarding headers.
    pub(super) async fn own_get(
        &self,
        upstream: Upstream,
        path: &str,
        authorization: HeaderValue,
    ) -> Result<Response<Incoming>, String> {
        let upstreams = &self.generation.upstreams;
        let uri = upstreams.uri(upstream, path).map_err(|e| e.to_string())?;
        let mut req = Request::get(uri)
            .header(ACCEPT, "application/json")
            .body(body::empty())
            .map_err(|e| e.to_string())?;
        req.headers_mut().insert(AUTHORIZATION, authorization);
        if let Ok(v) = HeaderValue::from_str(self.request_id) {
            req.headers_mut().insert(X_REQUEST_ID, v);
        }
        upstreams
            .send(upstream, None, req)
            .await
            .map_err(|e| e.to_string())
    }

    async fn load_unbounded(&self) -> Result<CredentialList, LoadError> {
        let g = self.generation;
        let authorization = self
            .upstream_admin_authorization()
            .map_err(LoadError::Mint)?;
        let path = format!("/projects/{}/sdk/me", g.config.paragon.project_id);
        let resp = self
            .own_get(Upstream::Connect, &path, authorization)
            .await
            .map_err(LoadError::Upstream)?;
        if resp.status() != StatusCode::OK {
            return Err(LoadError::Status(resp.status().as_u16()));
        }
        let raw = read_limited(resp.into_body(), MAX_ME_BYTES)
            .await
            .map_err(|e| LoadError::Malformed(e.to_string()))?;
        CredentialList::parse(&raw).map_err(|e| match e {
            crate::paragon::credentials::ParseError::NotAuthenticated => {
                LoadError::NotAuthenticated
            }
            crate::paragon::credentials::ParseError::Malformed(m) => LoadError::Malformed(m),
        })
    }
}
