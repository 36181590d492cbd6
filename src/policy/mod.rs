//! Who may use which credential (contract §5), and which credential a request
//! targets.
//!
//! A credential of the caller's user is *permitted* to an admin always, and
//! to a member when policy grants it: the `owner_external_id` label, the
//! token's `credentials_claim`, the ACL file, the decision point's answer
//! (`[authzen] pdp_url`, contract §14: asked by the gateway before it
//! decides, read here from [`PdpAnswers`]), or an allow rule. In
//! passthrough mode the token's own permissions claim decides. Nothing
//! else grants anything.

use crate::auth::{Identity, Role};
use crate::config::acl::Grant;
use crate::config::{is_uuid, PolicyConfig, PRINCIPAL_PLACEHOLDER};
use crate::error::{GatewayError, Refused};
use crate::paragon::credentials::{Credential, CredentialList};
use crate::paragon::permissions::Permissions;

pub mod limits;
mod pdp;
pub mod rules;
pub use pdp::PdpAnswers;
use rules::RuleView;

fn grants_credential(g: &Grant, user: &str, c: &Credential) -> bool {
    g.applies_in(user) && g.allows(&c.id, c.external_id.as_deref(), &c.integration)
}

/// Whether `ext` is `template` with every `{principal}` replaced by
/// `principal` (compared without building the string).
pub fn template_matches(template: &str, principal: &str, ext: &str) -> bool {
    // The pieces of `template` around each placeholder, found by hand: the
    // general substring searcher's setup costs more than these short
    // templates, and this runs per credential per request.
    let (first, mut tail) = split_placeholder(template);
    let Some(mut rest) = ext.strip_prefix(first) else {
        return false;
    };
    while let Some(t) = tail {
        let Some(after) = rest.strip_prefix(principal) else {
            return false;
        };
        let (piece, next) = split_placeholder(t);
        let Some(after) = after.strip_prefix(piece) else {
            return false;
        };
        rest = after;
        tail = next;
    }
    rest.is_empty()
}

/// Whether the label `ext` makes a credential `principal`'s under
/// `policy.owner_external_id = template` (contract §5): the filled
/// template L itself, or L followed by `/` (a member's further account of
/// one integration, `member:alice/2`, §13). A principal containing `/`
/// owns no label, so no member's label is a prefix of another's.
pub fn owns_label(template: &str, principal: &str, ext: &str) -> bool {
    if principal.contains('/') {
        return false;
    }
    template_matches(template, principal, ext)
        || ext
            .match_indices('/')
            .any(|(at, _)| template_matches(template, principal, &ext[..at]))
}

/// The member label L of `principal` (`template` filled), when it has one.
pub fn member_label(template: &str, principal: &str) -> Option<String> {
    (!principal.contains('/')).then(|| template.replace(PRINCIPAL_PLACEHOLDER, principal))
}

/// The principal that owns the label `ext` under [`owns_label`], if one
/// does (the access review).
pub fn owner_of_label<'e>(template: &str, ext: &'e str) -> Option<&'e str> {
    let whole = std::iter::once(ext.len());
    let prefixes = ext.match_indices('/').map(|(at, _)| at);
    whole
        .chain(prefixes)
        .filter_map(|end| principal_of_label(template, &ext[..end]))
        .find(|p| !p.contains('/'))
}

/// The principal whose filled `template` is `ext`, if one is (the access
/// review's inverse of [`template_matches`]): with `n` placeholders, its
/// length follows from the label's, and the candidate is checked whole.
pub fn principal_of_label<'e>(template: &str, ext: &'e str) -> Option<&'e str> {
    let n = template.matches(PRINCIPAL_PLACEHOLDER).count();
    let fixed = template.len() - n * PRINCIPAL_PLACEHOLDER.len();
    if n == 0 || ext.len() <= fixed || !(ext.len() - fixed).is_multiple_of(n) {
        return None;
    }
    let (first, _) = split_placeholder(template);
    let len = (ext.len() - fixed) / n;
    let candidate = ext.get(first.len()..first.len() + len)?;
    template_matches(template, candidate, ext).then_some(candidate)
}

/// `template` up to its first `{principal}`, and what follows it, if any.
fn split_placeholder(template: &str) -> (&str, Option<&str>) {
    let b = template.as_bytes();
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| c == b'{') {
        let at = from + off;
        if b[at..].starts_with(PRINCIPAL_PLACEHOLDER.as_bytes()) {
            return (
                &template[..at],
                Some(&template[at + PRINCIPAL_PLACEHOLDER.len()..]),
            );
        }
        from = at + 1;
    }
    (template, None)
}

