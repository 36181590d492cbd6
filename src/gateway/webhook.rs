//! Phase 5, after the body is read: a member's trigger-subscription
//! `webhookOverride` (contract §3). A subscription keeps sending an
//! account's events to its `webhookOverride.url` after its creator loses
//! access to the account, so a member may name only a host in
//! `policy.webhook_hosts` (default none), by the WHATWG-compatible parser
//! of the Proxy API's full URLs (§7, `path.rs`). Admins are not restricted.
//! Errors: 400 `bad_request` (a body or a URL credgate cannot judge),
//! 403 `upstream_host_forbidden` (reason `host_not_allowed`), never
//! shadowed (§5a: shadow mode never lets a token or a secret leave, and a
//! subscription's events carry the account's data, and its `headers`
//! often a secret, to that host).

use http::header::HeaderMap;

use super::exchange::Ctx;
use super::inputs::{json_content, RequestBody};
use super::path::{self, FullUrl};
use crate::error::GatewayError;
use crate::paragon::jsonbody::{JsonError, Kind, TopObject};
use crate::paragon::routes::Operation;

/// Judges a member's body on a trigger-subscription route, whatever the
/// method (`POST` creates, `PATCH` replaces the override; Paragon
/// documents no other body, so credgate judges every one rather than
/// guess which Paragon reads). `body` is what `read_inputs` made of it: a
/// member's body on these routes is always read, so one left to stream is
/// refused (fail closed).
pub(super) fn check(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    body: &RequestBody,
) -> Result<(), GatewayError> {
    let judged = matches!(
        ctx.route.op,
        Operation::SubscriptionCreate
            | Operation::SubscriptionList
            | Operation::Subscription { .. }
    );
    if ctx.admin || !judged {
        return Ok(());
    }
    let raw = match (&body.buffered, &body.streamed) {
        (Some(raw), _) => &raw[..],
        (None, None) => return Ok(()),
        (None, Some(_)) => {
            return Err(GatewayError::BadRequest(
                "the trigger subscription's body could not be judged",
            ))
        }
    };
    check_body(raw, headers, &ctx.cfg.policy.webhook_hosts)
}

/// A body's `webhookOverride`: absent, `null`, an object without `url`, or
/// one whose `url` passes [`check_url`]. The body must be one JSON object
/// sent as JSON (what credgate read must be what Paragon reads: a form or
/// compressed body could carry an override credgate did not see), with
/// `webhookOverride` and its `url` given once each (a parser that keeps
/// the first duplicate and one that keeps the last would disagree).
fn check_body(raw: &[u8], headers: &HeaderMap, allowed: &[String]) -> Result<(), GatewayError> {
    if raw.is_empty() {
        return Ok(());
    }
    let top = TopObject::parse(raw).map_err(json_error)?;
    if !json_content(headers) {
        return Err(GatewayError::BadRequest(
            "a trigger subscription body must be JSON (Content-Type application/json, no Content-Encoding)",
        ));
    }
    let overrides: Vec<_> = top.all("webhookOverride").collect();
    let one = match overrides.as_slice() {
        [] => return Ok(()),
        [one] => *one,
        _ => {
            return Err(GatewayError::BadRequest(
                "webhookOverride is given more than once",
            ))
        }
    };
    match one.kind {
        Kind::Null => return Ok(()),
        Kind::Object => {}
        _ => {
            return Err(GatewayError::BadRequest(
                "webhookOverride must be an object",
            ))
        }
    }
    let inner = TopObject::parse(&raw[one.value.clone()]).map_err(json_error)?;
    let urls: Vec<_> = inner.all("url").collect();
    let url = match urls.as_slice() {
        // Headers or metadata only: events still go to the project's URL.
        [] => return Ok(()),
        [url] => *url,
        _ => {
            return Err(GatewayError::BadRequest(
                "webhookOverride.url is given more than once",
            ))
        }
    };
    let text = inner.string_value(url).ok_or(GatewayError::BadRequest(
        "webhookOverride.url must be a string",
    ))?;
    check_url(&text, allowed).map_err(|e| match e {
        UrlError::Malformed => GatewayError::BadRequest(
            "webhookOverride.url must be an absolute http(s) URL: scheme://host[:port][/path]",
        ),
        UrlError::HostForbidden => GatewayError::UpstreamHostForbidden,
    })
}

fn json_error(e: JsonError) -> GatewayError {
    GatewayError::BadRequest(match e {
        JsonError::TooDeep => "the body nests deeper than 64 levels",
        JsonError::Utf8 => "the body is not valid UTF-8",
        JsonError::NotObject => "the body must be a JSON object",
        JsonError::Syntax => "the body is not valid JSON",
    })
}

