//! Phase 7, decide (contract §5): which credential the request targets and
//! whether this caller may use it, against the user's list (reloaded once
//! when a named credential is absent, §6); what else it touches (the
//! credential a sync moves from, one a sync body names); the credential
//! written into a body; the configuration a request names. Errors: 400
//! `bad_request`, `credential_required`; 403 `credential_forbidden`,
//! `no_permitted_credential`; 503 `credentials_unavailable`, `unavailable`
//! (the sync store, §11).
//!
//! A member's credentials that no owner label, token claim or ACL grant
//! covers are first put to the AuthZEN decision point when one is set
//! (`pdp`, contract §14): the one named, the candidates of a default, or
//! (nothing routed) the whole list in one batch.
//!
//! This is the seam the coming authorization phases join: a refusal here is
//! an authorization refusal (shadow mode will record it instead of
//! answering it, contract §5a), and rules (§5b) will refine the permit.

use std::sync::Arc;

use super::exchange::{CallerMemo, Ctx, Exchange};
use super::inputs::{Inputs, IntegrationHint, Resolved};
use crate::config::AdminDefault;
use crate::error::{GatewayError, Refused};
use crate::paragon::credentials::{parse_uuid, Credential, CredentialList};
use crate::paragon::directory::Snapshot;
use crate::paragon::routes::{CredentialLocation, Operation};
use crate::paragon::syncs::Owner;
use crate::policy::{
    default_candidates, named_candidates, resolve_default, resolve_named, why_absent, Requested,
};

/// A credential in a cached list, held by index so the list can be swapped
/// for a reloaded one without copying.
#[derive(Debug, Clone)]
pub(super) struct Chosen {
    list: Arc<CredentialList>,
    index: usize,
}

impl Chosen {
    pub(super) fn get(&self) -> &Credential {
        &self.list.credentials[self.index]
    }

    fn of(list: &Arc<CredentialList>, c: &Credential) -> Chosen {
        let index = list
            .credentials
            .iter()
            .position(|x| std::ptr::eq(x, c))
            .expect("the credential comes from this list");
        Chosen {
            list: list.clone(),
            index,
        }
    }
}

/// The credential decision for a request.
#[derive(Debug)]
pub(super) enum Routed {
    /// No credential is routed (the route has none, or lists credentials).
    None,
    /// An admin naming none, forwarded unchanged (Paragon picks).
    Passthrough,
    Credential(Chosen),
    /// Shadow mode (contract §5a): policy refused, and the request goes as
    /// the caller sent it: with the credential it named (`named`, as
    /// named; `known` when it is in the user's list), or with none.
    AsSent {
        named: Option<Box<str>>,
        known: Option<Chosen>,
    },
}

impl Routed {
    fn into_chosen(self) -> Option<Chosen> {
        match self {
            Routed::Credential(c) => Some(c),
            _ => None,
        }
    }

    /// The credential of the user's list the request goes with, if any.
    pub(super) fn credential(&self) -> Option<&Chosen> {
        match self {
            Routed::Credential(c) | Routed::AsSent { known: Some(c), .. } => Some(c),
            _ => None,
        }
    }
}

/// What the decision says of a request.
#[derive(Debug)]
pub(super) struct Decision {
    pub routed: Routed,
    /// Another credential the request touches besides the routed one (the
    /// one a sync moves from, one a sync body names): the member's token
    /// must name both.
    pub also: Option<Chosen>,
    /// The id written into the JSON body's `credentialId`.
    pub body: Option<Box<str>>,
    /// `X-Paragon-Configuration-Id`, checked against the routed credential.
    pub configuration: Option<String>,
    /// The `externalId` credgate gives a member's new account (contract
    /// §13), written into its `installOptions`.
    pub label: Option<String>,
}

impl Decision {
    fn routed(routed: Routed) -> Self {
        Decision {
            routed,
            also: None,
            body: None,
            configuration: None,
            label: None,
        }
    }
}