/// What permitted a request (contract §5a): the stable `reason` of an
/// allowed request's audit record, with its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permitted {
    /// An admin caller: every credential of its user.
    Admin,
    /// `policy.owner_external_id`: the credential's label names the caller.
    OwnerLabel,
    /// The caller token's `policy.credentials_claim` lists it.
    CredentialsClaim,
    /// ACL grant number `grant` (counted from 1, in file order) of the caller's
    /// principal, or of `"*"` when `everyone`.
    Acl { grant: usize, everyone: bool },
    /// Passthrough mode: the token's permissions claim, by this scope
    /// (`integration:<type>` or `integration:<type>/credential:<id>`).
    PassthroughClaim { scope: Box<str> },
    /// An allow rule of `policy.rules_file` (contract §5b), by name.
    Rule { name: std::sync::Arc<str> },
    /// The decision point of `authzen.pdp_url` answered `decision: true`
    /// (contract §14).
    Pdp,
    /// No credential is routed (a listing, a call that needs none): nothing
    /// to permit; a member's answer is filtered to its own (credgate's
    /// value where the contract names none).
    NoCredential,
    /// A member's `PATCH /sdk/me` answered with its own `GET /sdk/me` and
    /// not written (`policy.member_metadata = "ignore"`, contract §13).
    MetadataIgnored,
}

impl Permitted {
    pub fn as_str(&self) -> &'static str {
        match self {
            Permitted::Admin => "admin",
            Permitted::OwnerLabel => "owner_label",
            Permitted::CredentialsClaim => "credentials_claim",
            Permitted::Acl { .. } => "acl",
            Permitted::PassthroughClaim { .. } => "passthrough_claim",
            Permitted::Rule { .. } => "rule",
            Permitted::Pdp => "pdp",
            Permitted::NoCredential => "no_credential",
            Permitted::MetadataIgnored => "metadata_ignored",
        }
    }
}

/// Every `reason` value that is not an error code (contract §5a): what
/// permitted ([`Permitted`]), what refused ([`crate::error::Refused`]),
/// a rate limit, and a client gone before the forward. Each has a sentence
/// in [`explain_reason`] and a row in the README's reasons table (tests).
pub const REASONS: &[&str] = &[
    "admin",
    "owner_label",
    "credentials_claim",
    "acl",
    "passthrough_claim",
    "rule",
    "pdp",
    "no_credential",
    "metadata_ignored",
    "not_in_list",
    "other_user",
    "other_integration",
    "no_grant",
    "ambiguous",
    "product_not_allowed",
    "host_not_allowed",
    "account_auth",
    "sync_not_owned",
    "owner_label_mismatch",
    "rate_limited",
    "client_closed",
];

/// One sentence for a person about a `reason` value (contract §5a), for
/// `/admin/decide` and `credgate explain`; `None` for a value that is an
/// error code (those are explained by the code's message).
pub fn explain_reason(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "admin" => "the caller is an admin (auth.admin_claim): every credential of its Connected User",
        "owner_label" => "the credential's externalId is policy.owner_external_id filled with the caller's principal",
        "credentials_claim" => "the caller's token lists the credential in its policy.credentials_claim claim",
        "acl" => "an ACL grant (policy.acl_file) covers the credential for this principal (see grant, grant_principal)",
        "passthrough_claim" => "the caller's Paragon token's permissions claim grants the credential (see scope)",
        "rule" => "a policy rule (policy.rules_file) decided: an allow rule permitted the credential, or a deny rule refused (see rule)",
        "pdp" => "the AuthZEN decision point (authzen.pdp_url) answered decision: true for this member and credential (cached for authzen.pdp_cache_ttl)",
        "rate_limited" => "the caller went over a rate limit ([limits], or a limit rule)",
        "no_credential" => "the request routes no credential (a listing, or a call that needs none); a member's answer is narrowed to its own",
        "not_in_list" => "the credential named is not in the Connected User's live list (checked again after a reload), or the configuration or subscription named is not the credential's",
        "other_user" => "the sync belongs to another Connected User",
        "other_integration" => "the credential is of another integration than the route's",
        "no_grant" => "the credential is the Connected User's, but no grant (owner label, token claim, ACL, the decision point of authzen.pdp_url, an allow rule) permits it to this member; a decision point that failed or did not answer in time permits nothing",
        "ambiguous" => "several credentials match (an ext: label of several, or several permitted and none named): name one",
        "product_not_allowed" => "members may not use this product (policy.member_products) or operation (admin-only)",
        "host_not_allowed" => "the Proxy API target names a host outside policy.proxy_url_hosts, or a member's trigger-subscription webhookOverride.url one outside policy.webhook_hosts",
        "account_auth" => "members may not ask for includeAccountAuth (policy.allow_account_auth)",
        "sync_not_owned" => "credgate does not know the sync's credential (a sync it did not see created or updated): admins only",
        "owner_label_mismatch" => "a member's new account would be labelled with another externalId than the member's own (policy.owner_external_id)",
        "metadata_ignored" => "a member's PATCH /sdk/me was answered with its own GET /sdk/me and not written (policy.member_metadata = \"ignore\")",
        "client_closed" => "the client went away before its request reached Paragon",
        _ => return None,
    })
}

