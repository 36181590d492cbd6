//! Paragon's JWT permissions claim, `urn:useparagon:connect:permissions`
//! (`paragon-api.md` §2): parsed strictly, evaluated per credential, and
//! built for minted member tokens. The emulator enforces the same model, so
//! credgate and its test double agree on what a claim means.
//!
//! The model (Paragon documents the scopes, not every value; this is our
//! reading, stated in the README):
//! * Keys are scopes: `integration:*`, `integration:<type>` at the top;
//!   `credential:*`, `credential:<id>` inside an integration's object;
//!   `configuration:*`, `configuration:ext:<id>` inside a credential's.
//! * Values are `true`/`false`, a nested object of narrower scopes, or an
//!   array of permission strings.
//! * The most specific scope that is set decides: `integration:<type>`
//!   beats `integration:*`; within the chosen integration object
//!   `credential:<id>` beats `credential:*`; a credential not named by
//!   either is not granted. An object value grants its credential; an array
//!   grants only what its strings say (`credential:write`, connecting new
//!   accounts, grants no existing credential).
//! * Beside the scopes, the top level may hold the permissions Paragon
//!   names for whole products ([`KNOWN_FLAGS`]: ActionKit's `actionkit`,
//!   whose place in the claim Paragon does not document; we read it as a
//!   top-level `"actionkit": true`), each `true` or `false`.
//! * Anything else (an unknown scope or permission string, a number, a
//!   claim that is not an object) is an error: a policy credgate does not
//!   understand is refused, never half-applied.

use std::collections::BTreeMap;

use serde_json::Value;

pub const CLAIM: &str = "urn:useparagon:connect:permissions";

/// Permission strings credgate understands inside array values (see the
/// module doc).
const KNOWN_PERMISSIONS: &[&str] = &["credential:write"];

/// Product permissions understood at the top level of the claim.
pub const KNOWN_FLAGS: &[&str] = &["actionkit"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Allow,
    Deny,
    /// Narrower scopes; unlisted credentials are not granted.
    Nested(BTreeMap<String, Grant>),
    /// Permission strings (only ones credgate understands parse).
    Permissions(Vec<String>),
}

/// A parsed permissions claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    integrations: BTreeMap<String, Grant>,
    /// Top-level product permissions ([`KNOWN_FLAGS`]).
    flags: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionsError {
    #[error("the permissions claim is not a JSON object")]
    NotAnObject,
    #[error("unknown scope in the permissions claim")]
    UnknownScope,
    #[error("unknown permission value in the permissions claim")]
    UnknownValue,
    #[error("the permissions claim nests too deeply")]
    TooDeep,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Integration,
    Credential,
    Configuration,
}

impl Permissions {
    /// Parses the claim's value (a JSON object).
    pub fn parse(v: &Value) -> Result<Permissions, PermissionsError> {
        let Value::Object(map) = v else {
            return Err(PermissionsError::NotAnObject);
        };
        let mut integrations = BTreeMap::new();
        let mut flags = BTreeMap::new();
        for (k, v) in map {
            if KNOWN_FLAGS.contains(&k.as_str()) {
                let Value::Bool(b) = v else {
                    return Err(PermissionsError::UnknownValue);
                };
                flags.insert(k.clone(), *b);
                continue;
            }
            scope_ok(k, Level::Integration)?;
            integrations.insert(k.clone(), parse_grant(v, Level::Integration)?);
        }
        Ok(Permissions {
            integrations,
            flags,
        })
    }

