//! Workers: with `server.scheduler = "workers"` (the default) each worker
//! is a thread with its own current-thread tokio runtime and its own
//! traffic listener on the shared address (`SO_REUSEPORT`: the kernel
//! spreads new connections across the listeners). A connection lives on the
//! worker that accepted it, and so do the upstream connections it opens
//! (`gateway::forward`), so a request is parsed, decided, forwarded and
//! answered on one thread with no cross-thread wake-up, as in nginx's
//! worker processes. Caches, keys, config and metrics are shared
//! (`gateway::State`).
//!
//! Worker 0 runs on the process's main runtime beside the admin listener
//! and the background tasks (JWKS refresh, cluster, reloads); the others
//! only serve traffic.
//!
//! `SO_REUSEPORT` lets any process of the same user bind the same port and
//! take a share of its connections. Only set when there is more than one
//! worker; a deployment that shares its user with untrusted processes runs
//! `worker_threads = 1` (or `scheduler = "work_stealing"`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use super::tls::TlsAcceptorHandle;
use super::ConnCounter;
use crate::gateway::State;

/// The kernel's accept queue per listener (tokio's own `bind` uses the same).
const BACKLOG: u32 = 1024;

/// Binds `count` traffic listeners on `addr`. One is a plain bind; several
/// share the address with `SO_REUSEPORT`, the first choosing the port
/// (port 0: a free one) and the others joining it.
pub async fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
    if count <= 1 {
        return Ok(vec![TcpListener::bind(addr).await?]);
    }
    let mut at = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        let listener = socket.listen(BACKLOG)?;
        at = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Starts worker `index` on its own thread and runtime, serving `listener`
/// until `shutdown` resolves and its connections drained. The returned task
/// (on the caller's runtime) ends when the worker has.
pub fn spawn<S>(
    index: usize,
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptorHandle>,
    counter: Arc<ConnCounter>,
    shutdown: S,
) -> Result<JoinHandle<()>, String>
where
    S: Future<Output = ()> + Send + 'static,
{
    // Moved to the worker's runtime: deregistered from this one first.
    let listener = listener.into_std().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start worker {index}'s runtime: {e}"))?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("credgate-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => super::serve(state, l, tls, (counter, index), shutdown).await,
                    Err(e) => tracing::error!(worker = index, error = %e, "worker cannot serve"),
                }
            });
            // Tasks still running past the grace (connections that did not
            // drain) end with the runtime, as they do on the main one.
            drop(runtime);
            let _ = done.send(());
        })
        .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}
