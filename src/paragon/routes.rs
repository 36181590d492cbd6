//! The route table of contract §3 as one pure function from (method, path) to a
//! [`Route`]. Anything not listed is `route_not_found`: deny by default.
//!
//! Matching is on the raw path, after `gateway::path` has refused every
//! non-normalized form, so no segment here can be `.`/`..` or hide a `/`.
//! Literal segments match case-sensitively (`/Projects/...` is not a route).

use http::Method;

pub use crate::config::{Product, Upstream};

/// The integration a Proxy API path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationRef<'a> {
    /// `/sdk/proxy/{type}/...`, e.g. `salesforce`.
    Type(&'a str),
    /// `/sdk/proxy/custom/{integrationId}/...`: the custom integration whose
    /// credentials carry that `integrationId`.
    CustomId(&'a str),
}

/// What the request does, with the path parameters the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// `{rest}` is everything after the integration segment (may be empty).
    Proxy {
        integration: IntegrationRef<'a>,
        rest: &'a str,
    },
    WorkflowTrigger,
    AppEvent,
    GetUser,
    PatchUser,
    Catalog,
    Uninstall {
        integration_id: &'a str,
    },
    ListCredentials,
    Credential {
        id: &'a str,
        /// `GET /sdk/credentials/{id}` itself, which the SDK polls
        /// mid-install (contract §13).
        polled: bool,
        /// A body with the install's fields, judged for members as a new
        /// account's is (contract §13): `POST .../complete-setup` (the SDK
        /// finishes a pending account with the install's `installOptions`;
        /// any case, any percent-encoding of the segment: another spelling
        /// may reach the same handler at Paragon), and `PATCH`, `PUT` or
        /// `POST` of the account itself (the SDK's settings, `{config}`), so
        /// that no method of the account's own path carries a label
        /// unjudged.
        install_body: bool,
    },
    WorkflowSettings,
    /// `/actions`, `/tools`, `/triggers`: run or list.
    ActionKit,
    /// `GET /trigger-subscriptions`: filtered for members to subscriptions
    /// whose credential they may use.
    SubscriptionList,
    /// Any other method on `/trigger-subscriptions` (creating one): the
    /// answer's `id` and `credentialId` are learned.
    SubscriptionCreate,
    /// `/trigger-subscriptions/{id}[/...]`: the subscription's credential
    /// must be permitted (contract §3).
    Subscription {
        id: &'a str,
        /// `DELETE /trigger-subscriptions/{id}`: on success the record goes.
        deletes: bool,
    },
    /// Agent OS (`/api/tools|context/projects/{p}[/...]`): no credential
    /// selection exists.
    AgentOs,
    /// `/mcp` (contract §12): the MCP transport itself. Each tool call in
    /// it is decided as its own ActionKit request.
    Mcp,
    /// `GET /v2/projects/{p}/sdk/actions/build-oauth` (contract §13): the
    /// start of connecting an account; its query carries `userToken` and
    /// `installOptions`.
    InstallStart,
    /// `GET /projects/{p}/sdk/actions/oauth-nonce`: the install popup's
    /// first page, a navigation authenticated by its `userToken` query.
    InstallNonce,
    /// `GET`/`DELETE /projects/{p}/sdk/actions/session-id/{id}`: the SDK
    /// polls an install session for the account it created.
    InstallSession {
        deletes: bool,
    },
    /// `POST /projects/{p}/sdk/credentials`: the SDK's other way to create
    /// an account (`installOptions` in the JSON body).
    CredentialCreate,
    SyncCreate,
    SyncList,
    SyncPatch {
        sync_id: &'a str,
    },
    /// Any other call on one sync (`GET`/`DELETE /api/syncs/{id}`,
    /// `/api/syncs/{id}/...`, `/api/permissions/{id}/...`).
    SyncItem {
        sync_id: &'a str,
        /// `DELETE /api/syncs/{id}`: on success the ownership record goes.
        deletes_sync: bool,
    },
}

/// Where the requested credential is taken from and put (contract §3 last column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialLocation {
    /// Not routed: any caller-sent credential header is removed.
    None,
    /// `X-Paragon-Credential`, default rules apply when none is named.
    Header,
    /// `X-Paragon-Credential`, and naming one is required (uninstall).
    HeaderRequired,
    /// Optional header; without one nothing is routed (credential listing).
    HeaderOptional,
    /// The credential id is in the path.
    Path,
    /// The JSON body's `credentialId` (sync create / update).
    Body,
    /// The sync named in the path must belong to a permitted credential.
    SyncOwner,
    /// `installOptions` (query or body, contract §13): its
    /// `selectedCredentialId`, and a new account's `externalId`.
    InstallOptions,
    /// The trigger subscription named in the path must belong to a
    /// permitted credential.
    SubscriptionOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub product: Product,
    pub upstream: Upstream,
    pub op: Operation<'a>,
}

