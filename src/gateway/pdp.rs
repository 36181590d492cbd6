//! credgate asking an AuthZEN decision point (contract §14, `[authzen]
//! pdp_url`): a fourth kind of grant. Before the permit judges a member's
//! credentials, the decision phases (`decide`, and the listings that show
//! what a member may use) call [`ask`] with the credentials of the user's
//! live list the decision needs; those no owner label, token claim or ACL
//! grant covers are looked up in the answer cache, and the rest are asked
//! in one question: `POST {pdp_url}/access/v1/evaluation` for one
//! credential, `/access/v1/evaluations` for several (a listing's batch).
//! Each answer is recorded in the request's [`PdpAnswers`], which the
//! permit reads (`policy`).
//!
//! The question: subject `{type: "member", id: <principal>, properties:
//! {user}}`, action `{name: "use"}`, resource `{type: "credential", id,
//! properties: {integration, externalId}}`. It goes through the one HTTP
//! client of `net` (the trust of the Paragon client: webpki roots plus
//! `paragon.ca_file`), with credgate's own bearer token for the decision
//! point (`pdp_token_env`) and this request's id, never the caller's
//! token or headers.
//!
//! Fail closed: no answer within `pdp_timeout`, a transport error, a
//! status other than 2xx, or an answer that is not the spec's shape (a
//! `decision` that is not a boolean, a batch of another length) permits
//! nothing, is counted in `credgate_authzen_pdp_errors_total`, logged, and
//! not cached, so the next request asks again. Answers (`true` and
//! `false`) are cached per (user, principal, credential) for
//! `pdp_cache_ttl`; a reload that changes `pdp_url` or the TTL starts an
//! empty cache.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Uri};
use serde_json::{json, Value};

use super::exchange::Ctx;
use super::headers::X_REQUEST_ID;
use crate::config::AuthzenConfig;
use crate::net::body::{full, read_limited};
use crate::paragon::credentials::Credential;

/// The answer cache holds at most this many (user, principal, credential)
/// answers; the least used go first.
const MAX_CACHED_ANSWERS: u64 = 200_000;
/// The decision point's answer is read up to this size.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// (user, principal, credential id).
type Key = (Arc<str>, Arc<str>, Box<str>);

/// The decision point's answers cached across requests (in `State`, so a
/// reload with the same `pdp_url` and TTL keeps them).
#[derive(Default)]
pub(crate) struct PdpCache {
    current: ArcSwapOption<Cached>,
}

/// The cache of one decision point and TTL, and its two endpoints.
struct Cached {
    url: url::Url,
    ttl: Duration,
    evaluation: Uri,
    evaluations: Uri,
    /// `None` when `pdp_cache_ttl` is zero: every question is asked.
    answers: Option<moka::sync::Cache<Key, bool>>,
}

impl PdpCache {
    /// The cache for the decision point `cfg` names (`None` when it names
    /// none, or its endpoints are not URIs), made anew when the URL or the
    /// TTL changed.
    fn for_config(&self, cfg: &AuthzenConfig) -> Option<Arc<Cached>> {
        let url = cfg.pdp_url.as_ref()?;
        if let Some(c) = &*self.current.load() {
            if c.url == *url && c.ttl == cfg.pdp_cache_ttl {
                return Some(c.clone());
            }
        }
        let endpoint = |path: &str| cfg.pdp_endpoint(path)?.parse::<Uri>().ok();
        let fresh = Arc::new(Cached {
            url: url.clone(),
            ttl: cfg.pdp_cache_ttl,
            evaluation: endpoint("/access/v1/evaluation")?,
            evaluations: endpoint("/access/v1/evaluations")?,
            answers: (!cfg.pdp_cache_ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(MAX_CACHED_ANSWERS)
                    .time_to_live(cfg.pdp_cache_ttl)
                    .build()
            }),
        });
        self.current.store(Some(fresh.clone()));
        Some(fresh)
    }
}

/// Why a question to the decision point permitted nothing.
#[derive(Debug)]
enum PdpError {
    Timeout,
    Transport(String),
    Status(u16),
    Malformed(&'static str),
}

impl std::fmt::Display for PdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PdpError::Timeout => f.write_str("no answer within authzen.pdp_timeout"),
            PdpError::Transport(e) => write!(f, "transport error: {e}"),
            PdpError::Status(s) => write!(f, "answered with status {s}"),
            PdpError::Malformed(why) => write!(f, "malformed answer: {why}"),
        }
    }
}

