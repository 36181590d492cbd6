//! `[authzen]` (contract §14): credgate as an AuthZEN decision point
//! (`serve`, `token_env`). It owns the section's file form
//! (`RawAuthzen`), its defaults, the validated [`AuthzenConfig`] and its
//! checks. The keys of the other half (`listen`, and credgate asking a
//! decision point: `pdp_url`, `pdp_token_env`, `pdp_timeout`,
//! `pdp_cache_ttl`) are read so that setting one is refused at load as not
//! implemented yet, never silently ignored (deny by default).

use serde::{Deserialize, Serialize};

use super::auth::AuthMode;
use super::common::{ConfigError, Env};

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

/// The bearer token AuthZEN callers must send; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthzenToken(String);

impl AuthzenToken {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for AuthzenToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthzenToken(***)")
    }
}

/// `[authzen]`: credgate as a decision point (contract §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzenConfig {
    /// Serve `/access/v1/*` and `/.well-known/authzen-configuration` on
    /// the admin listener.
    pub serve: bool,
    /// The env var that holds the bearer token.
    pub token_env: String,
    /// Its value (set whenever `serve` is).
    pub token: Option<AuthzenToken>,
}

impl Default for AuthzenConfig {
    fn default() -> Self {
        AuthzenConfig {
            serve: false,
            token_env: DEFAULT_AUTHZEN_TOKEN_ENV.into(),
            token: None,
        }
    }
}

pub(super) fn validate_authzen(
    raw: RawAuthzen,
    mode: AuthMode,
    env: &dyn Env,
) -> Result<AuthzenConfig, ConfigError> {
    const LATER: &str =
        "is not implemented yet (credgate as a decision point serves on the admin listener only; it does not ask one)";
    for (key, set) in [
        (
            "authzen.listen",
            raw.listen.as_deref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "authzen.pdp_url",
            raw.pdp_url.as_deref().is_some_and(|s| !s.is_empty()),
        ),
        (
            "authzen.pdp_token_env",
            raw.pdp_token_env.as_deref().is_some_and(|s| !s.is_empty()),
        ),
        ("authzen.pdp_timeout", raw.pdp_timeout.is_some()),
        ("authzen.pdp_cache_ttl", raw.pdp_cache_ttl.is_some()),
    ] {
        if set {
            return Err(ConfigError::new(key, LATER));
        }
    }
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
    Ok(AuthzenConfig {
        serve,
        token_env,
        token,
    })
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
        let c = validate_authzen(raw("serve = true\ntoken_env = \"AZ\""), AuthMode::Mint, &e)
            .expect("valid");
        assert!(c.serve);
        assert_eq!(
            c.token.as_ref().unwrap().as_bytes(),
            b"0123456789abcdef-token"
        );
        // Never printed.
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        // Off by default, no token needed.
        let off = validate_authzen(raw(""), AuthMode::Mint, &env(&[])).unwrap();
        assert_eq!(off, AuthzenConfig::default());
    }

    #[test]
    fn serve_without_a_usable_token_or_in_passthrough_is_refused() {
        let none = validate_authzen(raw("serve = true"), AuthMode::Mint, &env(&[]));
        assert_eq!(none.unwrap_err().key, "authzen.token_env");
        let short = env(&[(DEFAULT_AUTHZEN_TOKEN_ENV, "short")]);
        let e = validate_authzen(raw("serve = true"), AuthMode::Mint, &short);
        assert_eq!(e.unwrap_err().key, "authzen.token_env");
        let ok = env(&[(DEFAULT_AUTHZEN_TOKEN_ENV, "0123456789abcdef")]);
        let e = validate_authzen(raw("serve = true"), AuthMode::Passthrough, &ok);
        assert_eq!(e.unwrap_err().key, "authzen.serve");
    }

    #[test]
    fn the_unimplemented_keys_are_refused_not_ignored() {
        for (text, key) in [
            ("listen = \"127.0.0.1:9902\"", "authzen.listen"),
            ("pdp_url = \"http://127.0.0.1:1\"", "authzen.pdp_url"),
            ("pdp_token_env = \"X\"", "authzen.pdp_token_env"),
            ("pdp_timeout = \"1s\"", "authzen.pdp_timeout"),
            ("pdp_cache_ttl = \"1s\"", "authzen.pdp_cache_ttl"),
        ] {
            let e = validate_authzen(raw(text), AuthMode::Mint, &env(&[])).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains("not implemented yet"), "{e}");
        }
    }
}
