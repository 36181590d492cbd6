//! Upstream Paragon User Tokens (SPEC §7): RS256 with the project's signing
//! key, `sub` = the Connected User, `aud` = `paragon.audience`, short-lived,
//! and for members narrowed by the permissions claim to exactly the
//! credentials the request may touch. The caller's own token never reaches
//! Paragon in mint mode.
//!
//! Minted tokens are cached per (user, scope) and reused until 30 s before
//! they expire, so signing (an RSA private-key operation, ~1 ms) happens
//! once per user and scope per `token_ttl`, not per request.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moka::sync::Cache;
use serde::Serialize;
use serde_json::Value;

use super::permissions;
use crate::auth::unix_now;
use crate::config::{ParagonConfig, MINT_REUSE_MARGIN};
use crate::telemetry::Metrics;

/// How many minted tokens are kept.
const MINT_CACHE_SIZE: u64 = 200_000;

/// What a minted token may reach.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// An admin token: no permissions claim.
    Admin,
    /// One credential.
    One { integration: &'a str, id: &'a str },
    /// Every listed `(integration, id)` (a member's request that routes no
    /// credential). Must be sorted for equal sets to share a cache entry.
    Many(&'a [(&'a str, &'a str)]),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    aud: &'a str,
    #[serde(
        rename = "urn:useparagon:connect:permissions",
        skip_serializing_if = "Option::is_none"
    )]
    permissions: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not sign an upstream token: {0}")]
pub struct MintError(String);

