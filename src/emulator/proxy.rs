//! The Proxy API, `/projects/{p}/sdk/proxy/{type|custom/{id}}/{rest}`
//! (`paragon-api.md` §4.3). No provider is contacted: the "provider"
//! answers with what it received, `{"method", "path", "query", "body"}`,
//! wrapped as `{"output": ...}` unless `X-Paragon-Use-Raw-Response: 1`.
//!
//! Test hooks, as `{rest}`:
//! * `__download/{n}`: `n` bytes streamed raw; byte `k` is `k % 256`, so a
//!   test can check content without the emulator buffering anything.
//! * `__upload`: the request body is consumed as a stream and counted:
//!   `{"output": {"bytes": n}}`.
//! * `__slow/{ms}`: waits `ms` (at most 10 minutes) before the echo.
//! * `__redirect`: 302 to `https://elsewhere.example/x`.
//! * `__status/{code}`: that status (200-599), `{"output": {"status": code}}`.
//!
//! The provider target is `{rest}`, or `X-Paragon-Proxy-Url` (a path or a
//! full URL, Paragon's other way to name it; the header wins when both are
//! given, which Paragon does not document). A full URL is read the WHATWG
//! way, as Node.js reads it, and the echo's `target` says which host the
//! provider token would have gone to: a test can see a URL that should
//! never have reached Paragon. The echo also reports the other Proxy API
//! headers Paragon reads (`X-Paragon-Use-Raw-Response`,
//! `X-Paragon-Use-Slack-Token-Type`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::call::BODY_IDLE_TIMEOUT;
use super::call::{json_response, ApiError, Call, Handled, Outcome};
use super::state::{lock, RECORDED_BODY_BYTES};
use crate::net::body::{empty, stream};

/// The integration a Proxy API path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyTarget<'a> {
    Type(&'a str),
    /// `/sdk/proxy/custom/{integrationId}/...`.
    CustomId(&'a str),
}

pub(crate) const UPLOAD: &str = "__upload";
const RAW_HEADER: &str = "x-paragon-use-raw-response";
const PROXY_URL_HEADER: &str = "x-paragon-proxy-url";
const SLACK_TOKEN_TYPE_HEADER: &str = "x-paragon-use-slack-token-type";
/// What a relative provider path resolves against.
const PROVIDER_BASE: &str = "https://provider.invalid/";

/// Where the provider request would go: `{"host", "path", "via"}`.
fn provider_target(rest: &str, header: Option<&str>) -> Value {
    let (text, via) = match header {
        Some(h) => (h, "header"),
        None => (rest, "path"),
    };
    // A full URL is what parses on its own (Node's `new URL(text)`); any
    // other text resolves against the provider's base.
    let base = url::Url::parse(PROVIDER_BASE).expect("static URL");
    let parsed = url::Url::parse(text.trim())
        .ok()
        .filter(|u| u.has_host())
        .map_or_else(|| base.join(text), Ok);
    match parsed {
        Ok(u) => json!({
            "host": u.host_str().unwrap_or(""),
            "path": u.path(),
            "query": u.query(),
            "via": via,
        }),
        Err(_) => json!({"host": null, "path": text, "via": via}),
    }
}
/// `__download/{n}` serves at most 1 TiB.
const MAX_DOWNLOAD_BYTES: u64 = 1 << 40;
const MAX_SLOW_MS: u64 = 10 * 60 * 1000;
/// Size of each generated download chunk (a multiple of 256, so every
/// chunk starts the pattern afresh).
const CHUNK: usize = 64 * 1024;

/// `X-Paragon-Use-Raw-Response` set to `1` or `true`.
fn raw_requested(headers: &HeaderMap) -> bool {
    headers
        .get(RAW_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
}

/// The provider's answer, wrapped or raw.
fn provider_reply(status: StatusCode, provider: Value, raw: bool, credential: String) -> Outcome {
    if raw {
        Outcome::raw(json_response(status, &provider), Some(credential))
    } else {
        Outcome::json(status, json!({"output": provider}), Some(credential))
    }
}

pub(crate) async fn handle(
    call: &Call<'_>,
    target: ProxyTarget<'_>,
    rest: &str,
    incoming: Option<Incoming>,
) -> Handled {
    let credential = {
        let w = lock(&call.state.world);
        let integration = match target {
            ProxyTarget::Type(t) => t.to_string(),
            ProxyTarget::CustomId(id) => {
                w.integration_with_id(id)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        ApiError::not_found("integration_not_found", "no integration with this id")
                    })?
            }
        };
        call.credential_for(&w, &integration)?
    };
    let raw = raw_requested(call.headers);
    let header_target = call
        .headers
        .get(PROXY_URL_HEADER)
        .and_then(|v| v.to_str().ok());
    let provider_target = provider_target(rest, header_target);
    // The test hooks below read the provider path, however it was named.
    let hook_path = header_target.map(|h| h.trim_start_matches('/'));
    let rest = hook_path.unwrap_or(rest);
    if rest == UPLOAD {
        return upload(incoming, raw, credential).await;
    }
    if let Some(n) = rest.strip_prefix("__download/") {
        let n: u64 = n
            .parse()
            .ok()
            .filter(|n| *n <= MAX_DOWNLOAD_BYTES)
            .ok_or_else(|| ApiError::bad_request("__download/{n}: n must be 0 to 2^40"))?;
        return Ok(Outcome::raw(download(n), Some(credential)));
    }
    if let Some(ms) = rest.strip_prefix("__slow/") {
        let ms: u64 = ms
            .parse()
            .ok()
            .filter(|ms| *ms <= MAX_SLOW_MS)
            .ok_or_else(|| ApiError::bad_request("__slow/{ms}: ms must be 0 to 600000"))?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if rest == "__redirect" {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().insert(
            LOCATION,
            HeaderValue::from_static("https://elsewhere.example/x"),
        );
        return Ok(Outcome::raw(r, Some(credential)));
    }
    if let Some(code) = rest.strip_prefix("__status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| ApiError::bad_request("__status/{code}: code must be 200 to 599"))?;
        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            let mut r = Response::new(empty());
            *r.status_mut() = status;
            return Ok(Outcome::raw(r, Some(credential)));
        }
        return Ok(provider_reply(
            status,
            json!({"status": status.as_u16()}),
            raw,
            credential,
        ));
    }
    let header = |n: &str| call.headers.get(n).and_then(|v| v.to_str().ok());
    let provider = json!({
        "method": call.method.as_str(),
        "path": format!("/{rest}"),
        "query": call.query,
        "body": call.body_value(),
        "target": provider_target,
        "paragonHeaders": {
            "useRawResponse": header(RAW_HEADER),
            "useSlackTokenType": header(SLACK_TOKEN_TYPE_HEADER),
        },
    });
    Ok(provider_reply(StatusCode::OK, provider, raw, credential))
}

