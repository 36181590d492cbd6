//! Every request's path through the emulator, in order:
//! control prefix (`/_emulator/`, handled apart and never recorded) →
//! route match (404 `route_not_found`) → body (read up to
//! [`MAX_BODY_BYTES`], 413 beyond, 408 when it stalls; the Proxy API's
//! `__upload` streams instead) → token (401) → project id in the path (404 `unknown_project`)
//! → the product's handler → echo and recording → behaviour delay.
//!
//! The route table is the emulator's own, written from `paragon-api.md`,
//! not credgate's `paragon::routes`: the emulator is credgate's test oracle
//! and must not share its mistakes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::auth::{self, Caller};
use super::call::{json_response, ApiError, Call, Handled, Reply, BODY_IDLE_TIMEOUT};
use super::proxy::ProxyTarget;
use super::state::{EmulatorState, RecordedRequest, RECORDED_BODY_BYTES};
use super::sync::SyncOp;
use super::{actionkit, agentos, connect, control, cors, install, proxy, sync, workflows};
use crate::net::body::{read_limited, Body, ReadError};

/// Bodies of routes that do not stream are read up to this size.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// The local address of the connection a request came in on (a request
/// extension set by the accept loop): the address a client reached the
/// emulator at, which the install flow's consent URL points back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalAddr(pub SocketAddr);

/// Which Paragon API a route belongs to (one listener serves all five).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    Connect,
    Workflows,
    Proxy,
    ActionKit,
    Sync,
    AgentOs,
}

impl Host {
    pub fn as_str(self) -> &'static str {
        match self {
            Host::Connect => "connect",
            Host::Workflows => "workflows",
            Host::Proxy => "proxy",
            Host::ActionKit => "actionkit",
            Host::Sync => "sync",
            Host::AgentOs => "agentos",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    GetMe,
    PatchMe,
    Integrations,
    Metadata,
    Uninstall {
        integration_id: &'a str,
    },
    ListCredentials,
    Credential {
        id: &'a str,
    },
    /// `POST /sdk/credentials`: the SDK's direct way to create an account.
    CreateCredential,
    /// `GET /v2/projects/{p}/sdk/actions/build-oauth`.
    BuildOAuth,
    /// `GET /projects/{p}/sdk/actions/oauth-nonce` (a popup navigation).
    OAuthNonce,
    /// `GET|DELETE /projects/{p}/sdk/actions/session-id/{id}`.
    InstallSession {
        id: &'a str,
    },
    /// `GET|POST /emulator/consent/{nonce}`: the provider's stand-in.
    Consent {
        nonce: &'a str,
    },
    WorkflowSetting {
        workflow_id: &'a str,
    },
    Trigger {
        workflow_id: &'a str,
    },
    Event,
    Proxy {
        target: ProxyTarget<'a>,
        rest: &'a str,
    },
    ListActions,
    ListTools,
    RunAction,
    RunTool,
    TriggerTypes,
    Subscriptions,
    Subscription {
        id: &'a str,
    },
    Sync {
        id: Option<&'a str>,
        op: SyncOp<'a>,
    },
    AgentOs {
        api: agentos::Api,
        rest: &'a str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Matched<'a> {
    pub host: Host,
    /// The project id the path names (`None` on Managed Sync).
    pub project: Option<&'a str>,
    pub route: Route<'a>,
}

impl Matched<'_> {
    fn streams_request(&self) -> bool {
        matches!(self.route, Route::Proxy { rest, .. } if rest == proxy::UPLOAD)
    }
}

fn one_segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// Matches a method and raw path against Paragon's routes.
pub(crate) fn match_route<'a>(method: &Method, path: &'a str) -> Option<Matched<'a>> {
    let m = method;
    // A 2xx to CONNECT would turn the connection into a tunnel; Paragon
    // serves no CONNECT anywhere.
    if *m == Method::CONNECT {
        return None;
    }
    if let Some(nonce) = path.strip_prefix(install::CONSENT_PATH) {
        return (*m == Method::GET || *m == Method::POST).then_some(Matched {
            host: Host::Connect,
            project: None,
            route: Route::Consent {
                nonce: one_segment(nonce)?,
            },
        });
    }
    if let Some(rest) = path.strip_prefix("/v2/projects/") {
        let (p, after) = rest.split_once('/')?;
        if p.is_empty() {
            return None;
        }
        let (host, route) = match after {
            "sdk/events/trigger" if *m == Method::POST => (Host::Workflows, Route::Event),
            "sdk/actions/build-oauth" if *m == Method::GET => (Host::Connect, Route::BuildOAuth),
            _ => return None,
        };
        return Some(Matched {
            host,
            project: Some(p),
            route,
        });
    }
    if let Some(rest) = path.strip_prefix("/projects/") {
        let (p, after) = rest.split_once('/')?;
        if p.is_empty() {
            return None;
        }
        let (host, route) = match_project(m, after)?;
        return Some(Matched {
            host,
            project: Some(p),
            route,
        });
    }
    if let Some(rest) = path.strip_prefix("/api/") {
        let agentos = [
            ("tools/projects/", agentos::Api::Tools),
            ("context/projects/", agentos::Api::Context),
        ];
        for (prefix, api) in agentos {
            if let Some(after) = rest.strip_prefix(prefix) {
                let (p, tail) = after.split_once('/').unwrap_or((after, ""));
                if p.is_empty() {
                    return None;
                }
                return Some(Matched {
                    host: Host::AgentOs,
                    project: Some(p),
                    route: Route::AgentOs { api, rest: tail },
                });
            }
        }
        let route = match_sync(m, rest)?;
        return Some(Matched {
            host: Host::Sync,
            project: None,
            route,
        });
    }
    None
}

