//! The steps of one request, in the order of SPEC §1, so that the first
//! failing check answers: path (400) → authentication (401) → route and
//! project (404) → operation (403) → body size (413) → credential list
//! (503) → credential inputs and decision (400/403) → rewrite → forward →
//! response filtering.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING,
    CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use serde_json::Value;

use super::headers::{
    self, Single, X_PARAGON_CONFIGURATION_ID, X_PARAGON_CREDENTIAL, X_PARAGON_PROXY_URL,
    X_REQUEST_ID,
};
use super::path;
use super::{Audit, ConnInfo, Generation, State};
use crate::auth::Identity;
use crate::config::{AdminDefault, AuthMode, Config};
use crate::error::{GatewayError, UpstreamFailure};
use crate::net::body::{self, read_limited, Body, ReadError};
use crate::paragon::credentials::{parse_uuid, Credential, CredentialList};
use crate::paragon::directory::{DirKey, Directory, LoadError, Snapshot};
use crate::paragon::filter;
use crate::paragon::jsonbody::{JsonError, Kind, TopObject};
use crate::paragon::mint::Scope;
use crate::paragon::routes::{
    self, CredentialLocation, IntegrationRef, Operation, Route, RouteError, Upstream,
};
use crate::paragon::syncs::Owner;
use crate::policy::{resolve_default, resolve_named, Permit, Requested, RouteIntegration};

/// What the gateway remembers of a caller, in its identity's slot (see
/// `auth::Slot`): the last credential list and minted token.
#[derive(Default)]
pub(crate) struct CallerMemo {
    pub list: crate::paragon::directory::ListMemo,
    pub mint: crate::paragon::mint::MintMemo,
}

/// Largest `/sdk/me` body credgate reads.
const MAX_ME_BYTES: u64 = 8 * 1024 * 1024;
/// Largest response credgate buffers to filter or to learn sync owners.
const MAX_FILTERED_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// A credential in a cached list, held by index so the list can be swapped
/// for a reloaded one without copying.
#[derive(Debug, Clone)]
struct Chosen {
    list: Arc<CredentialList>,
    index: usize,
}

impl Chosen {
    fn get(&self) -> &Credential {
        &self.list.credentials[self.index]
    }

    fn of(list: &Arc<CredentialList>, c: &Credential) -> Chosen {
        let index = list
            .credentials
            .iter()
            .position(|x| std::ptr::eq(x, c))
            .expect("the credential comes from this list");
        Chosen {
            list: list.clone(),
            index,
        }
    }
}

/// The credential decision for a request.
#[derive(Debug)]
enum Routed {
    /// No credential is routed (the route has none, or lists credentials).
    None,
    /// An admin naming none, forwarded unchanged (Paragon picks).
    Passthrough,
    Credential(Chosen),
}

/// What a request names, parsed before the list is loaded; its errors are
/// reported after the list (SPEC §1 order).
struct Inputs<'b> {
    requested: Option<Requested>,
    /// `requested` came from the JSON body's `credentialId`.
    from_body: bool,
    configuration: Option<String>,
    body: Option<TopObject<'b>>,
    /// The sync body's `integration`.
    body_integration: Option<String>,
    /// The ActionKit body's `action` / `tool` name.
    action: Option<String>,
}