/// [`Permitted`] before it is kept: borrowed scope keys.
enum Found<'p> {
    Admin,
    OwnerLabel,
    CredentialsClaim,
    Acl { grant: usize, everyone: bool },
    Scope(&'p str, Option<&'p str>),
    Pdp,
    Rule(usize),
}

/// What one caller is permitted, evaluated per credential. Built once per
/// request.
#[derive(Debug)]
pub enum Permit<'a> {
    All,
    Member {
        /// The Connected User (ACL grants may be limited to some).
        user: &'a str,
        /// `policy.owner_external_id` and the principal it is filled with.
        owner: Option<(&'a str, &'a str)>,
        claimed: &'a [Box<str>],
        acl_own: &'a [Grant],
        acl_all: &'a [Grant],
        /// Allow rules (contract §5b), when there are rules.
        rules: Option<&'a RuleView<'a>>,
        /// The decision point's answers (contract §14), when
        /// `authzen.pdp_url` is set.
        pdp: Option<std::sync::Arc<PdpAnswers>>,
    },
    Scoped(&'a Permissions),
}

impl<'a> Permit<'a> {
    pub fn new(
        identity: &'a Identity,
        policy: &'a PolicyConfig,
        rules: Option<&'a RuleView<'a>>,
    ) -> Permit<'a> {
        match &identity.role {
            Role::Admin => Permit::All,
            Role::Scoped(p) => Permit::Scoped(p),
            Role::Member { claimed } => {
                let (acl_own, acl_all) = policy.acl.grants_for(&identity.principal);
                Permit::Member {
                    user: &identity.user,
                    owner: policy
                        .owner_external_id
                        .as_deref()
                        .map(|t| (t, &*identity.principal)),
                    claimed,
                    acl_own,
                    acl_all,
                    rules,
                    pdp: None,
                }
            }
        }
    }

    /// This permit with the decision point's answers as a grant (a
    /// member's only: admins are permitted everything, and passthrough
    /// callers' claims decide alone).
    pub fn with_pdp(mut self, answers: std::sync::Arc<PdpAnswers>) -> Permit<'a> {
        if let Permit::Member { pdp, .. } = &mut self {
            *pdp = Some(answers);
        }
        self
    }

    /// Whether the decision point should be asked about `c` for this
    /// caller: a member with answers to fill, no answer for `c` yet, and
    /// no owner label, token claim or ACL grant covering `c` already (the
    /// decision point's answer could not change the decision).
    pub fn wants_pdp(&self, c: &Credential) -> bool {
        match self {
            Permit::Member { pdp: Some(a), .. } => {
                !a.knows(&c.id) && self.member_grant(c).is_none()
            }
            _ => false,
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Permit::All)
    }

    pub fn allows(&self, c: &Credential) -> bool {
        self.first_grant(c).is_some()
    }

    /// What permits `c` to this caller, when something does: the first
    /// grant that covers it, in the order owner label, token claim, ACL
    /// (the caller's own grants, then `"*"` grants). Computed for the
    /// routed credential only (the audit's and `/admin/decide`'s `reason`).
    pub fn why(&self, c: &Credential) -> Option<Permitted> {
        self.first_grant(c).map(|g| match g {
            Found::Admin => Permitted::Admin,
            Found::OwnerLabel => Permitted::OwnerLabel,
            Found::CredentialsClaim => Permitted::CredentialsClaim,
            Found::Acl { grant, everyone } => Permitted::Acl { grant, everyone },
            Found::Scope(i, cred) => Permitted::PassthroughClaim {
                scope: match cred {
                    Some(cred) => format!("{i}/{cred}").into(),
                    None => i.into(),
                },
            },
            Found::Pdp => Permitted::Pdp,
            Found::Rule(i) => Permitted::Rule {
                name: self.rule_name(i),
            },
        })
    }

    fn rule_name(&self, i: usize) -> std::sync::Arc<str> {
        match self {
            Permit::Member { rules: Some(r), .. } => r.rules.rules[i].name.clone(),
            _ => "".into(),
        }
    }

    /// The first grant covering `c`, without allocating (every permit
    /// check on the hot path goes through here): a member's own grants,
    /// then the decision point's answer, then allow rules.
    fn first_grant<'s>(&'s self, c: &Credential) -> Option<Found<'s>> {
        match self {
            Permit::All => Some(Found::Admin),
            Permit::Scoped(p) => p
                .granting_scope(&c.integration, &c.id)
                .map(|(i, cred)| Found::Scope(i, cred)),
            Permit::Member { rules, pdp, .. } => self
                .member_grant(c)
                .or_else(|| {
                    pdp.as_ref()
                        .filter(|a| a.permits(&c.id))
                        .map(|_| Found::Pdp)
                })
                .or_else(|| rules.and_then(|r| r.allows(c)).map(Found::Rule)),
        }
    }

    /// The owner label, token claim or ACL grant covering `c` for a
    /// member, if one does.
    fn member_grant<'s>(&'s self, c: &Credential) -> Option<Found<'s>> {
        match self {
            Permit::All | Permit::Scoped(_) => None,
            Permit::Member {
                user,
                owner,
                claimed,
                acl_own,
                acl_all,
                ..
            } => {
                let labelled = owner.is_some_and(|(template, principal)| {
                    c.external_id
                        .as_deref()
                        .is_some_and(|ext| owns_label(template, principal, ext))
                });
                if labelled {
                    return Some(Found::OwnerLabel);
                }
                if claimed.iter().any(|id| **id == *c.id) {
                    return Some(Found::CredentialsClaim);
                }
                let acl = |grants: &[Grant], everyone: bool| {
                    grants
                        .iter()
                        .find(|g| grants_credential(g, user, c))
                        .map(|g| Found::Acl {
                            grant: g.index,
                            everyone,
                        })
                };
                acl(acl_own, false).or_else(|| acl(acl_all, true))
            }
        }
    }

    /// Every permitted credential of `list`.
    pub fn permitted<'l>(
        &'l self,
        list: &'l CredentialList,
    ) -> impl Iterator<Item = &'l Credential> + 'l {
        list.credentials.iter().filter(move |c| self.allows(c))
    }
}

