//! Phase 1, hygiene (contract §1 order, §8): what is refused before anyone
//! is authenticated, so an unauthenticated caller learns nothing about
//! routes. Errors: 400 `bad_request`; 503 `unavailable` while a strict
//! cluster's store is unreachable (§11).

use http::header::HOST;
use http::request::Parts;
use http::Method;

use super::path;
use super::State;
use crate::error::GatewayError;

/// Methods no route takes, the Host header, the path's normal form (§8),
/// and `cluster.strict` (§11).
pub(super) fn hygiene(state: &State, parts: &Parts) -> Result<(), GatewayError> {
    // CONNECT is malformed on every route: its target is an authority, not
    // a path (RFC 9110 §9.3.6), and the upstream client would send
    // `CONNECT host:port` for a path credgate authorized, then treat a 2xx
    // as a tunnel.
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
    Ok(())
}
