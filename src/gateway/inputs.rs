//! Phase 5, read the inputs (contract §5, §7 bodies): the bodies credgate
//! must read (sync bodies on every method, ActionKit bodies that name an
//! action or an integration when no credential is named, a member's
//! trigger-subscription bodies for `webhook.rs`), capped, and the
//! credential inputs of a request parsed before the credential list is
//! loaded. Errors: 413 `body_too_large`, 408 `body_timeout`, 400
//! `bad_request` (the parse errors are reported after the list is loaded,
//! in the order of contract §1).

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::Method;

use super::exchange::Ctx;
use super::headers::{self, Single, X_PARAGON_CONFIGURATION_ID, X_PARAGON_CREDENTIAL};
use crate::error::GatewayError;
use crate::net::body::{self, read_limited, Body, BoxError, ReadError};
use crate::paragon::credentials::CredentialList;
use crate::paragon::jsonbody::{JsonError, Kind, TopObject};
use crate::paragon::routes::{IntegrationRef, Operation, Route};
use crate::policy::{Requested, RouteIntegration};

/// A request's body: read whole, or left to stream (one of the two; an
/// empty one is neither).
pub(super) struct RequestBody {
    pub buffered: Option<Bytes>,
    pub streamed: Option<Body>,
}

/// Reads the body when the route must (contract §7: only bodies that must
/// be read are buffered), capped at `server.max_body_bytes` and
/// `server.header_read_timeout`.
pub(super) async fn read_inputs<B>(
    ctx: &Ctx<'_>,
    parts: &Parts,
    incoming: B,
) -> Result<RequestBody, GatewayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let route = &ctx.route;
    let read = match route.op {
        Operation::SyncCreate | Operation::SyncPatch { .. } => true,
        // Every other sync route: a body, whatever the method, may carry a
        // `credentialId` Paragon would act on, so it is read and judged
        // (contract §3).
        _ if route.is_sync() => !http_body::Body::is_end_stream(&incoming),
        // A member's body on a trigger-subscription route, whatever the
        // method: its `webhookOverride` is judged (contract §3, `webhook.rs`).
        Operation::SubscriptionCreate
        | Operation::SubscriptionList
        | Operation::Subscription { .. }
            if !ctx.admin =>
        {
            !http_body::Body::is_end_stream(&incoming)
        }
        // A member's new account, a pending one completed, or an account's
        // settings changed: its `installOptions` are judged, and no field
        // the SDK does not send passes (contract §13).
        Operation::CredentialCreate
        | Operation::Credential {
            install_body: true, ..
        } if !ctx.admin => true,
        // ActionKit bodies are read only to find the integration of an
        // action or subscription when no credential is named (contract §5).
        Operation::ActionKit | Operation::SubscriptionCreate => {
            let named = !matches!(
                headers::single_value(&parts.headers, X_PARAGON_CREDENTIAL),
                Ok(Single::Absent)
            );
            !named && ctx.resolves_for_caller && parts.method == Method::POST
        }
        _ => false,
    };
    if !read {
        // An empty body (most GETs) needs no box.
        let empty = http_body::Body::is_end_stream(&incoming);
        return Ok(RequestBody {
            buffered: None,
            streamed: (!empty).then(|| body::stream(incoming)),
        });
    }
    let cfg = ctx.cfg;
    // Boxed: rare, and it must not size every request's future.
    Box::pin(read_request_body(
        &parts.headers,
        incoming,
        cfg.server.max_body_bytes,
        cfg.server.header_read_timeout,
    ))
    .await
    .map(|b| RequestBody {
        buffered: Some(b),
        streamed: None,
    })
}

/// What a request names, parsed before the list is loaded; its errors are
/// reported after the list (contract §1 order).
pub(super) struct Inputs<'b> {
    pub requested: Option<Requested>,
    /// `requested` came from the JSON body's `credentialId`.
    pub from_body: bool,
    pub configuration: Option<String>,
    pub body: Option<TopObject<'b>>,
    /// The sync body's `integration`.
    pub body_integration: Option<String>,
    /// The ActionKit body's `action` / `tool` name.
    pub action: Option<String>,
    /// A delegated call's integration (an agent's tool), as Paragon listed the tool
    /// (contract §12): the route's integration on ActionKit.
    pub listed: Option<String>,
    /// A member's `installOptions` on the install routes (contract §13).
    pub install: Option<super::install::InstallInput>,
}

