//! Caller authentication (contract §4): who is calling, for which Connected User,
//! and with what authority.
//!
//! Stricter than the JWT filters of Envoy, HAProxy or Oathkeeper on purpose:
//! * the token's size is checked before any decoding (8 KiB);
//! * the header is parsed strictly (duplicate members, a non-string `kid`
//!   fail) and a `crit` header is refused; `jku`, `x5u`, `jwk` are never read;
//! * `alg` must be in `auth.algorithms` and every key verifies exactly one
//!   algorithm, so `none`, HS/RS confusion and JWK-embedded keys have no
//!   key to verify with;
//! * every claim check is turned on explicitly, and credgate re-checks the
//!   time claims' JSON types itself (a `null` `nbf` is not "absent", a
//!   string `exp` is not a date) and `iat`, which jsonwebtoken does not;
//! * verified tokens are cached by the whole token until their `exp`, and
//!   `exp` is checked again on every hit.

pub mod jwks;
pub mod keys;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::{HeaderMap, AUTHORIZATION};
use jsonwebtoken::{Algorithm, Validation};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{AuthMode, Config};
use crate::paragon::permissions::{self, Permissions};
use crate::telemetry::Metrics;
use jwks::JwksSource;
use keys::VerifyKey;

/// Tokens longer than this fail before any decoding (contract §4).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A token without `kid` is tried against at most this many keys.
const MAX_KEY_ATTEMPTS: usize = 8;

