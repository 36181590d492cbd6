//! The one error type of a request, and the one place it becomes a response
//! (contract §8). The variant decides status and code; its source (caller or
//! upstream) decides 4xx or 5xx. Messages are fixed text: they never echo a
//! token, a header value or a path, so nothing a caller sends is reflected.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::auth::AuthError;
use crate::net::body::{full, Body};

/// Why an authorization check refused (contract §5a): the stable `reason`
/// of the audit record and of `/admin/decide`. Responses never carry it
/// (one message per code), so a member learns nothing about other members'
/// accounts from a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The named credential (or configuration, or subscription) is not in
    /// the user's list, even after a reload.
    NotInList,
    /// The sync belongs to another Connected User.
    OtherUser,
    /// The credential is of another integration than the route's.
    OtherIntegration,
    /// In the list, but no grant permits it to this member (or none of the
    /// route's integration is permitted).
    NoGrant,
    /// Several credentials match: `ext:` naming several, or several
    /// permitted and none named.
    Ambiguous,
    /// The product is not one of `policy.member_products`.
    ProductNotAllowed,
    /// The operation is admin-only for every member (`PATCH /sdk/me`);
    /// recorded as `product_not_allowed`, and never shadowed.
    AdminOnly,
    /// A Proxy API target names a host outside `policy.proxy_url_hosts`,
    /// or a member's trigger-subscription `webhookOverride.url` one outside
    /// `policy.webhook_hosts`.
    HostNotAllowed,
    /// A member asks for `includeAccountAuth`.
    AccountAuth,
    /// The sync's credential is not permitted to the caller (another
    /// member's), or not known (a sync credgate did not see created or
    /// updated).
    SyncNotOwned,
    /// A deny rule of `policy.rules_file` (contract §5b); the audit
    /// record names it.
    Rule,
    /// A member's new account labelled with another `externalId` than its
    /// own `owner_external_id` label (contract §13).
    OwnerLabelMismatch,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::NotInList => "not_in_list",
            Refused::OtherUser => "other_user",
            Refused::OtherIntegration => "other_integration",
            Refused::NoGrant => "no_grant",
            Refused::Ambiguous => "ambiguous",
            Refused::ProductNotAllowed | Refused::AdminOnly => "product_not_allowed",
            Refused::HostNotAllowed => "host_not_allowed",
            Refused::AccountAuth => "account_auth",
            Refused::SyncNotOwned => "sync_not_owned",
            Refused::Rule => "rule",
            Refused::OwnerLabelMismatch => "owner_label_mismatch",
        }
    }
}