impl Route<'_> {
    pub fn credential_location(&self) -> CredentialLocation {
        match self.op {
            Operation::Proxy { .. }
            | Operation::WorkflowTrigger
            | Operation::AppEvent
            | Operation::WorkflowSettings
            | Operation::ActionKit
            | Operation::SubscriptionCreate => CredentialLocation::Header,
            Operation::Uninstall { .. } => CredentialLocation::HeaderRequired,
            Operation::ListCredentials | Operation::SubscriptionList => {
                CredentialLocation::HeaderOptional
            }
            Operation::Subscription { .. } => CredentialLocation::SubscriptionOwner,
            Operation::Credential { .. } => CredentialLocation::Path,
            Operation::SyncCreate => CredentialLocation::Body,
            Operation::SyncPatch { .. } => CredentialLocation::Body,
            Operation::SyncItem { .. } => CredentialLocation::SyncOwner,
            Operation::InstallStart | Operation::InstallNonce | Operation::CredentialCreate => {
                CredentialLocation::InstallOptions
            }
            Operation::GetUser
            | Operation::InstallSession { .. }
            | Operation::PatchUser
            | Operation::Catalog
            | Operation::SyncList
            | Operation::AgentOs
            | Operation::Mcp => CredentialLocation::None,
        }
    }

    /// Whether a member's response must be filtered to permitted credentials
    /// or syncs (contract §7 "Responses", §5 `GET /api/syncs`).
    pub fn filters_response(&self) -> bool {
        matches!(
            self.op,
            Operation::GetUser
                | Operation::ListCredentials
                | Operation::Credential { .. }
                | Operation::SyncList
                | Operation::SubscriptionList
        )
    }

    /// Whether this is a Managed Sync route, where a JSON body's
    /// `credentialId` is judged on every method that carries a body.
    pub fn is_sync(&self) -> bool {
        self.product == Product::Sync
    }

    /// Whether credgate answers this route itself rather than forwarding
    /// it (`/mcp`, contract §12): nothing goes to Paragon as sent.
    pub fn is_local(&self) -> bool {
        self.op == Operation::Mcp
    }
}

impl Operation<'_> {
    /// Whether a member's JSON body carries the install's `installOptions`
    /// (contract §13): `POST /sdk/credentials`, and the SDK's
    /// `complete-setup` of a pending account, which sends the same body.
    pub fn carries_install_body(&self) -> bool {
        matches!(
            self,
            Operation::CredentialCreate
                | Operation::Credential {
                    install_body: true,
                    ..
                }
        )
    }

    /// A stable name of the operation: policy rules read it as
    /// `request.operation` (contract §5b).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Proxy { .. } => "proxy",
            Operation::WorkflowTrigger => "workflow_trigger",
            Operation::AppEvent => "app_event",
            Operation::GetUser => "get_user",
            Operation::PatchUser => "patch_user",
            Operation::Catalog => "catalog",
            Operation::Uninstall { .. } => "uninstall",
            Operation::ListCredentials => "list_credentials",
            Operation::Credential { .. } => "credential",
            Operation::WorkflowSettings => "workflow_settings",
            Operation::ActionKit => "actionkit",
            Operation::SubscriptionList => "subscription_list",
            Operation::SubscriptionCreate => "subscription_create",
            Operation::Subscription { .. } => "subscription",
            Operation::AgentOs => "agentos",
            Operation::Mcp => "mcp",
            Operation::InstallStart => "install_start",
            Operation::InstallNonce => "install_nonce",
            Operation::InstallSession { .. } => "install_session",
            Operation::CredentialCreate => "credential_create",
            Operation::SyncCreate => "sync_create",
            Operation::SyncList => "sync_list",
            Operation::SyncPatch { .. } => "sync_patch",
            Operation::SyncItem { .. } => "sync_item",
        }
    }

    /// Sync create and update: their body is always read, even empty.
    pub fn creates_or_updates_sync(&self) -> bool {
        matches!(self, Operation::SyncCreate | Operation::SyncPatch { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// 404 `route_not_found`.
    NotFound,
    /// 404 `unknown_project`: the path has the shape of a route but names
    /// another project.
    UnknownProject,
}

/// What follows `/v2/projects/{p}/` on the install flow's first call.
const INSTALL_START: &str = "sdk/actions/build-oauth";

/// Whether a request's `userToken` query parameter may authenticate it
/// (contract §13): `GET` on `build-oauth` and `oauth-nonce`, this project
/// or not (the route decides that after authentication). A suffix test
/// first: this runs before every authentication.
pub fn takes_user_token(method: &Method, path: &str) -> bool {
    *method == Method::GET
        && (path.ends_with("/sdk/actions/build-oauth")
            || path.ends_with("/sdk/actions/oauth-nonce"))
        && matches!(
            classify_any_project(method, path),
            Some(Operation::InstallStart | Operation::InstallNonce)
        )
}

/// The operation of a path whatever project it names.
fn classify_any_project<'a>(method: &Method, path: &'a str) -> Option<Operation<'a>> {
    let mut pieces = path.split('/');
    let project = match pieces.nth(1)? {
        "v2" => pieces.nth(1)?,
        _ => pieces.next()?,
    };
    classify(method, path, project).ok().map(|r| r.op)
}

