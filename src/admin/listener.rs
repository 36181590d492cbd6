//! The admin listener (contract §9), separate from traffic and on loopback by
//! default: `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! `POST /admin/cache/invalidate`, `POST /admin/decide` (a decision
//! explained, nothing forwarded), `GET /admin/access?user=U` (who may use
//! which account), `GET /` (the dashboard, `dashboard.rs`). It has no
//! authentication of its own: bind it where only
//! operators and Prometheus can reach it. None of these is ever served on
//! the traffic listener. Before any of them, `admin_guard.rs` refuses what
//! a web page could make a browser send here (DNS rebinding, cross-site
//! requests).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::guard as admin_guard;
use super::recent::Recent;
use crate::gateway::State;
use crate::net::body::{full, read_limited, Body};

/// Largest invalidation request body.
const MAX_ADMIN_BODY: u64 = 64 * 1024;
/// Largest `/admin/decide` question (it may carry a request body).
const MAX_DECIDE_BODY: u64 = 4 * 1024 * 1024;

/// What one admin-side listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The admin listener: everything above, and the AuthZEN routes unless
    /// they have a listener of their own.
    Admin,
    /// `authzen.listen`: the AuthZEN routes only (contract §14); anything
    /// else is 404 there.
    Authzen,
}

pub async fn serve(
    state: Arc<State>,
    recent: Arc<Recent>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    serve_as(Serves::Admin, state, recent, listener, shutdown).await
}

/// The AuthZEN decision point on `authzen.listen`, behind the same guards.
pub async fn serve_authzen(
    state: Arc<State>,
    recent: Arc<Recent>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    serve_as(Serves::Authzen, state, recent, listener, shutdown).await
}

async fn serve_as(
    serves: Serves,
    state: Arc<State>,
    recent: Arc<Recent>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    // The dashboard's traffic figures: the request counters sampled every
    // few seconds (nothing on the request path). Ends with the state.
    let weak = Arc::downgrade(&state);
    let sampled = recent.clone();
    tokio::spawn(async move {
        if serves != Serves::Admin {
            return;
        }
        let every = Duration::from_secs(super::recent::SAMPLE_EVERY_SECS);
        loop {
            tokio::time::sleep(every).await;
            let Some(state) = weak.upgrade() else { return };
            let counts = super::recent::request_counts(&state.metrics.encode());
            sampled.sample(crate::clock::now_ms(), counts);
        }
    });
    // Where the listener is bound, for the Host rule (not the configured
    // address: a reload cannot move the listener).
    let Ok(bound) = listener.local_addr() else {
        tracing::error!("the admin listener has no local address; it serves nothing");
        return;
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let (state, recent) = (state.clone(), recent.clone());
        let conn = Conn {
            bound,
            local,
            remote,
        };
        let service = service_fn(move |req| {
            let (state, recent) = (state.clone(), recent.clone());
            async move { Ok::<_, Infallible>(guarded(&state, &recent, conn, serves, req).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    text(status, "application/json", v.to_string())
}

/// The addresses of one admin connection.
#[derive(Clone, Copy)]
struct Conn {
    bound: SocketAddr,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Every request passes `admin_guard` (contract §9) before it is routed;
/// a refusal is a 403 with a code of its own, counted and logged.
async fn guarded(
    state: &State,
    recent: &Recent,
    conn: Conn,
    serves: Serves,
    req: Request<Incoming>,
) -> Response<Body> {
    let generation = state.current.load();
    let allowed = admin_guard::Allowed {
        hosts: &generation.config.server.admin_hosts,
        bound: conn.bound,
        local: conn.local,
    };
    let verdict = admin_guard::check(req.method(), req.uri(), req.headers(), &allowed);
    drop(generation);
    match verdict {
        Ok(()) => route(state, recent, serves, req).await,
        Err(refusal) => refused(state, conn, &req, refusal),
    }
}

fn refused(
    state: &State,
    conn: Conn,
    req: &Request<Incoming>,
    refusal: admin_guard::Refusal,
) -> Response<Body> {
    state
        .metrics
        .admin_refused
        .get_or_create(&crate::telemetry::ReasonLabel {
            reason: refusal.code(),
        })
        .inc();
    // The path without its query (`?user=` names a Connected User), and
    // the naming headers escaped and cut short: they are the caller's.
    let shown = |name: http::header::HeaderName| {
        req.headers().get(name).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(100)
                .flat_map(char::escape_debug)
                .collect::<String>()
        })
    };
    tracing::warn!(
        remote = %conn.remote,
        method = %req.method(),
        path = req.uri().path(),
        host = shown(http::header::HOST).as_deref().unwrap_or("(none)"),
        origin = shown(http::header::ORIGIN).as_deref().unwrap_or("(none)"),
        code = refusal.code(),
        "admin request refused"
    );
    json(
        StatusCode::FORBIDDEN,
        serde_json::json!({"message": refusal.message(), "code": refusal.code()}),
    )
}

async fn route(
    state: &State,
    recent: &Recent,
    serves: Serves,
    req: Request<Incoming>,
) -> Response<Body> {
    // `[authzen] serve = true`: the decision point's routes (contract §14),
    // on the listener that serves them.
    let own_listener = state.current.load().config.authzen.listen.is_some();
    let authzen = crate::authzen::serves(state, req.uri().path());
    match serves {
        Serves::Authzen if authzen => return crate::authzen::handle(state, req).await,
        Serves::Authzen => {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"message": "not found", "code": "not_found"}),
            )
        }
        Serves::Admin if authzen && !own_listener => {
            return crate::authzen::handle(state, req).await
        }
        Serves::Admin => {}
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => super::dashboard::page(state, recent, req.uri().query()).await,
        (&Method::GET, "/healthz") => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            let generation = state.current.load();
            if generation.auth.ready() {
                // Shadow mode is a state to see, not a reason to take the
                // replica out (contract §5a).
                let shadow: Vec<&str> = generation
                    .config
                    .policy
                    .shadow
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                let mut body = serde_json::json!({"status": "ready"});
                if !shadow.is_empty() {
                    body["shadow"] = serde_json::json!(shadow);
                }
                json(StatusCode::OK, body)
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "not ready", "reason": "signing keys are not loaded yet"}),
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let directory = state.directory.load();
            directory.sync().await;
            state
                .metrics
                .credential_cache_users
                .set(directory.user_count() as i64);
            if let Some(local) = &state.local {
                local.before_scrape(&state.metrics);
            }
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                state.metrics.encode(),
            )
        }
        (&Method::POST, "/admin/cache/invalidate") => invalidate(state, req).await,
        (&Method::POST, "/admin/decide") => decide(state, req).await,
        (&Method::GET, "/admin/access") => access(state, req.uri().query()).await,
        (
            _,
            "/"
            | "/healthz"
            | "/readyz"
            | "/metrics"
            | "/admin/cache/invalidate"
            | "/admin/decide"
            | "/admin/access",
        ) => json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"message": "method not allowed"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"message": "not found"}),
        ),
    }
}

