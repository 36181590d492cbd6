//! ActionKit trigger-subscription ownership (contract §3): a subscription
//! belongs to one credential, and a member may reach it
//! (`/trigger-subscriptions/{id}[/...]`) only when that credential is
//! permitted. Unlike syncs, Paragon's subscription objects state their
//! `credentialId`, so what credgate does not know it can ask Paragon.
//!
//! * Learned from the create and list answers credgate forwards.
//! * Otherwise looked up (the lookup itself is the caller's: a `GET` of the
//!   subscription with an unrestricted token) before deciding; concurrent
//!   lookups of one subscription are one request, lookups across
//!   subscriptions are bounded by a semaphore, and "Paragon does not know
//!   it" is remembered for [`UNKNOWN_TTL`], so probing ids cannot turn into
//!   a storm of lookups.
//! * Keyed by (Connected User, subscription id exactly as Paragon wrote
//!   it): a subscription of one user is never found for another.
//!
//! A subscription's credential never changes (Paragon's API has no call
//! that moves one), so a known owner is kept for [`KNOWN_TTL`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use tokio::sync::Semaphore;

/// How long a learned owner is kept.
pub const KNOWN_TTL: Duration = Duration::from_secs(30 * 60);
/// How long "Paragon does not know this subscription" is kept.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(10);
/// Most subscriptions remembered.
const CAPACITY: u64 = 500_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    user: Arc<str>,
    id: Box<str>,
}

/// What credgate knows of one subscription: its credential (lowercased),
/// or that Paragon has none by that id for this user.
type Known = Option<Arc<str>>;

/// Why a subscription's owner could not be established (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("Paragon could not be asked for the subscription: {0}")]
    Upstream(String),
    #[error("Paragon answered the subscription lookup with status {0}")]
    Status(u16),
    #[error("Paragon's subscription answer does not name a credential")]
    Malformed,
    #[error("too many subscription lookups in flight")]
    Busy,
    /// A dry run (`/admin/decide`) asks Paragon nothing but `/sdk/me`.
    #[error("the subscription's credential is not known to this replica, and a dry run does not ask Paragon")]
    NotAsked,
}

struct Expiry;

impl moka::Expiry<Key, Known> for Expiry {
    fn expire_after_create(&self, _: &Key, value: &Known, _: Instant) -> Option<Duration> {
        Some(if value.is_some() {
            KNOWN_TTL
        } else {
            UNKNOWN_TTL
        })
    }

    fn expire_after_update(
        &self,
        key: &Key,
        value: &Known,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

pub struct Subscriptions {
    known: Cache<Key, Known>,
    lookups: Semaphore,
    lookup_wait: Duration,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("known", &self.known.entry_count())
            .finish()
    }
}

impl Subscriptions {
    /// `max_lookups` concurrent lookups; a lookup waits at most
    /// `lookup_wait` for a slot (then 503).
    pub fn new(max_lookups: usize, lookup_wait: Duration) -> Self {
        Subscriptions {
            known: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(Expiry)
                .build(),
            lookups: Semaphore::new(max_lookups.max(1)),
            lookup_wait,
        }
    }

    fn key(user: &str, id: &str) -> Key {
        Key {
            user: Arc::from(user),
            id: id.into(),
        }
    }

    /// Records what a Paragon answer said of a subscription.
    pub async fn learn(&self, user: &str, id: &str, credential: &str) {
        self.known
            .insert(
                Self::key(user, id),
                Some(Arc::from(credential.to_ascii_lowercase())),
            )
            .await;
    }

    /// Forgets a deleted subscription.
    pub async fn forget(&self, user: &str, id: &str) {
        self.known.invalidate(&Self::key(user, id)).await;
    }