pub struct Minter {
    key: EncodingKey,
    header: Header,
    audience: String,
    ttl: Duration,
    cache: Cache<String, HeaderValue>,
    metrics: Arc<Metrics>,
    /// Identifies the signing key, so a reload with the same key keeps the
    /// cache and a new key starts a new one.
    key_fingerprint: Arc<[u8]>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Minter {
    pub fn new(paragon: &ParagonConfig, metrics: Arc<Metrics>) -> Result<Minter, String> {
        let pem = paragon
            .signing_key
            .as_ref()
            .ok_or("mint mode needs paragon.signing_key_file")?;
        let key = EncodingKey::from_rsa_pem(&pem.pem)
            .map_err(|e| format!("paragon.signing_key_file: {e}"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        Ok(Minter {
            key,
            header,
            audience: paragon.audience.clone(),
            ttl: paragon.token_ttl,
            cache: Cache::builder()
                .max_capacity(MINT_CACHE_SIZE)
                .time_to_live(paragon.token_ttl.saturating_sub(MINT_REUSE_MARGIN))
                .build(),
            metrics,
            key_fingerprint: pem.pem.clone(),
        })
    }

    /// Whether a config would mint identical tokens (same key, audience, TTL).
    pub fn same_as(&self, paragon: &ParagonConfig) -> bool {
        paragon.signing_key.as_ref().map(|k| &k.pem) == Some(&self.key_fingerprint)
            && paragon.audience == self.audience
            && paragon.token_ttl == self.ttl
    }

    /// `Bearer <token>` for `user` and `scope`, from the cache when possible.
    pub fn authorization(&self, user: &str, scope: Scope<'_>) -> Result<HeaderValue, MintError> {
        let key = cache_key(user, scope);
        if let Some(v) = self.cache.get(&key) {
            self.metrics.mint_cache_hits.inc();
            return Ok(v);
        }
        let value = self.sign(user, scope)?;
        self.cache.insert(key, value.clone());
        Ok(value)
    }

    fn sign(&self, user: &str, scope: Scope<'_>) -> Result<HeaderValue, MintError> {
        let now = unix_now();
        let permissions = match scope {
            Scope::Admin => None,
            Scope::One { integration, id } => Some(permissions::claim_for([(integration, id)])),
            Scope::Many(list) => Some(permissions::claim_for(list.iter().copied())),
        };
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now + self.ttl.as_secs(),
            aud: &self.audience,
            permissions,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| MintError(e.to_string()))?;
        self.metrics.token_mints.inc();
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| MintError(e.to_string()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

/// `user NUL scope`; NUL cannot occur in a JWT claim that came through
/// credgate's verifier as a header-safe string, so keys cannot collide.
fn cache_key(user: &str, scope: Scope<'_>) -> String {
    let mut k = String::with_capacity(user.len() + 48);
    k.push_str(user);
    k.push('\0');
    match scope {
        Scope::Admin => k.push('*'),
        Scope::One { integration, id } => {
            k.push_str(integration);
            k.push('\0');
            k.push_str(id);
        }
        Scope::Many(list) => {
            k.push('[');
            for (integration, id) in list {
                k.push_str(integration);
                k.push('\0');
                k.push_str(id);
                k.push('\0');
            }
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PemFile;
    use jsonwebtoken::{DecodingKey, Validation};

    fn paragon(pem: &str) -> ParagonConfig {
        ParagonConfig {
            project_id: "proj".into(),
            connect_url: "http://127.0.0.1:1".parse().unwrap(),
            workflows_url: "http://127.0.0.1:1".parse().unwrap(),
            proxy_url: "http://127.0.0.1:1".parse().unwrap(),
            actionkit_url: "http://127.0.0.1:1".parse().unwrap(),
            sync_url: "http://127.0.0.1:1".parse().unwrap(),
            signing_key: Some(PemFile {
                path: "mem".into(),
                pem: pem.as_bytes().into(),
            }),
            public_key: None,
            token_ttl: Duration::from_secs(300),
            ca_file: None,
            audience: "useparagon.com/proj".into(),
        }
    }

    fn decode(v: &HeaderValue, public_pem: &str) -> Value {
        let token = v.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        let mut val = Validation::new(Algorithm::RS256);
        val.set_audience(&["useparagon.com/proj"]);
        jsonwebtoken::decode::<Value>(
            token,
            &DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap(),
            &val,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn member_tokens_are_narrowed_and_admin_tokens_are_not() {
        let keys = crate::keygen::rsa().unwrap();
        let m = Minter::new(&paragon(&keys.private_pem), Metrics::new()).unwrap();
        let one = m
            .authorization(
                "acme",
                Scope::One {
                    integration: "slack",
                    id: "c1",
                },
            )
            .unwrap();
        assert!(one.is_sensitive());
        let c = decode(&one, &keys.public_pem);
        assert_eq!(c["sub"], "acme");
        assert_eq!(c["aud"], "useparagon.com/proj");
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
        assert_eq!(
            c["urn:useparagon:connect:permissions"],
            serde_json::json!({"integration:slack": {"credential:c1": true}})
        );
        let admin = decode(
            &m.authorization("acme", Scope::Admin).unwrap(),
            &keys.public_pem,
        );
        assert!(admin.get("urn:useparagon:connect:permissions").is_none());
        let many = decode(
            &m.authorization("acme", Scope::Many(&[("salesforce", "a"), ("slack", "b")]))
                .unwrap(),
            &keys.public_pem,
        );
        assert_eq!(
            many["urn:useparagon:connect:permissions"],
            serde_json::json!({"integration:salesforce": {"credential:a": true}, "integration:slack": {"credential:b": true}})
        );
    }

    #[test]
    fn tokens_are_cached_per_user_and_scope() {
        let keys = crate::keygen::rsa().unwrap();
        let metrics = Metrics::new();
        let m = Minter::new(&paragon(&keys.private_pem), metrics.clone()).unwrap();
        let a = m
            .authorization(
                "u1",
                Scope::One {
                    integration: "slack",
                    id: "c1",
                },
            )
            .unwrap();
        let b = m
            .authorization(
                "u1",
                Scope::One {
                    integration: "slack",
                    id: "c1",
                },
            )
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(metrics.token_mints.get(), 1);
        assert_eq!(metrics.mint_cache_hits.get(), 1);
        let other_user = m
            .authorization(
                "u2",
                Scope::One {
                    integration: "slack",
                    id: "c1",
                },
            )
            .unwrap();
        assert_ne!(a, other_user);
        let other_cred = m
            .authorization(
                "u1",
                Scope::One {
                    integration: "slack",
                    id: "c2",
                },
            )
            .unwrap();
        assert_ne!(a, other_cred);
        assert_eq!(metrics.token_mints.get(), 3);
    }
}
