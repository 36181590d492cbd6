//! Path hygiene (contract §8) and the Proxy API's full-URL form (contract §7).
//!
//! credgate decides on the path it sees; Paragon (and anything between)
//! may normalize it differently. Path-confusion attacks (CVE-2021-41270
//! Traefik, oauth2-proxy's `//` and `%2F` advisories, Envoy's
//! `%2F`/`%5C` handling) live in that gap, so every form that a normalizer
//! could rewrite is refused with 400 instead of guessed: empty segments,
//! dot segments, encoded `/ . \ NUL`, raw `\` and control characters. The
//! check runs on the raw path and again on the path percent-decoded once,
//! which catches double encoding (`%252F`).
//!
//! One exception: the Proxy API lets a caller put a full URL where the
//! provider path goes (`.../sdk/proxy/googledrive/https://sheets.googleapis.com/v4/x`).
//! The `//` after its scheme is allowed; its host must be in
//! `policy.proxy_url_hosts` (checked later, [`full_url_host`]); the rest of
//! it obeys every rule above.

use std::borrow::Cow;

/// Why a path was refused (the message of the 400).
pub type PathError = &'static str;

/// Checks a raw request path (no query). `Ok` means it is in normal form.
pub fn check(path: &str) -> Result<(), PathError> {
    if !path.starts_with('/') {
        return Err("the path must start with /");
    }
    let Some(at) = proxy_rest_offset(path) else {
        return check_both(path.as_bytes());
    };
    let rest = &path[at..];
    if leading_space(rest) {
        return Err(LEADING_SPACE);
    }
    match url_form(rest) {
        None => check_both(path.as_bytes()),
        Some(form) => {
            // The prefix up to and including the `/` before `{rest}`.
            check_both(&path.as_bytes()[..at])?;
            check_url_tail(rest, form)
        }
    }
}

const LEADING_SPACE: PathError = "white space before the Proxy API target";

/// Checks an `X-Paragon-Proxy-Url` value (contract §7) by exactly the rules of
/// a Proxy API `{rest}`: the same white-space rule, the same full-URL
/// detection, and §8's rules for the path (the part before any `?` or
/// `#`; a relative path is read as if it followed a `/`). The host of a
/// full URL is checked by [`target_allowed`], as for `{rest}`.
pub fn check_proxy_url_header(value: &str) -> Result<(), PathError> {
    if leading_space(value) {
        return Err(LEADING_SPACE);
    }
    let end = value.find(['?', '#']).unwrap_or(value.len());
    let target = &value[..end];
    match url_form(target) {
        Some(form) => check_url_tail(target, form),
        None if target.starts_with('/') => check_both(target.as_bytes()),
        None => {
            let mut p = Vec::with_capacity(target.len() + 1);
            p.push(b'/');
            p.extend_from_slice(target.as_bytes());
            check_both(&p)
        }
    }
}

/// A full-URL target: its scheme part may hold no escape or control
/// character, and what follows the scheme and its separators obeys the
/// path rules as if it were a path.
fn check_url_tail(rest: &str, form: UrlForm) -> Result<(), PathError> {
    check_escapes_and_chars(&rest.as_bytes()[..form.scheme_end])?;
    let mut tail = Vec::with_capacity(rest.len() - form.authority_start + 1);
    tail.push(b'/');
    tail.extend_from_slice(&rest.as_bytes()[form.authority_start..]);
    check_both(&tail)
}

/// Whether `text` starts with white space (any Unicode `White_Space`) or a
/// U+FEFF, raw or percent-encoded. A JavaScript `trim()` before `new URL()`
/// would drop it and read `%C2%A0https:evil.example` as a URL, while a
/// check that did not trim would see a path.
fn leading_space(text: &str) -> bool {
    let b = text.as_bytes();
    match b.first() {
        None => false,
        Some(&c) if c.is_ascii() && c != b'%' => c.is_ascii_whitespace() || c == 0x0b,
        Some(_) => {
            // One character is at most four bytes once decoded.
            let mut first = Vec::with_capacity(4);
            let mut i = 0;
            while first.len() < 4 && i < b.len() {
                if b[i] == b'%' {
                    match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                        (Some(h), Some(l)) => first.push(h << 4 | l),
                        _ => break,
                    }
                    i += 3;
                } else {
                    first.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8_lossy(&first)
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '\u{feff}')
        }
    }
}

