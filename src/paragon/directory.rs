//! The credential directory (contract §6): each Connected User's credential list
//! from `GET /sdk/me`, cached per user.
//!
//! * Fresh for `cache.credentials_ttl`; then reloaded on the next request.
//!   Entries live `credentials_ttl + stale_if_error` (moka drops expired
//!   entries, so the fetch time is kept in the entry), and a stale list is
//!   used only when the reload fails within that window; otherwise 503.
//! * Loads for one user are serialized by moka's per-key compute lock, so
//!   concurrent first requests cause one `/sdk/me` call; loads across users
//!   are bounded by a semaphore so a burst of new users cannot open an
//!   unbounded number of connections to Paragon.
//! * A failed load is never cached: neither as an allow nor as a deny.
//! * Every invalidation bumps a generation; a load that started before it
//!   does not insert its (now possibly revoked) list afterwards.
//! * The key is the user id (and, in passthrough mode, the caller's
//!   permissions claim, because Paragon narrows `/sdk/me` by it). No entry
//!   is ever read for another key.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use tokio::sync::Semaphore;

use super::credentials::CredentialList;
use crate::config::CacheConfig;
use crate::telemetry::Metrics;

/// How long a per-user generation is remembered after an invalidation: far
/// longer than any load can take (loads are bounded by the upstream timeout).
const GENERATION_MEMORY: Duration = Duration::from_secs(15 * 60);

/// How many credential owners are remembered per cached user, at most.
const OWNERS_PER_USER: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirKey {
    pub user: Arc<str>,
    /// Passthrough mode: the caller's permissions claim (canonical JSON).
    pub scope: Option<Arc<str>>,
}

impl DirKey {
    pub fn user(user: Arc<str>) -> Self {
        DirKey { user, scope: None }
    }
}

#[derive(Debug)]
pub struct Entry {
    pub list: Arc<CredentialList>,
    pub fetched_at: Instant,
    /// When the load that fetched it began: Paragon's answer describes the
    /// user at some moment after this, and not necessarily later.
    pub load_started: Instant,
}

/// Which cached list a reload may settle for instead of loading.
#[derive(Debug, Clone, Copy)]
enum Enough {
    /// Any list fetched after this one (`None`: any list), if fresh.
    NewerThan(Option<Instant>),
    /// Only a list whose load began at or after this moment: a credential
    /// missing from it was missing after the caller saw it missing.
    StartedAfter(Instant),
}

impl Enough {
    fn accepts(self, e: &Entry) -> bool {
        match self {
            Enough::NewerThan(seen) => seen.is_none_or(|s| e.fetched_at > s),
            Enough::StartedAfter(at) => e.load_started >= at,
        }
    }
}

/// A list as the request sees it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub list: Arc<CredentialList>,
    pub fetched_at: Instant,
}

/// Why a credential list could not be loaded (a 503 `credentials_unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("Paragon could not be reached for /sdk/me: {0}")]
    Upstream(String),
    #[error("Paragon answered /sdk/me with status {0}")]
    Status(u16),
    #[error("Paragon answered /sdk/me with authenticated: false")]
    NotAuthenticated,
    #[error("Paragon's /sdk/me answer does not parse: {0}")]
    Malformed(String),
    #[error("too many credential loads in flight")]
    Busy,
    #[error("an upstream token could not be minted: {0}")]
    Mint(String),
    #[error("the cluster store is unavailable")]
    ClusterUnavailable,
}

/// Identifies a directory, so a memo made against an older one (before a
/// reload replaced it) is never used.
static DIRECTORY_IDS: AtomicU64 = AtomicU64::new(1);

/// A caller's last credential list (kept in its `Identity`, which lives as
/// long as its token in the verified-token cache): a request from the same
/// token skips the cache lookup while the list is fresh and no
/// invalidation happened since.
#[derive(Default)]
pub struct ListMemo(arc_swap::ArcSwapOption<Memo>);

