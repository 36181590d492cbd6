//! CORS as a public API answers it (Paragon's hosts serve browsers: the
//! Connect SDK calls them from a customer's page): any origin may read
//! any answer. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is 204 on every path, before
//! authentication (it carries no token), allowing the asked method and
//! headers; every other answer to a request with `Origin` names that
//! origin in `Access-Control-Allow-Origin`. Never `*`, never
//! `Access-Control-Allow-Credentials` (the SDK sends no cookies).
//!
//! credgate removes these headers from Paragon's answers and answers CORS
//! itself (contract §13); the emulator sends them so a test can see that.

use http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::net::body::{empty, Body};

/// What a preflight allows: every method a Paragon route takes.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// How long a browser may keep a preflight's answer, in seconds.
const MAX_AGE_SECS: &str = "600";

/// The method a preflight asks for, when the request is one: `OPTIONS`
/// with `Origin` and a well-formed `Access-Control-Request-Method`.
pub(crate) fn preflight_method(headers: &HeaderMap, method: &Method) -> Option<Method> {
    if *method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

/// The answer to a preflight: 204, the origin and the asked headers
/// allowed.
pub(crate) fn preflight(headers: &HeaderMap) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    if let Some(origin) = headers.get(ORIGIN) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    h.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    r
}

/// Lets the request's origin read the answer (`Vary: Origin` so no cache
/// serves it to another origin).
pub(crate) fn allow_origin(request: &HeaderMap, response: &mut HeaderMap) {
    if let Some(origin) = request.get(ORIGIN) {
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.append(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_options_with_origin_and_a_requested_method_is_a_preflight() {
        let full = headers(&[
            ("origin", "http://127.0.0.1:1"),
            ("access-control-request-method", "DELETE"),
        ]);
        assert_eq!(
            preflight_method(&full, &Method::OPTIONS),
            Some(Method::DELETE)
        );
        assert_eq!(preflight_method(&full, &Method::GET), None);
        let no_origin = headers(&[("access-control-request-method", "GET")]);
        assert_eq!(preflight_method(&no_origin, &Method::OPTIONS), None);
        let no_method = headers(&[("origin", "http://127.0.0.1:1")]);
        assert_eq!(preflight_method(&no_method, &Method::OPTIONS), None);
        let bad = headers(&[
            ("origin", "http://127.0.0.1:1"),
            ("access-control-request-method", "G E T"),
        ]);
        assert_eq!(preflight_method(&bad, &Method::OPTIONS), None);
    }

    #[test]
    fn a_preflight_echoes_the_origin_and_the_asked_headers() {
        let r = preflight(&headers(&[
            ("origin", "http://127.0.0.1:9"),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "authorization,x-paragon-sdk-version",
            ),
        ]));
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:9");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization,x-paragon-sdk-version"
        );
        assert_eq!(h["access-control-allow-methods"], ALLOWED_METHODS);
        assert!(h.get("access-control-allow-credentials").is_none());

        let mut out = HeaderMap::new();
        allow_origin(&HeaderMap::new(), &mut out);
        assert!(out.is_empty(), "no Origin, no CORS headers");
    }
}