fn check_both(raw: &[u8]) -> Result<(), PathError> {
    if plainly_clean(raw) {
        return Ok(());
    }
    check_raw(raw, true)?;
    match percent_decode(raw) {
        Some(Cow::Owned(decoded)) => check_raw(&decoded, false),
        Some(Cow::Borrowed(_)) => Ok(()),
        None => Err("malformed percent-encoding in the path"),
    }
}

/// One pass that recognizes the common case: no `%` at all (so nothing to
/// decode), no `\`, no control character, no empty or dot segment. `false`
/// only means "look closer": [`check_raw`] and the decoded pass then decide
/// and name the reason, so this shortcut cannot change an outcome.
fn plainly_clean(p: &[u8]) -> bool {
    let mut seg_start = 0;
    for (i, &b) in p.iter().enumerate() {
        if !NOTABLE[usize::from(b)] {
            continue;
        }
        match b {
            b'/' => {
                let seg = &p[seg_start..i];
                if i > 0 && (seg.is_empty() || seg == b"." || seg == b"..") {
                    return false;
                }
                seg_start = i + 1;
            }
            b'.' => {}
            // `%`, `\`, control characters.
            _ => return false,
        }
    }
    let last = &p[seg_start..];
    last != b"." && last != b".."
}

/// The bytes [`plainly_clean`] looks at: `/`, `.`, `%`, `\` and control
/// characters. A table lookup keeps the common byte to one test.
static NOTABLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[0x7f] = true;
    t[b'/' as usize] = true;
    t[b'.' as usize] = true;
    t[b'%' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The structural rules: no empty or dot segments, plus
/// [`check_escapes_and_chars`].
fn check_raw(p: &[u8], strict_escapes: bool) -> Result<(), PathError> {
    if p.windows(2).any(|w| w == b"//") {
        return Err("empty path segment (//)");
    }
    if p.split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err("dot segment in the path");
    }
    if strict_escapes {
        check_escapes_and_chars(p)
    } else {
        check_decoded_chars(p)
    }
}

/// Raw `\`, control characters, and `%2F %2E %5C %00` in any case.
fn check_escapes_and_chars(p: &[u8]) -> Result<(), PathError> {
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        if b == b'\\' {
            return Err("backslash in the path");
        }
        if b < 0x20 || b == 0x7f {
            return Err("control character in the path");
        }
        if b == b'%' {
            let (Some(h), Some(l)) = (p.get(i + 1).and_then(hex), p.get(i + 2).and_then(hex))
            else {
                return Err("malformed percent-encoding in the path");
            };
            if matches!(h << 4 | l, 0x2f | 0x2e | 0x5c | 0x00) {
                return Err("encoded /, ., \\ or NUL in the path");
            }
            i += 3;
            continue;
        }
        i += 1;
    }
    Ok(())
}

