//! Phases 3 and 4, classify and check the operation (contract §3, §7): the
//! route of a method and path, whether this caller may call its product and
//! operation, and the Proxy API's target. Errors: 404 `route_not_found`,
//! `unknown_project`; 403 `operation_forbidden`, `upstream_host_forbidden`;
//! 400 `bad_request` for a malformed target.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Uri};

use super::exchange::Delegated;
use super::headers::{self, Single, X_PARAGON_PROXY_URL};
use super::path;
use super::Audit;
use crate::auth::Identity;
use crate::config::{Config, MemberMetadata};
use crate::error::{GatewayError, Refused};
use crate::paragon::routes::{self, IntegrationRef, Operation, Route, RouteError};

/// The route (contract §3): product, host, operation and path parameters.
/// Recorded in the audit as soon as it is known. A route credgate answers
/// itself is served only through `handle_local` (else 404, `pipeline`).
pub(super) fn classify<'u>(
    cfg: &Config,
    method: &Method,
    uri: &'u Uri,
    tool: Option<&Delegated>,
    audit: &mut Audit,
) -> Result<Route<'u>, GatewayError> {
    let route =
        routes::classify(method, uri.path(), &cfg.paragon.project_id).map_err(|e| match e {
            RouteError::NotFound => GatewayError::RouteNotFound,
            RouteError::UnknownProject => GatewayError::UnknownProject,
        })?;
    // A delegated call is the product it reaches Paragon as (an agent's
    // proxy tool is `proxy`, an ActionKit tool `actionkit`: contract §5b),
    // so `member_products`, shadow mode, rules and limits judge the
    // operation, not the door it came through; the record names the tool
    // and the door (`via`).
    if let Some(t) = tool {
        audit.tool = Some(t.name.clone());
        audit.via = Some(t.via);
    }
    audit.product = Some(route.product.as_str());
    if let Operation::Proxy {
        integration: IntegrationRef::Type(t),
        ..
    } = route.op
    {
        if audit.enabled {
            audit.integration = Some(Arc::from(t));
        }
    }
    audit.mark("classify");
    Ok(route)
}

/// Product and operation allowed for this caller (contract §3): a member's
/// product must be in `policy.member_products`; `PATCH /sdk/me` is
/// admin-only; a member's `includeAccountAuth` on connect routes needs
/// `policy.allow_account_auth`. 403 `operation_forbidden`.
pub(super) fn check_operation(
    cfg: &Config,
    identity: &Identity,
    route: &Route<'_>,
    query: Option<&str>,
) -> Result<(), GatewayError> {
    let admin = identity.is_admin();
    // The guards that are never shadowed come first, so that a shadowed
    // product refusal cannot hide them (contract §5a).
    if route.op == Operation::PatchUser
        && !admin
        && cfg.policy.member_metadata == MemberMetadata::Refuse
    {
        // Admin-only for every member (unless members' metadata is
        // ignored: answered, never written, contract §13).
        return Err(GatewayError::OperationForbidden(Refused::AdminOnly));
    }
    if route.product.is_connect()
        && !admin
        && !cfg.policy.allow_account_auth
        && asks_account_auth(query)
    {
        return Err(GatewayError::OperationForbidden(Refused::AccountAuth));
    }
    if !admin && !cfg.policy.member_products.contains(&route.product) {
        return Err(GatewayError::OperationForbidden(Refused::ProductNotAllowed));
    }
    Ok(())
}

/// The Proxy API's target (contract §7): `{rest}`, or `X-Paragon-Proxy-Url`
/// (every spelling), never both, each by the same rules: a full URL must
/// name a host in `policy.proxy_url_hosts` (403), a path must be in normal
/// form (400). Admins too. The checked header value is returned: it is the
/// one credgate forwards, in the canonical spelling.
///
/// Never shadowed (contract §5a): a real credential is never sent to a
/// host outside the list.
pub(super) fn proxy_target(
    cfg: &Config,
    route: &Route<'_>,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, GatewayError> {
    let Operation::Proxy { rest, .. } = route.op else {
        return Ok(None);
    };
    let value = match headers::single_url_value(headers, X_PARAGON_PROXY_URL) {
        Ok(Single::Absent) => None,
        Ok(Single::One(v)) => Some(v),
        Err(headers::SingleError::Repeated) => {
            return Err(GatewayError::BadRequest(
                "X-Paragon-Proxy-Url is given more than once",
            ))
        }
        Err(headers::SingleError::Malformed) => {
            return Err(GatewayError::BadRequest(
                "X-Paragon-Proxy-Url must be visible ASCII",
            ))
        }
    };
    match path::check_proxy_target(rest, value, &cfg.policy.proxy_url_hosts) {
        Ok(()) => {}
        Err(path::TargetError::BadRequest(m)) => return Err(GatewayError::BadRequest(m)),
        Err(path::TargetError::HostForbidden) => return Err(GatewayError::UpstreamHostForbidden),
    }
    let Some(value) = value else {
        return Ok(None);
    };
    HeaderValue::from_str(value)
        .map(Some)
        .map_err(|_| GatewayError::BadRequest("X-Paragon-Proxy-Url must be visible ASCII"))
}

