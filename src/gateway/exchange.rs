//! What one request carries from phase to phase (`pipeline`): its fixed
//! context and, once loaded, the user's credential list. Imports nothing of
//! the phases, which all read it.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use http::Request;

use super::{ConnInfo, Generation, State};
use crate::auth::{Identity, Role};
use crate::config::{AdminDefault, AuthMode, Config};
use crate::error::GatewayError;
use crate::net::body::Body;
use crate::paragon::credentials::Credential;
use crate::paragon::directory::{DirKey, Directory, Snapshot};
use crate::paragon::routes::Route;
use crate::policy::rules::RuleView;
use crate::policy::{PdpAnswers, Permit};

/// What the gateway remembers of a caller, in its identity's slot (see
/// `auth::Slot`): the last credential list and minted token.
#[derive(Default)]
pub(crate) struct CallerMemo {
    pub list: crate::paragon::directory::ListMemo,
    pub mint: crate::paragon::mint::MintMemo,
    pub rules: crate::policy::rules::RuleMemo,
    pub limits: crate::policy::limits::CallerBuckets,
}

/// A call a room above makes for its client as a request of its own (an
/// agent's tool call, contract §12), marked by this in its extensions,
/// which no client's request can carry: its audit record names the tool
/// and `via`, and rules see `request.tool`, `request.side_effect` and
/// `request.via`.
#[derive(Debug, Clone)]
pub struct Delegated {
    /// The tool the call runs.
    pub name: Arc<str>,
    /// What the tool does, as Paragon lists it (`read`, `delete`, ...).
    pub side_effect: Option<Arc<str>>,
    /// The integration the tool was listed under: the route's
    /// integration, so a credential of another one is refused.
    pub integration: Option<Arc<str>>,
    /// Which door the call came through (`mcp`).
    pub via: &'static str,
}

/// The fixed context of one request, known once it is authenticated and
/// classified.
pub(super) struct Ctx<'r> {
    pub state: &'r State,
    pub generation: &'r Generation,
    pub cfg: &'r Config,
    pub conn: &'r ConnInfo,
    pub request_id: &'r str,
    pub identity: &'r Identity,
    /// What this caller may use (contract §5).
    pub permit: Permit<'r>,
    /// The decision point's answers for this request, which `permit`
    /// reads (contract §14): a member's, when `authzen.pdp_url` is set.
    pub pdp: Option<Arc<PdpAnswers>>,
    /// The policy rules as this request sees them (contract §5b), when
    /// there are any.
    pub rules: Option<&'r RuleView<'r>>,
    pub route: Route<'r>,
    pub admin: bool,
    /// Whether default rules apply to this caller: members always, admins
    /// with `policy.admin_default = "resolve"`.
    pub resolves_for_caller: bool,
    /// The caller's own `Authorization` (forwarded in passthrough mode).
    pub caller_authorization: Option<HeaderValue>,
    /// The credential directory of this request (a reload may swap it).
    pub directory: Arc<Directory>,
    /// This caller's key in it (contract §6).
    pub dir_key: DirKey,
    /// `/admin/decide`: nothing is sent to Paragon but `/sdk/me` loads.
    pub dry_run: bool,
}

/// What travels from phase to phase.
pub(super) struct Exchange<'r> {
    pub ctx: Ctx<'r>,
    /// The user's credential list, once loaded (a reload replaces it).
    pub list: Option<Snapshot>,
}

