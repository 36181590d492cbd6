//! Rate limits (contract §5c): token buckets per principal, per Connected
//! User, and per principal for each limit rule, kept per replica.
//!
//! Each bucket is one atomic: the GCRA "theoretical arrival time" of the
//! next request, in nanoseconds of the limiter's clock (tokio's, so tests
//! can pause time). A request is let through when taking one token leaves
//! the bucket at or under its burst; otherwise it is refused with the time
//! until a token comes back.
//!
//! A key (a principal, a user) has one bucket at a time, however many
//! tokens it uses: buckets are keyed by principal and user, never by token.
//! Two things keep a bucket alive. A bounded cache of recently looked-up
//! buckets: one unused for as long as it takes to refill whole is dropped
//! (a new one starts full, which is what it would be), and at most
//! [`MAX_KEYS`] are kept (least recently used go first), so many distinct
//! callers cannot grow memory without bound. And the memo of each verified
//! token of that caller ([`CallerBuckets`]), which takes tokens without a
//! lookup on the warm path and so never refreshes the cache. A bucket a
//! memo holds is also in the limiter's index, weakly: a new token of a
//! caller whose bucket left the cache while another token still holds it
//! finds that bucket there, not a fresh (full) one. The index is swept of
//! released buckets whenever it has doubled since the last sweep, so it
//! stays within about twice the buckets memos hold (one per limit per
//! caller with a token in the verified-token cache, which is bounded).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::Identity;
use crate::config::rules::{Rate, Rules};
use crate::config::LimitsConfig;
use crate::error::GatewayError;
use crate::telemetry::{Metrics, ScopeLabel};

/// The most buckets one limiter keeps for recent use (buckets held by a
/// verified token's memo come on top, bounded by that cache).
pub const MAX_KEYS: u64 = 100_000;

/// The fewest index entries before the index is swept of released buckets.
const MIN_SWEEP: usize = 1024;

/// One key's token bucket.
pub type Bucket = Arc<AtomicU64>;

