//! The pipeline's dry run (contract §9, for the admin room's decision API):
//! a request runs through every phase traffic takes (authentication or a
//! what-if caller, route, policy, the credential list from the cache or
//! Paragon, shadow mode, the rewrite) and stops before the forward. Only
//! `/sdk/me` loads reach Paragon; no audit record and no request metric is
//! written. What the decision was, and what would have gone out, is
//! returned for the caller to present.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HeaderValue;
use http::Request;
use http_body_util::BodyExt;

use super::exchange::DryRun;
use super::{pipeline, Audit, ConnInfo, State};
use crate::auth::Identity;
use crate::net::body::Body;
use crate::paragon::credentials::Credential;

/// A request judged without being forwarded.
#[derive(Debug)]
pub struct Judged {
    /// The decision's id (a request id of this process).
    pub decision_id: String,
    /// `allowed`, `refused`, `failed` or `shadow_refused`.
    pub decision: &'static str,
    pub reason: &'static str,
    /// The audit record the request would have had.
    pub record: serde_json::Value,
    /// Whether credgate itself refused (or failed) it: its answer is
    /// `status` and `body`.
    pub refused: bool,
    pub status: u16,
    pub body: bytes::Bytes,
    /// The caller it was judged for.
    pub caller: Option<Arc<Identity>>,
    /// The credential the decision routes, in full.
    pub credential: Option<Credential>,
    /// Every policy rule and how it came out (contract §5b).
    pub rules: Vec<serde_json::Value>,
    /// The request Paragon would have received.
    pub upstream: Option<Request<Body>>,
}

/// Judges `req` as the gateway would, for `identity` when given (a
/// what-if caller) or else the token the request carries.
pub async fn judge(state: &State, req: Request<Body>, identity: Option<Arc<Identity>>) -> Judged {
    let generation = state.current.load_full();
    let request_id = state.ids.next();
    // A caller on loopback over plain HTTP/2 (no per-connection upstream).
    let conn = ConnInfo::new(SocketAddr::from(([127, 0, 0, 1], 0)), false, true, 0);
    let mut audit = Audit {
        enabled: true,
        reason: "forwarded",
        request_id: HeaderValue::from_str(&request_id).ok(),
        dry_run: Some(Box::new(DryRun {
            identity,
            ..DryRun::default()
        })),
        ..Audit::default()
    };
    // Boxed as a `Send` future: without the explicit type the compiler
    // cannot prove the generic pipeline's future `Send` for every lifetime
    // (the higher-ranked `Send` limitation), which the admin server needs.
    let run: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
        Box::pin(pipeline::process(
            state,
            &generation,
            &conn,
            req,
            &request_id,
            &mut audit,
            None,
        ));
    let outcome = run.await;
    let refused = outcome.is_err();
    let (resp, decision) = audit.conclude(outcome, &request_id);
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let record =
        serde_json::to_value(audit.record(&request_id, None, decision)).unwrap_or_default();
    let dry = audit.dry_run.take().map(|d| *d).unwrap_or_default();
    Judged {
        decision_id: request_id,
        decision,
        reason: audit.reason,
        record,
        refused,
        status,
        body,
        caller: dry.identity,
        credential: dry.credential,
        rules: dry.rules,
        upstream: dry.upstream,
    }
}