/// Decides (contract §5), then checks the configuration the request names
/// and that a sync about to be created or moved can be recorded (§11).
pub(super) async fn decide(
    ex: &mut Exchange<'_>,
    inputs: &Inputs<'_>,
) -> Result<Decision, GatewayError> {
    let (ctx, list) = (&ex.ctx, &mut ex.list);
    let mut decision = match ctx.route.credential_location() {
        CredentialLocation::Header
        | CredentialLocation::HeaderRequired
        | CredentialLocation::HeaderOptional => header_route(ctx, list, inputs).await?,
        CredentialLocation::Path => path_route(ctx, list, inputs).await?,
        CredentialLocation::Body | CredentialLocation::SyncOwner => {
            Box::pin(sync_route(ctx, list, inputs)).await?
        }
        CredentialLocation::SubscriptionOwner => {
            let Operation::Subscription { id, .. } = ctx.route.op else {
                return Ok(Decision::routed(Routed::None));
            };
            Decision::routed(Box::pin(subscription_owner(ctx, list, id, inputs)).await?)
        }
        CredentialLocation::None if ctx.route.is_sync() => {
            // `GET /api/syncs` with a body naming a credential: judged.
            Decision {
                body: body_named(ctx, list, inputs)
                    .await?
                    .map(|c| c.get().id.clone()),
                ..Decision::routed(Routed::None)
            }
        }
        CredentialLocation::InstallOptions => Box::pin(install_route(ctx, list, inputs)).await?,
        CredentialLocation::None => Decision::routed(Routed::None),
    };
    if let (Routed::None, Some(s)) = (&decision.routed, list.as_ref()) {
        // Nothing routed: the member's token and a listing's answer name
        // every credential it may use (one batch, contract §14).
        super::pdp::ask(ctx, s.list.credentials.iter()).await;
    }
    decision.configuration = match (&inputs.configuration, &decision.routed) {
        (Some(id), Routed::Credential(c)) => {
            if parse_uuid(id).is_some_and(|id| c.get().configurations.contains(&id)) {
                Some(id.clone())
            } else {
                // Not one of the routed credential's configurations.
                return Err(GatewayError::CredentialForbidden(Refused::NotInList));
            }
        }
        _ => None,
    };
    // Sync ownership must be recordable before Paragon creates or moves a
    // sync (contract §11: refused while the cluster store is unreachable).
    if ctx.route.op.creates_or_updates_sync() && !ctx.state.syncs.writable() {
        return Err(GatewayError::Unavailable(
            "the sync ownership store is unavailable",
        ));
    }
    Ok(decision)
}

/// The decision of a request whose refusal by policy is shadowed (contract
/// §5a): it goes as the caller sent it. A named credential is kept (in the
/// header, or written into a sync body when the header named it); when it
/// is one of the user's (by id, or by an `ext:` label only one credential
/// carries) the member's token is narrowed to it. A configuration named is
/// kept. Nothing named: nothing sent, and Paragon picks.
pub(super) fn shadow_decision(ex: &Exchange<'_>, inputs: &Inputs<'_>) -> Decision {
    let list = ex.list.as_ref().map(|s| &s.list);
    let known = match (&inputs.requested, list) {
        (Some(r), Some(l)) => {
            let mut found = l.credentials.iter().filter(|c| match r {
                Requested::Id(id) => *c.id == **id,
                Requested::External(ext) => c.external_id.as_deref() == Some(ext.as_str()),
            });
            match (found.next(), found.next()) {
                (Some(c), None) => Some(Chosen::of(l, c)),
                _ => None,
            }
        }
        _ => None,
    };
    let named: Option<Box<str>> = match (&known, &inputs.requested) {
        (Some(c), _) => Some(c.get().id.clone()),
        (None, Some(r)) => Some(r.to_string().into()),
        (None, None) => None,
    };
    // Where the enforcing decision writes the body's `credentialId`: sync
    // create and update (the header counts as the body there), and a body
    // that named one itself.
    let route = &ex.ctx.route;
    let body_route = matches!(
        route.op,
        Operation::SyncCreate | Operation::SyncPatch { .. }
    ) || (route.is_sync() && inputs.from_body);
    Decision {
        body: if body_route { named.clone() } else { None },
        routed: Routed::AsSent { named, known },
        also: None,
        configuration: inputs.configuration.clone(),
        label: None,
    }
}