/// Paragon's code for "insufficient permission", which its Connect SDK
/// does not sign its user out on (contract §13).
pub const PARAGON_INSUFFICIENT_PERMISSION: &str = "7210";

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 400: malformed input where credgate must read it.
    #[error("{0}")]
    BadRequest(&'static str),
    /// 400: several permitted credentials and none named.
    #[error("several credentials are permitted; name one with X-Paragon-Credential")]
    CredentialRequired { candidates: Vec<String> },
    /// 401.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// 403: the named credential is not permitted (or not the user's, or of
    /// another integration, or unknown: one answer for all of them; the
    /// reason says which, for the audit only).
    #[error("the requested credential is not permitted for this caller")]
    CredentialForbidden(Refused),
    /// 403: nothing permitted for the integration.
    #[error("no permitted credential for this request")]
    NoPermittedCredential(Refused),
    /// 403: product or operation not allowed for this caller (one message
    /// whatever the reason).
    #[error("this operation is not allowed for this caller")]
    OperationForbidden(Refused),
    /// 403: a CORS preflight from an origin not in `cors.allowed_origins`
    /// (contract §13).
    #[error("this origin may not call credgate from a browser")]
    CorsOriginForbidden,
    /// 403: full URL in a Proxy API path to a host not allowed, or a
    /// member's trigger-subscription `webhookOverride.url` (contract §3).
    #[error("the request names a host that is not allowed")]
    UpstreamHostForbidden,
    /// 429 with `Retry-After` (whole seconds): over a rate limit
    /// (contract §5c); `scope` is `principal`, `user` or `rule`.
    #[error("too many requests; retry later")]
    RateLimited {
        retry_after: u64,
        scope: &'static str,
    },
    /// 404.
    #[error("no such route")]
    RouteNotFound,
    /// 404.
    #[error("unknown project")]
    UnknownProject,
    /// 404 (contract §12): no open MCP session of this caller has the
    /// `Mcp-Session-Id` sent (never opened, ended, idled out, or another
    /// principal's: one answer for all); the client initializes again.
    #[error("no such MCP session; initialize a new one")]
    SessionNotFound,
    /// 405: `/mcp` offers no server-sent event stream on GET.
    #[error("this method is not offered here")]
    MethodNotAllowed,
    /// 408: a body credgate must read did not arrive in full within
    /// `server.header_read_timeout`.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// 413.
    #[error("request body is larger than server.max_body_bytes")]
    BodyTooLarge,
    /// 502: connect refused, reset, TLS failure, or a response credgate had
    /// to read and could not.
    #[error("Paragon could not be reached")]
    UpstreamUnavailable(#[source] UpstreamFailure),
    /// 503: the user's credential list cannot be loaded.
    #[error("the credential list for this user is unavailable")]
    CredentialsUnavailable(#[source] crate::paragon::directory::LoadError),
    /// 503: a dependency other than Paragon is unavailable (the cluster
    /// store in strict or degraded mode).
    #[error("{0}")]
    Unavailable(&'static str),
    /// 503 with `Retry-After`: the identity provider's keys have not loaded
    /// yet (a token cannot be judged; it is not the caller's fault).
    #[error("the signing keys are not loaded yet; retry shortly")]
    KeysUnavailable,
    /// 504: no response headers within `server.upstream_timeout`.
    #[error("Paragon did not answer in time")]
    UpstreamTimeout,
}

/// What went wrong talking to Paragon (kept as the 502's source for logs).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("request to Paragon failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("Paragon's response could not be read: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("Paragon's response could not be filtered: {0}")]
    Unfilterable(&'static str),
    #[error("Paragon's response breaks HTTP as credgate speaks it: {0}")]
    Protocol(&'static str),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) | GatewayError::CredentialRequired { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::CredentialForbidden(_)
            | GatewayError::NoPermittedCredential(_)
            | GatewayError::OperationForbidden(_)
            | GatewayError::UpstreamHostForbidden
            | GatewayError::CorsOriginForbidden => StatusCode::FORBIDDEN,
            GatewayError::RouteNotFound
            | GatewayError::UnknownProject
            | GatewayError::SessionNotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::CredentialsUnavailable(_)
            | GatewayError::Unavailable(_)
            | GatewayError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable `code` of the JSON error body (contract §8).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::CredentialRequired { .. } => "credential_required",
            GatewayError::Unauthenticated(_) => "unauthenticated",
            GatewayError::CredentialForbidden(_) => "credential_forbidden",
            GatewayError::NoPermittedCredential(_) => "no_permitted_credential",
            GatewayError::OperationForbidden(_) => "operation_forbidden",
            GatewayError::UpstreamHostForbidden => "upstream_host_forbidden",
            GatewayError::CorsOriginForbidden => "cors_origin_forbidden",
            GatewayError::RouteNotFound => "route_not_found",
            GatewayError::UnknownProject => "unknown_project",
            GatewayError::SessionNotFound => "session_not_found",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::BodyTimeout => "body_timeout",
            GatewayError::BodyTooLarge => "body_too_large",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::CredentialsUnavailable(_) => "credentials_unavailable",
            GatewayError::Unavailable(_) | GatewayError::KeysUnavailable => "unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// Whether the caller caused it (a refusal) rather than a failure.
    pub fn is_refusal(&self) -> bool {
        self.status().is_client_error()
    }

    /// The authorization reason of a refusal by policy (contract §5a); `None`
    /// for every other error (authentication, input, limits, failures).
    pub fn refused(&self) -> Option<Refused> {
        match self {
            GatewayError::CredentialForbidden(r)
            | GatewayError::NoPermittedCredential(r)
            | GatewayError::OperationForbidden(r) => Some(*r),
            GatewayError::UpstreamHostForbidden => Some(Refused::HostNotAllowed),
            GatewayError::CredentialRequired { .. } => Some(Refused::Ambiguous),
            _ => None,
        }
    }

    /// Whether shadow mode may record this refusal instead of answering it
    /// (contract §5a): refusals about who may use which account, never the
    /// guards that keep a token or a secret from leaving (the host guard,
    /// `includeAccountAuth`, operations admin-only for every member).
    pub fn shadowable(&self) -> bool {
        match self.refused() {
            None | Some(Refused::HostNotAllowed | Refused::AccountAuth | Refused::AdminOnly) => {
                false
            }
            Some(_) => true,
        }
    }

    /// The audit record's `reason`: the authorization reason of a policy
    /// refusal, else the code.
    pub fn reason(&self) -> &'static str {
        self.refused().map_or_else(|| self.code(), Refused::as_str)
    }

    /// Renders the error for a caller that is Paragon's Connect SDK
    /// (contract §13): the SDK signs its user out on a 401 or 403 unless
    /// the body's `code` is Paragon's "insufficient permission" (`"7210"`),
    /// so every 403, and 400 `credential_required`, takes Paragon's shape
    /// with credgate's own code inside; every other error (a 401 must sign
    /// out) keeps [`into_response`](Self::into_response)'s.
    pub fn into_sdk_response(self, request_id: &str) -> Response<Body> {
        let status = self.status();
        let sdk_shaped = status == StatusCode::FORBIDDEN
            || matches!(self, GatewayError::CredentialRequired { .. });
        if !sdk_shaped {
            return self.into_response(request_id);
        }
        let mut inner = serde_json::json!({"code": self.code(), "requestId": request_id});
        if let GatewayError::CredentialRequired { candidates } = &self {
            inner["candidates"] = serde_json::json!(candidates);
        }
        let body = serde_json::json!({
            "message": self.to_string(),
            "code": PARAGON_INSUFFICIENT_PERMISSION,
            "status": status.as_u16(),
            "credgate": inner,
        });
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut resp = Response::new(full(bytes));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert(crate::net::X_REQUEST_ID, v);
        }
        resp
    }

    /// Renders the JSON error response. `request_id` is a value credgate
    /// generated or validated as a safe token.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let status = self.status();
        let message = match &self {
            // The auth error's text says what was wrong, never the token.
            GatewayError::Unauthenticated(e) => e.to_string(),
            // Paragon answered, but not in a form credgate may pass on.
            GatewayError::UpstreamUnavailable(
                UpstreamFailure::Unfilterable(_) | UpstreamFailure::Protocol(_),
            ) => "Paragon's response could not be passed on safely".to_string(),
            other => other.to_string(),
        };
        let mut body = serde_json::json!({
            "message": message,
            "code": self.code(),
            "requestId": request_id,
        });
        if let GatewayError::CredentialRequired { candidates } = &self {
            body["candidates"] = serde_json::json!(candidates);
        }
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut resp = Response::new(full(bytes));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            // Transient: keys loading, a credential list Paragon did not
            // give (failed loads are not cached, so the next try loads
            // again), a store or signer briefly down.
            GatewayError::KeysUnavailable
            | GatewayError::CredentialsUnavailable(_)
            | GatewayError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::RateLimited { retry_after, .. } => {
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            resp.headers_mut().insert(crate::net::X_REQUEST_ID, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn all() -> Vec<GatewayError> {
        vec![
            GatewayError::BadRequest("x"),
            GatewayError::CredentialRequired {
                candidates: vec!["a".into(), "b".into()],
            },
            GatewayError::Unauthenticated(AuthError::Missing),
            GatewayError::CredentialForbidden(Refused::NoGrant),
            GatewayError::NoPermittedCredential(Refused::NoGrant),
            GatewayError::OperationForbidden(Refused::ProductNotAllowed),
            GatewayError::UpstreamHostForbidden,
            GatewayError::CorsOriginForbidden,
            GatewayError::RouteNotFound,
            GatewayError::UnknownProject,
            GatewayError::SessionNotFound,
            GatewayError::MethodNotAllowed,
            GatewayError::BodyTimeout,
            GatewayError::BodyTooLarge,
            GatewayError::RateLimited {
                retry_after: 3,
                scope: "principal",
            },
            GatewayError::UpstreamUnavailable(UpstreamFailure::Unfilterable("x")),
            GatewayError::CredentialsUnavailable(
                crate::paragon::directory::LoadError::NotAuthenticated,
            ),
            GatewayError::UpstreamTimeout,
        ]
    }

    #[tokio::test]
    async fn a_502_says_whether_paragon_answered() {
        use http_body_util::BodyExt;
        let text = |e: GatewayError| async move {
            let body = e.into_response("r").into_body().collect().await.unwrap();
            String::from_utf8(body.to_bytes().to_vec()).unwrap()
        };
        let unreachable = text(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Transport("connection refused".into()),
        ))
        .await;
        assert!(
            unreachable.contains("could not be reached"),
            "{unreachable}"
        );
        assert!(
            !unreachable.contains("refused"),
            "no internals: {unreachable}"
        );
        let answered = text(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("secret detail"),
        ))
        .await;
        assert!(answered.contains("could not be passed on"), "{answered}");
        assert!(!answered.contains("secret detail"), "{answered}");
        assert!(answered.contains("\"upstream_unavailable\""), "{answered}");
    }

    /// contract §13: for Paragon's SDK, every 403 and
    /// `credential_required` in Paragon's shape (code 7210, credgate's code
    /// inside); a 401 and every other error unchanged.
    #[tokio::test]
    async fn the_sdk_gets_refusals_it_does_not_sign_out_on() {
        let json = |r: Response<Body>| async move {
            let status = r.status().as_u16();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        };
        for (e, same) in all().into_iter().zip(all()) {
            let plain = json(same.into_response("r")).await;
            let sdk = json(e.into_sdk_response("r")).await;
            assert_eq!(plain.0, sdk.0, "status kept");
            let shaped = sdk.0 == 403 || plain.1["code"] == "credential_required";
            if shaped {
                assert_eq!(sdk.1["code"], "7210", "{sdk:?}");
                assert_eq!(sdk.1["status"], sdk.0);
                assert_eq!(sdk.1["credgate"]["code"], plain.1["code"]);
                assert_eq!(sdk.1["credgate"]["requestId"], "r");
                assert_eq!(sdk.1["message"], plain.1["message"]);
                assert_eq!(sdk.1["credgate"]["candidates"], plain.1["candidates"]);
            } else {
                assert_eq!(sdk.1, plain.1, "unchanged");
            }
        }
    }

    /// The table of contract §8, row by row.
    #[test]
    fn status_and_code_follow_the_spec_table() {
        let got: Vec<(u16, &str)> = all()
            .iter()
            .map(|e| (e.status().as_u16(), e.code()))
            .collect();
        assert_eq!(
            got,
            vec![
                (400, "bad_request"),
                (400, "credential_required"),
                (401, "unauthenticated"),
                (403, "credential_forbidden"),
                (403, "no_permitted_credential"),
                (403, "operation_forbidden"),
                (403, "upstream_host_forbidden"),
                (403, "cors_origin_forbidden"),
                (404, "route_not_found"),
                (404, "unknown_project"),
                (404, "session_not_found"),
                (405, "method_not_allowed"),
                (408, "body_timeout"),
                (413, "body_too_large"),
                (429, "rate_limited"),
                (502, "upstream_unavailable"),
                (503, "credentials_unavailable"),
                (504, "upstream_timeout"),
            ]
        );
    }

    #[test]
    fn a_429_says_when_to_retry_and_is_never_shadowed() {
        let e = GatewayError::RateLimited {
            retry_after: 7,
            scope: "user",
        };
        assert_eq!(e.refused(), None);
        assert_eq!(e.reason(), "rate_limited");
        let resp = e.into_response("r");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "7");
    }

    /// Issue 29: every transient 503 says when to try again.
    #[test]
    fn a_transient_503_says_when_to_retry() {
        for e in [
            GatewayError::KeysUnavailable,
            GatewayError::CredentialsUnavailable(
                crate::paragon::directory::LoadError::NotAuthenticated,
            ),
            GatewayError::Unavailable("the sync ownership store is unavailable"),
        ] {
            let resp = e.into_response("r");
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers()[http::header::RETRY_AFTER], "1");
        }
    }

    #[tokio::test]
    async fn response_is_json_with_message_code_request_id_and_candidates() {
        let resp = GatewayError::CredentialRequired {
            candidates: vec!["c1".into(), "c2".into()],
        }
        .into_response("req-1");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(resp.headers()["x-request-id"], "req-1");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "credential_required");
        assert_eq!(v["requestId"], "req-1");
        assert_eq!(v["candidates"], serde_json::json!(["c1", "c2"]));
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("X-Paragon-Credential"));
    }

    /// A refusal's response is the same whatever its reason: the reason is
    /// for the audit, not for the caller (contract §5a).
    #[tokio::test]
    async fn refusals_answer_one_message_per_code_whatever_the_reason() {
        let reasons = [
            Refused::NotInList,
            Refused::OtherUser,
            Refused::OtherIntegration,
            Refused::NoGrant,
            Refused::Ambiguous,
            Refused::ProductNotAllowed,
            Refused::HostNotAllowed,
            Refused::AccountAuth,
            Refused::SyncNotOwned,
            Refused::OwnerLabelMismatch,
        ];
        let kinds: [fn(Refused) -> GatewayError; 3] = [
            GatewayError::CredentialForbidden,
            GatewayError::NoPermittedCredential,
            GatewayError::OperationForbidden,
        ];
        for kind in kinds {
            let mut bodies = std::collections::BTreeSet::new();
            for r in reasons {
                let e = kind(r);
                assert_eq!(e.reason(), r.as_str());
                let body = e.into_response("r").into_body().collect().await.unwrap();
                bodies.insert(body.to_bytes());
            }
            assert_eq!(bodies.len(), 1, "{bodies:?}");
        }
        assert_eq!(GatewayError::RouteNotFound.reason(), "route_not_found");
        assert_eq!(GatewayError::RouteNotFound.refused(), None);
    }

    #[test]
    fn unauthenticated_carries_www_authenticate() {
        let resp = GatewayError::Unauthenticated(AuthError::Expired).into_response("r");
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let other = GatewayError::CredentialForbidden(Refused::NoGrant).into_response("r");
        assert!(other.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