    /// The credential of subscription `id` of `user`: known, or looked up
    /// with `lookup` (`Ok(None)`: Paragon has no such subscription for this
    /// user). A failed lookup is not remembered.
    pub async fn owner<F, Fut>(
        &self,
        user: &str,
        id: &str,
        lookup: F,
    ) -> Result<Option<Arc<str>>, LookupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, LookupError>>,
    {
        let key = Self::key(user, id);
        let init = async {
            let _slot = tokio::time::timeout(self.lookup_wait, self.lookups.acquire())
                .await
                .map_err(|_| LookupError::Busy)?
                .map_err(|_| LookupError::Busy)?;
            Ok(lookup().await?.map(|c| Arc::from(c.to_ascii_lowercase())))
        };
        self.known
            .try_get_with(key, init)
            .await
            .map_err(|e: Arc<LookupError>| (*e).clone())
    }
}

/// `(id, credentialId)` of each subscription object in a Paragon answer:
/// one object, a list, or `{"data": [...]}`.
pub fn stated_owners(body: &serde_json::Value) -> Vec<(&str, &str)> {
    use serde_json::Value;
    fn one(v: &Value) -> Option<(&str, &str)> {
        Some((v.get("id")?.as_str()?, v.get("credentialId")?.as_str()?))
    }
    match body {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(o) => match o.get("data") {
            Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
            _ => one(body).into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn owners_are_per_user_and_lookups_are_remembered() {
        let s = Subscriptions::new(4, Duration::from_secs(1));
        s.learn("acme", "Sub-1", "AAA").await;
        let asked = AtomicUsize::new(0);
        let lookup = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        };
        assert_eq!(
            s.owner("acme", "Sub-1", lookup).await.unwrap().as_deref(),
            Some("aaa")
        );
        assert_eq!(asked.load(Ordering::SeqCst), 0, "known: no lookup");
        // Another user, or another spelling of the id, is another subscription.
        assert_eq!(s.owner("other", "Sub-1", lookup).await.unwrap(), None);
        assert_eq!(s.owner("acme", "sub-1", lookup).await.unwrap(), None);
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // Unknown answers are remembered too: no second lookup.
        assert_eq!(s.owner("other", "Sub-1", lookup).await.unwrap(), None);
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        s.forget("acme", "Sub-1").await;
        assert_eq!(s.owner("acme", "Sub-1", lookup).await.unwrap(), None);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failed_lookups_are_not_remembered_and_concurrent_ones_coalesce() {
        let s = Arc::new(Subscriptions::new(4, Duration::from_secs(1)));
        let err = s
            .owner("acme", "x", || async { Err(LookupError::Status(500)) })
            .await;
        assert_eq!(err, Err(LookupError::Status(500)));
        let asked = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, asked) = (s.clone(), asked.clone());
            tasks.push(tokio::spawn(async move {
                s.owner("acme", "x", || async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Some("C1".to_string()))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("c1"));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one lookup for all eight");
    }

    #[tokio::test]
    async fn lookups_beyond_the_bound_wait_then_fail_busy() {
        let s = Arc::new(Subscriptions::new(1, Duration::from_millis(50)));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (s1, g1) = (s.clone(), gate.clone());
        let held = tokio::spawn(async move {
            s1.owner("acme", "a", || async move {
                g1.notified().await;
                Ok(None)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let busy = s.owner("acme", "b", || async { Ok(None) }).await;
        assert_eq!(busy, Err(LookupError::Busy));
        gate.notify_one();
        assert_eq!(held.await.unwrap(), Ok(None));
    }

    #[test]
    fn owners_are_read_from_every_answer_shape() {
        let sub = json!({"id": "s1", "credentialId": "c1", "webhookOverride": {}});
        assert_eq!(stated_owners(&sub), vec![("s1", "c1")]);
        assert_eq!(
            stated_owners(&json!([sub, {"id": "s2"}])),
            vec![("s1", "c1")]
        );
        assert_eq!(
            stated_owners(&json!({"data": [{"id": "s3", "credentialId": "c3"}]})),
            vec![("s3", "c3")]
        );
        assert!(stated_owners(&json!("s1")).is_empty());
    }
}