/// On the decoded path a `%` may be literal text (`100%25` → `100%`), so
/// only well-formed escapes of the forbidden set count (double encoding).
fn check_decoded_chars(p: &[u8]) -> Result<(), PathError> {
    for (i, &b) in p.iter().enumerate() {
        if b == b'\\' {
            return Err("encoded backslash in the path");
        }
        if b < 0x20 || b == 0x7f {
            return Err("encoded control character in the path");
        }
        if b == b'%' {
            if let (Some(h), Some(l)) = (p.get(i + 1).and_then(hex), p.get(i + 2).and_then(hex)) {
                if matches!(h << 4 | l, 0x2f | 0x2e | 0x5c | 0x00) {
                    return Err("double-encoded /, ., \\ or NUL in the path");
                }
            }
        }
    }
    Ok(())
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes once. `None` for a malformed escape; borrowed when
/// there was nothing to decode.
pub fn percent_decode(p: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !p.contains(&b'%') {
        return Some(Cow::Borrowed(p));
    }
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%' {
            let h = p.get(i + 1).and_then(hex)?;
            let l = p.get(i + 2).and_then(hex)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(p[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

/// If `path` is a Proxy API path, the byte offset where `{rest}` starts:
/// `/projects/{p}/sdk/proxy/{integration}/` or `.../proxy/custom/{id}/`.
fn proxy_rest_offset(path: &str) -> Option<usize> {
    let mut segs = segments(&path[1..]);
    if segs.next()? != "projects" {
        return None;
    }
    let project = segs.next()?;
    if project.is_empty() || segs.next()? != "sdk" || segs.next()? != "proxy" {
        return None;
    }
    let integration = segs.next()?;
    if integration.is_empty() {
        return None;
    }
    let prefix_len =
        "/projects/".len() + project.len() + "/sdk/proxy/".len() + integration.len() + 1;
    if integration == "custom" {
        let after = path.get(prefix_len..)?;
        let (id, Some(_)) = crate::paragon::routes::split_first(after) else {
            return None;
        };
        if id.is_empty() {
            return None;
        }
        return Some(prefix_len + id.len() + 1);
    }
    (path.len() >= prefix_len).then_some(prefix_len)
}

/// The `/`-separated pieces of `s`.
fn segments(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let (segment, tail) = crate::paragon::routes::split_first(rest?);
        rest = tail;
        Some(segment)
    })
}

/// How a Proxy API `{rest}` is a full URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UrlForm {
    /// Byte offset in `{rest}` after the scheme's `:` (0 without a scheme).
    scheme_end: usize,
    /// Byte offset in `{rest}` after the scheme and the separator run
    /// (`/`, `\`, `%5C`), where the authority begins.
    authority_start: usize,
}

/// Whether `{rest}` is in full-URL form (contract §7): its first segment, raw or
/// percent-decoded, any case, is a URL scheme `[a-z][a-z0-9+.-]*:`, or it
/// starts with `//`, `\` or `%5C`.
fn url_form(rest: &str) -> Option<UrlForm> {
    let b = rest.as_bytes();
    // A WHATWG parser drops leading C0 controls and spaces before it looks
    // for a scheme (`new URL(" https:/evil")` is `https://evil/`). Encoded
    // controls never pass [`check`], so encoded spaces are what is left.
    let lead = leading_encoded_spaces(b);
    let body = &b[lead..];
    if body.starts_with(b"//") || body.starts_with(b"\\") || starts_with_ci(body, b"%5c") {
        return Some(UrlForm {
            scheme_end: lead,
            authority_start: separator_run(b, lead),
        });
    }
    let first_end = body.iter().position(|c| *c == b'/').unwrap_or(body.len());
    let first = &body[..first_end];
    // Where the scheme's `:` ends in the raw text: `:` or `%3A`. A segment
    // whose escapes do not all decode (`https:\\evil?q=1%` in a header) is
    // still a URL when its raw text starts with a scheme: a malformed
    // escape further on must not hide one.
    let raw_colon_end = match percent_decode(first) {
        Some(decoded) => lead + raw_offset_after(first, scheme_len(&decoded)? + 1)?,
        None => lead + scheme_len(first)? + 1,
    };
    Some(UrlForm {
        scheme_end: raw_colon_end,
        authority_start: separator_run(b, raw_colon_end),
    })
}

/// Length of a run of `%20` at the start of `b`.
fn leading_encoded_spaces(b: &[u8]) -> usize {
    let mut i = 0;
    while b.get(i..i + 3) == Some(b"%20") {
        i += 3;
    }
    i
}

/// Length of a leading URL scheme (before its `:`), if `s` starts with one.
fn scheme_len(s: &[u8]) -> Option<usize> {
    let colon = s.iter().position(|c| *c == b':')?;
    let scheme = &s[..colon];
    let first = *scheme.first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    scheme
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
        .then_some(colon)
}

/// The raw byte offset just after `n` decoded bytes of `raw`.
fn raw_offset_after(raw: &[u8], n: usize) -> Option<usize> {
    let (mut i, mut count) = (0, 0);
    while count < n {
        if *raw.get(i)? == b'%' {
            i += 3;
        } else {
            i += 1;
        }
        count += 1;
    }
    Some(i.min(raw.len()))
}

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Skips `/`, `\` and `%5C` starting at `i`.
fn separator_run(b: &[u8], mut i: usize) -> usize {
    loop {
        if i < b.len() && (b[i] == b'/' || b[i] == b'\\') {
            i += 1;
        } else if starts_with_ci(&b[i.min(b.len())..], b"%5c") {
            i += 3;
        } else {
            return i;
        }
    }
}

/// The target of a Proxy API full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullUrl {
    /// `{rest}` is an ordinary provider path.
    NotAUrl,
    /// A full URL to this host (lowercase) and port, if it names one.
    Host { host: String, port: Option<u16> },
    /// A full URL with no host we can name (`mailto:x`, unparseable):
    /// never allowed.
    NoHost,
}

/// Parses a Proxy API `{rest}` that is in full-URL form with a WHATWG URL
/// parser (the `url` crate; Paragon runs on Node.js, whose `URL` follows the
/// same standard), so that `https:/evil`, `https:evil`, `https:\\evil` and
/// `//evil` all yield `evil` as the host, as they would for Paragon.
///
/// Whether Paragon parses `{rest}` as sent or percent-decoded first is not
/// documented, and the two readings can name different hosts:
/// `https://good%23@evil/` is `evil` as sent (`good%23` is userinfo) but
/// `good` decoded (`#@evil/` is then a fragment). Both readings are taken;
/// when they name different hosts the answer is [`FullUrl::NoHost`], which
/// is never allowed.
pub fn full_url_host(rest: &str) -> FullUrl {
    if url_form(rest).is_none() {
        return FullUrl::NotAUrl;
    }
    let Some(decoded) = percent_decode(rest.as_bytes()) else {
        return FullUrl::NoHost;
    };
    let Ok(decoded) = std::str::from_utf8(&decoded) else {
        return FullUrl::NoHost;
    };
    match (url_host(rest), url_host(decoded)) {
        (None, None) => FullUrl::NoHost,
        (Some(one), None) | (None, Some(one)) => one,
        (Some(raw), Some(dec)) if raw == dec => raw,
        (Some(_), Some(_)) => FullUrl::NoHost,
    }
}

/// `text` parsed as a URL, as Paragon's WHATWG parser would: a
/// scheme-relative `//host` (or `\\host`) resolves against an https base.
fn parse_url(text: &str) -> Option<url::Url> {
    // The parser strips leading C0 controls and spaces itself; the scheme
    // test that picks absolute or relative parsing must see the same text.
    let text = text.trim_start_matches(|c: char| c <= ' ');
    let base = url::Url::parse("https://base.invalid/").expect("static URL");
    if scheme_len(text.as_bytes()).is_some() {
        url::Url::parse(text).ok()
    } else {
        url::Url::options().base_url(Some(&base)).parse(text).ok()
    }
}

/// The host `text` names when parsed as a URL, if it names one.
fn url_host(text: &str) -> Option<FullUrl> {
    let u = parse_url(text)?;
    match u.host_str() {
        Some(h) if !h.is_empty() && h != "base.invalid" => Some(FullUrl::Host {
            host: h.trim_end_matches('.').to_ascii_lowercase(),
            port: u.port(),
        }),
        _ => None,
    }
}

/// `path` percent-decoded once (contract §5b: what rules read as
/// `request.path`), as UTF-8 with invalid bytes replaced; as sent when an
/// escape is malformed (hygiene has refused such paths by then).
pub fn decoded_once(path: &str) -> Cow<'_, str> {
    match percent_decode(path.as_bytes()) {
        Some(Cow::Owned(b)) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
        _ => Cow::Borrowed(path),
    }
}

