//! A Connected User's credential list, parsed from `GET /sdk/me`
//! (`paragon-api.md` §3): what credgate caches per user and decides on.
//! Only the fields a decision needs are kept, compactly (ids lowercased
//! once, integration names shared), so a cached user costs well under 2 KiB.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Lowercased credential id (Paragon's ids are UUIDs; compared
    /// case-insensitively, contract §5).
    pub id: Box<str>,
    /// The integration type key under `integrations` (`salesforce`, `slack`).
    pub integration: Arc<str>,
    /// Paragon's integration UUID, when `/sdk/me` gave one (an id that is
    /// not a UUID is dropped: nothing can then match it, failing closed).
    pub integration_id: Option<Uuid>,
    /// `status == "VALID"`.
    pub valid: bool,
    /// The status as Paragon gave it (the access review shows it).
    pub status: Status,
    pub external_id: Option<Box<str>>,
    /// Configuration ids (UUIDs; others are dropped, failing closed).
    pub configurations: Box<[Uuid]>,
}

/// A credential's status (`paragon-api.md`: `VALID | PENDING | INVALID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Valid,
    Pending,
    Invalid,
    /// Absent, or a value Paragon does not document.
    Other,
}

impl Status {
    fn parse(s: Option<&str>) -> Status {
        match s {
            Some("VALID") => Status::Valid,
            Some("PENDING") => Status::Pending,
            Some("INVALID") => Status::Invalid,
            _ => Status::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "VALID",
            Status::Pending => "PENDING",
            Status::Invalid => "INVALID",
            Status::Other => "UNKNOWN",
        }
    }
}

/// A UUID as its 16 bytes: a quarter of the memory of its text, and
/// compared without regard to case by construction.
pub type Uuid = [u8; 16];