/// A credential as the caller named it (contract §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A canonical UUID, lowercased.
    Id(String),
    /// `ext:<externalId>`.
    External(String),
}

impl std::fmt::Display for Requested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requested::Id(id) => f.write_str(id),
            Requested::External(ext) => write!(f, "ext:{ext}"),
        }
    }
}

impl Requested {
    /// Parses a header or body value: a UUID (any case) or `ext:<id>`;
    /// anything else is 400.
    pub fn parse(v: &str) -> Result<Requested, GatewayError> {
        if is_uuid(v) {
            return Ok(Requested::Id(v.to_ascii_lowercase()));
        }
        match v.strip_prefix("ext:") {
            Some(ext) if !ext.is_empty() => Ok(Requested::External(ext.to_string())),
            _ => Err(GatewayError::BadRequest(
                "the credential must be a UUID or ext:<externalId>",
            )),
        }
    }
}

/// The integration a route targets, when it knows one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteIntegration<'a> {
    /// The route names no integration.
    Unknown,
    /// The route names this integration type.
    Known(&'a str),
    /// The route names an integration the user has no credential of (a
    /// custom integration id not in the list): nothing can match.
    Unmatched,
}

impl RouteIntegration<'_> {
    fn matches(&self, c: &Credential) -> bool {
        match self {
            RouteIntegration::Unknown => true,
            RouteIntegration::Known(t) => *c.integration == **t,
            RouteIntegration::Unmatched => false,
        }
    }
}

