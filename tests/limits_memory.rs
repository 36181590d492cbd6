//! contract §5c: the rate limiter's memory is bounded however many distinct
//! callers come. One million principals each take a token of one limiter;
//! it keeps at most `MAX_KEYS` buckets, and the process's resident memory
//! grows by less than the stated bound. Its own test binary, so no other
//! test's allocations are counted.

use credgate::config::rules::Rate;
use credgate::policy::limits::{Limiter, MAX_KEYS};

/// What README.md states: one limiter holds at most 100,000 buckets, in
/// well under this much memory.
const BOUND_MIB: u64 = 64;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn a_million_distinct_principals_stay_within_the_bound() {
    let limiter = Limiter::new(Rate { rps: 1.0, burst: 1 });
    let before = resident_bytes();
    let mut key = String::with_capacity(64);
    for i in 0..1_000_000u32 {
        key.clear();
        key.push_str("acme\0member-with-a-realistic-principal-");
        key.push_str(&i.to_string());
        limiter.check(&key).expect("a new caller's bucket is full");
    }
    let held = limiter.keys();
    let grown = resident_bytes().saturating_sub(before);
    eprintln!(
        "1,000,000 principals: {held} buckets held, resident memory grew {:.1} MiB",
        grown as f64 / (1024.0 * 1024.0)
    );
    assert!(held <= MAX_KEYS, "{held} buckets");
    assert!(held > 0);
    assert!(
        grown < BOUND_MIB * 1024 * 1024,
        "grew {grown} bytes for {held} buckets"
    );
}