/// Whether admins naming no credential are forwarded unchanged.
fn passthrough_admin(ctx: &Ctx<'_>) -> bool {
    ctx.admin && ctx.cfg.policy.admin_default == AdminDefault::Passthrough
}

/// The default when none is named (contract §5): the one permitted VALID
/// credential of the route's integration, or the one permitted at all
/// (the decision point asked about the candidates in one batch, §14).
async fn default_credential(
    ctx: &Ctx<'_>,
    list: &Option<Snapshot>,
    hint: &IntegrationHint<'_>,
) -> Result<Chosen, GatewayError> {
    let s = list.as_ref().expect("the list is loaded for defaults");
    let resolved = hint.resolve(&s.list);
    super::pdp::ask(ctx, default_candidates(&s.list, resolved.as_route())).await;
    let c = resolve_default(&s.list, &ctx.permit, resolved.as_route())?;
    Ok(Chosen::of(&s.list, c))
}

/// Routes whose credential travels in `X-Paragon-Credential` (contract §3,
/// §5): the named one, else the default; uninstall must name one of its
/// integration; credential listings route none when none is named.
async fn header_route(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    inputs: &Inputs<'_>,
) -> Result<Decision, GatewayError> {
    let hint = super::inputs::integration_of(&ctx.route, inputs);
    let location = ctx.route.credential_location();
    let routed = match &inputs.requested {
        Some(r) => {
            let chosen = resolve_with_hint(ctx, list, &hint, r).await?;
            if let Operation::Uninstall { integration_id } = ctx.route.op {
                let same = chosen.get().integration_id.is_some()
                    && chosen.get().integration_id == parse_uuid(integration_id);
                if !same {
                    return Err(GatewayError::CredentialForbidden(Refused::OtherIntegration));
                }
            }
            Routed::Credential(chosen)
        }
        None if location == CredentialLocation::HeaderRequired => {
            let s = list.as_ref().expect("uninstall loads the list");
            let resolved = hint.resolve(&s.list);
            let of_route = s.list.credentials.iter();
            super::pdp::ask(ctx, of_route.filter(|c| resolved_matches(&resolved, c))).await;
            return Err(GatewayError::CredentialRequired {
                candidates: s
                    .list
                    .credentials
                    .iter()
                    .filter(|c| ctx.permit.allows(c) && resolved_matches(&resolved, c))
                    .map(|c| c.id.to_string())
                    .collect(),
            });
        }
        None if location == CredentialLocation::HeaderOptional => Routed::None,
        None if passthrough_admin(ctx) => Routed::Passthrough,
        None => Routed::Credential(default_credential(ctx, list, &hint).await?),
    };
    Ok(Decision::routed(routed))
}

/// The install routes (contract §13): a credential named in the header
/// (the SDK's current account) is judged and not forwarded; for a member,
/// `installOptions.selectedCredentialId` is the routed credential, decided
/// as a named one (of the install's integration, its configuration one of
/// its own), and a new account gets its owner label.
async fn install_route(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    inputs: &Inputs<'_>,
) -> Result<Decision, GatewayError> {
    if let Some(r) = &inputs.requested {
        resolve_with_hint(ctx, list, &IntegrationHint::None, r).await?;
    }
    let Some(install) = &inputs.install else {
        return Ok(Decision::routed(Routed::None));
    };
    let routed = match &install.selected {
        Some(r) => Routed::Credential(selected_account(ctx, list, install, r).await?),
        None => {
            super::install::check_configuration(install, None)?;
            Routed::None
        }
    };
    let label = super::install::label(ctx, list.as_ref().map(|s| &*s.list), install)?;
    Ok(Decision {
        label,
        ..Decision::routed(routed)
    })
}

/// `installOptions.selectedCredentialId` (contract §13): the account
/// re-connected, decided as a named credential, of the install's
/// integration, its configuration (when one is named) one of its own.
async fn selected_account(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    install: &super::install::InstallInput,
    requested: &Requested,
) -> Result<Chosen, GatewayError> {
    let chosen = resolve_with_hint(ctx, list, &IntegrationHint::None, requested).await?;
    if !super::install::same_integration(install, chosen.get().integration_id) {
        return Err(GatewayError::CredentialForbidden(Refused::OtherIntegration));
    }
    super::install::check_configuration(install, Some(&chosen.get().configurations))?;
    Ok(chosen)
}

