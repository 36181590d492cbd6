//! Phase 8, rewrite (contract §7): the request as Paragon must see it. The
//! caller's token replaced by an upstream one (minted and narrowed for
//! members), the credential placed where the product reads it (one
//! `X-Paragon-Credential`, or the body's `credentialId`), every spoofable
//! or unknown header removed, forwarding headers set. Errors: 503
//! `unavailable` when a token cannot be signed; 400 when the target cannot
//! be forwarded.

use bytes::Bytes;
use http::header::{
    HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use http::request::Parts;
use http::{Request, Uri, Version};

use super::decide::{Chosen, Decision, Routed};
use super::exchange::{CallerMemo, Ctx, Exchange};
use super::headers::{
    self, X_PARAGON_CONFIGURATION_ID, X_PARAGON_CREDENTIAL, X_PARAGON_PROXY_URL, X_REQUEST_ID,
};
use super::inputs::Inputs;
use super::{Audit, ConnInfo, Generation};
use crate::auth::Identity;
use crate::config::Config;
use crate::error::GatewayError;
use crate::net::body::{self, Body};
use crate::paragon::credentials::Credential;
use crate::paragon::directory::Snapshot;
use crate::paragon::mint::Scope;
use crate::paragon::routes::{CredentialLocation, Operation, Route};

/// What the rewrite needs beside the exchange.
pub(super) struct Rewrite<'a> {
    pub parts: Parts,
    pub uri: &'a Uri,
    /// The body as read (then possibly rewritten), or its stream.
    pub buffered: Option<Bytes>,
    pub streamed: Option<Body>,
    pub inputs: &'a Inputs<'a>,
    pub decision: &'a Decision,
    /// The checked `X-Paragon-Proxy-Url` (Proxy API only).
    pub proxy_url: Option<HeaderValue>,
    /// Whether credgate reads the answer (to filter it or learn from it):
    /// then it is asked for uncompressed.
    pub reads_answer: bool,
}

/// Builds the upstream request.
pub(super) fn rewrite(
    ex: &Exchange<'_>,
    r: Rewrite<'_>,
    audit: &mut Audit,
) -> Result<Request<Body>, GatewayError> {
    audit.mark("decide");
    let ctx = &ex.ctx;
    let Rewrite {
        mut parts,
        uri,
        buffered,
        streamed,
        inputs,
        decision,
        proxy_url,
        reads_answer,
    } = r;
    let authorization = upstream_authorization(
        ctx.generation,
        ctx.identity,
        &|c| ctx.usable(c),
        ex.list.as_ref(),
        &decision.routed,
        decision.also.as_ref(),
        ctx.caller_authorization.clone(),
    )?;
    // The install flow's query (contract §13): the caller's `userToken`
    // replaced by the upstream token, a member's new account labelled.
    let install_query = match ctx.route.op {
        Operation::InstallStart | Operation::InstallNonce => match uri.query() {
            Some(q) => {
                let token = authorization
                    .to_str()
                    .ok()
                    .and_then(|v| v.split_once(' '))
                    .map_or("", |(_, t)| t.trim());
                Some(super::install::upstream_query(
                    q,
                    token,
                    inputs.install.as_ref(),
                    decision.label.as_deref(),
                    (!ctx.admin).then_some(ctx.identity),
                )?)
            }
            None => None,
        },
        _ => None,
    };
    let removed = rewrite_headers(
        &mut parts,
        ctx.conn,
        ctx.cfg,
        ctx.identity,
        audit.request_id.as_ref(),
        authorization,
        &ctx.route,
        &decision.routed,
        decision.configuration.as_deref(),
        proxy_url,
        reads_answer,
    );
    if !removed.is_empty() {
        ctx.state
            .metrics
            .headers_removed
            .inc_by(removed.len() as u64);
        audit.removed_headers = removed;
    }
    let buffered = install_body(ctx, &mut parts, inputs, decision.label.as_deref(), buffered)?;
    let upstream_body = upstream_body(
        &mut parts,
        buffered,
        streamed,
        inputs,
        decision.body.as_deref(),
    );
    let mut upstream_req = Request::new(upstream_body);
    *upstream_req.method_mut() = parts.method;
    let rebuilt = rebuilt_uri(ctx, uri, install_query)?;
    let uri = rebuilt.as_ref().unwrap_or(uri);
    *upstream_req.uri_mut() = ctx.generation.upstreams.uri_for(ctx.route.upstream, uri)?;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = parts.headers;
    Ok(upstream_req)
}