/// Why a caller was not authenticated. Messages say what was wrong and
/// never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("more than one Authorization header")]
    Repeated,
    #[error("the Authorization scheme is not Bearer")]
    NotBearer,
    #[error("the bearer token is empty")]
    Empty,
    #[error("the token is larger than 8 KiB")]
    TooLarge,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token has a crit header, which is not supported")]
    Crit,
    #[error("no key can verify this token")]
    NoKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token has no exp claim")]
    MissingExp,
    #[error("the token's {0} claim has the wrong type")]
    ClaimType(&'static str),
    #[error("the token's issuer is not accepted")]
    BadIssuer,
    #[error("the token's audience is not accepted")]
    BadAudience,
    #[error("the token has no usable {0} claim")]
    MissingIdentity(&'static str),
    #[error("the token's permissions claim is not understood")]
    BadPermissions,
    #[error("signing keys are not loaded yet")]
    KeysUnavailable,
    /// The install flow's `userToken` query parameter (contract §13) is
    /// given twice or is another token than `Authorization`'s.
    #[error("the userToken query parameter {0}")]
    UserToken(&'static str),
}

impl AuthError {
    /// A stable name of why the token was refused, for the audit record.
    pub fn cause(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Empty => "missing",
            AuthError::Repeated => "repeated_authorization",
            AuthError::NotBearer => "not_bearer",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::Crit => "crit_header",
            AuthError::NoKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::MissingExp => "missing_exp",
            AuthError::ClaimType(_) => "claim_type",
            AuthError::BadIssuer => "wrong_issuer",
            AuthError::BadAudience => "wrong_audience",
            AuthError::MissingIdentity(_) => "missing_identity",
            AuthError::BadPermissions => "bad_permissions",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::UserToken(_) => "user_token",
        }
    }
}

/// The string claim `claim` of the bearer token's payload, NOT VERIFIED:
/// what a refused caller says it is, for the audit record only. At most
/// 128 characters; `None` when there is no readable claim.
pub fn unverified_claim(headers: &HeaderMap, claim: &str) -> Option<String> {
    let token = bearer(headers).ok()?;
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let s = v.get(claim)?.as_str()?;
    Some(s.chars().take(128).collect())
}

/// What the caller may do on its Connected User's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Every credential of the user.
    Admin,
    /// Mint mode: what policy grants; `claimed` holds the lowercased ids of
    /// `policy.credentials_claim`.
    Member { claimed: Box<[Box<str>]> },
    /// Passthrough mode with a permissions claim: the claim is the policy.
    Scoped(Arc<Permissions>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Paragon Connected User (upstream `sub`).
    pub user: Arc<str>,
    /// The calling person or service.
    pub principal: Arc<str>,
    pub role: Role,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// Passthrough: the permissions claim as canonical JSON (Paragon
    /// narrows `/sdk/me` by it, so the credential cache keys on it too).
    pub permissions_key: Option<Arc<str>>,
    /// The verified token's claims, kept only when a policy rule reads
    /// `caller.claims` (contract §5b).
    pub claims: Option<Arc<Map<String, Value>>>,
    /// The agent acting for the principal: the `sub` of the token's `act`
    /// claim (RFC 8693 §4.1, delegation), recorded in the audit as `actor`
    /// (contract §12). Never a basis for a decision.
    pub actor: Option<Arc<str>>,
    /// What the layers above remember of this caller (the gateway keeps
    /// its last minted token and credential list there). The identity lives
    /// as long as its token in the verified-token cache, so a caller that
    /// keeps using one credential skips those lookups; auth never reads it.
    pub memo: Slot,
}

/// An opaque per-caller slot, filled on first use with one value of the
/// type its user asks for. A cloned identity starts with an empty slot.
#[derive(Default)]
pub struct Slot(std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>);

impl Slot {
    /// The slot's value, made with `T::default()` the first time.
    ///
    /// # Panics
    /// If the slot was first filled with another type: one caller memo
    /// type per program, a bug otherwise.
    pub fn get<T: std::any::Any + Send + Sync + Default>(&self) -> &T {
        self.0
            .get_or_init(|| Box::new(T::default()))
            .downcast_ref::<T>()
            .expect("an identity's slot holds one type")
    }
}

impl Clone for Slot {
    fn clone(&self) -> Self {
        Slot::default()
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Identity {
    pub fn new(
        user: Arc<str>,
        principal: Arc<str>,
        role: Role,
        exp: u64,
        permissions_key: Option<Arc<str>>,
    ) -> Identity {
        Identity {
            user,
            principal,
            role,
            exp,
            permissions_key,
            claims: None,
            actor: None,
            memo: Slot::default(),
        }
    }
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// A member of `user` with no claimed credentials whose token never
    /// expires: the caller unit tests elsewhere need.
    #[cfg(test)]
    pub(crate) fn test_member(user: &str, principal: &str) -> Identity {
        Identity::new(
            user.into(),
            principal.into(),
            Role::Member {
                claimed: Box::default(),
            },
            u64::MAX,
            None,
        )
    }
}

struct Cached {
    identity: Arc<Identity>,
    /// The JWKS generation when it was verified; a refresh that removed a
    /// key bumps it and so invalidates every cached identity.
    generation: u64,
}

/// Lets moka expire each cached identity when its token expires.
struct UntilExp {
    leeway: u64,
}

impl moka::Expiry<String, Arc<Cached>> for UntilExp {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Arc<Cached>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            (v.identity.exp.saturating_add(self.leeway)).saturating_sub(unix_now()),
        ))
    }
}

#[derive(Debug, Clone)]
struct IdentityRules {
    user_claim: String,
    principal_claim: String,
    admin_claim: Option<String>,
    admin_values: Vec<String>,
    credentials_claim: Option<String>,
    /// Some rule reads `caller.claims`: identities keep their claims.
    keep_claims: bool,
}

/// Verifies callers' tokens for one config generation.
pub struct Authenticator {
    mode: AuthMode,
    algorithms: Vec<Algorithm>,
    static_keys: Vec<VerifyKey>,
    jwks: Option<Arc<JwksSource>>,
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
    /// `iss` / `aud` are validated: credgate re-checks their JSON type,
    /// because jsonwebtoken accepts an `iss` array that merely contains
    /// ours and skips an `aud` it cannot parse unless `aud` is required.
    checks_iss: bool,
    checks_aud: bool,
    rules: IdentityRules,
    cache: Cache<String, Arc<Cached>, TailHash>,
    metrics: Arc<Metrics>,
}

pub use crate::clock::unix_now;