pub(super) async fn process(
    state: &State,
    generation: &Generation,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &str,
    audit: &mut Audit,
) -> Result<Response<Body>, GatewayError> {
    let cfg: &Config = &generation.config;
    let (mut parts, incoming) = req.into_parts();

    // 1. Path hygiene, before anything else: path tricks get 400 from
    //    everyone, authenticated or not. CONNECT is malformed on every
    //    route: its target is an authority, not a path (RFC 9110 §9.3.6),
    //    and the upstream client would send `CONNECT host:port` for a path
    //    credgate authorized, then treat a 2xx as a tunnel.
    if parts.method == Method::CONNECT {
        return Err(GatewayError::BadRequest("CONNECT is not forwarded"));
    }
    // TRACE echoes the request as received, which upstream would be the
    // minted token: never forwarded (nor TRACK, its IIS twin).
    if parts.method == Method::TRACE || parts.method.as_str() == "TRACK" {
        return Err(GatewayError::BadRequest("TRACE is not forwarded"));
    }
    // Two Host headers (RFC 9112 §3.2: 400) could be read differently by
    // credgate and by whatever sits behind it.
    if parts.headers.get_all(HOST).iter().nth(1).is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    path::check(parts.uri.path()).map_err(GatewayError::BadRequest)?;
    if state
        .replicas
        .as_ref()
        .is_some_and(|r| r.strict() && r.is_degraded())
    {
        return Err(GatewayError::Unavailable(
            "the cluster store is unavailable (cluster.strict)",
        ));
    }

    // 2. Authentication.
    let identity = generation.auth.authenticate(&parts.headers).await?;
    audit.user = Some(identity.user.clone());
    audit.principal = Some(identity.principal.clone());

    // 3. Route and project.
    let uri = parts.uri.clone();
    let route = routes::classify(&parts.method, uri.path(), &cfg.paragon.project_id).map_err(
        |e| match e {
            RouteError::NotFound => GatewayError::RouteNotFound,
            RouteError::UnknownProject => GatewayError::UnknownProject,
        },
    )?;
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

    // 4. Operation allowed for this caller, and the Proxy API's target.
    check_operation(cfg, &identity, &route, uri.query())?;
    let proxy_url = proxy_target(cfg, &route, &parts.headers)?;

    // 5. Bodies credgate must read, capped.
    let header_credential = headers::single_value(&parts.headers, X_PARAGON_CREDENTIAL);
    let names_in_header = !matches!(header_credential, Ok(Single::Absent));
    let admin = identity.is_admin();
    let resolves_for_caller = !admin || cfg.policy.admin_default == AdminDefault::Resolve;
    let read_body = match route.op {
        Operation::SyncCreate | Operation::SyncPatch { .. } => true,
        // Every other sync route: a body, whatever the method, may carry a
        // `credentialId` Paragon would act on, so it is read and judged
        // (SPEC §3).
        _ if route.is_sync() => !http_body::Body::is_end_stream(&incoming),
        // ActionKit bodies are read only to find the integration of an
        // action or subscription when no credential is named (SPEC §5).
        Operation::ActionKit | Operation::SubscriptionCreate => {
            !names_in_header && resolves_for_caller && parts.method == Method::POST
        }
        _ => false,
    };
    let (buffered, mut streamed) = if read_body {
        (
            Some(
                Box::pin(read_request_body(
                    &parts.headers,
                    incoming,
                    cfg.server.max_body_bytes,
                    cfg.server.header_read_timeout,
                ))
                .await?,
            ),
            None,
        )
    } else {
        (None, Some(incoming))
    };

    // Credential inputs, parsed now, judged after the list is loaded.
    let inputs = parse_inputs(
        &parts.headers,
        header_credential,
        &route,
        buffered.as_deref(),
    );

    // 6. The user's credential list, when the decision needs it.
    let is_uninstall = matches!(route.op, Operation::Uninstall { .. });
    // `/sdk/credentials/{id}` names its credential in the path, and the id
    // must be in the list for admins too (SPEC §3): without the list the
    // decision below has nothing to check it against.
    let names_in_path = route.credential_location() == CredentialLocation::Path;
    let needs_list = !admin
        || is_uninstall
        || names_in_path
        || match &inputs {
            Ok(i) => {
                i.requested.is_some()
                    || i.configuration.is_some()
                    || (resolves_for_caller
                        && matches!(
                            route.credential_location(),
                            CredentialLocation::Header | CredentialLocation::Body
                        ))
            }
            Err(_) => false,
        };
    let directory = state.directory.load_full();
    let dir_key = match cfg.auth.mode {
        AuthMode::Mint => DirKey::user(identity.user.clone()),
        AuthMode::Passthrough => DirKey {
            user: identity.user.clone(),
            scope: identity.permissions_key.clone(),
        },
    };
    let caller_authorization = parts.headers.get(AUTHORIZATION).cloned();
    let lookup = Lookup {
        state,
        generation,
        identity: &identity,
        caller_authorization: caller_authorization.as_ref(),
        request_id,
        directory: &directory,
        key: &dir_key,
    };
    let mut snapshot = if needs_list {
        match directory.memo_get(&identity.memo.get::<CallerMemo>().list) {
            Some(s) => Some(s),
            None => {
                let epoch = directory.epoch();
                // Boxed: the cache's load machinery is large and this path
                // is rare (memo miss), so it must not size every request's
                // future (see `handle`).
                let s = Box::pin(directory.get(&dir_key, || lookup.load()))
                    .await
                    .map_err(GatewayError::CredentialsUnavailable)?;
                directory.memo_put(&identity.memo.get::<CallerMemo>().list, &s, epoch);
                Some(s)
            }
        }
    } else {
        None
    };

    // 7. Credential inputs and the decision.
    let inputs = inputs?;
    let permit = Permit::new(&identity, &cfg.policy);
    let Decision {
        routed,
        also,
        body: body_credential,
    } = decide(
        state,
        &lookup,
        &mut snapshot,
        &permit,
        &route,
        &inputs,
        admin,
        cfg,
    )
    .await?;
    if let Routed::Credential(c) = &routed {
        if audit.enabled {
            audit.credential = Some(c.get().id.clone());
        }
        audit.integration = Some(c.get().integration.clone());
    }
    let configuration = match (&inputs.configuration, &routed) {
        (Some(id), Routed::Credential(c)) => {
            if parse_uuid(id).is_some_and(|id| c.get().configurations.contains(&id)) {
                Some(id.clone())
            } else {
                return Err(GatewayError::CredentialForbidden);
            }
        }
        _ => None,
    };

    // 8. Rewrite.
    let authorization = upstream_authorization(
        generation,
        &identity,
        &permit,
        snapshot.as_ref(),
        &routed,
        also.as_ref(),
        caller_authorization,
    )?;
    let filters = route.filters_response() && !admin;
    let learns = learns_from_answer(&route, &parts.method, uri.path());
    let removed = rewrite_headers(
        &mut parts,
        conn,
        cfg,
        &identity,
        audit.request_id.as_ref(),
        authorization,
        &route,
        &routed,
        configuration.as_deref(),
        proxy_url,
        filters || learns,
    );
    if !removed.is_empty() {
        state.metrics.headers_removed.inc_by(removed.len() as u64);
        audit.removed_headers = removed;
    }
    let upstream_body = match (buffered.clone(), &inputs.body, &body_credential) {
        (Some(_), Some(doc), Some(c)) => {
            let rewritten = Bytes::from(doc.with_string("credentialId", &c.get().id));
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
        (None, _, _) => match streamed.take() {
            // An empty body (most GETs) needs no box: `empty()` is zero-sized.
            Some(b) if !http_body::Body::is_end_stream(&b) => body::stream(b),
            _ => body::empty(),
        },
    };

    // Sync ownership must be recordable before Paragon creates or moves a
    // sync (SPEC §11: refused while the cluster store is unreachable).
    if matches!(
        route.op,
        Operation::SyncCreate | Operation::SyncPatch { .. }
    ) && !state.syncs.writable()
    {
        return Err(GatewayError::Unavailable(
            "the sync ownership store is unavailable",
        ));
    }

    // 9. Forward.
    let mut upstream_req = Request::new(upstream_body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = generation.upstreams.uri_for(route.upstream, &uri)?;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = parts.headers;
    let resp = generation
        .upstreams
        .send(route.upstream, conn.affinity(), upstream_req)
        .await?;
    // credgate strips `Upgrade` and never tunnels, so a 101 from Paragon
    // cannot be honoured: relaying it would tell the client (or a proxy in
    // front of credgate) that the connection now carries another protocol,
    // the premise of WebSocket-upgrade smuggling.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Protocol("Paragon switched protocols, which credgate never asks for"),
        ));
    }

    // 10. Response. Its body may not stall longer than the headers could.
    let (mut rparts, rbody) = resp.into_parts();
    let rbody = body::StallGuard::new(rbody, cfg.server.upstream_timeout);
    // A proxy sends its own HTTP version (RFC 9110 §6.2). hyper writes the
    // version it is given to an HTTP/1.1 client, so an HTTP/1.0 answer from
    // Paragon would otherwise downgrade the client's connection to a
    // close-delimited HTTP/1.0 response and drop its pipelined requests.
    // (hyper itself answers HTTP/1.0 clients in HTTP/1.0.)
    rparts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut rparts.headers);
    let ok = rparts.status.is_success();

    if ok && is_uninstall {
        if let Err(e) = Box::pin(state.invalidate(Some(&identity.user))).await {
            tracing::warn!(request_id, error = %e, "could not record the invalidation after an uninstall");
        }
    }
    if let (
        Operation::SyncItem {
            sync_id,
            deletes_sync: true,
        },
        true,
    ) = (&route.op, ok)
    {
        if let Err(e) = Box::pin(state.syncs.remove(sync_id)).await {
            tracing::warn!(request_id, error = %e, "could not drop a deleted sync's ownership record");
        }
    }
    if let (Operation::SyncPatch { sync_id }, true, Some(_), Routed::Credential(c)) =
        (&route.op, ok, &inputs.requested, &routed)
    {
        Box::pin(record_owner(
            state,
            request_id,
            sync_id,
            &identity,
            &c.get().id,
        ))
        .await;
    }
    if let (Operation::Subscription { id, deletes: true }, true) = (&route.op, ok) {
        state.subscriptions.forget(&identity.user, id).await;
    }

    if !(ok && (filters || learns)) {
        return Ok(Response::from_parts(rparts, body::stream(rbody)));
    }

    // Buffer, learn, filter.
    if rparts
        .headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("Paragon sent a compressed body credgate must filter"),
        ));
    }
    let raw = match Box::pin(read_limited(rbody, MAX_FILTERED_RESPONSE_BYTES)).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            return Err(GatewayError::UpstreamUnavailable(
                UpstreamFailure::Unfilterable("Paragon's response is too large to filter"),
            ))
        }
        Err(ReadError::Io(e)) => {
            return Err(GatewayError::UpstreamUnavailable(UpstreamFailure::Body(e)))
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&raw).ok();
    if learns {
        Box::pin(learn_owners(
            state,
            request_id,
            &route,
            &identity,
            &routed,
            parsed.as_ref(),
        ))
        .await;
    }
    if !filters {
        rparts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(raw.len()));
        return Ok(Response::from_parts(rparts, body::full(raw)));
    }
    let Some(mut value) = parsed else {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable("Paragon's response is not JSON"),
        ));
    };
    let list = snapshot
        .as_ref()
        .map(|s| s.list.clone())
        .unwrap_or_default();
    let allow_account_auth = cfg.policy.allow_account_auth;
    let permitted = |id: &str| -> Option<&Credential> {
        let lower = id.to_ascii_lowercase();
        list.find(&lower).filter(|c| permit.allows(c))
    };
    let filtered = match route.op {
        Operation::GetUser => filter::filter_me(
            &mut value,
            &|integration, id| permitted(id).is_some_and(|c| *c.integration == *integration),
            allow_account_auth,
        ),
        Operation::ListCredentials | Operation::Credential { .. } => filter::filter_credentials(
            &mut value,
            &|id| permitted(id).is_some(),
            allow_account_auth,
        ),
        Operation::SyncList => {
            let ids: Vec<&str> = value
                .get("data")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|s| s.get("id").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            // One store query for the whole list; a store that cannot
            // answer reaches nothing (fail closed).
            let owners = Box::pin(state.syncs.owners(&ids)).await.unwrap_or_default();
            let reachable: std::collections::HashSet<String> = owners
                .into_iter()
                .filter(|(_, o)| o.user == identity.user && permitted(&o.credential).is_some())
                .map(|(id, _)| id)
                .collect();
            drop(ids);
            filter::filter_syncs(&mut value, &|id| reachable.contains(id))
        }
        Operation::SubscriptionList => {
            filter::filter_subscriptions(&mut value, &|c| permitted(c).is_some())
        }
        _ => Ok(()),
    };
    if let Err(filter::Unfilterable(why)) = filtered {
        return Err(GatewayError::UpstreamUnavailable(
            UpstreamFailure::Unfilterable(why),
        ));
    }
    let out = Bytes::from(serde_json::to_vec(&value).map_err(|_| {
        GatewayError::UpstreamUnavailable(UpstreamFailure::Unfilterable(
            "the filtered body could not be encoded",
        ))
    })?);
    rparts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(rparts, body::full(out)))
}