/// `/sdk/credentials/{id}[/...]` (contract §3): the path's id must be
/// permitted (for admins too, in the list); a header naming another is 400,
/// except on `GET /sdk/credentials/{id}`, which the SDK polls mid-install
/// with its current account in the header (§13): that one is judged and
/// not forwarded.
async fn path_route(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    inputs: &Inputs<'_>,
) -> Result<Decision, GatewayError> {
    let Operation::Credential { id, polled, .. } = ctx.route.op else {
        return Ok(Decision::routed(Routed::None));
    };
    if let Some(r @ (Requested::Id(h) | Requested::External(h))) = &inputs.requested {
        if !h.eq_ignore_ascii_case(id) {
            if !polled {
                return Err(GatewayError::BadRequest(
                    "X-Paragon-Credential names another credential than the path",
                ));
            }
            resolve_with_hint(ctx, list, &IntegrationHint::None, r).await?;
        }
    }
    let not_listed = GatewayError::CredentialForbidden(Refused::NotInList);
    let requested = Requested::parse(id).map_err(|_| not_listed)?;
    if !matches!(requested, Requested::Id(_)) {
        return Err(GatewayError::CredentialForbidden(Refused::NotInList));
    }
    let chosen = resolve_with_hint(ctx, list, &IntegrationHint::None, &requested).await?;
    let Some(install) = &inputs.install else {
        return Ok(Decision::routed(Routed::Credential(chosen)));
    };
    // A member's `complete-setup`, or `PATCH`/`PUT`/`POST` of the account
    // (contract §13): the body's `installOptions` are judged as a new
    // account's. An account it names is decided like a named one and the
    // token names it too; a label must be the member's own. None given,
    // none is set: the account exists, and credgate does not relabel it.
    let also = match &install.selected {
        Some(r) => {
            let named = selected_account(ctx, list, install, r).await?;
            Some(named).filter(|n| n.get().id != chosen.get().id)
        }
        None => {
            super::install::check_configuration(install, Some(&chosen.get().configurations))?;
            None
        }
    };
    super::install::check_label(ctx, install)?;
    Ok(Decision {
        also,
        ..Decision::routed(Routed::Credential(chosen))
    })
}

/// Managed Sync (contract §3, §5 "Syncs"): create routes the named or
/// default credential into the body; update routes the sync's own, or moves
/// it to the named one (the token names both); any other sync call needs
/// the sync to be the caller's, and a credential its body names is judged.
async fn sync_route(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    inputs: &Inputs<'_>,
) -> Result<Decision, GatewayError> {
    match ctx.route.op {
        Operation::SyncPatch { sync_id } => {
            let owner = Box::pin(sync_owner(ctx, list, sync_id)).await?;
            // The header counts here as the body does: it names the
            // credential the sync moves to (written into the body).
            let to = match &inputs.requested {
                Some(r) => Some(resolve_with_hint(ctx, list, &IntegrationHint::None, r).await?),
                None => None,
            };
            Ok(match to {
                // Moving the sync touches its current credential as well:
                // Paragon checks the token against both.
                Some(to) => Decision {
                    body: Some(to.get().id.clone()),
                    routed: Routed::Credential(to),
                    also: owner.into_chosen(),
                    configuration: None,
                    label: None,
                },
                None => Decision::routed(owner),
            })
        }
        Operation::SyncItem { sync_id, .. } => {
            let owner = Box::pin(sync_owner(ctx, list, sync_id)).await?;
            // Any method's body may name a credential (contract §3): judged,
            // and the token names it beside the sync's own.
            Ok(match body_named(ctx, list, inputs).await? {
                Some(c) => Decision {
                    routed: owner,
                    body: Some(c.get().id.clone()),
                    also: Some(c),
                    configuration: None,
                    label: None,
                },
                None => Decision::routed(owner),
            })
        }
        _ => {
            let hint = super::inputs::integration_of(&ctx.route, inputs);
            let chosen = match &inputs.requested {
                Some(r) => resolve_with_hint(ctx, list, &hint, r).await?,
                None if passthrough_admin(ctx) => return Ok(Decision::routed(Routed::Passthrough)),
                None => default_credential(ctx, list, &hint).await?,
            };
            Ok(Decision {
                body: Some(chosen.get().id.clone()),
                routed: Routed::Credential(chosen),
                also: None,
                configuration: None,
                label: None,
            })
        }
    }
}