/// The provider path a Proxy API target names (`{rest}` or an
/// `X-Paragon-Proxy-Url` value), percent-decoded once: a full URL's path
/// as the WHATWG parser reads it (so `https:/host/x`, `//host/x` and
/// `https:\\host\x` all give `/x`), a relative target with a leading `/`;
/// never its query or fragment. So a rule on `/sobjects/User` sees the
/// same path whether the target was given in the path, in the header, as
/// a full URL, or with letters percent-encoded.
pub fn provider_path(target: &str) -> String {
    let path: Cow<'_, str> = if url_form(target).is_some() {
        match parse_url(target) {
            Some(u) => Cow::Owned(u.path().to_string()),
            // No host either: the host guard refuses it.
            None => Cow::Borrowed(""),
        }
    } else {
        let end = target.find(['?', '#']).unwrap_or(target.len());
        let p = &target[..end];
        if p.starts_with('/') {
            Cow::Borrowed(p)
        } else {
            Cow::Owned(format!("/{p}"))
        }
    };
    decoded_once(&path).into_owned()
}

/// Why a Proxy API target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// 400 `bad_request`.
    BadRequest(&'static str),
    /// 403 `upstream_host_forbidden`.
    HostForbidden,
}

/// The Proxy API's target (contract §7): `{rest}` of a path that passed
/// [`check`], and the one `X-Paragon-Proxy-Url` value if given (never
/// both: Paragon does not document which it would use). Each obeys the
/// same rules by the same code: a full URL must name a host in `allowed`,
/// a path must be in normal form.
pub fn check_proxy_target(
    rest: &str,
    header: Option<&str>,
    allowed: &[String],
) -> Result<(), TargetError> {
    if !target_allowed(allowed, rest) {
        return Err(TargetError::HostForbidden);
    }
    let Some(value) = header else {
        return Ok(());
    };
    if !rest.is_empty() {
        return Err(TargetError::BadRequest(
            "the Proxy API target is given both in the path and in X-Paragon-Proxy-Url",
        ));
    }
    check_proxy_url_header(value).map_err(TargetError::BadRequest)?;
    if !target_allowed(allowed, value) {
        return Err(TargetError::HostForbidden);
    }
    Ok(())
}

