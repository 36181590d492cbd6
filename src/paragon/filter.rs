//! Narrowing Paragon responses that list credentials or syncs, so a member
//! sees only what it may use (contract §7 "Responses", §5 `GET /api/syncs`).
//! Fail closed: a credential or sync credgate cannot attribute is removed,
//! and a body whose shape credgate does not know is refused whole
//! ([`Unfilterable`], a 502) rather than passed on unfiltered.

use serde_json::{Map, Value};

/// Credential fields that describe one credential at the integration level
/// of `/sdk/me`.
const INTEGRATION_LEVEL: &[(&str, &str)] = &[
    ("credentialId", "id"),
    ("credentialStatus", "status"),
    ("providerId", "providerId"),
    ("providerData", "providerData"),
];

/// A successful answer in a shape credgate does not know how to narrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfilterable(pub &'static str);

fn cred_id(v: &Value) -> Option<&str> {
    v.get("id").and_then(Value::as_str)
}

fn strip_account_auth(v: &mut Value, allow: bool) {
    if !allow {
        if let Some(o) = v.as_object_mut() {
            o.remove("accountAuth");
        }
    }
}

/// Filters a `GET /sdk/me` body in place. `permitted(integration, id)`
/// decides each credential. A body without an `integrations` object is
/// refused; an integration entry that is not an object is removed.
pub fn filter_me(
    body: &mut Value,
    permitted: &dyn Fn(&str, &str) -> bool,
    allow_account_auth: bool,
) -> Result<(), Unfilterable> {
    let Some(integrations) = body.get_mut("integrations").and_then(Value::as_object_mut) else {
        return Err(Unfilterable(
            "Paragon's /sdk/me answer has no integrations object",
        ));
    };
    integrations.retain(|_, entry| entry.is_object());
    for (integration, entry) in integrations.iter_mut() {
        if let Some(entry) = entry.as_object_mut() {
            filter_integration(integration, entry, permitted, allow_account_auth)?;
        }
    }
    Ok(())
}

/// Fields of an `/sdk/me` integration entry that do not describe its
/// primary credential, kept when that credential is not the member's.
/// Everything else (`configuredWorkflows`, `sharedSettings`, fields Paragon
/// adds later) describes the primary credential or its configuration and
/// goes: an allow-list, so an unknown field fails closed.
const ENTRY_KEPT: &[&str] = &["allCredentials"];

fn filter_integration(
    integration: &str,
    entry: &mut Map<String, Value>,
    permitted: &dyn Fn(&str, &str) -> bool,
    allow_account_auth: bool,
) -> Result<(), Unfilterable> {
    let mut replacement: Option<Value> = None;
    let mut permitted_count = 0;
    match entry.get_mut("allCredentials") {
        None => {}
        Some(Value::Array(all)) => {
            all.retain(|c| cred_id(c).is_some_and(|id| permitted(integration, id)));
            for c in all.iter_mut() {
                strip_account_auth(c, allow_account_auth);
            }
            permitted_count = all.len();
            replacement = all.first().cloned();
        }
        Some(_) => {
            return Err(Unfilterable(
                "an /sdk/me integration's allCredentials is not an array",
            ))
        }
    }
    strip_account_auth_map(entry, allow_account_auth);
    let primary = entry.get("credentialId");
    let primary_ok = primary
        .and_then(Value::as_str)
        .is_some_and(|id| permitted(integration, id));
    if primary_ok || (primary.is_none() && !entry.contains_key("allCredentials")) {
        // The member's own primary credential, or an entry that describes
        // no credential at all (`{"enabled": false}`).
        return Ok(());
    }
    // Rebuild the entry around a permitted credential, or around none.
    entry.retain(|k, _| ENTRY_KEPT.contains(&k.as_str()));
    entry.insert("enabled".into(), Value::Bool(permitted_count > 0));
    if let Some(r) = &replacement {
        for (field, source) in INTEGRATION_LEVEL {
            if let Some(v) = r.get(*source) {
                entry.insert((*field).to_string(), v.clone());
            }
        }
    }
    Ok(())
}

fn strip_account_auth_map(m: &mut Map<String, Value>, allow: bool) {
    if !allow {
        m.remove("accountAuth");
    }
}

/// Filters `GET /sdk/credentials` (an array) or `GET
/// /sdk/credentials/{id}` (one credential object, with its `id`) in place.
/// Any other shape is refused.
pub fn filter_credentials(
    body: &mut Value,
    permitted: &dyn Fn(&str) -> bool,
    allow_account_auth: bool,
) -> Result<(), Unfilterable> {
    match body {
        Value::Array(items) => {
            items.retain(|c| cred_id(c).is_some_and(permitted));
            for c in items.iter_mut() {
                strip_account_auth(c, allow_account_auth);
            }
            Ok(())
        }
        Value::Object(_) if cred_id(body).is_some() => {
            // Its id was checked before forwarding; hide it anyway if
            // Paragon answered with another.
            if !cred_id(body).is_some_and(permitted) {
                *body = Value::Object(Map::new());
            }
            strip_account_auth(body, allow_account_auth);
            Ok(())
        }
        _ => Err(Unfilterable(
            "Paragon's credential answer is neither a list nor one credential",
        )),
    }
}

