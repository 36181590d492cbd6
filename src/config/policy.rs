//! `[policy]`: who may use which credential (`owner_external_id`,
//! `credentials_claim`, `acl_file`, `rules_file`, `admin_default`), what
//! members may reach (`member_products`, `allow_account_auth`,
//! `proxy_url_hosts`, `webhook_hosts`, `member_paragon_headers`) and
//! whether refusals are answered or recorded (`enforce`,
//! `shadow_products`). It owns the section's file form (`RawPolicy`), the
//! validated [`PolicyConfig`] and its checks; the ACL and rules files
//! themselves are `acl`'s and `rules`'s.
//!
//! Of the other sections it knows only `auth.mode` (some keys do not apply
//! in passthrough mode); it knows nothing of credgate outside `config`
//! (`config` imports nothing of credgate's: see `src/lib.rs`). Deciding is
//! the `policy` module's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::acl::Acl;
use super::auth::AuthMode;
use super::common::{existing_file, ConfigError};
use super::products::Product;
use super::rules;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_products: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_account_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_hosts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_paragon_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_products: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_metadata: Option<String>,
}

/// `X-Paragon-*` request headers credgate reads and sets itself (contract §7):
/// `policy.member_paragon_headers` may not name them, because letting one
/// "through" would bypass its check.
pub const MANAGED_PARAGON_HEADERS: &[&str] = &[
    "x-paragon-credential",
    "x-paragon-configuration-id",
    "x-paragon-proxy-url",
    "x-paragon-user-metadata",
];

/// The placeholder of `policy.owner_external_id`.
pub const PRINCIPAL_PLACEHOLDER: &str = "{principal}";

