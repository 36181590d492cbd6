//! CORS (contract §13): browsers' pages on the origins of `[cors]
//! allowed_origins` may call credgate (Paragon's Connect SDK in a member's
//! front end).
//!
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) is answered here, after path hygiene
//!   and before authentication (it carries no token), the same for every
//!   path, so an unauthenticated caller learns nothing about routes: 204
//!   with the allowed methods and the requested headers credgate knows,
//!   or, from any other origin, 403 `cors_origin_forbidden` without
//!   `Access-Control-*`. Never forwarded, never audited as a decision;
//!   counted in `credgate_cors_preflights_total{result}`.
//! - Every other answer to an allowed origin, credgate's refusals
//!   included, names that origin (never `*`, never with credentials:
//!   credgate is called with a bearer token, not cookies) and exposes the
//!   headers a page needs to read (`X-Request-Id`, `Retry-After`,
//!   `WWW-Authenticate`).
//! - Paragon's own `Access-Control-*` headers never pass (`headers`
//!   removes them with the hop-by-hop fields): credgate alone says which
//!   origins may read its answers.
//!
//! With `[cors]` off nothing here runs: a preflight is an ordinary request.

use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::headers;
use crate::config::Config;
use crate::error::GatewayError;
use crate::net::body::{empty, Body};
use crate::telemetry::{Metrics, ResultLabel};

/// The methods credgate routes (contract §13).
const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// What a page may read of an answer besides the CORS-safelisted fields.
const EXPOSE_HEADERS: &str = "X-Request-Id, Retry-After, WWW-Authenticate";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// Request headers a page may send whatever the config: the token, the
/// body's type, the request id and trace context, and the Paragon headers
/// credgate judges itself (the members' known ones, the SDK's version
/// among them, are `headers::MEMBER_PARAGON_HEADERS`).
const ALWAYS_ALLOWED: &[&str] = &[
    "authorization",
    "content-type",
    "x-request-id",
    "traceparent",
    "tracestate",
    headers::X_PARAGON_CREDENTIAL,
    headers::X_PARAGON_CONFIGURATION_ID,
    headers::X_PARAGON_PROXY_URL,
];

/// The request's `Origin` when `[cors]` allows it (exactly one `Origin`,
/// equal to a configured origin, compared without regard to case).
pub(super) fn allowed_origin<'h>(cfg: &Config, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
    origin_in(&cfg.cors.allowed_origins, headers)
}

fn origin_in<'h>(allowed: &[String], headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(ORIGIN).iter();
    let origin = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|o| o.eq_ignore_ascii_case(text))
        .then_some(origin)
}

/// Answers a CORS preflight, when `parts` is one and `[cors]` is on;
/// `None` for every other request.
pub(super) fn preflight(
    cfg: &Config,
    parts: &Parts,
    metrics: &Metrics,
) -> Option<Result<Response<Body>, GatewayError>> {
    if !cfg.cors.enabled()
        || parts.method != Method::OPTIONS
        || !parts.headers.contains_key(ORIGIN)
        || !parts.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let count = |result: &'static str| {
        metrics
            .cors_preflights
            .get_or_create(&ResultLabel { result })
            .inc();
    };
    let Some(origin) = allowed_origin(cfg, &parts.headers) else {
        count("forbidden");
        return Some(Err(GatewayError::CorsOriginForbidden));
    };
    count("allowed");
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    let allowed = allowed_request_headers(
        &parts.headers,
        &cfg.policy.member_paragon_headers,
        &cfg.cors.allowed_headers,
    );
    if !allowed.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    h.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cfg.cors.max_age.as_secs()),
    );
    h.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
    Some(Ok(resp))
}

/// The names of `Access-Control-Request-Headers` a page may send
/// (lowercase, each once, in the order asked); the rest are left out, and
/// the browser then refuses to send them.
fn allowed_request_headers(
    headers: &HeaderMap,
    member_headers: &[String],
    extra: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let asked = headers
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty());
    for name in asked {
        let known = ALWAYS_ALLOWED.contains(&name.as_str())
            || headers::MEMBER_PARAGON_HEADERS.contains(&name.as_str())
            || member_headers.iter().any(|h| h.eq_ignore_ascii_case(&name))
            || extra.contains(&name);
        if known && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Marks an answer to an allowed origin as readable by it (contract §13).
pub(super) fn mark(origin: HeaderValue, resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    h.append(VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_origin_is_allowed_only_exactly_and_once() {
        let allowed = vec!["https://app.example.com".to_string()];
        for (given, ok) in [
            (vec![("origin", "https://app.example.com")], true),
            (vec![("origin", "HTTPS://APP.EXAMPLE.COM")], true),
            (
                vec![("origin", "https://app.example.com.evil.example")],
                false,
            ),
            (vec![("origin", "https://evil.example")], false),
            (vec![("origin", "null")], false),
            (vec![("origin", "https://app.example.com:443")], false),
            (vec![("origin", "http://app.example.com")], false),
            (
                vec![
                    ("origin", "https://app.example.com"),
                    ("origin", "https://app.example.com"),
                ],
                false,
            ),
            (vec![], false),
        ] {
            assert_eq!(
                origin_in(&allowed, &headers(&given)).is_some(),
                ok,
                "{given:?}"
            );
        }
    }

    #[test]
    fn a_preflight_allows_only_the_request_headers_credgate_knows() {
        let asked = headers(&[
            (
                "access-control-request-headers",
                "Authorization, content-type, X-Paragon-Credential, x-paragon-sdk-version",
            ),
            (
                "access-control-request-headers",
                "x-paragon-proxy-url,x-evil, cookie, x-paragon-user-metadata, x-custom, traceparent, authorization",
            ),
            ("access-control-request-headers", "x-paragon-use-raw-response, x-paragon-extra"),
        ]);
        let got =
            allowed_request_headers(&asked, &["X-Paragon-Extra".into()], &["x-custom".into()]);
        assert_eq!(
            got,
            vec![
                "authorization",
                "content-type",
                "x-paragon-credential",
                "x-paragon-sdk-version",
                "x-paragon-proxy-url",
                "x-custom",
                "traceparent",
                "x-paragon-use-raw-response",
                "x-paragon-extra",
            ]
        );
    }
}
