//! The emulator's starting data: Connected Users and their credentials.
//!
//! # Fixture file format
//!
//! TOML (`.toml`) or JSON (`.json`), chosen by the file's extension. Unknown
//! keys are an error, so a typo never silently becomes a default.
//! `config/emulator-fixtures.example.toml` is the built-in demo data
//! ([`Fixtures::demo`]) written out with comments.
//!
//! Top level:
//! * `project_id` (required): the Paragon project id the emulator serves.
//!   Letters, digits, `-` and `_` only (it is compared with path segments).
//!   Tokens' `aud`, when present, must be `useparagon.com/{project_id}`.
//! * `users` (array, default empty): the Connected Users.
//! * `actionkit_permission` (bool, default false): ActionKit refuses (403
//!   `7210`) a token that uses JWT permissions without the `actionkit`
//!   permission (a top-level `"actionkit": true` in the claim; Paragon's
//!   reference says the permission is needed, not where it goes).
//!
//! Each user (`[[users]]`):
//! * `id` (required): the Connected User id, matched against the token's
//!   `sub`. Unique; not empty; no control characters; at most 256 bytes.
//! * `meta` (object, default `{}`): user metadata shown by `GET /sdk/me`.
//! * `credentials` (array, default empty): the user's connected accounts.
//!
//! Each credential (`[[users.credentials]]`):
//! * `id` (required): a UUID, unique across all users (ids compare
//!   case-insensitively and are served lowercase).
//! * `integration` (required): the integration type as Paragon names it
//!   (`salesforce`, `slack`, `googledrive`, `custom.billing`): ASCII
//!   letters, digits, `.`, `-`, `_`; not `custom` (that word introduces
//!   an integration id in Proxy API paths).
//! * `integration_id` (optional UUID): Paragon's id of the integration.
//!   Credentials of one type share one id; when no credential of a type
//!   names one, it is derived from the type (same type, same id, every run).
//!   Two types may not share an id.
//! * `status` (default `"VALID"`): `"VALID"`, `"INVALID"` or `"PENDING"`.
//! * `external_id`, `provider_id` (optional strings).
//! * `provider_data` (any JSON value, default `{}`).
//! * `date_created` (optional RFC 3339 string, e.g.
//!   `"2024-01-01T00:00:00Z"`; in TOML write it quoted). It defines which
//!   credential is "oldest", Paragon's default choice. When absent, it is one
//!   minute after the newest credential before it in file order (the first
//!   one is `2024-01-01T00:00:00.000Z`), so file order is age order.
//! * `configurations` (array of UUIDs, default: one id derived from the
//!   credential id): the credential's configurations; the first is the
//!   default one. Unique across all credentials.
//!
//! Validation ([`Fixtures::validate`]) runs on load and again in
//! `emulator::spawn`; its error names the offending entry.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::util::{derived_uuid, format_iso, parse_iso};
use crate::paragon::credentials::is_uuid;

/// Default `dateCreated` of the first credential without one:
/// 2024-01-01T00:00:00Z.
pub(crate) const FIRST_DATE_MS: i64 = 1_704_067_200_000;
/// The gap between consecutive default `dateCreated` values.
pub(crate) const DATE_STEP_MS: i64 = 60_000;
/// The longest user id accepted.
const MAX_USER_ID_BYTES: usize = 256;

