//! The control API under `/_emulator/`: for tests only. It is not
//! authenticated and never recorded, so anyone who can reach the
//! emulator's port can change its data; bind it to loopback.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | GET | `/_emulator/health` | | 200 `{"status": "ok"}` |
//! | GET | `/_emulator/requests` | | 200, array of recorded requests |
//! | DELETE | `/_emulator/requests` | | 204 |
//! | POST | `/_emulator/users` | `{"id"}` | 201 (new) or 200 (existing) |
//! | DELETE | `/_emulator/users/{id}` | | 204, or 404 |
//! | POST | `/_emulator/credentials` | `{"user", "credential": {fixture}}` | 201, or 400 with the reason |
//! | DELETE | `/_emulator/credentials/{id}` | | 204, or 404 |
//! | GET, PUT | `/_emulator/behaviour` | Behaviour JSON (any subset) | 200, the behaviour now in force |
//!
//! Path ids are percent-decoded. Bodies are JSON, at most 1 MiB. Errors are
//! `{"message", "code"}` like the Paragon routes'.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::call::{json_response, ApiError};
use super::fixtures::CredentialFixture;
use super::state::{Behaviour, EmulatorState};
use super::util::percent_decode;
use crate::net::body::{empty, read_limited, Body, ReadError};

const MAX_CONTROL_BODY: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    user: String,
    credential: CredentialFixture,
}

fn error(e: ApiError) -> Response<Body> {
    json_response(e.status, &e.body())
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

fn path_id(raw: &str) -> Result<String, ApiError> {
    match percent_decode(raw, false) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(ApiError::bad_request("the id in the path does not decode")),
    }
}

pub(crate) async fn handle(state: &EmulatorState, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match read_limited(body, MAX_CONTROL_BODY).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            return error(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "control bodies are limited to 1 MiB",
            ))
        }
        Err(ReadError::Io(_)) => {
            return error(ApiError::bad_request("the request body could not be read"))
        }
    };
    let tail = parts.uri.path().strip_prefix("/_emulator").unwrap_or("");
    match route(state, &parts.method, tail, &body) {
        Ok(r) => r,
        Err(e) => error(e),
    }
}

fn route(
    state: &EmulatorState,
    method: &Method,
    tail: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let not_allowed = || {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this control path does not take this method",
        )
    };
    match tail {
        "/health" => match *method {
            Method::GET => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            _ => Err(not_allowed()),
        },
        "/requests" => match *method {
            Method::GET => {
                let list = serde_json::to_value(state.requests()).map_err(|_| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "log not serializable",
                    )
                })?;
                Ok(json_response(StatusCode::OK, &list))
            }
            Method::DELETE => {
                state.clear_requests();
                Ok(no_content())
            }
            _ => Err(not_allowed()),
        },
        "/users" => match *method {
            Method::POST => {
                let u: NewUser = parse(body)?;
                let created = state.try_add_user(&u.id).map_err(ApiError::bad_request)?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(json_response(status, &json!({"id": u.id})))
            }
            _ => Err(not_allowed()),
        },
        "/credentials" => match *method {
            Method::POST => {
                let c: NewCredential = parse(body)?;
                let id = c.credential.id.to_ascii_lowercase();
                state
                    .add_credential(&c.user, c.credential)
                    .map_err(ApiError::bad_request)?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"id": id, "user": c.user}),
                ))
            }
            _ => Err(not_allowed()),
        },
        "/behaviour" => match *method {
            Method::GET => Ok(json_response(StatusCode::OK, &json!(state.behaviour()))),
            Method::PUT => {
                let b: Behaviour = parse(body)?;
                if b.me_status.is_some_and(|s| !(200..=599).contains(&s)) {
                    return Err(ApiError::bad_request("me_status must be 200 to 599"));
                }
                state.set_behaviour(b.clone());
                Ok(json_response(StatusCode::OK, &json!(b)))
            }
            _ => Err(not_allowed()),
        },
        _ => {
            if let Some(id) = tail.strip_prefix("/users/") {
                if *method != Method::DELETE {
                    return Err(not_allowed());
                }
                return if state.remove_user(&path_id(id)?) {
                    Ok(no_content())
                } else {
                    Err(ApiError::not_found("user_not_found", "no such user"))
                };
            }
            if let Some(id) = tail.strip_prefix("/credentials/") {
                if *method != Method::DELETE {
                    return Err(not_allowed());
                }
                return if state.remove_credential(&path_id(id)?) {
                    Ok(no_content())
                } else {
                    Err(ApiError::not_found(
                        "credential_not_found",
                        "no such credential",
                    ))
                };
            }
            Err(ApiError::not_found(
                "route_not_found",
                "no control route with this path",
            ))
        }
    }
}
