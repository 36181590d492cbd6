//! The Paragon emulator: an in-process stand-in for Paragon's HTTP API,
//! used by credgate's integration tests and benchmarks, by `credgate demo`,
//! and (through `credgate emulator`) by users in their own CI. It is
//! credgate's test oracle: it verifies tokens, resolves credentials and
//! records every request the way `paragon-api.md` says Paragon does, so a
//! test can assert what reached "Paragon" and with which credential.
//!
//! One listener serves all six Paragon APIs (their paths do not collide),
//! over HTTP/1.1 and cleartext HTTP/2 (prior knowledge):
//! * Connect (`/projects/{p}/sdk/me|integrations|metadata|credentials|workflows`) — `connect`,
//!   and its install flow (`[/v2]/projects/{p}/sdk/actions/...`, `POST
//!   /sdk/credentials`, and the provider's stand-in consent page under
//!   `/emulator/consent/`) — `install`;
//! * Workflows (`/projects/{p}/sdk/triggers/{id}`, `[/v2]/projects/{p}/sdk/events/trigger`) — `workflows`;
//! * Proxy (`/projects/{p}/sdk/proxy/...`) — `proxy`;
//! * ActionKit (`/projects/{p}/actions|tools|triggers|trigger-subscriptions`) — `actionkit`;
//! * Managed Sync (`/api/syncs...`, `/api/permissions/...`) — `sync`;
//! * Agent OS (`/api/tools/projects/{p}/...`, `/api/context/projects/{p}/...`) — `agentos`;
//!
//! plus the unauthenticated, unrecorded control API under `/_emulator/`
//! (`control`). Browsers may call every Paragon route from any origin
//! (`cors`; preflights are recorded too, with no user). `router` is the
//! order every request goes through; `call` how credentials are chosen
//! and which status each refusal gets; `auth` the token rules; `fixtures`
//! the data format.
//!
//! Answers the real Paragon does not document are our choice, listed where
//! they are made. Every JSON object answering an authenticated call carries
//! `"paragonEmulator": {"userId", "credentialId"}`, and every authenticated
//! response the headers `x-emulator-user` and `x-emulator-credential`
//! (empty when no credential was resolved); raw proxy responses and arrays
//! carry only the headers.
//!
//! Refusals are JSON `{"message", "code"}`; checks run in this order:
//!
//! | status | code | when |
//! | --- | --- | --- |
//! | 404 | `route_not_found` | no Paragon route has this method and path (no token needed) |
//! | 413 / 408 | `body_too_large` / `body_timeout` | a body over 16 MiB (except `__upload`), or one that stalls |
//! | 401 | `missing_token`, `invalid_token`, `token_expired`, `invalid_audience`, `invalid_permissions`, `unknown_user` | the token (see `auth`); `aud` is required on `/api/...`; none on the consent page |
//! | 404 | `unknown_project` | the path names another project |
//! | 400 | `bad_request` | malformed body or parameter; `X-Paragon-Credential` twice or not a UUID; uninstall without it |
//! | 404 | `credential_not_found` | the named credential is not the user's, or of another integration (one answer for both) |
//! | 403 | `7210` | the token's permissions claim does not allow the credential (Paragon's `INSUFFICIENT_PERMISSION`) |
//! | 404 | `integration_not_connected`, `integration_not_found`, `sync_not_found`, `subscription_not_found`, `record_not_found` | nothing to act on (another user's sync or subscription included) |
//!
//! A named credential that is INVALID or PENDING is served (Paragon would
//! try it); only defaults skip non-VALID credentials.
//!
//! Never expose an emulator beyond loopback: its control API is open.

mod actionkit;
mod agentos;
mod auth;
mod call;
mod catalog;
mod connect;
mod control;
mod cors;
pub mod fixtures;
mod install;
mod proxy;
mod router;
mod state;
mod sync;
mod util;
mod workflows;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use fixtures::{CredentialFixture, Fixtures, UserFixture};
pub use router::MAX_BODY_BYTES;
pub use state::{
    Behaviour, EmulatorState, RecordedRequest, MAX_RECORDED_BODY_TOTAL, MAX_RECORDED_REQUESTS,
    RECORDED_BODY_BYTES,
};

/// How long [`EmulatorHandle::shutdown`] lets in-flight requests finish
/// before their connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// An HTTP/1 connection must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`spawn`] needs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free one (see [`EmulatorHandle::addr`]).
    pub listen: SocketAddr,
    pub fixtures: Fixtures,
    /// The project's RS256 public key (PEM): user tokens must verify with it.
    pub public_key_pem: Vec<u8>,
}

/// A running emulator. Dropping the handle stops accepting connections
/// (as [`shutdown`](Self::shutdown) does, without waiting).
#[derive(Debug)]
pub struct EmulatorHandle {
    /// The bound address.
    pub addr: SocketAddr,
    pub state: Arc<EmulatorState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://{addr}`, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (at most
    /// [`SHUTDOWN_GRACE`]), and returns once every connection is closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Validates the fixtures and key, binds `cfg.listen`, and serves in
/// background tasks on the current Tokio runtime. Invalid fixtures or key
/// are an `InvalidInput` error naming the problem.
pub async fn spawn(cfg: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    let state = state::EmulatorState::new(&cfg.fixtures, &cfg.public_key_pem)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, state.clone(), stopped));
    Ok(EmulatorHandle {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// The accept loop (hyper-util's auto builder: HTTP/1.1, or HTTP/2 when
/// the client opens with the HTTP/2 preface), then a graceful drain.
async fn serve(
    listener: TcpListener,
    state: Arc<EmulatorState>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper cannot enforce the header read timeout (and
    // HTTP/2 keep-alive): give both one.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A send or a dropped handle both stop the loop.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok().map(router::LocalAddr);
                    let state = state.clone();
                    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        if let Some(local) = local {
                            req.extensions_mut().insert(local);
                        }
                        async move { Ok::<_, Infallible>(router::handle(state, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    connections.spawn(async move {
                        let _ = conn.await;
                    });
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}