pub(crate) const STATUSES: [&str; 3] = ["VALID", "INVALID", "PENDING"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    pub project_id: String,
    #[serde(default)]
    pub users: Vec<UserFixture>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub actionkit_permission: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFixture {
    pub id: String,
    #[serde(default)]
    pub meta: Value,
    #[serde(default)]
    pub credentials: Vec<CredentialFixture>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFixture {
    pub id: String,
    pub integration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(default = "default_status")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(default = "empty_object")]
    pub provider_data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_created: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configurations: Vec<String>,
}

fn default_status() -> String {
    "VALID".to_string()
}

fn empty_object() -> Value {
    json!({})
}

impl CredentialFixture {
    /// A VALID credential with every optional field at its default.
    pub fn new(id: &str, integration: &str) -> CredentialFixture {
        CredentialFixture {
            id: id.to_string(),
            integration: integration.to_string(),
            integration_id: None,
            status: default_status(),
            external_id: None,
            provider_id: None,
            provider_data: empty_object(),
            date_created: None,
            configurations: Vec::new(),
        }
    }

    fn with_external_id(mut self, external_id: &str) -> CredentialFixture {
        self.external_id = Some(external_id.to_string());
        self
    }

    fn with_provider(mut self, provider_id: &str, data: Value) -> CredentialFixture {
        self.provider_id = Some(provider_id.to_string());
        self.provider_data = data;
        self
    }
}

impl Fixtures {
    /// Reads and validates a fixture file: TOML for `.toml`, JSON for
    /// `.json`. The error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<Fixtures, String> {
        let shown = path.display();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let fixtures: Fixtures = match ext.as_deref() {
            Some("toml") => toml::from_str(&text).map_err(|e| format!("{shown}: {e}"))?,
            Some("json") => serde_json::from_str(&text).map_err(|e| format!("{shown}: {e}"))?,
            _ => return Err(format!("{shown}: fixture files must end in .toml or .json")),
        };
        fixtures.validate().map_err(|e| format!("{shown}: {e}"))?;
        Ok(fixtures)
    }

    /// Checks every rule of the format (see the module documentation).
    pub fn validate(&self) -> Result<(), String> {
        Resolved::from_fixtures(self).map(|_| ())
    }

    /// The built-in demo: one organisation, `acme`, whose members `alice`
    /// and `bob` connected their own accounts (`external_id` says whose):
    /// Salesforce, one each; Slack, two for alice and one for bob; Google
    /// Drive, one for alice. All VALID, oldest first in the order listed.
    /// Ids are fixed and readable: `a11ce…` is alice's, `b0b…` bob's.
    pub fn demo(project_id: &str) -> Fixtures {
        let sf = |id: &str, who: &str, provider: &str| {
            CredentialFixture::new(id, "salesforce")
                .with_external_id(who)
                .with_provider(
                    provider,
                    json!({"instanceURL": "https://acme.my.salesforce.example"}),
                )
        };
        let slack = |id: &str, who: &str, provider: &str, workspace: &str| {
            CredentialFixture::new(id, "slack")
                .with_external_id(who)
                .with_provider(provider, json!({"teamName": workspace}))
        };
        let mut sf_alice = sf(DEMO_SALESFORCE_ALICE, "alice", "005ALICE");
        sf_alice.integration_id = Some(DEMO_INTEGRATION_SALESFORCE.to_string());
        let mut slack_alice = slack(DEMO_SLACK_ALICE_1, "alice", "U0ALICE1", "Acme");
        slack_alice.integration_id = Some(DEMO_INTEGRATION_SLACK.to_string());
        slack_alice.configurations = vec![DEMO_SLACK_ALICE_1_CONFIG.to_string()];
        let mut drive = CredentialFixture::new(DEMO_GOOGLEDRIVE_ALICE, "googledrive")
            .with_external_id("alice")
            .with_provider("alice@acme.example", json!({}));
        drive.integration_id = Some(DEMO_INTEGRATION_GOOGLEDRIVE.to_string());
        Fixtures {
            project_id: project_id.to_string(),
            actionkit_permission: false,
            users: vec![UserFixture {
                id: "acme".to_string(),
                meta: json!({"Name": "Acme Corp", "Email": "it@acme.example"}),
                credentials: vec![
                    sf_alice,
                    sf(DEMO_SALESFORCE_BOB, "bob", "005BOB"),
                    slack_alice,
                    slack(DEMO_SLACK_ALICE_2, "alice", "U0ALICE2", "Acme Labs"),
                    slack(DEMO_SLACK_BOB, "bob", "U0BOB", "Acme"),
                    drive,
                ],
            }],
        }
    }
}