/// The path and query Paragon gets when credgate changes them (`None`:
/// as sent): the install flow's query (`install_query`); a member's
/// `includeAccountAuth` that does not ask (contract §13) as exactly one
/// `includeAccountAuth=false`; a member's install session id bound to her.
fn rebuilt_uri(
    ctx: &Ctx<'_>,
    uri: &Uri,
    install_query: Option<String>,
) -> Result<Option<Uri>, GatewayError> {
    let query = install_query.or_else(|| {
        (!ctx.admin && ctx.route.product.is_connect())
            .then(|| uri.query().and_then(super::route::account_auth_not_asked))
            .flatten()
    });
    let session_path = match ctx.route.op {
        Operation::InstallSession { .. } if !ctx.admin => Some(
            super::install::upstream_session_path(uri.path(), ctx.identity)?,
        ),
        _ => None,
    };
    if query.is_none() && session_path.is_none() {
        return Ok(None);
    }
    // Never the caller's query instead of a rewritten one: it may carry
    // its token.
    let path = session_path.as_deref().unwrap_or(uri.path());
    let pq = match query.as_deref().or(uri.query()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    pq.parse::<Uri>()
        .map(Some)
        .map_err(|_| GatewayError::BadRequest("the query string does not parse"))
}

/// The body Paragon gets: a read JSON body with `credentialId` set to the
/// credential decided (every other field as sent), a read body as read, or
/// the caller's stream.
fn upstream_body(
    parts: &mut Parts,
    buffered: Option<Bytes>,
    streamed: Option<Body>,
    inputs: &Inputs<'_>,
    credential: Option<&str>,
) -> Body {
    match (buffered, &inputs.body, credential) {
        (Some(_), Some(doc), Some(id)) => {
            let rewritten = Bytes::from(doc.with_string("credentialId", id));
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            // The body was read as JSON; Paragon must read it as JSON too.
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            body::full(rewritten)
        }
        // Read but not rewritten (a PATCH that keeps the sync's
        // credential, an ActionKit body read for its action name).
        (Some(raw), _, _) => {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(raw.len()));
            body::full(raw)
        }
        (None, _, _) => streamed.unwrap_or_else(body::empty),
    }
}

/// A member's install body (contract §13): a new account created by `POST
/// /sdk/credentials` carries the label credgate gave it, and every install
/// body credgate judged goes as `application/json`, whatever type the
/// caller named: it was read as JSON, and Paragon must not read it (or
/// skip its `installOptions`) another way.
fn install_body(
    ctx: &Ctx<'_>,
    parts: &mut Parts,
    inputs: &Inputs<'_>,
    label: Option<&str>,
    buffered: Option<Bytes>,
) -> Result<Option<Bytes>, GatewayError> {
    if ctx.admin || !ctx.route.op.carries_install_body() {
        return Ok(buffered);
    }
    let Some(raw) = buffered else {
        return Ok(None);
    };
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Some(match label {
        Some(label) if ctx.route.op == Operation::CredentialCreate => {
            super::install::upstream_body(&raw, inputs.install.as_ref(), label)
                .ok_or(GatewayError::BadRequest("the body must be a JSON object"))?
        }
        _ => raw,
    }))
}

fn upstream_authorization(
    generation: &Generation,
    identity: &Identity,
    usable: &dyn Fn(&Credential) -> bool,
    snapshot: Option<&Snapshot>,
    routed: &Routed,
    also: Option<&Chosen>,
    caller_authorization: Option<HeaderValue>,
) -> Result<HeaderValue, GatewayError> {
    let Some(minter) = &generation.minter else {
        // Passthrough: the caller's token, unchanged.
        return caller_authorization.ok_or(GatewayError::Unauthenticated(
            crate::auth::AuthError::Missing,
        ));
    };
    let user = &identity.user;
    let signed = if identity.is_admin() {
        minter.authorization_for(&identity.memo.get::<CallerMemo>().mint, user, Scope::Admin)
    } else {
        match routed {
            // Shadow mode (contract §5a): narrowed to the credential named
            // when it is the user's; otherwise every credential of the
            // user, as the caller's own Paragon token would have been.
            Routed::AsSent { known: Some(c), .. } => minter.authorization(
                user,
                Scope::One {
                    integration: &c.get().integration,
                    id: &c.get().id,
                },
            ),
            Routed::AsSent { known: None, .. } => {
                let list = snapshot.map(|s| s.list.clone()).unwrap_or_default();
                let mut pairs: Vec<(&str, &str)> = list
                    .credentials
                    .iter()
                    .map(|c| (&*c.integration, &*c.id))
                    .collect();
                pairs.sort_unstable();
                minter.authorization(user, Scope::Many(&pairs))
            }
            Routed::Credential(c) => {
                let c = c.get();
                match also.map(Chosen::get).filter(|other| other.id != c.id) {
                    // A request touching two of the member's credentials
                    // (a sync moving, a body naming one for a sync; both
                    // checked): the token names exactly those two.
                    Some(other) => {
                        let mut pairs =
                            [(&*c.integration, &*c.id), (&*other.integration, &*other.id)];
                        pairs.sort_unstable();
                        minter.authorization(user, Scope::Many(&pairs))
                    }
                    None => minter.authorization_for(
                        &identity.memo.get::<CallerMemo>().mint,
                        user,
                        Scope::One {
                            integration: &c.integration,
                            id: &c.id,
                        },
                    ),
                }
            }
            _ => {
                let list = snapshot.map(|s| s.list.clone()).unwrap_or_default();
                let mut pairs: Vec<(&str, &str)> = list
                    .credentials
                    .iter()
                    .filter(|c| usable(c))
                    .map(|c| (&*c.integration, &*c.id))
                    .collect();
                pairs.sort_unstable();
                minter.authorization(user, Scope::Many(&pairs))
            }
        }
    };
    signed.map_err(|e| {
        tracing::error!(error = %e, "minting an upstream token failed");
        GatewayError::Unavailable("an upstream token could not be signed")
    })
}