/// One evaluation's outcome: the decision, and whether it may be cached
/// (an evaluation the decision point reports as an error may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    decision: bool,
    cacheable: bool,
}

/// Asks the decision point about those of `candidates` (credentials of the
/// user's live list) it may grant to this caller and has not answered for
/// this request: from the cache, else in one question. A no-op for admins,
/// passthrough callers, or without `authzen.pdp_url`.
pub(super) async fn ask<'c>(ctx: &Ctx<'_>, candidates: impl IntoIterator<Item = &'c Credential>) {
    let Some(answers) = &ctx.pdp else {
        return;
    };
    let mut wanted: Vec<&Credential> = Vec::new();
    for c in candidates {
        if ctx.permit.wants_pdp(c) && !wanted.iter().any(|w| w.id == c.id) {
            wanted.push(c);
        }
    }
    if wanted.is_empty() {
        return;
    }
    let Some(cache) = ctx.state.pdp.for_config(&ctx.cfg.authzen) else {
        // An endpoint that is no URI: nothing can be asked (fail closed).
        wanted.iter().for_each(|c| answers.record(&c.id, false));
        return;
    };
    let identity = ctx.identity;
    let key = |c: &Credential| -> Key {
        (
            identity.user.clone(),
            identity.principal.clone(),
            c.id.clone(),
        )
    };
    let mut missing = Vec::new();
    for c in wanted {
        match cache.answers.as_ref().and_then(|a| a.get(&key(c))) {
            Some(decision) => answers.record(&c.id, decision),
            None => missing.push(c),
        }
    }
    if missing.is_empty() {
        return;
    }
    match question(ctx, &cache, &missing).await {
        Ok(got) => {
            for (c, a) in missing.iter().zip(got) {
                answers.record(&c.id, a.decision);
                if !a.cacheable {
                    // The decision point's error for this evaluation.
                    ctx.state.metrics.authzen_pdp_errors.inc();
                } else if let Some(store) = &cache.answers {
                    store.insert(key(c), a.decision);
                }
            }
        }
        Err(e) => {
            ctx.state.metrics.authzen_pdp_errors.inc();
            tracing::warn!(request_id = ctx.request_id, pdp = %cache.url, credentials = missing.len(), error = %e, "the AuthZEN decision point failed: its grants are refused");
            missing.iter().for_each(|c| answers.record(&c.id, false));
        }
    }
}

/// One question about `missing` (one evaluation, or a batch), within
/// `authzen.pdp_timeout`, its answer read whole.
async fn question(
    ctx: &Ctx<'_>,
    cache: &Cached,
    missing: &[&Credential],
) -> Result<Vec<Answer>, PdpError> {
    let cfg = &ctx.cfg.authzen;
    let subject = json!({
        "type": "member",
        "id": &*ctx.identity.principal,
        "properties": {"user": &*ctx.identity.user},
    });
    let (uri, body) = match missing {
        [one] => (cache.evaluation.clone(), evaluation(&subject, one)),
        many => (cache.evaluations.clone(), evaluations(&subject, many)),
    };
    let mut req = Request::post(uri)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(full(body.to_string()))
        .map_err(|e| PdpError::Transport(e.to_string()))?;
    if let Some(t) = &cfg.pdp_token {
        let v = HeaderValue::from_str(&format!("Bearer {}", t.as_str()))
            .map_err(|_| PdpError::Transport("the decision point's token is no header".into()))?;
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(ctx.request_id) {
        req.headers_mut().insert(X_REQUEST_ID, v);
    }
    let client = ctx.generation.upstreams.client();
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| PdpError::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(PdpError::Status(resp.status().as_u16()));
        }
        read_limited(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| PdpError::Transport(e.to_string()))
    };
    let raw = tokio::time::timeout(cfg.pdp_timeout, exchange)
        .await
        .map_err(|_| PdpError::Timeout)??;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| PdpError::Malformed("not JSON"))?;
    match missing {
        [_] => decision(&v).map(|a| vec![a]),
        many => batch(&v, many.len()),
    }
}

/// The resource a question names.
fn resource(c: &Credential) -> Value {
    json!({
        "type": "credential",
        "id": &*c.id,
        "properties": {
            "integration": &*c.integration,
            "externalId": c.external_id.as_deref(),
        },
    })
}