/// Product, operation and Proxy API host checks (SPEC §3, §7): 403.
fn check_operation(
    cfg: &Config,
    identity: &Identity,
    route: &Route<'_>,
    query: Option<&str>,
) -> Result<(), GatewayError> {
    let admin = identity.is_admin();
    if !admin && !cfg.policy.member_products.contains(&route.product) {
        return Err(GatewayError::OperationForbidden(
            "this product is not allowed for members",
        ));
    }
    if route.op == Operation::PatchUser && !admin {
        return Err(GatewayError::OperationForbidden(
            "only admins may change the user's metadata",
        ));
    }
    if route.product.is_connect()
        && !admin
        && !cfg.policy.allow_account_auth
        && asks_account_auth(query)
    {
        return Err(GatewayError::OperationForbidden(
            "includeAccountAuth is not allowed for members",
        ));
    }
    Ok(())
}

/// The Proxy API's target (SPEC §7): `{rest}`, or `X-Paragon-Proxy-Url`
/// (every spelling), never both, each by the same rules: a full URL must
/// name a host in `policy.proxy_url_hosts` (403), a path must be in normal
/// form (400). Admins too. The checked header value is returned: it is the
/// one credgate forwards, in the canonical spelling.
fn proxy_target(
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
    path::check_proxy_target(rest, value, &cfg.policy.proxy_url_hosts).map_err(|e| match e {
        path::TargetError::BadRequest(m) => GatewayError::BadRequest(m),
        path::TargetError::HostForbidden => GatewayError::UpstreamHostForbidden,
    })?;
    let Some(value) = value else {
        return Ok(None);
    };
    HeaderValue::from_str(value)
        .map(Some)
        .map_err(|_| GatewayError::BadRequest("X-Paragon-Proxy-Url must be visible ASCII"))
}