/// Classifies a request. `path` is the raw, already-normalized path (no
/// query); `project` is `paragon.project_id`.
pub fn classify<'a>(
    method: &Method,
    path: &'a str,
    project: &str,
) -> Result<Route<'a>, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::NotFound);
    };
    let (first, tail) = split_first(rest);
    match first {
        "projects" => classify_project(method, tail.ok_or(RouteError::NotFound)?, project),
        "v2" => {
            // `/v2/projects/{p}/sdk/events/trigger`, what SDK 2.4 sends, and
            // `/v2/projects/{p}/sdk/actions/build-oauth` (contract §13).
            let tail = tail.ok_or(RouteError::NotFound)?;
            let (projects, tail) = split_first(tail);
            let tail = tail.ok_or(RouteError::NotFound)?;
            let (p, after) = split_first(tail);
            if projects != "projects" || p.is_empty() {
                return Err(RouteError::NotFound);
            }
            let r = match (after, method) {
                (Some("sdk/events/trigger"), &Method::POST) => {
                    route(Product::AppEvent, Upstream::Workflows, Operation::AppEvent)
                }
                (Some(INSTALL_START), &Method::GET) => {
                    route(Product::Install, Upstream::Connect, Operation::InstallStart)
                }
                _ => return Err(RouteError::NotFound),
            };
            check_project(p, project)?;
            Ok(r)
        }
        "api" => classify_api(method, tail.ok_or(RouteError::NotFound)?, project),
        "mcp"
            if tail.is_none() && matches!(*method, Method::GET | Method::POST | Method::DELETE) =>
        {
            Ok(route(Product::Mcp, Upstream::ActionKit, Operation::Mcp))
        }
        _ => Err(RouteError::NotFound),
    }
}

fn route(product: Product, upstream: Upstream, op: Operation<'_>) -> Route<'_> {
    Route {
        product,
        upstream,
        op,
    }
}

/// `"a/b/c"` → `("a", Some("b/c"))`; `"a"` → `("a", None)`.
/// The first `/`-separated piece of `s` and the rest after its `/`. A byte
/// scan: the pieces are short, and `split_once` sets up a searcher per call.
pub(crate) fn split_first(s: &str) -> (&str, Option<&str>) {
    match s.bytes().position(|b| b == b'/') {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    }
}

fn check_project(p: &str, project: &str) -> Result<(), RouteError> {
    if p == project {
        Ok(())
    } else {
        Err(RouteError::UnknownProject)
    }
}

fn nonempty(s: &str) -> Result<&str, RouteError> {
    if s.is_empty() {
        Err(RouteError::NotFound)
    } else {
        Ok(s)
    }
}

fn classify_project<'a>(
    method: &Method,
    tail: &'a str,
    project: &str,
) -> Result<Route<'a>, RouteError> {
    let (p, after) = split_first(tail);
    let after = after.ok_or(RouteError::NotFound)?;
    if p.is_empty() {
        return Err(RouteError::NotFound);
    }
    // Work out the route first, then the project, so that a wrong project
    // on an unlisted path is still `route_not_found`.
    let r = classify_project_path(method, after)?;
    check_project(p, project)?;
    Ok(r)
}