/// `POST /access/v1/evaluation`'s body.
fn evaluation(subject: &Value, c: &Credential) -> Value {
    json!({
        "subject": subject,
        "action": {"name": "use"},
        "resource": resource(c),
    })
}

/// `POST /access/v1/evaluations`'s body: the subject and action as the
/// defaults, one item per credential, every item evaluated.
fn evaluations(subject: &Value, many: &[&Credential]) -> Value {
    json!({
        "subject": subject,
        "action": {"name": "use"},
        "options": {"evaluations_semantic": "execute_all"},
        "evaluations": many.iter().map(|c| json!({"resource": resource(c)})).collect::<Vec<_>>(),
    })
}

/// One Decision: an object whose `decision` is a boolean. A `false` whose
/// `context` carries an `error` is the decision point's error for that
/// evaluation (AuthZEN 1.0 "Errors"): refused, and not cached.
fn decision(v: &Value) -> Result<Answer, PdpError> {
    let o = v
        .as_object()
        .ok_or(PdpError::Malformed("a decision is not an object"))?;
    let decision = o
        .get("decision")
        .and_then(Value::as_bool)
        .ok_or(PdpError::Malformed("`decision` is not a boolean"))?;
    let error = o
        .get("context")
        .and_then(|c| c.get("error"))
        .is_some_and(|e| !e.is_null());
    Ok(Answer {
        decision: decision && !error,
        cacheable: !error,
    })
}

/// A batch answer: `evaluations`, one Decision per question in order.
fn batch(v: &Value, n: usize) -> Result<Vec<Answer>, PdpError> {
    let items = v
        .get("evaluations")
        .and_then(Value::as_array)
        .ok_or(PdpError::Malformed("no `evaluations` array"))?;
    if items.len() != n {
        return Err(PdpError::Malformed(
            "`evaluations` does not answer every question",
        ));
    }
    items.iter().map(decision).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(id: &str, ext: Option<&str>) -> Credential {
        Credential {
            id: id.into(),
            integration: "slack".into(),
            integration_id: None,
            valid: true,
            status: crate::paragon::credentials::Status::Valid,
            external_id: ext.map(Into::into),
            configurations: Box::default(),
        }
    }

    #[test]
    fn questions_have_the_contract_shapes() {
        let subject = json!({"type": "member", "id": "alice", "properties": {"user": "acme"}});
        let (a, b) = (cred("c1", Some("x")), cred("c2", None));
        assert_eq!(
            evaluation(&subject, &a),
            json!({
                "subject": {"type": "member", "id": "alice", "properties": {"user": "acme"}},
                "action": {"name": "use"},
                "resource": {"type": "credential", "id": "c1", "properties": {"integration": "slack", "externalId": "x"}},
            })
        );
        let batch_body = evaluations(&subject, &[&a, &b]);
        assert_eq!(batch_body["options"]["evaluations_semantic"], "execute_all");
        assert_eq!(batch_body["evaluations"][1]["resource"]["id"], "c2");
        assert!(batch_body["evaluations"][1]["resource"]["properties"]["externalId"].is_null());
        assert_eq!(batch_body["action"], json!({"name": "use"}));
    }

    #[test]
    fn only_boolean_decisions_of_the_right_count_are_answers() {
        let yes = Answer {
            decision: true,
            cacheable: true,
        };
        assert_eq!(decision(&json!({"decision": true})).unwrap(), yes);
        assert!(
            !decision(&json!({"decision": false, "context": {}}))
                .unwrap()
                .decision
        );
        for bad in [
            json!({"decision": "true"}),
            json!({"decision": 1}),
            json!({}),
            json!([true]),
            json!(null),
        ] {
            assert!(decision(&bad).is_err(), "{bad}");
        }
        let failed = decision(&json!({"decision": true, "context": {"error": {"status": 500}}}));
        assert_eq!(
            failed.unwrap(),
            Answer {
                decision: false,
                cacheable: false
            }
        );
        let two = json!({"evaluations": [{"decision": true}, {"decision": false}]});
        assert_eq!(batch(&two, 2).unwrap().len(), 2);
        assert!(batch(&two, 3).is_err());
        assert!(batch(&json!({"decision": true}), 1).is_err());
        assert!(batch(
            &json!({"evaluations": [{"decision": true}, {"decision": null}]}),
            2
        )
        .is_err());
    }
}
