//! Made-up but plausible catalog data per integration type: display names,
//! brand colours, ActionKit action and trigger names. Known types get
//! familiar values; any other type gets values derived from its name, so
//! every fixture type has a complete catalog entry.

/// Catalog values for one well-known integration type.
struct Known {
    kind: &'static str,
    name: &'static str,
    brand_color: &'static str,
    actions: &'static [&'static str],
    triggers: &'static [&'static str],
}

const KNOWN: &[Known] = &[
    Known {
        kind: "salesforce",
        name: "Salesforce",
        brand_color: "#009DDC",
        actions: &[
            "SALESFORCE_CREATE_RECORD",
            "SALESFORCE_SEARCH_RECORDS",
            "SALESFORCE_DELETE_RECORD",
        ],
        triggers: &["SALESFORCE_RECORD_CREATED"],
    },
    Known {
        kind: "slack",
        name: "Slack",
        brand_color: "#4A154B",
        actions: &["SLACK_SEND_MESSAGE", "SLACK_LIST_CHANNELS"],
        triggers: &["SLACK_NEW_MESSAGE"],
    },
    Known {
        kind: "googledrive",
        name: "Google Drive",
        brand_color: "#4285F4",
        actions: &["GOOGLE_DRIVE_LIST_FILES", "GOOGLE_DRIVE_GET_FILE"],
        triggers: &["GOOGLE_DRIVE_FILE_CREATED"],
    },
    Known {
        kind: "hubspot",
        name: "HubSpot",
        brand_color: "#FF7A59",
        actions: &["HUBSPOT_CREATE_CONTACT", "HUBSPOT_SEARCH_CONTACTS"],
        triggers: &["HUBSPOT_CONTACT_CREATED"],
    },
    Known {
        kind: "gmail",
        name: "Gmail",
        brand_color: "#EA4335",
        actions: &["GMAIL_SEND_EMAIL", "GMAIL_SEARCH_EMAILS"],
        triggers: &["GMAIL_NEW_EMAIL"],
    },
];

fn known(t: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.kind == t)
}

/// `custom.billing` → `CUSTOM_BILLING`: what action names of a type start
/// with (underscores are ignored when matching, see [`integration_for_action`]).
fn action_prefix(t: &str) -> String {
    t.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Uppercase letters and digits only: `google-drive` → `GOOGLEDRIVE`.
fn match_key(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub(crate) fn name(t: &str) -> String {
    if let Some(k) = known(t) {
        return k.name.to_string();
    }
    let base = t.strip_prefix("custom.").unwrap_or(t);
    let mut chars = base.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => t.to_string(),
    }
}

pub(crate) fn brand_color(t: &str) -> &'static str {
    known(t).map_or("#6B7280", |k| k.brand_color)
}

pub(crate) fn icon(t: &str) -> String {
    // `.invalid` (RFC 2606): never resolves, nothing is ever fetched.
    format!("https://icons.emulator.invalid/{t}.svg")
}

pub(crate) fn is_custom(t: &str) -> bool {
    t.starts_with("custom.")
}

pub(crate) fn actions(t: &str) -> Vec<String> {
    match known(t) {
        Some(k) => k.actions.iter().map(|s| s.to_string()).collect(),
        None => {
            let p = action_prefix(t);
            vec![format!("{p}_LIST_RECORDS"), format!("{p}_CREATE_RECORD")]
        }
    }
}

/// What an action does to the account, as Paragon's tools say it
/// (`sideEffect`): read from its verb.
pub(crate) fn side_effect(action: &str) -> &'static str {
    let verb = |v: &str| action.split('_').any(|w| w == v);
    if verb("DELETE") || verb("REMOVE") {
        "delete"
    } else if verb("SEND") {
        "send"
    } else if verb("LIST") || verb("GET") || verb("SEARCH") {
        "read"
    } else {
        "write"
    }
}

pub(crate) fn triggers(t: &str) -> Vec<String> {
    match known(t) {
        Some(k) => k.triggers.iter().map(|s| s.to_string()).collect(),
        None => vec![format!("{}_RECORD_CREATED", action_prefix(t))],
    }
}

/// The integration an ActionKit action or tool name belongs to, among
/// `types`: the name with underscores removed and uppercased starts with
/// the type uppercased with non-alphanumerics removed; the longest such
/// type wins (`GOOGLE_DRIVE_LIST_FILES` → `googledrive`, not `google`).
pub(crate) fn integration_for_action<'a>(
    types: impl IntoIterator<Item = &'a str>,
    action: &str,
) -> Option<&'a str> {
    let key = match_key(action);
    types
        .into_iter()
        .map(|t| (match_key(t), t))
        .filter(|(k, _)| !k.is_empty() && key.starts_with(k.as_str()))
        .max_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| b.1.cmp(a.1)))
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_action_maps_back_to_its_type() {
        let types = [
            "salesforce",
            "slack",
            "googledrive",
            "google",
            "custom.billing",
            "x-y",
        ];
        for t in types {
            for a in actions(t) {
                assert_eq!(integration_for_action(types, &a), Some(t), "{a}");
            }
        }
        assert_eq!(
            integration_for_action(types, "GOOGLE_SEARCH"),
            Some("google")
        );
        assert_eq!(integration_for_action(types, "JIRA_CREATE_ISSUE"), None);
        assert_eq!(integration_for_action(types, ""), None);
    }

    #[test]
    fn names_and_colours_for_known_and_unknown_types() {
        assert_eq!(name("googledrive"), "Google Drive");
        assert_eq!(name("custom.billing"), "Billing");
        assert_eq!(name("zoom"), "Zoom");
        assert_eq!(brand_color("slack"), "#4A154B");
        assert_eq!(brand_color("zoom"), "#6B7280");
        assert!(is_custom("custom.billing") && !is_custom("slack"));
    }
}
