//! `[cors]` (contract §13): which browser origins may call credgate
//! (`allowed_origins`), which extra request headers their pages may send
//! (`allowed_headers`), and how long a preflight answer may be cached
//! (`max_age`). It owns the section's file form (`RawCors`), the validated
//! [`CorsConfig`] and its checks: an origin is exactly
//! `scheme://host[:port]` (no path, no wildcard, no `null`), `max_age` is
//! at most two hours; `http://` origins other than loopback are warned of.
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`).
//! Answering preflights and marking answers is the gateway's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{dur, ConfigError};

/// `cors.max_age` [default: 10m].
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// The longest `cors.max_age` (browsers cap it lower anyway).
pub const MAX_CORS_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// `[cors]`: empty `allowed_origins` is CORS off (no `Access-Control-*`
/// header is ever sent, and a preflight is an ordinary request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfig {
    /// Exact origins, lowercase (`https://app.example.com`, `http://localhost:3000`).
    pub allowed_origins: Vec<String>,
    /// Extra request header names a page may send, lowercase.
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
}

impl CorsConfig {
    pub fn enabled(&self) -> bool {
        !self.allowed_origins.is_empty()
    }
}

pub(super) fn validate_cors(
    raw: RawCors,
    warnings: &mut Vec<String>,
) -> Result<CorsConfig, ConfigError> {
    let mut allowed_origins = Vec::new();
    for o in raw.allowed_origins.unwrap_or_default() {
        let origin = check_origin(&o).map_err(|why| {
            ConfigError::new(
                "cors.allowed_origins",
                format!("{o:?} is not an origin ({why}): write exactly scheme://host[:port]"),
            )
        })?;
        if origin.starts_with("http://") && !loopback_origin(&origin) {
            warnings.push(format!(
                "cors.allowed_origins: {origin} is plain http: a network attacker can act as that page"
            ));
        }
        if !allowed_origins.contains(&origin) {
            allowed_origins.push(origin);
        }
    }
    let mut allowed_headers = Vec::new();
    for h in raw.allowed_headers.unwrap_or_default() {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return Err(ConfigError::new(
                "cors.allowed_headers",
                format!("{h:?} is not a header name"),
            ));
        }
        let h = h.to_ascii_lowercase();
        if matches!(h.as_str(), "cookie" | "host") || h.starts_with("access-control-") {
            return Err(ConfigError::new(
                "cors.allowed_headers",
                format!("{h} may not be allowed"),
            ));
        }
        if !allowed_headers.contains(&h) {
            allowed_headers.push(h);
        }
    }
    let max_age = dur("cors.max_age", raw.max_age.as_deref(), DEFAULT_CORS_MAX_AGE)?;
    if max_age > MAX_CORS_MAX_AGE {
        return Err(ConfigError::new("cors.max_age", "must be at most 2h"));
    }
    Ok(CorsConfig {
        allowed_origins,
        allowed_headers,
        max_age,
    })
}

/// `text` as an origin (RFC 6454 §6.2's serialization), lowercase:
/// `http` or `https`, a host, an optional port, nothing else.
fn check_origin(text: &str) -> Result<String, &'static str> {
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or("no scheme")?;
    if !matches!(scheme, "http" | "https") {
        return Err("the scheme is not http or https");
    }
    if rest.is_empty() {
        return Err("no host");
    }
    if rest.contains(['/', '?', '#', '@', '*', ' ', '\\']) {
        return Err("it has a path, a wildcard, a user or a space");
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (h, tail) = inner.split_once(']').ok_or("an unclosed [")?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or("text after the address")?),
        };
        (&rest[..h.len() + 2], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.parse::<u16>().is_err() {
            return Err("the port is not a number");
        }
    }
    let name_ok = if host.starts_with('[') {
        host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    if !name_ok {
        return Err("the host is not a host name or address");
    }
    Ok(lower)
}

/// Whether an origin is a page on this machine (`localhost`, `127.x`, `[::1]`).
fn loopback_origin(origin: &str) -> bool {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    let host = if rest.starts_with('[') {
        rest.split(']').next().map_or(rest, |h| &h[1..])
    } else {
        rest.split(':').next().unwrap_or(rest)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod cors_tests {
    use super::*;

    #[test]
    fn origins_are_exactly_scheme_host_and_port() {
        for (given, want) in [
            ("https://app.example.com", "https://app.example.com"),
            (
                "HTTPS://App.Example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(check_origin(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "null",
            "*",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/x",
            "app.example.com",
            "ftp://app.example.com",
            "https://",
            "https://user@app.example.com",
            "https://app.example.com:",
            "https://app.example.com:99999",
            "https://app.example.com?x",
            "https://[::1",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_warned_of_unless_loopback_and_max_age_is_capped() {
        let mut w = Vec::new();
        let c = validate_cors(
            RawCors {
                allowed_origins: Some(vec![
                    "http://localhost:3000".into(),
                    "http://app.example.com".into(),
                ]),
                allowed_headers: Some(vec!["X-Custom".into()]),
                max_age: None,
            },
            &mut w,
        )
        .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("http://app.example.com"));
        assert_eq!(c.allowed_headers, vec!["x-custom".to_string()]);
        assert_eq!(c.max_age, DEFAULT_CORS_MAX_AGE);
        let long = validate_cors(
            RawCors {
                max_age: Some("3h".into()),
                ..RawCors::default()
            },
            &mut Vec::new(),
        );
        assert_eq!(long.unwrap_err().key, "cors.max_age");
    }
}