/// Consumes the request body frame by frame, keeping only the prefix the
/// request log records.
async fn upload(incoming: Option<Incoming>, raw: bool, credential: String) -> Handled {
    let Some(mut body) = incoming else {
        return Err(ApiError::bad_request("no request body to stream"));
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut n: u64 = 0;
    loop {
        let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body stalled",
                )
            })?;
        let Some(frame) = next else {
            break;
        };
        let frame =
            frame.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            let room = RECORDED_BODY_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    let mut outcome = provider_reply(StatusCode::OK, json!({"bytes": n}), raw, credential);
    outcome.streamed_body = Some((kept, n));
    Ok(outcome)
}

fn download(n: u64) -> Response<crate::net::body::Body> {
    let mut r = Response::new(stream(Pattern::new(n)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
    r
}

/// `n` generated bytes, byte `k` being `k % 256`, sent in [`CHUNK`]-sized
/// frames that all share one buffer.
pub(crate) struct Pattern {
    remaining: u64,
    chunk: Bytes,
}

impl Pattern {
    pub(crate) fn new(n: u64) -> Self {
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 256) as u8).collect();
        Pattern {
            remaining: n,
            chunk: Bytes::from(chunk),
        }
    }
}

impl http_body::Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        let data = self.chunk.slice(..len);
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn the_pattern_body_has_the_exact_length_and_content() {
        for n in [0u64, 1, 255, 256, CHUNK as u64, CHUNK as u64 * 3 + 17] {
            let body = Pattern::new(n);
            assert_eq!(body.size_hint().exact(), Some(n));
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes.len() as u64, n);
            assert!(bytes.iter().enumerate().all(|(k, b)| *b == (k % 256) as u8));
        }
    }

    /// A full URL in the header or the path names the provider host the
    /// token would go to; a path resolves against the provider's base.
    #[test]
    fn targets_name_the_host_the_token_would_reach() {
        assert_eq!(provider_target("v1/x", None)["host"], "provider.invalid");
        assert_eq!(provider_target("v1/x", None)["path"], "/v1/x");
        assert_eq!(
            provider_target("", Some("https://evil.example/steal"))["host"],
            "evil.example"
        );
        assert_eq!(
            provider_target("", Some("https:evil.example"))["host"],
            "evil.example"
        );
        assert_eq!(
            provider_target("", Some("//evil.example/x"))["host"],
            "evil.example"
        );
        assert_eq!(
            provider_target("https://sheets.googleapis.com/v4", None)["host"],
            "sheets.googleapis.com"
        );
        assert_eq!(provider_target("", Some("/v2/files?q=1"))["query"], "q=1");
        assert_eq!(provider_target("", Some("/v2/files"))["via"], "header");
    }

    #[test]
    fn raw_response_header_values() {
        let mut h = HeaderMap::new();
        assert!(!raw_requested(&h));
        h.insert(RAW_HEADER, HeaderValue::from_static("1"));
        assert!(raw_requested(&h));
        h.insert(RAW_HEADER, HeaderValue::from_static("TRUE"));
        assert!(raw_requested(&h));
        h.insert(RAW_HEADER, HeaderValue::from_static("0"));
        assert!(!raw_requested(&h));
    }
}
