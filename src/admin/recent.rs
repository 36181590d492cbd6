//! What the admin dashboard shows of recent traffic (contract §9): the
//! latest refusals and shadow refusals, a bounded ring of copies of their
//! audit records, and samples of the request counters from which it shows
//! the traffic of the last minutes. Allowed requests cost nothing here; the
//! ring takes a refusal's strings (caller-controlled: escaped where shown).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Refusals kept for the dashboard.
pub const RECENT_REFUSALS: usize = 200;
/// Counter samples kept: one every [`SAMPLE_EVERY_SECS`], five minutes' worth.
pub const TRAFFIC_SAMPLES: usize = 31;
pub const SAMPLE_EVERY_SECS: u64 = 10;

/// One refused (or shadow-refused) request, as its audit record said.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub at_ms: i64,
    pub request_id: String,
    pub decision: String,
    pub reason: String,
    pub code: String,
    pub status: u16,
    pub principal: String,
    /// A refused token's claimed principal (unverified), when there was no
    /// verified one.
    pub claimed_principal: String,
    /// The agent acting for the principal (`act.sub`), empty when none.
    pub actor: String,
    pub user: String,
    pub product: String,
    pub integration: String,
    pub requested: String,
    pub rule: String,
    /// A 429's limit (`principal`, `user` or the rule's name), empty else.
    pub scope: String,
    pub method: String,
    pub path: String,
}

impl Refusal {
    pub fn from_record(r: &crate::audit::Record<'_>, method: &http::Method, path: &str) -> Refusal {
        Refusal {
            at_ms: crate::clock::now_ms(),
            request_id: r.request_id.into(),
            decision: r.decision.into(),
            reason: r.reason.into(),
            code: r.code.unwrap_or_default().into(),
            status: r.status,
            principal: r.principal.into(),
            claimed_principal: r.claimed_principal.unwrap_or_default().into(),
            actor: r.actor.unwrap_or_default().into(),
            user: r.user.into(),
            product: r.product.into(),
            integration: r.integration.into(),
            requested: r.requested.into(),
            rule: r.rule.unwrap_or_default().into(),
            scope: if r.reason == "rate_limited" {
                r.scope.unwrap_or_default().into()
            } else {
                String::new()
            },
            method: method.as_str().into(),
            path: path.into(),
        }
    }
}

/// Request counts by (product, decision), summed over statuses.
pub type Counts = BTreeMap<(String, String), u64>;

/// The last reload (SIGHUP) and what came of it.
#[derive(Debug, Clone)]
pub struct Reload {
    pub at_ms: i64,
    /// The notes of a reload that took effect, or why it did not.
    pub result: Result<Vec<String>, String>,
}

#[derive(Debug)]
pub struct Recent {
    /// When this process started serving (wall clock, ms).
    pub started_ms: i64,
    pub started: std::time::Instant,
    /// Refusals of authenticated callers (policy, input, limits).
    refusals: Mutex<VecDeque<Refusal>>,
    /// Refusals of callers that did not authenticate, in a ring of their
    /// own: a flood of tokenless requests must not push the refusals a
    /// security team looks for off the page.
    unauthenticated: Mutex<VecDeque<Refusal>>,
    samples: Mutex<VecDeque<(i64, Counts)>>,
    reload: Mutex<Option<Reload>>,
}

impl Default for Recent {
    /// Starts with a sample of nothing counted yet, so the traffic since
    /// start shows before the sampler's first tick.
    fn default() -> Self {
        let started_ms = crate::clock::now_ms();
        Recent {
            started_ms,
            started: std::time::Instant::now(),
            refusals: Mutex::default(),
            unauthenticated: Mutex::default(),
            samples: Mutex::new(VecDeque::from([(started_ms, Counts::new())])),
            reload: Mutex::default(),
        }
    }
}

impl crate::gateway::Refusals for Recent {
    fn refused(&self, record: &crate::audit::Record<'_>, method: &http::Method, path: &str) {
        self.push(Refusal::from_record(record, method, path));
    }
}

impl Recent {
    pub fn note_reload(&self, result: Result<Vec<String>, String>) {
        *self.reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(Reload {
            at_ms: crate::clock::now_ms(),
            result,
        });
    }