/// Alice's Salesforce account in [`Fixtures::demo`].
pub const DEMO_SALESFORCE_ALICE: &str = "a11ce000-5a1e-4000-8000-000000000001";
/// Bob's Salesforce account.
pub const DEMO_SALESFORCE_BOB: &str = "b0b00000-5a1e-4000-8000-000000000001";
/// Alice's first (older) Slack account.
pub const DEMO_SLACK_ALICE_1: &str = "a11ce000-51ac-4000-8000-000000000001";
/// Alice's second Slack account.
pub const DEMO_SLACK_ALICE_2: &str = "a11ce000-51ac-4000-8000-000000000002";
/// Bob's Slack account.
pub const DEMO_SLACK_BOB: &str = "b0b00000-51ac-4000-8000-000000000001";
/// Alice's Google Drive account.
pub const DEMO_GOOGLEDRIVE_ALICE: &str = "a11ce000-d21e-4000-8000-000000000001";
/// The configuration of alice's first Slack account (given explicitly in the
/// demo; the others get derived ids).
pub const DEMO_SLACK_ALICE_1_CONFIG: &str = "c0f16000-51ac-4000-8000-000000000001";
pub const DEMO_INTEGRATION_SALESFORCE: &str = "c0ffee00-0000-4000-8000-000000000001";
pub const DEMO_INTEGRATION_SLACK: &str = "c0ffee00-0000-4000-8000-000000000002";
pub const DEMO_INTEGRATION_GOOGLEDRIVE: &str = "c0ffee00-0000-4000-8000-000000000003";

/// A credential with every default applied and every id lowercased.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedCredential {
    pub id: String,
    pub integration: String,
    pub integration_id: String,
    pub status: String,
    pub external_id: Option<String>,
    pub provider_id: Option<String>,
    pub provider_data: Value,
    pub created_ms: i64,
    pub date_created: String,
    pub configurations: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ResolvedUser {
    pub id: String,
    pub meta: serde_json::Map<String, Value>,
    pub credentials: Vec<ResolvedCredential>,
}

/// Fixtures after validation and defaults: what the emulator's state is
/// built from.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub project_id: String,
    pub users: Vec<ResolvedUser>,
    /// Integration type → integration id.
    pub integrations: BTreeMap<String, String>,
}

/// What a new credential must not collide with.
pub(crate) struct Taken<'a> {
    pub credential_ids: &'a dyn Fn(&str) -> bool,
    pub configuration_ids: &'a dyn Fn(&str) -> bool,
    /// Integration type → id already fixed.
    pub integrations: &'a BTreeMap<String, String>,
    /// `dateCreated` of the newest credential so far, if any.
    pub newest_ms: Option<i64>,
}

pub(crate) fn check_project_id(p: &str) -> Result<(), String> {
    if p.is_empty()
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("project_id must be a non-empty id of letters, digits, `-` and `_`".into());
    }
    Ok(())
}

pub(crate) fn check_user_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_USER_ID_BYTES || id.chars().any(char::is_control) {
        return Err(format!(
            "user id {id:?} must be 1 to {MAX_USER_ID_BYTES} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_integration_type(t: &str) -> Result<(), String> {
    if t.is_empty()
        || t == "custom"
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!(
            "integration {t:?} must be ASCII letters, digits, `.`, `-`, `_` (and not `custom`)"
        ));
    }
    Ok(())
}

