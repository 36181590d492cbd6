//! Header hygiene as pure functions over `HeaderMap` (contract §7, §8).
//!
//! * Credential inputs are read in every spelling a backend might fold
//!   together (`X-Paragon-Credential`, `x_paragon_credential`, ...): some
//!   stacks (CGI, nginx with `underscores_in_headers`, WSGI) turn `_` into
//!   `-`, so a spelling credgate ignored could still reach Paragon as the
//!   real header. All of them count, and all are removed before forwarding.
//! * Hop-by-hop fields (RFC 9110 §7.6.1) and every field the `Connection`
//!   header names are dropped both ways, so a client cannot ask credgate to
//!   strip a header after it was checked, or to smuggle one past it.
//! * `Forwarded` / `X-Forwarded-*` are only kept from trusted proxies
//!   (spoofed client addresses poison upstream logs and rate limits).

use std::net::IpAddr;

use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

pub const X_PARAGON_CREDENTIAL: &str = "x-paragon-credential";
pub const X_PARAGON_CONFIGURATION_ID: &str = "x-paragon-configuration-id";
pub const X_PARAGON_PROXY_URL: &str = "x-paragon-proxy-url";
/// Paragon control headers a member may send as they are, in this exact
/// (lowercase) spelling (contract §7); `policy.member_paragon_headers` adds to
/// them. The credential, configuration and proxy-URL headers are checked
/// and set by credgate itself.
pub const MEMBER_PARAGON_HEADERS: &[&str] = &[
    "x-paragon-use-raw-response",
    "x-paragon-use-slack-token-type",
    // Paragon's Connect SDK sends it on every call (contract §13).
    "x-paragon-sdk-version",
];
pub use crate::net::X_REQUEST_ID;
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// RFC 9110 §7.6.1 plus the de-facto ones (`Keep-Alive`, `Proxy-Connection`)
/// and HTTP/2's `HTTP2-Settings` (RFC 7540 §3.2.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields removed from every forwarded request, in every spelling: method
/// overrides (a `GET` that some frameworks would run as `DELETE`, bypassing
/// the route table), Paragon's internal persona metadata header, and the
/// headers that make a server further along re-route or re-method a
/// request (IIS and Symfony's `X-Original-URL`/`X-Rewrite-URL`, the
/// `X-Original-*`/`X-Host` family): credgate decided on its own reading of
/// the method, path and host, and nothing behind it may read another.
const ALWAYS_REMOVED: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-paragon-user-metadata",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "x-original-host",
    "x-host",
];

/// Every `X-Envoy-*` field goes too: credgate sets `X-Forwarded-For`, which
/// an Envoy behind it takes as a sign of an internal request and then
/// honours `x-envoy-*` routing and retry headers from it.
const ENVOY_PREFIX: &str = "x-envoy-";
const PARAGON_PREFIX: &str = "x-paragon-";

/// Whether `name` is a spelling of `canonical` (lowercase, `-`-separated):
/// any case, `_` in place of `-`.
pub fn spelled_as(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, c)| a.to_ascii_lowercase() == c || (a == b'_' && c == b'-'))
}

fn has_prefix_spelling(name: &str, canonical_prefix: &str) -> bool {
    name.len() >= canonical_prefix.len()
        && spelled_as(&name[..canonical_prefix.len()], canonical_prefix)
}

/// A single-valued input header read in every spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Single<'a> {
    Absent,
    One(&'a str),
}

/// Why a single-valued header was refused (400 `bad_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleError {
    /// Sent more than once (repeated, differently spelled, or comma-joined),
    /// even when the values agree.
    Repeated,
    /// Empty or not visible ASCII.
    Malformed,
}

/// Reads `canonical` in every spelling; exactly one value is allowed, and
/// a comma counts as a second (intermediaries join repeated fields so).
pub fn single_value<'a>(
    headers: &'a HeaderMap,
    canonical: &str,
) -> Result<Single<'a>, SingleError> {
    single(headers, canonical, true)
}

