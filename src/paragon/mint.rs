//! Upstream Paragon User Tokens (contract §7): RS256 with the project's signing
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
use crate::clock::unix_now;
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

#[derive(Debug, Clone, thiserror::Error)]
#[error("could not sign an upstream token: {0}")]
pub struct MintError(String);

/// Identifies a minter, so a memo from before a key change is never used.
static MINTER_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A caller's last minted token (see `Identity::mint_memo`).
#[derive(Default)]
pub struct MintMemo(arc_swap::ArcSwapOption<Memo>);

pub struct Memo {
    minter: u64,
    /// `None` for an admin token.
    credential: Option<(Arc<str>, Box<str>)>,
    reuse_until: std::time::Instant,
    value: HeaderValue,
}

impl std::fmt::Debug for MintMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintMemo")
    }
}

/// A cloned identity starts without a memo.
impl Clone for MintMemo {
    fn clone(&self) -> Self {
        MintMemo::default()
    }
}

/// A signed token and until when it may be handed out (30 s before expiry).
#[derive(Clone)]
struct Minted {
    value: HeaderValue,
    reuse_until: std::time::Instant,
}

/// How long a token signed now is handed out: until `MINT_REUSE_MARGIN`
/// before it expires, less a random part of up to a fifth of that. Tokens
/// signed together (every member's first request after a start, a reload
/// with a new key) would otherwise all come due together, and their
/// re-signing (an RSA signature each) would stall every request behind
/// them: measured with 1,000 members (`benches/load/remint.sh`), one 10 s
/// span with p99 154 ms and a 227 ms maximum against 7.5–9.8 ms around it
/// (benches/load/ANALYSIS.md, "Where the tail goes").
fn reuse_period(ttl: Duration) -> Duration {
    let full = ttl.saturating_sub(MINT_REUSE_MARGIN);
    let r = u16::from_le_bytes(crate::keygen::random_bytes::<2>());
    full - (full / 5).mul_f64(f64::from(r) / f64::from(u16::MAX))
}

/// Each cached token leaves the cache when its own reuse period ends.
struct UntilReuseEnds;

impl moka::Expiry<MintKey, Minted> for UntilReuseEnds {
    fn expire_after_create(
        &self,
        _: &MintKey,
        minted: &Minted,
        created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(minted.reuse_until.saturating_duration_since(created_at))
    }
}

/// The minted-token cache key: user and scope as separate fields, so no
/// choice of user id can make two keys equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MintKey {
    user: Box<str>,
    scope: ScopeKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ScopeKey {
    Admin,
    One(Box<str>, Box<str>),
    Many(Box<[(Box<str>, Box<str>)]>),
}