async fn invalidate(state: &State, req: Request<Incoming>) -> Response<Body> {
    let bad = |m: &str| json(StatusCode::BAD_REQUEST, serde_json::json!({"message": m}));
    let Ok(raw) = read_limited(req.into_body(), MAX_ADMIN_BODY).await else {
        return bad("the body could not be read or is too large");
    };
    let value: serde_json::Value = if raw.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(_) => return bad("the body must be {\"user\": \"...\"} or {}"),
        }
    };
    let Some(obj) = value.as_object() else {
        return bad("the body must be {\"user\": \"...\"} or {}");
    };
    if obj.keys().any(|k| k != "user") {
        return bad("the only field is \"user\"");
    }
    let user = match obj.get("user") {
        None => None,
        Some(serde_json::Value::String(u)) if !u.is_empty() => Some(u.as_str()),
        Some(_) => return bad("\"user\" must be a non-empty string"),
    };
    match state.invalidate(user).await {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({"invalidated": user.map_or(serde_json::Value::String("all".into()), |u| serde_json::json!({"user": u}))}),
        ),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"message": e.to_string()}),
        ),
    }
}

async fn decide(state: &State, req: Request<Incoming>) -> Response<Body> {
    let bad = |m: String| json(StatusCode::BAD_REQUEST, serde_json::json!({"message": m}));
    let Ok(raw) = read_limited(req.into_body(), MAX_DECIDE_BODY).await else {
        return bad("the body could not be read or is too large".into());
    };
    let question: super::explain::DecideRequest = match serde_json::from_slice(&raw) {
        Ok(q) => q,
        Err(e) => return bad(format!("the body must be a decide question: {e}")),
    };
    match super::explain::decide(state, question).await {
        Ok(answer) => json(StatusCode::OK, answer),
        Err(m) => bad(m),
    }
}

async fn access(state: &State, query: Option<&str>) -> Response<Body> {
    use super::access::{review, AccessError};
    let Some(user) = super::dashboard::param(query, "user") else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"message": "give the Connected User: /admin/access?user=U"}),
        );
    };
    match review(state, &user).await {
        Ok(v) => json(StatusCode::OK, v),
        Err(e) => {
            let status = match e {
                AccessError::BadRequest(_) => StatusCode::BAD_REQUEST,
                AccessError::Passthrough => StatusCode::CONFLICT,
                AccessError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                AccessError::UnknownUser(_) => StatusCode::NOT_FOUND,
            };
            json(status, serde_json::json!({"message": e.to_string()}))
        }
    }
}