    /// A top-level product permission (`actionkit`), if the claim sets it.
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.flags.get(name).copied()
    }

    /// Whether credential `id` of integration `integration` may be used.
    pub fn allows(&self, integration: &str, id: &str) -> bool {
        self.granting_scope(integration, id).is_some()
    }

    /// The scopes that grant the credential, when they do (contract §5a's
    /// `scope`): the integration key that decided and, below it, the
    /// credential key (`None` when the integration key grants everything).
    pub fn granting_scope(&self, integration: &str, id: &str) -> Option<(&str, Option<&str>)> {
        let (key, grant) = self
            .integrations
            .iter()
            .find(|(k, _)| k.strip_prefix("integration:") == Some(integration))
            .or_else(|| {
                self.integrations
                    .iter()
                    .find(|(k, _)| *k == "integration:*")
            })?;
        match grant {
            Grant::Allow => Some((key, None)),
            Grant::Deny | Grant::Permissions(_) => None,
            Grant::Nested(inner) => {
                let (cred, g) = inner
                    .iter()
                    .find(|(k, _)| {
                        k.strip_prefix("credential:")
                            .is_some_and(|c| c != "*" && c.eq_ignore_ascii_case(id))
                    })
                    .or_else(|| inner.iter().find(|(k, _)| *k == "credential:*"))?;
                matches!(g, Grant::Allow | Grant::Nested(_)).then_some((key, Some(cred)))
            }
        }
    }
}

fn scope_ok(key: &str, level: Level) -> Result<(), PermissionsError> {
    let ok = match level {
        Level::Integration => key
            .strip_prefix("integration:")
            .is_some_and(|rest| !rest.is_empty()),
        Level::Credential => key
            .strip_prefix("credential:")
            .is_some_and(|rest| !rest.is_empty()),
        Level::Configuration => key.strip_prefix("configuration:").is_some_and(|rest| {
            rest == "*" || rest.strip_prefix("ext:").is_some_and(|x| !x.is_empty())
        }),
    };
    if ok {
        Ok(())
    } else {
        Err(PermissionsError::UnknownScope)
    }
}

fn parse_grant(v: &Value, level: Level) -> Result<Grant, PermissionsError> {
    match v {
        Value::Bool(true) => Ok(Grant::Allow),
        Value::Bool(false) => Ok(Grant::Deny),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(s) if KNOWN_PERMISSIONS.contains(&s) => out.push(s.to_string()),
                    _ => return Err(PermissionsError::UnknownValue),
                }
            }
            Ok(Grant::Permissions(out))
        }
        Value::Object(map) => {
            let next = match level {
                Level::Integration => Level::Credential,
                Level::Credential => Level::Configuration,
                Level::Configuration => return Err(PermissionsError::TooDeep),
            };
            let mut inner = BTreeMap::new();
            for (k, v) in map {
                scope_ok(k, next)?;
                inner.insert(k.clone(), parse_grant(v, next)?);
            }
            Ok(Grant::Nested(inner))
        }
        _ => Err(PermissionsError::UnknownValue),
    }
}

