//! What every handler shares: the call it serves ([`Call`]), what it answers
//! ([`Outcome`], [`Reply`], [`ApiError`]), and how a call's credential is
//! chosen (`X-Paragon-Credential`, or Paragon's default).
//!
//! Credential choice, the same on every header route:
//! * `X-Paragon-Credential` sent twice, or not a UUID: 400 `bad_request`.
//! * Naming a credential that is not the caller's, or (where the route's
//!   integration is known) one of another integration: 404
//!   `credential_not_found`, one message for both, so a caller cannot tell
//!   another user's credential from a nonexistent one. Never served.
//! * Naming one of the caller's that the token's permissions claim does not
//!   allow: 403 with code `7210` (what Paragon's SDK calls
//!   `INSUFFICIENT_PERMISSION`).
//! * Naming none where the integration is known: the oldest VALID
//!   credential of it that the claim allows; none VALID at all: 404
//!   `integration_not_connected`; VALID ones exist but the claim allows
//!   none: 403 `7210`.
//! * Naming none where the integration is not known (workflow triggers,
//!   App Events, workflow settings, ActionKit listings): the caller's only
//!   credential when the claim lets it use exactly one, else none.

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::auth::{AuthError, Caller};
use super::state::{Cred, EmulatorState, World};
use crate::net::body::Body;
use crate::paragon::credentials::is_uuid;

pub(crate) const CREDENTIAL_HEADER: &str = "x-paragon-credential";
/// A request body that stalls this long is refused (408): a stuck client
/// must not hold a request open forever. A buffered body gets four times
/// this in total; a streamed upload this long between frames.
pub(crate) const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Paragon's code for a JWT-permissions refusal.
pub(crate) const INSUFFICIENT_PERMISSION: &str = "7210";

/// A refusal: `{"message": ..., "code": ...}` with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn insufficient_permission() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            INSUFFICIENT_PERMISSION,
            "the token's permissions do not allow this credential",
        )
    }

    pub fn credential_not_found() -> Self {
        Self::not_found(
            "credential_not_found",
            "Connect credential not found for this user and integration",
        )
    }

    pub fn body(&self) -> Value {
        json!({"message": self.message, "code": self.code})
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let (code, message) = match e {
            AuthError::Missing => (
                "missing_token",
                "a Paragon User Token is required (Authorization: Bearer <token>)",
            ),
            AuthError::Invalid => ("invalid_token", "the Paragon User Token is invalid"),
            AuthError::Expired => ("token_expired", "the Paragon User Token has expired"),
            AuthError::Audience => (
                "invalid_audience",
                "the Paragon User Token's aud is missing or not this project's",
            ),
            AuthError::Permissions => (
                "invalid_permissions",
                "the token's permissions claim is not understood",
            ),
            AuthError::UnknownUser => (
                "unknown_user",
                "the token's sub is not a Connected User of this project",
            ),
        };
        ApiError::new(http::StatusCode::UNAUTHORIZED, code, message)
    }
}

/// A handler's answer.
pub(crate) enum Reply {
    /// A JSON body; objects get the `paragonEmulator` echo.
    Json(StatusCode, Value),
    /// Sent as is: no echo in the body (raw proxy responses, streams).
    Raw(Response<Body>),
}

/// A handled call: the answer and the credential it was served with.
pub(crate) struct Outcome {
    pub reply: Reply,
    pub credential: Option<String>,
    /// A streamed request body's recorded prefix and full length.
    pub streamed_body: Option<(Vec<u8>, u64)>,
}

impl Outcome {
    pub fn json(status: StatusCode, body: Value, credential: Option<String>) -> Self {
        Outcome {
            reply: Reply::Json(status, body),
            credential,
            streamed_body: None,
        }
    }

    pub fn ok(body: Value, credential: Option<String>) -> Self {
        Self::json(StatusCode::OK, body, credential)
    }

    pub fn raw(response: Response<Body>, credential: Option<String>) -> Self {
        Outcome {
            reply: Reply::Raw(response),
            credential,
            streamed_body: None,
        }
    }
}

pub(crate) type Handled = Result<Outcome, ApiError>;

