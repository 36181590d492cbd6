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
            Operation::GetUser
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
            // `/v2/projects/{p}/sdk/events/trigger`, what SDK 2.4 sends.
            let tail = tail.ok_or(RouteError::NotFound)?;
            let (projects, tail) = split_first(tail);
            let tail = tail.ok_or(RouteError::NotFound)?;
            let (p, after) = split_first(tail);
            if projects != "projects" || after != Some("sdk/events/trigger") || p.is_empty() {
                return Err(RouteError::NotFound);
            }
            if method != Method::POST {
                return Err(RouteError::NotFound);
            }
            check_project(p, project)?;
            Ok(route(
                Product::AppEvent,
                Upstream::Workflows,
                Operation::AppEvent,
            ))
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
                Operation::Credential { id },
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
mod tests {
    use super::*;

    const P: &str = "proj-1";

    fn ok(method: &str, path: &str) -> (Product, Upstream, CredentialLocation) {
        let m: Method = method.parse().unwrap();
        let r = classify(&m, path, P).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        (r.product, r.upstream, r.credential_location())
    }

    fn err(method: &str, path: &str) -> RouteError {
        let m: Method = method.parse().unwrap();
        classify(&m, path, P).expect_err(path)
    }

    use CredentialLocation as L;
    use Product as Pr;
    use Upstream as U;

