//! Logs and metrics.
//!
//! Logs: `tracing`, filtered by `RUST_LOG` (default `info`), as JSON or
//! human-readable text. The access log (`credgate::access`) has stable
//! field names. (The audit trail is not a log target: `crate::audit`.) Values a caller controls pass through
//! [`clean`] so that CR/LF cannot forge a log line in the text format
//! (the JSON format escapes them anyway), and are recorded as `&str`, which
//! the text format quotes, so that spaces cannot forge a field. Tokens are never recorded: no
//! code path hands an `Authorization` value or a key to `tracing`.
//!
//! Metrics: Prometheus text from `prometheus-client`. Histograms on the
//! request path are lock-free ([`AtomicHistogram`]); the client library's
//! own histogram takes a mutex per observation.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

pub const ACCESS_TARGET: &str = "credgate::access";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Installs the global subscriber. `format` None: JSON unless stdout is a
/// terminal.
pub fn init_logging(format: Option<LogFormat>) {
    init_logging_with(format, "info");
}

/// As [`init_logging`], with another filter when `RUST_LOG` is unset.
pub fn init_logging_with(format: Option<LogFormat>, default_filter: &str) {
    use std::io::IsTerminal;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Escapes control characters (CR, LF, ESC, ...) in a caller-controlled
/// value before it is logged, so one request cannot write two log lines.
pub fn clean(s: &str) -> Cow<'_, str> {
    // U+2028/2029 end lines for some log viewers and JavaScript consumers.
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .flat_map(|c| {
                let escaped: Vec<char> = if unsafe_char(c) {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                escaped
            })
            .collect(),
    )
}