/// Whether a query asks for `accountAuth` (raw provider tokens): any
/// `includeAccountAuth` parameter (any case, percent-encoded or not, also
/// `includeAccountAuth[]`) whose value is not `false` in any case.
pub fn asks_account_auth(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    q.split('&').any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| -> String {
            let s = s.replace('+', " ");
            match path::percent_decode(s.as_bytes()) {
                Some(b) => String::from_utf8_lossy(&b).into_owned(),
                None => s,
            }
        };
        let name = decode(name).to_ascii_lowercase();
        name.starts_with("includeaccountauth")
            && !decode(value).trim().eq_ignore_ascii_case("false")
    })
}

/// Buffers a body credgate must read: at most `max` bytes, and all of it
/// within `within` (`server.header_read_timeout`, the bound on the head).
/// A body trickled a byte at a time would otherwise hold a connection slot
/// and a buffer forever (slow-POST, the body-side slowloris).
async fn read_request_body(
    headers: &HeaderMap,
    incoming: Incoming,
    max: u64,
    within: std::time::Duration,
) -> Result<Bytes, GatewayError> {
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

fn parse_inputs<'b>(
    headers: &HeaderMap,
    header_credential: Result<Single<'_>, headers::SingleError>,
    route: &Route<'_>,
    body: Option<&'b [u8]>,
) -> Result<Inputs<'b>, GatewayError> {
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
        Some(raw) => {
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
        None => {}
    }
    Ok(Inputs {
        requested,
        from_body,
        configuration,
        body: doc,
        body_integration,
        action,
    })
}

/// Whether a request's body is plain JSON: no `Content-Type` or a JSON one
/// (`application/json`, `application/*+json`, parameters allowed), and no
/// `Content-Encoding` other than `identity`.
fn json_content(headers: &HeaderMap) -> bool {
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

/// Loads a user's credential list from `GET /sdk/me`.
struct Lookup<'a> {
    state: &'a State,
    generation: &'a Generation,
    identity: &'a Identity,
    caller_authorization: Option<&'a HeaderValue>,
    request_id: &'a str,
    directory: &'a Directory,
    key: &'a DirKey,
}