impl Authenticator {
    /// Builds the authenticator for `config`. `jwks` is the key source for
    /// `auth.jwks_url` (kept across reloads when its settings are unchanged).
    pub fn new(
        config: &Config,
        jwks: Option<Arc<JwksSource>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let a = &config.auth;
        let leeway = a.leeway.as_secs();
        let (algorithms, static_keys) = match a.mode {
            AuthMode::Mint => (
                a.algorithms.clone(),
                a.keys
                    .iter()
                    .map(keys::from_static)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            AuthMode::Passthrough => {
                let pem = config
                    .paragon
                    .public_key
                    .as_ref()
                    .ok_or("passthrough mode needs paragon.public_key_file")?;
                let key = keys::decoding_key_from_pem(Algorithm::RS256, &pem.pem)?;
                (
                    vec![Algorithm::RS256],
                    vec![VerifyKey {
                        kid: None,
                        algorithm: Algorithm::RS256,
                        key,
                        fingerprint: format!("file:{}", pem.path.display()),
                    }],
                )
            }
        };
        let jwks = if a.mode == AuthMode::Mint { jwks } else { None };
        let validations = algorithms
            .iter()
            .map(|alg| (*alg, validation_for(*alg, config)))
            .collect();
        let cache = Cache::builder()
            .max_capacity(a.token_cache_size)
            .expire_after(UntilExp { leeway })
            .build_with_hasher(TailHash::default());
        Ok(Authenticator {
            mode: a.mode,
            algorithms,
            static_keys,
            jwks,
            validations,
            leeway,
            checks_iss: a.mode == AuthMode::Mint && a.issuer.is_some(),
            checks_aud: a.mode == AuthMode::Passthrough || a.audience.is_some(),
            rules: IdentityRules {
                user_claim: a.user_claim.clone(),
                principal_claim: a.principal_claim.clone(),
                admin_claim: a.admin_claim.clone(),
                admin_values: a.admin_values.clone(),
                credentials_claim: config.policy.credentials_claim.clone(),
                keep_claims: config.policy.rules.uses_claims,
            },
            cache,
            metrics,
        })
    }

    /// Whether every key source has loaded (readiness).
    pub fn ready(&self) -> bool {
        self.jwks.as_ref().is_none_or(|j| j.is_loaded())
    }

    pub fn jwks(&self) -> Option<&Arc<JwksSource>> {
        self.jwks.as_ref()
    }

    /// The verification keys in use, for the dashboard: (kid, algorithm,
    /// where from, fetched at in ms for a JWKS key).
    pub fn keys_in_use(&self) -> Vec<(Option<String>, Algorithm, &'static str, Option<i64>)> {
        let mut keys: Vec<_> = self
            .static_keys
            .iter()
            .map(|k| (k.kid.clone(), k.algorithm, "file", None))
            .collect();
        if let Some(j) = &self.jwks {
            let fetched = j.fetched_ms();
            keys.extend(
                j.keys()
                    .iter()
                    .map(|k| (k.kid.clone(), k.algorithm, "jwks", fetched)),
            );
        }
        keys
    }

    /// Verified tokens held in the cache, exact: moka's count trails
    /// inserts and evictions until its pending work is run (the
    /// dashboard's caches row read 0 beside hits).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn generation(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |j| j.generation())
    }