/// Filters `GET /api/syncs` (`{"data": [...]}`) to syncs `reachable(id)`.
/// Any other shape is refused.
pub fn filter_syncs(
    body: &mut Value,
    reachable: &dyn Fn(&str) -> bool,
) -> Result<(), Unfilterable> {
    let data = body
        .get_mut("data")
        .and_then(Value::as_array_mut)
        .ok_or(Unfilterable("Paragon's sync list has no data array"))?;
    data.retain(|s| cred_id(s).is_some_and(reachable));
    Ok(())
}

/// Filters `GET /trigger-subscriptions` (a list, or `{"data": [...]}`) to
/// subscriptions whose `credentialId` is `permitted`; one without a
/// credential is removed. Any other shape is refused.
pub fn filter_subscriptions(
    body: &mut Value,
    permitted: &dyn Fn(&str) -> bool,
) -> Result<(), Unfilterable> {
    let items = match body {
        Value::Array(items) => items,
        Value::Object(o) => match o.get_mut("data") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(Unfilterable(
                    "Paragon's trigger-subscription list has no data array",
                ))
            }
        },
        _ => {
            return Err(Unfilterable(
                "Paragon's trigger-subscription list is not a list",
            ))
        }
    };
    items.retain(|s| {
        s.get("credentialId")
            .and_then(Value::as_str)
            .is_some_and(permitted)
    });
    Ok(())
}