/// Why a `webhookOverride.url` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlError {
    /// 400: not an absolute http(s) URL in plain form.
    Malformed,
    /// 403: its host is not in `policy.webhook_hosts`.
    HostForbidden,
}

/// A `webhookOverride.url` (contract §3): an absolute `http` or `https`
/// URL whose host, as §7's WHATWG-compatible parser reads it (both the raw
/// and the percent-decoded reading, which must agree: [`path::full_url_host`]),
/// is in `allowed` (`host`, any port, or `host:port`).
///
/// Before the host, the text must be in plain form: `http://` or
/// `https://` (any case), then the authority; no white space or control
/// character anywhere (a WHATWG parser removes tabs and newlines and trims
/// the ends, other parsers do not) and no `\` (a WHATWG parser reads it as
/// `/` in `https:\\evil`, other parsers as text). `https:/evil`,
/// `https:evil` and `//evil` are therefore 400, whatever host they name:
/// the host credgate checked must be the host any parser on Paragon's side
/// reads. Userinfo is the parser's to read (`https://allowed@evil/` names
/// `evil`).
fn check_url(text: &str, allowed: &[String]) -> Result<(), UrlError> {
    let after_scheme = strip_prefix_ci(text, "https://")
        .or_else(|| strip_prefix_ci(text, "http://"))
        .ok_or(UrlError::Malformed)?;
    if after_scheme.is_empty() || after_scheme.starts_with('/') {
        return Err(UrlError::Malformed);
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '\u{feff}')
    {
        return Err(UrlError::Malformed);
    }
    let parsed = url::Url::parse(text).map_err(|_| UrlError::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(UrlError::Malformed);
    }
    match path::full_url_host(text) {
        FullUrl::Host { host, port } if path::host_allowed(allowed, &host, port) => Ok(()),
        _ => Err(UrlError::HostForbidden),
    }
}

