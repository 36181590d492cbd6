//! Which requests the admin listener answers at all (contract §9), as pure
//! functions over the request head. The admin listener has no login, so
//! what keeps a web page out of it is that a browser cannot make it a
//! request that passes these checks:
//!
//! * **DNS rebinding.** A page on `evil.example` whose name then resolves
//!   to 127.0.0.1 is same-origin with the listener as far as the browser
//!   knows, and could read `/admin/access`, `/` and `/metrics`. Its
//!   requests still say `Host: evil.example`, so only a `Host` that names
//!   this listener is answered: a loopback address (`localhost`,
//!   `127.0.0.0/8`, `[::1]`), the address the listener is bound to, or a
//!   name in `server.admin_hosts`. When it is bound to an unspecified
//!   address (`0.0.0.0`, `[::]`, a pod's admin port scraped by Prometheus
//!   at the pod IP), the local address of the accepted connection stands
//!   for its own address: an IP literal cannot be rebound, and the IP a
//!   client connected to is the one it names. `*.localhost` is not taken
//!   as loopback: not every resolver pins it there.
//! * **Cross-site requests.** Any page may send a "simple" request (a
//!   `POST` with `text/plain`, form or multipart content) without a CORS
//!   preflight. Every method but `GET` and `HEAD` therefore needs
//!   `Content-Type: application/json`, which a browser sends cross-origin
//!   only after a preflight this listener never grants; and when the
//!   request names an `Origin` (or says `Sec-Fetch-Site: cross-site`), its
//!   host must pass the `Host` rule (`Origin: null`, from sandboxes and
//!   `file:` pages, never does).
//!
//! The port in `Host` and `Origin` is not compared: behind `kubectl
//! port-forward` or an SSH tunnel the client's port differs from the one
//! the listener is bound to, and a port cannot move a request to another
//! host.

use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, Method, Uri};

use crate::config::HostName;

/// Why the admin listener refused a request; its `code` and its
/// `credgate_admin_refused_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` missing, repeated, malformed, or not a name of this listener.
    Host,
    /// `Origin` (or `Sec-Fetch-Site: cross-site`) on a state-changing
    /// request from elsewhere.
    Origin,
    /// A state-changing request that is not `application/json`.
    ContentType,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Host => "forbidden_host",
            Refusal::Origin => "forbidden_origin",
            Refusal::ContentType => "forbidden_content_type",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Host => "the Host header must name this admin listener: a loopback address, its own address, or a name in server.admin_hosts",
            Refusal::Origin => "a cross-site request may not change the admin listener's state",
            Refusal::ContentType => "a request other than GET or HEAD must be Content-Type: application/json",
        }
    }
}

/// What a request may call this listener.
pub struct Allowed<'a> {
    /// `server.admin_hosts`.
    pub hosts: &'a [HostName],
    /// The address the listener is bound to.
    pub bound: SocketAddr,
    /// The local address of the connection the request came on.
    pub local: SocketAddr,
}

impl Allowed<'_> {
    fn host(&self, host: &HostName) -> bool {
        match host {
            HostName::Name(n) => n == "localhost" || self.hosts.contains(host),
            HostName::Ip(ip) => {
                let ip = ip.to_canonical();
                let own = if self.bound.ip().is_unspecified() {
                    self.local.ip()
                } else {
                    self.bound.ip()
                };
                ip.is_loopback()
                    || ip == own.to_canonical()
                    || self
                        .hosts
                        .iter()
                        .any(|h| matches!(h, HostName::Ip(a) if a.to_canonical() == ip))
            }
        }
    }
}