#[allow(clippy::too_many_arguments)]
/// Returns a member's `X-Paragon-*` fields that were removed as unknown.
fn rewrite_headers(
    parts: &mut Parts,
    conn: &ConnInfo,
    cfg: &Config,
    identity: &Identity,
    request_id: Option<&HeaderValue>,
    authorization: HeaderValue,
    route: &Route<'_>,
    routed: &Routed,
    configuration: Option<&str>,
    proxy_url: Option<HeaderValue>,
    identity_encoding: bool,
) -> Vec<http::HeaderName> {
    let h = &mut parts.headers;
    // Room for what is added below in one step, not a growth per insert.
    h.reserve(8);
    // With both framings, hyper decoded the chunked body; a leftover
    // Content-Length must not describe it upstream (RFC 9112 §6.3).
    if h.contains_key(TRANSFER_ENCODING) {
        h.remove(CONTENT_LENGTH);
    }
    let original_host = h.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let header_route = matches!(
        route.credential_location(),
        CredentialLocation::Header
            | CredentialLocation::HeaderRequired
            | CredentialLocation::HeaderOptional
            | CredentialLocation::SubscriptionOwner
    );
    let credential = match routed {
        Routed::Credential(c) => Some(&*c.get().id),
        Routed::AsSent { named, .. } => named.as_deref(),
        Routed::None | Routed::Passthrough => None,
    };
    // The credential credgate places, decided before the scrub: a client's
    // field of that exact name is then overwritten by `insert` (every
    // value it sent dropped) instead of removed and added again.
    let credential = credential
        .filter(|_| header_route)
        .and_then(|id| HeaderValue::from_str(id).ok());
    let credential_name = http::header::HeaderName::from_static(X_PARAGON_CREDENTIAL);
    let overwritten = std::slice::from_ref(&credential_name);
    let trusted = conn.trusted_proxy(cfg);
    let removed = headers::scrub_request(
        h,
        headers::Sender {
            trusted_proxy: trusted,
            member_allowed: (!identity.is_admin())
                .then_some(&cfg.policy.member_paragon_headers[..]),
            overwritten: if credential.is_some() {
                overwritten
            } else {
                &[]
            },
        },
    );
    headers::set_forwarded(
        h,
        &conn.client_ip,
        if conn.tls { "https" } else { "http" },
        original_host.as_ref(),
    );
    if let Some(v) = request_id {
        h.insert(X_REQUEST_ID, v.clone());
    }
    h.insert(AUTHORIZATION, authorization);
    if let Some(v) = credential {
        h.insert(credential_name, v);
    }
    if let Some(id) = configuration {
        if let Ok(v) = HeaderValue::from_str(id) {
            h.insert(
                http::header::HeaderName::from_static(X_PARAGON_CONFIGURATION_ID),
                v,
            );
        }
    }
    if let Some(v) = proxy_url {
        // The one checked value, in one spelling (contract §7).
        h.insert(
            http::header::HeaderName::from_static(X_PARAGON_PROXY_URL),
            v,
        );
    }
    if identity_encoding {
        // credgate must read this response: ask for it uncompressed.
        h.remove(ACCEPT_ENCODING);
    }
    removed
}