fn match_project<'a>(m: &Method, after: &'a str) -> Option<(Host, Route<'a>)> {
    use Host::*;
    if let Some(sdk) = after.strip_prefix("sdk/") {
        if let Some(rest) = sdk.strip_prefix("proxy/") {
            let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let (target, tail) = if first == "custom" {
                let (id, tail) = tail.split_once('/').unwrap_or((tail, ""));
                (ProxyTarget::CustomId(one_segment(id)?), tail)
            } else {
                (ProxyTarget::Type(one_segment(first)?), tail)
            };
            return Some((Proxy, Route::Proxy { target, rest: tail }));
        }
        let (first, tail) = match sdk.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (sdk, None),
        };
        let route = match (first, tail) {
            ("me", None) if *m == Method::GET => (Connect, Route::GetMe),
            ("me", None) if *m == Method::PATCH => (Connect, Route::PatchMe),
            ("integrations", None) if *m == Method::GET => (Connect, Route::Integrations),
            ("metadata", None) if *m == Method::GET => (Connect, Route::Metadata),
            ("integrations", Some(id)) if *m == Method::DELETE => (
                Connect,
                Route::Uninstall {
                    integration_id: one_segment(id)?,
                },
            ),
            ("credentials", None) if *m == Method::GET => (Connect, Route::ListCredentials),
            ("credentials", None) if *m == Method::POST => (Connect, Route::CreateCredential),
            ("actions", Some("oauth-nonce")) if *m == Method::GET => (Connect, Route::OAuthNonce),
            ("actions", Some(tail)) if *m == Method::GET || *m == Method::DELETE => (
                Connect,
                Route::InstallSession {
                    id: one_segment(tail.strip_prefix("session-id/")?)?,
                },
            ),
            ("credentials", Some(rest)) => {
                let id = rest.split('/').next().filter(|s| !s.is_empty())?;
                (Connect, Route::Credential { id })
            }
            ("workflows", Some(id)) if *m == Method::POST || *m == Method::DELETE => (
                Connect,
                Route::WorkflowSetting {
                    workflow_id: one_segment(id)?,
                },
            ),
            ("triggers", Some(id)) if *m == Method::POST => (
                Workflows,
                Route::Trigger {
                    workflow_id: one_segment(id)?,
                },
            ),
            ("events", Some("trigger")) if *m == Method::POST => (Workflows, Route::Event),
            _ => return None,
        };
        return Some(route);
    }
    let route = match after {
        "actions" if *m == Method::GET => Route::ListActions,
        "tools" if *m == Method::GET => Route::ListTools,
        "actions" if *m == Method::POST => Route::RunAction,
        "tools" if *m == Method::POST => Route::RunTool,
        "triggers" if *m == Method::GET => Route::TriggerTypes,
        "trigger-subscriptions" if *m == Method::GET || *m == Method::POST => Route::Subscriptions,
        _ => {
            let id = one_segment(after.strip_prefix("trigger-subscriptions/")?)?;
            if !(*m == Method::GET || *m == Method::PATCH || *m == Method::DELETE) {
                return None;
            }
            Route::Subscription { id }
        }
    };
    Some((ActionKit, route))
}