/// Whether the request may be answered: the `Host` rule for every request,
/// and for every method but `GET` and `HEAD` the `Origin` and
/// `Content-Type` rules.
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    allowed: &Allowed<'_>,
) -> Result<(), Refusal> {
    // Exactly one Host (RFC 9112 §3.2: a request without one, or with
    // several, is invalid), HTTP/1.0 included: every client that has a
    // reason to be here sends one.
    let mut hosts = headers.get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err(Refusal::Host);
    };
    if !authority_allowed(host.as_bytes(), allowed) {
        return Err(Refusal::Host);
    }
    // An absolute-form target (`POST http://x/...`) names a host too; it
    // must pass as well, whatever a server further along would make of it.
    if let Some(a) = uri.authority() {
        if !authority_allowed(a.as_str().as_bytes(), allowed) {
            return Err(Refusal::Host);
        }
    }
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(());
    }
    if !origin_allowed(headers, allowed) {
        return Err(Refusal::Origin);
    }
    if !is_json(headers) {
        return Err(Refusal::ContentType);
    }
    Ok(())
}

/// `host[:port]` (RFC 9110 §7.2), IPv6 in brackets, naming this listener.
/// No user info, no empty port, nothing after the port.
fn authority_allowed(value: &[u8], allowed: &Allowed<'_>) -> bool {
    parse_authority(value).is_some_and(|h| allowed.host(&h))
}

fn parse_authority(value: &[u8]) -> Option<HostName> {
    let text = std::str::from_utf8(value).ok()?;
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        (&text[..=end], &text[end + 1..])
    } else {
        match text.rfind(':') {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, ""),
        }
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u16>().ok()?;
    }
    // An unbracketed IPv6 address is not a host (RFC 3986 §3.2.2).
    if !host.starts_with('[') && host.contains(':') {
        return None;
    }
    host.parse().ok()
}

/// The `Origin` rule: absent, or exactly one `http`/`https` origin whose
/// host names this listener; and no `Sec-Fetch-Site: cross-site` (a
/// browser that sends no `Origin` may still say where it came from).
fn origin_allowed(headers: &HeaderMap, allowed: &Allowed<'_>) -> bool {
    if headers
        .get_all("sec-fetch-site")
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return false;
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return true,
        (Some(o), None) => o,
        (Some(_), Some(_)) => return false,
    };
    // RFC 6454 §7: `scheme "://" host [":" port]`, or `null` (an opaque
    // origin: a sandboxed frame, a `file:` page, a redirect chain), which
    // names no host and so never passes.
    let Ok(text) = origin.to_str() else {
        return false;
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && authority_allowed(rest.as_bytes(), allowed)
}