/// Parses a canonical UUID (8-4-4-4-12 hex digits, any case).
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    if !is_uuid(s) {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = s.bytes().filter(|b| *b != b'-').map(|b| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    });
    for byte in &mut out {
        let (h, l) = (nibbles.next()?, nibbles.next()?);
        *byte = h << 4 | l;
    }
    Some(out)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialList {
    pub credentials: Box<[Credential]>,
    /// `(type with non-alphanumerics removed, uppercased; type)`, longest
    /// first, for matching ActionKit action names (contract §5).
    action_prefixes: Box<[(Box<str>, Arc<str>)]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Paragon answered `authenticated: false`")]
    NotAuthenticated,
    #[error("the /sdk/me body does not parse: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Me {
    authenticated: Option<bool>,
    #[serde(default)]
    integrations: HashMap<String, MeIntegration>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeIntegration {
    credential_id: Option<String>,
    credential_status: Option<String>,
    #[serde(default)]
    all_credentials: Option<Vec<RawCredential>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCredential {
    id: String,
    integration_id: Option<String>,
    status: Option<String>,
    external_id: Option<String>,
    #[serde(default)]
    configurations: Option<Vec<RawConfiguration>>,
}

#[derive(Deserialize)]
struct RawConfiguration {
    id: String,
}

fn lower(s: &str) -> Box<str> {
    s.to_ascii_lowercase().into_boxed_str()
}

/// `google-drive` → `GOOGLEDRIVE`.
fn action_key(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl CredentialList {
    /// Parses a `GET /sdk/me` body. `authenticated: false` and anything that
    /// is not the documented shape fail (contract §6: a failed load).
    pub fn parse(body: &[u8]) -> Result<CredentialList, ParseError> {
        let me: Me =
            serde_json::from_slice(body).map_err(|e| ParseError::Malformed(e.to_string()))?;
        if me.authenticated == Some(false) {
            return Err(ParseError::NotAuthenticated);
        }
        let mut credentials = Vec::new();
        let mut types: Vec<Arc<str>> = Vec::new();
        let mut names: Vec<&String> = me.integrations.keys().collect();
        names.sort();
        for name in names {
            let integ = &me.integrations[name];
            let integration: Arc<str> = Arc::from(name.as_str());
            types.push(integration.clone());
            match &integ.all_credentials {
                Some(all) => {
                    for c in all {
                        credentials.push(Credential {
                            id: lower(&c.id),
                            integration: integration.clone(),
                            integration_id: c.integration_id.as_deref().and_then(parse_uuid),
                            valid: c.status.as_deref() == Some("VALID"),
                            status: Status::parse(c.status.as_deref()),
                            external_id: c.external_id.as_deref().map(Into::into),
                            configurations: c
                                .configurations
                                .iter()
                                .flatten()
                                .filter_map(|cfg| parse_uuid(&cfg.id))
                                .collect(),
                        });
                    }
                }
                // Single-account shape (older API): the integration-level id.
                None => {
                    if let Some(id) = &integ.credential_id {
                        credentials.push(Credential {
                            id: lower(id),
                            integration: integration.clone(),
                            integration_id: None,
                            valid: integ.credential_status.as_deref() == Some("VALID"),
                            status: Status::parse(integ.credential_status.as_deref()),
                            external_id: None,
                            configurations: Box::new([]),
                        });
                    }
                }
            }
        }
        let mut action_prefixes: Vec<(Box<str>, Arc<str>)> = types
            .into_iter()
            .map(|t| (action_key(&t).into_boxed_str(), t))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        action_prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(CredentialList {
            credentials: credentials.into_boxed_slice(),
            action_prefixes: action_prefixes.into_boxed_slice(),
        })
    }

    /// The credential with this (lowercased) id.
    pub fn find(&self, id_lower: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| &*c.id == id_lower)
    }

    /// The integration type an ActionKit action or tool name belongs to:
    /// underscores removed and uppercased, the name starts with a type of
    /// this list uppercased with non-alphanumerics removed; longest wins
    /// (`GOOGLE_DRIVE_LIST_FILES` → `googledrive`).
    pub fn integration_for_action(&self, action: &str) -> Option<&str> {
        let key: String = action
            .chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        self.action_prefixes
            .iter()
            .find(|(prefix, _)| key.starts_with(&**prefix))
            .map(|(_, t)| &**t)
    }

    /// The integration type whose credentials carry this `integrationId`
    /// (custom integrations on the Proxy API, contract §3).
    pub fn integration_with_id(&self, integration_id: &str) -> Option<&str> {
        let wanted = parse_uuid(integration_id)?;
        self.credentials
            .iter()
            .find(|c| c.integration_id == Some(wanted))
            .map(|c| &*c.integration)
    }

    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }
}

/// Whether `s` is a canonical UUID (8-4-4-4-12 hex digits, any case).
pub use crate::config::is_uuid;

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = r#"{
      "authenticated": true,
      "userId": "acme",
      "integrations": {
        "salesforce": {
          "enabled": true,
          "credentialId": "11111111-1111-1111-1111-111111111111",
          "credentialStatus": "VALID",
          "allCredentials": [
            {"id": "11111111-1111-1111-1111-111111111111", "integrationId": "AAAAAAAA-0000-0000-0000-000000000001",
             "status": "VALID", "externalId": "alice", "providerData": {},
             "configurations": [{"id": "CCCCCCCC-0000-0000-0000-000000000001", "isDefault": true}]},
            {"id": "22222222-2222-2222-2222-222222222222", "integrationId": "aaaaaaaa-0000-0000-0000-000000000001",
             "status": "INVALID", "externalId": null}
          ]
        },
        "googledrive": {"enabled": true, "credentialId": "33333333-3333-3333-3333-333333333333", "credentialStatus": "VALID"},
        "google": {"enabled": false, "allCredentials": []},
        "custom.billing": {"enabled": true, "allCredentials": [
            {"id": "44444444-4444-4444-4444-444444444444", "integrationId": "bbbbbbbb-0000-0000-0000-000000000002", "status": "VALID"}]},
        "shopify": {"enabled": false}
      }
    }"#;

    #[test]
    fn parses_all_credentials_and_single_account_shapes() {
        let list = CredentialList::parse(ME.as_bytes()).unwrap();
        assert_eq!(list.len(), 4);
        let a = list.find("11111111-1111-1111-1111-111111111111").unwrap();
        assert_eq!(&*a.integration, "salesforce");
        assert!(a.valid);
        assert_eq!(a.external_id.as_deref(), Some("alice"));
        assert_eq!(
            a.integration_id,
            parse_uuid("aaaaaaaa-0000-0000-0000-000000000001")
        );
        assert_eq!(
            a.configurations[0],
            parse_uuid("cccccccc-0000-0000-0000-000000000001").unwrap()
        );
        let b = list.find("22222222-2222-2222-2222-222222222222").unwrap();
        assert!(!b.valid);
        assert_eq!(b.external_id, None);
        let g = list.find("33333333-3333-3333-3333-333333333333").unwrap();
        assert_eq!(&*g.integration, "googledrive");
        assert!(g.valid);
    }

    #[test]
    fn not_authenticated_and_garbage_fail() {
        assert_eq!(
            CredentialList::parse(br#"{"authenticated": false}"#),
            Err(ParseError::NotAuthenticated)
        );
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"integrations": 5}"#,
            br#"{"integrations": {"x": {"allCredentials": [{"noid": 1}]}}}"#,
        ] {
            assert!(CredentialList::parse(bad).is_err());
        }
    }

    #[test]
    fn action_names_match_the_longest_integration_prefix() {
        let list = CredentialList::parse(ME.as_bytes()).unwrap();
        assert_eq!(
            list.integration_for_action("GOOGLE_DRIVE_LIST_FILES"),
            Some("googledrive")
        );
        assert_eq!(list.integration_for_action("GOOGLE_SEARCH"), Some("google"));
        assert_eq!(
            list.integration_for_action("salesforce_create_record"),
            Some("salesforce")
        );
        assert_eq!(
            list.integration_for_action("CUSTOM_BILLING_X"),
            Some("custom.billing")
        );
        assert_eq!(list.integration_for_action("SLACK_SEND_MESSAGE"), None);
    }

    #[test]
    fn custom_integrations_are_found_by_integration_id() {
        let list = CredentialList::parse(ME.as_bytes()).unwrap();
        assert_eq!(
            list.integration_with_id("BBBBBBBB-0000-0000-0000-000000000002"),
            Some("custom.billing")
        );
        assert_eq!(list.integration_with_id("nope"), None);
    }

    #[test]
    fn uuids_parse_to_bytes_in_any_case() {
        let a = parse_uuid("0123ABCD-4567-89ef-0000-111111111111").unwrap();
        assert_eq!(a[0], 0x01);
        assert_eq!(a[3], 0xcd);
        assert_eq!(Some(a), parse_uuid("0123abcd-4567-89EF-0000-111111111111"));
        assert_eq!(parse_uuid("nope"), None);
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("11111111-1111-1111-1111-111111111111"));
        assert!(is_uuid("ABCDEF01-1111-1111-1111-11111111111f"));
        for bad in [
            "",
            "ext:alice",
            "11111111111111111111111111111111",
            "11111111-1111-1111-1111-11111111111g",
            "{11111111-1111-1111-1111-111111111111}",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}