/// Whether a Proxy API target (`{rest}` or `X-Paragon-Proxy-Url`) may be
/// forwarded: an ordinary path, or a full URL whose host is in
/// `policy.proxy_url_hosts` (contract §7). A full URL without a nameable host
/// never is.
pub fn target_allowed(allowed: &[String], target: &str) -> bool {
    match full_url_host(target) {
        FullUrl::NotAUrl => true,
        FullUrl::Host { host, port } => host_allowed(allowed, &host, port),
        FullUrl::NoHost => false,
    }
}

/// Whether a full-URL target is in `policy.proxy_url_hosts` (entries are
/// `host` for any port, or `host:port`).
pub fn host_allowed(allowed: &[String], host: &str, port: Option<u16>) -> bool {
    allowed.iter().any(|entry| match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            h == host && p.parse::<u16>().ok() == port
        }
        _ => entry == host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// contract §5b: `request.path` of a Proxy API request is the provider
    /// path, however the target was written.
    #[test]
    fn provider_paths_are_read_as_paragon_reads_the_target() {
        for (target, path) in [
            ("sobjects/User", "/sobjects/User"),
            ("/sobjects/User", "/sobjects/User"),
            ("sobjects/%55ser", "/sobjects/User"),
            ("sobjects/%2555ser", "/sobjects/%55ser"),
            ("/sobjects/User?fields=Id", "/sobjects/User"),
            (
                "https://x.my.salesforce.com/sobjects/User",
                "/sobjects/User",
            ),
            (
                "https:/x.my.salesforce.com/sobjects/%55ser",
                "/sobjects/User",
            ),
            (
                "https:\\\\x.my.salesforce.com\\sobjects\\User",
                "/sobjects/User",
            ),
            ("//x.my.salesforce.com/sobjects/User?q=1", "/sobjects/User"),
            ("HTTPS://X.EXAMPLE/a/b", "/a/b"),
            ("", "/"),
        ] {
            assert_eq!(provider_path(target), path, "{target}");
        }
        assert_eq!(decoded_once("/api/syncs/%41"), "/api/syncs/A");
        assert_eq!(decoded_once("/api/syncs/a"), "/api/syncs/a");
    }

    #[test]
    fn proxy_rest_starts_after_the_integration_or_the_custom_id() {
        let p = "/projects/p/sdk/proxy/slack/chat.postMessage";
        assert_eq!(
            proxy_rest_offset(p),
            Some(p.len() - "chat.postMessage".len())
        );
        let p = "/projects/p/sdk/proxy/custom/abc/x/y";
        assert_eq!(proxy_rest_offset(p), Some(p.len() - "x/y".len()));
        // A custom id with nothing after it has no `{rest}`.
        assert_eq!(proxy_rest_offset("/projects/p/sdk/proxy/custom/abc"), None);
        assert_eq!(proxy_rest_offset("/projects/p/sdk/proxy/custom//x"), None);
        assert_eq!(proxy_rest_offset("/projects/p/sdk/proxy/"), None);
        assert_eq!(proxy_rest_offset("/projects/p/sdk/me"), None);
    }

    /// The shortcut agrees with the full rules on every short path over an
    /// alphabet of the characters that matter: it accepts exactly the paths
    /// without `%` that the full check accepts.
    #[test]
    fn plainly_clean_is_exact_on_paths_without_escapes() {
        const ALPHABET: &[u8] = b"/.a%\\2F\x01";
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut p = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    p.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let full = check_raw(&p, true).is_ok() && !p.contains(&b'%');
                assert_eq!(plainly_clean(&p), full, "{:?}", String::from_utf8_lossy(&p));
                checked += 1;
            }
        }
        assert!(checked > 100_000);
    }

    const OK_PATHS: &[&str] = &[
        "/projects/p/sdk/me",
        "/projects/p/sdk/proxy/slack/chat.postMessage",
        "/projects/p/sdk/proxy/salesforce/services/data/v59.0/query",
        "/projects/p/sdk/proxy/googledrive/files/a%20b",
        "/projects/p/sdk/proxy/x/100%25",
        "/projects/p/sdk/proxy/x/a;b=c",
        "/projects/p/sdk/proxy/x/.well-known/x",
        "/projects/p/sdk/proxy/x/a..b",
        "/api/syncs/abc/records",
        "/",
    ];

    /// Every non-normalized form of contract §8, in several spellings.
    const BAD_PATHS: &[&str] = &[
        "//projects/p/sdk/me",
        "/projects//p/sdk/me",
        "/projects/p/./sdk/me",
        "/projects/p/../p/sdk/me",
        "/projects/p/sdk/me/.",
        "/projects/p/sdk/me/..",
        "/projects/p/sdk/proxy/x/a%2Fb",
        "/projects/p/sdk/proxy/x/a%2fb",
        "/projects/p/sdk/proxy/x/%2E%2E/y",
        "/projects/p/sdk/proxy/x/%2e",
        "/projects/p/sdk/proxy/x/a%5Cb",
        "/projects/p/sdk/proxy/x/a%5cb",
        "/projects/p/sdk/proxy/x/a%00b",
        "/projects/p/sdk/proxy/x/a\\b",
        "/projects/p/sdk/proxy/x/a\tb",
        "/projects/p/sdk/proxy/x/a\x7fb",
        "/projects/p/sdk/proxy/x/a%0Ab",
        "/projects/p/sdk/proxy/x/a%0d%0ab",
        "/projects/p/sdk/proxy/x/a%252Fb",
        "/projects/p/sdk/proxy/x/a%252e%252e/b",
        "/projects/p/sdk/proxy/x/a%255cb",
        "/projects/p/sdk/proxy/x/a%2",
        "/projects/p/sdk/proxy/x/a%zz",
        "projects/p/sdk/me",
        "",
    ];

    #[test]
    fn normal_paths_pass() {
        for p in OK_PATHS {
            assert_eq!(check(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn non_normalized_paths_fail() {
        for p in BAD_PATHS {
            assert!(check(p).is_err(), "{p:?} should be refused");
        }
    }

    #[test]
    fn full_url_form_may_use_double_slash_after_its_scheme_only() {
        for p in [
            "/projects/p/sdk/proxy/googledrive/https://sheets.googleapis.com/v4/x",
            "/projects/p/sdk/proxy/googledrive/HTTPS://evil.com/x",
            "/projects/p/sdk/proxy/googledrive/https:/evil.com",
            "/projects/p/sdk/proxy/googledrive/https:evil.com",
            "/projects/p/sdk/proxy/googledrive///evil.com/x",
            "/projects/p/sdk/proxy/googledrive/https%3A//evil.com/x",
            "/projects/p/sdk/proxy/googledrive/%5C%5Cevil.com/x",
            "/projects/p/sdk/proxy/custom/abc/https://evil.com/x",
        ] {
            assert_eq!(check(p), Ok(()), "{p}");
        }
        for p in [
            "/projects/p/sdk/proxy/googledrive/https://evil.com//x",
            "/projects/p/sdk/proxy/googledrive/https://evil.com/../x",
            "/projects/p/sdk/proxy/googledrive/https://evil.com/%2e%2e/x",
            "/projects/p/sdk/proxy/googledrive/https:%2F%2Fevil.com",
            "/projects/p//sdk/proxy/googledrive/https://evil.com",
            "/projects/p/sdk/proxy/googledrive/https://evil.com/a%00",
            // `//` elsewhere than right after the scheme is still refused.
            "/projects/p/sdk/me//https://x",
            "/projects/p/sdk/proxy/x/files//https:",
        ] {
            assert!(check(p).is_err(), "{p} should be refused");
        }
    }

    /// contract §7: white space or U+FEFF before a Proxy API target, raw or
    /// percent-encoded, is 400 whatever follows it (a JavaScript `trim()`
    /// would make a URL of it); inside the target it is ordinary text.
    #[test]
    fn leading_white_space_before_a_proxy_target_is_refused() {
        for lead in [
            "%20",
            "%09",
            "%0B",
            "%0c",
            "%C2%A0",
            "%c2%a0",
            "%E2%80%80",
            "%E2%80%8A",
            "%E2%80%A8",
            "%E2%80%A9",
            "%E2%80%AF",
            "%E2%81%9F",
            "%E3%80%80",
            "%EF%BB%BF",
            "%e1%9a%80",
            "%C2%85",
        ] {
            for target in ["https:evil.example", "https://evil.example/x", "files/x"] {
                let p = format!("/projects/p/sdk/proxy/googledrive/{lead}{target}");
                assert_eq!(check(&p), Err(LEADING_SPACE), "{p}");
                let h = format!("{lead}{target}");
                assert_eq!(check_proxy_url_header(&h), Err(LEADING_SPACE), "{h}");
            }
        }
        for ok in ["files/a%20b", "files/%C2%A0", "%E2%80%8Bx"] {
            let p = format!("/projects/p/sdk/proxy/googledrive/{ok}");
            assert_eq!(check(&p), Ok(()), "{p}");
            assert_eq!(check_proxy_url_header(ok), Ok(()), "{ok}");
        }
    }

    /// The header obeys the path rules of `{rest}`: a path in normal form,
    /// or a full URL whose tail is; a query or fragment is not path.
    #[test]
    fn proxy_url_header_values_obey_the_path_rules() {
        for ok in [
            "/v1/files?q=a,b&x=%2F",
            "v1/files",
            "https://sheets.googleapis.com/v4/x?y=1",
            "HTTPS://evil.com/x",
            "//evil.com/x",
            "https:evil.com",
            "?x=1",
            "/x#frag//..",
        ] {
            assert_eq!(check_proxy_url_header(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/v1//files",
            "/v1/../admin",
            "../admin",
            "v1/%2e%2e/admin",
            "/v1/a%2Fb",
            "https://evil.com//x",
            "https://evil.com/../x",
            "https:%2F%2Fevil.com",
            "/a\\b",
            "%5C%5Cevil.com/x/../y",
        ] {
            assert!(
                check_proxy_url_header(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn targets_are_allowed_only_to_listed_hosts() {
        let allowed = vec!["sheets.googleapis.com".to_string()];
        assert!(target_allowed(&allowed, "files/x"));
        assert!(target_allowed(&allowed, "/v1/x?u=https://evil.com"));
        assert!(target_allowed(&allowed, "https://sheets.googleapis.com/v4"));
        for bad in [
            "https://evil.com/x",
            "//evil.com",
            "\\\\evil.com",
            "HTTPS:evil.com",
            "https://sheets.googleapis.com%23@evil.com/",
            "mailto:x",
        ] {
            assert!(!target_allowed(&allowed, bad), "{bad}");
        }
    }

    #[test]
    fn full_url_hosts_are_parsed_like_whatwg() {
        let host = |rest: &str| full_url_host(rest);
        let h = |s: &str| FullUrl::Host {
            host: s.into(),
            port: None,
        };
        assert_eq!(host("files/list"), FullUrl::NotAUrl);
        assert_eq!(host("v4/spreadsheets:batchUpdate"), FullUrl::NotAUrl);
        assert_eq!(
            host("https://sheets.googleapis.com/v4"),
            h("sheets.googleapis.com")
        );
        assert_eq!(host("HTTPS://EVIL.com/x"), h("evil.com"));
        assert_eq!(host("https:/evil.com/x"), h("evil.com"));
        assert_eq!(host("https:evil.com/x"), h("evil.com"));
        assert_eq!(host("https:\\\\evil.com\\x"), h("evil.com"));
        assert_eq!(host("//evil.com/x"), h("evil.com"));
        assert_eq!(host("%5C%5Cevil.com/x"), h("evil.com"));
        assert_eq!(host("https%3A//evil.com/x"), h("evil.com"));
        assert_eq!(host("https://good.com@evil.com/"), h("evil.com"));
        assert_eq!(host("https://evil.com./"), h("evil.com"));
        assert_eq!(
            host("http://evil.com:8443/"),
            FullUrl::Host {
                host: "evil.com".into(),
                port: Some(8443)
            }
        );
        assert_eq!(host("%20https:/evil.com/x"), h("evil.com"));
        assert_eq!(host("%20%20https:evil.com"), h("evil.com"));
        assert_eq!(host("%20//evil.com/x"), h("evil.com"));
        // As sent, `good.com%23` is userinfo and the host is evil.com;
        // decoded, the host is good.com: two readings, never allowed.
        assert_eq!(host("https://good.com%23@evil.com/x"), FullUrl::NoHost);
        assert_eq!(host("https://good.com%3F@evil.com/x"), FullUrl::NoHost);
        assert_eq!(host("https://good.com/a%23b"), h("good.com"));
        assert_eq!(host("mailto:someone"), FullUrl::NoHost);
        assert_eq!(host("javascript:alert(1)"), FullUrl::NoHost);
        // A malformed escape after the scheme does not hide the URL (found
        // by the property test of tests/properties.rs).
        assert_eq!(host("https:\\\\evil.com?q=1%"), FullUrl::NoHost);
        assert!(!target_allowed(&[], "https:\\\\evil.com?q=1%"));
    }

    #[test]
    fn allowed_hosts_match_host_and_optional_port() {
        let allowed = vec![
            "sheets.googleapis.com".to_string(),
            "api.x.com:8443".to_string(),
        ];
        assert!(host_allowed(&allowed, "sheets.googleapis.com", None));
        assert!(host_allowed(&allowed, "sheets.googleapis.com", Some(444)));
        assert!(host_allowed(&allowed, "api.x.com", Some(8443)));
        assert!(!host_allowed(&allowed, "api.x.com", None));
        assert!(!host_allowed(&allowed, "evil.com", None));
        assert!(!host_allowed(&allowed, "googleapis.com", None));
    }
}
