//! `auth.jwks_url`: the identity provider's key set, fetched at start,
//! refreshed every `auth.jwks_refresh`, refetched when a token names an
//! unknown `kid` (at most once per `auth.jwks_min_refetch`, concurrent
//! refetches coalesced into one request), and never replaced by a failed
//! fetch. A refresh that removes a key bumps the generation, which
//! invalidates every cached verification, so a revoked key stops working
//! at the next refresh.
//!
//! The rate limit matters: without it, tokens with random `kid`s turn
//! credgate into a request amplifier against the IdP (Envoy's jwt_authn and
//! several JWKS clients had exactly that bug).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Uri};
use jsonwebtoken::Algorithm;

use super::keys::{parse_jwks, VerifyKey};
use crate::net::body::{empty, read_limited};
use crate::net::client::HttpClient;
use crate::telemetry::Metrics;

/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Retry interval until the first successful fetch.
const INITIAL_RETRY: Duration = Duration::from_secs(2);

/// The settings a source was built with; equal settings on reload reuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    pub url: url::Url,
    pub refresh: Duration,
    pub min_refetch: Duration,
    pub timeout: Duration,
    pub algorithms: Vec<Algorithm>,
}

pub struct JwksSource {
    settings: JwksSettings,
    uri: Uri,
    client: HttpClient,
    keys: ArcSwap<Vec<VerifyKey>>,
    generation: AtomicU64,
    loaded: AtomicBool,
    /// When the key set in use was fetched (wall clock, ms; 0: never).
    fetched_ms: AtomicI64,
    last_attempt: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.settings.url.as_str())
            .finish()
    }
}

impl JwksSource {
    pub fn new(
        settings: JwksSettings,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, String> {
        let uri: Uri = settings
            .url
            .as_str()
            .parse()
            .map_err(|e| format!("auth.jwks_url: {e}"))?;
        Ok(Arc::new(JwksSource {
            settings,
            uri,
            client,
            keys: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            fetched_ms: AtomicI64::new(0),
            last_attempt: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            metrics,
        }))
    }

    pub fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// Starts the background task: fetch now (retrying every 2 s until it
    /// works), then every `jwks_refresh`. It ends when the source is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                let _guard = this.fetch_lock.lock().await;
                this.mark_attempt();
                let ok = this.fetch_and_swap().await;
                drop(_guard);
                let next = if ok || this.is_loaded() {
                    this.settings.refresh
                } else {
                    INITIAL_RETRY.min(this.settings.refresh)
                };
                drop(this);
                tokio::time::sleep(next).await;
            }
        });
    }

    /// A failed fetch keeps the last good key set, if there is one; before
    /// the first, callers get 503 (not 401: their tokens are not at fault).
    fn log_failure(&self, why: &dyn std::fmt::Display) {
        if self.loaded.load(Ordering::Acquire) {
            tracing::warn!(url = %self.settings.url, error = %why, "JWKS fetch failed; keeping the last good key set");
        } else {
            tracing::error!(url = %self.settings.url, error = %why, "JWKS fetch failed and no key set was ever loaded: requests get 503 until one is");
        }
    }

    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// When the key set in use was fetched (ms), if one ever was.
    pub fn fetched_ms(&self) -> Option<i64> {
        Some(self.fetched_ms.load(Ordering::Acquire)).filter(|&ms| ms > 0)
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn mark_attempt(&self) {
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn cooled_down(&self) -> bool {
        self.last_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= self.settings.min_refetch)
    }

    /// A token named a `kid` no current key has: refetch, unless a fetch
    /// happened within `jwks_min_refetch`. Callers arriving together wait
    /// for the one fetch and then see its result.
    pub async fn refetch_for_unknown_kid(&self) {
        // Always take the lock, even inside the cooldown: the attempt is
        // marked when a fetch *starts*, so a caller arriving while it is in
        // flight must wait for it (a rotated-in key would otherwise be
        // refused with the old set). The lock is held only during fetches.
        let _guard = self.fetch_lock.lock().await;
        if !self.cooled_down() {
            return;
        }
        self.mark_attempt();
        self.fetch_and_swap().await;
    }

    /// One fetch; on success the key set is replaced. Returns success.
    async fn fetch_and_swap(&self) -> bool {
        self.metrics.jwks_fetches.inc();
        match tokio::time::timeout(self.settings.timeout, self.fetch()).await {
            Ok(Ok(keys)) => {
                let old = self.keys.load();
                let new_prints: HashSet<(&str, Algorithm)> = keys
                    .iter()
                    .map(|k| (k.fingerprint.as_str(), k.algorithm))
                    .collect();
                let removed = old
                    .iter()
                    .any(|k| !new_prints.contains(&(k.fingerprint.as_str(), k.algorithm)));
                self.metrics.jwks_keys.set(keys.len() as i64);
                tracing::info!(url = %self.settings.url, keys = keys.len(), removed, "JWKS fetched");
                self.keys.store(Arc::new(keys));
                if removed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                self.fetched_ms
                    .store(crate::clock::now_ms(), Ordering::Release);
                self.loaded.store(true, Ordering::Release);
                true
            }
            Ok(Err(e)) => {
                self.metrics.jwks_fetch_failures.inc();
                self.log_failure(&e);
                false
            }
            Err(_) => {
                self.metrics.jwks_fetch_failures.inc();
                self.log_failure(&"no answer within auth.jwks_timeout");
                false
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<VerifyKey>, String> {
        let req = Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(empty())
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("status {}", resp.status()));
        }
        let body = read_limited(resp.into_body(), MAX_JWKS_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        parse_jwks(&body, &self.settings.algorithms)
    }
}