pub struct Memo {
    directory: u64,
    epoch: u64,
    snapshot: Snapshot,
}

impl std::fmt::Debug for ListMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListMemo")
    }
}

/// A cloned identity starts without a memo.
impl Clone for ListMemo {
    fn clone(&self) -> Self {
        ListMemo::default()
    }
}

pub struct Directory {
    id: u64,
    /// Bumped by every invalidation and freshness change: memos made before
    /// it are void.
    memo_epoch: AtomicU64,
    cache: Cache<DirKey, Arc<Entry>>,
    ttl: Duration,
    stale: Duration,
    cooldown: Duration,
    /// Freshness cap while degraded (cluster store unreachable, contract §11).
    degraded_ttl: std::sync::atomic::AtomicU64,
    loads: Arc<Semaphore>,
    load_wait: Duration,
    /// Per-user invalidation generations and a global one for "all".
    generations: moka::sync::Cache<Arc<str>, u64>,
    /// Which Connected User's loaded list held a credential id, so that a
    /// refusal of another tenant's id is told apart from an unknown one
    /// (contract §5a `other_user`) by one lookup, never a request to
    /// Paragon. Bounded, and forgotten as the lists themselves are.
    owners: moka::sync::Cache<Box<str>, Arc<str>>,
    epoch: AtomicU64,
    all_generation: AtomicU64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("users", &self.cache.entry_count())
            .finish()
    }
}

/// Generations observed when a load starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    user: u64,
    all: u64,
}

impl Directory {
    /// `load_wait` bounds how long a request waits for a free load slot.
    pub fn new(cfg: &CacheConfig, load_wait: Duration, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(cfg.max_users)
            .time_to_live(cfg.credentials_ttl + cfg.stale_if_error)
            .support_invalidation_closures()
            .build();
        Directory {
            id: DIRECTORY_IDS.fetch_add(1, Ordering::Relaxed),
            memo_epoch: AtomicU64::new(0),
            cache,
            ttl: cfg.credentials_ttl,
            stale: cfg.stale_if_error,
            cooldown: cfg.refresh_cooldown,
            degraded_ttl: AtomicU64::new(u64::MAX),
            loads: Arc::new(Semaphore::new(cfg.max_concurrent_loads)),
            load_wait,
            generations: moka::sync::Cache::builder()
                .time_to_live(GENERATION_MEMORY)
                .build(),
            owners: moka::sync::Cache::builder()
                .max_capacity(cfg.max_users.saturating_mul(OWNERS_PER_USER))
                .time_to_live(cfg.credentials_ttl + cfg.stale_if_error)
                .build(),
            epoch: AtomicU64::new(1),
            all_generation: AtomicU64::new(0),
            metrics,
        }
    }

    /// Whether these cache settings are the ones this directory was built
    /// with (a reload with other settings builds a new, empty directory).
    pub fn same_settings(&self, cfg: &CacheConfig) -> bool {
        self.ttl == cfg.credentials_ttl
            && self.stale == cfg.stale_if_error
            && self.cooldown == cfg.refresh_cooldown
    }