/// As [`single_value`] for a field whose value may hold commas (the
/// Proxy API's target URL). A repeated field is still refused, and credgate
/// forwards exactly the one value it checked, so nothing behind it can
/// read a comma-joined pair differently.
pub fn single_url_value<'a>(
    headers: &'a HeaderMap,
    canonical: &str,
) -> Result<Single<'a>, SingleError> {
    single(headers, canonical, false)
}

fn single<'a>(
    headers: &'a HeaderMap,
    canonical: &str,
    comma_repeats: bool,
) -> Result<Single<'a>, SingleError> {
    let mut found = Single::Absent;
    for (name, value) in headers {
        if !spelled_as(name.as_str(), canonical) {
            continue;
        }
        if found != Single::Absent {
            return Err(SingleError::Repeated);
        }
        let text = value.to_str().map_err(|_| SingleError::Malformed)?.trim();
        if comma_repeats && text.contains(',') {
            return Err(SingleError::Repeated);
        }
        if text.is_empty() {
            return Err(SingleError::Malformed);
        }
        found = Single::One(text);
    }
    Ok(found)
}

/// Drops hop-by-hop fields and every field the `Connection` header lists
/// (RFC 9110 §7.6.1), in any `_` spelling, and Paragon's own
/// `Access-Control-*` fields (contract §13: credgate alone says which
/// browser origins may read its answers). Used on Paragon's responses;
/// requests go through [`scrub_request`], which does this and more.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    scrub(headers, |n| n.starts_with("access-control-"));
}

/// Other client-address headers that CDNs and load balancers set; from an
/// untrusted client they are as spoofable as `X-Forwarded-For`.
const CLIENT_IP_HEADERS: &[&str] = &[
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
];

/// Sets `X-Forwarded-For/-Proto/-Host` (after [`scrub_request`] removed a
/// client's own unless it is a trusted proxy). From a trusted proxy the client address is appended
/// to its `X-Forwarded-For`, and its `-Proto`/`-Host` are kept.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    // One hash and probe per name (the entry API): this runs per request.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut e) => {
            let v = match e.get().to_str() {
                Ok(prev) if !prev.trim().is_empty() => {
                    HeaderValue::from_str(&format!("{prev}, {}", client.to_str().unwrap_or("")))
                        .ok()
                }
                _ => Some(client.clone()),
            };
            if let Some(v) = v {
                e.insert(v);
            }
        }
        Entry::Vacant(e) => {
            e.insert(client.clone());
        }
    }
    if let Entry::Vacant(e) = headers.entry(X_FORWARDED_PROTO) {
        e.insert(HeaderValue::from_static(proto));
    }
    if let (Entry::Vacant(e), Some(h)) = (headers.entry(X_FORWARDED_HOST), host) {
        e.insert(h.clone());
    }
}

/// A client address as an `X-Forwarded-For` element (IPv4-mapped IPv6
/// addresses, what a dual-stack socket reports, written as IPv4). Computed
/// once per connection.
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// Who sent a request, for [`scrub_request`].
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// A trusted proxy: its `Forwarded`/`X-Forwarded-*` are kept.
    pub trusted_proxy: bool,
    /// A member: `X-Paragon-*` fields pass only when known (contract §7):
    /// [`MEMBER_PARAGON_HEADERS`] and these, in their exact spelling.
    /// `None` for an admin, whose control headers pass.
    pub member_allowed: Option<&'a [String]>,
    /// Fields, in exactly this spelling, that the caller sets right after
    /// with `HeaderMap::insert` (which drops every value the client sent
    /// under that name): left in place to be overwritten rather than
    /// removed and added again. Every other spelling of them is still
    /// removed.
    pub overwritten: &'a [HeaderName],
}