/// Builds the claim for a minted member token: every listed credential, by
/// integration (`{"integration:<type>": {"credential:<id>": true}}`).
/// Deterministic (sorted), so equal sets give equal tokens and cache keys.
pub fn claim_for<'a>(credentials: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let mut by_integration: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (integration, id) in credentials {
        by_integration
            .entry(format!("integration:{integration}"))
            .or_default()
            .insert(format!("credential:{id}"), Value::Bool(true));
    }
    Value::Object(
        by_integration
            .into_iter()
            .map(|(k, v)| (k, Value::Object(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Permissions {
        Permissions::parse(&v).unwrap()
    }

    /// Product permissions sit beside the scopes and grant no credential;
    /// only known ones, and only as booleans, parse.
    #[test]
    fn product_permissions_parse_beside_the_scopes() {
        let perms = p(json!({"actionkit": true, "integration:slack": {"credential:a": true}}));
        assert_eq!(perms.flag("actionkit"), Some(true));
        assert!(perms.allows("slack", "a"));
        assert!(!perms.allows("slack", "b"));
        assert_eq!(p(json!({})).flag("actionkit"), None);
        for bad in [
            json!({"actionkit": "yes"}),
            json!({"actionkit": {}}),
            json!({"proxy": true}),
        ] {
            assert!(Permissions::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integration_star_grants_everything() {
        let perms = p(json!({"integration:*": true}));
        assert!(perms.allows("slack", "c1"));
        assert!(perms.allows("salesforce", "c2"));
    }

    #[test]
    fn nested_credential_grants_only_that_credential() {
        let perms = p(json!({"integration:slack": {"credential:AAA": true}}));
        assert!(
            perms.allows("slack", "aaa"),
            "ids compare case-insensitively"
        );
        assert!(!perms.allows("slack", "bbb"));
        assert!(!perms.allows("salesforce", "aaa"));
    }

    #[test]
    fn the_granting_scope_names_the_keys_that_decided() {
        let perms = p(json!({
            "integration:*": {"credential:*": true},
            "integration:slack": {"credential:c1": true, "credential:c2": false},
            "integration:github": true,
        }));
        assert_eq!(
            perms.granting_scope("slack", "C1"),
            Some(("integration:slack", Some("credential:c1")))
        );
        assert_eq!(perms.granting_scope("slack", "c2"), None);
        assert_eq!(
            perms.granting_scope("github", "x"),
            Some(("integration:github", None))
        );
        assert_eq!(
            perms.granting_scope("notion", "x"),
            Some(("integration:*", Some("credential:*")))
        );
    }

    #[test]
    fn the_more_specific_scope_wins() {
        let perms = p(json!({"integration:*": true, "integration:slack": false}));
        assert!(perms.allows("salesforce", "x"));
        assert!(!perms.allows("slack", "x"));

        let perms = p(
            json!({"integration:*": false, "integration:slack": {"credential:*": true, "credential:bad": false}}),
        );
        assert!(perms.allows("slack", "good"));
        assert!(!perms.allows("slack", "bad"));
        assert!(!perms.allows("gmail", "good"));

        // integration:<type> set as an object: unlisted credentials of it are
        // not granted even though integration:* is true.
        let perms = p(json!({"integration:*": true, "integration:slack": {"credential:a": true}}));
        assert!(perms.allows("slack", "a"));
        assert!(!perms.allows("slack", "b"));
        assert!(perms.allows("gmail", "b"));
    }

    #[test]
    fn credential_objects_with_configuration_scopes_grant_the_credential() {
        let perms = p(
            json!({"integration:slack": {"credential:a": {"configuration:*": true, "configuration:ext:x": false}}}),
        );
        assert!(perms.allows("slack", "a"));
    }

    #[test]
    fn arrays_of_known_permissions_grant_no_existing_credential() {
        let perms = p(json!({"integration:sharepoint": {"credential:*": ["credential:write"]}}));
        assert!(!perms.allows("sharepoint", "a"));
    }

    #[test]
    fn unknown_scopes_and_values_are_errors() {
        for bad in [
            json!("integration:*"),
            json!([]),
            json!({"integrations:*": true}),
            json!({"integration:": true}),
            json!({"credential:a": true}),
            json!({"integration:slack": {"integration:x": true}}),
            json!({"integration:slack": 1}),
            json!({"integration:slack": null}),
            json!({"integration:slack": "true"}),
            json!({"integration:slack": ["proxy:read"]}),
            json!({"integration:slack": {"credential:a": {"configuration:a": true}}}),
            json!({"integration:slack": {"credential:a": {"configuration:*": {"x": true}}}}),
        ] {
            assert!(Permissions::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minted_claims_are_grouped_and_sorted() {
        let claim = claim_for([("slack", "b"), ("salesforce", "c"), ("slack", "a")]);
        assert_eq!(
            claim.to_string(),
            r#"{"integration:salesforce":{"credential:c":true},"integration:slack":{"credential:a":true,"credential:b":true}}"#
        );
        let perms = Permissions::parse(&claim).unwrap();
        assert!(
            perms.allows("slack", "a")
                && perms.allows("slack", "b")
                && perms.allows("salesforce", "c")
        );
        assert!(!perms.allows("salesforce", "a"));
    }
}
