//! One request's trace (contract §9, `[telemetry]`): a server span for the
//! request, an event per §1 phase as it completes, and a client span for
//! the call to Paragon, whose context goes to Paragon in `traceparent` and
//! `tracestate` (W3C Trace Context).
//!
//! A caller's `traceparent` is the parent only when the caller is one of
//! `server.trusted_proxies` or `telemetry.trust_incoming_trace` is set;
//! anyone else's starts a new trace that links to it, so a caller can
//! neither join an operator's trace nor force sampling. Attributes come
//! from the audit record (product, integration, decision, reason, code,
//! status, request id); no token, credential secret or body is ever one.

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Link, SpanKind, Status, TraceContextExt, TraceState, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

use crate::net::body::Body;

/// The W3C Trace Context fields credgate sets on the way to Paragon.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // More than one `traceparent` is malformed: no parent.
        let mut all = self.0.get_all(key).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        first.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` is no field at all (W3C Trace Context §3.3).
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(v)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, v);
        }
    }
}

/// A request's spans.
pub(crate) struct Trace {
    tracer: SdkTracer,
    /// The server span's context.
    request: Context,
    /// The client span of the call to Paragon, once made.
    upstream: Option<Context>,
    trace_id: String,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

impl Trace {
    /// Starts the server span of a request. `trusted`: the caller's own
    /// trace context may be the parent.
    pub(crate) fn start(
        tracer: &SdkTracer,
        headers: &HeaderMap,
        trusted: bool,
        method: &http::Method,
        path: &str,
    ) -> Box<Trace> {
        let incoming = TraceContextPropagator::new().extract(&Headers(headers));
        let remote = incoming.span().span_context().clone();
        let builder = tracer
            .span_builder(format!("{method} credgate"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.as_str().to_string()),
                KeyValue::new("url.path", path.to_string()),
            ]);
        let span = if trusted {
            builder.start_with_context(tracer, &incoming)
        } else if remote.is_valid() {
            // The caller's trace is linked, not joined; its `tracestate`
            // is not carried over.
            let link = opentelemetry::trace::SpanContext::new(
                remote.trace_id(),
                remote.span_id(),
                remote.trace_flags(),
                true,
                TraceState::default(),
            );
            builder
                .with_links(vec![Link::with_context(link)])
                .start_with_context(tracer, &Context::new())
        } else {
            builder.start_with_context(tracer, &Context::new())
        };
        let request = Context::new().with_span(span);
        let trace_id = request.span().span_context().trace_id().to_string();
        Box::new(Trace {
            tracer: tracer.clone(),
            request,
            upstream: None,
            trace_id,
        })
    }

    pub(crate) fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// A §1 phase completed.
    pub(crate) fn mark(&self, phase: &'static str) {
        self.request.span().add_event(phase, Vec::new());
    }

    /// The request goes to Paragon: a client span, whose context replaces
    /// whatever trace headers the caller sent.
    pub(crate) fn forward(&mut self, req: &mut Request<Body>) {
        let span = self
            .tracer
            .span_builder(format!("{} paragon", req.method()))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", req.method().as_str().to_string()),
                KeyValue::new(
                    "server.address",
                    req.uri().host().unwrap_or_default().to_string(),
                ),
                KeyValue::new("url.path", req.uri().path().to_string()),
            ])
            .start_with_context(&self.tracer, &self.request);
        let cx = self.request.with_span(span);
        let headers = req.headers_mut();
        headers.remove(TRACEPARENT);
        headers.remove(TRACESTATE);
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
        self.upstream = Some(cx);
    }

    /// Ends the spans with what the audit record says of the request.
    pub(crate) fn finish(&self, record: &crate::audit::Record<'_>) {
        if let Some(cx) = &self.upstream {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(record.status),
            ));
            span.end();
        }
        let span = self.request.span();
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(record.status)),
            KeyValue::new("credgate.request_id", record.request_id.to_string()),
            KeyValue::new("credgate.product", record.product.to_string()),
            KeyValue::new("credgate.decision", record.decision.to_string()),
            KeyValue::new("credgate.reason", record.reason.to_string()),
        ];
        for (key, value) in [
            ("credgate.integration", record.integration),
            ("credgate.credential", record.credential),
            ("credgate.code", record.code.unwrap_or("")),
            ("credgate.rule", record.rule.unwrap_or("")),
        ] {
            if !value.is_empty() {
                attributes.push(KeyValue::new(key, value.to_string()));
            }
        }
        span.set_attributes(attributes);
        if record.status >= 500 {
            span.set_status(Status::error(record.reason.to_string()));
        }
        span.end();
    }
}