fn match_sync<'a>(m: &Method, rest: &'a str) -> Option<Route<'a>> {
    let segs: Vec<&str> = rest.split('/').collect();
    let get = *m == Method::GET;
    let post = *m == Method::POST;
    let sync = |id: &'a str, op| Route::Sync { id: Some(id), op };
    Some(match segs.as_slice() {
        ["syncs"] if post => Route::Sync {
            id: None,
            op: SyncOp::Create,
        },
        ["syncs"] if get => Route::Sync {
            id: None,
            op: SyncOp::List,
        },
        ["syncs", id] if !id.is_empty() => match *m {
            Method::GET => sync(id, SyncOp::Get),
            Method::PATCH => sync(id, SyncOp::Patch),
            Method::DELETE => sync(id, SyncOp::Delete),
            _ => return None,
        },
        ["syncs", id, "disable"] if post && !id.is_empty() => sync(id, SyncOp::Disable),
        ["syncs", id, "reenable"] if post && !id.is_empty() => sync(id, SyncOp::Reenable),
        ["syncs", id, "records"] if get && !id.is_empty() => sync(id, SyncOp::Records),
        ["syncs", id, "records", record] if get && !id.is_empty() && !record.is_empty() => sync(
            id,
            SyncOp::Record {
                record,
                content: false,
            },
        ),
        ["syncs", id, "records", record, "content"]
            if get && !id.is_empty() && !record.is_empty() =>
        {
            sync(
                id,
                SyncOp::Record {
                    record,
                    content: true,
                },
            )
        }
        ["permissions", id, op @ ("check" | "batch-check" | "list-users" | "list-objects")]
            if post && !id.is_empty() =>
        {
            sync(id, SyncOp::Permissions(op))
        }
        _ => return None,
    })
}

/// The service function: answers one request.
pub(crate) async fn handle(state: Arc<EmulatorState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return control::handle(&state, req).await;
    }
    let _in_flight = state.enter();
    let (parts, body) = req.into_parts();
    let mut rec = RecordedRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        body_len: 0,
        user: None,
        credential: None,
        claims: None,
        status: 0,
        host: "unknown".to_string(),
    };
    let path = parts.uri.path().to_string();
    if let Some(asked) = cors::preflight_method(&parts.headers, &parts.method) {
        // Recorded like any other request (no user, its status), so a test
        // of credgate can see whether a preflight ever reached "Paragon";
        // classified by the method it asks for.
        if let Some(m) = match_route(&asked, &path) {
            rec.host = m.host.as_str().to_string();
        }
        let response = cors::preflight(&parts.headers);
        rec.status = response.status().as_u16();
        state.record(rec);
        return response;
    }
    let matched = match_route(&parts.method, &path);
    let (caller, outcome) = match matched {
        None => (
            None,
            Err(ApiError::not_found(
                "route_not_found",
                "no Paragon route has this method and path",
            )),
        ),
        Some(m) => {
            rec.host = m.host.as_str().to_string();
            process(&state, &parts, body, m, &mut rec).await
        }
    };
    let behaviour = state.behaviour();
    let mut delay = behaviour.delay_ms;
    if matches!(
        matched,
        Some(Matched {
            route: Route::GetMe,
            ..
        })
    ) {
        delay = delay.saturating_add(behaviour.me_delay_ms);
    }
    let mut response = finish(caller.as_ref(), outcome, &mut rec);
    cors::allow_origin(&parts.headers, response.headers_mut());
    state.record(rec);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    response
}