/// Buffers a body credgate must read: at most `max` bytes, and all of it
/// within `within` (`server.header_read_timeout`, the bound on the head).
/// A body trickled a byte at a time would otherwise hold a connection slot
/// and a buffer forever (slow-POST, the body-side slowloris).
async fn read_request_body<B>(
    headers: &HeaderMap,
    incoming: B,
    max: u64,
    within: std::time::Duration,
) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max {
            return Err(GatewayError::BodyTooLarge);
        }
    }
    match tokio::time::timeout(within, read_limited(incoming, max)).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(read) => read.map_err(|e| match e {
            ReadError::TooLarge => GatewayError::BodyTooLarge,
            ReadError::Io(_) => GatewayError::BadRequest("the request body could not be read"),
        }),
    }
}

/// The credential inputs (contract §5): the header in every spelling, or a
/// sync body's `credentialId`, given once; `X-Paragon-Configuration-Id`;
/// the body's `integration`, `action` or `tool`. 400 `bad_request` for
/// inputs given twice or malformed, and for a sync body that is not JSON.
/// `listed`: a delegated call's integration (an agent's tool), as Paragon listed the tool
/// (contract §12), which is then the route's integration. `member_query`:
/// a member's query (admins: `None`), read on the install routes.
pub(super) fn parse_inputs<'b>(
    headers: &HeaderMap,
    route: &Route<'_>,
    body: Option<&'b [u8]>,
    listed: Option<&str>,
    member_query: Option<&str>,
) -> Result<Inputs<'b>, GatewayError> {
    let header_credential = headers::single_value(headers, X_PARAGON_CREDENTIAL);
    let repeated = GatewayError::BadRequest("the credential is given more than once");
    let malformed = GatewayError::BadRequest("the credential must be a UUID or ext:<externalId>");
    let mut requested = match header_credential {
        Ok(Single::Absent) => None,
        Ok(Single::One(v)) => Some(Requested::parse(v)?),
        Err(headers::SingleError::Repeated) => return Err(repeated),
        Err(headers::SingleError::Malformed) => return Err(malformed),
    };
    let configuration = match headers::single_value(headers, X_PARAGON_CONFIGURATION_ID) {
        Ok(Single::Absent) => None,
        Ok(Single::One(v)) => Some(v.to_ascii_lowercase()),
        Err(_) => {
            return Err(GatewayError::BadRequest(
                "X-Paragon-Configuration-Id is given more than once or malformed",
            ))
        }
    };
    let mut doc = None;
    let mut body_integration = None;
    let mut action = None;
    let mut from_body = false;
    match body {
        // A sync route's body that turned out empty carries nothing.
        Some(raw) if raw.is_empty() && route.is_sync() && !route.op.creates_or_updates_sync() => {}
        Some(raw) if route.is_sync() => {
            let t = TopObject::parse(raw).map_err(|e| {
                GatewayError::BadRequest(match e {
                    JsonError::TooDeep => "the body nests deeper than 64 levels",
                    JsonError::Utf8 => "the body is not valid UTF-8",
                    JsonError::NotObject => "the body must be a JSON object",
                    JsonError::Syntax => "the body is not valid JSON",
                })
            })?;
            if !json_content(headers) {
                // Paragon ignores a body it does not read as JSON and would
                // pick its default credential: the body credgate checked
                // must be the body Paragon reads.
                return Err(GatewayError::BadRequest(
                    "a sync body must be JSON (Content-Type application/json, no Content-Encoding)",
                ));
            }
            let ids: Vec<_> = t.all("credentialId").collect();
            if let Some(m) = ids.first() {
                if ids.len() > 1 || requested.is_some() {
                    return Err(repeated);
                }
                if m.kind != Kind::String {
                    return Err(GatewayError::BadRequest("credentialId must be a string"));
                }
                let v = t.string_value(m).ok_or(malformed)?;
                requested = Some(Requested::parse(&v)?);
                from_body = true;
            }
            let integ: Vec<_> = t.all("integration").collect();
            if integ.len() > 1 {
                return Err(GatewayError::BadRequest(
                    "integration is given more than once",
                ));
            }
            body_integration = integ.first().and_then(|m| t.string_value(m));
            drop(ids);
            drop(integ);
            doc = Some(t);
        }
        // A member's new account (contract §13).
        Some(raw) if route.op.carries_install_body() => doc = Some(json_object(headers, raw)?),
        // Read for the integration only when no credential is named
        // (contract §5); a member's subscription body is also read for its
        // `webhookOverride`, which names nothing.
        Some(raw) if requested.is_none() => {
            if let Ok(t) = TopObject::parse(raw) {
                match route.op {
                    // A new trigger subscription names its integration.
                    Operation::SubscriptionCreate => {
                        if let [one] = t.all("integration").collect::<Vec<_>>().as_slice() {
                            body_integration = t.string_value(one);
                        }
                    }
                    // ActionKit: the action or tool name, when the body says one.
                    _ => {
                        let names: Vec<_> = t.all("action").chain(t.all("tool")).collect();
                        if let [one] = names.as_slice() {
                            action = t.string_value(one);
                        }
                    }
                }
            }
        }
        Some(_) | None => {}
    }
    let install = match member_query {
        Some(q) => super::install::parse(route.op, q, doc.as_ref())?,
        None => None,
    };
    Ok(Inputs {
        requested,
        from_body,
        configuration,
        body: doc,
        body_integration,
        action,
        listed: listed.map(str::to_string),
        install,
    })
}