impl<'r> Exchange<'r> {
    pub(super) fn new(
        state: &'r State,
        generation: &'r Generation,
        conn: &'r ConnInfo,
        request_id: &'r str,
        identity: &'r Identity,
        route: Route<'r>,
        headers: &HeaderMap,
    ) -> Self {
        let cfg: &Config = &generation.config;
        let admin = identity.is_admin();
        let dir_key = match cfg.auth.mode {
            AuthMode::Mint => DirKey::user(identity.user.clone()),
            AuthMode::Passthrough => DirKey {
                user: identity.user.clone(),
                scope: identity.permissions_key.clone(),
            },
        };
        let pdp = (cfg.authzen.pdp_url.is_some() && matches!(identity.role, Role::Member { .. }))
            .then(Arc::<PdpAnswers>::default);
        let permit = Permit::new(identity, &cfg.policy, None);
        Exchange {
            ctx: Ctx {
                state,
                generation,
                cfg,
                conn,
                request_id,
                identity,
                permit: match &pdp {
                    Some(a) => permit.with_pdp(a.clone()),
                    None => permit,
                },
                pdp,
                rules: None,
                route,
                admin,
                resolves_for_caller: !admin || cfg.policy.admin_default == AdminDefault::Resolve,
                caller_authorization: headers.get(AUTHORIZATION).cloned(),
                directory: state.directory.load_full(),
                dir_key,
                dry_run: false,
            },
            list: None,
        }
    }
}

impl<'r> Ctx<'r> {
    /// Whether this caller may use `c` on this request: the permit, and no
    /// enforced deny rule refusing it. The one test for listing and for
    /// calling (contract §5, §5b): a member's listings (`/sdk/me`,
    /// `/sdk/credentials`, trigger subscriptions, MCP tools, the token of
    /// a request that routes none) show exactly what it could use.
    pub(super) fn usable(&self, c: &Credential) -> bool {
        self.permit.allows(c)
            && self.rules.is_none_or(|v| {
                v.judge(crate::policy::rules::Subject::Credential(c))
                    .denied
                    .is_none()
            })
    }

    /// Puts the policy rules in force for this request: deny and limit
    /// rules for every caller, allow rules in a member's permit.
    pub(super) fn with_rules(&mut self, rules: Option<&'r RuleView<'r>>) {
        if rules.is_some() {
            self.rules = rules;
            let permit = Permit::new(self.identity, &self.cfg.policy, rules);
            self.permit = match &self.pdp {
                Some(a) => permit.with_pdp(a.clone()),
                None => permit,
            };
        }
    }
}

/// Shadow mode for one request (contract §5a): whether its product is
/// shadowed, and the first refusal by policy that was recorded instead of
/// answered.
#[derive(Debug, Default)]
pub(super) struct Shadow {
    pub on: bool,
    pub refused: Option<GatewayError>,
}

impl Shadow {
    pub fn new(on: bool) -> Shadow {
        Shadow { on, refused: None }
    }

    /// A refusal by policy is kept (and `Ok` returned) when shadowing is
    /// on; every other error, and every refusal when it is off, is
    /// returned. Authentication, input, limit and fail-closed errors carry
    /// no policy reason, and the guards that keep a token or a secret from
    /// leaving are not about who may use an account: never shadowed.
    pub fn absorb(&mut self, e: GatewayError) -> Result<(), GatewayError> {
        if !self.on || !e.shadowable() {
            return Err(e);
        }
        self.refused.get_or_insert(e);
        Ok(())
    }
}

/// `/admin/decide` (contract §9): the request goes through every phase but
/// the forward, and what it would have sent is kept here.
#[derive(Debug, Default)]
pub(crate) struct DryRun {
    /// A what-if caller, used instead of authenticating a token.
    pub identity: Option<Arc<Identity>>,
    /// The credential the decision routes, in full.
    pub credential: Option<Credential>,
    /// The request Paragon would have received.
    pub upstream: Option<Request<Body>>,
    /// Every policy rule and how it came out (contract §5b).
    pub rules: Vec<serde_json::Value>,
}

/// Takes a token of the caller's `[limits]` buckets (contract §5c, 429),
/// once per request: the pipeline's right after classification, a room's
/// in the room. Never for a dry run, nor for an MCP tool call, whose `/mcp`
/// request took one.
pub(super) fn take_limits(
    state: &State,
    generation: &Generation,
    identity: &Identity,
) -> Result<(), GatewayError> {
    let held = &identity.memo.get::<CallerMemo>().limits;
    generation
        .limits
        .check_caller(identity, held, &state.metrics)
}