impl Lookup<'_> {
    /// The whole load, body included, within `server.upstream_timeout`: a
    /// load holds the user's per-key lock and one of
    /// `cache.max_concurrent_loads` slots, so a Paragon that sends headers
    /// and then stalls the body must not keep them (and every request of
    /// that user waiting on them) forever.
    async fn load(&self) -> Result<CredentialList, LoadError> {
        let limit = self.generation.config.server.upstream_timeout;
        tokio::time::timeout(limit, self.load_unbounded())
            .await
            .unwrap_or_else(|_| {
                Err(LoadError::Upstream(
                    "no complete /sdk/me answer within server.upstream_timeout".into(),
                ))
            })
    }

    /// Asks Paragon which credential trigger subscription `id` of this
    /// user belongs to: a `GET` with an unrestricted token (mint mode; the
    /// caller's own in passthrough), bounded by `server.upstream_timeout`.
    /// `Ok(None)` when Paragon has no such subscription for this user.
    async fn subscription(
        &self,
        id: &str,
    ) -> Result<Option<String>, crate::paragon::subscriptions::LookupError> {
        use crate::paragon::subscriptions::LookupError;
        let g = self.generation;
        let limit = g.config.server.upstream_timeout;
        self.state.metrics.subscription_lookups.inc();
        let exchange = async {
            let authorization = self
                .upstream_admin_authorization()
                .map_err(LookupError::Upstream)?;
            let path = format!(
                "/projects/{}/trigger-subscriptions/{}",
                g.config.paragon.project_id, id
            );
            let uri = g
                .upstreams
                .uri(Upstream::ActionKit, &path)
                .map_err(|e| LookupError::Upstream(e.to_string()))?;
            let mut req = Request::get(uri)
                .header(ACCEPT, "application/json")
                .body(body::empty())
                .map_err(|e| LookupError::Upstream(e.to_string()))?;
            req.headers_mut().insert(AUTHORIZATION, authorization);
            if let Ok(v) = HeaderValue::from_str(self.request_id) {
                req.headers_mut().insert(X_REQUEST_ID, v);
            }
            let resp = g
                .upstreams
                .send(Upstream::ActionKit, None, req)
                .await
                .map_err(|e| LookupError::Upstream(e.to_string()))?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(None),
                other => return Err(LookupError::Status(other.as_u16())),
            }
            let raw = read_limited(resp.into_body(), MAX_ME_BYTES)
                .await
                .map_err(|e| LookupError::Upstream(e.to_string()))?;
            let v: Value = serde_json::from_slice(&raw).map_err(|_| LookupError::Malformed)?;
            let owners = crate::paragon::subscriptions::stated_owners(&v);
            match owners.as_slice() {
                [(sid, credential)] if *sid == id => Ok(Some(credential.to_string())),
                _ => Err(LookupError::Malformed),
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(LookupError::Upstream(
                    "no complete answer within server.upstream_timeout".into(),
                ))
            })
    }

    /// An unrestricted token for this user: minted (mint mode), or the
    /// caller's own (passthrough, where Paragon narrows by its claim).
    fn upstream_admin_authorization(&self) -> Result<HeaderValue, String> {
        let g = self.generation;
        match (&g.minter, g.config.auth.mode) {
            (Some(m), AuthMode::Mint) => m
                .authorization(&self.identity.user, Scope::Admin)
                .map_err(|e| e.to_string()),
            _ => self
                .caller_authorization
                .cloned()
                .ok_or_else(|| "no caller token to forward".to_string()),
        }
    }

    async fn load_unbounded(&self) -> Result<CredentialList, LoadError> {
        let g = self.generation;
        let authorization = self
            .upstream_admin_authorization()
            .map_err(LoadError::Mint)?;
        let path = format!("/projects/{}/sdk/me", g.config.paragon.project_id);
        let uri = g
            .upstreams
            .uri(Upstream::Connect, &path)
            .map_err(|e| LoadError::Upstream(e.to_string()))?;
        let mut req = Request::get(uri)
            .header(ACCEPT, "application/json")
            .body(body::empty())
            .map_err(|e| LoadError::Upstream(e.to_string()))?;
        req.headers_mut().insert(AUTHORIZATION, authorization);
        if let Ok(v) = HeaderValue::from_str(self.request_id) {
            req.headers_mut().insert(X_REQUEST_ID, v);
        }
        let resp = g
            .upstreams
            .send(Upstream::Connect, None, req)
            .await
            .map_err(|e| LoadError::Upstream(e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(LoadError::Status(resp.status().as_u16()));
        }
        let raw = read_limited(resp.into_body(), MAX_ME_BYTES)
            .await
            .map_err(|e| LoadError::Malformed(e.to_string()))?;
        CredentialList::parse(&raw).map_err(|e| match e {
            crate::paragon::credentials::ParseError::NotAuthenticated => {
                LoadError::NotAuthenticated
            }
            crate::paragon::credentials::ParseError::Malformed(m) => LoadError::Malformed(m),
        })
    }
}

/// The route's integration, owned (route strings borrow the request).
fn integration_of(route: &Route<'_>, inputs: &Inputs<'_>) -> IntegrationHint {
    match route.op {
        Operation::Proxy {
            integration: IntegrationRef::Type(t),
            ..
        } => IntegrationHint::Type(t.to_string()),
        Operation::Proxy {
            integration: IntegrationRef::CustomId(id),
            ..
        } => IntegrationHint::IntegrationId(id.to_string()),
        Operation::Uninstall { integration_id } => {
            IntegrationHint::IntegrationId(integration_id.to_string())
        }
        Operation::SyncCreate | Operation::SubscriptionCreate => match &inputs.body_integration {
            Some(t) => IntegrationHint::Type(t.clone()),
            None => IntegrationHint::None,
        },
        Operation::ActionKit => match &inputs.action {
            Some(a) => IntegrationHint::Action(a.clone()),
            None => IntegrationHint::None,
        },
        _ => IntegrationHint::None,
    }
}

#[derive(Debug, Clone)]
enum IntegrationHint {
    None,
    Type(String),
    IntegrationId(String),
    Action(String),
}

