//! `[authzen]` (contract §14): credgate as an AuthZEN decision point
//! (`serve`, `token_env`), and credgate asking one (`pdp_url`,
//! `pdp_token_env`, `pdp_timeout`, `pdp_cache_ttl`). It owns the section's
//! file form (`RawAuthzen`), its defaults, the validated [`AuthzenConfig`]
//! and its checks, `listen` (the decision point on a listener of its own)
//! included.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::AuthMode;
use super::common::{dur, ConfigError, Env};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthzen {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdp_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdp_token_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdp_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdp_cache_ttl: Option<String>,
}

/// `authzen.token_env` [default: `CREDGATE_AUTHZEN_TOKEN`].
pub const DEFAULT_AUTHZEN_TOKEN_ENV: &str = "CREDGATE_AUTHZEN_TOKEN";
/// `authzen.pdp_timeout` [default: 500ms]: one question to the decision
/// point, connect, answer and body included.
pub const DEFAULT_PDP_TIMEOUT: Duration = Duration::from_millis(500);
/// `authzen.pdp_cache_ttl` [default: 30s]: how long an answer is reused.
pub const DEFAULT_PDP_CACHE_TTL: Duration = Duration::from_secs(30);
/// The longest `pdp_timeout`: a request waits at most this for the
/// decision point.
pub const MAX_PDP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `pdp_cache_ttl`: a permit the decision point withdrew is
/// used at most this long after.
pub const MAX_PDP_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// A bearer token (AuthZEN callers' to credgate, or credgate's to the
/// decision point); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthzenToken(String);

impl AuthzenToken {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AuthzenToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthzenToken(***)")
    }
}

/// `[authzen]`: credgate as a decision point, and the decision point it
/// asks (contract §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzenConfig {
    /// Serve `/access/v1/*` and `/.well-known/authzen-configuration` on
    /// the admin listener, or on `listen` when set.
    pub serve: bool,
    /// `listen`: a listener of its own for the decision point, which then
    /// serves nothing else (and the admin listener no AuthZEN route).
    pub listen: Option<SocketAddr>,
    /// The env var that holds the bearer token.
    pub token_env: String,
    /// Its value (set whenever `serve` is).
    pub token: Option<AuthzenToken>,
    /// `pdp_url`: the decision point's base URL (http or https, no query,
    /// fragment or user info, no trailing `/`); credgate appends
    /// `/access/v1/evaluation` or `/access/v1/evaluations`. `None`: no
    /// decision point is asked.
    pub pdp_url: Option<url::Url>,
    /// `pdp_token_env`: the env var holding the bearer token credgate sends
    /// the decision point (only with `pdp_url`).
    pub pdp_token_env: Option<String>,
    /// Its value.
    pub pdp_token: Option<AuthzenToken>,
    /// One question, at most (then: not permitted).
    pub pdp_timeout: Duration,
    /// How long an answer is reused; zero: never.
    pub pdp_cache_ttl: Duration,
}

impl Default for AuthzenConfig {
    fn default() -> Self {
        AuthzenConfig {
            serve: false,
            listen: None,
            token_env: DEFAULT_AUTHZEN_TOKEN_ENV.into(),
            token: None,
            pdp_url: None,
            pdp_token_env: None,
            pdp_token: None,
            pdp_timeout: DEFAULT_PDP_TIMEOUT,
            pdp_cache_ttl: DEFAULT_PDP_CACHE_TTL,
        }
    }
}

impl AuthzenConfig {
    /// The URL of one of the decision point's endpoints (`path` starts
    /// with `/`), when one is configured.
    pub fn pdp_endpoint(&self, path: &str) -> Option<String> {
        self.pdp_url
            .as_ref()
            .map(|u| format!("{}{path}", u.as_str().trim_end_matches('/')))
    }
}

