//! The route table's tests (contract §3).

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
            "GET",
            "/v2/projects/proj-1/sdk/actions/build-oauth",
            Pr::Install,
            U::Connect,
            L::InstallOptions,
        ),
        (
            "GET",
            "/projects/proj-1/sdk/actions/oauth-nonce",
            Pr::Install,
            U::Connect,
            L::InstallOptions,
        ),
        (
            "DELETE",
            "/projects/proj-1/sdk/actions/session-id/k3x9",
            Pr::Install,
            U::Connect,
            L::None,
        ),
        (
            "POST",
            "/projects/proj-1/sdk/credentials",
            Pr::Install,
            U::Connect,
            L::InstallOptions,
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
    assert_eq!(
        r.op,
        Operation::Credential {
            id: "c-7",
            polled: false,
            install_body: false
        }
    );
    let r = classify(
        &Method::POST,
        "/projects/proj-1/sdk/credentials/c-7/complete-setup",
        P,
    )
    .unwrap();
    assert_eq!(
        r.op,
        Operation::Credential {
            id: "c-7",
            polled: false,
            install_body: true
        }
    );
    // Another spelling of the segment is the same route at a router that
    // ignores case or decodes first: judged the same; so is a body on the
    // account's own path. Only those: near-misses and other methods are
    // not install bodies.
    let c7 = |rest: &str| format!("/projects/proj-1/sdk/credentials/c-7{rest}");
    for (m, rest, judged) in [
        (Method::POST, "/Complete-Setup", true),
        (Method::POST, "/COMPLETE%2dSETUP", true),
        (Method::POST, "/%63omplete%2Dsetup", true),
        (Method::PATCH, "", true),
        (Method::PUT, "", true),
        (Method::POST, "", true),
        (Method::GET, "/complete-setup", false),
        (Method::POST, "/complete-setup/x", false),
        (Method::POST, "/configurations", false),
        (Method::POST, "/complete-setu", false),
        (Method::POST, "/complete-setupx", false),
        (Method::POST, "/complete%2", false),
        (Method::GET, "", false),
        (Method::DELETE, "", false),
    ] {
        let p = c7(rest);
        let r = classify(&m, &p, P).unwrap();
        assert!(
            matches!(r.op, Operation::Credential { install_body, .. } if install_body == judged),
            "{m} {p}"
        );
    }
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
        ("PUT", "/projects/proj-1/sdk/credentials"),
        ("GET", "/projects/proj-1/sdk/workflows/wf-1"),
        ("POST", "/v2/projects/proj-1/sdk/actions/build-oauth"),
        ("GET", "/projects/proj-1/sdk/actions/build-oauth"),
        ("GET", "/v2/projects/proj-1/sdk/actions/oauth-nonce"),
        ("GET", "/projects/proj-1/sdk/actions/session-id"),
        ("GET", "/projects/proj-1/sdk/actions/session-id/"),
        ("GET", "/projects/proj-1/sdk/actions/session-id/a/b"),
        ("POST", "/projects/proj-1/sdk/actions/session-id/a"),
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
        ("/projects/proj-1/sdk/credentials", Some(&["GET", "POST"])),
        ("/projects/proj-1/sdk/credentials/c-1", None),
        (
            "/v2/projects/proj-1/sdk/actions/build-oauth",
            Some(&["GET"]),
        ),
        ("/projects/proj-1/sdk/actions/oauth-nonce", Some(&["GET"])),
        (
            "/projects/proj-1/sdk/actions/session-id/k3x9",
            Some(&["GET", "DELETE"]),
        ),
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

/// contract §13: a `userToken` query authenticates only `GET` on
/// `build-oauth` and `oauth-nonce`.
#[test]
fn only_the_install_popup_routes_take_a_user_token() {
    for (method, path, takes) in [
        ("GET", "/v2/projects/p/sdk/actions/build-oauth", true),
        ("GET", "/projects/p/sdk/actions/oauth-nonce", true),
        ("GET", "/projects/other/sdk/actions/oauth-nonce", true),
        ("POST", "/projects/p/sdk/actions/oauth-nonce", false),
        ("GET", "/projects/p/sdk/actions/build-oauth", false),
        ("GET", "/v2/projects/p/sdk/actions/oauth-nonce", false),
        ("GET", "/projects/p/sdk/actions/session-id/x", false),
        (
            "GET",
            "/projects/p/sdk/proxy/x/sdk/actions/oauth-nonce",
            false,
        ),
        ("GET", "/projects/p/sdk/me", false),
        ("GET", "/x/sdk/actions/oauth-nonce", false),
    ] {
        let m: Method = method.parse().unwrap();
        assert_eq!(takes_user_token(&m, path), takes, "{method} {path}");
    }
}