/// Removes, in one pass over the header names, everything that must not
/// reach Paragon from a client: hop-by-hop fields and every field the
/// `Connection` header lists (any spelling), every spelling of the
/// credential, configuration and proxy-URL headers (credgate sets its
/// own), method overrides, re-routing headers, `X-Envoy-*` and
/// Paragon-internal headers; unless the client is a trusted proxy,
/// `Forwarded`, `X-Forwarded-*` and other client-address headers; and from
/// a member, every `X-Paragon-*` field credgate does not know (as Envoy
/// drops `x-envoy-*` from untrusted callers). One scan instead of a lookup
/// per name: this runs per request.
///
/// Returns the member's unknown `X-Paragon-*` fields it removed (for the
/// audit record and `credgate_headers_removed_total`); empty, without
/// allocating, in the common case.
pub fn scrub_request(headers: &mut HeaderMap, sender: Sender<'_>) -> Vec<HeaderName> {
    let mut unknown_paragon = Vec::new();
    scrub(headers, |n| {
        if sender.overwritten.iter().any(|o| o.as_str() == n) {
            return false;
        }
        if spelled_as(n, X_PARAGON_CREDENTIAL)
            || spelled_as(n, X_PARAGON_CONFIGURATION_ID)
            || spelled_as(n, X_PARAGON_PROXY_URL)
            || ALWAYS_REMOVED.iter().any(|c| spelled_as(n, c))
            || has_prefix_spelling(n, ENVOY_PREFIX)
        {
            return true;
        }
        if !sender.trusted_proxy
            && (spelled_as(n, "forwarded")
                || has_prefix_spelling(n, "x-forwarded-")
                || CLIENT_IP_HEADERS.iter().any(|c| spelled_as(n, c)))
        {
            return true;
        }
        match sender.member_allowed {
            Some(extra) if has_prefix_spelling(n, PARAGON_PREFIX) => {
                let known = MEMBER_PARAGON_HEADERS.contains(&n) || extra.iter().any(|e| e == n);
                if !known {
                    if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                        unknown_paragon.push(name);
                    }
                }
                !known
            }
            _ => false,
        }
    });
    unknown_paragon.dedup();
    unknown_paragon
}

