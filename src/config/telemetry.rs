//! `[telemetry]`: OpenTelemetry traces (`otlp_endpoint`, `service_name`,
//! `sample_ratio`, `trust_incoming_trace`, `max_queued_spans`). It owns the
//! section's file form (`RawTelemetry`), its default, the validated
//! [`TelemetryConfig`] and its checks (an http(s) collector URL, given the
//! OTLP traces path when it has none; a ratio between 0 and 1).
//!
//! It must not know the other sections, nor anything of credgate outside
//! `config` (`config` imports nothing of credgate's: see `src/lib.rs`).
//! Exporting spans is `net::otlp`'s and `telemetry`'s.

use serde::{Deserialize, Serialize};

use super::common::ConfigError;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_incoming_trace: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_spans: Option<usize>,
}

/// `[telemetry]`: OpenTelemetry traces (contract §9).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans go (OTLP over HTTP, protobuf), `…/v1/traces`; `None`:
    /// tracing off.
    pub otlp_endpoint: Option<url::Url>,
    pub service_name: String,
    /// Of the requests that start a trace here, the share sampled; a
    /// trusted incoming `traceparent`'s sampled flag decides for its own.
    pub sample_ratio: f64,
    /// Keep a caller's `traceparent` from anyone, not only trusted proxies.
    pub trust_incoming_trace: bool,
    /// Finished spans waiting for export; more are dropped and counted.
    pub max_queued_spans: usize,
}

/// `telemetry.max_queued_spans` [default: 2048].
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;

pub(super) fn validate_telemetry(raw: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match raw.otlp_endpoint.as_deref() {
        None => None,
        Some(text) => {
            let mut url = url::Url::parse(text).map_err(|e| {
                ConfigError::new(
                    "telemetry.otlp_endpoint",
                    format!("`{text}` is not a URL: {e}"),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ConfigError::new(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL of an OTLP/HTTP collector (port 4318)",
                ));
            }
            // The collector's base URL gets OTLP/HTTP's traces path; a URL
            // with a path of its own is used as given.
            if url.path() == "/" {
                url.set_path("/v1/traces");
            }
            Some(url)
        }
    };
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(ConfigError::new(
            "telemetry.sample_ratio",
            "must be between 0.0 and 1.0",
        ));
    }
    let service_name = raw.service_name.unwrap_or_else(|| "credgate".into());
    if service_name.is_empty() {
        return Err(ConfigError::new(
            "telemetry.service_name",
            "must not be empty",
        ));
    }
    let max_queued_spans = raw.max_queued_spans.unwrap_or(DEFAULT_MAX_QUEUED_SPANS);
    if max_queued_spans == 0 {
        return Err(ConfigError::new(
            "telemetry.max_queued_spans",
            "must be at least 1",
        ));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name,
        sample_ratio,
        trust_incoming_trace: raw.trust_incoming_trace.unwrap_or(false),
        max_queued_spans,
    })
}