impl IntegrationHint {
    /// The hint against one list (custom integration ids and action names
    /// are looked up in the user's own list).
    fn resolve(&self, list: &CredentialList) -> Resolved {
        match self {
            IntegrationHint::None => Resolved::Unknown,
            IntegrationHint::Type(t) => Resolved::Type(t.clone()),
            IntegrationHint::IntegrationId(id) => match list.integration_with_id(id) {
                Some(t) => Resolved::Type(t.to_string()),
                None => Resolved::Unmatched,
            },
            IntegrationHint::Action(a) => match list.integration_for_action(a) {
                Some(t) => Resolved::Type(t.to_string()),
                None => Resolved::Unknown,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    Unknown,
    Unmatched,
    Type(String),
}

impl Resolved {
    fn as_route(&self) -> RouteIntegration<'_> {
        match self {
            Resolved::Unknown => RouteIntegration::Unknown,
            Resolved::Unmatched => RouteIntegration::Unmatched,
            Resolved::Type(t) => RouteIntegration::Known(t),
        }
    }
}

/// The credential decision: what is routed, and what else the request
/// touches.
#[derive(Debug)]
struct Decision {
    routed: Routed,
    /// Another credential the request touches besides the routed one (the
    /// one a sync moves from, the sync a body names a credential for): the
    /// member's token must name both.
    also: Option<Chosen>,
    /// The credential written into the JSON body's `credentialId`.
    body: Option<Chosen>,
}

impl Decision {
    fn routed(routed: Routed) -> Self {
        Decision {
            routed,
            also: None,
            body: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    state: &State,
    lookup: &Lookup<'_>,
    snapshot: &mut Option<Snapshot>,
    permit: &Permit<'_>,
    route: &Route<'_>,
    inputs: &Inputs<'_>,
    admin: bool,
    cfg: &Config,
) -> Result<Decision, GatewayError> {
    let hint = integration_of(route, inputs);
    let passthrough_admin = admin && cfg.policy.admin_default == AdminDefault::Passthrough;
    let default = |snapshot: &Option<Snapshot>| -> Result<Chosen, GatewayError> {
        let s = snapshot.as_ref().expect("the list is loaded for defaults");
        let resolved = hint.resolve(&s.list);
        let c = resolve_default(&s.list, permit, resolved.as_route())?;
        Ok(Chosen::of(&s.list, c))
    };
    // The credential the body (or header) names, judged on its own.
    let named = |snapshot| body_named(lookup, snapshot, permit, inputs);

    let routed = match route.credential_location() {
        CredentialLocation::None if route.is_sync() => {
            // `GET /api/syncs` with a body naming a credential: judged.
            let body = named(snapshot).await?;
            return Ok(Decision {
                routed: Routed::None,
                also: None,
                body,
            });
        }
        CredentialLocation::None => Routed::None,
        CredentialLocation::Header
        | CredentialLocation::HeaderRequired
        | CredentialLocation::HeaderOptional => match &inputs.requested {
            Some(r) => {
                let chosen = resolve_with_hint(lookup, snapshot, permit, &hint, r).await?;
                if let Operation::Uninstall { integration_id } = route.op {
                    let same = chosen.get().integration_id.is_some()
                        && chosen.get().integration_id == parse_uuid(integration_id);
                    if !same {
                        return Err(GatewayError::CredentialForbidden);
                    }
                }
                Routed::Credential(chosen)
            }
            None => match route.credential_location() {
                CredentialLocation::HeaderRequired => {
                    let s = snapshot.as_ref().expect("uninstall loads the list");
                    let resolved = hint.resolve(&s.list);
                    return Err(GatewayError::CredentialRequired {
                        candidates: s
                            .list
                            .credentials
                            .iter()
                            .filter(|c| permit.allows(c) && resolved_matches(&resolved, c))
                            .map(|c| c.id.to_string())
                            .collect(),
                    });
                }
                CredentialLocation::HeaderOptional => Routed::None,
                _ if passthrough_admin => Routed::Passthrough,
                _ => Routed::Credential(default(snapshot)?),
            },
        },
        CredentialLocation::Path => {
            let Operation::Credential { id } = route.op else {
                return Ok(Decision::routed(Routed::None));
            };
            if let Some(Requested::Id(h)) | Some(Requested::External(h)) = &inputs.requested {
                if !h.eq_ignore_ascii_case(id) {
                    return Err(GatewayError::BadRequest(
                        "X-Paragon-Credential names another credential than the path",
                    ));
                }
            }
            let requested = Requested::parse(id).map_err(|_| GatewayError::CredentialForbidden)?;
            if !matches!(requested, Requested::Id(_)) {
                return Err(GatewayError::CredentialForbidden);
            }
            Routed::Credential(
                resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, &requested)
                    .await?,
            )
        }
        CredentialLocation::Body => match route.op {
            Operation::SyncPatch { sync_id } => {
                let owner =
                    Box::pin(sync_owner(state, lookup, snapshot, permit, sync_id, admin)).await?;
                // The header counts here as the body does: it names the
                // credential the sync moves to (written into the body).
                let to = match &inputs.requested {
                    Some(r) => Some(
                        resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, r)
                            .await?,
                    ),
                    None => None,
                };
                return Ok(match to {
                    // Moving the sync touches its current credential as
                    // well: Paragon checks the token against both.
                    Some(to) => Decision {
                        routed: Routed::Credential(to.clone()),
                        also: owner.into_chosen(),
                        body: Some(to),
                    },
                    None => Decision::routed(owner),
                });
            }
            _ => {
                let chosen = match &inputs.requested {
                    Some(r) => resolve_with_hint(lookup, snapshot, permit, &hint, r).await?,
                    None if passthrough_admin => return Ok(Decision::routed(Routed::Passthrough)),
                    None => default(snapshot)?,
                };
                return Ok(Decision {
                    routed: Routed::Credential(chosen.clone()),
                    also: None,
                    body: Some(chosen),
                });
            }
        },
        CredentialLocation::SyncOwner => {
            let Operation::SyncItem { sync_id, .. } = route.op else {
                return Ok(Decision::routed(Routed::None));
            };
            let owner =
                Box::pin(sync_owner(state, lookup, snapshot, permit, sync_id, admin)).await?;
            // Any method's body may name a credential (SPEC §3): judged, and
            // the token names it beside the sync's own.
            return Ok(match named(snapshot).await? {
                Some(c) => Decision {
                    routed: owner,
                    also: Some(c.clone()),
                    body: Some(c),
                },
                None => Decision::routed(owner),
            });
        }
        CredentialLocation::SubscriptionOwner => {
            let Operation::Subscription { id, .. } = route.op else {
                return Ok(Decision::routed(Routed::None));
            };
            Box::pin(subscription_owner(
                lookup,
                snapshot,
                permit,
                id,
                inputs,
                admin,
                passthrough_admin,
            ))
            .await?
        }
    };
    Ok(Decision::routed(routed))
}

/// The credential a sync body's `credentialId` names, resolved (it must be
/// permitted). A credential header on a sync route that reads none from
/// the body is dropped, as on every route that routes no header.
async fn body_named(
    lookup: &Lookup<'_>,
    snapshot: &mut Option<Snapshot>,
    permit: &Permit<'_>,
    inputs: &Inputs<'_>,
) -> Result<Option<Chosen>, GatewayError> {
    match &inputs.requested {
        Some(r) if inputs.from_body => {
            resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, r)
                .await
                .map(Some)
        }
        _ => Ok(None),
    }
}

impl Routed {
    fn into_chosen(self) -> Option<Chosen> {
        match self {
            Routed::Credential(c) => Some(c),
            _ => None,
        }
    }
}

/// The credential of a trigger subscription, when this caller may reach it
/// (SPEC §3): known from earlier answers, else looked up at Paragon before
/// deciding. A member reaches only subscriptions of a permitted credential;
/// unknown ones are refused like foreign ones. An admin naming no
/// credential is forwarded as is (passthrough); naming one, it must be the
/// subscription's.
async fn subscription_owner(
    lookup: &Lookup<'_>,
    snapshot: &mut Option<Snapshot>,
    permit: &Permit<'_>,
    id: &str,
    inputs: &Inputs<'_>,
    admin: bool,
    passthrough_admin: bool,
) -> Result<Routed, GatewayError> {
    if passthrough_admin && inputs.requested.is_none() {
        return Ok(Routed::Passthrough);
    }
    let state = lookup.state;
    let owner = state
        .subscriptions
        .owner(&lookup.identity.user, id, || lookup.subscription(id))
        .await
        .map_err(|e| {
            tracing::warn!(request_id = lookup.request_id, error = %e, "a trigger subscription's credential could not be established");
            GatewayError::Unavailable("the trigger subscription's credential cannot be established")
        })?;
    let Some(credential) = owner else {
        return if admin {
            Ok(Routed::Passthrough)
        } else {
            Err(GatewayError::CredentialForbidden)
        };
    };
    let requested = Requested::Id(credential.to_string());
    let chosen =
        resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, &requested).await?;
    if let Some(r) = &inputs.requested {
        let named = resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, r).await?;
        if named.get().id != chosen.get().id {
            return Err(GatewayError::BadRequest(
                "X-Paragon-Credential names another credential than the subscription's",
            ));
        }
    }
    Ok(Routed::Credential(chosen))
}