/// Validates one credential and applies its defaults. `integration_id` is
/// the id its type must use when already fixed.
pub(crate) fn resolve_credential(
    c: &CredentialFixture,
    taken: &Taken<'_>,
) -> Result<ResolvedCredential, String> {
    let id = c.id.to_ascii_lowercase();
    let label = format!("credential {:?}", c.id);
    if !is_uuid(&id) {
        return Err(format!("{label}: id must be a UUID"));
    }
    if (taken.credential_ids)(&id) {
        return Err(format!("{label}: id is used twice"));
    }
    check_integration_type(&c.integration).map_err(|e| format!("{label}: {e}"))?;
    let fixed = taken.integrations.get(&c.integration);
    let integration_id = match (&c.integration_id, fixed) {
        (Some(given), _) if !is_uuid(given) => {
            return Err(format!("{label}: integration_id must be a UUID"))
        }
        (Some(given), Some(fixed)) if !given.eq_ignore_ascii_case(fixed) => {
            return Err(format!(
                "{label}: integration {:?} already has integration_id {fixed}",
                c.integration
            ))
        }
        (Some(given), _) => given.to_ascii_lowercase(),
        (None, Some(fixed)) => fixed.clone(),
        (None, None) => derived_uuid("integration", &c.integration),
    };
    if let Some((other, _)) = taken
        .integrations
        .iter()
        .find(|(t, i)| **i == integration_id && **t != c.integration)
    {
        return Err(format!(
            "{label}: integration_id {integration_id} already belongs to integration {other:?}"
        ));
    }
    if !STATUSES.contains(&c.status.as_str()) {
        return Err(format!("{label}: status must be VALID, INVALID or PENDING"));
    }
    let created_ms = match &c.date_created {
        Some(d) => parse_iso(d)
            .ok_or_else(|| format!("{label}: date_created must be an RFC 3339 timestamp"))?,
        None => taken
            .newest_ms
            .map_or(FIRST_DATE_MS, |n| n.saturating_add(DATE_STEP_MS)),
    };
    let configurations = if c.configurations.is_empty() {
        vec![derived_uuid("configuration", &id)]
    } else {
        let mut out: Vec<String> = Vec::with_capacity(c.configurations.len());
        for cfg in &c.configurations {
            let cfg = cfg.to_ascii_lowercase();
            if !is_uuid(&cfg) {
                return Err(format!("{label}: configuration {cfg:?} must be a UUID"));
            }
            if out.contains(&cfg) || (taken.configuration_ids)(&cfg) {
                return Err(format!("{label}: configuration {cfg} is used twice"));
            }
            out.push(cfg);
        }
        out
    };
    if (taken.configuration_ids)(&configurations[0]) && c.configurations.is_empty() {
        return Err(format!(
            "{label}: its derived configuration id is already in use"
        ));
    }
    Ok(ResolvedCredential {
        id,
        integration: c.integration.clone(),
        integration_id,
        status: c.status.clone(),
        external_id: c.external_id.clone(),
        provider_id: c.provider_id.clone(),
        provider_data: c.provider_data.clone(),
        created_ms,
        date_created: c
            .date_created
            .clone()
            .unwrap_or_else(|| format_iso(created_ms)),
        configurations,
    })
}