    /// Authenticates a request by its `Authorization` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        let token = bearer(headers)?;
        self.authenticate_token(token).await
    }

    /// Authenticates a bare token (after [`bearer`]).
    pub async fn authenticate_token(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let now = unix_now();
        if let Some(hit) = self.cache.get(token) {
            if hit.generation == self.generation()
                && now <= hit.identity.exp.saturating_add(self.leeway)
            {
                self.metrics.verified_token_cache_hits.inc();
                return Ok(hit.identity.clone());
            }
        }
        if !token_chars_ok(token) {
            return Err(AuthError::Malformed("characters outside base64url"));
        }
        self.metrics.verified_token_cache_misses.inc();
        let generation = self.generation();
        let identity = Arc::new(Box::pin(self.verify(token, now)).await?);
        self.cache.insert(
            token.to_string(),
            Arc::new(Cached {
                identity: identity.clone(),
                generation,
            }),
        );
        Ok(identity)
    }

    /// Full verification, no cache.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let header = parse_header(token)?;
        let alg = self
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_name(*a) == Some(header.alg.as_str()))
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let validation = &self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .expect("a validation per allowed algorithm")
            .1;

        let mut jwks_keys = self.jwks.as_ref().map(|j| j.keys());
        if let (Some(kid), Some(source)) = (header.kid.as_deref(), &self.jwks) {
            let known = self
                .static_keys
                .iter()
                .chain(jwks_keys.iter().flat_map(|k| k.iter()))
                .any(|k| k.kid.as_deref() == Some(kid));
            if !known {
                source.refetch_for_unknown_kid().await;
                jwks_keys = Some(source.keys());
            }
        }
        if self.jwks.as_ref().is_some_and(|j| !j.is_loaded()) && self.static_keys.is_empty() {
            return Err(AuthError::KeysUnavailable);
        }
        let candidates = self
            .static_keys
            .iter()
            .chain(jwks_keys.iter().flat_map(|k| k.iter()))
            .filter(|k| k.algorithm == alg)
            .filter(|k| match (&k.kid, &header.kid) {
                (None, _) => true,
                (Some(key_kid), Some(token_kid)) => key_kid == token_kid,
                (Some(_), None) => true,
            })
            .take(MAX_KEY_ATTEMPTS);

        let mut tried = false;
        for key in candidates {
            tried = true;
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return self.identity(data.claims, now),
                Err(e) => match map_jwt_error(&e) {
                    // Another key may verify it.
                    AuthError::BadSignature => continue,
                    other => return Err(other),
                },
            }
        }
        Err(if tried {
            AuthError::BadSignature
        } else {
            AuthError::NoKey
        })
    }

    fn identity(&self, claims: Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
        let exp = self.registered_claims(&claims, now)?;
        self.identify(claims, exp)
    }

    /// The registered claims of a token (RFC 7519 §4.1): its times, and the
    /// shapes of `iss` and `aud` where they are checked. Returns `exp`.
    fn registered_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<u64, AuthError> {
        let exp = match claims.get("exp") {
            None => return Err(AuthError::MissingExp),
            Some(v) => numeric_date(v).ok_or(AuthError::ClaimType("exp"))?,
        };
        if exp.saturating_add(self.leeway) < now {
            return Err(AuthError::Expired);
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v).ok_or(AuthError::ClaimType("nbf"))?;
            if nbf > now.saturating_add(self.leeway) {
                return Err(AuthError::NotYetValid);
            }
        }
        if let Some(v) = claims.get("iat") {
            let iat = numeric_date(v).ok_or(AuthError::ClaimType("iat"))?;
            if iat > now.saturating_add(self.leeway) {
                return Err(AuthError::IssuedInFuture);
            }
        }
        // RFC 7519 §4.1.1: `iss` is one StringOrURI.
        if self.checks_iss && !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(AuthError::BadIssuer);
        }
        // RFC 7519 §4.1.3: `aud` is a string or an array of strings; when
        // present in any other shape it names no audience we can accept.
        if self.checks_aud {
            match claims.get("aud") {
                None | Some(Value::String(_)) => {}
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                Some(_) => return Err(AuthError::BadAudience),
            }
        }
        Ok(exp)
    }

    /// Who the claims say the caller is, by this config's claim rules.
    fn identify(&self, claims: Map<String, Value>, exp: u64) -> Result<Identity, AuthError> {
        let actor = actor(&claims)?;
        let mut identity = self.identify_caller(claims, exp)?;
        identity.actor = actor;
        Ok(identity)
    }

    /// The user, principal and role the claims give, by this config's
    /// claim rules.
    fn identify_caller(&self, claims: Map<String, Value>, exp: u64) -> Result<Identity, AuthError> {
        match self.mode {
            AuthMode::Mint => {
                let user = string_claim(&claims, &self.rules.user_claim)
                    .ok_or(AuthError::MissingIdentity("user"))?;
                let principal = string_claim(&claims, &self.rules.principal_claim)
                    .ok_or(AuthError::MissingIdentity("principal"))?;
                let admin =
                    self.rules
                        .admin_claim
                        .as_deref()
                        .is_some_and(|c| match claims.get(c) {
                            Some(Value::String(s)) => {
                                self.rules.admin_values.iter().any(|v| v == s)
                            }
                            Some(Value::Array(items)) => items
                                .iter()
                                .filter_map(Value::as_str)
                                .any(|s| self.rules.admin_values.iter().any(|v| v == s)),
                            _ => false,
                        });
                let role = if admin {
                    Role::Admin
                } else {
                    let claimed = match self
                        .rules
                        .credentials_claim
                        .as_deref()
                        .and_then(|c| claims.get(c))
                    {
                        None => Box::default(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|i| i.as_str().map(|s| s.to_ascii_lowercase().into_boxed_str()))
                            .collect::<Option<Box<[_]>>>()
                            .ok_or(AuthError::ClaimType("credentials"))?,
                        Some(_) => return Err(AuthError::ClaimType("credentials")),
                    };
                    Role::Member { claimed }
                };
                let mut identity = Identity::new(user.into(), principal.into(), role, exp, None);
                if self.rules.keep_claims {
                    identity.claims = Some(Arc::new(claims));
                }
                Ok(identity)
            }
            AuthMode::Passthrough => {
                let sub = string_claim(&claims, "sub").ok_or(AuthError::MissingIdentity("sub"))?;
                let sub: Arc<str> = sub.into();
                let (role, key) = match claims.get(permissions::CLAIM) {
                    None => (Role::Admin, None),
                    Some(v) => {
                        let perms = Permissions::parse(v).map_err(|_| AuthError::BadPermissions)?;
                        (
                            Role::Scoped(Arc::new(perms)),
                            Some(Arc::from(v.to_string())),
                        )
                    }
                };
                let mut identity = Identity::new(sub.clone(), sub, role, exp, key);
                if self.rules.keep_claims {
                    identity.claims = Some(Arc::new(claims));
                }
                Ok(identity)
            }
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller a what-if identity stands for (`/admin/decide`, contract
    /// §9): `claims` with the Connected User, the principal and the admin
    /// claim written where this config reads them, then judged by the same
    /// rules as a verified token's claims (no signature, no cache). In
    /// passthrough mode `user` is `sub`, and `admin` means no permissions
    /// claim. `exp` defaults to five minutes from now.
    pub fn what_if(
        &self,
        user: &str,
        principal: Option<&str>,
        admin: bool,
        mut claims: Map<String, Value>,
    ) -> Result<Identity, String> {
        // A what-if caller has no token: only the claims that say who it is
        // are judged, never a token's own (`exp`, `iss`, `aud`: contract §9).
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .unwrap_or_else(|| unix_now() + 300);
        match self.mode {
            AuthMode::Mint => {
                let principal = principal.ok_or("identity.principal is required in mint mode")?;
                claims.insert(self.rules.user_claim.clone(), Value::from(user));
                claims.insert(self.rules.principal_claim.clone(), Value::from(principal));
                match (&self.rules.admin_claim, admin) {
                    (Some(c), true) => {
                        let value = self.rules.admin_values.first().ok_or("no auth.admin_values")?;
                        claims.insert(c.clone(), Value::from(value.as_str()));
                    }
                    (Some(c), false) => {
                        claims.remove(c);
                    }
                    (None, true) => {
                        return Err("identity.admin: this config has no auth.admin_claim, so nobody is an admin".into())
                    }
                    (None, false) => {}
                }
            }
            AuthMode::Passthrough => {
                claims.insert("sub".into(), Value::from(user));
                if admin {
                    claims.remove(permissions::CLAIM);
                } else if !claims.contains_key(permissions::CLAIM) {
                    return Err(format!(
                        "identity: a non-admin caller in passthrough mode needs claims.\"{}\"",
                        permissions::CLAIM
                    ));
                }
            }
        }
        self.identify(claims, exp).map_err(|e| e.to_string())
    }
}

/// A time claim: a JSON number that is a non-negative NumericDate below
/// 2^63. Strings, null, arrays, negatives, NaN-like and overflowing floats
/// (`1e30`) are the wrong type.
fn numeric_date(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    if let Some(u) = n.as_u64() {
        return (u < (1 << 63)).then_some(u);
    }
    let f = n.as_f64()?;
    (f.is_finite() && (0.0..9.2e18).contains(&f)).then_some(f as u64)
}

/// The acting party of a delegation token (RFC 8693 §4.1): `act.sub`, the
/// current actor (an `act` nested inside it names earlier ones). A token
/// that says it is delegated but whose actor cannot be read fails (fail
/// closed: its calls would be audited as the principal's own).
fn actor(claims: &Map<String, Value>) -> Result<Option<Arc<str>>, AuthError> {
    match claims.get("act") {
        None => Ok(None),
        Some(Value::Object(act)) => match act.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(Arc::from(s.as_str()))),
            _ => Err(AuthError::ClaimType("act")),
        },
        Some(_) => Err(AuthError::ClaimType("act")),
    }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn alg_name(a: Algorithm) -> Option<&'static str> {
    Some(match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        // Algorithms added to jsonwebtoken later are not accepted until
        // credgate names them here.
        _ => return None,
    })
}