/// Resolves a named credential. `Ok(None)` means "not in this list": the
/// caller may reload the list once and retry before refusing (then
/// [`why_absent`] says why).
pub fn resolve_named<'l>(
    list: &'l CredentialList,
    permit: &Permit<'_>,
    integration: RouteIntegration<'_>,
    requested: &Requested,
) -> Result<Option<&'l Credential>, GatewayError> {
    match requested {
        Requested::Id(id) => match list.find(id) {
            None => Ok(None),
            // Another integration's credential and an unpermitted one get
            // the same answer as an unknown one: no oracle for ids (the
            // reason is for the audit only).
            Some(c) if !integration.matches(c) => {
                Err(GatewayError::CredentialForbidden(Refused::OtherIntegration))
            }
            Some(c) if !permit.allows(c) => {
                Err(GatewayError::CredentialForbidden(Refused::NoGrant))
            }
            Some(c) => Ok(Some(c)),
        },
        Requested::External(ext) => {
            let mut matches = list
                .credentials
                .iter()
                .filter(|c| c.external_id.as_deref() == Some(ext.as_str()))
                .filter(|c| integration.matches(c) && permit.allows(c));
            match (matches.next(), matches.next()) {
                (Some(c), None) => Ok(Some(c)),
                (None, _) => Ok(None),
                (Some(_), Some(_)) => Err(GatewayError::CredentialForbidden(Refused::Ambiguous)),
            }
        }
    }
}

/// The credentials of `list` whose grants [`resolve_named`] consults for
/// `requested`: the one with that id, or those with that `ext:` label (of
/// the route's integration). The decision point is asked about these only
/// (contract §14: never about a credential not in the list).
pub fn named_candidates<'l, 'i: 'l>(
    list: &'l CredentialList,
    integration: RouteIntegration<'i>,
    requested: &'l Requested,
) -> impl Iterator<Item = &'l Credential> + 'l {
    list.credentials.iter().filter(move |c| match requested {
        Requested::Id(id) => *c.id == **id && integration.matches(c),
        Requested::External(ext) => {
            c.external_id.as_deref() == Some(ext.as_str()) && integration.matches(c)
        }
    })
}

/// The credentials of `list` among which [`resolve_default`] chooses: those
/// of the route's integration (VALID ones when it is known), or all.
pub fn default_candidates<'l, 'i: 'l>(
    list: &'l CredentialList,
    integration: RouteIntegration<'i>,
) -> impl Iterator<Item = &'l Credential> + 'l {
    list.credentials
        .iter()
        .filter(move |c| default_candidate(integration, c))
}

/// Whether [`resolve_default`] considers `c`.
fn default_candidate(integration: RouteIntegration<'_>, c: &Credential) -> bool {
    let known = !matches!(integration, RouteIntegration::Unknown);
    integration.matches(c) && (!known || c.valid)
}

/// Why a named credential that [`resolve_named`] did not find in `list` is
/// refused: not there at all, there for another integration only, or there
/// but not permitted (an `ext:` label of someone else's account).
pub fn why_absent(
    list: &CredentialList,
    integration: RouteIntegration<'_>,
    requested: &Requested,
) -> Refused {
    let Requested::External(ext) = requested else {
        return Refused::NotInList;
    };
    let mut labelled = list
        .credentials
        .iter()
        .filter(|c| c.external_id.as_deref() == Some(ext.as_str()))
        .peekable();
    if labelled.peek().is_none() {
        Refused::NotInList
    } else if labelled.any(|c| integration.matches(c)) {
        Refused::NoGrant
    } else {
        Refused::OtherIntegration
    }
}

