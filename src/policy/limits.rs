//! Rate limits (contract §5c): token buckets per principal, per Connected
//! User, and per principal for each limit rule, kept per replica.
//!
//! Each bucket is one atomic: the GCRA "theoretical arrival time" of the
//! next request, in nanoseconds of the limiter's clock (tokio's, so tests
//! can pause time). A request is let through when taking one token leaves
//! the bucket at or under its burst; otherwise it is refused with the time
//! until a token comes back. Buckets live in a bounded cache: one unused
//! for as long as it takes to refill whole is dropped (a new one starts
//! full, which is what it would be), and at most [`MAX_KEYS`] are kept
//! (least recently used go first), so many distinct callers cannot grow
//! memory without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::Identity;
use crate::config::rules::{Rate, Rules};
use crate::config::LimitsConfig;
use crate::error::GatewayError;
use crate::telemetry::{Metrics, ScopeLabel};

/// The most buckets one limiter keeps.
pub const MAX_KEYS: u64 = 100_000;

/// One limit (a rate and a burst) over many keys.
pub struct Limiter {
    /// Nanoseconds per token.
    interval: u64,
    /// How far ahead of now the arrival time may run: `(burst - 1)` tokens.
    tolerance: u64,
    buckets: moka::sync::Cache<Box<str>, Arc<AtomicU64>>,
    start: Instant,
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

    /// A limiter keeping at most `max_keys` buckets.
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
            buckets: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
            start: Instant::now(),
        }
    }

    /// Takes one token of `key`'s bucket: `Ok`, or `Err` with how long
    /// until one is back.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.take(&self.bucket(key))
    }

    /// `key`'s bucket, made full when there is none.
    pub fn bucket(&self, key: &str) -> Arc<AtomicU64> {
        match self.buckets.get(key) {
            Some(b) => b,
            None => self
                .buckets
                .get_with(key.into(), || Arc::new(AtomicU64::new(0))),
        }
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

    /// Buckets held (after pending evictions are applied).
    pub fn keys(&self) -> u64 {
        self.buckets.run_pending_tasks();
        self.buckets.entry_count()
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
/// the limit. A token that outlives its bucket in the limiter's cache
/// keeps using it; a new token of the same caller then starts from a
/// fresh (full) one: at most one extra burst per token.
#[derive(Default)]
pub struct CallerBuckets {
    principal: arc_swap::ArcSwapOption<Held>,
    user: arc_swap::ArcSwapOption<Held>,
}

struct Held {
    limiter: Arc<Limiter>,
    bucket: Arc<AtomicU64>,
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
        let bucket = limiter.bucket(&key());
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
