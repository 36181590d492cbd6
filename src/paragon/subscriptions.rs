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
//!
//! Beside that cache, a bounded record of every subscription this replica
//! has seen, with the principal that created it through credgate (contract
//! §3, §9): a subscription keeps sending an account's events after its
//! creator loses access, so the access review lists each credential's
//! subscriptions and who made them. A creator cannot be looked up again,
//! so the record does not expire with the cache: it holds the most recent
//! [`MAX_RECORDS`] subscriptions until they are deleted through credgate,
//! in memory, per replica (lost on restart).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use tokio::sync::Semaphore;

/// How long a learned owner is kept.
pub const KNOWN_TTL: Duration = Duration::from_secs(30 * 60);
/// How long "Paragon does not know this subscription" is kept.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(10);
/// Most subscriptions remembered.
const CAPACITY: u64 = 500_000;
/// Most subscriptions in the access review's record (the oldest go first).
pub const MAX_RECORDS: usize = 500_000;

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
    record: Mutex<Record>,
}

/// One subscription as the access review lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// As Paragon wrote it.
    pub id: Box<str>,
    /// Lowercased.
    pub credential: Arc<str>,
    /// The principal whose create call through credgate made it; `None`
    /// when credgate learned it otherwise (a list, a lookup).
    pub created_by: Option<Arc<str>>,
}

/// Every subscription seen, per Connected User, in a bounded set: when
/// full, the one recorded first goes.
#[derive(Debug)]
struct Record {
    users: HashMap<Arc<str>, HashMap<Box<str>, Entry>>,
    /// Insertion order, for eviction: (user, id, seq). An entry whose
    /// subscription was forgot or recorded again is stale and skipped.
    order: VecDeque<(Arc<str>, Box<str>, u64)>,
    len: usize,
    next: u64,
    max: usize,
}

#[derive(Debug)]
struct Entry {
    credential: Arc<str>,
    created_by: Option<Arc<str>>,
    seq: u64,
}

impl Record {
    fn new(max: usize) -> Self {
        Record {
            users: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
            next: 0,
            max: max.max(1),
        }
    }