/// A histogram with fixed buckets whose observations are a few relaxed
/// atomic adds: no lock on the request path.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    /// One count per bound, plus the +Inf bucket (not cumulative).
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in nanoseconds-equivalent units (value × 1e9), to stay integral.
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &[f64]) -> Self {
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds: bounds.to_vec(),
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                count: AtomicU64::new(0),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Latency buckets from 100 µs to 60 s.
    pub fn latency() -> Self {
        Self::new(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0, 30.0, 60.0,
        ])
    }

    pub fn observe_secs(&self, v: f64) {
        let i = self
            .inner
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.inner.bounds.len());
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        self.inner
            .sum_nanos
            .fetch_add((v.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn observe(&self, d: std::time::Duration) {
        self.observe_secs(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A histogram resolved ahead of time, or looked up for a label that was not.
pub enum AtomicHistogramRef<'a> {
    Resolved(&'a AtomicHistogram),
    Owned(AtomicHistogram),
}

impl std::ops::Deref for AtomicHistogramRef<'_> {
    type Target = AtomicHistogram;
    fn deref(&self) -> &AtomicHistogram {
        match self {
            AtomicHistogramRef::Resolved(h) => h,
            AtomicHistogramRef::Owned(h) => h,
        }
    }
}

/// Statuses whose `requests` counters are resolved once per product.
const COMMON_STATUSES: [u16; 3] = [200, 201, 204];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub product: &'static str,
    pub decision: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigInfoLabels {
    pub sha256: String,
    pub acl_sha256: String,
    pub rules_sha256: String,
    pub loaded_at: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProductLabel {
    pub product: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    pub scope: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// A rule name: 1 to 64 of `A-Za-z0-9-_.:`, from the operator's file.
    pub rule: std::sync::Arc<str>,
    pub effect: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A worker's index (`server.scheduler = "workers"`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: u32,
}

/// Every metric credgate exports. Cheap to clone pieces out of; built once.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<ProductLabel, AtomicHistogram>,
    pub upstream_duration: Family<UpstreamLabel, AtomicHistogram>,
    /// The members of the two families above, resolved once: the request
    /// path observes them without a family lookup (hash and read lock).
    request_histograms: Vec<(&'static str, AtomicHistogram)>,
    upstream_histograms: Vec<(&'static str, AtomicHistogram)>,
    /// Members of `requests` for the commonest outcome of each product
    /// (allowed, with one of [`COMMON_STATUSES`]), resolved on first use so
    /// that no series is exported before it has counted anything.
    allowed_counters: Vec<(&'static str, [OnceLock<Counter>; COMMON_STATUSES.len()])>,
    pub upstream_errors: Family<KindLabel, Counter>,
    /// Requests sent to Paragon a second time, on a new connection, after
    /// a reused connection closed under them (contract §1 step 7).
    pub upstream_retries: Counter,
    pub credential_cache_hits: Counter,
    pub credential_cache_misses: Counter,
    pub credential_cache_loads: Counter,
    pub credential_cache_load_errors: Counter,
    pub credential_cache_stale_served: Counter,
    pub credential_cache_users: Gauge,
    /// Open MCP sessions on this replica (set when scraped).
    pub mcp_sessions: Gauge,
    pub credential_cache_refreshes: Counter,
    pub verified_token_cache_hits: Counter,
    pub verified_token_cache_misses: Counter,
    pub jwks_fetches: Counter,
    pub jwks_fetch_failures: Counter,
    pub jwks_keys: Gauge,
    pub token_mints: Counter,
    pub mint_cache_hits: Counter,
    /// Members' `X-Paragon-*` request fields credgate does not know, removed.
    pub headers_removed: Counter,
    /// Audit records that could not be written.
    pub audit_write_errors: Counter,
    /// Finished spans dropped because the export queue was full.
    pub trace_spans_dropped: Counter,
    /// Spans in batches the collector did not take.
    pub trace_export_errors: Counter,
    /// Trigger-subscription owners looked up at Paragon.
    pub subscription_lookups: Counter,
    /// Questions to the AuthZEN decision point (`authzen.pdp_url`,
    /// contract §14) that failed: no answer in time, a transport error, a
    /// status other than 2xx, a malformed answer, or an evaluation the
    /// decision point reported as an error. Each one permitted nothing.
    pub authzen_pdp_errors: Counter,
    pub connections_active: Gauge,
    /// Client connections accepted, by the worker that accepted them (how
    /// evenly the kernel spreads them over the listeners).
    pub connections_accepted: Family<WorkerLabel, Counter>,
    pub connections_refused: Family<KindLabel, Counter>,
    pub connection_errors: Family<KindLabel, Counter>,
    /// Admin-listener requests refused before routing (contract §9), by
    /// code: `forbidden_host`, `forbidden_origin`, `forbidden_content_type`.
    pub admin_refused: Family<ReasonLabel, Counter>,
    /// CORS preflights answered (contract §13), `allowed` or `forbidden`.
    pub cors_preflights: Family<ResultLabel, Counter>,
    pub config_reloads: Family<KindLabel, Counter>,
    /// One series at 1: the config (and ACL) this replica runs, and since when.
    pub config_info: Family<ConfigInfoLabels, Gauge>,
    /// 1 for each product whose refusals by policy are shadowed (§5a).
    pub policy_shadow: Family<ProductLabel, Gauge>,
    /// Requests refused with 429 (§5c), by `principal`, `user` or `rule`.
    pub rate_limited: Family<ScopeLabel, Counter>,
    /// Policy rules that took effect (§5b), by rule and effect; `shadow`
    /// for rules in shadow mode that would have.
    pub rule_matches: Family<RuleLabel, Counter>,
    config_info_current: std::sync::Mutex<Option<ConfigInfoLabels>>,
    pub cluster_degraded: Gauge,
    pub cluster_events_applied: Counter,
    pub cluster_errors: Family<KindLabel, Counter>,
    /// Queries to the cluster store for sync owners (one per batch).
    pub cluster_sync_lookups: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Families of histograms build their members with `Default`: latency buckets.
impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram::latency()
    }
}

/// `upstream_errors_total{kind}`'s kinds.
pub const UPSTREAM_ERROR_KINDS: [&str; 3] = ["connect", "timeout", "other"];
/// `connections_refused_total{kind}`'s kinds.
pub const REFUSED_CONNECTION_KINDS: [&str; 3] =
    ["max_connections", "tls_handshake", "tls_handshake_timeout"];

impl Metrics {
    /// Marks `info` as the config in force: its series is 1, the one it
    /// replaces is removed.
    /// Which products are in shadow mode: 1 for those, 0 for the rest.
    pub fn set_shadow(&self, shadowed: &std::collections::BTreeSet<crate::config::Product>) {
        for p in crate::config::Product::ALL {
            self.policy_shadow
                .get_or_create(&ProductLabel {
                    product: p.as_str(),
                })
                .set(i64::from(shadowed.contains(&p)));
        }
    }

    pub fn set_config_info(&self, info: ConfigInfoLabels) {
        let mut current = self
            .config_info_current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(old) = current.take() {
            self.config_info.remove(&old);
        }
        self.config_info.get_or_create(&info).set(1);
        *current = Some(info);
    }

    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("credgate");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::default(),
            upstream_duration: Family::default(),
            request_histograms: Vec::new(),
            upstream_histograms: Vec::new(),
            allowed_counters: Vec::new(),
            upstream_errors: Family::default(),
            upstream_retries: Counter::default(),
            credential_cache_hits: Counter::default(),
            credential_cache_misses: Counter::default(),
            credential_cache_loads: Counter::default(),
            credential_cache_load_errors: Counter::default(),
            credential_cache_stale_served: Counter::default(),
            credential_cache_users: Gauge::default(),
            mcp_sessions: Gauge::default(),
            credential_cache_refreshes: Counter::default(),
            verified_token_cache_hits: Counter::default(),
            verified_token_cache_misses: Counter::default(),
            jwks_fetches: Counter::default(),
            jwks_fetch_failures: Counter::default(),
            jwks_keys: Gauge::default(),
            token_mints: Counter::default(),
            mint_cache_hits: Counter::default(),
            headers_removed: Counter::default(),
            audit_write_errors: Counter::default(),
            trace_spans_dropped: Counter::default(),
            trace_export_errors: Counter::default(),
            subscription_lookups: Counter::default(),
            authzen_pdp_errors: Counter::default(),
            connections_active: Gauge::default(),
            connections_accepted: Family::default(),
            connections_refused: Family::default(),
            connection_errors: Family::default(),
            admin_refused: Family::default(),
            cors_preflights: Family::default(),
            config_reloads: Family::default(),
            config_info: Family::default(),
            policy_shadow: Family::default(),
            rate_limited: Family::default(),
            rule_matches: Family::default(),
            config_info_current: std::sync::Mutex::new(None),
            cluster_degraded: Gauge::default(),
            cluster_events_applied: Counter::default(),
            cluster_errors: Family::default(),
            cluster_sync_lookups: Counter::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Requests by product, decision (allowed, refused, failed) and status",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Whole-request latency as seen by credgate",
            m.request_duration.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time to Paragon's response headers",
            m.upstream_duration.clone(),
        );
        r.register(
            "upstream_errors",
            "Requests to Paragon that failed (connect, timeout, other)",
            m.upstream_errors.clone(),
        );
        r.register(
            "upstream_retries",
            "Requests retried once on a new connection after a reused connection to Paragon closed before answering",
            m.upstream_retries.clone(),
        );
        r.register(
            "credential_cache_hits",
            "Credential-list cache hits",
            m.credential_cache_hits.clone(),
        );
        r.register(
            "credential_cache_misses",
            "Credential-list cache misses",
            m.credential_cache_misses.clone(),
        );
        r.register(
            "credential_cache_loads",
            "GET /sdk/me loads",
            m.credential_cache_loads.clone(),
        );
        r.register(
            "credential_cache_load_errors",
            "GET /sdk/me loads that failed",
            m.credential_cache_load_errors.clone(),
        );
        r.register(
            "credential_cache_stale_served",
            "Requests decided on a stale list within cache.stale_if_error",
            m.credential_cache_stale_served.clone(),
        );
        r.register(
            "credential_cache_refreshes",
            "Reloads of a cached list for a credential not in it",
            m.credential_cache_refreshes.clone(),
        );
        r.register(
            "credential_cache_users",
            "Users with a cached credential list",
            m.credential_cache_users.clone(),
        );
        r.register(
            "mcp_sessions",
            "MCP sessions held on this replica (idle ones count until swept at the cap)",
            m.mcp_sessions.clone(),
        );
        r.register(
            "verified_token_cache_hits",
            "Caller tokens served from the verified-token cache",
            m.verified_token_cache_hits.clone(),
        );
        r.register(
            "verified_token_cache_misses",
            "Caller tokens verified cryptographically",
            m.verified_token_cache_misses.clone(),
        );
        r.register(
            "jwks_fetches",
            "JWKS fetches attempted",
            m.jwks_fetches.clone(),
        );
        r.register(
            "jwks_fetch_failures",
            "JWKS fetches that failed",
            m.jwks_fetch_failures.clone(),
        );
        r.register("jwks_keys", "Keys in the current JWKS", m.jwks_keys.clone());
        r.register(
            "token_mints",
            "Upstream Paragon tokens signed",
            m.token_mints.clone(),
        );
        r.register(
            "mint_cache_hits",
            "Upstream tokens reused from the cache",
            m.mint_cache_hits.clone(),
        );
        r.register(
            "headers_removed",
            "X-Paragon-* request fields of members that credgate does not know, removed",
            m.headers_removed.clone(),
        );
        r.register(
            "audit_write_errors",
            "Audit records that could not be written",
            m.audit_write_errors.clone(),
        );
        r.register(
            "subscription_lookups",
            "Trigger-subscription owners looked up at Paragon",
            m.subscription_lookups.clone(),
        );
        r.register(
            "authzen_pdp_errors",
            "Questions to the AuthZEN decision point (authzen.pdp_url) that failed: timeout, transport error, non-2xx status, malformed answer or a reported evaluation error; each permitted nothing",
            m.authzen_pdp_errors.clone(),
        );
        r.register(
            "trace_spans_dropped",
            "Finished spans dropped because the export queue was full",
            m.trace_spans_dropped.clone(),
        );
        r.register(
            "trace_export_errors",
            "Spans in batches the OTLP collector did not take",
            m.trace_export_errors.clone(),
        );
        r.register(
            "connections_active",
            "Open client connections",
            m.connections_active.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted, by worker",
            m.connections_accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections refused (max_connections, tls_handshake)",
            m.connections_refused.clone(),
        );
        r.register(
            "connection_errors",
            "Client connections ended by an HTTP error hyper answered itself (framing, header size or timeout)",
            m.connection_errors.clone(),
        );
        r.register(
            "admin_refused",
            "Admin-listener requests refused: a Host not naming it, a cross-site Origin, a state change that is not JSON",
            m.admin_refused.clone(),
        );
        r.register(
            "cors_preflights",
            "CORS preflights credgate answered itself, by result (allowed, forbidden)",
            m.cors_preflights.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads by result: ok, invalid (the new config did not validate), rejected (it could not be applied)",
            m.config_reloads.clone(),
        );
        r.register(
            "config_info",
            "The config in force: SHA-256 of the config, ACL and rules files, and when it was loaded",
            m.config_info.clone(),
        );
        r.register(
            "policy_shadow",
            "1 for a product in shadow mode (refusals by policy recorded and forwarded), else 0",
            m.policy_shadow.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused with 429 rate_limited, by scope (principal, user, rule)",
            m.rate_limited.clone(),
        );
        r.register(
            "rule_matches",
            "Policy rules that took effect, by rule and effect (allow, deny, limit, or shadow for a rule in shadow mode)",
            m.rule_matches.clone(),
        );
        r.register(
            "cluster_degraded",
            "1 while the cluster store is unreachable",
            m.cluster_degraded.clone(),
        );
        r.register(
            "cluster_events_applied",
            "Invalidation events applied from other replicas",
            m.cluster_events_applied.clone(),
        );
        r.register(
            "cluster_errors",
            "Cluster store errors by operation",
            m.cluster_errors.clone(),
        );
        r.register(
            "cluster_sync_lookups",
            "Queries to the cluster store for sync owners (one per batch of ids)",
            m.cluster_sync_lookups.clone(),
        );
        let request_histograms: Vec<_> = crate::config::Product::ALL
            .iter()
            .map(|p| p.as_str())
            .chain(std::iter::once("none"))
            .map(|product| {
                (
                    product,
                    m.request_duration
                        .get_or_create(&ProductLabel { product })
                        .clone(),
                )
            })
            .collect();
        let upstream_histograms = crate::config::Upstream::ALL
            .iter()
            .map(|u| u.config_key())
            .map(|upstream| {
                (
                    upstream,
                    m.upstream_duration
                        .get_or_create(&UpstreamLabel { upstream })
                        .clone(),
                )
            })
            .collect();
        let allowed_counters = request_histograms
            .iter()
            .map(|(product, _)| (*product, Default::default()))
            .collect();
        // Error counters exist at 0 from the start, so an alert on their
        // rate has a series before the first error.
        for kind in UPSTREAM_ERROR_KINDS {
            drop(m.upstream_errors.get_or_create(&KindLabel { kind }));
        }
        for kind in REFUSED_CONNECTION_KINDS {
            drop(m.connections_refused.get_or_create(&KindLabel { kind }));
        }
        Arc::new(Metrics {
            registry,
            allowed_counters,
            request_histograms,
            upstream_histograms,
            ..m
        })
    }

    /// Counts one request in `requests`. The commonest outcomes skip the
    /// family's lookup (a hash of the labels under a read lock).
    pub fn count_request(&self, product: &'static str, decision: &'static str, status: u16) {
        let labels = || RequestLabels {
            product,
            decision,
            status,
        };
        let slot = (decision == "allowed")
            .then(|| COMMON_STATUSES.iter().position(|s| *s == status))
            .flatten()
            .and_then(|i| {
                self.allowed_counters
                    .iter()
                    .find(|(p, _)| *p == product)
                    .map(|(_, slots)| &slots[i])
            });
        match slot {
            Some(slot) => slot
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
    }

    /// The latency histogram of a product.
    pub fn request_histogram(&self, product: &'static str) -> AtomicHistogramRef<'_> {
        match self.request_histograms.iter().find(|(p, _)| *p == product) {
            Some((_, h)) => AtomicHistogramRef::Resolved(h),
            None => AtomicHistogramRef::Owned(
                self.request_duration
                    .get_or_create(&ProductLabel { product })
                    .clone(),
            ),
        }
    }

    /// The time-to-headers histogram of an upstream.
    pub fn upstream_histogram(&self, upstream: &'static str) -> AtomicHistogramRef<'_> {
        match self
            .upstream_histograms
            .iter()
            .find(|(u, _)| *u == upstream)
        {
            Some((_, h)) => AtomicHistogramRef::Resolved(h),
            None => AtomicHistogramRef::Owned(
                self.upstream_duration
                    .get_or_create(&UpstreamLabel { upstream })
                    .clone(),
            ),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_request_counts_resolved_and_unresolved_outcomes_alike() {
        let m = Metrics::new();
        let line = |product: &str, decision: &str, status: u16| {
            format!("credgate_requests_total{{product=\"{product}\",decision=\"{decision}\",status=\"{status}\"}}")
        };
        assert!(!m.encode().contains("credgate_requests_total{"));
        m.count_request("proxy", "allowed", 200);
        m.count_request("proxy", "allowed", 200);
        m.count_request("proxy", "allowed", 404);
        m.count_request("proxy", "refused", 403);
        m.count_request("actionkit", "allowed", 200);
        let text = m.encode();
        for (product, decision, status, count) in [
            ("proxy", "allowed", 200, 2),
            ("proxy", "allowed", 404, 1),
            ("proxy", "refused", 403, 1),
            ("actionkit", "allowed", 200, 1),
        ] {
            let expected = format!("{} {count}\n", line(product, decision, status));
            assert!(text.contains(&expected), "{expected}: {text}");
        }
        assert!(!text.contains(&line("proxy", "allowed", 201)), "{text}");
    }

    #[test]
    fn clean_escapes_control_characters_only() {
        assert_eq!(clean("alice"), "alice");
        assert!(matches!(clean("alice"), Cow::Borrowed(_)));
        assert_eq!(clean("a\r\nfake=1"), "a\\r\\nfake=1");
        assert_eq!(clean("\u{1b}[31m"), "\\u{1b}[31m");
        assert_eq!(clean("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(
            clean("café \"q\""),
            "café \"q\"",
            "only characters that could break a line are escaped"
        );
    }

    #[test]
    fn histogram_counts_into_buckets_and_encodes() {
        let m = Metrics::new();
        let h = m
            .request_duration
            .get_or_create(&ProductLabel { product: "proxy" })
            .clone();
        h.observe_secs(0.0002);
        h.observe_secs(0.003);
        h.observe_secs(100.0);
        assert_eq!(h.count(), 3);
        m.requests
            .get_or_create(&RequestLabels {
                product: "proxy",
                decision: "allowed",
                status: 200,
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("credgate_request_duration_seconds_count{product=\"proxy\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "credgate_request_duration_seconds_bucket{le=\"0.00025\",product=\"proxy\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "credgate_request_duration_seconds_bucket{le=\"+Inf\",product=\"proxy\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "credgate_requests_total{product=\"proxy\",decision=\"allowed\",status=\"200\"} 1"
            ),
            "{text}"
        );
    }
}
