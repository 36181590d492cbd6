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
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default)]
    external_ids: Vec<String>,
    #[serde(default)]
    integrations: Vec<String>,
}

/// What one principal is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    ids: HashSet<Box<str>>,
    external_ids: HashSet<Box<str>>,
    integrations: HashSet<Box<str>>,
}

impl Grants {
    /// Whether these grants cover a credential with this (lowercase) id,
    /// `externalId` and integration type.
    pub fn allows(&self, id: &str, external_id: Option<&str>, integration: &str) -> bool {
        self.ids.contains(id)
            || external_id.is_some_and(|e| self.external_ids.contains(e))
            || self.integrations.contains(integration)
    }

    fn merge(&mut self, g: &RawGrant) {
        self.ids.extend(
            g.credentials
                .iter()
                .map(|s| s.to_ascii_lowercase().into_boxed_str()),
        );
        self.external_ids
            .extend(g.external_ids.iter().map(|s| s.as_str().into()));
        self.integrations
            .extend(g.integrations.iter().map(|s| s.as_str().into()));
    }
}

/// Grants by principal; `"*"` holds grants for every member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    by_principal: HashMap<Box<str>, Grants>,
    everyone: Option<Grants>,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Acl, String> {
        let raw: RawAcl = toml::from_str(text).map_err(|e| {
            e.message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string()
        })?;
        let mut acl = Acl::default();
        for (i, g) in raw.grant.iter().enumerate() {
            let mut principals: Vec<&str> = Vec::new();
            principals.extend(g.principal.as_deref());
            principals.extend(g.principals.iter().flatten().map(String::as_str));
            if principals.is_empty() || principals.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "grant {i}: needs `principal` or `principals` (non-empty)"
                ));
            }
            if g.credentials.is_empty() && g.external_ids.is_empty() && g.integrations.is_empty() {
                return Err(format!(
                    "grant {i}: grants nothing (credentials, external_ids or integrations)"
                ));
            }
            if let Some(bad) = g.credentials.iter().find(|c| !is_uuid(c)) {
                return Err(format!("grant {i}: `{bad}` is not a credential id (UUID)"));
            }
            for p in principals {
                if p == "*" {
                    acl.everyone.get_or_insert_with(Grants::default).merge(g);
                } else {
                    acl.by_principal.entry(p.into()).or_default().merge(g);
                }
            }
        }
        Ok(acl)
    }

    /// The grants of `principal` and of everyone.
    pub fn grants_for(&self, principal: &str) -> (Option<&Grants>, Option<&Grants>) {
        (self.by_principal.get(principal), self.everyone.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.by_principal.is_empty() && self.everyone.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `g` covers a credential `(id, integration, externalId)`.
    fn covers(g: &Grants, (id, integration, ext): (&str, &str, Option<&str>)) -> bool {
        g.allows(&id.to_ascii_lowercase(), ext, integration)
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
        let alice = alice.unwrap();
        assert!(
            covers(alice, cred(A, "slack", None)),
            "ids compare case-insensitively"
        );
        assert!(!covers(alice, cred(B, "slack", None)));
        assert!(covers(alice, cred(B, "salesforce", Some("shared-sf"))));
        assert!(covers(all.unwrap(), cred(B, "gmail", None)));
        let (bob, _) = acl.grants_for("bob");
        assert!(!covers(bob.unwrap(), cred(A, "slack", None)));
        assert!(acl.grants_for("carol").0.is_none());
    }

    #[test]
    fn bad_files_are_errors() {
        for bad in [
            "[[grant]]\ncredentials = []\nprincipal = \"a\"",
            "[[grant]]\nintegrations = [\"x\"]",
            "[[grant]]\nprincipal = \"a\"\ncredentials = [\"not-a-uuid\"]",
            "[[grant]]\nprincipal = \"a\"\nintegration = [\"typo\"]",
            "nonsense",
        ] {
            assert!(Acl::parse(bad).is_err(), "{bad}");
        }
        assert!(Acl::parse("").unwrap().is_empty());
    }
}