/// An authenticated call on a Paragon route.
pub(crate) struct Call<'a> {
    pub state: &'a EmulatorState,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a Bytes,
    pub caller: &'a Caller,
    /// Where the client reached the emulator (the connection's local
    /// address), when known.
    pub local_addr: Option<std::net::SocketAddr>,
}

impl Call<'_> {
    /// The body as a JSON object; an empty body is `{}`.
    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
            Err(_) => Err(ApiError::bad_request("the body is not valid JSON")),
        }
    }

    /// The body as Paragon would pass it on: JSON when it parses, else the
    /// text (lossy UTF-8), `null` when empty.
    pub fn body_value(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(self.body).into_owned()))
    }

    pub fn user(&self) -> &str {
        &self.caller.user
    }

    /// The credential this call names in `X-Paragon-Credential`, lowercased.
    pub fn named_credential(&self) -> Result<Option<String>, ApiError> {
        named_credential(self.headers)
    }

    /// Checks a named credential: the caller's, of `integration` when
    /// known, allowed by the claim. Returns its id.
    pub fn check_named(
        &self,
        w: &World,
        id: &str,
        integration: Option<&str>,
    ) -> Result<String, ApiError> {
        let c = w
            .credential(id)
            .filter(|c| c.user == self.caller.user)
            .filter(|c| integration.is_none_or(|i| c.integration == i))
            .ok_or_else(ApiError::credential_not_found)?;
        if !self.caller.may_use(c) {
            return Err(ApiError::insufficient_permission());
        }
        Ok(c.id.clone())
    }

    /// The credential for a route whose integration is known.
    pub fn credential_for(&self, w: &World, integration: &str) -> Result<String, ApiError> {
        if let Some(id) = self.named_credential()? {
            return self.check_named(w, &id, Some(integration));
        }
        self.default_credential(w, integration)
    }

    /// Paragon's default: the oldest VALID credential of `integration` that
    /// the claim allows.
    pub fn default_credential(&self, w: &World, integration: &str) -> Result<String, ApiError> {
        let valid: Vec<&Cred> = w
            .user_credentials(&self.caller.user)
            .into_iter()
            .filter(|c| c.integration == integration && c.is_valid())
            .collect();
        if valid.is_empty() {
            return Err(ApiError::not_found(
                "integration_not_connected",
                format!("the user has no valid {integration} credential"),
            ));
        }
        valid
            .into_iter()
            .find(|c| self.caller.may_use(c))
            .map(|c| c.id.clone())
            .ok_or_else(ApiError::insufficient_permission)
    }

    /// The credential for a route whose integration is not known: the
    /// named one, else the caller's only usable one, else none.
    pub fn optional_credential(&self, w: &World) -> Result<Option<String>, ApiError> {
        if let Some(id) = self.named_credential()? {
            return self.check_named(w, &id, None).map(Some);
        }
        let usable: Vec<&Cred> = w
            .user_credentials(&self.caller.user)
            .into_iter()
            .filter(|c| self.caller.may_use(c))
            .collect();
        Ok(match usable.as_slice() {
            [only] => Some(only.id.clone()),
            _ => None,
        })
    }

    /// The caller's credentials the claim lets it see, oldest first.
    pub fn visible<'w>(&self, w: &'w World) -> Vec<&'w Cred> {
        w.user_credentials(&self.caller.user)
            .into_iter()
            .filter(|c| self.caller.may_use(c))
            .collect()
    }
}

/// `X-Paragon-Credential`: absent, or exactly one UUID.
pub(crate) fn named_credential(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(CREDENTIAL_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "X-Paragon-Credential may be sent only once",
        ));
    }
    match v.to_str() {
        Ok(s) if is_uuid(s.trim()) => Ok(Some(s.trim().to_ascii_lowercase())),
        _ => Err(ApiError::bad_request(
            "X-Paragon-Credential must be a credential UUID",
        )),
    }
}

/// A JSON response with `Content-Type: application/json`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(crate::net::body::full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A required string field of a JSON object body.
pub(crate) fn required_str<'m>(
    m: &'m serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'m str, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::bad_request(format!(
            "`{key}` is required and must be a non-empty string"
        ))),
    }
}