    /// Every row of contract §3, in order.
    #[test]
    fn every_spec_route_classifies() {
        let table: &[(&str, &str, Pr, U, L)] = &[
            (
                "GET",
                "/projects/proj-1/sdk/proxy/salesforce/services/data/v59.0/query",
                Pr::Proxy,
                U::Proxy,
                L::Header,
            ),
            (
                "DELETE",
                "/projects/proj-1/sdk/proxy/slack/chat.delete",
                Pr::Proxy,
                U::Proxy,
                L::Header,
            ),
            (
                "PATCH",
                "/projects/proj-1/sdk/proxy/googledrive",
                Pr::Proxy,
                U::Proxy,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/sdk/proxy/custom/1b2c/items",
                Pr::Proxy,
                U::Proxy,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/sdk/triggers/wf-123",
                Pr::Workflow,
                U::Workflows,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/sdk/events/trigger",
                Pr::AppEvent,
                U::Workflows,
                L::Header,
            ),
            (
                "POST",
                "/v2/projects/proj-1/sdk/events/trigger",
                Pr::AppEvent,
                U::Workflows,
                L::Header,
            ),
            (
                "GET",
                "/projects/proj-1/sdk/me",
                Pr::User,
                U::Connect,
                L::None,
            ),
            (
                "PATCH",
                "/projects/proj-1/sdk/me",
                Pr::User,
                U::Connect,
                L::None,
            ),
            (
                "GET",
                "/projects/proj-1/sdk/integrations",
                Pr::Catalog,
                U::Connect,
                L::None,
            ),
            (
                "GET",
                "/projects/proj-1/sdk/metadata",
                Pr::Catalog,
                U::Connect,
                L::None,
            ),
            (
                "DELETE",
                "/projects/proj-1/sdk/integrations/int-9",
                Pr::Uninstall,
                U::Connect,
                L::HeaderRequired,
            ),
            (
                "GET",
                "/projects/proj-1/sdk/credentials",
                Pr::Credentials,
                U::Connect,
                L::HeaderOptional,
            ),
            (
                "GET",
                "/projects/proj-1/sdk/credentials/c-1",
                Pr::Credentials,
                U::Connect,
                L::Path,
            ),
            (
                "PATCH",
                "/projects/proj-1/sdk/credentials/c-1",
                Pr::Credentials,
                U::Connect,
                L::Path,
            ),
            (
                "POST",
                "/projects/proj-1/sdk/credentials/c-1/configurations",
                Pr::Credentials,
                U::Connect,
                L::Path,
            ),
            (
                "POST",
                "/projects/proj-1/sdk/workflows/wf-1",
                Pr::WorkflowSettings,
                U::Connect,
                L::Header,
            ),
            (
                "DELETE",
                "/projects/proj-1/sdk/workflows/wf-1",
                Pr::WorkflowSettings,
                U::Connect,
                L::Header,
            ),
            (
                "GET",
                "/projects/proj-1/actions",
                Pr::ActionKit,
                U::ActionKit,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/actions",
                Pr::ActionKit,
                U::ActionKit,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/tools",
                Pr::ActionKit,
                U::ActionKit,
                L::Header,
            ),
            (
                "GET",
                "/projects/proj-1/triggers",
                Pr::ActionKit,
                U::ActionKit,
                L::Header,
            ),
            (
                "POST",
                "/projects/proj-1/trigger-subscriptions",
                Pr::ActionKit,
                U::ActionKit,
                L::Header,
            ),
            (
                "GET",
                "/projects/proj-1/trigger-subscriptions",
                Pr::ActionKit,
                U::ActionKit,
                L::HeaderOptional,
            ),
            (
                "DELETE",
                "/projects/proj-1/trigger-subscriptions/ts-1",
                Pr::ActionKit,
                U::ActionKit,
                L::SubscriptionOwner,
            ),
            (
                "GET",
                "/projects/proj-1/trigger-subscriptions/ts-1/events",
                Pr::ActionKit,
                U::ActionKit,
                L::SubscriptionOwner,
            ),
            (
                "POST",
                "/api/tools/projects/proj-1/search",
                Pr::AgentOs,
                U::AgentOs,
                L::None,
            ),
            (
                "GET",
                "/api/context/projects/proj-1",
                Pr::AgentOs,
                U::AgentOs,
                L::None,
            ),
            ("POST", "/api/syncs", Pr::Sync, U::Sync, L::Body),
            ("GET", "/api/syncs", Pr::Sync, U::Sync, L::None),
            ("PATCH", "/api/syncs/s-1", Pr::Sync, U::Sync, L::Body),
            ("GET", "/api/syncs/s-1", Pr::Sync, U::Sync, L::SyncOwner),
            ("DELETE", "/api/syncs/s-1", Pr::Sync, U::Sync, L::SyncOwner),
            (
                "POST",
                "/api/syncs/s-1/disable",
                Pr::Sync,
                U::Sync,
                L::SyncOwner,
            ),
            (
                "GET",
                "/api/syncs/s-1/records/r-1/content",
                Pr::Sync,
                U::Sync,
                L::SyncOwner,
            ),
            (
                "POST",
                "/api/permissions/s-1/batch-check",
                Pr::Sync,
                U::Sync,
                L::SyncOwner,
            ),
        ];
        for (method, path, product, upstream, loc) in table {
            assert_eq!(
                ok(method, path),
                (*product, *upstream, *loc),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn path_parameters_are_extracted() {
        let r = classify(
            &Method::GET,
            "/projects/proj-1/sdk/proxy/salesforce/a/b?x",
            P,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Operation::Proxy {
                integration: IntegrationRef::Type("salesforce"),
                rest: "a/b?x"
            }
        );
        let r = classify(&Method::GET, "/projects/proj-1/sdk/proxy/custom/abc/x", P).unwrap();
        assert_eq!(
            r.op,
            Operation::Proxy {
                integration: IntegrationRef::CustomId("abc"),
                rest: "x"
            }
        );
        let r = classify(
            &Method::DELETE,
            "/projects/proj-1/sdk/integrations/int-9",
            P,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Operation::Uninstall {
                integration_id: "int-9"
            }
        );
        let r = classify(&Method::DELETE, "/api/syncs/s-9", P).unwrap();
        assert_eq!(
            r.op,
            Operation::SyncItem {
                sync_id: "s-9",
                deletes_sync: true
            }
        );
        let r = classify(&Method::GET, "/projects/proj-1/sdk/credentials/c-7/x", P).unwrap();
        assert_eq!(r.op, Operation::Credential { id: "c-7" });
    }

    #[test]
    fn wrong_project_is_unknown_project() {
        for (m, p) in [
            ("GET", "/projects/other/sdk/me"),
            ("POST", "/v2/projects/other/sdk/events/trigger"),
            ("GET", "/projects/other/sdk/proxy/slack/x"),
            ("POST", "/projects/other/actions"),
            ("GET", "/projects/PROJ-1/sdk/me"),
        ] {
            assert_eq!(err(m, p), RouteError::UnknownProject, "{m} {p}");
        }
    }

    #[test]
    fn unlisted_paths_and_methods_are_not_found() {
        for (m, p) in [
            ("GET", "/"),
            ("GET", "/projects"),
            ("GET", "/projects/proj-1"),
            ("GET", "/projects/proj-1/sdk"),
            ("DELETE", "/projects/proj-1/sdk/me"),
            ("POST", "/projects/proj-1/sdk/me"),
            ("GET", "/projects/proj-1/sdk/me/"),
            ("GET", "/Projects/proj-1/sdk/me"),
            ("GET", "/projects/proj-1/SDK/me"),
            ("GET", "/projects/proj-1/sdk/triggers/wf-1"),
            ("POST", "/projects/proj-1/sdk/triggers/wf-1/x"),
            ("POST", "/projects/proj-1/sdk/triggers"),
            ("GET", "/projects/proj-1/sdk/events/trigger"),
            ("POST", "/projects/proj-1/sdk/credentials"),
            ("GET", "/projects/proj-1/sdk/workflows/wf-1"),
            ("POST", "/projects/proj-1/sdk/actions"),
            ("GET", "/projects/proj-1/sdk/proxy"),
            ("GET", "/projects/proj-1/sdk/proxy/custom"),
            ("GET", "/projects/proj-1/actions/x"),
            ("PUT", "/api/syncs"),
            ("PUT", "/api/syncs/s-1"),
            ("POST", "/api/syncs/s-1"),
            ("patch", "/api/syncs/s-1"),
            ("Patch", "/api/syncs/s-1"),
            ("GET", "/api/tools"),
            ("GET", "/api/tools/projects"),
            ("GET", "/api/tools/proj-1"),
            ("GET", "/api/tools/projects/proj-1//x"),
            ("GET", "/api/other/projects/proj-1"),
            ("GET", "/api/syncs/"),
            ("GET", "/api/permissions/s-1"),
            ("GET", "/api/other"),
            ("GET", "/v2/projects/proj-1/sdk/me"),
            ("GET", "/v2/projects/proj-1/sdk/events/trigger"),
            ("GET", "/sdk/me"),
            ("GET", "projects/proj-1/sdk/me"),
            ("DELETE", "/projects/proj-1/sdk/integrations/a/b"),
            ("GET", "/projects/other/nothing"),
        ] {
            assert_eq!(err(m, p), RouteError::NotFound, "{m} {p}");
        }
    }

    /// contract §3: methods are part of a route. Every route row against every
    /// method, standard and extension tokens (methods are case-sensitive):
    /// the listed ones classify, every other one is `route_not_found`.
    #[test]
    fn every_route_takes_exactly_its_methods() {
        const METHODS: &[&str] = &[
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "post", "patch",
            "Patch", "delete", "PROPFIND", "PURGE", "FOO",
        ];
        // (path, methods that classify; `None`: any method).
        let table: &[(&str, Option<&[&str]>)] = &[
            ("/projects/proj-1/sdk/proxy/slack/x", None),
            ("/projects/proj-1/sdk/triggers/wf-1", Some(&["POST"])),
            ("/projects/proj-1/sdk/events/trigger", Some(&["POST"])),
            ("/v2/projects/proj-1/sdk/events/trigger", Some(&["POST"])),
            ("/projects/proj-1/sdk/me", Some(&["GET", "PATCH"])),
            ("/projects/proj-1/sdk/integrations", Some(&["GET"])),
            ("/projects/proj-1/sdk/metadata", Some(&["GET"])),
            ("/projects/proj-1/sdk/integrations/int-1", Some(&["DELETE"])),
            ("/projects/proj-1/sdk/credentials", Some(&["GET"])),
            ("/projects/proj-1/sdk/credentials/c-1", None),
            ("/projects/proj-1/sdk/credentials/c-1/configurations", None),
            (
                "/projects/proj-1/sdk/workflows/wf-1",
                Some(&["POST", "DELETE"]),
            ),
            ("/projects/proj-1/actions", None),
            ("/projects/proj-1/tools", None),
            ("/projects/proj-1/triggers", None),
            ("/projects/proj-1/trigger-subscriptions", None),
            ("/projects/proj-1/trigger-subscriptions/ts-1", None),
            ("/api/syncs", Some(&["GET", "POST"])),
            ("/api/syncs/s-1", Some(&["GET", "PATCH", "DELETE"])),
            ("/api/syncs/s-1/disable", None),
            ("/api/permissions/s-1/check", None),
            ("/api/tools/projects/proj-1", None),
            ("/api/context/projects/proj-1/x", None),
        ];
        for (path, listed) in table {
            for method in METHODS {
                let m: Method = method.parse().unwrap();
                let got = classify(&m, path, P);
                let expected = listed.is_none_or(|l| l.contains(method));
                assert_eq!(got.is_ok(), expected, "{method} {path}: {got:?}");
                if !expected {
                    assert_eq!(got, Err(RouteError::NotFound), "{method} {path}");
                }
            }
        }
        // The method decides the operation where it matters.
        fn op<'a>(m: &str, p: &'a str) -> Operation<'a> {
            classify(&m.parse().unwrap(), p, P).unwrap().op
        }
        assert_eq!(
            op("PATCH", "/api/syncs/s-1"),
            Operation::SyncPatch { sync_id: "s-1" }
        );
        assert_eq!(
            op("DELETE", "/api/syncs/s-1"),
            Operation::SyncItem {
                sync_id: "s-1",
                deletes_sync: true
            }
        );
        assert_eq!(
            op("DELETE", "/api/syncs/s-1/records"),
            Operation::SyncItem {
                sync_id: "s-1",
                deletes_sync: false
            }
        );
        assert_eq!(
            op("GET", "/projects/proj-1/trigger-subscriptions"),
            Operation::SubscriptionList
        );
        assert_eq!(
            op("POST", "/projects/proj-1/trigger-subscriptions"),
            Operation::SubscriptionCreate
        );
        assert_eq!(
            op("DELETE", "/projects/proj-1/trigger-subscriptions/Ts-1"),
            Operation::Subscription {
                id: "Ts-1",
                deletes: true
            }
        );
        assert_eq!(
            op("DELETE", "/projects/proj-1/trigger-subscriptions/ts-1/x"),
            Operation::Subscription {
                id: "ts-1",
                deletes: false
            }
        );
    }

    #[test]
    fn agent_os_checks_its_project() {
        assert_eq!(
            err("GET", "/api/tools/projects/other/search"),
            RouteError::UnknownProject
        );
    }

    #[test]
    fn products_round_trip_through_names() {
        for p in Product::ALL {
            assert_eq!(p.as_str().parse::<Product>(), Ok(p));
        }
        assert!("Proxy".parse::<Product>().is_err());
    }
}