impl Resolved {
    pub(crate) fn from_fixtures(f: &Fixtures) -> Result<Resolved, String> {
        check_project_id(&f.project_id)?;
        // Integration ids: an explicit id anywhere fixes its type's id, so
        // the order of credentials does not change which id a type gets.
        let mut integrations: BTreeMap<String, String> = BTreeMap::new();
        for c in f.users.iter().flat_map(|u| &u.credentials) {
            if let Some(given) = &c.integration_id {
                let given = given.to_ascii_lowercase();
                match integrations.get(&c.integration) {
                    Some(fixed) if *fixed != given => {
                        return Err(format!(
                            "credential {:?}: integration {:?} is given two integration ids",
                            c.id, c.integration
                        ))
                    }
                    Some(_) => {}
                    None => {
                        integrations.insert(c.integration.clone(), given);
                    }
                }
            }
        }
        let mut users: Vec<ResolvedUser> = Vec::with_capacity(f.users.len());
        let mut credential_ids: Vec<String> = Vec::new();
        let mut configuration_ids: Vec<String> = Vec::new();
        let mut newest_ms: Option<i64> = None;
        for u in &f.users {
            check_user_id(&u.id)?;
            if users.iter().any(|x| x.id == u.id) {
                return Err(format!("user {:?} is listed twice", u.id));
            }
            let meta = match &u.meta {
                Value::Null => serde_json::Map::new(),
                Value::Object(m) => m.clone(),
                _ => return Err(format!("user {:?}: meta must be an object", u.id)),
            };
            let mut credentials = Vec::with_capacity(u.credentials.len());
            for c in &u.credentials {
                let cred_ids = |id: &str| credential_ids.iter().any(|x| x == id);
                let cfg_ids = |id: &str| configuration_ids.iter().any(|x| x == id);
                let r = resolve_credential(
                    c,
                    &Taken {
                        credential_ids: &cred_ids,
                        configuration_ids: &cfg_ids,
                        integrations: &integrations,
                        newest_ms,
                    },
                )
                .map_err(|e| format!("user {:?}: {e}", u.id))?;
                newest_ms = Some(newest_ms.map_or(r.created_ms, |n| n.max(r.created_ms)));
                integrations
                    .entry(r.integration.clone())
                    .or_insert_with(|| r.integration_id.clone());
                credential_ids.push(r.id.clone());
                configuration_ids.extend(r.configurations.iter().cloned());
                credentials.push(r);
            }
            users.push(ResolvedUser {
                id: u.id.clone(),
                meta,
                credentials,
            });
        }
        Ok(Resolved {
            project_id: f.project_id.clone(),
            users,
            integrations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(c: CredentialFixture) -> Fixtures {
        Fixtures {
            project_id: "p1".into(),
            actionkit_permission: false,
            users: vec![UserFixture {
                id: "u".into(),
                meta: Value::Null,
                credentials: vec![c],
            }],
        }
    }

    const A: &str = "11111111-1111-4111-8111-111111111111";
    const B: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn demo_fixtures_are_valid_and_as_documented() {
        let demo = Fixtures::demo("proj");
        let r = Resolved::from_fixtures(&demo).unwrap();
        assert_eq!(r.users.len(), 1);
        let acme = &r.users[0];
        assert_eq!(acme.id, "acme");
        let by = |t: &str, who: &str| {
            acme.credentials
                .iter()
                .filter(|c| c.integration == t && c.external_id.as_deref() == Some(who))
                .count()
        };
        assert_eq!((by("salesforce", "alice"), by("salesforce", "bob")), (1, 1));
        assert_eq!((by("slack", "alice"), by("slack", "bob")), (2, 1));
        assert_eq!(
            (by("googledrive", "alice"), by("googledrive", "bob")),
            (1, 0)
        );
        assert!(acme.credentials.iter().all(|c| c.status == "VALID"));
        // File order is age order.
        let dates: Vec<i64> = acme.credentials.iter().map(|c| c.created_ms).collect();
        assert!(dates.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(acme.credentials[0].date_created, "2024-01-01T00:00:00.000Z");
        assert_eq!(r.integrations["slack"], DEMO_INTEGRATION_SLACK);
    }

    #[test]
    fn the_example_file_is_the_demo_data() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/emulator-fixtures.example.toml");
        let loaded = Fixtures::load(&path).unwrap();
        assert_eq!(loaded, Fixtures::demo(&loaded.project_id));
    }

    #[test]
    fn defaults_are_applied_and_deterministic() {
        let r = Resolved::from_fixtures(&one(CredentialFixture::new(&A.to_uppercase(), "slack")))
            .unwrap();
        let c = &r.users[0].credentials[0];
        assert_eq!(c.id, A, "ids are lowercased");
        assert_eq!(c.status, "VALID");
        assert_eq!(c.provider_data, json!({}));
        assert_eq!(c.integration_id, derived_uuid("integration", "slack"));
        assert_eq!(c.configurations, vec![derived_uuid("configuration", A)]);
        let again = Resolved::from_fixtures(&one(CredentialFixture::new(A, "slack"))).unwrap();
        assert_eq!(
            again.users[0].credentials[0].integration_id,
            c.integration_id
        );
        assert!(r.users[0].meta.is_empty());
    }

    #[test]
    fn an_explicit_integration_id_applies_to_every_credential_of_the_type() {
        let mut f = one(CredentialFixture::new(A, "slack"));
        let mut second = CredentialFixture::new(B, "slack");
        second.integration_id = Some("C0FFEE00-0000-4000-8000-000000000009".into());
        f.users[0].credentials.push(second);
        let r = Resolved::from_fixtures(&f).unwrap();
        for c in &r.users[0].credentials {
            assert_eq!(c.integration_id, "c0ffee00-0000-4000-8000-000000000009");
        }
    }

    #[test]
    fn invalid_fixtures_are_refused_with_a_reason() {
        let cases: Vec<(Fixtures, &str)> = vec![
            (one(CredentialFixture::new("nope", "slack")), "UUID"),
            (one(CredentialFixture::new(A, "")), "integration"),
            (one(CredentialFixture::new(A, "custom")), "custom"),
            (one(CredentialFixture::new(A, "sla/ck")), "integration"),
            (
                one(CredentialFixture {
                    status: "valid".into(),
                    ..CredentialFixture::new(A, "slack")
                }),
                "status",
            ),
            (
                one(CredentialFixture {
                    date_created: Some("yesterday".into()),
                    ..CredentialFixture::new(A, "slack")
                }),
                "date_created",
            ),
            (
                one(CredentialFixture {
                    configurations: vec!["x".into()],
                    ..CredentialFixture::new(A, "slack")
                }),
                "configuration",
            ),
            (
                one(CredentialFixture {
                    integration_id: Some("x".into()),
                    ..CredentialFixture::new(A, "slack")
                }),
                "integration_id",
            ),
        ];
        for (f, needle) in cases {
            let err = f.validate().unwrap_err();
            assert!(err.contains(needle), "{err}");
        }

        let mut dup = one(CredentialFixture::new(A, "slack"));
        dup.users[0]
            .credentials
            .push(CredentialFixture::new(&A.to_uppercase(), "gmail"));
        assert!(dup.validate().unwrap_err().contains("twice"));

        let mut dup_user = one(CredentialFixture::new(A, "slack"));
        dup_user.users.push(UserFixture {
            id: "u".into(),
            meta: Value::Null,
            credentials: vec![],
        });
        assert!(dup_user.validate().unwrap_err().contains("twice"));

        let mut shared_id = one(CredentialFixture {
            integration_id: Some(A.into()),
            ..CredentialFixture::new(A, "slack")
        });
        shared_id.users[0].credentials.push(CredentialFixture {
            integration_id: Some(A.into()),
            ..CredentialFixture::new(B, "gmail")
        });
        assert!(shared_id
            .validate()
            .unwrap_err()
            .contains("already belongs"));

        let mut bad_meta = one(CredentialFixture::new(A, "slack"));
        bad_meta.users[0].meta = json!([1]);
        assert!(bad_meta.validate().unwrap_err().contains("meta"));

        let mut bad_project = one(CredentialFixture::new(A, "slack"));
        bad_project.project_id = "a/b".into();
        assert!(bad_project.validate().is_err());
    }

    #[test]
    fn toml_and_json_files_load_and_unknown_keys_fail() {
        let dir =
            std::env::temp_dir().join(format!("credgate-fixtures-{}", crate::keygen::uuid_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_path = dir.join("f.toml");
        std::fs::write(
            &toml_path,
            format!(
                "project_id = \"p\"\n[[users]]\nid = \"u\"\n[users.meta]\nName = \"U\"\n\
                 [[users.credentials]]\nid = \"{A}\"\nintegration = \"slack\"\n\
                 date_created = \"2023-05-01T00:00:00Z\"\n[users.credentials.provider_data]\nteam = \"x\"\n"
            ),
        )
        .unwrap();
        let f = Fixtures::load(&toml_path).unwrap();
        assert_eq!(f.users[0].meta, json!({"Name": "U"}));
        assert_eq!(
            f.users[0].credentials[0].provider_data,
            json!({"team": "x"})
        );

        let json_path = dir.join("f.json");
        std::fs::write(&json_path, serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(Fixtures::load(&json_path).unwrap(), f);

        let unknown = dir.join("u.json");
        std::fs::write(&unknown, r#"{"project_id": "p", "userz": []}"#).unwrap();
        assert!(Fixtures::load(&unknown).unwrap_err().contains("userz"));

        let other = dir.join("f.yaml");
        std::fs::write(&other, "x").unwrap();
        assert!(Fixtures::load(&other)
            .unwrap_err()
            .contains(".toml or .json"));
        assert!(Fixtures::load(&dir.join("missing.toml")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