/// A body that must be one JSON object, sent as JSON (400 otherwise).
fn json_object<'b>(headers: &HeaderMap, raw: &'b [u8]) -> Result<TopObject<'b>, GatewayError> {
    let t = TopObject::parse(raw)
        .map_err(|_| GatewayError::BadRequest("the body must be a JSON object"))?;
    if !json_content(headers) {
        return Err(GatewayError::BadRequest(
            "the body must be JSON (Content-Type application/json, no Content-Encoding)",
        ));
    }
    Ok(t)
}

/// Whether a request's body is plain JSON: no `Content-Type` or a JSON one
/// (`application/json`, `application/*+json`, parameters allowed), and no
/// `Content-Encoding` other than `identity`.
pub(super) fn json_content(headers: &HeaderMap) -> bool {
    let encoded = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let mut types = headers.get_all(http::header::CONTENT_TYPE).iter();
    let json_type = match (types.next(), types.next()) {
        (None, _) => true,
        (Some(v), None) => v.to_str().is_ok_and(|t| {
            let media = t
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/json"
                || (media.starts_with("application/") && media.ends_with("+json"))
        }),
        (Some(_), Some(_)) => false,
    };
    json_type && !encoded
}

/// The route's integration, owned (route strings borrow the request).
pub(super) fn integration_of<'a>(route: &Route<'a>, inputs: &'a Inputs<'_>) -> IntegrationHint<'a> {
    match route.op {
        Operation::Proxy {
            integration: IntegrationRef::Type(t),
            ..
        } => IntegrationHint::Type(t),
        Operation::Proxy {
            integration: IntegrationRef::CustomId(id),
            ..
        } => IntegrationHint::IntegrationId(id),
        Operation::Uninstall { integration_id } => IntegrationHint::IntegrationId(integration_id),
        Operation::SyncCreate | Operation::SubscriptionCreate => match &inputs.body_integration {
            Some(t) => IntegrationHint::Type(t),
            None => IntegrationHint::None,
        },
        // A delegated tool's integration (as listed), else the action's name.
        Operation::ActionKit => match (&inputs.listed, &inputs.action) {
            (Some(t), _) => IntegrationHint::Type(t),
            (None, Some(a)) => IntegrationHint::Action(a),
            (None, None) => IntegrationHint::None,
        },
        _ => IntegrationHint::None,
    }
}

/// The route's integration as the request gives it, borrowed (no copy on
/// the hot path).
#[derive(Debug, Clone, Copy)]
pub(super) enum IntegrationHint<'a> {
    None,
    Type(&'a str),
    IntegrationId(&'a str),
    Action(&'a str),
}

impl IntegrationHint<'_> {
    /// The hint against one list (custom integration ids and action names
    /// are looked up in the user's own list).
    pub(super) fn resolve<'s>(&'s self, list: &'s CredentialList) -> Resolved<'s> {
        match *self {
            IntegrationHint::None => Resolved::Unknown,
            IntegrationHint::Type(t) => Resolved::Type(t),
            IntegrationHint::IntegrationId(id) => match list.integration_with_id(id) {
                Some(t) => Resolved::Type(t),
                None => Resolved::Unmatched,
            },
            IntegrationHint::Action(a) => match list.integration_for_action(a) {
                Some(t) => Resolved::Type(t),
                None => Resolved::Unknown,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolved<'a> {
    Unknown,
    Unmatched,
    Type(&'a str),
}

impl Resolved<'_> {
    pub(super) fn as_route(&self) -> RouteIntegration<'_> {
        match *self {
            Resolved::Unknown => RouteIntegration::Unknown,
            Resolved::Unmatched => RouteIntegration::Unmatched,
            Resolved::Type(t) => RouteIntegration::Known(t),
        }
    }
}