fn validation_for(alg: Algorithm, config: &Config) -> Validation {
    let a = &config.auth;
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.leeway = a.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.reject_tokens_expiring_in_less_than = 0;
    v.sub = None;
    // `exp` is required by `Authenticator::identity`, not here:
    // jsonwebtoken reports a present `exp` of the wrong type (a string,
    // null, a negative or huge number) as missing, and credgate reports it
    // as the type error it is. jsonwebtoken still rejects such an `exp`
    // (`InvalidClaimFormat`) and still checks a numeric one.
    let mut required: HashSet<String> = HashSet::new();
    match a.mode {
        AuthMode::Mint => {
            v.iss = a.issuer.as_ref().map(|i| HashSet::from([i.clone()]));
            if a.issuer.is_some() {
                required.insert("iss".into());
            }
            match &a.audience {
                Some(aud) => {
                    v.aud = Some(aud.iter().cloned().collect());
                    v.validate_aud = true;
                    required.insert("aud".into());
                }
                None => {
                    v.aud = None;
                    v.validate_aud = false;
                }
            }
        }
        AuthMode::Passthrough => {
            // A Paragon user token may carry `aud`; when it does it must be
            // this project's.
            v.iss = None;
            v.aud = Some(HashSet::from([config.paragon.audience.clone()]));
            v.validate_aud = true;
        }
    }
    v.required_spec_claims = required;
    v
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::BadIssuer,
        K::InvalidAudience => AuthError::BadAudience,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            AuthError::AlgorithmNotAllowed
        }
        K::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => AuthError::MissingExp,
            "iss" => AuthError::BadIssuer,
            "aud" => AuthError::BadAudience,
            _ => AuthError::Malformed("a required claim is missing"),
        },
        K::InvalidClaimFormat(c) => match c.as_str() {
            "exp" => AuthError::ClaimType("exp"),
            "nbf" => AuthError::ClaimType("nbf"),
            _ => AuthError::ClaimType("time"),
        },
        K::Base64(_) => AuthError::Malformed("bad base64"),
        K::Json(_) => AuthError::Malformed("bad JSON"),
        K::Utf8(_) => AuthError::Malformed("bad UTF-8"),
        K::InvalidToken => AuthError::Malformed("not a JWT"),
        // A key that cannot be used for this token (wrong type, bad
        // encoding): as far as the caller is concerned, it did not verify.
        _ => AuthError::BadSignature,
    }
}