/// Whether a query asks for `accountAuth` (raw provider tokens): any
/// `includeAccountAuth` parameter (any case, percent-encoded or not, also
/// `includeAccountAuth[]`) whose value is not `false`, `undefined` (what
/// Paragon's SDK sends when the app sets nothing) or empty, in any case
/// (contract §3, §13).
pub fn asks_account_auth(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    q.split('&').filter_map(account_auth_param).any(|asks| asks)
}

/// The query a member's request on a connect route is forwarded with
/// (contract §13): when it has `includeAccountAuth` parameters and none of
/// them asks, every one replaced by exactly one `includeAccountAuth=false`,
/// so Paragon never reads a spelling credgate read otherwise. `None` when
/// the query has no such parameter, or one asks (refused before, unless
/// `policy.allow_account_auth`: then it goes as sent).
pub(super) fn account_auth_not_asked(query: &str) -> Option<String> {
    let mut found = false;
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        match account_auth_param(pair) {
            Some(true) => return None,
            Some(false) => found = true,
            None => kept.push(pair),
        }
    }
    if !found {
        return None;
    }
    kept.retain(|p| !p.is_empty());
    kept.push("includeAccountAuth=false");
    Some(kept.join("&"))
}

/// `Some(asks)` when `pair` is an `includeAccountAuth` parameter.
fn account_auth_param(pair: &str) -> Option<bool> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        match path::percent_decode(s.as_bytes()) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => s,
        }
    };
    if !decode(name)
        .to_ascii_lowercase()
        .starts_with("includeaccountauth")
    {
        return None;
    }
    let value = decode(value);
    let value = value.trim();
    Some(
        !(value.is_empty()
            || value.eq_ignore_ascii_case("false")
            || value.eq_ignore_ascii_case("undefined")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_auth_requests_are_detected_in_every_spelling() {
        for q in [
            "includeAccountAuth=true",
            "includeAccountAuth=1",
            "includeAccountAuth=null",
            "INCLUDEACCOUNTAUTH=TRUE",
            "x=1&includeAccountAuth=false&includeAccountAuth=true",
            "include%41ccountAuth=true",
            "includeAccountAuth[]=true",
            "includeAccountAuth=%74rue",
        ] {
            assert!(asks_account_auth(Some(q)), "{q}");
        }
        for q in [
            "",
            "includeAccountAuth=false",
            "includeAccountAuth=FALSE",
            "includeAccountAuth=undefined",
            "includeAccountAuth",
            "includeAccountAuth=",
            "includeAccountAuth=%20",
            "x=includeAccountAuth",
            "includeAccount=true",
        ] {
            assert!(!asks_account_auth(Some(q)), "{q}");
        }
        assert!(!asks_account_auth(None));
    }

    /// contract §13: what a member sent that does not ask is forwarded as
    /// exactly one `includeAccountAuth=false`, the rest of the query kept.
    #[test]
    fn a_member_query_that_does_not_ask_is_forwarded_with_one_false() {
        for (q, want) in [
            (
                "includeAccountAuth=undefined",
                Some("includeAccountAuth=false"),
            ),
            (
                "a=1&includeAccountAuth=&b=2&INCLUDEACCOUNTAUTH=false",
                Some("a=1&b=2&includeAccountAuth=false"),
            ),
            ("include%41ccountAuth", Some("includeAccountAuth=false")),
            ("a=1&b=2", None),
            ("", None),
            ("includeAccountAuth=true", None),
            ("includeAccountAuth=false&includeAccountAuth=1", None),
        ] {
            assert_eq!(account_auth_not_asked(q).as_deref(), want, "{q}");
        }
    }
}