/// Exactly one `Content-Type` whose media type is `application/json`
/// (case-insensitive, parameters such as `; charset=utf-8` allowed).
/// A comma anywhere refuses it: the Fetch standard reads a
/// comma-separated value by its last type, so `application/json;,text/plain`
/// is a CORS-safelisted `text/plain` to a browser (sent with no
/// preflight) while a reader that stops at `;` sees JSON.
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    if text.contains(',') {
        return false;
    }
    let essence = text.split(';').next().unwrap_or_default();
    essence
        .trim_matches([' ', '\t'])
        .eq_ignore_ascii_case("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed<'a>(hosts: &'a [HostName], bound: &str, local: &str) -> Allowed<'a> {
        Allowed {
            hosts,
            bound: bound.parse().unwrap(),
            local: local.parse().unwrap(),
        }
    }

    fn names(list: &[&str]) -> Vec<HostName> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn host_names_this_listener_or_nothing() {
        let hosts = names(&["credgate-admin.internal", "10.9.9.9"]);
        let on_loopback = allowed(&hosts, "127.0.0.1:9901", "127.0.0.1:9901");
        let on_pod_ip = allowed(&hosts, "10.1.2.3:9901", "10.1.2.3:9901");
        let on_any = allowed(&hosts, "0.0.0.0:9901", "10.1.2.3:9901");
        let on_any6 = allowed(&hosts, "[::]:9901", "[::ffff:10.1.2.3]:9901");
        #[rustfmt::skip]
        let table: &[(&str, [bool; 4])] = &[
            // Host                           loopback pod-ip  0.0.0.0  [::]
            ("localhost",                     [true,   true,   true,   true]),
            ("localhost:1234",                [true,   true,   true,   true]),
            ("LocalHost.:9901",               [true,   true,   true,   true]),
            ("127.0.0.1",                     [true,   true,   true,   true]),
            ("127.0.0.1:9901",                [true,   true,   true,   true]),
            ("127.8.9.10:1",                  [true,   true,   true,   true]),
            ("[::1]",                         [true,   true,   true,   true]),
            ("[::1]:9901",                    [true,   true,   true,   true]),
            ("[::ffff:127.0.0.1]:9901",       [true,   true,   true,   true]),
            ("credgate-admin.internal",       [true,   true,   true,   true]),
            ("CREDGATE-ADMIN.internal.:80",   [true,   true,   true,   true]),
            ("10.9.9.9:9901",                 [true,   true,   true,   true]),
            ("10.1.2.3:9901",                 [false,  true,   true,   true]),
            ("10.1.2.3",                      [false,  true,   true,   true]),
            ("10.1.2.4:9901",                 [false,  false,  false,  false]),
            ("0.0.0.0:9901",                  [false,  false,  false,  false]),
            ("evil.example",                  [false,  false,  false,  false]),
            ("evil.example:9901",             [false,  false,  false,  false]),
            ("admin.internal",                [false,  false,  false,  false]),
            ("x.credgate-admin.internal",     [false,  false,  false,  false]),
            ("foo.localhost",                 [false,  false,  false,  false]),
            ("localhost.evil.example",        [false,  false,  false,  false]),
            ("127.0.0.1.evil.example",        [false,  false,  false,  false]),
            ("127.1",                         [false,  false,  false,  false]),
            ("2130706433",                    [false,  false,  false,  false]),
            ("0x7f.0.0.1",                    [false,  false,  false,  false]),
            ("::1",                           [false,  false,  false,  false]),
            ("::1:9901",                      [false,  false,  false,  false]),
            ("[::1",                          [false,  false,  false,  false]),
            ("[::1]x",                        [false,  false,  false,  false]),
            ("[::1]:",                        [false,  false,  false,  false]),
            ("localhost:",                    [false,  false,  false,  false]),
            ("localhost:99999",               [false,  false,  false,  false]),
            ("localhost:+80",                 [false,  false,  false,  false]),
            ("localhost:80:80",               [false,  false,  false,  false]),
            ("user@localhost",                [false,  false,  false,  false]),
            ("localhost/",                    [false,  false,  false,  false]),
            ("local host",                    [false,  false,  false,  false]),
            ("*.localhost",                   [false,  false,  false,  false]),
            ("",                              [false,  false,  false,  false]),
        ];
        for (host, want) in table {
            let got = [&on_loopback, &on_pod_ip, &on_any, &on_any6]
                .map(|a| authority_allowed(host.as_bytes(), a));
            assert_eq!(&got, want, "Host: {host:?}");
        }
        assert!(!authority_allowed(b"local\xffhost", &on_loopback));
    }

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn content_type_must_be_json_and_only_json() {
        for (value, want) in [
            ("application/json", true),
            ("Application/JSON", true),
            ("application/json; charset=utf-8", true),
            ("application/json ;charset=UTF-8", true),
            ("text/plain", false),
            ("text/plain; application/json", false),
            ("application/json;,text/plain", false),
            ("application/json, text/plain", false),
            ("text/plain, application/json", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonx", false),
            ("application/merge-patch+json", false),
            ("", false),
        ] {
            assert_eq!(
                is_json(&head(&[("content-type", value)])),
                want,
                "{value:?}"
            );
        }
        assert!(!is_json(&HeaderMap::new()), "absent");
        assert!(
            !is_json(&head(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain")
            ])),
            "repeated"
        );
    }

    #[test]
    fn origin_must_name_this_listener_when_sent() {
        let hosts = names(&["ops.example"]);
        let a = allowed(&hosts, "127.0.0.1:9901", "127.0.0.1:9901");
        for (origin, want) in [
            ("http://localhost:9901", true),
            ("http://localhost:3000", true),
            ("https://127.0.0.1", true),
            ("HTTP://[::1]:9901", true),
            ("https://ops.example", true),
            ("https://evil.example", false),
            ("http://localhost.evil.example", false),
            ("null", false),
            ("file://", false),
            ("chrome-extension://localhost", false),
            ("http://localhost:9901/", false),
            ("http://localhost:9901/x", false),
            ("http://user@localhost", false),
            ("localhost:9901", false),
            ("", false),
        ] {
            assert_eq!(
                origin_allowed(&head(&[("origin", origin)]), &a),
                want,
                "Origin: {origin:?}"
            );
        }
        assert!(origin_allowed(&HeaderMap::new(), &a), "no Origin");
        assert!(!origin_allowed(
            &head(&[
                ("origin", "http://localhost"),
                ("origin", "http://localhost")
            ]),
            &a
        ));
        for (site, want) in [
            ("cross-site", false),
            ("Cross-Site", false),
            ("same-site", true),
            ("same-origin", true),
            ("none", true),
        ] {
            assert_eq!(
                origin_allowed(&head(&[("sec-fetch-site", site)]), &a),
                want,
                "Sec-Fetch-Site: {site}"
            );
        }
    }

    #[test]
    fn check_applies_host_to_all_and_origin_and_type_to_state_changes() {
        let hosts = Vec::new();
        let a = allowed(&hosts, "127.0.0.1:9901", "127.0.0.1:9901");
        let uri: Uri = "/admin/cache/invalidate".parse().unwrap();
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9901");
        let evil_origin = ("origin", "https://evil.example");
        type Case<'a> = (Method, &'a [(&'a str, &'a str)], Result<(), Refusal>);
        let cases: &[Case] = &[
            (Method::GET, &[host], Ok(())),
            (Method::HEAD, &[host], Ok(())),
            (Method::GET, &[host, evil_origin], Ok(())),
            (Method::GET, &[], Err(Refusal::Host)),
            (Method::GET, &[host, host], Err(Refusal::Host)),
            (Method::GET, &[("host", "evil.example")], Err(Refusal::Host)),
            (
                Method::POST,
                &[("host", "evil.example"), json],
                Err(Refusal::Host),
            ),
            (Method::POST, &[host, json], Ok(())),
            (Method::POST, &[host], Err(Refusal::ContentType)),
            (
                Method::POST,
                &[host, ("content-type", "text/plain")],
                Err(Refusal::ContentType),
            ),
            (Method::DELETE, &[host], Err(Refusal::ContentType)),
            (Method::OPTIONS, &[host], Err(Refusal::ContentType)),
            (Method::PUT, &[host, json], Ok(())),
            (
                Method::POST,
                &[host, json, evil_origin],
                Err(Refusal::Origin),
            ),
            (
                Method::POST,
                &[host, json, ("origin", "null")],
                Err(Refusal::Origin),
            ),
            (
                Method::POST,
                &[host, json, ("origin", "http://localhost:9901")],
                Ok(()),
            ),
            (
                Method::POST,
                &[host, json, ("sec-fetch-site", "cross-site")],
                Err(Refusal::Origin),
            ),
        ];
        for (method, pairs, want) in cases {
            assert_eq!(
                check(method, &uri, &head(pairs), &a),
                *want,
                "{method} {pairs:?}"
            );
        }
        // An absolute-form target names its host too.
        let absolute: Uri = "http://evil.example/metrics".parse().unwrap();
        assert_eq!(
            check(&Method::GET, &absolute, &head(&[host]), &a),
            Err(Refusal::Host)
        );
        let absolute: Uri = "http://localhost:9901/metrics".parse().unwrap();
        assert_eq!(check(&Method::GET, &absolute, &head(&[host]), &a), Ok(()));
    }
}