/// `owner_external_id` must contain `{principal}` (else every member would
/// own the same label) and no other `{...}`.
pub fn validate_owner_template(t: &str) -> Result<(), String> {
    if !t.contains(PRINCIPAL_PLACEHOLDER) {
        return Err("must contain {principal}".into());
    }
    let rest = t.replace(PRINCIPAL_PLACEHOLDER, "");
    if rest.contains('{') || rest.contains('}') {
        return Err("only the {principal} placeholder is supported".into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDefault {
    /// Admins naming no credential are forwarded without one; Paragon picks.
    Passthrough,
    /// Admins get the same default rules as members, over every credential.
    Resolve,
}

/// `policy.member_metadata` (contract §13): what a member's `PATCH
/// /sdk/me` (user metadata, which Paragon's SDK sends at sign-in) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberMetadata {
    /// 403: admin-only, as every other member write to the user.
    Refuse,
    /// 200 with the member's own `GET /sdk/me`; nothing is written.
    Ignore,
}

impl MemberMetadata {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberMetadata::Refuse => "refuse",
            MemberMetadata::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub owner_external_id: Option<String>,
    pub credentials_claim: Option<String>,
    pub acl_file: Option<PathBuf>,
    pub acl: Arc<Acl>,
    /// `policy.rules_file` and its compiled rules (contract §5b).
    pub rules_file: Option<PathBuf>,
    pub rules: Arc<rules::Rules>,
    pub admin_default: AdminDefault,
    pub member_products: BTreeSet<Product>,
    pub allow_account_auth: bool,
    /// Lowercased `host` or `host:port` entries.
    pub proxy_url_hosts: Vec<String>,
    /// Hosts a member's trigger-subscription `webhookOverride.url` may
    /// name (contract §3): lowercased `host` or `host:port` entries.
    pub webhook_hosts: Vec<String>,
    /// Extra `X-Paragon-*` request headers members may send (lowercase).
    pub member_paragon_headers: Vec<String>,
    /// `policy.member_metadata` [default: `refuse`].
    pub member_metadata: MemberMetadata,
    /// `policy.enforce`.
    pub enforce: Enforce,
    /// The products whose authorization refusals are recorded, not answered
    /// (contract §5a): every product with `enforce = "shadow"`, else
    /// `policy.shadow_products`.
    pub shadow: BTreeSet<Product>,
}

/// `policy.enforce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforce {
    Enforce,
    Shadow,
}

impl PolicyConfig {
    /// Whether refusals by policy on `product` are shadowed (recorded and
    /// forwarded) rather than answered.
    pub fn shadows(&self, product: Product) -> bool {
        !self.shadow.is_empty() && self.shadow.contains(&product)
    }
}

pub(super) fn validate_policy(
    raw: RawPolicy,
    base: &Path,
    mode: AuthMode,
    warnings: &mut Vec<String>,
) -> Result<PolicyConfig, ConfigError> {
    if let Some(t) = &raw.owner_external_id {
        validate_owner_template(t).map_err(|m| ConfigError::new("policy.owner_external_id", m))?;
        warnings.push(
            "policy.owner_external_id trusts the externalId label given when an account was connected: use it only if members cannot choose that label (your backend sets it)".into(),
        );
    }
    if raw.credentials_claim.as_deref() == Some("") {
        return Err(ConfigError::new(
            "policy.credentials_claim",
            "must not be empty",
        ));
    }
    let acl_file = raw
        .acl_file
        .as_deref()
        .map(|p| existing_file("policy.acl_file", base, p))
        .transpose()?;
    let acl = match &acl_file {
        Some(p) => Acl::load(p).map_err(|m| ConfigError::new("policy.acl_file", m))?,
        None => Acl::default(),
    };
    let rules_file = raw
        .rules_file
        .as_deref()
        .map(|p| existing_file("policy.rules_file", base, p))
        .transpose()?;
    let rules = match &rules_file {
        Some(p) => rules::Rules::load(p).map_err(|m| ConfigError::new("policy.rules_file", m))?,
        None => rules::Rules::default(),
    };
    let allow_rules = rules.rules.iter().any(|r| r.effect == rules::Effect::Allow);
    if mode == AuthMode::Passthrough && allow_rules {
        warnings.push(
            "policy.rules_file: allow rules do not apply in passthrough mode (the token's permissions claim is the policy); deny and limit rules do".into(),
        );
    }
    if let Some(r) = rules.rules.iter().find(|r| r.shadow) {
        warnings.push(format!(
            "policy.rules_file: rule `{}` is in shadow mode: what it would do is only recorded",
            r.name
        ));
    }
    if mode == AuthMode::Mint {
        if raw.owner_external_id.is_none()
            && raw.credentials_claim.is_none()
            && acl_file.is_none()
            && !allow_rules
        {
            warnings.push(
                "no member grant is set (policy.owner_external_id, credentials_claim or acl_file): every member is refused every credential; only admins can use credgate".into(),
            );
        } else if acl_file.is_some() && acl.is_empty() {
            warnings.push("policy.acl_file grants nothing (no [[grant]])".into());
        }
    }
    if mode == AuthMode::Passthrough
        && (raw.owner_external_id.is_some()
            || raw.credentials_claim.is_some()
            || acl_file.is_some())
    {
        warnings.push(
            "policy.owner_external_id, credentials_claim and acl_file do not apply in passthrough mode (the token's permissions claim is the policy)".into(),
        );
    }
    let admin_default = match raw.admin_default.as_deref() {
        None | Some("passthrough") => AdminDefault::Passthrough,
        Some("resolve") => AdminDefault::Resolve,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.admin_default",
                format!("`{other}` is not \"passthrough\" or \"resolve\""),
            ))
        }
    };
    let member_metadata = match raw.member_metadata.as_deref() {
        None | Some("refuse") => MemberMetadata::Refuse,
        Some("ignore") => MemberMetadata::Ignore,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.member_metadata",
                format!("`{other}` is not \"refuse\" or \"ignore\""),
            ))
        }
    };
    let member_products = match raw.member_products {
        None => Product::ALL
            .iter()
            .copied()
            .filter(|p| p.member_default())
            .collect(),
        Some(list) => products("policy.member_products", &list)?,
    };
    let enforce = match raw.enforce.as_deref() {
        None | Some("enforce") => Enforce::Enforce,
        Some("shadow") => Enforce::Shadow,
        Some(other) => {
            return Err(ConfigError::new(
                "policy.enforce",
                format!("`{other}` is not \"enforce\" or \"shadow\""),
            ))
        }
    };
    let shadow = match (enforce, raw.shadow_products) {
        (Enforce::Shadow, Some(_)) => {
            return Err(ConfigError::new(
                "policy.shadow_products",
                "names the products to shadow while the rest enforce; with enforce = \"shadow\" every product is shadowed already",
            ))
        }
        (Enforce::Shadow, None) => Product::ALL.iter().copied().collect(),
        (Enforce::Enforce, None) => BTreeSet::new(),
        (Enforce::Enforce, Some(list)) => products("policy.shadow_products", &list)?,
    };
    if !shadow.is_empty() {
        let which = match enforce {
            Enforce::Shadow => "every product".to_string(),
            Enforce::Enforce => shadow
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        warnings.push(format!(
            "shadow mode is on for {which}: refusals by policy are recorded (decision = \"shadow_refused\") and the request is forwarded anyway; members can use each other's accounts there until it enforces"
        ));
    }
    let proxy_url_hosts = host_list("policy.proxy_url_hosts", raw.proxy_url_hosts)?;
    let webhook_hosts = host_list("policy.webhook_hosts", raw.webhook_hosts)?;
    let member_paragon_headers = raw
        .member_paragon_headers
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let lower = h.trim().to_ascii_lowercase();
            let token = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if token && lower.starts_with("x-paragon-") {
                Ok(lower)
            } else {
                Err(ConfigError::new(
                    "policy.member_paragon_headers",
                    format!("`{h}` is not an X-Paragon-* header name (letters, digits and `-`)"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(h) = member_paragon_headers
        .iter()
        .find(|h| MANAGED_PARAGON_HEADERS.contains(&h.as_str()))
    {
        return Err(ConfigError::new(
            "policy.member_paragon_headers",
            format!("`{h}` is checked and set by credgate itself; it cannot be let through"),
        ));
    }
    Ok(PolicyConfig {
        owner_external_id: raw.owner_external_id,
        credentials_claim: raw.credentials_claim,
        acl_file,
        acl: Arc::new(acl),
        rules_file,
        rules: Arc::new(rules),
        admin_default,
        member_products,
        allow_account_auth: raw.allow_account_auth.unwrap_or(false),
        proxy_url_hosts,
        webhook_hosts,
        member_paragon_headers,
        member_metadata,
        enforce,
        shadow,
    })
}

/// A list of hosts a full URL may name (`policy.proxy_url_hosts`,
/// `policy.webhook_hosts`): `host` or `host:port`, lowercased; no scheme,
/// path, userinfo or wildcard.
fn host_list(key: &str, list: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    list.unwrap_or_default()
        .into_iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains('@') || h.contains('*') {
                Err(ConfigError::new(
                    key,
                    format!("`{h}` is not a host name (optionally with :port); wildcards are not supported"),
                ))
            } else {
                Ok(h)
            }
        })
        .collect()
}

/// A list of product names (`policy.member_products`, `shadow_products`).
fn products(key: &str, list: &[String]) -> Result<BTreeSet<Product>, ConfigError> {
    list.iter()
        .map(|p| {
            p.parse::<Product>().map_err(|_| {
                ConfigError::new(
                    key,
                    format!(
                        "unknown product `{p}` (one of: {})",
                        Product::ALL
                            .iter()
                            .map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .collect()
}