pub(super) fn validate_authzen(
    raw: RawAuthzen,
    mode: AuthMode,
    env: &dyn Env,
    warnings: &mut Vec<String>,
) -> Result<AuthzenConfig, ConfigError> {
    let token_env = raw
        .token_env
        .unwrap_or_else(|| DEFAULT_AUTHZEN_TOKEN_ENV.into());
    if token_env.is_empty() {
        return Err(ConfigError::new(
            "authzen.token_env",
            "must name an env var",
        ));
    }
    let serve = raw.serve.unwrap_or(false);
    let token = if serve {
        if mode == AuthMode::Passthrough {
            return Err(ConfigError::new(
                "authzen.serve",
                "needs auth.mode = \"mint\": in passthrough mode credgate cannot load a user's list without the caller's token",
            ));
        }
        match env.var(&token_env) {
            Some(t) if t.len() >= 16 => Some(AuthzenToken(t)),
            Some(_) => {
                return Err(ConfigError::new(
                    "authzen.token_env",
                    format!("the token in ${token_env} must be at least 16 characters"),
                ))
            }
            None => {
                return Err(ConfigError::new(
                    "authzen.token_env",
                    format!("${token_env} is not set: authzen.serve needs a bearer token"),
                ))
            }
        }
    } else {
        None
    };
    let listen = match raw.listen.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(_) if !serve => {
            return Err(ConfigError::new(
                "authzen.listen",
                "needs authzen.serve = true (it is the decision point's listener)",
            ))
        }
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                ConfigError::new(
                    "authzen.listen",
                    format!("`{text}` is not an address and port such as 127.0.0.1:9902"),
                )
            })?;
            if !addr.ip().is_loopback() {
                warnings.push(format!(
                    "authzen.listen = \"{addr}\" is not a loopback address: the listener is plain HTTP, so the bearer token and every question cross the network in clear text unless a TLS-terminating proxy is in front"
                ));
            }
            Some(addr)
        }
    };
    let pdp_url = match raw.pdp_url.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(pdp_url(text, mode, warnings)?),
    };
    let pdp_token_env = raw.pdp_token_env.filter(|s| !s.is_empty());
    let pdp_token = match (&pdp_token_env, &pdp_url) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "authzen.pdp_token_env",
                "needs authzen.pdp_url (the decision point the token is for)",
            ))
        }
        (Some(name), Some(_)) => Some(pdp_token(name, env)?),
    };
    let pdp_timeout = dur(
        "authzen.pdp_timeout",
        raw.pdp_timeout.as_deref(),
        DEFAULT_PDP_TIMEOUT,
    )?;
    if pdp_timeout.is_zero() || pdp_timeout > MAX_PDP_TIMEOUT {
        return Err(ConfigError::new(
            "authzen.pdp_timeout",
            "must be above 0 and at most 60s (a question the decision point does not answer in time permits nothing)",
        ));
    }
    let pdp_cache_ttl = dur(
        "authzen.pdp_cache_ttl",
        raw.pdp_cache_ttl.as_deref(),
        DEFAULT_PDP_CACHE_TTL,
    )?;
    if pdp_cache_ttl > MAX_PDP_CACHE_TTL {
        return Err(ConfigError::new(
            "authzen.pdp_cache_ttl",
            "must be at most 24h (a permit the decision point withdrew is used until its answer expires)",
        ));
    }
    Ok(AuthzenConfig {
        serve,
        listen,
        token_env,
        token,
        pdp_url,
        pdp_token_env,
        pdp_token,
        pdp_timeout,
        pdp_cache_ttl,
    })
}