fn strip_prefix_ci<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

    const ALLOWED: &str = "hooks.example";

    fn allowed() -> Vec<String> {
        vec![ALLOWED.to_string(), "ports.example:8443".to_string()]
    }

    /// Every form a member could use to aim a subscription's events, as a
    /// table: the URL, and whether it passes (`Ok`), is malformed (400) or
    /// names a host outside the list (403).
    #[test]
    fn webhook_urls_are_judged_by_host_after_the_plain_form() {
        use UrlError::{HostForbidden as Host, Malformed as Bad};
        let cases: &[(&str, Result<(), UrlError>)] = &[
            ("https://hooks.example/x", Ok(())),
            ("http://hooks.example", Ok(())),
            ("https://hooks.example:444/x?y=1#z", Ok(())),
            ("HTTPS://HOOKS.EXAMPLE/X", Ok(())),
            ("https://hooks.example./x", Ok(())),
            ("https://user:pw@hooks.example/x", Ok(())),
            ("https://evil.example@hooks.example/", Ok(())),
            ("https://ports.example:8443/x", Ok(())),
            ("https://hooks%2Eexample/x", Ok(())),
            // Another host, in every spelling.
            ("https://evil.example/x", Err(Host)),
            ("HTTPS://EVIL.EXAMPLE/", Err(Host)),
            ("https://hooks.example@evil.example/", Err(Host)),
            ("https://hooks.example:x@evil.example/", Err(Host)),
            ("https://hooks.example.evil.example/", Err(Host)),
            ("https://evilhooks.example/", Err(Host)),
            ("https://ports.example/x", Err(Host)),
            ("https://ports.example:8444/x", Err(Host)),
            ("https://127.0.0.1/", Err(Host)),
            ("https://[::1]/", Err(Host)),
            ("https://0x7f.1/", Err(Host)),
            ("https://xn--hoks-example-v2b/", Err(Host)),
            ("https://hооks.example/", Err(Host)),
            // Raw and decoded readings disagree: never allowed.
            ("https://hooks.example%23@evil.example/", Err(Host)),
            ("https://hooks.example%2F@evil.example/", Err(Host)),
            ("https://evil.example%23@hooks.example/", Err(Host)),
            // Not a plain absolute http(s) URL, whatever host it names.
            ("https:/evil.example", Err(Bad)),
            ("https:/hooks.example", Err(Bad)),
            ("https:evil.example", Err(Bad)),
            ("https:\\\\evil.example", Err(Bad)),
            ("https:\\\\hooks.example", Err(Bad)),
            ("https://hooks.example\\@evil.example/", Err(Bad)),
            ("https:///evil.example", Err(Bad)),
            ("//evil.example/x", Err(Bad)),
            ("//hooks.example/x", Err(Bad)),
            ("\\\\hooks.example", Err(Bad)),
            ("hooks.example/x", Err(Bad)),
            ("/x", Err(Bad)),
            ("", Err(Bad)),
            ("https://", Err(Bad)),
            (" https://hooks.example/", Err(Bad)),
            ("https://hooks.example/ ", Err(Bad)),
            ("https://hoo\tks.example/", Err(Bad)),
            ("https://hooks.exam\nple/", Err(Bad)),
            ("\u{feff}https://hooks.example/", Err(Bad)),
            ("https://hooks.example/\u{a0}", Err(Bad)),
            ("ftp://hooks.example/", Err(Bad)),
            ("wss://hooks.example/", Err(Bad)),
            ("javascript:alert(1)", Err(Bad)),
            ("mailto:x@hooks.example", Err(Bad)),
            ("https://hooks.example:99999/", Err(Bad)),
        ];
        for (url, want) in cases {
            assert_eq!(check_url(url, &allowed()), *want, "{url:?}");
        }
        // The default list is empty: every URL is refused.
        assert_eq!(
            check_url("https://hooks.example/", &[]),
            Err(UrlError::HostForbidden)
        );
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    fn code(r: Result<(), GatewayError>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    /// The body around the URL: what passes, what is malformed, duplicate
    /// keys (after unescaping), and bodies Paragon might read otherwise.
    #[test]
    fn bodies_are_judged_with_duplicate_keys_refused() {
        let h = json_headers();
        let cases: &[(&str, &str)] = &[
            ("", "ok"),
            ("{}", "ok"),
            (r#"{"integration":"slack","type":"T"}"#, "ok"),
            (r#"{"webhookOverride":null}"#, "ok"),
            (r#"{"webhookOverride":{}}"#, "ok"),
            (r#"{"webhookOverride":{"headers":{"a":"b"}}}"#, "ok"),
            (
                r#"{"webhookOverride":{"url":"https://hooks.example/x","headers":{"a":"b"}}}"#,
                "ok",
            ),
            (
                r#"{"parameters":{"webhookOverride":{"url":"https://evil.example"}}}"#,
                "ok",
            ),
            (
                r#"{"webhookOverride":{"url":"https://evil.example/x"}}"#,
                "upstream_host_forbidden",
            ),
            (
                r#"{"webhook\u004fverride":{"u\u0072l":"https://evil.example/x"}}"#,
                "upstream_host_forbidden",
            ),
            (
                r#"{"webhookOverride":{"url":"https:\/\/evil.example\/x"}}"#,
                "upstream_host_forbidden",
            ),
            (
                r#"{"webhookOverride":{"url":"https://hooks.example/x"},"webhookOverride":{"url":"https://hooks.example/y"}}"#,
                "bad_request",
            ),
            (
                r#"{"webhookOverride":null,"webhook\u004fverride":{"url":"https://evil.example"}}"#,
                "bad_request",
            ),
            (
                r#"{"webhookOverride":{"url":"https://hooks.example/x","url":"https://evil.example/"}}"#,
                "bad_request",
            ),
            (
                r#"{"webhookOverride":{"url":"https://hooks.example/x","\u0075rl":"https://hooks.example/"}}"#,
                "bad_request",
            ),
            (r#"{"webhookOverride":{"url":null}}"#, "bad_request"),
            (r#"{"webhookOverride":{"url":7}}"#, "bad_request"),
            (
                r#"{"webhookOverride":{"url":["https://hooks.example/"]}}"#,
                "bad_request",
            ),
            (
                r#"{"webhookOverride":"https://evil.example"}"#,
                "bad_request",
            ),
            (r#"{"webhookOverride":[]}"#, "bad_request"),
            (
                r#"{"webhookOverride":{"url":"//evil.example"}}"#,
                "bad_request",
            ),
            (r#"{"webhookOverride":{"url":"https://x"#, "bad_request"),
            (
                r#"[{"webhookOverride":{"url":"https://evil"}}]"#,
                "bad_request",
            ),
            ("not json", "bad_request"),
        ];
        for (body, want) in cases {
            let got = check_body(body.as_bytes(), &h, &allowed());
            assert_eq!(code(got), *want, "{body}");
        }
    }

    /// A body Paragon might read as something else than the JSON credgate
    /// judged (a form, a compressed body) is 400, even without an override.
    #[test]
    fn a_body_that_is_not_sent_as_json_is_refused() {
        let body = br#"{"integration":"slack","type":"T"}"#;
        assert_eq!(code(check_body(body, &HeaderMap::new(), &allowed())), "ok");
        let mut form = HeaderMap::new();
        form.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(code(check_body(body, &form, &allowed())), "bad_request");
        let mut gz = json_headers();
        gz.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(code(check_body(body, &gz, &allowed())), "bad_request");
    }
}