fn resolved_matches(r: &Resolved, c: &Credential) -> bool {
    match r {
        Resolved::Unknown => true,
        Resolved::Unmatched => false,
        Resolved::Type(t) => *c.integration == **t,
    }
}

/// Resolves a named credential against the route's integration hint, with
/// one reload when it is absent.
async fn resolve_with_hint(
    lookup: &Lookup<'_>,
    snapshot: &mut Option<Snapshot>,
    permit: &Permit<'_>,
    hint: &IntegrationHint,
    requested: &Requested,
) -> Result<Chosen, GatewayError> {
    let attempt = |list: &Arc<CredentialList>| -> Result<Option<Chosen>, GatewayError> {
        let resolved = hint.resolve(list);
        Ok(resolve_named(list, permit, resolved.as_route(), requested)?
            .map(|c| Chosen::of(list, c)))
    };
    let current = snapshot
        .as_ref()
        .expect("the list is loaded for named credentials");
    if let Some(c) = attempt(&current.list)? {
        return Ok(c);
    }
    let epoch = lookup.directory.epoch();
    match Box::pin(
        lookup
            .directory
            .refresh_for_missing(lookup.key, current, || lookup.load()),
    )
    .await
    {
        None => Err(GatewayError::CredentialForbidden),
        Some(Err(e)) => Err(GatewayError::CredentialsUnavailable(e)),
        Some(Ok(fresh)) => {
            lookup.directory.memo_put(
                &lookup.identity.memo.get::<CallerMemo>().list,
                &fresh,
                epoch,
            );
            let list = fresh.list.clone();
            let old = snapshot.replace(fresh);
            let gone = old.is_some_and(|o| {
                o.list
                    .credentials
                    .iter()
                    .any(|c| list.find(&c.id).is_none())
            });
            if gone {
                // A credential was disconnected: other replicas must drop
                // their copies of this user's list too (SPEC §11).
                if let Err(e) = Box::pin(lookup.state.invalidate(Some(&lookup.identity.user))).await
                {
                    tracing::warn!(request_id = lookup.request_id, error = %e, "could not record an invalidation");
                }
            }
            attempt(&list)?.ok_or(GatewayError::CredentialForbidden)
        }
    }
}

