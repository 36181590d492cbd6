//! Property tests: the path checker and route classifier never panic and
//! accept only paths in normal form; the body rewriter keeps every other
//! field and leaves exactly one `credentialId`; the permissions-claim parser
//! never panics and means what credgate mints.

use credgate::gateway::path;
use credgate::paragon::jsonbody::TopObject;
use credgate::paragon::permissions::{claim_for, Permissions};
use credgate::paragon::routes::classify;
use http::Method;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// RFC 3986 §5.2.4 dot-segment removal, empty-segment merging, and
/// decoding of the escapes a normalizer would fold (`%2F %2E %5C`, any
/// case): what some component between credgate and Paragon might do.
fn normalize(p: &str) -> String {
    let mut decoded = String::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let esc = &p[i + 1..i + 3];
            match esc.to_ascii_lowercase().as_str() {
                "2f" => {
                    decoded.push('/');
                    i += 3;
                    continue;
                }
                "2e" => {
                    decoded.push('.');
                    i += 3;
                    continue;
                }
                "5c" => {
                    decoded.push('/');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        decoded.push(if b[i] == b'\\' { '/' } else { b[i] as char });
        i += 1;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if n == segments.len() - 1 {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if n == segments.len() - 1 {
                    out.push("");
                }
            }
            "" if n != 0 && n != segments.len() - 1 => {}
            s => out.push(s),
        }
    }
    out.join("/")
}

fn path_strategy() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("projects".to_string()),
        Just("p".to_string()),
        Just("sdk".to_string()),
        Just("proxy".to_string()),
        Just("me".to_string()),
        Just("api".to_string()),
        Just("syncs".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("".to_string()),
        Just("%2F".to_string()),
        Just("%2e".to_string()),
        Just("%5C".to_string()),
        Just("%00".to_string()),
        Just("%252F".to_string()),
        Just("a;b=c".to_string()),
        Just("https:".to_string()),
        "[a-zA-Z0-9._~%-]{0,6}",
    ];
    proptest::collection::vec(seg, 0..8).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn path_checks_never_panic(p in any::<String>()) {
        let _ = path::check(&p);
        let _ = classify(&Method::GET, &p, "p");
        let _ = path::full_url_host(&p);
    }

    #[test]
    fn accepted_paths_are_their_own_normal_form(p in path_strategy()) {
        // The Proxy API's full-URL form deliberately keeps the `//` after its
        // scheme; every other accepted path must survive normalization unchanged.
        let url_form = p.contains("/sdk/proxy/") && (p.contains(':') || p.contains("//") || p.to_ascii_lowercase().contains("%5c"));
        if path::check(&p).is_ok() && !url_form {
            prop_assert_eq!(normalize(&p), p.clone(), "{} was accepted but normalizes differently", p);
        }
    }

    #[test]
    fn classified_routes_only_come_from_accepted_shapes(p in path_strategy(), m in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::DELETE), Just(Method::PATCH)]) {
        if let Ok(route) = classify(&m, &p, "p") {
            // A route was found: its product's host is one of the five.
            prop_assert!(credgate::paragon::routes::Upstream::ALL.contains(&route.upstream));
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "[ -~\\u{e9}\\u{1F600}\"\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn body_rewrite_keeps_other_fields_and_one_credential_id(
        fields in proptest::collection::btree_map("[a-zA-Z]{1,8}", json_value(), 0..6),
        with_cred in any::<bool>(),
        pretty in any::<bool>(),
    ) {
        let mut obj: Map<String, Value> = fields.into_iter().filter(|(k, _)| k != "credentialId").collect();
        if with_cred {
            obj.insert("credentialId".into(), Value::String("ext:someone".into()));
        }
        let original = Value::Object(obj.clone());
        let text = if pretty { serde_json::to_string_pretty(&original).unwrap() } else { original.to_string() };
        let doc = TopObject::parse(text.as_bytes()).expect("serde_json output is valid");
        let out = doc.with_string("credentialId", "00000000-0000-4000-8000-000000000000");
        let reparsed = TopObject::parse(&out).expect("the rewrite is valid JSON");
        prop_assert_eq!(reparsed.all("credentialId").count(), 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(&v["credentialId"], &Value::String("00000000-0000-4000-8000-000000000000".into()));
        // Compare with the original text parsed the same way (serde_json's
        // float parsing is not exact; the rewriter copies the digits).
        let before: Value = serde_json::from_str(&text).unwrap();
        for k in obj.keys().filter(|k| *k != "credentialId") {
            prop_assert_eq!(&v[k], &before[k]);
        }
        prop_assert_eq!(v.as_object().unwrap().len(), obj.len() + usize::from(!with_cred));
    }

    #[test]
    fn body_scanner_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = TopObject::parse(&bytes);
    }

    #[test]
    fn permission_parser_never_panics(v in json_value()) {
        if let Ok(p) = Permissions::parse(&v) {
            let _ = p.allows("slack", "x");
        }
    }

    #[test]
    fn minted_claims_grant_exactly_the_listed_credentials(
        grants in proptest::collection::btree_set(("[a-c]", "[0-9a-f]{4}"), 0..8),
        probe in ("[a-c]", "[0-9a-f]{4}"),
    ) {
        let list: Vec<(&str, &str)> = grants.iter().map(|(i, c)| (i.as_str(), c.as_str())).collect();
        let perms = Permissions::parse(&claim_for(list.iter().copied())).unwrap();
        for (i, c) in &list {
            prop_assert!(perms.allows(i, c));
        }
        let listed = grants.contains(&probe);
        prop_assert_eq!(perms.allows(&probe.0, &probe.1), listed);
    }
}