    pub fn last_reload(&self) -> Option<Reload> {
        self.reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn push(&self, r: Refusal) {
        let ring = if r.principal.is_empty() {
            &self.unauthenticated
        } else {
            &self.refusals
        };
        let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == RECENT_REFUSALS {
            ring.pop_front();
        }
        ring.push_back(r);
    }

    /// Newest first; `user` and `principal`, when given, must match exactly
    /// (the principal also matches a refused token's claimed one).
    pub fn refusals(&self, user: Option<&str>, principal: Option<&str>) -> Vec<Refusal> {
        let mut out: Vec<Refusal> = [&self.refusals, &self.unauthenticated]
            .into_iter()
            .flat_map(|ring| {
                let ring = ring.lock().unwrap_or_else(|p| p.into_inner());
                ring.iter()
                    .filter(|r| user.is_none_or(|u| r.user == u))
                    .filter(|r| {
                        principal.is_none_or(|p| r.principal == p || r.claimed_principal == p)
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        // Newest first; one ring's order breaks ties (a stable sort).
        out.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        out
    }

    /// Keeps a sample of the counters taken at `at_ms`.
    pub fn sample(&self, at_ms: i64, counts: Counts) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == TRAFFIC_SAMPLES {
            s.pop_front();
        }
        s.push_back((at_ms, counts));
    }

    /// What `now` (counters read at `now_ms`) adds to the oldest sample at
    /// least `window_ms` old (or the oldest there is), with the span it
    /// covers in milliseconds; `None` before the first sample.
    pub fn since(&self, now_ms: i64, now: &Counts, window_ms: i64) -> Option<(i64, Counts)> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (at, then) = s
            .iter()
            .rev()
            .find(|(at, _)| now_ms - *at >= window_ms)
            .or_else(|| s.front())?;
        let delta = now
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.saturating_sub(then.get(k).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        Some((now_ms - *at, delta))
    }
}

/// The request counters of a Prometheus text exposition, by (product,
/// decision): the `credgate_requests_total` series summed over `status`.
pub fn request_counts(exposition: &str) -> Counts {
    let mut counts = Counts::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("credgate_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| -> Option<String> {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_string())
        };
        let (Some(product), Some(decision), Ok(n)) = (
            label("product"),
            label("decision"),
            value.trim().parse::<f64>(),
        ) else {
            continue;
        };
        *counts.entry((product, decision)).or_default() += n as u64;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(user: &str, principal: &str, id: usize) -> Refusal {
        Refusal {
            at_ms: id as i64,
            request_id: format!("r{id}"),
            decision: "refused".into(),
            reason: "no_grant".into(),
            code: "credential_forbidden".into(),
            status: 403,
            principal: principal.into(),
            claimed_principal: String::new(),
            actor: String::new(),
            user: user.into(),
            product: "proxy".into(),
            integration: "salesforce".into(),
            requested: "c1".into(),
            rule: String::new(),
            scope: String::new(),
            method: "GET".into(),
            path: "/p".into(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_filters_by_user_and_principal() {
        let recent = Recent::default();
        for i in 0..RECENT_REFUSALS + 5 {
            let (user, principal) = if i % 2 == 0 {
                ("acme", "alice")
            } else {
                ("acme", "bob")
            };
            recent.push(refusal(user, principal, i));
        }
        recent.push(refusal("globex", "carol", 999));
        let all = recent.refusals(None, None);
        assert_eq!(all.len(), RECENT_REFUSALS);
        assert_eq!(all[0].request_id, "r999", "newest first");
        assert!(
            all.iter()
                .all(|r| r.request_id != "r0" && r.request_id != "r5"),
            "oldest dropped"
        );
        let bob = recent.refusals(Some("acme"), Some("bob"));
        assert!(!bob.is_empty() && bob.iter().all(|r| r.principal == "bob"));
        assert_eq!(recent.refusals(Some("globex"), None).len(), 1);
        assert!(recent.refusals(Some("acme"), Some("carol")).is_empty());
    }

    /// A flood of tokenless requests (contract §9's dashboard: the latest
    /// refusals) leaves the refusals of authenticated callers on the page.
    #[test]
    fn tokenless_refusals_do_not_push_policy_refusals_out() {
        let recent = Recent::default();
        recent.push(refusal("acme", "alice", 1));
        for i in 0..RECENT_REFUSALS * 2 {
            let mut r = refusal("", "", 10 + i);
            r.claimed_principal = "mallory".into();
            recent.push(r);
        }
        let all = recent.refusals(None, None);
        assert_eq!(all.len(), RECENT_REFUSALS + 1);
        assert!(all.iter().any(|r| r.request_id == "r1"), "kept");
        assert_eq!(all[0].request_id, format!("r{}", 9 + RECENT_REFUSALS * 2));
        assert_eq!(recent.refusals(None, Some("alice")).len(), 1);
    }

    #[test]
    fn traffic_is_the_difference_to_a_sample_old_enough() {
        let text = "# HELP x\ncredgate_requests_total{product=\"proxy\",decision=\"allowed\",status=\"200\"} 7\n\
                    credgate_requests_total{product=\"proxy\",decision=\"allowed\",status=\"404\"} 3\n\
                    credgate_requests_total{product=\"none\",decision=\"refused\",status=\"401\"} 2\n\
                    credgate_requests_created{product=\"proxy\"} 1\n";
        let now = request_counts(text);
        assert_eq!(now[&("proxy".into(), "allowed".into())], 10);
        assert_eq!(now[&("none".into(), "refused".into())], 2);
        let recent = Recent {
            samples: Mutex::default(),
            ..Recent::default()
        };
        assert!(recent.since(0, &now, 60_000).is_none());
        let mut early = Counts::new();
        early.insert(("proxy".into(), "allowed".into()), 4);
        recent.sample(1_000, early);
        let mut later = Counts::new();
        later.insert(("proxy".into(), "allowed".into()), 9);
        recent.sample(50_000, later);
        // A minute back from 70 s: only the sample at 1 s is old enough.
        let (span, d) = recent.since(70_000, &now, 60_000).unwrap();
        assert_eq!(span, 69_000);
        assert_eq!(d[&("proxy".into(), "allowed".into())], 6);
        assert_eq!(d[&("none".into(), "refused".into())], 2);
        // Ten seconds back: the sample at 50 s.
        let (span, d) = recent.since(70_000, &now, 10_000).unwrap();
        assert_eq!(span, 20_000);
        assert_eq!(d[&("proxy".into(), "allowed".into())], 1);
    }
}
