//! credgate as an AuthZEN decision point (contract §14, OpenID AuthZEN
//! Authorization API 1.0): `POST /access/v1/evaluation`,
//! `/access/v1/evaluations`, `/access/v1/search/resource`,
//! `/access/v1/search/subject` and `GET /.well-known/authzen-configuration`,
//! served on the admin listener when `[authzen] serve = true`, each behind
//! the bearer token of `authzen.token_env` (compared in constant time).
//!
//! It owns reading the questions and presenting the answers, never
//! deciding: an evaluation is a synthetic request on the route its action
//! names (the Proxy API of the credential's integration for `use`), judged
//! by the gateway's own dry run (`gateway::judge`), so the answer is what
//! traffic gets (`evaluate`). A search enumerates candidates from the
//! grants credgate can list (as the access review does) and keeps only the
//! pairs that dry run allows (`search`), so deny rules and everything else
//! apply. Only `/sdk/me` loads reach Paragon.

mod evaluate;
mod search;

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::gateway::State;
use crate::net::body::{full, read_limited, Body};

/// Largest AuthZEN request body.
const MAX_BODY: u64 = 1024 * 1024;
/// Most evaluations in one batch.
const MAX_EVALUATIONS: usize = 256;

const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const SEARCH_SUBJECT: &str = "/access/v1/search/subject";
const METADATA: &str = "/.well-known/authzen-configuration";

/// Whether `path` is this room's while `[authzen] serve = true` (the admin
/// listener hands such requests to [`handle`]).
pub fn serves(state: &State, path: &str) -> bool {
    state.current.load().config.authzen.serve
        && (path.starts_with("/access/v1/") || path == METADATA)
}

/// A malformed question (400) or a list that cannot be loaded (503).
#[derive(Debug)]
pub(crate) enum Failure {
    Malformed(String),
    Unavailable(String),
}

/// Answers one AuthZEN request: the bearer token first, then the route.
/// The caller's `X-Request-ID` is echoed on every answer.
pub async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .filter(|v| v.len() <= 200)
        .cloned();
    let mut resp = answer(state, req, request_id.as_ref()).await;
    if let Some(id) = request_id {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

async fn answer(
    state: &State,
    req: Request<Incoming>,
    request_id: Option<&HeaderValue>,
) -> Response<Body> {
    if !authorized(state, req.headers().get(AUTHORIZATION)) {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "a valid bearer token is required"}),
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let is_post = method == Method::POST;
    match (path.as_str(), is_post) {
        (METADATA, false) if method == Method::GET => {
            let host = req
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1")
                .to_string();
            json_response(StatusCode::OK, &metadata(&host))
        }
        (EVALUATION | EVALUATIONS | SEARCH_RESOURCE | SEARCH_SUBJECT, true) => {
            let client_id = request_id.and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = match read_json(req).await {
                Ok(v) => v,
                Err(m) => return error(StatusCode::BAD_REQUEST, &m),
            };
            let result = match path.as_str() {
                EVALUATION => evaluate::single(state, &body, client_id.as_deref()).await,
                EVALUATIONS => evaluate::batch(state, &body, client_id.as_deref()).await,
                SEARCH_RESOURCE => search::resources(state, &body).await,
                _ => search::subjects(state, &body).await,
            };
            match result {
                Ok(v) => json_response(StatusCode::OK, &v),
                Err(Failure::Malformed(m)) => error(StatusCode::BAD_REQUEST, &m),
                Err(Failure::Unavailable(m)) => error(StatusCode::SERVICE_UNAVAILABLE, &m),
            }
        }
        (METADATA | EVALUATION | EVALUATIONS | SEARCH_RESOURCE | SEARCH_SUBJECT, _) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `Authorization: Bearer <token>` with the configured token; the two are
/// hashed and the digests compared in constant time, so neither the
/// content nor the length of the token leaks through timing.
fn authorized(state: &State, header: Option<&HeaderValue>) -> bool {
    let generation = state.current.load();
    let Some(expected) = &generation.config.authzen.token else {
        return false;
    };
    let Some(given) = header
        .map(HeaderValue::as_bytes)
        .and_then(|h| h.strip_prefix(b"Bearer ".as_slice()))
    else {
        return false;
    };
    let digest = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let (a, b) = (digest(given), digest(expected.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

/// The metadata document (AuthZEN 1.0 §"Policy Decision Point Metadata"),
/// its URLs on the host the caller reached.
fn metadata(host: &str) -> Value {
    let base = format!("http://{host}");
    json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
        "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
        "search_subject_endpoint": format!("{base}{SEARCH_SUBJECT}"),
        "search_resource_endpoint": format!("{base}{SEARCH_RESOURCE}"),
    })
}

async fn read_json(req: Request<Incoming>) -> Result<Value, String> {
    let raw = read_limited(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| "the body could not be read or is too large".to_string())?;
    let v: Value =
        serde_json::from_slice(&raw).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("the body must be a JSON object".into());
    }
    Ok(v)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"error": message}))
}