/// The credential a sync body's `credentialId` names, resolved (it must be
/// permitted). A credential header on a sync route that reads none from
/// the body is dropped, as on every route that routes no header.
async fn body_named(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    inputs: &Inputs<'_>,
) -> Result<Option<Chosen>, GatewayError> {
    match &inputs.requested {
        Some(r) if inputs.from_body => resolve_with_hint(ctx, list, &IntegrationHint::None, r)
            .await
            .map(Some),
        _ => Ok(None),
    }
}

/// The credential of a trigger subscription, when this caller may reach it
/// (contract §3): known from earlier answers, else looked up at Paragon
/// before deciding. A member reaches only subscriptions of a permitted
/// credential; unknown ones are refused like foreign ones. An admin naming
/// no credential is forwarded as is (passthrough); naming one, it must be
/// the subscription's.
async fn subscription_owner(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    id: &str,
    inputs: &Inputs<'_>,
) -> Result<Routed, GatewayError> {
    if passthrough_admin(ctx) && inputs.requested.is_none() {
        return Ok(Routed::Passthrough);
    }
    let owner = ctx
        .state
        .subscriptions
        .owner(&ctx.identity.user, id, || ctx.subscription(id))
        .await
        .map_err(|e| {
            tracing::warn!(request_id = ctx.request_id, error = %e, "a trigger subscription's credential could not be established");
            GatewayError::Unavailable("the trigger subscription's credential cannot be established")
        })?;
    let Some(credential) = owner else {
        return if ctx.admin {
            Ok(Routed::Passthrough)
        } else {
            // Not a subscription of this user's that Paragon knows.
            Err(GatewayError::CredentialForbidden(Refused::NotInList))
        };
    };
    let requested = Requested::Id(credential.to_string());
    let chosen = resolve_with_hint(ctx, list, &IntegrationHint::None, &requested).await?;
    if let Some(r) = &inputs.requested {
        let named = resolve_with_hint(ctx, list, &IntegrationHint::None, r).await?;
        if named.get().id != chosen.get().id {
            return Err(GatewayError::BadRequest(
                "X-Paragon-Credential names another credential than the subscription's",
            ));
        }
    }
    Ok(Routed::Credential(chosen))
}

fn resolved_matches(r: &Resolved<'_>, c: &Credential) -> bool {
    match r {
        Resolved::Unknown => true,
        Resolved::Unmatched => false,
        Resolved::Type(t) => *c.integration == **t,
    }
}

/// Resolves a named credential against the route's integration hint, with
/// one reload when it is absent (contract §6: never settling for a list
/// loaded before the miss).
async fn resolve_with_hint(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    hint: &IntegrationHint<'_>,
    requested: &Requested,
) -> Result<Chosen, GatewayError> {
    let permit = &ctx.permit;
    let attempt = |l: &Arc<CredentialList>| -> Result<Option<Chosen>, GatewayError> {
        let resolved = hint.resolve(l);
        Ok(resolve_named(l, permit, resolved.as_route(), requested)?.map(|c| Chosen::of(l, c)))
    };
    let current = list
        .as_ref()
        .expect("the list is loaded for named credentials");
    ask_named(ctx, &current.list, hint, requested).await;
    if let Some(c) = attempt(&current.list)? {
        return Ok(c);
    }
    let epoch = ctx.directory.epoch();
    let refreshed = Box::pin(
        ctx.directory
            .refresh_for_missing(&ctx.dir_key, current, || ctx.load()),
    )
    .await;
    let absent = |l: &CredentialList| {
        let why = match why_absent(l, hint.resolve(l).as_route(), requested) {
            // An id another Connected User's list holds: a cross-tenant
            // attempt, which is what a security team alerts on (§5a).
            Refused::NotInList if other_tenants(ctx, requested) => Refused::OtherUser,
            why => why,
        };
        GatewayError::CredentialForbidden(why)
    };
    let fresh = match refreshed {
        None => return Err(absent(&current.list)),
        Some(Err(e)) => return Err(GatewayError::CredentialsUnavailable(e)),
        Some(Ok(fresh)) => fresh,
    };
    ctx.directory
        .memo_put(&ctx.identity.memo.get::<CallerMemo>().list, &fresh, epoch);
    let new_list = fresh.list.clone();
    let old = list.replace(fresh);
    let gone = old.is_some_and(|o| {
        o.list
            .credentials
            .iter()
            .any(|c| new_list.find(&c.id).is_none())
    });
    if gone {
        // A credential was disconnected: other replicas must drop their
        // copies of this user's list too (contract §11).
        if let Err(e) = Box::pin(ctx.state.invalidate(Some(&ctx.identity.user))).await {
            tracing::warn!(request_id = ctx.request_id, error = %e, "could not record an invalidation");
        }
    }
    ask_named(ctx, &new_list, hint, requested).await;
    attempt(&new_list)?.ok_or_else(|| absent(&new_list))
}