/// Reads the body, authenticates, checks the project and runs the handler.
async fn process(
    state: &EmulatorState,
    parts: &Parts,
    body: Incoming,
    m: Matched<'_>,
    rec: &mut RecordedRequest,
) -> (Option<Caller>, Handled) {
    let (buffered, incoming) = if m.streams_request() {
        (Bytes::new(), Some(body))
    } else {
        match tokio::time::timeout(BODY_IDLE_TIMEOUT * 4, read_limited(body, MAX_BODY_BYTES)).await
        {
            Err(_) => {
                return (
                    None,
                    Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        "the request body did not arrive in time",
                    )),
                )
            }
            Ok(Ok(b)) => {
                rec.body = b[..b.len().min(RECORDED_BODY_BYTES)].to_vec();
                rec.body_len = b.len() as u64;
                (b, None)
            }
            Ok(Err(ReadError::TooLarge)) => {
                return (
                    None,
                    Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        format!("request bodies are limited to {MAX_BODY_BYTES} bytes here"),
                    )),
                )
            }
            Ok(Err(ReadError::Io(_))) => {
                return (
                    None,
                    Err(ApiError::bad_request("the request body could not be read")),
                )
            }
        }
    };
    // `aud` is required on Managed Sync and on Agent OS's Context API.
    let needs_aud = m.host == Host::Sync
        || matches!(
            m.route,
            Route::AgentOs {
                api: agentos::Api::Context,
                ..
            }
        );
    let verified = match m.route {
        // The provider's stand-in: a popup's form, no token; the nonce in
        // its path is the capability.
        Route::Consent { nonce } => {
            return (None, install::consent(state, &parts.method, nonce));
        }
        // A popup navigation carries its token in the query.
        Route::BuildOAuth | Route::OAuthNonce => {
            auth::verify_query_token(state, &parts.headers, parts.uri.query())
        }
        _ => auth::verify(state, &parts.headers, needs_aud),
    };
    let caller = match verified {
        Ok(c) => c,
        Err(e) => return (None, Err(e.into())),
    };
    rec.user = Some(caller.user.clone());
    rec.claims = Some(caller.claims.clone());
    if m.project.is_some_and(|p| p != state.project_id) {
        return (
            Some(caller),
            Err(ApiError::not_found(
                "unknown_project",
                "no project with this id",
            )),
        );
    }
    // A fixture may ask for ActionKit's `actionkit` permission (contract §7):
    // then a token that uses JWT permissions must carry it.
    if m.host == Host::ActionKit
        && state.actionkit_permission
        && caller
            .perms
            .as_ref()
            .is_some_and(|p| p.flag("actionkit") != Some(true))
    {
        return (Some(caller), Err(ApiError::insufficient_permission()));
    }
    if let Err(e) = check_configuration(state, &parts.headers, &caller) {
        return (Some(caller), Err(e));
    }
    let call = Call {
        state,
        method: &parts.method,
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &buffered,
        caller: &caller,
        local_addr: parts.extensions.get::<LocalAddr>().map(|a| a.0),
    };
    let outcome = dispatch(&call, m.route, incoming).await;
    (Some(caller), outcome)
}

