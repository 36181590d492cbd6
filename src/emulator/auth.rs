//! Paragon User Token verification, as Paragon describes it
//! (`paragon-api.md` §1, §2): `Authorization: Bearer <JWT>`, RS256 only,
//! signed by the project's signing key; `exp` required; `sub` names the
//! Connected User; `aud` required on Managed Sync and, wherever present,
//! `useparagon.com/{project}`; the permissions claim parsed with the same
//! [`Permissions`] model credgate uses.
//!
//! `iat` and `nbf` are not checked: Paragon documents no check of either,
//! and credgate's tests should see Paragon's leniency, not credgate's rules.
//!
//! The install flow's popup routes take the token from the `userToken`
//! query parameter instead ([`verify_query_token`]).
//!
//! Refusals are 401 with a `code` saying which check failed (Paragon's own
//! codes for these are undocumented; ours are listed on [`AuthError`]).
//! The order: signature and `exp`, then `aud`, then the permissions claim,
//! then whether `sub` is a user, so a token for the wrong project or with a
//! bad claim learns nothing about which users exist.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::state::{lock, Cred, EmulatorState};
use super::util::query_values;
use crate::paragon::permissions::{Permissions, CLAIM};

/// Tokens whose `exp` has passed are refused with no grace: the emulator
/// runs on the same clock as its tests.
const LEEWAY_SECS: u64 = 0;
/// Longer tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A verified caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user: String,
    pub claims: Value,
    /// `None`: no permissions claim, everything allowed.
    pub perms: Option<Permissions>,
}

impl Caller {
    /// Whether the token's permissions claim lets it see and use `c`.
    pub fn may_use(&self, c: &Cred) -> bool {
        self.allows(&c.integration, &c.id)
    }

    /// [`may_use`](Self::may_use) by integration type and credential id.
    pub fn allows(&self, integration: &str, id: &str) -> bool {
        self.perms
            .as_ref()
            .is_none_or(|p| p.allows(integration, id))
    }
}

/// Why a token was refused; each is a 401 with its `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// `missing_token`: no `Authorization` header, or not `Bearer`.
    Missing,
    /// `invalid_token`: malformed, badly signed, not RS256, no `exp`,
    /// two `Authorization` headers, no string `sub`.
    Invalid,
    /// `token_expired`.
    Expired,
    /// `invalid_audience`: `aud` absent on Managed Sync, or not this
    /// project's audience.
    Audience,
    /// `invalid_permissions`: a permissions claim that does not parse.
    Permissions,
    /// `unknown_user`: `sub` is no Connected User of the project.
    UnknownUser,
}

/// The bearer token of the one `Authorization` header.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::Invalid);
    }
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Invalid);
    }
    Ok(token)
}

/// Verifies the request's token. `sync` is set on Managed Sync routes,
/// where `aud` is required.
pub(crate) fn verify(
    state: &EmulatorState,
    headers: &HeaderMap,
    sync: bool,
) -> Result<Caller, AuthError> {
    verify_token(state, bearer(headers)?, sync)
}

/// The install flow's popup routes (`build-oauth`, `oauth-nonce`): the
/// token is the one `userToken` query parameter (a popup navigation sends
/// no header; absent: `missing_token`, given twice: `invalid_token`). With
/// an `Authorization` header too, both must verify and name the same user
/// (else `invalid_token`).
pub(crate) fn verify_query_token(
    state: &EmulatorState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Caller, AuthError> {
    let tokens = query_values(query, "userToken");
    let caller = match tokens.as_slice() {
        [] => return Err(AuthError::Missing),
        [t] if !t.is_empty() && t.len() <= MAX_TOKEN_BYTES => verify_token(state, t, false)?,
        _ => return Err(AuthError::Invalid),
    };
    if headers.contains_key(AUTHORIZATION) {
        let other = verify(state, headers, false)?;
        if other.user != caller.user {
            return Err(AuthError::Invalid);
        }
    }
    Ok(caller)
}

fn verify_token(state: &EmulatorState, token: &str, sync: bool) -> Result<Caller, AuthError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.algorithms = vec![Algorithm::RS256];
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = false;
    // `aud` is checked below: jsonwebtoken refuses any `aud` when no
    // audience is configured, and Paragon accepts tokens without one off
    // Managed Sync.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    let data =
        jsonwebtoken::decode::<Value>(token, &state.key, &validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            }
        })?;
    let claims = data.claims;
    match claims.get("aud") {
        None if sync => return Err(AuthError::Audience),
        None => {}
        Some(Value::String(a)) if *a == state.audience => {}
        // RFC 7519 §4.1.3: with an array, the recipient must be one of them.
        Some(Value::Array(items))
            if items.iter().all(Value::is_string)
                && items
                    .iter()
                    .any(|a| a.as_str() == Some(state.audience.as_str())) => {}
        Some(_) => return Err(AuthError::Audience),
    }
    let perms = match claims.get(CLAIM) {
        None => None,
        Some(v) => Some(Permissions::parse(v).map_err(|_| AuthError::Permissions)?),
    };
    let user = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(AuthError::Invalid),
    };
    if !lock(&state.world).users.contains_key(&user) {
        return Err(AuthError::UnknownUser);
    }
    Ok(Caller {
        user,
        claims,
        perms,
    })
}