/// Asks the decision point about the credentials of `list` that
/// `requested` names (contract §14), before they are judged.
async fn ask_named(
    ctx: &Ctx<'_>,
    list: &CredentialList,
    hint: &IntegrationHint<'_>,
    requested: &Requested,
) {
    let resolved = hint.resolve(list);
    let candidates: Vec<&Credential> =
        named_candidates(list, resolved.as_route(), requested).collect();
    super::pdp::ask(ctx, candidates).await;
}

/// Whether a credential named by id is in another Connected User's list
/// that this replica loaded lately.
fn other_tenants(ctx: &Ctx<'_>, requested: &Requested) -> bool {
    let Requested::Id(id) = requested else {
        return false;
    };
    ctx.directory
        .cached_owner(&id.to_ascii_lowercase())
        .is_some_and(|u| *u != *ctx.identity.user)
}

/// The credential a sync belongs to, as far as this caller may know it: a
/// member reaches only syncs recorded for a permitted credential of its
/// user; admins reach every sync (forwarded with an admin token).
async fn sync_owner(
    ctx: &Ctx<'_>,
    list: &mut Option<Snapshot>,
    sync_id: &str,
) -> Result<Routed, GatewayError> {
    if ctx.admin && ctx.rules.is_none() {
        return Ok(Routed::Passthrough);
    }
    let owner = ctx
        .state
        .syncs
        .owner(sync_id)
        .await
        .map_err(|_| GatewayError::Unavailable("the sync ownership store is unavailable"))?;
    if ctx.admin {
        // Admins reach every sync; where credgate knows the sync's
        // credential it is routed, so that rules judge it (contract §5b: a
        // sync a deny rule freezes cannot be moved off its credential).
        let known = match (&owner, list.as_ref()) {
            (Some(Owner { user, credential }), Some(s)) if *user == ctx.identity.user => s
                .list
                .find(credential)
                .map(|c| Routed::Credential(Chosen::of(&s.list, c))),
            _ => None,
        };
        return Ok(known.unwrap_or(Routed::Passthrough));
    }
    match owner {
        Some(Owner { user, credential }) if user == ctx.identity.user => {
            let requested = Requested::Id(credential.to_string());
            resolve_with_hint(ctx, list, &IntegrationHint::None, &requested)
                .await
                .map(Routed::Credential)
        }
        // Unknown syncs, and syncs of another user, are refused alike
        // (the reason, for the audit only, tells them apart).
        Some(_) => Err(GatewayError::CredentialForbidden(Refused::OtherUser)),
        None => Err(GatewayError::CredentialForbidden(Refused::SyncNotOwned)),
    }
    .map_err(|e| match e {
        // Another member's sync: its credential is not this caller's
        // (contract §5a `sync_not_owned`), whatever the grant check said.
        GatewayError::CredentialForbidden(Refused::NoGrant) => {
            GatewayError::CredentialForbidden(Refused::SyncNotOwned)
        }
        e => e,
    })
}