/// `X-Paragon-Configuration-Id` (what the SDK sends with workflow
/// triggers, workflow settings and events): sent once, it must name a
/// configuration of the caller's that the claim allows, and of the named
/// credential when one is named; else 404 `configuration_not_found` (the
/// SDK's "Credential configuration not found"), or 403 `7210`.
fn check_configuration(
    state: &EmulatorState,
    headers: &http::HeaderMap,
    caller: &Caller,
) -> Result<(), ApiError> {
    let mut values = headers.get_all("x-paragon-configuration-id").iter();
    let Some(v) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "X-Paragon-Configuration-Id may be sent only once",
        ));
    }
    let id = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let named = super::call::named_credential(headers)?;
    let w = super::state::lock(&state.world);
    let owner = w
        .user_credentials(&caller.user)
        .into_iter()
        .find(|c| c.configurations.iter().any(|k| k.eq_ignore_ascii_case(&id)));
    match owner {
        Some(c) if named.as_ref().is_none_or(|n| *n == c.id) => {
            if caller.may_use(c) {
                Ok(())
            } else {
                Err(ApiError::insufficient_permission())
            }
        }
        _ => Err(ApiError::not_found(
            "configuration_not_found",
            "Credential configuration not found",
        )),
    }
}

async fn dispatch(call: &Call<'_>, route: Route<'_>, incoming: Option<Incoming>) -> Handled {
    match route {
        Route::GetMe => connect::get_me(call),
        Route::PatchMe => connect::patch_me(call),
        Route::Integrations => connect::integrations(call),
        Route::Metadata => connect::metadata(call),
        Route::Uninstall { integration_id } => connect::uninstall(call, integration_id),
        Route::ListCredentials => connect::list_credentials(call),
        Route::Credential { id } => connect::credential(call, id),
        Route::CreateCredential => install::create_credential(call),
        Route::BuildOAuth => install::build_oauth(call),
        Route::OAuthNonce => install::oauth_nonce(call),
        Route::InstallSession { id } => install::session(call, id),
        // Answered before authentication, in `process`.
        Route::Consent { .. } => Err(ApiError::not_found(
            "route_not_found",
            "no Paragon route has this method and path",
        )),
        Route::WorkflowSetting { workflow_id } => connect::workflow_setting(call, workflow_id),
        Route::Trigger { workflow_id } => workflows::trigger(call, workflow_id),
        Route::Event => workflows::event(call),
        Route::Proxy { target, rest } => proxy::handle(call, target, rest, incoming).await,
        Route::ListActions => actionkit::list_actions(call, "actions"),
        Route::ListTools => actionkit::list_actions(call, "tools"),
        Route::RunAction => actionkit::run(call, "action"),
        Route::RunTool => actionkit::run(call, "tool"),
        Route::TriggerTypes => actionkit::trigger_types(call),
        Route::Subscriptions => actionkit::subscriptions(call),
        Route::Subscription { id } => actionkit::subscription(call, id),
        Route::Sync { id, op } => sync::handle(call, id, op),
        Route::AgentOs { api, rest } => agentos::handle(call, api, rest),
    }
}

