//! `GET /admin/access?user=U` (contract §9): every credential of Connected
//! User U, from its live list (the cache, or Paragon), with who may use it
//! and by which grant: admins, the principal an `owner_external_id` label
//! names, the principals of each ACL grant that covers it (`*`: every
//! member). A grant that cannot be enumerated (a token's
//! `credentials_claim`) is named as such instead of guessed. Each
//! credential also lists the trigger subscriptions this replica knows of
//! it, with the principal that created each through credgate (contract
//! §3; `null` when learned otherwise).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::rules::{Effect, Rules};
use crate::config::AuthMode;
use crate::gateway::State;
use crate::paragon::credentials::Credential;
use crate::paragon::directory::LoadError;
use crate::paragon::subscriptions::Seen;
use crate::policy::owner_of_label;
use crate::policy::rules::{probe, Outcome};

/// Why the review cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// 400.
    #[error("{0}")]
    BadRequest(&'static str),
    /// 409: passthrough mode has no signing key and per-token lists.
    #[error("the access review needs mint mode: in passthrough mode credgate cannot ask Paragon for a user's whole list, and each token's permissions claim is its own policy")]
    Passthrough,
    /// 503.
    #[error("the credential list of this user could not be loaded: {0}")]
    Unavailable(String),
    /// 404: Paragon refused the user's token for `/sdk/me` (401), which it
    /// does for a Connected User it does not know.
    #[error("Connected User {0:?} is unknown to Paragon (it answered /sdk/me with 401; if it refuses every user, it does not accept credgate's tokens: check paragon.project_id and paragon.signing_key_file)")]
    UnknownUser(String),
}

/// The review of `user`.
pub async fn review(state: &State, user: &str) -> Result<Value, AccessError> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(AccessError::BadRequest(
            "`user` must be a Connected User id",
        ));
    }
    let generation = state.current.load_full();
    let cfg = &generation.config;
    if cfg.auth.mode == AuthMode::Passthrough {
        return Err(AccessError::Passthrough);
    }
    // The list is loaded as credgate loads it for any caller of `user`
    // (an unrestricted token, the shared cache).
    let snapshot = crate::gateway::list_of(state, &generation, user)
        .await
        .map_err(|e| match e {
            LoadError::Status(401) | LoadError::NotAuthenticated => {
                AccessError::UnknownUser(user.to_string())
            }
            e => AccessError::Unavailable(e.to_string()),
        })?;

    let policy = &cfg.policy;
    let admins = cfg.auth.admin_claim.as_ref().map(|c| {
        json!({
            "grant": "admin",
            "principals": [],
            "who": format!("admins: tokens whose `{c}` claim holds one of {:?}", cfg.auth.admin_values),
        })
    });
    let acl = policy.acl.grants();
    let subscriptions = state.subscriptions.of_user(user);
    let mut by_principal: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut credentials = Vec::new();
    for c in snapshot.list.credentials.iter() {
        let mut access: Vec<Value> = admins.iter().cloned().collect();
        let label = match (&policy.owner_external_id, c.external_id.as_deref()) {
            (Some(t), Some(ext)) => owner_of_label(t, ext),
            _ => None,
        };
        if let Some(p) = label {
            access.push(json!({"grant": "owner_label", "principals": [p], "who": format!("the member whose principal is {p:?} (the externalId label)")}));
            by_principal.entry(p).or_default().push(&c.id);
        }
        for (g, principals) in &acl {
            if g.applies_in(user) && g.allows(&c.id, c.external_id.as_deref(), &c.integration) {
                access.push(json!({
                    "grant": "acl",
                    "index": g.index,
                    "principals": principals,
                    "who": if principals.contains(&"*") { "every member (ACL grant for \"*\")".to_string() } else { format!("ACL grant {}", g.index) },
                }));
                for p in principals {
                    by_principal.entry(p).or_default().push(&c.id);
                }
            }
        }
        if let Some(claim) = &policy.credentials_claim {
            access.push(json!({
                "grant": "credentials_claim",
                "principals": Value::Null,
                "enumerable": false,
                "who": format!("any member whose token's `{claim}` claim lists this credential (not enumerable: tokens are issued by your identity provider)"),
            }));
        }
        if let Some(pdp) = &cfg.authzen.pdp_url {
            access.push(json!({
                "grant": "pdp",
                "principals": Value::Null,
                "enumerable": false,
                "who": format!("members the AuthZEN decision point at {pdp} permits (not enumerable: it is asked per member and credential)"),
            }));
        }
        access.extend(rule_entries(&policy.rules, c));
        credentials.push(json!({
            "id": &*c.id,
            "integration": &*c.integration,
            "externalId": c.external_id.as_deref(),
            "status": c.status.as_str(),
            "access": access,
            "subscriptions": subscriptions_of(&subscriptions, &c.id),
        }));
    }
    for ids in by_principal.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    Ok(json!({
        "user": user,
        "credentials": credentials,
        "by_principal": by_principal,
        "shadow": policy.shadow.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "rules": policy.rules.rules.iter().map(|r| json!({
            "name": &*r.name,
            "effect": r.effect.as_str(),
            "mode": if r.shadow { "shadow" } else { "enforce" },
            "description": r.description,
            "when": r.when,
        })).collect::<Vec<_>>(),
    }))
}

/// The trigger subscriptions of credential `id`, with who created each
/// through credgate: they keep delivering the account's events wherever
/// their creator chose, also after it loses access (contract §3).
fn subscriptions_of(all: &[Seen], id: &str) -> Vec<Value> {
    all.iter()
        .filter(|s| s.credential.eq_ignore_ascii_case(id))
        .map(|s| json!({"id": &*s.id, "created_by": s.created_by.as_deref()}))
        .collect()
}

/// What the enforced allow and deny rules that read `credential` say of
/// `c` (contract §5b; the others treat every credential alike and are in
/// the answer's `rules`): each is probed with the credential alone. One that matches whatever the
/// caller permits it to every member (allow) or refuses it to everyone
/// (deny); one whose outcome depends on the caller or the request is
/// listed as not enumerable; one that cannot match is left out.
fn rule_entries(rules: &Rules, c: &Credential) -> Vec<Value> {
    let mut out = Vec::new();
    for rule in &rules.rules {
        let grant = match rule.effect {
            _ if rule.shadow || !rule.reads.credential => continue,
            Effect::Allow => "rule",
            Effect::Deny => "deny_rule",
            Effect::Limit => continue,
        };
        let (principals, who) = match (probe(rules, rule, c), rule.effect) {
            (Outcome::NotMatched | Outcome::Skipped, _) => continue,
            (Outcome::Matched, Effect::Allow) => (
                json!(["*"]),
                format!("every member (allow rule {:?})", &*rule.name),
            ),
            (Outcome::Matched, _) => (
                json!([]),
                format!("nobody, admins included: deny rule {:?} refuses it", &*rule.name),
            ),
            (Outcome::Error(_), Effect::Allow) => (
                Value::Null,
                format!("members for whom allow rule {:?} matches (it depends on the caller or the request: not enumerable)", &*rule.name),
            ),
            (Outcome::Error(_), _) => (
                Value::Null,
                format!("refused where deny rule {:?} matches (it depends on the caller or the request)", &*rule.name),
            ),
        };
        let enumerable = !principals.is_null();
        out.push(json!({
            "grant": grant,
            "rule": &*rule.name,
            "principals": principals,
            "enumerable": enumerable,
            "who": who,
        }));
    }
    out
}