/// The bearer token of a request: exactly one `Authorization` header,
/// scheme `Bearer` (any case, RFC 9110 §11.1), a token of JWT characters.
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        return Err(AuthError::Repeated);
    }
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("not visible ASCII"))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Empty);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    Ok(token)
}

/// Base64url and `.` only. Checked before verification; a token in the
/// verified-token cache passed it already, so cache hits skip the scan.
fn token_chars_ok(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Hashes a cached token by its last 32 bytes (with a random key): part of
/// the signature, which is unique per token, so hashing the whole ~1 KB
/// token on every request buys nothing. Only verified tokens are inserted,
/// and equality still compares whole tokens, so a crafted token cannot hit
/// another's entry; the random key keeps bucket placement unpredictable.
#[derive(Clone)]
struct TailHash([u64; 4]);

impl Default for TailHash {
    fn default() -> Self {
        let b = crate::keygen::random_bytes::<32>();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        TailHash([word(0), word(1), word(2), word(3)])
    }
}

struct TailHasher {
    key: [u64; 4],
    tail: [u8; 32],
    len: usize,
}

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher {
            key: self.0,
            tail: [0; 32],
            len: 0,
        }
    }
}

/// The 128-bit product of `a` and `b`, its halves folded together: the
/// mixing step of keyed multiply hashes (foldhash, wyhash).
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() >= 32 {
            self.tail.copy_from_slice(&bytes[bytes.len() - 32..]);
        } else {
            self.tail.copy_within(bytes.len().., 0);
            self.tail[32 - bytes.len()..].copy_from_slice(bytes);
        }
        self.len += bytes.len();
    }

    /// A keyed multiply hash of the tail and the length. Not a MAC, and it
    /// need not be: equality decides a hit, and only verified tokens enter
    /// the cache, so colliding entries cannot be planted. The secret key
    /// keeps bucket placement unpredictable.
    fn finish(&self) -> u64 {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.tail[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let k = self.key;
        let a = folded_multiply(word(0) ^ k[0], word(1) ^ k[1]);
        let b = folded_multiply(word(2) ^ k[2], word(3) ^ k[3]);
        folded_multiply(a ^ self.len as u64, b ^ k[0].rotate_left(29))
    }
}