    /// Caps freshness (degraded cluster mode), or lifts the cap with `None`.
    pub fn set_degraded_ttl(&self, cap: Option<Duration>) {
        let v = cap.map_or(u64::MAX, |d| d.as_millis() as u64);
        if self.degraded_ttl.swap(v, Ordering::AcqRel) != v {
            self.memo_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The invalidation epoch; read it before a lookup whose result goes
    /// into a memo.
    pub fn epoch(&self) -> u64 {
        self.memo_epoch.load(Ordering::Acquire)
    }

    /// The memo's list, if it was made by this directory, no invalidation
    /// happened since, and it is still fresh.
    pub fn memo_get(&self, memo: &ListMemo) -> Option<Snapshot> {
        let guard = memo.0.load();
        let m = guard.as_ref()?;
        if m.directory != self.id
            || m.epoch != self.epoch()
            || m.snapshot.fetched_at.elapsed() >= self.fresh_for()
        {
            return None;
        }
        self.metrics.credential_cache_hits.inc();
        Some(m.snapshot.clone())
    }

    /// Remembers a list obtained after reading `epoch`.
    pub fn memo_put(&self, memo: &ListMemo, snapshot: &Snapshot, epoch: u64) {
        memo.0.store(Some(Arc::new(Memo {
            directory: self.id,
            epoch,
            snapshot: snapshot.clone(),
        })));
    }

    fn fresh_for(&self) -> Duration {
        let cap = self.degraded_ttl.load(Ordering::Relaxed);
        if cap == u64::MAX {
            self.ttl
        } else {
            self.ttl.min(Duration::from_millis(cap))
        }
    }

    fn generation(&self, user: &Arc<str>) -> Generation {
        Generation {
            user: self.generations.get(user).unwrap_or(0),
            all: self.all_generation.load(Ordering::Acquire),
        }
    }

    /// The user's list: cached if fresh, else loaded with `load`.
    pub async fn get<F, Fut>(&self, key: &DirKey, load: F) -> Result<Snapshot, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CredentialList, LoadError>>,
    {
        let existing = self.cache.get(key).await;
        if let Some(e) = &existing {
            if e.fetched_at.elapsed() < self.fresh_for() {
                self.metrics.credential_cache_hits.inc();
                return Ok(Snapshot {
                    list: e.list.clone(),
                    fetched_at: e.fetched_at,
                });
            }
        }
        self.metrics.credential_cache_misses.inc();
        let seen = existing.as_ref().map(|e| e.fetched_at);
        match self.reload(key, Enough::NewerThan(seen), load).await {
            Ok(s) => Ok(s),
            Err(err) => match existing {
                Some(e) if e.fetched_at.elapsed() < self.ttl + self.stale => {
                    self.metrics.credential_cache_stale_served.inc();
                    tracing::warn!(user = &*crate::telemetry::clean(&key.user), error = %err, "serving a stale credential list (cache.stale_if_error)");
                    Ok(Snapshot {
                        list: e.list.clone(),
                        fetched_at: e.fetched_at,
                    })
                }
                _ => Err(err),
            },
        }
    }

    /// A request named a credential absent from `seen`: reload once, unless
    /// the list was fetched within `cache.refresh_cooldown`. `None` when the
    /// cooldown forbids a reload.
    ///
    /// The reload may join a load of this user that began after the miss
    /// was seen, but never settles for a list whose load began before it:
    /// another caller's refresh that started a moment before the account
    /// was connected would otherwise answer "not there" for it.
    pub async fn refresh_for_missing<F, Fut>(
        &self,
        key: &DirKey,
        seen: &Snapshot,
        load: F,
    ) -> Option<Result<Snapshot, LoadError>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CredentialList, LoadError>>,
    {
        if seen.fetched_at.elapsed() < self.cooldown {
            return None;
        }
        let missed_at = Instant::now();
        self.metrics.credential_cache_refreshes.inc();
        Some(
            self.reload(key, Enough::StartedAfter(missed_at), load)
                .await,
        )
    }

    /// Loads under the per-key lock. If someone else stored a fresh list
    /// that is `enough` while we waited, that list is used instead of
    /// loading.
    async fn reload<F, Fut>(
        &self,
        key: &DirKey,
        enough: Enough,
        load: F,
    ) -> Result<Snapshot, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CredentialList, LoadError>>,
    {
        let before = self.generation(&key.user);
        let mut uncached: Option<Snapshot> = None;
        let uncached_ref = &mut uncached;
        let result = self
            .cache
            .entry(key.clone())
            .and_try_compute_with(|current| async move {
                if let Some(cur) = current {
                    let cur = cur.into_value();
                    if enough.accepts(&cur) && cur.fetched_at.elapsed() < self.fresh_for() {
                        return Ok(Op::Nop);
                    }
                }
                let (list, load_started) = self.load_bounded(load).await?;
                for c in &list.credentials {
                    self.owners.insert(c.id.clone(), key.user.clone());
                }
                let entry = Arc::new(Entry {
                    list: Arc::new(list),
                    fetched_at: Instant::now(),
                    load_started,
                });
                if self.generation(&key.user) != before {
                    // Invalidated while loading: answer this request with
                    // what Paragon just said, but do not cache it.
                    *uncached_ref = Some(Snapshot {
                        list: entry.list.clone(),
                        fetched_at: entry.fetched_at,
                    });
                    return Ok(Op::Nop);
                }
                Ok(Op::Put(entry))
            })
            .await?;
        if let Some(s) = uncached {
            return Ok(s);
        }
        self.metrics
            .credential_cache_users
            .set(self.cache.entry_count() as i64);
        let entry = match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                e.into_value()
            }
            CompResult::StillNone(_) | CompResult::Removed(_) => {
                return Err(LoadError::Upstream(
                    "the credential list vanished during load".into(),
                ))
            }
        };
        Ok(Snapshot {
            list: entry.list.clone(),
            fetched_at: entry.fetched_at,
        })
    }