/// `authzen.pdp_url`: an http(s) base URL without query, fragment or user
/// info (a secret in it would be printed; use `pdp_token_env`), its
/// trailing `/` dropped. Mint mode only: the decision point grants members
/// (passthrough callers have none). Plain http to a host other than
/// loopback is warned of.
fn pdp_url(
    text: &str,
    mode: AuthMode,
    warnings: &mut Vec<String>,
) -> Result<url::Url, ConfigError> {
    const KEY: &str = "authzen.pdp_url";
    if mode == AuthMode::Passthrough {
        return Err(ConfigError::new(
            KEY,
            "needs auth.mode = \"mint\": the decision point grants credentials to members, and passthrough callers are not members",
        ));
    }
    let url = url::Url::parse(text)
        .map_err(|e| ConfigError::new(KEY, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(
            KEY,
            "must be an http:// or https:// URL (the decision point's base URL)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            KEY,
            "must not carry user info: give the decision point's token in authzen.pdp_token_env",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            KEY,
            "must be a base URL without query or fragment (credgate appends /access/v1/evaluation)",
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "http" && !loopback {
        warnings.push(format!(
            "authzen.pdp_url: `{url}` is plain http: the decision point's answers (and its token) cross the network unprotected; use https"
        ));
    }
    Ok(url)
}

/// The decision point's bearer token from `$name`: set, and usable in an
/// `Authorization` header (visible ASCII).
fn pdp_token(name: &str, env: &dyn Env) -> Result<AuthzenToken, ConfigError> {
    const KEY: &str = "authzen.pdp_token_env";
    match env.var(name) {
        None => Err(ConfigError::new(KEY, format!("${name} is not set"))),
        Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ConfigError::new(
                KEY,
                format!("${name} must hold a token of visible ASCII characters"),
            ))
        }
        Some(t) => Ok(AuthzenToken(t)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn raw(text: &str) -> RawAuthzen {
        toml::from_str(text).expect("a raw [authzen]")
    }

    #[test]
    fn serve_reads_the_token_from_its_env_var() {
        let e = env(&[("AZ", "0123456789abcdef-token")]);
        let c = validate_authzen(
            raw("serve = true\ntoken_env = \"AZ\""),
            AuthMode::Mint,
            &e,
            &mut Vec::new(),
        )
        .expect("valid");
        assert!(c.serve);
        assert_eq!(
            c.token.as_ref().unwrap().as_bytes(),
            b"0123456789abcdef-token"
        );
        // Never printed.
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        // Off by default, no token needed.
        let off = validate_authzen(raw(""), AuthMode::Mint, &env(&[]), &mut Vec::new()).unwrap();
        assert_eq!(off, AuthzenConfig::default());
    }

    #[test]
    fn serve_without_a_usable_token_or_in_passthrough_is_refused() {
        let none = validate_authzen(
            raw("serve = true"),
            AuthMode::Mint,
            &env(&[]),
            &mut Vec::new(),
        );
        assert_eq!(none.unwrap_err().key, "authzen.token_env");
        let short = env(&[(DEFAULT_AUTHZEN_TOKEN_ENV, "short")]);
        let e = validate_authzen(raw("serve = true"), AuthMode::Mint, &short, &mut Vec::new());
        assert_eq!(e.unwrap_err().key, "authzen.token_env");
        let ok = env(&[(DEFAULT_AUTHZEN_TOKEN_ENV, "0123456789abcdef")]);
        let e = validate_authzen(
            raw("serve = true"),
            AuthMode::Passthrough,
            &ok,
            &mut Vec::new(),
        );
        assert_eq!(e.unwrap_err().key, "authzen.serve");
    }

    /// `listen` needs `serve`, must parse, and warns off loopback.
    #[test]
    fn listen_is_checked() {
        let e = validate_authzen(
            raw("listen = \"127.0.0.1:9902\""),
            AuthMode::Mint,
            &env(&[]),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.key, "authzen.listen");
        assert!(e.to_string().contains("authzen.serve"), "{e}");
        let token = [("CREDGATE_AUTHZEN_TOKEN", "0123456789abcdef0123")];
        let e = validate_authzen(
            raw("serve = true\nlisten = \"localhost\""),
            AuthMode::Mint,
            &env(&token),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.key, "authzen.listen");
        let mut warnings = Vec::new();
        let c = validate_authzen(
            raw("serve = true\nlisten = \"0.0.0.0:9902\""),
            AuthMode::Mint,
            &env(&token),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:9902".parse().unwrap()));
        assert!(
            warnings.iter().any(|w| w.contains("authzen.listen")),
            "{warnings:?}"
        );
    }

    /// contract §14: the decision point's keys, their defaults and checks.
    #[test]
    fn the_decision_point_keys_are_read_and_checked() {
        let e = env(&[("PDP_TOKEN", "pdp-secret-token")]);
        let mut warnings = Vec::new();
        let c = validate_authzen(
            raw("pdp_url = \"https://pdp.example.com/authzen/\"\npdp_token_env = \"PDP_TOKEN\"\npdp_timeout = \"250ms\"\npdp_cache_ttl = \"1m\""),
            AuthMode::Mint,
            &e,
            &mut warnings,
        )
        .expect("valid");
        assert_eq!(
            c.pdp_endpoint("/access/v1/evaluation").as_deref(),
            Some("https://pdp.example.com/authzen/access/v1/evaluation")
        );
        assert_eq!(c.pdp_token.as_ref().unwrap().as_str(), "pdp-secret-token");
        assert!(!format!("{c:?}").contains("pdp-secret"), "never printed");
        assert_eq!(c.pdp_timeout, Duration::from_millis(250));
        assert_eq!(c.pdp_cache_ttl, Duration::from_secs(60));
        assert!(warnings.is_empty(), "{warnings:?}");
        // Defaults, and a bare host gets the paths appended to its root.
        let c = validate_authzen(
            raw("pdp_url = \"http://127.0.0.1:8181\""),
            AuthMode::Mint,
            &env(&[]),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(
            c.pdp_endpoint("/access/v1/evaluations").as_deref(),
            Some("http://127.0.0.1:8181/access/v1/evaluations")
        );
        assert_eq!(
            (c.pdp_timeout, c.pdp_cache_ttl),
            (DEFAULT_PDP_TIMEOUT, DEFAULT_PDP_CACHE_TTL)
        );
        assert!(c.pdp_token.is_none() && warnings.is_empty());
        // An empty URL is off.
        let off = validate_authzen(
            raw("pdp_url = \"\""),
            AuthMode::Mint,
            &env(&[]),
            &mut warnings,
        );
        assert_eq!(off.unwrap(), AuthzenConfig::default());
        // Plain http beyond loopback is warned of.
        validate_authzen(
            raw("pdp_url = \"http://pdp.internal\""),
            AuthMode::Mint,
            &env(&[]),
            &mut warnings,
        )
        .unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("plain http")),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_decision_point_settings_are_refused() {
        let ok_env = env(&[("T", "tok")]);
        for (text, mode, key) in [
            ("pdp_url = \"ftp://pdp\"", AuthMode::Mint, "authzen.pdp_url"),
            ("pdp_url = \"not a url\"", AuthMode::Mint, "authzen.pdp_url"),
            (
                "pdp_url = \"https://u:p@pdp\"",
                AuthMode::Mint,
                "authzen.pdp_url",
            ),
            (
                "pdp_url = \"https://pdp/?x=1\"",
                AuthMode::Mint,
                "authzen.pdp_url",
            ),
            (
                "pdp_url = \"https://pdp\"",
                AuthMode::Passthrough,
                "authzen.pdp_url",
            ),
            (
                "pdp_token_env = \"T\"",
                AuthMode::Mint,
                "authzen.pdp_token_env",
            ),
            (
                "pdp_url = \"https://pdp\"\npdp_token_env = \"UNSET\"",
                AuthMode::Mint,
                "authzen.pdp_token_env",
            ),
            (
                "pdp_url = \"https://pdp\"\npdp_timeout = \"0s\"",
                AuthMode::Mint,
                "authzen.pdp_timeout",
            ),
            (
                "pdp_url = \"https://pdp\"\npdp_timeout = \"61s\"",
                AuthMode::Mint,
                "authzen.pdp_timeout",
            ),
            (
                "pdp_cache_ttl = \"25h\"",
                AuthMode::Mint,
                "authzen.pdp_cache_ttl",
            ),
            (
                "pdp_url = \"https://pdp\"\npdp_cache_ttl = \"soon\"",
                AuthMode::Mint,
                "authzen.pdp_cache_ttl",
            ),
        ] {
            let e = validate_authzen(raw(text), mode, &ok_env, &mut Vec::new()).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let spaced = env(&[("T", "a token")]);
        let e = validate_authzen(
            raw("pdp_url = \"https://pdp\"\npdp_token_env = \"T\""),
            AuthMode::Mint,
            &spaced,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.key, "authzen.pdp_token_env");
    }
}