/// Turns the outcome into the response: JSON objects answering an
/// authenticated call get `paragonEmulator`, every authenticated response
/// the `x-emulator-*` headers. Fills in the record.
fn finish(caller: Option<&Caller>, outcome: Handled, rec: &mut RecordedRequest) -> Response<Body> {
    let (reply, credential) = match outcome {
        Ok(o) => {
            if let Some((kept, len)) = o.streamed_body {
                rec.body = kept;
                rec.body_len = len;
            }
            (o.reply, o.credential)
        }
        Err(e) => (Reply::Json(e.status, e.body()), None),
    };
    let mut response = match reply {
        Reply::Json(status, mut body) => {
            if let (Some(c), Value::Object(map)) = (caller, &mut body) {
                map.insert(
                    "paragonEmulator".to_string(),
                    json!({"userId": c.user, "credentialId": credential}),
                );
            }
            json_response(status, &body)
        }
        Reply::Raw(r) => r,
    };
    if let Some(c) = caller {
        let h = response.headers_mut();
        // `from_bytes`: user ids may be non-ASCII UTF-8 (never control
        // characters, which the fixture rules refuse).
        if let Ok(v) = HeaderValue::from_bytes(c.user.as_bytes()) {
            h.insert("x-emulator-user", v);
        }
        let cred = credential.as_deref().unwrap_or("");
        if let Ok(v) = HeaderValue::from_str(cred) {
            h.insert("x-emulator-credential", v);
        }
    }
    rec.status = response.status().as_u16();
    rec.credential = credential;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, p: &str) -> Option<(Host, Option<&str>, Route<'_>)> {
        match_route(&m, p).map(|x| (x.host, x.project, x.route))
    }

    #[test]
    fn connect_and_workflow_routes() {
        assert_eq!(
            r(Method::GET, "/projects/p/sdk/me"),
            Some((Host::Connect, Some("p"), Route::GetMe))
        );
        assert_eq!(
            r(Method::PATCH, "/projects/p/sdk/me").map(|x| x.2),
            Some(Route::PatchMe)
        );
        assert_eq!(r(Method::POST, "/projects/p/sdk/me"), None);
        assert_eq!(
            r(Method::DELETE, "/projects/p/sdk/integrations/abc").map(|x| x.2),
            Some(Route::Uninstall {
                integration_id: "abc"
            })
        );
        assert_eq!(r(Method::DELETE, "/projects/p/sdk/integrations/a/b"), None);
        assert_eq!(
            r(
                Method::POST,
                "/projects/p/sdk/credentials/c1/configurations"
            )
            .map(|x| x.2),
            Some(Route::Credential { id: "c1" })
        );
        assert_eq!(
            r(Method::POST, "/projects/p/sdk/credentials").map(|x| x.2),
            Some(Route::CreateCredential)
        );
        assert_eq!(r(Method::PUT, "/projects/p/sdk/credentials"), None);
        assert_eq!(
            r(Method::POST, "/projects/p/sdk/triggers/w1"),
            Some((
                Host::Workflows,
                Some("p"),
                Route::Trigger { workflow_id: "w1" }
            ))
        );
        assert_eq!(r(Method::GET, "/projects/p/sdk/triggers/w1"), None);
        assert_eq!(
            r(Method::POST, "/v2/projects/p/sdk/events/trigger").map(|x| x.2),
            Some(Route::Event)
        );
        assert_eq!(r(Method::POST, "/v2/projects/p/sdk/events/trigger/x"), None);
        assert_eq!(r(Method::GET, "/projects//sdk/me"), None);
        assert_eq!(r(Method::GET, "/projects/p"), None);
        assert_eq!(r(Method::GET, "/"), None);
        assert_eq!(r(Method::CONNECT, "/projects/p/sdk/proxy/slack/x"), None);
    }

    #[test]
    fn install_flow_routes_are_connects() {
        assert_eq!(
            r(Method::GET, "/v2/projects/p/sdk/actions/build-oauth"),
            Some((Host::Connect, Some("p"), Route::BuildOAuth))
        );
        assert_eq!(
            r(Method::POST, "/v2/projects/p/sdk/actions/build-oauth"),
            None
        );
        assert_eq!(
            r(Method::GET, "/v2/projects//sdk/actions/build-oauth"),
            None
        );
        assert_eq!(
            r(Method::GET, "/projects/p/sdk/actions/oauth-nonce"),
            Some((Host::Connect, Some("p"), Route::OAuthNonce))
        );
        assert_eq!(
            r(Method::DELETE, "/projects/p/sdk/actions/oauth-nonce"),
            None
        );
        for m in [Method::GET, Method::DELETE] {
            assert_eq!(
                r(m, "/projects/p/sdk/actions/session-id/k3j4").map(|x| x.2),
                Some(Route::InstallSession { id: "k3j4" })
            );
        }
        assert_eq!(
            r(Method::POST, "/projects/p/sdk/actions/session-id/k3j4"),
            None
        );
        assert_eq!(r(Method::GET, "/projects/p/sdk/actions/session-id/"), None);
        assert_eq!(
            r(Method::GET, "/projects/p/sdk/actions/session-id/a/b"),
            None
        );
        assert_eq!(r(Method::GET, "/projects/p/sdk/actions/other"), None);
        for m in [Method::GET, Method::POST] {
            assert_eq!(
                r(m, "/emulator/consent/abc"),
                Some((Host::Connect, None, Route::Consent { nonce: "abc" }))
            );
        }
        assert_eq!(r(Method::PUT, "/emulator/consent/abc"), None);
        assert_eq!(r(Method::GET, "/emulator/consent/"), None);
        assert_eq!(r(Method::GET, "/emulator/consent/a/b"), None);
    }

    #[test]
    fn proxy_paths_keep_their_rest_raw() {
        assert_eq!(
            r(
                Method::PUT,
                "/projects/p/sdk/proxy/slack/api/chat.postMessage?x"
            )
            .map(|x| x.2),
            Some(Route::Proxy {
                target: ProxyTarget::Type("slack"),
                rest: "api/chat.postMessage?x"
            })
        );
        assert_eq!(
            r(Method::GET, "/projects/p/sdk/proxy/custom/1234/v1/x").map(|x| x.2),
            Some(Route::Proxy {
                target: ProxyTarget::CustomId("1234"),
                rest: "v1/x"
            })
        );
        assert_eq!(
            r(Method::GET, "/projects/p/sdk/proxy/salesforce").map(|x| x.2),
            Some(Route::Proxy {
                target: ProxyTarget::Type("salesforce"),
                rest: ""
            })
        );
        assert_eq!(r(Method::GET, "/projects/p/sdk/proxy//x"), None);
        assert_eq!(r(Method::GET, "/projects/p/sdk/proxy/custom"), None);
    }

    #[test]
    fn actionkit_and_sync_routes() {
        assert_eq!(
            r(Method::GET, "/projects/p/actions"),
            Some((Host::ActionKit, Some("p"), Route::ListActions))
        );
        assert_eq!(
            r(Method::POST, "/projects/p/tools").map(|x| x.2),
            Some(Route::RunTool)
        );
        assert_eq!(
            r(Method::GET, "/projects/p/tools").map(|x| x.2),
            Some(Route::ListTools)
        );
        assert_eq!(
            r(Method::POST, "/api/tools/projects/p/executions"),
            Some((
                Host::AgentOs,
                Some("p"),
                Route::AgentOs {
                    api: agentos::Api::Tools,
                    rest: "executions"
                }
            ))
        );
        assert_eq!(
            r(Method::POST, "/api/context/projects/p/search").map(|x| x.2),
            Some(Route::AgentOs {
                api: agentos::Api::Context,
                rest: "search"
            })
        );
        assert_eq!(r(Method::GET, "/api/tools/projects//x"), None);
        assert_eq!(
            r(Method::DELETE, "/projects/p/trigger-subscriptions/s1").map(|x| x.2),
            Some(Route::Subscription { id: "s1" })
        );
        assert_eq!(
            r(Method::POST, "/projects/p/trigger-subscriptions/s1"),
            None
        );
        assert_eq!(
            r(Method::POST, "/api/syncs"),
            Some((
                Host::Sync,
                None,
                Route::Sync {
                    id: None,
                    op: SyncOp::Create
                }
            ))
        );
        assert_eq!(
            r(Method::GET, "/api/syncs/s/records/r/content").map(|x| x.2),
            Some(Route::Sync {
                id: Some("s"),
                op: SyncOp::Record {
                    record: "r",
                    content: true
                }
            })
        );
        assert_eq!(
            r(Method::POST, "/api/permissions/s/list-users").map(|x| x.2),
            Some(Route::Sync {
                id: Some("s"),
                op: SyncOp::Permissions("list-users")
            })
        );
        assert_eq!(r(Method::POST, "/api/permissions/s/other"), None);
        assert_eq!(r(Method::PUT, "/api/syncs/s"), None);
        assert_eq!(r(Method::GET, "/api/syncs//records"), None);
    }
}