fn classify_project_path<'a>(method: &Method, after: &'a str) -> Result<Route<'a>, RouteError> {
    let (first, tail) = split_first(after);
    match first {
        "sdk" => classify_sdk(method, tail.ok_or(RouteError::NotFound)?),
        // ActionKit: `/projects/{p}/actions`, `/tools`, `/triggers`,
        // `/trigger-subscriptions[/...]`, any method.
        "actions" | "tools" | "triggers" if tail.is_none() => Ok(route(
            Product::ActionKit,
            Upstream::ActionKit,
            Operation::ActionKit,
        )),
        "trigger-subscriptions" => {
            let actionkit = |op| Ok(route(Product::ActionKit, Upstream::ActionKit, op));
            let Some(t) = tail else {
                return actionkit(if *method == Method::GET {
                    Operation::SubscriptionList
                } else {
                    Operation::SubscriptionCreate
                });
            };
            let (id, more) = split_first(t);
            nonempty(id)?;
            if let Some(more) = more {
                if more.split('/').any(str::is_empty) {
                    return Err(RouteError::NotFound);
                }
            }
            actionkit(Operation::Subscription {
                id,
                deletes: more.is_none() && *method == Method::DELETE,
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

fn classify_sdk<'a>(method: &Method, tail: &'a str) -> Result<Route<'a>, RouteError> {
    let (first, rest) = split_first(tail);
    let m = method;
    match (first, rest) {
        ("proxy", Some(rest)) => {
            let (integration, after) = split_first(rest);
            nonempty(integration)?;
            if integration == "custom" {
                let after = after.ok_or(RouteError::NotFound)?;
                let (id, rest) = split_first(after);
                nonempty(id)?;
                return Ok(route(
                    Product::Proxy,
                    Upstream::Proxy,
                    Operation::Proxy {
                        integration: IntegrationRef::CustomId(id),
                        rest: rest.unwrap_or(""),
                    },
                ));
            }
            Ok(route(
                Product::Proxy,
                Upstream::Proxy,
                Operation::Proxy {
                    integration: IntegrationRef::Type(integration),
                    rest: after.unwrap_or(""),
                },
            ))
        }
        ("triggers", Some(id)) if *m == Method::POST && !id.contains('/') => {
            nonempty(id)?;
            Ok(route(
                Product::Workflow,
                Upstream::Workflows,
                Operation::WorkflowTrigger,
            ))
        }
        ("events", Some("trigger")) if *m == Method::POST => Ok(route(
            Product::AppEvent,
            Upstream::Workflows,
            Operation::AppEvent,
        )),
        ("me", None) if *m == Method::GET => {
            Ok(route(Product::User, Upstream::Connect, Operation::GetUser))
        }
        ("me", None) if *m == Method::PATCH => Ok(route(
            Product::User,
            Upstream::Connect,
            Operation::PatchUser,
        )),
        ("integrations", None) | ("metadata", None) if *m == Method::GET => Ok(route(
            Product::Catalog,
            Upstream::Connect,
            Operation::Catalog,
        )),
        ("integrations", Some(id)) if *m == Method::DELETE && !id.contains('/') => Ok(route(
            Product::Uninstall,
            Upstream::Connect,
            Operation::Uninstall {
                integration_id: nonempty(id)?,
            },
        )),
        ("credentials", None) if *m == Method::GET => Ok(route(
            Product::Credentials,
            Upstream::Connect,
            Operation::ListCredentials,
        )),
        ("credentials", None) if *m == Method::POST => Ok(route(
            Product::Install,
            Upstream::Connect,
            Operation::CredentialCreate,
        )),
        ("actions", Some("oauth-nonce")) if *m == Method::GET => Ok(route(
            Product::Install,
            Upstream::Connect,
            Operation::InstallNonce,
        )),
        ("actions", Some(rest)) if *m == Method::GET || *m == Method::DELETE => {
            let id = rest
                .strip_prefix("session-id/")
                .ok_or(RouteError::NotFound)?;
            if id.contains('/') {
                return Err(RouteError::NotFound);
            }
            nonempty(id)?;
            Ok(route(
                Product::Install,
                Upstream::Connect,
                Operation::InstallSession {
                    deletes: *m == Method::DELETE,
                },
            ))
        }
        ("credentials", Some(rest)) => {
            let (id, more) = split_first(rest);
            nonempty(id)?;
            if let Some(more) = more {
                if more.split('/').any(str::is_empty) {
                    return Err(RouteError::NotFound);
                }
            }
            Ok(route(
                Product::Credentials,
                Upstream::Connect,
                Operation::Credential {
                    id,
                    polled: more.is_none() && *m == Method::GET,
                    install_body: match more {
                        None => matches!(*m, Method::PATCH | Method::PUT | Method::POST),
                        Some(seg) => *m == Method::POST && names_segment(seg, "complete-setup"),
                    },
                },
            ))
        }
        ("workflows", Some(id))
            if (*m == Method::POST || *m == Method::DELETE) && !id.contains('/') =>
        {
            nonempty(id)?;
            Ok(route(
                Product::WorkflowSettings,
                Upstream::Connect,
                Operation::WorkflowSettings,
            ))
        }
        _ => Err(RouteError::NotFound),
    }
}

/// Whether a path segment is `name` (lowercase ASCII) in any case and any
/// percent-encoding: a router that matches paths without regard to case,
/// or decodes before matching, takes them all for the same route.
fn names_segment(segment: &str, name: &str) -> bool {
    let mut bytes = segment.bytes();
    let mut want = name.bytes();
    loop {
        let got = match bytes.next() {
            None => return want.next().is_none(),
            Some(b'%') => {
                let hex = |b: Option<u8>| b.and_then(|b| char::from(b).to_digit(16));
                match (hex(bytes.next()), hex(bytes.next())) {
                    (Some(hi), Some(lo)) => (hi * 16 + lo) as u8,
                    _ => return false,
                }
            }
            Some(b) => b,
        };
        if want.next() != Some(got.to_ascii_lowercase()) {
            return false;
        }
    }
}

/// `/api/...`: Managed Sync (`syncs`, `permissions`) and Agent OS (`tools`,
/// `context`).
fn classify_api<'a>(
    method: &Method,
    tail: &'a str,
    project: &str,
) -> Result<Route<'a>, RouteError> {
    let (first, rest) = split_first(tail);
    match first {
        "tools" | "context" => {
            // `/api/{tools|context}/projects/{p}[/...]`.
            let (projects, after) = split_first(rest.ok_or(RouteError::NotFound)?);
            let (p, more) = split_first(after.ok_or(RouteError::NotFound)?);
            if projects != "projects" || p.is_empty() {
                return Err(RouteError::NotFound);
            }
            if more.is_some_and(|m| m.split('/').any(str::is_empty)) {
                return Err(RouteError::NotFound);
            }
            check_project(p, project)?;
            Ok(route(
                Product::AgentOs,
                Upstream::AgentOs,
                Operation::AgentOs,
            ))
        }
        _ => classify_sync(method, first, rest),
    }
}

