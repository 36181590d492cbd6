//! The ACL file (`policy.acl_file`): which principals may use which
//! credentials, by credential id, by `externalId`, or by whole integration.
//! Parsed and validated with the rest of the config (this file is part of
//! `config`: plain data), reloaded on SIGHUP; `policy` asks it.
//!
//! ```toml
//! [[grant]]
//! principal = "alice"                 # or principals = ["alice", "carol"]; "*" = every member
//! credentials = ["0b6f...-uuid"]      # by credential id (any case)
//! external_ids = ["alice-sf"]         # by the credential's externalId
//! integrations = ["slack"]            # every credential of these integrations
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::is_uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcl {
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    principal: Option<String>,
    principals: Option<Vec<String>>,
    /// The Connected Users the grant applies in [default: every one].
    users: Option<Vec<String>>,
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default)]
    external_ids: Vec<String>,
    #[serde(default)]
    integrations: Vec<String>,
}

/// One `[[grant]]`: what it grants, and in which Connected Users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Its number in the file, counted from 1 as a person counts (the
    /// first `[[grant]]` is grant 1): the audit's `grant`, the access
    /// review's `index`, and what the file's errors name.
    pub index: usize,
    /// `None`: in every Connected User.
    users: Option<HashSet<Box<str>>>,
    ids: HashSet<Box<str>>,
    external_ids: HashSet<Box<str>>,
    integrations: HashSet<Box<str>>,
}

impl Grant {
    /// Whether this grant applies in Connected User `user`.
    pub fn applies_in(&self, user: &str) -> bool {
        self.users.as_ref().is_none_or(|u| u.contains(user))
    }

    /// Whether it covers a credential with this (lowercase) id,
    /// `externalId` and integration type.
    pub fn allows(&self, id: &str, external_id: Option<&str>, integration: &str) -> bool {
        self.ids.contains(id)
            || external_id.is_some_and(|e| self.external_ids.contains(e))
            || self.integrations.contains(integration)
    }

    fn from_raw(index: usize, g: &RawGrant) -> Grant {
        Grant {
            index,
            users: g
                .users
                .as_ref()
                .map(|u| u.iter().map(|s| s.as_str().into()).collect()),
            ids: g
                .credentials
                .iter()
                .map(|s| s.to_ascii_lowercase().into_boxed_str())
                .collect(),
            external_ids: g.external_ids.iter().map(|s| s.as_str().into()).collect(),
            integrations: g.integrations.iter().map(|s| s.as_str().into()).collect(),
        }
    }
}

/// Grants by principal; `"*"` holds grants for every member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    by_principal: HashMap<Box<str>, Vec<Grant>>,
    everyone: Vec<Grant>,
    /// How many grants name no `users` (they apply in every Connected User).
    pub unscoped: usize,
    /// SHA-256 of the file's text (hex), empty for no file.
    pub sha256: String,
}

