//! `[auth]` and `[[auth.keys]]`: how callers prove who they are (`mode`,
//! `issuer`, `audience`, `algorithms`, `jwks_url` and its timings, `leeway`,
//! the identity claims `user_claim`, `principal_claim`, `admin_claim`,
//! `admin_values`, `token_cache_size`, and static keys by `secret_env` or
//! `pem_file`). It owns the section's file form (`RawAuth`, `RawKey`,
//! `OneOrMany`), its defaults, the validated [`AuthConfig`] and its checks:
//! no `none` algorithm, HMAC secrets long enough, JWKS over TLS unless on
//! loopback, a key for every mint-mode caller.
//!
//! It must not know the other sections (they read [`AuthMode`] from here),
//! nor anything of credgate outside `config` (`config` imports nothing of
//! credgate's: see `src/lib.rs`). Verifying tokens is the `auth` module's;
//! it builds its keys with [`decoding_key_from_pem`], so a key that passes
//! here is one it can use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::common::{dur, read_pem, refuse_placeholder, ConfigError, Env, PemFile};

/// A key that accepts `"a"` or `["a", "b"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_refresh: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_min_refetch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leeway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_cache_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RawKey>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pem_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// `auth.algorithms` [default: ["RS256"]].
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256];
/// `auth.jwks_refresh` [default: 5m].
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// `auth.jwks_min_refetch` [default: 30s].
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// `auth.jwks_timeout`: one JWKS fetch, connect to last byte [default: 10s].
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(10);
/// `auth.leeway` [default: 60s].
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// `auth.user_claim` and `auth.principal_claim` [default: "sub"].
pub const DEFAULT_IDENTITY_CLAIM: &str = "sub";
/// `auth.token_cache_size`: verified caller tokens kept [default: 100000].
pub const DEFAULT_TOKEN_CACHE_SIZE: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Mint,
    Passthrough,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Mint => "mint",
            AuthMode::Passthrough => "passthrough",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub issuer: Option<String>,
    pub audience: Option<Vec<String>>,
    pub algorithms: Vec<Algorithm>,
    pub jwks_url: Option<url::Url>,
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    pub jwks_timeout: Duration,
    pub leeway: Duration,
    pub user_claim: String,
    pub principal_claim: String,
    pub admin_claim: Option<String>,
    pub admin_values: Vec<String>,
    pub token_cache_size: u64,
    pub keys: Vec<StaticKey>,
}