/// The credential a sync belongs to, as far as this caller may know it: a
/// member reaches only syncs recorded for a permitted credential of its
/// user; admins reach every sync (forwarded with an admin token).
async fn sync_owner(
    state: &State,
    lookup: &Lookup<'_>,
    snapshot: &mut Option<Snapshot>,
    permit: &Permit<'_>,
    sync_id: &str,
    admin: bool,
) -> Result<Routed, GatewayError> {
    if admin {
        return Ok(Routed::Passthrough);
    }
    let owner = state
        .syncs
        .owner(sync_id)
        .await
        .map_err(|_| GatewayError::Unavailable("the sync ownership store is unavailable"))?;
    match owner {
        Some(Owner { user, credential }) if user == lookup.identity.user => {
            let requested = Requested::Id(credential.to_string());
            resolve_with_hint(lookup, snapshot, permit, &IntegrationHint::None, &requested)
                .await
                .map(Routed::Credential)
        }
        // Unknown syncs, and syncs of another user, are refused alike.
        _ => Err(GatewayError::CredentialForbidden),
    }
}

fn upstream_authorization(
    generation: &Generation,
    identity: &Identity,
    permit: &Permit<'_>,
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
                let mut pairs: Vec<(&str, &str)> = permit
                    .permitted(&list)
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
    let ip = conn.remote.ip();
    let trusted = cfg.server.trusted_proxies.iter().any(|c| c.contains(ip));
    let removed = headers::scrub_request(
        h,
        headers::Sender {
            trusted_proxy: trusted,
            member_allowed: (!identity.is_admin())
                .then_some(&cfg.policy.member_paragon_headers[..]),
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
    let header_route = matches!(
        route.credential_location(),
        CredentialLocation::Header
            | CredentialLocation::HeaderRequired
            | CredentialLocation::HeaderOptional
            | CredentialLocation::SubscriptionOwner
    );
    if let (true, Routed::Credential(c)) = (header_route, routed) {
        if let Ok(v) = HeaderValue::from_str(&c.get().id) {
            h.insert(
                http::header::HeaderName::from_static(X_PARAGON_CREDENTIAL),
                v,
            );
        }
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
        // The one checked value, in one spelling (SPEC §7).
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

async fn record_owner(
    state: &State,
    request_id: &str,
    sync_id: &str,
    identity: &Identity,
    credential: &str,
) {
    let owner = Owner {
        user: identity.user.clone(),
        credential: credential.to_ascii_lowercase().into(),
    };
    if let Err(e) = state.syncs.record(sync_id, owner).await {
        tracing::warn!(request_id, error = %e, "could not record a sync's owner; the sync is admin-only until it is learned again");
    }
}

/// Whether a successful answer is read to learn which credential owns a
/// sync or a trigger subscription (sync create, update, list and
/// `GET /api/syncs/{id}`; subscription create and list).
fn learns_from_answer(route: &Route<'_>, method: &Method, path: &str) -> bool {
    match route.op {
        Operation::SyncCreate
        | Operation::SyncPatch { .. }
        | Operation::SyncList
        | Operation::SubscriptionCreate
        | Operation::SubscriptionList => true,
        Operation::SyncItem { sync_id, .. } => {
            *method == Method::GET && path.strip_prefix("/api/syncs/") == Some(sync_id)
        }
        _ => false,
    }
}

/// Learns sync or subscription → credential from a successful answer.
async fn learn_owners(
    state: &State,
    request_id: &str,
    route: &Route<'_>,
    identity: &Identity,
    routed: &Routed,
    body: Option<&Value>,
) {
    let Some(body) = body else { return };
    if matches!(
        route.op,
        Operation::SubscriptionCreate | Operation::SubscriptionList
    ) {
        for (id, credential) in crate::paragon::subscriptions::stated_owners(body) {
            state
                .subscriptions
                .learn(&identity.user, id, credential)
                .await;
        }
        return;
    }
    learn_sync_owners(state, request_id, route, identity, routed, body).await;
}

/// Learns sync → credential from a successful sync call's answer.
async fn learn_sync_owners(
    state: &State,
    request_id: &str,
    route: &Route<'_>,
    identity: &Identity,
    routed: &Routed,
    body: &Value,
) {
    if let (Operation::SyncCreate, Some(id)) = (&route.op, body.get("id").and_then(Value::as_str)) {
        let credential = match routed {
            Routed::Credential(c) => Some(c.get().id.to_string()),
            _ => body
                .get("credentialId")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        if let Some(credential) = credential {
            record_owner(state, request_id, id, identity, &credential).await;
        }
        return;
    }
    for (sync_id, credential) in filter::sync_owners(body) {
        record_owner(state, request_id, &sync_id, identity, &credential).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_auth_requests_are_detected_in_every_spelling() {
        for q in [
            "includeAccountAuth=true",
            "includeAccountAuth=1",
            "includeAccountAuth",
            "includeAccountAuth=",
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
            "x=includeAccountAuth",
            "includeAccount=true",
        ] {
            assert!(!asks_account_auth(Some(q)), "{q}");
        }
        assert!(!asks_account_auth(None));
    }
}