/// The one pass behind both: hop-by-hop fields, fields the `Connection`
/// header lists (any spelling), and whatever `also` names. Framing is
/// hyper's job on both sides; a listed `Content-Length` goes like any other
/// (hyper re-derives it from the body).
fn scrub(headers: &mut HeaderMap, mut also: impl FnMut(&str) -> bool) {
    let listed: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    // Collect first: a HeaderMap cannot be mutated while iterated. The
    // common case (nothing to remove) allocates nothing.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            // `also` first: it records what it removes.
            also(n) || HOP_BY_HOP.contains(&n) || listed.iter().any(|l| spelled_as(n, l))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Longest caller-supplied `X-Request-Id` kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A caller's `X-Request-Id`, if it is a safe token (letters, digits,
/// `-_.:`; at most 128 characters). Anything else could inject into logs.
pub fn safe_request_id(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let v = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= MAX_REQUEST_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
    .then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTRUSTED_ADMIN: Sender<'static> = Sender {
        trusted_proxy: false,
        member_allowed: None,
        overwritten: &[],
    };

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn spellings_match_case_and_underscore() {
        for n in [
            "x-paragon-credential",
            "X-Paragon-Credential",
            "x_paragon_credential",
            "X_PARAGON-CREDENTIAL",
        ] {
            assert!(spelled_as(n, X_PARAGON_CREDENTIAL), "{n}");
        }
        for n in [
            "x-paragon-credentials",
            "x-paragon-credentia",
            "xparagoncredential",
            "x.paragon.credential",
        ] {
            assert!(!spelled_as(n, X_PARAGON_CREDENTIAL), "{n}");
        }
    }

    #[test]
    fn single_value_counts_every_spelling_and_comma() {
        let one = map(&[("x-paragon-credential", "abc")]);
        assert_eq!(
            single_value(&one, X_PARAGON_CREDENTIAL),
            Ok(Single::One("abc"))
        );
        let none = map(&[("x-other", "1")]);
        assert_eq!(
            single_value(&none, X_PARAGON_CREDENTIAL),
            Ok(Single::Absent)
        );
        for bad in [
            map(&[("x-paragon-credential", "a"), ("x-paragon-credential", "a")]),
            map(&[("x-paragon-credential", "a"), ("x_paragon_credential", "a")]),
            map(&[("x-paragon-credential", "a,b")]),
            map(&[("x-paragon-credential", "a, a")]),
        ] {
            assert_eq!(
                single_value(&bad, X_PARAGON_CREDENTIAL),
                Err(SingleError::Repeated)
            );
        }
        let mut empty = HeaderMap::new();
        empty.insert("x-paragon-credential", HeaderValue::from_static(""));
        assert_eq!(
            single_value(&empty, X_PARAGON_CREDENTIAL),
            Err(SingleError::Malformed)
        );
        let mut binary = HeaderMap::new();
        binary.insert(
            "x-paragon-credential",
            HeaderValue::from_bytes(b"\xffabc").unwrap(),
        );
        assert_eq!(
            single_value(&binary, X_PARAGON_CREDENTIAL),
            Err(SingleError::Malformed)
        );
    }

    #[test]
    fn every_credential_header_spelling_is_removed() {
        let mut h = map(&[
            ("x-paragon-credential", "a"),
            ("x_paragon_credential", "b"),
            ("x-paragon-credential", "c"),
            ("x-keep", "1"),
        ]);
        scrub_request(&mut h, UNTRUSTED_ADMIN);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_go() {
        let mut h = map(&[
            (
                "connection",
                "keep-alive, X-Forwarded-For, x-paragon-credential",
            ),
            ("connection", "x-custom"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-paragon-credential", "a"),
            ("x_paragon_credential", "b"),
            ("x-custom", "1"),
            ("content-type", "application/json"),
        ]);
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["content-type"]);
    }

    /// A common field that `Connection` lists goes too; the others stay.
    #[test]
    fn common_fields_stay_unless_connection_lists_them() {
        let mut h = map(&[
            ("connection", "User-Agent, x-request-id"),
            ("user-agent", "a"),
            ("x-request-id", "r"),
            ("host", "gw"),
            ("accept", "*/*"),
            ("x_paragon_credential", "b"),
        ]);
        scrub_request(&mut h, UNTRUSTED_ADMIN);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host", "accept"]);
    }

    #[test]
    fn forwarded_headers_are_replaced_for_untrusted_and_extended_for_trusted() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-proto", "http"),
        ]);
        scrub_request(&mut h, UNTRUSTED_ADMIN);
        assert!(h.is_empty());
        set_forwarded(
            &mut h,
            &client_ip_value("10.0.0.1".parse().unwrap()),
            "https",
            Some(&HeaderValue::from_static("gw.example")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example");

        let mut trusted = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut trusted,
            &client_ip_value("::ffff:10.0.0.2".parse().unwrap()),
            "http",
            None,
        );
        assert_eq!(trusted["x-forwarded-for"], "1.1.1.1, 10.0.0.2");
        assert_eq!(trusted["x-forwarded-proto"], "https");
    }

    #[test]
    fn scrub_request_removes_everything_in_one_pass() {
        let all = [
            ("connection", "keep-alive, X-Custom"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-custom", "1"),
            ("x_custom", "1"),
            ("x-paragon-credential", "a"),
            ("X_Paragon_Credential", "b"),
            ("x-paragon-configuration-id", "c"),
            ("x-http-method-override", "DELETE"),
            ("x-paragon-user-metadata", "{}"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("accept", "*/*"),
            ("authorization", "Bearer x"),
        ];
        let mut untrusted = map(&all);
        scrub_request(&mut untrusted, UNTRUSTED_ADMIN);
        let mut left: Vec<&str> = untrusted.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "authorization"]);
        let mut trusted = map(&all);
        scrub_request(
            &mut trusted,
            Sender {
                trusted_proxy: true,
                member_allowed: None,
                overwritten: &[],
            },
        );
        let mut left: Vec<&str> = trusted.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![
                "accept",
                "authorization",
                "forwarded",
                "x-forwarded-for",
                "x-real-ip"
            ]
        );
    }

    /// contract §7: a member's `X-Paragon-*` fields pass only when known and
    /// in their exact spelling; every other one is removed and reported.
    /// An admin's pass, but for the ones credgate manages.
    #[test]
    fn members_keep_only_known_paragon_headers() {
        let all = [
            ("x-paragon-use-raw-response", "1"),
            ("x-paragon-use-slack-token-type", "user"),
            ("x_paragon_use_raw_response", "1"),
            ("x-paragon-sdk-version", "2.4.0"),
            ("x-paragon-route-to", "elsewhere"),
            ("x-paragon-custom", "ok"),
            ("x-paragon-credential", "c"),
            ("x-paragon-proxy-url", "https://x"),
            ("x_paragon_proxy_url", "https://y"),
            ("x-paragon-configuration-id", "k"),
            ("x-paragon-user-metadata", "{}"),
            ("accept", "*/*"),
        ];
        let extra = vec!["x-paragon-custom".to_string()];
        let mut h = map(&all);
        let removed = scrub_request(
            &mut h,
            Sender {
                trusted_proxy: false,
                member_allowed: Some(&extra),
                overwritten: &[],
            },
        );
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![
                "accept",
                "x-paragon-custom",
                "x-paragon-sdk-version",
                "x-paragon-use-raw-response",
                "x-paragon-use-slack-token-type"
            ]
        );
        let mut removed: Vec<&str> = removed.iter().map(|n| n.as_str()).collect();
        removed.sort_unstable();
        assert_eq!(
            removed,
            vec!["x-paragon-route-to", "x_paragon_use_raw_response"]
        );

        let mut h = map(&all);
        let removed = scrub_request(&mut h, UNTRUSTED_ADMIN);
        assert!(removed.is_empty());
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            vec![
                "accept",
                "x-paragon-custom",
                "x-paragon-route-to",
                "x-paragon-sdk-version",
                "x-paragon-use-raw-response",
                "x-paragon-use-slack-token-type",
                "x_paragon_use_raw_response"
            ]
        );
    }

    /// Headers that make a server further along re-route or re-method a
    /// request go for everyone, in every spelling, and so does `X-Envoy-*`.
    #[test]
    fn rerouting_and_envoy_headers_are_always_removed() {
        let mut h = map(&[
            ("x-original-url", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("x-original-method", "DELETE"),
            ("x-original-host", "evil"),
            ("x-host", "evil"),
            ("x-envoy-original-path", "/x"),
            ("x_envoy_upstream_rq_timeout_ms", "1"),
            ("x-envoyer", "kept"),
            ("accept", "*/*"),
        ]);
        scrub_request(
            &mut h,
            Sender {
                trusted_proxy: true,
                member_allowed: None,
                overwritten: &[],
            },
        );
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-envoyer"]);
    }

    #[test]
    fn method_overrides_and_persona_metadata_are_removed() {
        let mut h = map(&[
            ("x-http-method-override", "DELETE"),
            ("X_HTTP_METHOD", "DELETE"),
            ("x-paragon-user-metadata", "{}"),
            ("accept", "*/*"),
        ]);
        scrub_request(&mut h, UNTRUSTED_ADMIN);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        assert_eq!(
            safe_request_id(&map(&[("x-request-id", "abc-123_x.y:z")])),
            Some("abc-123_x.y:z")
        );
        assert_eq!(safe_request_id(&map(&[("x-request-id", "a b")])), None);
        assert_eq!(safe_request_id(&map(&[("x-request-id", "a\"b")])), None);
        assert_eq!(
            safe_request_id(&map(&[("x-request-id", &"a".repeat(129))])),
            None
        );
        assert_eq!(
            safe_request_id(&map(&[("x-request-id", "a"), ("x-request-id", "b")])),
            None
        );
        assert_eq!(safe_request_id(&HeaderMap::new()), None);
    }
}