/// `(sync id, credential id)` pairs a sync object or list states, for
/// learning ownership from Paragon's own answers.
pub fn sync_owners(body: &Value) -> Vec<(String, String)> {
    let one = |v: &Value| -> Option<(String, String)> {
        Some((
            v.get("id")?.as_str()?.to_string(),
            v.get("credentialId")?.as_str()?.to_string(),
        ))
    };
    match body.get("data").and_then(Value::as_array) {
        Some(items) => items.iter().filter_map(one).collect(),
        None => one(body).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Value {
        json!({
            "authenticated": true,
            "integrations": {
                "slack": {
                    "enabled": true,
                    "credentialId": "bob1",
                    "credentialStatus": "VALID",
                    "providerId": "P-bob",
                    "providerData": {"team": "bob"},
                    "allCredentials": [
                        {"id": "bob1", "status": "VALID", "providerId": "P-bob", "providerData": {"team": "bob"}},
                        {"id": "alice1", "status": "INVALID", "providerId": "P-alice", "providerData": {"team": "alice"}, "accountAuth": {"accessToken": "secret"}}
                    ]
                },
                "salesforce": {
                    "enabled": true,
                    "credentialId": "bob2",
                    "credentialStatus": "VALID",
                    "allCredentials": [{"id": "bob2", "status": "VALID"}]
                },
                "shopify": {"enabled": false}
            }
        })
    }

    #[test]
    fn members_see_only_their_credentials_and_primary_fields_follow() {
        let mut body = me();
        filter_me(&mut body, &|_, id| id.starts_with("alice"), false).unwrap();
        let slack = &body["integrations"]["slack"];
        assert_eq!(
            slack["allCredentials"],
            json!([{"id": "alice1", "status": "INVALID", "providerId": "P-alice", "providerData": {"team": "alice"}}])
        );
        assert_eq!(slack["credentialId"], "alice1");
        assert_eq!(slack["credentialStatus"], "INVALID");
        assert_eq!(slack["providerId"], "P-alice");
        let sf = &body["integrations"]["salesforce"];
        assert_eq!(sf["allCredentials"], json!([]));
        assert!(sf.get("credentialId").is_none());
        assert!(sf.get("credentialStatus").is_none());
        assert_eq!(body["integrations"]["shopify"], json!({"enabled": false}));
        assert!(!body.to_string().contains("bob"));
        assert!(!body.to_string().contains("secret"));
    }

    /// When the primary credential is another member's, the entry is rebuilt
    /// from an allow-list: fields describing that credential (its workflow
    /// settings, shared settings, anything unknown) go.
    #[test]
    fn an_entry_around_a_foreign_primary_keeps_only_allowed_fields() {
        let mut body = json!({"integrations": {"slack": {
            "enabled": true,
            "credentialId": "bob1",
            "credentialStatus": "VALID",
            "configuredWorkflows": {"wf-1": {"enabled": true, "settings": {"channel": "bob-private"}}},
            "sharedSettings": {"token": "bob-secret"},
            "somethingNew": "bob",
            "allCredentials": [
                {"id": "bob1", "status": "VALID"},
                {"id": "alice1", "status": "VALID", "providerId": "P-alice"}
            ]
        }}});
        filter_me(&mut body, &|_, id| id.starts_with("alice"), false).unwrap();
        assert_eq!(
            body["integrations"]["slack"],
            json!({
                "enabled": true,
                "credentialId": "alice1",
                "credentialStatus": "VALID",
                "providerId": "P-alice",
                "allCredentials": [{"id": "alice1", "status": "VALID", "providerId": "P-alice"}]
            })
        );
        // No permitted credential at all: an empty, disabled entry.
        let mut body = json!({"integrations": {"slack": {
            "enabled": true, "credentialId": "bob1", "configuredWorkflows": {"x": 1},
            "allCredentials": [{"id": "bob1"}]
        }}});
        filter_me(&mut body, &|_, id| id.starts_with("alice"), false).unwrap();
        assert_eq!(
            body["integrations"]["slack"],
            json!({"enabled": false, "allCredentials": []})
        );
        // The member's own primary: untouched but for accountAuth.
        let mut body = json!({"integrations": {"slack": {
            "enabled": true, "credentialId": "alice1", "configuredWorkflows": {"x": 1},
            "allCredentials": [{"id": "alice1"}]
        }}});
        let before = body.clone();
        filter_me(&mut body, &|_, id| id.starts_with("alice"), false).unwrap();
        assert_eq!(body, before);
    }

    #[test]
    fn all_credentials_that_is_not_an_array_is_refused() {
        for all in [json!({"id": "bob1"}), json!("bob1"), json!(null)] {
            let mut body = json!({"integrations": {"slack": {"credentialId": "alice1", "allCredentials": all}}});
            assert!(filter_me(&mut body, &|_, _| true, false).is_err(), "{body}");
        }
    }

    #[test]
    fn subscription_lists_keep_only_permitted_credentials() {
        let items = json!([
            {"id": "s1", "credentialId": "alice1", "webhookOverride": {"headers": {"x": "a"}}},
            {"id": "s2", "credentialId": "bob1", "webhookOverride": {"headers": {"x": "secret"}}},
            {"id": "s3"}
        ]);
        let mut list = items.clone();
        filter_subscriptions(&mut list, &|c| c == "alice1").unwrap();
        assert_eq!(list, json!([items[0]]));
        let mut wrapped = json!({"data": items});
        filter_subscriptions(&mut wrapped, &|c| c == "alice1").unwrap();
        assert_eq!(wrapped, json!({"data": [items[0]]}));
        for bad in [
            json!({"subscriptions": []}),
            json!("x"),
            json!({"data": {}}),
        ] {
            let mut b = bad.clone();
            assert!(filter_subscriptions(&mut b, &|_| true).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_auth_is_kept_only_when_allowed() {
        let mut body = me();
        filter_me(&mut body, &|_, _| true, true).unwrap();
        assert!(body.to_string().contains("secret"));
        let mut body = me();
        filter_me(&mut body, &|_, _| true, false).unwrap();
        assert!(!body.to_string().contains("secret"));
        assert_eq!(body["integrations"]["slack"]["credentialId"], "bob1");
    }

    #[test]
    fn credential_lists_are_filtered() {
        let mut list = json!([{"id": "a", "accountAuth": {"t": 1}}, {"id": "b"}, {"noid": true}]);
        filter_credentials(&mut list, &|id| id == "a", false).unwrap();
        assert_eq!(list, json!([{"id": "a"}]));
        let mut one = json!({"id": "b", "x": 1});
        filter_credentials(&mut one, &|id| id == "a", false).unwrap();
        assert_eq!(one, json!({}));
    }

    #[test]
    fn sync_lists_are_filtered_and_owners_learned() {
        let mut body = json!({"data": [{"id": "s1"}, {"id": "s2", "credentialId": "c2"}]});
        assert_eq!(
            sync_owners(&body),
            vec![("s2".to_string(), "c2".to_string())]
        );
        filter_syncs(&mut body, &|id| id == "s1").unwrap();
        assert_eq!(body, json!({"data": [{"id": "s1"}]}));
        assert_eq!(
            sync_owners(&json!({"id": "s9", "credentialId": "c9"})),
            vec![("s9".to_string(), "c9".to_string())]
        );
    }

    #[test]
    fn shapes_credgate_cannot_narrow_are_refused_not_passed_on() {
        let yes = |_: &str| true;
        for body in [
            json!({"data": [{"id": "a"}, {"id": "b"}]}),
            json!({"credentials": [{"id": "a"}]}),
            json!("a"),
            json!(null),
            json!(7),
        ] {
            let mut b = body.clone();
            assert!(
                filter_credentials(&mut b, &|_| false, false).is_err(),
                "{body}"
            );
            assert!(filter_credentials(&mut b, &yes, true).is_err(), "{body}");
        }
        for body in [
            json!([{"id": "s1"}]),
            json!({"syncs": []}),
            json!({"data": {}}),
        ] {
            let mut b = body.clone();
            assert!(filter_syncs(&mut b, &|_| false).is_err(), "{body}");
        }
        for body in [json!({"user": {}}), json!({"integrations": []}), json!([])] {
            let mut b = body.clone();
            assert!(filter_me(&mut b, &|_, _| false, false).is_err(), "{body}");
        }
        // An integration entry that is not an object cannot be narrowed: it goes.
        let mut b =
            json!({"integrations": {"salesforce": [{"id": "x"}], "slack": {"enabled": true}}});
        filter_me(&mut b, &|_, _| false, false).unwrap();
        assert_eq!(b, json!({"integrations": {"slack": {"enabled": true}}}));
    }
}