/// Managed Sync. `/api/syncs/{id}` itself takes the methods Paragon
/// documents (GET status, PATCH update, DELETE); anything below it and
/// `/api/permissions/{id}/...` take any method, their bodies judged.
fn classify_sync<'a>(
    method: &Method,
    first: &str,
    rest: Option<&'a str>,
) -> Result<Route<'a>, RouteError> {
    let sync = |op| Ok(route(Product::Sync, Upstream::Sync, op));
    match (first, rest) {
        ("syncs", None) if *method == Method::POST => sync(Operation::SyncCreate),
        ("syncs", None) if *method == Method::GET => sync(Operation::SyncList),
        ("syncs", Some(rest)) => {
            let (id, more) = split_first(rest);
            nonempty(id)?;
            match more {
                None if *method == Method::PATCH => sync(Operation::SyncPatch { sync_id: id }),
                None if *method == Method::GET || *method == Method::DELETE => {
                    sync(Operation::SyncItem {
                        sync_id: id,
                        deletes_sync: *method == Method::DELETE,
                    })
                }
                None => Err(RouteError::NotFound),
                Some(more) => {
                    if more.split('/').any(str::is_empty) {
                        return Err(RouteError::NotFound);
                    }
                    sync(Operation::SyncItem {
                        sync_id: id,
                        deletes_sync: false,
                    })
                }
            }
        }
        ("permissions", Some(rest)) => {
            let (id, more) = split_first(rest);
            nonempty(id)?;
            // `/api/permissions/{syncId}/...`: an operation segment is required.
            let more = more.ok_or(RouteError::NotFound)?;
            if more.split('/').any(str::is_empty) {
                return Err(RouteError::NotFound);
            }
            sync(Operation::SyncItem {
                sync_id: id,
                deletes_sync: false,
            })
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
