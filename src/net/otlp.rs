//! OpenTelemetry traces out (contract §9, `[telemetry]`): spans are made
//! with the `opentelemetry` API and sent by `opentelemetry-otlp`'s OTLP/HTTP
//! protobuf exporter over credgate's own hyper client ([`OtlpClient`]), so
//! no second HTTP stack comes in.
//!
//! Export never blocks or slows a request: a finished span is handed to a
//! bounded queue (`telemetry.max_queued_spans`) with a non-blocking send;
//! when the queue is full the span is dropped and counted
//! (`credgate_trace_spans_dropped_total`). One background task takes
//! batches off the queue and exports them, each export bounded in time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::config::TelemetryConfig;
use crate::net::body::{full, read_limited};
use crate::net::client::HttpClient;

/// Spans sent to the collector in one request, at most.
const MAX_BATCH: usize = 512;
/// How long a partial batch waits for more spans.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// One export, at most (connect, send, answer).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The collector's answer is read up to this size.
const MAX_ANSWER: u64 = 64 * 1024;

/// The exporter's transport: credgate's pooled hyper client.
#[derive(Clone)]
pub struct OtlpClient(HttpClient);

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpClient")
    }
}

type Answer = Result<http::Response<Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for OtlpClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let exchange = async {
                let resp = self.0.request(request.map(full)).await?;
                let (parts, body) = resp.into_parts();
                let body = read_limited(body, MAX_ANSWER)
                    .await
                    .map_err(|_| "the collector's answer could not be read")?;
                Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
            };
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .map_err(|_| "the collector did not answer in time")?
        })
    }
}

/// Hands finished spans to the export task without ever waiting.
#[derive(Debug)]
struct QueueProcessor {
    queue: mpsc::Sender<SpanData>,
    dropped: Counter,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A running trace pipeline: the tracer requests use, and the settings it
/// was built from (a reload with the same ones keeps it).
pub struct Tracing {
    pub settings: TelemetryConfig,
    pub tracer: SdkTracer,
    _provider: SdkTracerProvider,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("endpoint", &self.settings.otlp_endpoint)
            .finish()
    }
}

/// Counters of the pipeline (`credgate_trace_*`).
#[derive(Clone, Default)]
pub struct TraceCounters {
    pub dropped: Counter,
    pub export_errors: Counter,
}

impl Tracing {
    /// The pipeline `cfg` asks for (`None` when `otlp_endpoint` is unset).
    /// Call inside the runtime that is to run the export task.
    pub fn start(
        cfg: &TelemetryConfig,
        client: HttpClient,
        counters: TraceCounters,
    ) -> Result<Option<Arc<Tracing>>, String> {
        let Some(endpoint) = &cfg.otlp_endpoint else {
            return Ok(None);
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(OtlpClient(client))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        // The exporter runs apart from the provider: it is told the
        // resource (`service.name`) itself.
        exporter.set_resource(&resource);
        let (queue, mut spans) = mpsc::channel::<SpanData>(cfg.max_queued_spans);
        let errors = counters.export_errors.clone();
        tokio::spawn(async move {
            while let Some(first) = spans.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + BATCH_WAIT;
                while batch.len() < MAX_BATCH {
                    match tokio::time::timeout_at(deadline, spans.recv()).await {
                        Ok(Some(s)) => batch.push(s),
                        Ok(None) | Err(_) => break,
                    }
                }
                let count = batch.len() as u64;
                if let Err(e) = exporter.export(batch).await {
                    errors.inc_by(count);
                    tracing::debug!(error = %e, spans = count, "exporting spans failed");
                }
            }
        });
        let provider = SdkTracerProvider::builder()
            .with_span_processor(QueueProcessor {
                queue,
                dropped: counters.dropped,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("credgate");
        Ok(Some(Arc::new(Tracing {
            settings: cfg.clone(),
            tracer,
            _provider: provider,
        })))
    }
}