/// One limit (a rate and a burst) over many keys.
pub struct Limiter {
    /// Nanoseconds per token.
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1)` tokens.
    tolerance: u64,
    /// Buckets looked up lately, kept alive while in use and for one refill
    /// after.
    recent: moka::sync::Cache<Arc<str>, Bucket>,
    /// The buckets callers' memos hold, by key, weakly: so a key keeps its
    /// one bucket for as long as any memo holds it.
    index: Mutex<Index>,
    start: Instant,
}

#[derive(Default)]
struct Index {
    buckets: HashMap<Arc<str>, Weak<AtomicU64>>,
    /// Sweep dead entries when the index reaches this many.
    sweep_at: usize,
}

impl Index {
    fn sweep(&mut self) {
        self.buckets.retain(|_, b| b.strong_count() > 0);
        self.sweep_at = (self.buckets.len() * 2).max(MIN_SWEEP);
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("interval_ns", &self.interval)
            .field("tolerance_ns", &self.tolerance)
            .finish()
    }
}

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        Limiter::with_capacity(rate, MAX_KEYS)
    }

    /// A limiter keeping at most `max_keys` recently used buckets.
    pub fn with_capacity(rate: Rate, max_keys: u64) -> Limiter {
        let interval = (1e9 / rate.rps).round().max(1.0) as u64;
        let tolerance = interval.saturating_mul(u64::from(rate.burst.saturating_sub(1)));
        // Idle for a whole refill (and a second more): the bucket is full
        // again, so forgetting it changes nothing.
        let idle = Duration::from_nanos(tolerance.saturating_add(interval))
            .saturating_add(Duration::from_secs(1));
        Limiter {
            interval,
            tolerance,
            recent: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
            index: Mutex::new(Index {
                buckets: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
            start: Instant::now(),
        }
    }

    /// Takes one token of `key`'s bucket: `Ok`, or `Err` with how long
    /// until one is back.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.take(&self.bucket(key))
    }

    /// `key`'s bucket: the one alive (in the cache, or held by a caller's
    /// memo), else a new, full one.
    pub fn bucket(&self, key: &str) -> Bucket {
        match self.recent.get(key) {
            Some(b) => b,
            None => self.lookup(key, false),
        }
    }

    /// [`bucket`](Self::bucket), for a caller's memo to hold: the index
    /// remembers it, so the caller's next token finds it while it is held.
    fn held_bucket(&self, key: &str) -> Bucket {
        self.lookup(key, true)
    }

    /// The slow path. Every bucket is made here, under the index's lock,
    /// and only when neither the cache nor the index has one alive, so a
    /// key has one bucket at a time.
    fn lookup(&self, key: &str, hold: bool) -> Bucket {
        let mut index = self.lock_index();
        if let Some(b) = index.buckets.get(key).and_then(Weak::upgrade) {
            if !hold {
                // Back in the cache for the keyed lookups that follow.
                self.recent.insert(key.into(), b.clone());
            }
            return b;
        }
        let key: Arc<str> = key.into();
        let b = self.recent.get_with(key.clone(), Bucket::default);
        if hold {
            if index.buckets.len() >= index.sweep_at {
                index.sweep();
            }
            index.buckets.insert(key, Arc::downgrade(&b));
        }
        b
    }

    /// Takes one token of `bucket` (one of this limiter's).
    pub fn take(&self, bucket: &AtomicU64) -> Result<(), Duration> {
        self.take_at(bucket, Instant::now())
    }

    /// [`take`](Self::take) at `now` (one clock read for all of a
    /// request's limits).
    pub fn take_at(&self, bucket: &AtomicU64, now: Instant) -> Result<(), Duration> {
        let now =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let mut tat = bucket.load(Ordering::Acquire);
        loop {
            let from = tat.max(now);
            if from - now > self.tolerance {
                return Err(Duration::from_nanos(from - now - self.tolerance));
            }
            match bucket.compare_exchange_weak(
                tat,
                from + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Buckets the cache of recently used ones keeps (after pending
    /// evictions are applied); those only a caller's memo holds are not
    /// counted.
    pub fn keys(&self) -> u64 {
        self.recent.run_pending_tasks();
        self.recent.entry_count()
    }

    /// Buckets in the index that memos (or, until it frees what it evicted,
    /// the cache) still hold.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.recent.run_pending_tasks();
        let mut index = self.lock_index();
        index.sweep();
        index.buckets.len()
    }

    /// Entries in the index, dead ones not yet swept included.
    #[cfg(test)]
    fn index_len(&self) -> usize {
        self.lock_index().buckets.len()
    }

    /// Drops every bucket from the recent cache, as its idle or capacity
    /// eviction would.
    #[cfg(test)]
    fn evict_recent(&self) {
        self.recent.invalidate_all();
        self.recent.run_pending_tasks();
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every limiter of one config: `[limits]` and the limit rules, indexed
/// like the rules. A reload keeps the buckets of a limit whose rate (and,
/// for a rule, name) did not change.
#[derive(Debug, Default)]
pub struct Limits {
    principal: Option<(Rate, Arc<Limiter>)>,
    user: Option<(Rate, Arc<Limiter>)>,
    rules: Vec<Option<RuleLimit>>,
}

/// A limit rule's bucket, and what it was made for.
#[derive(Debug)]
struct RuleLimit {
    name: Arc<str>,
    rate: Rate,
    limiter: Arc<Limiter>,
}

impl Limits {
    pub fn new(cfg: &LimitsConfig, rules: &Rules, previous: Option<&Limits>) -> Limits {
        let keep = |rate: Option<Rate>, old: Option<&(Rate, Arc<Limiter>)>| {
            rate.map(|r| match old {
                Some((was, l)) if *was == r => (r, l.clone()),
                _ => (r, Arc::new(Limiter::new(r))),
            })
        };
        let old_rules = previous.map(|p| p.rules.as_slice()).unwrap_or_default();
        Limits {
            principal: keep(cfg.principal, previous.and_then(|p| p.principal.as_ref())),
            user: keep(cfg.user, previous.and_then(|p| p.user.as_ref())),
            rules: rules
                .rules
                .iter()
                .map(|rule| {
                    let rate = rule.rate?;
                    let kept = old_rules.iter().flatten().find_map(|old| {
                        (old.name == rule.name && old.rate == rate).then(|| old.limiter.clone())
                    });
                    let limiter = kept.unwrap_or_else(|| Arc::new(Limiter::new(rate)));
                    Some(RuleLimit {
                        name: rule.name.clone(),
                        rate,
                        limiter,
                    })
                })
                .collect(),
        }
    }

    /// `[limits]`, right after authentication (contract §5c): the
    /// caller's principal bucket (keyed by its user too: principals are
    /// only unique within one), then its user's. The buckets are looked up
    /// once per verified token and kept in `held` (the caller's memo).
    pub fn check_caller(
        &self,
        id: &Identity,
        held: &CallerBuckets,
        metrics: &Metrics,
    ) -> Result<(), GatewayError> {
        if self.principal.is_none() && self.user.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some((_, l)) = &self.principal {
            held.take(&held.principal, l, now, || principal_key(id))
                .map_err(|wait| refused(metrics, "principal", wait))?;
        }
        if let Some((_, l)) = &self.user {
            held.take(&held.user, l, now, || id.user.to_string())
                .map_err(|wait| refused(metrics, "user", wait))?;
        }
        Ok(())
    }

    /// Limit rule number `rule`, for this caller (a rule without a rate
    /// limits nothing).
    pub fn check_rule(
        &self,
        rule: usize,
        id: &Identity,
        metrics: &Metrics,
    ) -> Result<(), GatewayError> {
        match self.rules.get(rule) {
            Some(Some(r)) => r
                .limiter
                .check(&principal_key(id))
                .map_err(|wait| refused(metrics, "rule", wait)),
            _ => Ok(()),
        }
    }
}

/// A caller's `[limits]` buckets, kept with its verified token (the
/// gateway's per-caller memo), so the warm path takes a token without a
/// cache lookup. A bucket is looked up again after a reload that changed
/// the limit. Holding a bucket keeps it its key's: a new token of the same
/// caller finds the same bucket through the limiter's index, even after it
/// left the limiter's cache (contract §5c: never a bucket per token).
#[derive(Default)]
pub struct CallerBuckets {
    principal: arc_swap::ArcSwapOption<Held>,
    user: arc_swap::ArcSwapOption<Held>,
}

struct Held {
    limiter: Arc<Limiter>,
    bucket: Bucket,
}

impl CallerBuckets {
    fn take(
        &self,
        slot: &arc_swap::ArcSwapOption<Held>,
        limiter: &Arc<Limiter>,
        now: Instant,
        key: impl FnOnce() -> String,
    ) -> Result<(), Duration> {
        if let Some(h) = slot.load().as_ref() {
            if Arc::ptr_eq(&h.limiter, limiter) {
                return limiter.take_at(&h.bucket, now);
            }
        }
        let bucket = limiter.held_bucket(&key());
        let result = limiter.take_at(&bucket, now);
        slot.store(Some(Arc::new(Held {
            limiter: limiter.clone(),
            bucket,
        })));
        result
    }
}

fn principal_key(id: &Identity) -> String {
    let mut k = String::with_capacity(id.user.len() + id.principal.len() + 1);
    k.push_str(&id.user);
    k.push('\0');
    k.push_str(&id.principal);
    k
}

fn refused(metrics: &Metrics, scope: &'static str, wait: Duration) -> GatewayError {
    metrics
        .rate_limited
        .get_or_create(&ScopeLabel { scope })
        .inc();
    GatewayError::RateLimited {
        retry_after: retry_after(wait),
        scope,
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(rps: f64, burst: u32) -> Rate {
        Rate { rps, burst }
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_passes_then_tokens_come_back_at_the_rate() {
        let l = Limiter::new(rate(0.5, 3));
        for _ in 0..3 {
            l.check("alice").unwrap();
        }
        let wait = l.check("alice").unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(retry_after(wait), 2);
        // Another caller has its own bucket.
        l.check("bob").unwrap();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(l.check("alice").unwrap_err(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        l.check("alice").unwrap();
        assert!(l.check("alice").is_err());
        // Idle long enough, the bucket is full again, and no fuller.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            l.check("alice").unwrap();
        }
        assert!(l.check("alice").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_takes_no_token() {
        let l = Limiter::new(rate(1.0, 1));
        l.check("a").unwrap();
        for _ in 0..100 {
            assert!(l.check("a").is_err());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        l.check("a").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_bucket_is_the_limiters_own() {
        let l = Arc::new(Limiter::new(rate(1.0, 2)));
        let held = CallerBuckets::default();
        held.take(&held.principal, &l, Instant::now(), || "k".into())
            .unwrap();
        // Held: no lookup (the key is not even made), same bucket.
        held.take(&held.principal, &l, Instant::now(), || unreachable!())
            .unwrap();
        assert!(l.check("k").is_err(), "the limiter sees the same bucket");
        // Another limiter (a reload that changed the rate): looked up again.
        let l2 = Arc::new(Limiter::new(rate(1.0, 2)));
        held.take(&held.principal, &l2, Instant::now(), || "k".into())
            .unwrap();
        assert!(held
            .take(&held.user, &l2, Instant::now(), || "u".into())
            .is_ok());
    }

    /// A reload keeps the buckets of a limit whose rate did not change (and,
    /// for a rule, whose name did not), and starts afresh otherwise.
    #[test]
    fn reloads_keep_the_buckets_of_unchanged_limits() {
        let cfg = |rps| LimitsConfig {
            principal: Some(rate(rps, 1)),
            user: None,
        };
        let rules = |name: &str, rps: f64| {
            Rules::parse(&format!(
                "[[rule]]\nname = \"{name}\"\neffect = \"limit\"\nrps = {rps:?}\nwhen = \"true\"\n"
            ))
            .unwrap()
        };
        let first = Limits::new(&cfg(1.0), &rules("r", 1.0), None);
        let principal = |l: &Limits| l.principal.as_ref().unwrap().1.clone();
        let rule = |l: &Limits| l.rules[0].as_ref().unwrap().limiter.clone();
        let same = Limits::new(&cfg(1.0), &rules("r", 1.0), Some(&first));
        assert!(Arc::ptr_eq(&principal(&first), &principal(&same)));
        assert!(Arc::ptr_eq(&rule(&first), &rule(&same)));
        let changed = Limits::new(&cfg(2.0), &rules("s", 1.0), Some(&first));
        assert!(!Arc::ptr_eq(&principal(&first), &principal(&changed)));
        assert!(!Arc::ptr_eq(&rule(&first), &rule(&changed)));
        assert!(changed.user.is_none());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::ZERO), 1);
        assert_eq!(retry_after(Duration::from_secs(2)), 2);
        assert_eq!(retry_after(Duration::from_millis(2001)), 3);
    }

    fn who(user: &str, principal: &str) -> Identity {
        Identity::test_member(user, principal)
    }

    /// One caller's verified token: its identity and its memo.
    struct Token(Identity, CallerBuckets);

    fn token(user: &str, principal: &str) -> Token {
        Token(who(user, principal), CallerBuckets::default())
    }

    fn refused(r: Result<(), GatewayError>, scope: &str) -> bool {
        matches!(r, Err(GatewayError::RateLimited { scope: s, .. }) if s == scope)
    }

    /// contract §5c: three tokens of one principal drain one bucket, also
    /// when it left the limiter's cache (idle or least recently used)
    /// while only a token's memo used it, before the next token came.
    #[tokio::test(start_paused = true)]
    async fn a_principals_tokens_share_one_bucket_after_it_left_the_cache() {
        let cfg = LimitsConfig {
            principal: Some(rate(1.0, 3)),
            user: None,
        };
        let limits = Limits::new(&cfg, &Rules::default(), None);
        let metrics = Metrics::new();
        let limiter = limits.principal.as_ref().unwrap().1.clone();
        let tokens = [
            token("acme", "alice"),
            token("acme", "alice"),
            token("acme", "alice"),
        ];
        let check = |t: &Token| limits.check_caller(&t.0, &t.1, &metrics);
        for t in &tokens {
            check(t).unwrap();
            limiter.evict_recent();
        }
        for t in &tokens {
            assert!(refused(check(t), "principal"));
        }
        // A fourth token, and the limiter's own lookup, find it too.
        assert!(refused(check(&token("acme", "alice")), "principal"));
        assert!(limiter.check("acme\0alice").is_err());
        // Other principals have their own buckets.
        check(&token("acme", "bob")).unwrap();
        check(&token("other", "alice")).unwrap();
        // The rate refills the one bucket for every token alike.
        tokio::time::advance(Duration::from_secs(1)).await;
        check(&tokens[2]).unwrap();
        assert!(refused(check(&tokens[0]), "principal"));
    }

    /// The same for a Connected User's bucket: its principals' tokens
    /// share it.
    #[tokio::test(start_paused = true)]
    async fn a_users_tokens_share_one_bucket_after_it_left_the_cache() {
        let cfg = LimitsConfig {
            principal: None,
            user: Some(rate(1.0, 3)),
        };
        let limits = Limits::new(&cfg, &Rules::default(), None);
        let metrics = Metrics::new();
        let limiter = limits.user.as_ref().unwrap().1.clone();
        let tokens = [
            token("acme", "alice"),
            token("acme", "alice"),
            token("acme", "bob"),
        ];
        let check = |t: &Token| limits.check_caller(&t.0, &t.1, &metrics);
        for t in &tokens {
            check(t).unwrap();
            limiter.evict_recent();
        }
        for t in &tokens {
            assert!(refused(check(t), "user"));
        }
        assert!(refused(check(&token("acme", "carol")), "user"));
        check(&token("other", "alice")).unwrap();
    }

    /// A limit rule's bucket is per principal too: every token of the
    /// principal counts against it.
    #[tokio::test(start_paused = true)]
    async fn a_rule_limit_counts_every_token_of_a_principal() {
        let rules = Rules::parse(
            "[[rule]]\nname = \"r\"\neffect = \"limit\"\nrps = 1.0\nburst = 3\nwhen = \"true\"\n",
        )
        .unwrap();
        let limits = Limits::new(&LimitsConfig::default(), &rules, None);
        let metrics = Metrics::new();
        let tokens = [
            who("acme", "alice"),
            who("acme", "alice"),
            who("acme", "alice"),
        ];
        for t in &tokens {
            limits.check_rule(0, t, &metrics).unwrap();
        }
        for t in &tokens {
            assert!(refused(limits.check_rule(0, t, &metrics), "rule"));
        }
        limits.check_rule(0, &who("acme", "bob"), &metrics).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        limits.check_rule(0, &tokens[1], &metrics).unwrap();
        assert!(refused(limits.check_rule(0, &tokens[2], &metrics), "rule"));
    }

    /// A bucket a memo holds outlives the cache's capacity: callers beyond
    /// it cannot push a principal's bucket out to hand its next token a
    /// full one. Once nothing holds it and it left the cache, it goes.
    #[tokio::test(start_paused = true)]
    async fn a_held_bucket_survives_the_cache_and_goes_when_released() {
        let l = Arc::new(Limiter::with_capacity(rate(1.0, 2), 10));
        let held = CallerBuckets::default();
        for _ in 0..2 {
            held.take(&held.principal, &l, Instant::now(), || "alice".into())
                .unwrap();
        }
        for i in 0..1000 {
            l.check(&format!("p{i}")).unwrap();
        }
        assert!(l.keys() <= 10, "{}", l.keys());
        let next = CallerBuckets::default();
        assert!(next
            .take(&next.principal, &l, Instant::now(), || "alice".into())
            .is_err());
        // Released and evicted: gone (once the cache frees what it dropped).
        drop((held, next));
        l.evict_recent();
        let mut live = l.live();
        for _ in 0..1000 {
            if live == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            live = l.live();
        }
        assert_eq!(live, 0);
        l.check("alice").unwrap();
    }

    /// The index holds only what memos hold, and not much more than that
    /// however many callers came and went.
    #[test]
    fn the_index_stays_bounded() {
        let l = Arc::new(Limiter::with_capacity(rate(1000.0, 1), 100));
        for i in 0..10_000 {
            let _ = l.check(&format!("k{i}"));
        }
        assert_eq!(l.index_len(), 0, "keyed lookups are not indexed");
        let kept: Vec<CallerBuckets> = (0..100).map(|_| CallerBuckets::default()).collect();
        for (i, held) in kept.iter().enumerate() {
            let _ = held.take(&held.principal, &l, Instant::now(), || format!("kept{i}"));
        }
        for i in 0..50_000 {
            let held = CallerBuckets::default();
            let _ = held.take(&held.principal, &l, Instant::now(), || format!("p{i}"));
        }
        let n = l.index_len();
        assert!(n <= 2 * MIN_SWEEP, "{n}");
        assert!(l.keys() <= 100, "{}", l.keys());
        // The held ones are all still there.
        for (i, held) in kept.iter().enumerate() {
            let again = l.held_bucket(&format!("kept{i}"));
            let mine = held.principal.load();
            assert!(Arc::ptr_eq(&again, &mine.as_ref().unwrap().bucket));
        }
    }

    #[test]
    fn buckets_are_bounded_and_idle_ones_go() {
        let l = Limiter::with_capacity(rate(1000.0, 1), 1000);
        for i in 0..20_000 {
            let _ = l.check(&format!("p{i}"));
        }
        assert!(l.keys() <= 1000, "{}", l.keys());
        // Idle past a refill and the margin: every bucket goes.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.keys(), 0);
    }
}
