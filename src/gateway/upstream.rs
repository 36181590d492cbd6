//! The connection to Paragon: the shared client (`net`) and the
//! connection-affine pool (`forward`) behind one `send` with credgate's
//! timeouts and error mapping, plus the six base URLs split once so the hot
//! path only concatenates.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::config::{ParagonConfig, Upstream, UpstreamBase};
use crate::error::{GatewayError, UpstreamFailure};
use crate::gateway::forward::{Affinity, ConnPool};
use crate::net::body::{Body, BoxError};
use crate::net::client::{tls_client_config, ClientSettings, HttpClient};
use crate::telemetry::{KindLabel, Metrics, UpstreamLabel};
use http::header::{HeaderValue, HOST};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::Incoming;

/// When a request body last moved (or finished): the upstream timeout
/// counts from there.
struct Progress {
    base: tokio::time::Instant,
    /// Milliseconds after `base` of the last frame or of the end.
    last_ms: std::sync::atomic::AtomicU64,
    /// The caller's body broke off or was malformed (bad chunking): the
    /// exchange then fails because of the caller, not of Paragon.
    caller_failed: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn track(body: Body) -> (Body, Arc<Progress>) {
        let p = Arc::new(Progress {
            base: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            caller_failed: std::sync::atomic::AtomicBool::new(false),
        });
        let tracked = TrackedBody {
            inner: body,
            progress: p.clone(),
        };
        (crate::net::body::stream(tracked), p)
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.base
                + Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let deadline = last + limit;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A request body that records its progress.
struct TrackedBody {
    inner: Body,
    progress: Arc<Progress>,
}

impl http_body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.progress.touch();
        }
        if let std::task::Poll::Ready(Some(Err(_))) = &polled {
            self.progress
                .caller_failed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One Paragon host, ready to build URIs for.
#[derive(Debug, Clone)]
struct Target {
    base: UpstreamBase,
    host: HeaderValue,
}

/// Paragon's five hosts and the clients that reach them: the shared pooled
/// client (HTTP/2 clients, credgate's own calls) and the connection-affine
/// pool for HTTP/1.1 clients (`forward.rs`).
#[derive(Clone)]
pub struct Upstreams {
    client: HttpClient,
    affine: Arc<ConnPool>,
    targets: Arc<[Target]>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").finish_non_exhaustive()
    }
}

impl Upstreams {
    pub fn new(
        paragon: &ParagonConfig,
        client: HttpClient,
        affine: Arc<ConnPool>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let target = |b: &UpstreamBase| -> Result<Target, String> {
            Ok(Target {
                base: b.clone(),
                host: HeaderValue::from_str(b.authority.as_str()).map_err(|e| e.to_string())?,
            })
        };
        // Order matches `Upstream::index`.
        let bases = paragon.upstream_bases();
        let mut targets = Vec::with_capacity(bases.len());
        for b in bases {
            targets.push(target(b)?);
        }
        Ok(Upstreams {
            client,
            affine,
            targets: targets.into(),
            timeout,
            metrics,
        })
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn affine_pool(&self) -> &Arc<ConnPool> {
        &self.affine
    }

    /// The connection-affine pool for a config's hosts.
    pub fn affine_for(
        paragon: &ParagonConfig,
        settings: &ClientSettings,
    ) -> Result<Arc<ConnPool>, String> {
        Ok(ConnPool::new(
            paragon.upstream_bases().map(Clone::clone),
            tls_client_config(paragon.ca_file.as_ref())?,
            settings.connect_timeout,
            settings.idle_timeout,
            settings.max_idle_per_host,
        ))
    }

    /// The upstream URI for a path and query, kept byte for byte.
    pub fn uri(&self, upstream: Upstream, path_and_query: &str) -> Result<Uri, GatewayError> {
        let t = &self.targets[upstream.index()];
        let pq: PathAndQuery = if t.base.path_prefix.is_empty() {
            path_and_query.parse()
        } else {
            format!("{}{}", t.base.path_prefix, path_and_query).parse()
        }
        .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded"))?;
        Uri::builder()
            .scheme(t.base.scheme.clone())
            .authority(t.base.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded"))
    }

    /// The upstream URI for a client's request target, its path and query
    /// kept byte for byte (shared, not copied, when there is no prefix).
    pub fn uri_for(&self, upstream: Upstream, original: &Uri) -> Result<Uri, GatewayError> {
        let t = &self.targets[upstream.index()];
        let pq = match original.path_and_query() {
            Some(pq) if t.base.path_prefix.is_empty() => pq.clone(),
            Some(pq) => return self.uri(upstream, pq.as_str()),
            None => return self.uri(upstream, "/"),
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(t.base.scheme.clone());
        parts.authority = Some(t.base.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts)
            .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded"))
    }

    /// `Host` for an upstream.
    pub fn host(&self, upstream: Upstream) -> &HeaderValue {
        &self.targets[upstream.index()].host
    }

    /// Sends a request and waits at most `server.upstream_timeout` for the
    /// response headers (504 after), mapping transport failures to 502. The
    /// response body streams afterwards, unbounded in time, as a download may
    /// legitimately take long.
    pub async fn send(
        &self,
        upstream: Upstream,
        affinity: Option<&Affinity>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, GatewayError> {
        req.headers_mut().insert(HOST, self.host(upstream).clone());
        let label = UpstreamLabel {
            upstream: upstream.config_key(),
        };
        let start = Instant::now();
        // A request with a body is timed by inactivity: the upload may take
        // as long as it keeps moving, and the answer is due within
        // `upstream_timeout` of its last byte. Bodiless requests (most) get
        // a plain timeout.
        let progress = if http_body::Body::is_end_stream(req.body()) {
            None
        } else {
            let (tracked, progress) =
                Progress::track(std::mem::replace(req.body_mut(), crate::net::body::empty()));
            *req.body_mut() = tracked;
            Some(progress)
        };
        let exchange = async {
            match affinity {
                Some(a) => self
                    .affine
                    .send(a, upstream.index(), req, &self.metrics.upstream_retries)
                    .await
                    .map_err(|e| (e.is_connect(), Box::new(e) as BoxError)),
                None => Box::pin(self.client.request(req))
                    .await
                    .map_err(|e| (e.is_connect(), Box::new(e) as BoxError)),
            }
        };
        // Pinned in place: the timeout and the select poll it by reference
        // instead of moving the whole exchange future into theirs.
        let mut exchange = std::pin::pin!(exchange);
        let result = match (&progress, affinity) {
            // An HTTP/1.1 client connection's request: its connection's
            // one timer (forward.rs), not one registered per request.
            (None, Some(a)) => {
                let mut due = a.answer_due(tokio::time::Instant::now() + self.timeout);
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = exchange.as_mut().poll(cx) {
                        return Poll::Ready(Ok(r));
                    }
                    Pin::new(&mut due).poll(cx).map(|()| Err(()))
                })
                .await
            }
            (None, None) => tokio::time::timeout(self.timeout, exchange.as_mut())
                .await
                .map_err(|_| ()),
            (Some(p), _) => {
                tokio::select! {
                    r = exchange.as_mut() => Ok(r),
                    _ = p.idle_for(self.timeout) => Err(()),
                }
            }
        };
        self.metrics
            .upstream_histogram(label.upstream)
            .observe(start.elapsed());
        let caller_failed = progress
            .as_ref()
            .is_some_and(|p| p.caller_failed.load(std::sync::atomic::Ordering::Acquire));
        match result {
            Ok(Ok(resp)) => Ok(resp),
            // The caller's body broke off or was malformed while it streamed
            // (contract §8): the caller's fault, a 400, and no upstream error.
            Ok(Err(_)) if caller_failed => Err(GatewayError::BadRequest(
                "the request body broke off or is malformed",
            )),
            Ok(Err((connect, e))) => {
                let kind = if connect { "connect" } else { "other" };
                self.metrics
                    .upstream_errors
                    .get_or_create(&KindLabel { kind })
                    .inc();
                tracing::warn!(upstream = upstream.config_key(), error = %e, "request to Paragon failed");
                Err(GatewayError::UpstreamUnavailable(
                    UpstreamFailure::Transport(e),
                ))
            }
            Err(_) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&KindLabel { kind: "timeout" })
                    .inc();
                Err(GatewayError::UpstreamTimeout)
            }
        }
    }
}