pub struct Minter {
    epoch: u64,
    key: EncodingKey,
    header: Header,
    audience: String,
    ttl: Duration,
    /// `paragon.member_token_permissions`, merged into every member claim.
    member_extra: serde_json::Map<String, Value>,
    cache: Cache<MintKey, Minted>,
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
            epoch: MINTER_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            key,
            header,
            audience: paragon.audience.clone(),
            ttl: paragon.token_ttl,
            member_extra: paragon.member_token_permissions.clone(),
            cache: Cache::builder()
                .max_capacity(MINT_CACHE_SIZE)
                .expire_after(UntilReuseEnds)
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
            && paragon.member_token_permissions == self.member_extra
    }

    /// `Bearer <token>` for `user` and `scope`, from the cache when possible.
    pub fn authorization(&self, user: &str, scope: Scope<'_>) -> Result<HeaderValue, MintError> {
        let key = Self::key(user, scope);
        Ok(self.minted(key, user, scope)?.value)
    }

    /// From the cache, or signed once: concurrent first requests for one
    /// key wait for the one signature (moka runs one init per key) instead
    /// of each signing its own.
    fn minted(&self, key: MintKey, user: &str, scope: Scope<'_>) -> Result<Minted, MintError> {
        if let Some(m) = self.cache.get(&key) {
            self.metrics.mint_cache_hits.inc();
            return Ok(m);
        }
        let mut signed = false;
        let m = self
            .cache
            .try_get_with(key, || {
                signed = true;
                let signed_at = std::time::Instant::now();
                Ok::<_, MintError>(Minted {
                    value: self.sign(user, scope)?,
                    reuse_until: signed_at + reuse_period(self.ttl),
                })
            })
            .map_err(|e: Arc<MintError>| (*e).clone())?;
        if !signed {
            self.metrics.mint_cache_hits.inc();
        }
        Ok(m)
    }

    fn key(user: &str, scope: Scope<'_>) -> MintKey {
        MintKey {
            user: user.into(),
            scope: match scope {
                Scope::Admin => ScopeKey::Admin,
                Scope::One { integration, id } => ScopeKey::One(integration.into(), id.into()),
                Scope::Many(list) => ScopeKey::Many(
                    list.iter()
                        .map(|(i, c)| ((*i).into(), (*c).into()))
                        .collect(),
                ),
            },
        }
    }

    /// As [`authorization`](Self::authorization), first trying the caller's
    /// memo (the same user, one credential or admin, this minter, not near
    /// expiry): no key to build, no cache lookup.
    pub fn authorization_for(
        &self,
        memo: &MintMemo,
        user: &str,
        scope: Scope<'_>,
    ) -> Result<HeaderValue, MintError> {
        let wanted: Option<Option<(&str, &str)>> = match scope {
            Scope::Admin => Some(None),
            Scope::One { integration, id } => Some(Some((integration, id))),
            Scope::Many(_) => None,
        };
        let Some(wanted) = wanted else {
            return self.authorization(user, scope);
        };
        if let Some(m) = memo.0.load().as_ref() {
            let same = m.minter == self.epoch
                && match (&m.credential, wanted) {
                    (None, None) => true,
                    (Some((i, c)), Some((wi, wc))) => &**i == wi && &**c == wc,
                    _ => false,
                }
                && std::time::Instant::now() < m.reuse_until;
            if same {
                self.metrics.mint_cache_hits.inc();
                return Ok(m.value.clone());
            }
        }
        let m = self.minted(Self::key(user, scope), user, scope)?;
        memo.0.store(Some(Arc::new(Memo {
            minter: self.epoch,
            credential: wanted.map(|(i, c)| (Arc::from(i), c.into())),
            reuse_until: m.reuse_until,
            value: m.value.clone(),
        })));
        Ok(m.value)
    }

    fn sign(&self, user: &str, scope: Scope<'_>) -> Result<HeaderValue, MintError> {
        let now = unix_now();
        let mut permissions = match scope {
            Scope::Admin => None,
            Scope::One { integration, id } => Some(permissions::claim_for([(integration, id)])),
            Scope::Many(list) => Some(permissions::claim_for(list.iter().copied())),
        };
        // Permissions Paragon asks for beside the scopes (config refuses
        // scope keys here, so nothing merged can widen the scopes).
        if let Some(Value::Object(claim)) = &mut permissions {
            for (k, v) in &self.member_extra {
                claim.insert(k.clone(), v.clone());
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PemFile;
    use jsonwebtoken::{DecodingKey, Validation};

    /// Tokens signed at one moment come due over a fifth of the reuse
    /// period, never later than `MINT_REUSE_MARGIN` before they expire;
    /// the cache drops each when its own period ends.
    #[test]
    fn tokens_signed_together_come_due_apart() {
        let ttl = Duration::from_secs(300);
        let full = ttl - MINT_REUSE_MARGIN;
        let periods: Vec<Duration> = (0..1000).map(|_| reuse_period(ttl)).collect();
        let (min, max) = (periods.iter().min().unwrap(), periods.iter().max().unwrap());
        assert!(*max <= full, "{max:?}");
        assert!(*min >= full - full / 5, "{min:?}");
        assert!(
            *max - *min > full / 10,
            "1,000 tokens signed together come due within {:?}",
            *max - *min
        );
        let created = std::time::Instant::now();
        let minted = Minted {
            value: HeaderValue::from_static("Bearer x"),
            reuse_until: created + Duration::from_secs(250),
        };
        let key = Minter::key("u", Scope::Admin);
        assert_eq!(
            moka::Expiry::expire_after_create(&UntilReuseEnds, &key, &minted, created),
            Some(Duration::from_secs(250))
        );
    }

    fn paragon(pem: &str) -> ParagonConfig {
        ParagonConfig {
            project_id: "proj".into(),
            connect_url: "http://127.0.0.1:1".parse().unwrap(),
            workflows_url: "http://127.0.0.1:1".parse().unwrap(),
            proxy_url: "http://127.0.0.1:1".parse().unwrap(),
            actionkit_url: "http://127.0.0.1:1".parse().unwrap(),
            sync_url: "http://127.0.0.1:1".parse().unwrap(),
            agentos_url: "http://127.0.0.1:1".parse().unwrap(),
            member_token_permissions: Default::default(),
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
    fn the_memo_serves_the_same_scope_and_nothing_else() {
        let keys = crate::keygen::rsa().unwrap();
        let metrics = Metrics::new();
        let m = Minter::new(&paragon(&keys.private_pem), metrics.clone()).unwrap();
        let memo = MintMemo::default();
        let one = Scope::One {
            integration: "slack",
            id: "c1",
        };
        let a = m.authorization_for(&memo, "u1", one).unwrap();
        let b = m.authorization_for(&memo, "u1", one).unwrap();
        assert_eq!(a, b);
        let other = m
            .authorization_for(
                &memo,
                "u1",
                Scope::One {
                    integration: "slack",
                    id: "c2",
                },
            )
            .unwrap();
        assert_ne!(a, other, "another credential is another token");
        let admin = m.authorization_for(&memo, "u1", Scope::Admin).unwrap();
        assert!(decode(&admin, &keys.public_pem)
            .get("urn:useparagon:connect:permissions")
            .is_none());
        // A new minter (a reloaded signing key) never uses an old memo.
        let fresh = Metrics::new();
        let m2 = Minter::new(&paragon(&keys.private_pem), fresh.clone()).unwrap();
        m2.authorization_for(&memo, "u1", Scope::Admin).unwrap();
        assert_eq!(fresh.token_mints.get(), 1, "signed by the new minter");
        assert_eq!(fresh.mint_cache_hits.get(), 0);
        assert_eq!(
            metrics.mint_cache_hits.get(),
            1,
            "the first minter's memo served one repeat"
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

    /// Sixteen first requests at once for one user and credential: one
    /// signature, the same token for all, fifteen cache hits.
    #[test]
    fn concurrent_first_requests_sign_once() {
        let keys = crate::keygen::rsa().unwrap();
        let metrics = Metrics::new();
        let m = Minter::new(&paragon(&keys.private_pem), metrics.clone()).unwrap();
        let start = std::sync::Barrier::new(16);
        let tokens: Vec<HeaderValue> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        m.authorization(
                            "u1",
                            Scope::One {
                                integration: "slack",
                                id: "c1",
                            },
                        )
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|t| *t == tokens[0]));
        assert_eq!(metrics.token_mints.get(), 1);
        assert_eq!(metrics.mint_cache_hits.get(), 15);
    }
}