    /// Notes a subscription. A creator, once known, is kept: a later list
    /// answer (which names none) does not erase it.
    fn note(&mut self, user: &str, id: &str, credential: &str, created_by: Option<&Arc<str>>) {
        let credential: Arc<str> = Arc::from(credential.to_ascii_lowercase());
        let ids = match self.users.get_mut(user) {
            Some(ids) => ids,
            None => self.users.entry(Arc::from(user)).or_default(),
        };
        if let Some(e) = ids.get_mut(id) {
            e.credential = credential;
            if created_by.is_some() {
                e.created_by = created_by.cloned();
            }
            return;
        }
        let seq = self.next;
        self.next += 1;
        ids.insert(
            id.into(),
            Entry {
                credential,
                created_by: created_by.cloned(),
                seq,
            },
        );
        let user = self
            .users
            .get_key_value(user)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(user));
        self.order.push_back((user, id.into(), seq));
        self.len += 1;
        while self.len > self.max {
            let Some((u, i, seq)) = self.order.pop_front() else {
                break;
            };
            self.remove_if(&u, &i, Some(seq));
        }
        // Stale order entries (forgotten subscriptions) are dropped now and
        // then, so the queue stays within twice the record.
        if self.order.len() > 2 * self.len + 1024 {
            let users = &self.users;
            self.order.retain(|(u, i, seq)| {
                users
                    .get(u)
                    .and_then(|ids| ids.get(i))
                    .is_some_and(|e| e.seq == *seq)
            });
        }
    }

    /// Removes `(user, id)`; with `seq`, only the entry recorded then.
    fn remove_if(&mut self, user: &str, id: &str, seq: Option<u64>) {
        let Some(ids) = self.users.get_mut(user) else {
            return;
        };
        if ids.get(id).is_some_and(|e| seq.is_none_or(|s| s == e.seq)) {
            ids.remove(id);
            self.len -= 1;
            if ids.is_empty() {
                self.users.remove(user);
            }
        }
    }

    fn of_user(&self, user: &str) -> Vec<Seen> {
        let mut out: Vec<Seen> = self
            .users
            .get(user)
            .map(|ids| {
                ids.iter()
                    .map(|(id, e)| Seen {
                        id: id.clone(),
                        credential: e.credential.clone(),
                        created_by: e.created_by.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
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
        Self::with_max_records(max_lookups, lookup_wait, MAX_RECORDS)
    }

    /// [`Subscriptions::new`] with a record of at most `max_records`.
    pub fn with_max_records(max_lookups: usize, lookup_wait: Duration, max_records: usize) -> Self {
        Subscriptions {
            known: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(Expiry)
                .build(),
            lookups: Semaphore::new(max_lookups.max(1)),
            lookup_wait,
            record: Mutex::new(Record::new(max_records)),
        }
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        // The record holds no invariant a panicking writer could break
        // halfway that matters more than serving the review.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(user: &str, id: &str) -> Key {
        Key {
            user: Arc::from(user),
            id: id.into(),
        }
    }

    /// Records what a Paragon answer said of a subscription.
    pub async fn learn(&self, user: &str, id: &str, credential: &str) {
        self.record().note(user, id, credential, None);
        self.known
            .insert(
                Self::key(user, id),
                Some(Arc::from(credential.to_ascii_lowercase())),
            )
            .await;
    }

    /// Records a subscription that `principal` created through credgate
    /// (Paragon's answer to its create call).
    pub async fn learn_created(
        &self,
        user: &str,
        id: &str,
        credential: &str,
        principal: &Arc<str>,
    ) {
        self.record().note(user, id, credential, Some(principal));
        self.known
            .insert(
                Self::key(user, id),
                Some(Arc::from(credential.to_ascii_lowercase())),
            )
            .await;
    }

    /// Forgets a deleted subscription.
    pub async fn forget(&self, user: &str, id: &str) {
        self.record().remove_if(user, id, None);
        self.known.invalidate(&Self::key(user, id)).await;
    }

    /// Every subscription of `user` this replica has seen, by id.
    pub fn of_user(&self, user: &str) -> Vec<Seen> {
        self.record().of_user(user)
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
            let found = lookup().await?;
            if let Some(c) = &found {
                self.record().note(user, id, c, None);
            }
            Ok(found.map(|c| Arc::from(c.to_ascii_lowercase())))
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

    /// The access review's record (contract §3): the creator of a
    /// subscription made through credgate is kept when a list names it
    /// again; one learned from a list or a lookup has none; a deleted one
    /// goes; users are apart; lowercased credentials.
    #[tokio::test]
    async fn the_record_keeps_who_created_each_subscription() {
        let s = Subscriptions::new(4, Duration::from_secs(1));
        let alice: Arc<str> = Arc::from("alice");
        s.learn_created("acme", "S-1", "AAA", &alice).await;
        s.learn("acme", "S-1", "aaa").await;
        s.learn("acme", "s-2", "BBB").await;
        s.owner("acme", "s-3", || async { Ok(Some("CCC".to_string())) })
            .await
            .unwrap();
        s.owner("acme", "s-4", || async { Ok(None) }).await.unwrap();
        s.learn("globex", "g-1", "ddd").await;
        let seen = |id: &str, credential: &str, by: Option<&str>| Seen {
            id: id.into(),
            credential: Arc::from(credential),
            created_by: by.map(Arc::from),
        };
        assert_eq!(
            s.of_user("acme"),
            vec![
                seen("S-1", "aaa", Some("alice")),
                seen("s-2", "bbb", None),
                seen("s-3", "ccc", None),
            ]
        );
        s.forget("acme", "S-1").await;
        assert_eq!(s.of_user("acme").len(), 2);
        assert_eq!(s.of_user("globex"), vec![seen("g-1", "ddd", None)]);
        assert!(s.of_user("nobody").is_empty());
    }

    /// The record is bounded: beyond its size the oldest subscription
    /// goes, whatever was forgotten in between.
    #[tokio::test]
    async fn the_record_is_bounded_oldest_first() {
        let s = Subscriptions::with_max_records(4, Duration::from_secs(1), 3);
        let p: Arc<str> = Arc::from("p");
        for i in 0..3 {
            s.learn_created("u", &format!("s{i}"), "c", &p).await;
        }
        s.forget("u", "s1").await;
        s.learn("u", "s3", "c").await;
        s.learn("u", "s4", "c").await;
        let ids: Vec<Box<str>> = s.of_user("u").into_iter().map(|x| x.id).collect();
        assert_eq!(ids, vec!["s2".into(), "s3".into(), "s4".into()]);
        // Churn: each new one at the bound pushes the oldest (s2) out once;
        // the forgotten ones leave no trace in the queue for long.
        for i in 5..5000 {
            s.learn("u", &format!("s{i}"), "c").await;
            s.forget("u", &format!("s{i}")).await;
        }
        let ids: Vec<Box<str>> = s.of_user("u").into_iter().map(|x| x.id).collect();
        assert_eq!(ids, vec!["s3".into(), "s4".into()]);
        let r = s.record();
        assert_eq!(r.len, 2);
        assert!(r.order.len() <= 2 * r.len + 1024, "{}", r.order.len());
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