/// Whether two grants name the same principals, users and accounts (in
/// any order).
fn same_grant(a: &RawGrant, b: &RawGrant) -> bool {
    fn set<'a>(v: impl IntoIterator<Item = &'a String>) -> std::collections::BTreeSet<&'a str> {
        v.into_iter().map(String::as_str).collect()
    }
    fn principals(g: &RawGrant) -> std::collections::BTreeSet<&str> {
        let mut p: std::collections::BTreeSet<&str> =
            g.principals.iter().flatten().map(String::as_str).collect();
        p.extend(g.principal.as_deref());
        p
    }
    principals(a) == principals(b)
        && a.users.as_ref().map(set) == b.users.as_ref().map(set)
        && set(&a.credentials) == set(&b.credentials)
        && set(&a.external_ids) == set(&b.external_ids)
        && set(&a.integrations) == set(&b.integrations)
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut acl = Self::parse(&text)?;
        acl.sha256 = super::sha256_hex(text.as_bytes());
        Ok(acl)
    }

    pub fn parse(text: &str) -> Result<Acl, String> {
        let raw: RawAcl = toml::from_str(text).map_err(|e| {
            let message = e.message().lines().next().unwrap_or("invalid TOML");
            match e.span() {
                // Where it is, as a person counts lines.
                Some(at) => {
                    let line = text[..at.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message.to_string(),
            }
        })?;
        let mut acl = Acl::default();
        for (i, g) in raw.grant.iter().enumerate() {
            // Grants are numbered as a person counts them, from 1.
            let n = i + 1;
            if g.principal.is_some() && g.principals.is_some() {
                return Err(format!(
                    "grant {n}: give `principal` or `principals`, not both"
                ));
            }
            let mut principals: Vec<&str> = Vec::new();
            principals.extend(g.principal.as_deref());
            principals.extend(g.principals.iter().flatten().map(String::as_str));
            if principals.is_empty() || principals.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "grant {n}: needs `principal` or `principals` (non-empty)"
                ));
            }
            if principals.len() > 1 && principals.contains(&"*") {
                return Err(format!(
                    "grant {n}: `*` (every member) stands alone in `principals`"
                ));
            }
            if let Some(p) = principals
                .iter()
                .enumerate()
                .find_map(|(k, p)| principals[..k].contains(p).then_some(*p))
            {
                return Err(format!("grant {n}: principal `{p}` is listed twice"));
            }
            let named = g
                .credentials
                .iter()
                .chain(&g.external_ids)
                .chain(&g.integrations);
            if let Some(w) = named.into_iter().find(|v| v.contains('*')) {
                return Err(format!(
                    "grant {n}: `{w}` is no wildcard here: name credentials, labels or integration types"
                ));
            }
            if let Some(j) = raw.grant[..i]
                .iter()
                .position(|earlier| same_grant(earlier, g))
            {
                return Err(format!("grant {n} repeats grant {}", j + 1));
            }
            if g.credentials.is_empty() && g.external_ids.is_empty() && g.integrations.is_empty() {
                return Err(format!(
                    "grant {n}: grants nothing (credentials, external_ids or integrations)"
                ));
            }
            let values = principals
                .iter()
                .copied()
                .chain(g.users.iter().flatten().map(String::as_str))
                .chain(g.credentials.iter().map(String::as_str))
                .chain(g.external_ids.iter().map(String::as_str))
                .chain(g.integrations.iter().map(String::as_str));
            if let Some(p) = values
                .into_iter()
                .find(|v| v.to_ascii_uppercase().contains("REPLACE-WITH-"))
            {
                return Err(format!(
                    "grant {n}: `{p}` is a placeholder: replace it with your own value"
                ));
            }
            if let Some(bad) = g.credentials.iter().find(|c| !is_uuid(c)) {
                return Err(format!("grant {n}: `{bad}` is not a credential id (UUID)"));
            }
            match &g.users {
                Some(u) if u.is_empty() || u.iter().any(String::is_empty) => {
                    return Err(format!(
                        "grant {n}: `users` must list Connected User ids (non-empty)"
                    ))
                }
                Some(_) => {}
                None => acl.unscoped += 1,
            }
            let grant = Grant::from_raw(n, g);
            for p in principals {
                if p == "*" {
                    acl.everyone.push(grant.clone());
                } else {
                    acl.by_principal
                        .entry(p.into())
                        .or_default()
                        .push(grant.clone());
                }
            }
        }
        Ok(acl)
    }

    /// The grants of `principal`, then those of every member.
    pub fn grants_for(&self, principal: &str) -> (&[Grant], &[Grant]) {
        (
            self.by_principal
                .get(principal)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &self.everyone,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.by_principal.is_empty() && self.everyone.is_empty()
    }

    /// Every grant in file order, with the principals it names (`"*"`:
    /// every member), sorted: the access review's view.
    pub fn grants(&self) -> Vec<(&Grant, Vec<&str>)> {
        let mut by_index: std::collections::BTreeMap<usize, (&Grant, Vec<&str>)> =
            std::collections::BTreeMap::new();
        let named = self
            .by_principal
            .iter()
            .flat_map(|(p, gs)| gs.iter().map(move |g| (&**p, g)));
        let everyone = self.everyone.iter().map(|g| ("*", g));
        for (p, g) in named.chain(everyone) {
            by_index.entry(g.index).or_insert((g, Vec::new())).1.push(p);
        }
        by_index
            .into_values()
            .map(|(g, mut ps)| {
                ps.sort_unstable();
                (g, ps)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether any of `g`, applying in user `acme`, covers a credential
    /// `(id, integration, externalId)`.
    fn covers(g: &[Grant], (id, integration, ext): (&str, &str, Option<&str>)) -> bool {
        g.iter()
            .any(|g| g.applies_in("acme") && g.allows(&id.to_ascii_lowercase(), ext, integration))
    }

    fn cred<'a>(
        id: &'a str,
        integration: &'a str,
        ext: Option<&'a str>,
    ) -> (&'a str, &'a str, Option<&'a str>) {
        (id, integration, ext)
    }

    const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

    #[test]
    fn grants_by_id_external_id_and_integration() {
        let acl = Acl::parse(&format!(
            r#"
            [[grant]]
            principal = "alice"
            credentials = ["{}"]
            [[grant]]
            principals = ["alice", "bob"]
            external_ids = ["shared-sf"]
            [[grant]]
            principal = "*"
            integrations = ["gmail"]
            "#,
            A.to_uppercase()
        ))
        .unwrap();
        let (alice, all) = acl.grants_for("alice");
        assert!(
            covers(alice, cred(A, "slack", None)),
            "ids compare case-insensitively"
        );
        assert!(!covers(alice, cred(B, "slack", None)));
        assert!(covers(alice, cred(B, "salesforce", Some("shared-sf"))));
        assert!(covers(all, cred(B, "gmail", None)));
        let (bob, _) = acl.grants_for("bob");
        assert!(!covers(bob, cred(A, "slack", None)));
        assert!(acl.grants_for("carol").0.is_empty());
        assert_eq!(acl.unscoped, 3);
    }

    /// A grant naming `users` applies in those Connected Users only.
    #[test]
    fn grants_can_be_limited_to_connected_users() {
        let acl = Acl::parse(&format!(
            "[[grant]]\nprincipal = \"alice\"\nusers = [\"acme\"]\ncredentials = [\"{A}\"]\n"
        ))
        .unwrap();
        let (alice, _) = acl.grants_for("alice");
        assert!(alice[0].applies_in("acme"));
        assert!(!alice[0].applies_in("globex"));
        assert_eq!(acl.unscoped, 0);
        assert!(
            Acl::parse("[[grant]]\nprincipal = \"a\"\nusers = []\nintegrations = [\"x\"]").is_err()
        );
    }

    #[test]
    fn bad_files_are_errors() {
        for bad in [
            "[[grant]]\ncredentials = []\nprincipal = \"a\"",
            "[[grant]]\nintegrations = [\"x\"]",
            "[[grant]]\nprincipal = \"a\"\ncredentials = [\"not-a-uuid\"]",
            "[[grant]]\nprincipal = \"a\"\nintegration = [\"typo\"]",
            "nonsense",
            // Issue 29: what was accepted without a word.
            "[[grant]]\nprincipal = \"a\"\nprincipals = [\"b\"]\nintegrations = [\"x\"]",
            "[[grant]]\nprincipals = [\"*\", \"bob\"]\nintegrations = [\"x\"]",
            "[[grant]]\nprincipals = [\"bob\", \"bob\"]\nintegrations = [\"x\"]",
            "[[grant]]\nprincipal = \"a\"\nintegrations = [\"*\"]",
            "[[grant]]\nprincipal = \"a\"\nexternal_ids = [\"alice-*\"]",
            "[[grant]]\nprincipal = \"a\"\nintegrations = [\"x\", \"y\"]\n[[grant]]\nprincipals = [\"a\"]\nintegrations = [\"y\", \"x\"]",
        ] {
            assert!(Acl::parse(bad).is_err(), "{bad}");
        }
        // The same principal with other accounts is no repeat.
        assert!(Acl::parse(
            "[[grant]]\nprincipal = \"a\"\nintegrations = [\"x\"]\n[[grant]]\nprincipal = \"a\"\nintegrations = [\"y\"]"
        )
        .is_ok());
        // A TOML error names its line.
        let e = Acl::parse("[[grant]]\nprincipal = \"a\"\nintegrations = [\"x\"\n").unwrap_err();
        assert!(e.starts_with("line "), "{e}");
        assert!(Acl::parse("").unwrap().is_empty());
    }

    /// Issue 29: grants are numbered as a person counts them, from 1, in
    /// the file's errors as in the audit and the access review.
    #[test]
    fn grants_are_numbered_from_one() {
        let acl = Acl::parse(
            "[[grant]]\nprincipal = \"a\"\nintegrations = [\"x\"]\n\
             [[grant]]\nprincipal = \"*\"\nintegrations = [\"y\"]",
        )
        .unwrap();
        let numbers: Vec<usize> = acl.grants().iter().map(|(g, _)| g.index).collect();
        assert_eq!(numbers, [1, 2]);
        assert_eq!(acl.grants_for("a").0[0].index, 1);
        let e = Acl::parse("[[grant]]\nprincipal = \"a\"\nintegrations = [\"*\"]").unwrap_err();
        assert!(e.starts_with("grant 1: "), "{e}");
        let e = Acl::parse(
            "[[grant]]\nprincipal = \"a\"\nintegrations = [\"x\"]\n\
             [[grant]]\nprincipal = \"a\"\nintegrations = [\"x\"]",
        )
        .unwrap_err();
        assert_eq!(e, "grant 2 repeats grant 1");
    }
}