// ------------------------------------------------ Proxy API targets

/// The hosts these properties allow.
const ALLOWED: &[&str] = &["sheets.googleapis.com"];

/// A JavaScript `String.prototype.trim()`: white space and line
/// terminators, U+FEFF included.
fn js_trim(s: &str) -> &str {
    let ws = |c: char| c.is_whitespace() || c == '\u{feff}';
    s.trim_matches(ws)
}

/// Every host a WHATWG URL parser could read out of `text` as a target:
/// as sent and percent-decoded once, each trimmed the JavaScript way, read
/// as an absolute URL or, when scheme-relative, against a base.
fn hosts_read(text: &str) -> Vec<String> {
    let mut readings = vec![text.to_string()];
    if let Some(d) = path::percent_decode(text.as_bytes()) {
        readings.push(String::from_utf8_lossy(&d).into_owned());
    }
    let base = url::Url::parse("https://base.invalid/").unwrap();
    let mut hosts = Vec::new();
    for r in readings {
        let t = js_trim(&r);
        let parsed = url::Url::parse(t)
            .ok()
            .or_else(|| base.join(t).ok())
            .filter(|u| u.host_str() != Some("base.invalid"));
        if let Some(h) = parsed.as_ref().and_then(|u| u.host_str()) {
            hosts.push(h.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    hosts
}

fn target_strategy() -> impl Strategy<Value = String> {
    let lead = prop::sample::select(vec![
        "",
        "",
        "",
        "%20",
        "%C2%A0",
        "%EF%BB%BF",
        "%E2%80%A8",
        "%E3%80%80",
        "%09",
        "%0A",
    ]);
    let scheme = prop::sample::select(vec![
        "",
        "https:",
        "HTTPS:",
        "http:",
        "h%74tps:",
        "https%3A",
        "https%3a",
        "ftp:",
        "javascript:",
        "wss:",
        "x-custom+1.0:",
    ]);
    let sep = prop::sample::select(vec!["", "/", "//", "///", "\\\\", "%5C%5C", "/\\", "\\/"]);
    let host = prop::sample::select(vec![
        "evil.example",
        "sheets.googleapis.com",
        "SHEETS.googleapis.com",
        "sheets.googleapis.com.",
        "sheets.googleapis.com@evil.example",
        "sheets.googleapis.com%40evil.example",
        "sheets.googleapis.com%23@evil.example",
        "sheets.googleapis.com%3F@evil.example",
        "sheets.googleapis.com.evil.example",
        "evil.example:443",
        "[::1]",
        "127.0.0.1",
        "api",
    ]);
    let tail = prop::sample::select(vec![
        "",
        "/x",
        "/v4/spreadsheets",
        "?q=1",
        "#frag",
        "/../y",
        "/a%2Fb",
        "/a/./b",
        "//z",
        ";p",
    ]);
    let junk = "[a-zA-Z0-9%/:.@?#\\\\ ]{0,12}";
    (lead, scheme, sep, host, tail, junk)
        .prop_map(|(l, sc, se, h, t, j)| format!("{l}{sc}{se}{h}{t}{j}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// contract §7: whatever a caller puts in `{rest}` or `X-Paragon-Proxy-Url`,
    /// what credgate accepts names no host outside `proxy_url_hosts` by any
    /// WHATWG reading, after a JavaScript-style trim, raw or decoded.
    #[test]
    fn accepted_proxy_targets_name_only_allowed_hosts(target in target_strategy(), in_header in any::<bool>()) {
        let allowed: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
        let accepted = if in_header {
            path::check_proxy_target("", Some(&target), &allowed).is_ok()
        } else {
            let full = format!("/projects/p/sdk/proxy/googledrive/{target}");
            // The request line carries no `#` and splits the query off.
            let path_only = full.split(['?', '#']).next().unwrap();
            path::check(path_only).is_ok()
                && path::check_proxy_target(&path_only["/projects/p/sdk/proxy/googledrive/".len()..], None, &allowed).is_ok()
        };
        if accepted {
            let text = if in_header {
                target.clone()
            } else {
                target.split(['?', '#']).next().unwrap().to_string()
            };
            for host in hosts_read(&text) {
                prop_assert!(
                    ALLOWED.contains(&host.as_str()),
                    "{target:?} (header: {in_header}) was accepted but reads as host {host:?}"
                );
            }
        }
    }
}