/// The JOSE header fields credgate reads. Derived deserialization refuses
/// a duplicated member, so `{"alg":"RS256","alg":"none"}` cannot be read
/// one way here and another way elsewhere.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(true)
}

fn parse_header(token: &str) -> Result<JoseHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a signed JWT has three segments"));
    };
    if h.is_empty() || p.is_empty() {
        return Err(AuthError::Malformed("empty segment"));
    }
    if s.is_empty() {
        // `alg: none` tokens end in an empty signature; nothing here
        // verifies without one.
        return Err(AuthError::AlgorithmNotAllowed);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| AuthError::Malformed("bad base64 in the header"))?;
    let header: JoseHeader =
        serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed("bad JSON in the header"))?;
    if header.crit {
        return Err(AuthError::Crit);
    }
    Ok(header)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tail_hash_tests {
    use super::TailHash;
    use std::hash::BuildHasher;

    #[test]
    fn equal_tokens_hash_equal_and_tails_decide() {
        let h = TailHash::default();
        let a = "x".repeat(900) + "signature-part-aaaaaaaaaaaaaaaaaaaa";
        assert_eq!(h.hash_one(a.as_str()), h.hash_one(a.clone().as_str()));
        let b = "y".repeat(900) + "signature-part-aaaaaaaaaaaaaaaaaaaa";
        let c = "x".repeat(900) + "signature-part-aaaaaaaaaaaaaaaaaaab";
        assert_ne!(h.hash_one(a.as_str()), h.hash_one(c.as_str()));
        // Same tail, different length: still different.
        assert_ne!(h.hash_one(a.as_str()), h.hash_one(&b[1..]));
        assert_eq!(h.hash_one("short"), h.hash_one("short"));
        // Another key hashes the same token elsewhere.
        let other = TailHash::default();
        assert_ne!(h.hash_one(a.as_str()), other.hash_one(a.as_str()));
        // Every byte of the tail counts.
        let base = "t".repeat(64);
        let mut seen = std::collections::HashSet::new();
        for i in 32..64 {
            let mut v = base.clone().into_bytes();
            v[i] = b'u';
            assert!(seen.insert(h.hash_one(String::from_utf8(v).unwrap().as_str())));
        }
    }
}