    /// Loads within the concurrency bound; also says when the load began.
    async fn load_bounded<F, Fut>(&self, load: F) -> Result<(CredentialList, Instant), LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CredentialList, LoadError>>,
    {
        let _permit = match tokio::time::timeout(self.load_wait, self.loads.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics.credential_cache_load_errors.inc();
                return Err(LoadError::Busy);
            }
        };
        self.metrics.credential_cache_loads.inc();
        let started = Instant::now();
        let result = load().await;
        if result.is_err() {
            self.metrics.credential_cache_load_errors.inc();
        }
        result.map(|list| (list, started))
    }

    /// The list cached for `key` (fresh or stale), without loading it or
    /// counting a hit or a miss: what the admin dashboard names accounts
    /// by, without ever asking Paragon to render a page (contract §9).
    pub async fn peek(&self, key: &DirKey) -> Option<Arc<CredentialList>> {
        self.cache.get(key).await.map(|e| e.list.clone())
    }

    /// The Connected User whose list, loaded here lately, held credential
    /// `id` (lowercase), if any.
    pub fn cached_owner(&self, id: &str) -> Option<Arc<str>> {
        self.owners.get(id)
    }

    /// Drops every cached list of `user` (all permission scopes) and makes
    /// loads in flight for it not cache their result.
    pub async fn invalidate_user(&self, user: &str) {
        self.memo_epoch.fetch_add(1, Ordering::AcqRel);
        let user: Arc<str> = Arc::from(user);
        let next = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.generations.insert(user.clone(), next);
        self.cache.invalidate(&DirKey::user(user.clone())).await;
        // Passthrough keys carry a scope; drop those lazily but surely
        // (moka applies invalidation predicates before any later read).
        let u = user.clone();
        let _ = self.cache.invalidate_entries_if(move |k, _| k.user == u);
        self.metrics
            .credential_cache_users
            .set(self.cache.entry_count() as i64);
    }

    /// Drops every cached list.
    pub fn invalidate_all(&self) {
        self.memo_epoch.fetch_add(1, Ordering::AcqRel);
        self.all_generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    pub fn user_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs moka's pending maintenance (tests and the metrics scrape use
    /// this for exact counts).
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cfg(ttl_ms: u64, stale_ms: u64, cooldown_ms: u64) -> CacheConfig {
        CacheConfig {
            credentials_ttl: Duration::from_millis(ttl_ms),
            max_users: 1000,
            refresh_cooldown: Duration::from_millis(cooldown_ms),
            stale_if_error: Duration::from_millis(stale_ms),
            max_concurrent_loads: 4,
        }
    }

    fn dir(c: CacheConfig) -> Directory {
        Directory::new(&c, Duration::from_secs(5), Metrics::new())
    }

    fn list(ids: &[&str]) -> CredentialList {
        let creds: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","status":"VALID"}}"#))
            .collect();
        let body = format!(
            r#"{{"authenticated":true,"integrations":{{"slack":{{"allCredentials":[{}]}}}}}}"#,
            creds.join(",")
        );
        CredentialList::parse(body.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn concurrent_first_requests_cause_one_load() {
        let d = Arc::new(dir(cfg(60_000, 0, 0)));
        let calls = Arc::new(AtomicUsize::new(0));
        let key = DirKey::user("acme".into());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (d, calls, key) = (d.clone(), calls.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                d.get(&key, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(list(&["a"]))
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().list.len(), 1);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let d = dir(cfg(60_000, 0, 0));
        let key = DirKey::user("acme".into());
        let err = d
            .get(&key, || async { Err(LoadError::Status(500)) })
            .await
            .unwrap_err();
        assert_eq!(err, LoadError::Status(500));
        let ok = d.get(&key, || async { Ok(list(&["a"])) }).await.unwrap();
        assert_eq!(ok.list.len(), 1);
    }

    #[tokio::test]
    async fn entries_are_per_user() {
        let d = dir(cfg(60_000, 0, 0));
        d.get(&DirKey::user("a".into()), || async { Ok(list(&["x"])) })
            .await
            .unwrap();
        let b = d
            .get(&DirKey::user("b".into()), || async { Ok(list(&[])) })
            .await
            .unwrap();
        assert!(b.list.is_empty(), "user b must never see user a's list");
        let scoped = DirKey {
            user: "a".into(),
            scope: Some("{}".into()),
        };
        let s = d.get(&scoped, || async { Ok(list(&[])) }).await.unwrap();
        assert!(
            s.list.is_empty(),
            "another scope of the same user is another entry"
        );
    }

    #[tokio::test]
    async fn stale_list_serves_only_within_stale_if_error() {
        let d = dir(cfg(30, 10_000, 0));
        let key = DirKey::user("acme".into());
        d.get(&key, || async { Ok(list(&["a"])) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        let s = d
            .get(&key, || async { Err(LoadError::Status(502)) })
            .await
            .unwrap();
        assert_eq!(s.list.len(), 1);

        let strict = dir(cfg(30, 0, 0));
        strict
            .get(&key, || async { Ok(list(&["a"])) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(strict
            .get(&key, || async { Err(LoadError::Status(502)) })
            .await
            .is_err());
    }

    #[tokio::test]
    async fn refresh_for_missing_respects_the_cooldown() {
        let d = dir(cfg(60_000, 0, 50));
        let key = DirKey::user("acme".into());
        let s = d.get(&key, || async { Ok(list(&["a"])) }).await.unwrap();
        assert!(d
            .refresh_for_missing(&key, &s, || async { Ok(list(&["a", "b"])) })
            .await
            .is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
        let r = d
            .refresh_for_missing(&key, &s, || async { Ok(list(&["a", "b"])) })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.list.len(), 2);
        let again = d
            .get(&key, || async { panic!("must be cached") })
            .await
            .unwrap();
        assert_eq!(again.list.len(), 2);
    }

    #[tokio::test]
    async fn memos_serve_until_an_invalidation_or_expiry() {
        let d = dir(cfg(200, 0, 0));
        let key = DirKey::user("acme".into());
        let memo = ListMemo::default();
        assert!(d.memo_get(&memo).is_none());
        let epoch = d.epoch();
        let s = d.get(&key, || async { Ok(list(&["a"])) }).await.unwrap();
        d.memo_put(&memo, &s, epoch);
        assert_eq!(d.memo_get(&memo).unwrap().list.len(), 1);
        d.invalidate_user("someone-else").await;
        assert!(d.memo_get(&memo).is_none(), "any invalidation voids memos");
        let epoch = d.epoch();
        d.memo_put(&memo, &s, epoch);
        assert!(d.memo_get(&memo).is_some());
        // A memo made before an invalidation that raced the lookup is void.
        d.memo_put(&memo, &s, epoch.wrapping_sub(1));
        assert!(d.memo_get(&memo).is_none());
        d.memo_put(&memo, &s, d.epoch());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            d.memo_get(&memo).is_none(),
            "a memo is never fresher than the list"
        );
        let other = dir(cfg(200, 0, 0));
        other.memo_put(&memo, &s, other.epoch());
        assert!(
            d.memo_get(&memo).is_none(),
            "a memo of another directory is ignored"
        );
    }

    #[tokio::test]
    async fn invalidation_during_a_load_does_not_resurrect_the_old_list() {
        let d = Arc::new(dir(cfg(60_000, 0, 0)));
        let key = DirKey::user("acme".into());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d2 = d.clone();
        let k2 = key.clone();
        let slow = tokio::spawn(async move {
            d2.get(&k2, || async move {
                rx.await.ok();
                Ok(list(&["revoked"]))
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        d.invalidate_user("acme").await;
        tx.send(()).unwrap();
        let answered = slow.await.unwrap().unwrap();
        assert_eq!(
            answered.list.len(),
            1,
            "the in-flight request still gets an answer"
        );
        let fresh = d.get(&key, || async { Ok(list(&[])) }).await.unwrap();
        assert!(
            fresh.list.is_empty(),
            "the old list was not cached after the invalidation"
        );
    }

    /// contract §6: a miss-triggered reload never settles for a list whose load
    /// began before the miss (another caller's refresh, fetched before the
    /// credential existed), but does join one that began after it.
    #[tokio::test]
    async fn a_refresh_for_a_miss_does_not_settle_for_an_earlier_load() {
        let d = Arc::new(dir(cfg(60_000, 0, 0)));
        let key = DirKey::user("acme".into());
        let mine = d.get(&key, || async { Ok(list(&["a"])) }).await.unwrap();
        // Someone else's refresh, started (and answered) before "new" exists.
        let earlier = d
            .refresh_for_missing(&key, &mine, || async { Ok(list(&["a"])) })
            .await
            .unwrap()
            .unwrap();
        assert!(earlier.fetched_at > mine.fetched_at);
        // Now the caller holding the older list misses "new": the list in
        // the cache is newer than its own, but was loaded before the miss.
        let loads = Arc::new(AtomicUsize::new(0));
        let l = loads.clone();
        let fresh = d
            .refresh_for_missing(&key, &mine, || async move {
                l.fetch_add(1, Ordering::SeqCst);
                Ok(list(&["a", "new"]))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "it loads again");
        assert!(fresh.list.find("new").is_some());

        // A load that begins after the miss is joined, not repeated.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (d2, k2) = (d.clone(), key.clone());
        let stale = fresh.clone();
        let waiter_seen = Arc::new(tokio::sync::Notify::new());
        let notify = waiter_seen.clone();
        let first = tokio::spawn(async move {
            d2.refresh_for_missing(&k2, &stale, || async move {
                notify.notify_one();
                rx.await.ok();
                Ok(list(&["a", "new", "newer"]))
            })
            .await
        });
        waiter_seen.notified().await;
        // Two more misses happen while that load (begun before them) is in
        // flight: neither may settle for it; the first of them to get the
        // lock loads, and the other joins that load, begun after its miss.
        let later_loads = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..2 {
            let (d3, k3, stale3, n) = (d.clone(), key.clone(), fresh.clone(), later_loads.clone());
            waiters.push(tokio::spawn(async move {
                d3.refresh_for_missing(&k3, &stale3, || async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    Ok(list(&["a", "new", "newer", "newest"]))
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(()).unwrap();
        let got1 = first.await.unwrap().unwrap().unwrap();
        assert_eq!(got1.list.len(), 3);
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap().unwrap().list.len(), 4);
        }
        assert_eq!(later_loads.load(Ordering::SeqCst), 1, "one load for both");
    }
}