/// The default credential when none is named (contract §5): the one permitted
/// VALID credential of a known integration, or the one permitted credential
/// at all when the integration is unknown.
pub fn resolve_default<'l>(
    list: &'l CredentialList,
    permit: &Permit<'_>,
    integration: RouteIntegration<'_>,
) -> Result<&'l Credential, GatewayError> {
    let known = !matches!(integration, RouteIntegration::Unknown);
    let candidates: Vec<&Credential> = list
        .credentials
        .iter()
        .filter(|c| default_candidate(integration, c) && permit.allows(c))
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => {
            // Some credential of the integration exists: not granted; none:
            // nothing to grant.
            let any = list
                .credentials
                .iter()
                .any(|c| integration.matches(c) && (!known || c.valid));
            Err(GatewayError::NoPermittedCredential(if any {
                Refused::NoGrant
            } else {
                Refused::NotInList
            }))
        }
        many => Err(GatewayError::CredentialRequired {
            candidates: many.iter().map(|c| c.id.to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod template_tests {
    use super::template_matches;

    #[test]
    fn templates_match_exactly_the_filled_label() {
        assert!(template_matches("{principal}", "alice", "alice"));
        assert!(template_matches(
            "member:{principal}",
            "alice",
            "member:alice"
        ));
        assert!(template_matches("{principal}@{principal}", "a", "a@a"));
        for (t, p, e) in [
            ("{principal}", "alice", "alice2"),
            ("{principal}", "alice", "xalice"),
            ("{principal}", "alice", ""),
            ("member:{principal}", "alice", "alice"),
            ("member:{principal}", "alice", "member:bob"),
            ("{principal}@{principal}", "a", "a@b"),
            ("{principal}", "", "x"),
        ] {
            assert!(!template_matches(t, p, e), "{t} {p} {e}");
        }
    }

    #[test]
    fn labels_name_the_principal_they_were_filled_with() {
        use super::principal_of_label as of;
        assert_eq!(of("{principal}", "alice"), Some("alice"));
        assert_eq!(of("member:{principal}", "member:alice"), Some("alice"));
        assert_eq!(of("{principal}@{principal}", "ab@ab"), Some("ab"));
        assert_eq!(of("{principal}@{principal}", "ab@ac"), None);
        assert_eq!(of("member:{principal}", "alice"), None);
        assert_eq!(of("member:{principal}", "member:"), None);
        assert_eq!(of("x-{principal}-y", "x-bob-y"), Some("bob"));
        assert_eq!(of("x-{principal}-y", "x-bob-z"), None);
        // Every filled template names its principal back.
        for t in [
            "{principal}",
            "m:{principal}",
            "{principal}/{principal}",
            "a{principal}b",
        ] {
            for p in ["a", "bob", "é", "x{y"] {
                let filled = t.replace(super::PRINCIPAL_PLACEHOLDER, p);
                assert_eq!(of(t, &filled), Some(p), "{t} {p}");
            }
        }
    }

    /// contract §5, §13: `L` and `L/...` are the member's; a principal with
    /// `/` owns nothing; the access review finds the owner back.
    #[test]
    fn a_label_and_its_slash_suffixes_belong_to_the_member() {
        use super::{owner_of_label, owns_label};
        let t = "member:{principal}";
        for ext in ["member:alice", "member:alice/2", "member:alice/work/x"] {
            assert!(owns_label(t, "alice", ext), "{ext}");
            assert_eq!(owner_of_label(t, ext), Some("alice"), "{ext}");
        }
        for ext in [
            "member:alice2",
            "member:alic",
            "member:alicex/2",
            "alice/2",
            "member:bob/alice",
        ] {
            assert!(!owns_label(t, "alice", ext), "{ext}");
        }
        assert_eq!(owner_of_label(t, "member:bob/alice"), Some("bob"));
        assert_eq!(owner_of_label(t, "member:"), None);
        // A principal with `/` owns no label, not even its own exact one.
        assert!(!owns_label(t, "alice/2", "member:alice/2"));
        assert!(!owns_label("{principal}", "a/b", "a/b"));
        assert_eq!(owner_of_label("{principal}", "a/b"), Some("a"));
    }

    /// The hand-written split agrees with `str::split` on every short
    /// template, principal and label over an alphabet with the braces.
    #[test]
    fn matches_the_reference_on_short_strings() {
        fn reference(template: &str, principal: &str, ext: &str) -> bool {
            let mut parts = template.split(super::PRINCIPAL_PLACEHOLDER);
            let first = parts.next().unwrap_or("");
            let Some(mut rest) = ext.strip_prefix(first) else {
                return false;
            };
            for part in parts {
                let Some(a) = rest.strip_prefix(principal) else {
                    return false;
                };
                let Some(a) = a.strip_prefix(part) else {
                    return false;
                };
                rest = a;
            }
            rest.is_empty()
        }
        let pieces = ["", "a", "{", "}", "{principal}", "{p", "a{principal}"];
        let mut n = 0;
        for t1 in pieces {
            for t2 in pieces {
                let t = format!("{t1}{t2}");
                for p in ["", "a", "{", "ab"] {
                    for e1 in ["", "a", "{", "}", "ab", "a{"] {
                        for e2 in ["", "a", "ab", "{principal}"] {
                            let e = format!("{e1}{e2}");
                            assert_eq!(
                                template_matches(&t, p, &e),
                                reference(&t, p, &e),
                                "{t:?} {p:?} {e:?}"
                            );
                            n += 1;
                        }
                    }
                }
            }
        }
        assert!(n > 4000);
    }
}