#[derive(Clone)]
pub enum KeyMaterial {
    /// An HMAC secret read from the named environment variable.
    Secret { env: String, secret: Arc<[u8]> },
    /// A public key (or certificate-less PEM) for RS/PS/ES/EdDSA.
    Pem(PemFile),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Secret { env, .. } => write!(f, "Secret(env {env})"),
            KeyMaterial::Pem(p) => p.fmt(f),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StaticKey {
    pub algorithm: Algorithm,
    pub material: KeyMaterial,
    pub kid: Option<String>,
}

/// `auth.mode` [default: mint], read before the other sections because
/// `[paragon]` and `[policy]` are checked against it.
pub(super) fn parse_auth_mode(mode: Option<&str>) -> Result<AuthMode, ConfigError> {
    match mode {
        None | Some("mint") => Ok(AuthMode::Mint),
        Some("passthrough") => Ok(AuthMode::Passthrough),
        Some(other) => Err(ConfigError::new(
            "auth.mode",
            format!("`{other}` is not \"mint\" or \"passthrough\""),
        )),
    }
}

pub(super) fn validate_auth(
    raw: RawAuth,
    base: &Path,
    env: &dyn Env,
    mode: AuthMode,
    warnings: &mut Vec<String>,
) -> Result<AuthConfig, ConfigError> {
    let algorithms = match raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    "auth.algorithms",
                    "must list at least one algorithm",
                ));
            }
            let mut out = Vec::new();
            for a in &list {
                let alg = parse_algorithm("auth.algorithms", a)?;
                if !out.contains(&alg) {
                    out.push(alg);
                }
            }
            out
        }
    };
    let jwks_url = raw
        .jwks_url
        .as_deref()
        .map(|u| {
            let parsed = url::Url::parse(u)
                .map_err(|e| ConfigError::new("auth.jwks_url", format!("`{u}`: {e}")))?;
            match parsed.scheme() {
                "https" => Ok(parsed),
                // Plain HTTP only to loopback (tests, a local sidecar IdP):
                // a JWKS over the network without TLS is a key-injection hole.
                "http" if is_loopback_host(&parsed) => Ok(parsed),
                _ => Err(ConfigError::new(
                    "auth.jwks_url",
                    "must be https:// (http:// is allowed for loopback addresses only)",
                )),
            }
        })
        .transpose()?;
    let mut keys = Vec::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let key_name = |field: &str| format!("auth.keys[{i}].{field}");
        let alg_text = k
            .algorithm
            .ok_or_else(|| ConfigError::new(key_name("algorithm"), "is required"))?;
        let algorithm = parse_algorithm(&key_name("algorithm"), &alg_text)?;
        if !algorithms.contains(&algorithm) {
            return Err(ConfigError::new(
                key_name("algorithm"),
                format!("{alg_text} is not in auth.algorithms, so this key could never verify"),
            ));
        }
        let is_hmac = matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        );
        let material = match (is_hmac, k.secret_env, k.pem_file) {
            (true, Some(var), None) => {
                let secret = env.var(&var).ok_or_else(|| {
                    ConfigError::new(
                        key_name("secret_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                // RFC 7518 §3.2: the HMAC key must be at least as long as the hash.
                let min = match algorithm {
                    Algorithm::HS384 => 48,
                    Algorithm::HS512 => 64,
                    _ => 32,
                };
                if secret.len() < min {
                    return Err(ConfigError::new(
                        key_name("secret_env"),
                        format!("the secret in {var} is shorter than {min} bytes"),
                    ));
                }
                KeyMaterial::Secret {
                    env: var,
                    secret: secret.into_bytes().into(),
                }
            }
            (true, _, _) => {
                return Err(ConfigError::new(
                    key_name("secret_env"),
                    "HS* keys take `secret_env` (and no `pem_file`)",
                ))
            }
            (false, None, Some(p)) => {
                let pem = read_pem(&key_name("pem_file"), base, &p)?;
                decoding_key_from_pem(algorithm, &pem.pem)
                    .map_err(|m| ConfigError::new(key_name("pem_file"), m))?;
                KeyMaterial::Pem(pem)
            }
            (false, _, _) => {
                return Err(ConfigError::new(
                    key_name("pem_file"),
                    "RS/PS/ES/EdDSA keys take `pem_file` (and no `secret_env`)",
                ))
            }
        };
        keys.push(StaticKey {
            algorithm,
            material,
            kid: k.kid,
        });
    }
    if mode == AuthMode::Mint && keys.is_empty() && jwks_url.is_none() {
        return Err(ConfigError::new(
            "auth.keys",
            "mint mode needs caller keys: set auth.jwks_url or at least one [[auth.keys]]",
        ));
    }
    if mode == AuthMode::Passthrough {
        if raw.issuer.is_some() || raw.audience.is_some() {
            warnings.push(
                "auth.issuer and auth.audience do not apply in passthrough mode and are ignored"
                    .into(),
            );
        }
        if !keys.is_empty() || jwks_url.is_some() {
            warnings.push(
                "auth.keys and auth.jwks_url do not apply in passthrough mode (callers' tokens are verified with paragon.public_key_file)".into(),
            );
        }
    }
    let audience = raw.audience.map(OneOrMany::into_vec);
    for a in audience.iter().flatten() {
        refuse_placeholder("auth.audience", a)?;
    }
    if let Some(i) = &raw.issuer {
        refuse_placeholder("auth.issuer", i)?;
    }
    if let Some(u) = &raw.jwks_url {
        refuse_placeholder("auth.jwks_url", u)?;
    }
    if jwks_url.is_some() && mode == AuthMode::Mint && (audience.is_none() || raw.issuer.is_none())
    {
        warnings.push(
            "auth.jwks_url without auth.audience and auth.issuer: any token your identity provider signs, for any application, is accepted; set both".into(),
        );
    }
    if let Some(a) = &audience {
        if a.is_empty() || a.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "auth.audience",
                "must be a non-empty string or list of non-empty strings",
            ));
        }
    }
    if raw.issuer.as_deref() == Some("") {
        return Err(ConfigError::new("auth.issuer", "must not be empty"));
    }
    let admin_values = raw.admin_values.unwrap_or_default();
    if raw.admin_claim.is_some() && admin_values.is_empty() {
        return Err(ConfigError::new(
            "auth.admin_values",
            "is required with auth.admin_claim (which values make a caller an admin?)",
        ));
    }
    let token_cache_size = raw.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE);
    Ok(AuthConfig {
        mode,
        issuer: raw.issuer,
        audience,
        algorithms,
        jwks_url,
        jwks_refresh: dur(
            "auth.jwks_refresh",
            raw.jwks_refresh.as_deref(),
            DEFAULT_JWKS_REFRESH,
        )?,
        jwks_min_refetch: dur(
            "auth.jwks_min_refetch",
            raw.jwks_min_refetch.as_deref(),
            DEFAULT_JWKS_MIN_REFETCH,
        )?,
        jwks_timeout: dur(
            "auth.jwks_timeout",
            raw.jwks_timeout.as_deref(),
            DEFAULT_JWKS_TIMEOUT,
        )?,
        leeway: dur("auth.leeway", raw.leeway.as_deref(), DEFAULT_LEEWAY)?,
        user_claim: claim_name("auth.user_claim", raw.user_claim, DEFAULT_IDENTITY_CLAIM)?,
        principal_claim: claim_name(
            "auth.principal_claim",
            raw.principal_claim,
            DEFAULT_IDENTITY_CLAIM,
        )?,
        admin_claim: raw
            .admin_claim
            .map(|c| claim_name("auth.admin_claim", Some(c), ""))
            .transpose()?,
        admin_values,
        token_cache_size,
        keys,
    })
}

fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn claim_name(key: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = v.unwrap_or_else(|| default.to_string());
    if name.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    Ok(name)
}

fn parse_algorithm(key: &str, text: &str) -> Result<Algorithm, ConfigError> {
    // jsonwebtoken's parser is exact-case and knows no `none`; we still say
    // so explicitly, because "none" here is an attack, not a typo.
    if text.eq_ignore_ascii_case("none") {
        return Err(ConfigError::new(
            key,
            "the `none` algorithm is never accepted",
        ));
    }
    text.parse::<Algorithm>().map_err(|_| {
        ConfigError::new(
            key,
            format!(
                "unknown algorithm `{text}` (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"
            ),
        )
    })
}

/// Parses a PEM public key for `algorithm`'s family (also what `auth`
/// builds its verification keys with, so a key that validates here is one
/// `auth` can use).
pub fn decoding_key_from_pem(
    algorithm: Algorithm,
    pem: &[u8],
) -> Result<jsonwebtoken::DecodingKey, String> {
    use jsonwebtoken::{AlgorithmFamily, DecodingKey};
    let key = match algorithm.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
        AlgorithmFamily::Hmac => {
            return Err("HMAC keys come from secret_env, not a PEM file".into())
        }
    };
    key.map_err(|e| format!("not a {algorithm:?} public key in PEM form: {e}"))
}
