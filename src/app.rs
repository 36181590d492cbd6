//! Wiring: a config becomes a [`Generation`]; listeners are bound and
//! served; SIGHUP swaps generations; SIGTERM/SIGINT drain and stop.
//!
//! A reload builds the whole new generation first and swaps it in one
//! atomic store, so a request sees either the old config or the new one,
//! never a mix, and an invalid config changes nothing. Expensive parts are
//! kept when their settings did not change: the upstream connection pool,
//! the JWKS source (so readiness does not flap), the minted-token cache
//! (same signing key), and the credential directory (same cache settings).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::jwks::{JwksSettings, JwksSource};
use crate::auth::Authenticator;
use crate::config::{AuthMode, Config, Env};
use crate::gateway::upstream::Upstreams;
use crate::gateway::{Generation, State};
use crate::net::client::{build_client, ClientSettings};
use crate::paragon::directory::Directory;
use crate::paragon::mint::Minter;
use crate::paragon::syncs::SyncStore;
use crate::server::tls::TlsAcceptorHandle;
use crate::telemetry::{KindLabel, Metrics};

/// The labels of `credgate_config_info` for a config loaded now.
fn config_info(c: &Config) -> crate::telemetry::ConfigInfoLabels {
    crate::telemetry::ConfigInfoLabels {
        sha256: c.sha256.clone(),
        acl_sha256: c.policy.acl.sha256.clone(),
        rules_sha256: c.policy.rules.sha256.clone(),
        loaded_at: crate::clock::format_iso(crate::clock::now_ms()),
    }
}

fn upstream_bases(c: &Config) -> [&crate::config::UpstreamBase; 6] {
    c.paragon.upstream_bases()
}

/// Builds a generation, reusing what `previous` already has when its
/// settings are unchanged.
pub fn build_generation(
    config: Arc<Config>,
    metrics: &Arc<Metrics>,
    previous: Option<&Generation>,
) -> Result<Generation, String> {
    let settings = ClientSettings::from_server(&config.server);
    let client = match previous {
        Some(p)
            if p.config.paragon.ca_file == config.paragon.ca_file
                && ClientSettings::from_server(&p.config.server) == settings =>
        {
            p.upstreams.client().clone()
        }
        _ => build_client(config.paragon.ca_file.as_ref(), &settings)?,
    };
    let affine = match previous {
        Some(p)
            if p.config.paragon.ca_file == config.paragon.ca_file
                && ClientSettings::from_server(&p.config.server) == settings
                && upstream_bases(&p.config) == upstream_bases(&config) =>
        {
            p.upstreams.affine_pool().clone()
        }
        _ => Upstreams::affine_for(&config.paragon, &settings)?,
    };
    let upstreams = Upstreams::new(
        &config.paragon,
        client.clone(),
        affine,
        config.server.upstream_timeout,
        metrics.clone(),
    )?;

    let jwks = match (&config.auth.jwks_url, config.auth.mode) {
        (Some(url), AuthMode::Mint) => {
            let wanted = JwksSettings {
                url: url.clone(),
                refresh: config.auth.jwks_refresh,
                min_refetch: config.auth.jwks_min_refetch,
                timeout: config.auth.jwks_timeout,
                algorithms: config.auth.algorithms.clone(),
            };
            match previous.and_then(|p| p.auth.jwks()) {
                Some(existing) if *existing.settings() == wanted => Some(existing.clone()),
                _ => {
                    let source = JwksSource::new(wanted, client.clone(), metrics.clone())?;
                    source.spawn_refresher();
                    Some(source)
                }
            }
        }
        _ => None,
    };
    let auth = Authenticator::new(&config, jwks, metrics.clone())?;
    let minter = match config.auth.mode {
        AuthMode::Mint => match previous.and_then(|p| p.minter.as_ref()) {
            Some(m) if m.same_as(&config.paragon) => Some(m.clone()),
            _ => Some(Arc::new(Minter::new(&config.paragon, metrics.clone())?)),
        },
        AuthMode::Passthrough => None,
    };
    let tracing = match previous.and_then(|p| p.tracing.as_ref()) {
        Some(t) if t.settings == config.telemetry => Some(t.clone()),
        _ => crate::net::otlp::Tracing::start(
            &config.telemetry,
            client.clone(),
            crate::net::otlp::TraceCounters {
                dropped: metrics.trace_spans_dropped.clone(),
                export_errors: metrics.trace_export_errors.clone(),
            },
        )?,
    };
    let audit = crate::audit::AuditLog::open(&config.audit, metrics.audit_write_errors.clone())
        .map_err(|e| e.to_string())?;
    let limits = crate::policy::limits::Limits::new(
        &config.limits,
        &config.policy.rules,
        previous.map(|p| &p.limits),
    );
    Ok(Generation {
        config,
        audit,
        limits,
        auth,
        minter,
        upstreams,
        loaded_ms: crate::clock::now_ms(),
        tracing,
    })
}

/// A running gateway: its bound addresses, state and tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// `authzen.listen`'s bound address, when set.
    pub authzen_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    /// What the admin room keeps for its dashboard (refusals, traffic,
    /// the last reload).
    pub recent: Arc<crate::admin::recent::Recent>,
    tls: Option<TlsAcceptorHandle>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

/// Binds both listeners and starts serving. Port 0 binds a free port (tests).
pub async fn start(config: Config) -> Result<Running, String> {
    let metrics = Metrics::new();
    metrics.set_config_info(config_info(&config));
    metrics.set_shadow(&config.policy.shadow);
    for w in &config.warnings {
        tracing::warn!(warning = %w, "config");
    }
    let config = Arc::new(config);
    let tls = config
        .server
        .tls
        .as_ref()
        .map(TlsAcceptorHandle::new)
        .transpose()?;
    let generation = build_generation(config.clone(), &metrics, None)?;
    let directory = Directory::new(
        &config.cache,
        config.server.upstream_timeout,
        metrics.clone(),
    );
    let cluster = match &config.cluster {
        Some(c) => Some(
            crate::cluster::Cluster::new(
                c.clone(),
                &config.paragon.project_id,
                metrics.clone(),
                config.paragon.ca_file.as_ref(),
            )
            .await?,
        ),
        None => None,
    };
    let syncs = match &cluster {
        Some(c) => SyncStore::new(c.clone()),
        None => SyncStore::default(),
    };
    let replicas = cluster
        .clone()
        .map(|c| c as Arc<dyn crate::paragon::replicas::Replicas>);
    let subscriptions = crate::paragon::subscriptions::Subscriptions::new(
        config.cache.max_concurrent_loads,
        config.server.upstream_timeout,
    );
    let recent = Arc::new(crate::admin::recent::Recent::default());
    let state = Arc::new(State::new(
        generation,
        directory,
        syncs,
        subscriptions,
        metrics,
        replicas,
        crate::gateway::Rooms {
            refusals: recent.clone(),
            local: Some(Arc::new(crate::mcp::Agents::new(&config))),
        },
    ));
    if let Some(c) = &cluster {
        c.start(Arc::downgrade(&state.directory));
    }

    let workers = match config.server.scheduler {
        crate::config::Scheduler::Workers => config.server.workers(),
        crate::config::Scheduler::WorkStealing => 1,
    };
    let mut listeners = crate::server::workers::bind(config.server.listen, workers)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (server.listen): {e}",
                config.server.listen
            )
        })?;
    let admin = TcpListener::bind(config.server.admin_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} (server.admin_listen): {e}",
                config.server.admin_listen
            )
        })?;
    // The AuthZEN decision point on a listener of its own (contract §14).
    let authzen = match config.authzen.listen {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .map_err(|e| format!("cannot listen on {at} (authzen.listen): {e}"))?,
        ),
        None => None,
    };
    let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
    let authzen_addr = match &authzen {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };

    let (tx, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let counter = Arc::new(crate::server::ConnCounter::default());
    let mut tasks = Vec::with_capacity(workers + 1);
    let first = listeners.remove(0);
    for (index, listener) in listeners.into_iter().enumerate() {
        tasks.push(crate::server::workers::spawn(
            index + 1,
            listener,
            state.clone(),
            tls.clone(),
            counter.clone(),
            stopped(rx.clone()),
        )?);
    }
    tasks.push(tokio::spawn(crate::server::serve(
        state.clone(),
        first,
        tls.clone(),
        (counter, 0),
        stopped(rx.clone()),
    )));
    if let Some(listener) = authzen {
        tasks.push(tokio::spawn(crate::admin::serve_authzen(
            state.clone(),
            recent.clone(),
            listener,
            stopped(rx.clone()),
        )));
    }
    tasks.push(tokio::spawn(crate::admin::serve(
        state.clone(),
        recent.clone(),
        admin,
        stopped(rx),
    )));
    tracing::info!(%addr, %admin_addr, tls = tls.is_some(), mode = config.auth.mode.as_str(), workers, scheduler = config.server.scheduler.as_str(), "credgate listening");
    Ok(Running {
        addr,
        admin_addr,
        authzen_addr,
        state,
        recent,
        tls,
        shutdown: tx,
        tasks,
    })
}

impl Running {
    /// Swaps in a new config. On error nothing changes. Returns notes about
    /// settings that need a restart to take effect.
    pub fn reload(&self, new: Config) -> Result<Vec<String>, String> {
        let metrics = &self.state.metrics;
        let result = self.try_reload(new);
        self.recent.note_reload(result.clone());
        let kind = if result.is_ok() { "ok" } else { "rejected" };
        metrics
            .config_reloads
            .get_or_create(&KindLabel { kind })
            .inc();
        result
    }

    fn try_reload(&self, new: Config) -> Result<Vec<String>, String> {
        let info = config_info(&new);
        let shadow = new.policy.shadow.clone();
        let notes = self.apply(new)?;
        self.state.metrics.set_config_info(info);
        self.state.metrics.set_shadow(&shadow);
        Ok(notes)
    }

    fn apply(&self, new: Config) -> Result<Vec<String>, String> {
        let old = self.state.current.load_full();
        let mut notes = Vec::new();
        if new.server.listen != old.config.server.listen {
            notes.push(format!(
                "server.listen changed to {}: takes effect after a restart",
                new.server.listen
            ));
        }
        if new.authzen.listen != old.config.authzen.listen {
            notes.push(format!(
                "authzen.listen changed to {:?}: takes effect after a restart",
                new.authzen.listen
            ));
        }
        if new.server.admin_listen != old.config.server.admin_listen {
            notes.push(format!(
                "server.admin_listen changed to {}: takes effect after a restart",
                new.server.admin_listen
            ));
        }
        if new.server.worker_threads != old.config.server.worker_threads {
            notes.push("server.worker_threads changed: takes effect after a restart".into());
        }
        if new.server.scheduler != old.config.server.scheduler {
            notes.push("server.scheduler changed: takes effect after a restart".into());
        }
        if new.server.tls.is_some() != self.tls.is_some() {
            notes.push("server.tls turned on or off: takes effect after a restart".into());
        }
        if new.cluster.is_some() != old.config.cluster.is_some() {
            notes.push("[cluster] added or removed: takes effect after a restart".into());
        }
        let new = Arc::new(new);
        let generation = build_generation(new.clone(), &self.state.metrics, Some(&old))?;
        if let (Some(handle), Some(files)) = (&self.tls, &new.server.tls) {
            handle.reload(files)?;
        }
        if !self.state.directory.load().same_settings(&new.cache)
            || new.cache.max_users != old.config.cache.max_users
            || new.cache.max_concurrent_loads != old.config.cache.max_concurrent_loads
        {
            self.state.directory.store(Arc::new(Directory::new(
                &new.cache,
                new.server.upstream_timeout,
                self.state.metrics.clone(),
            )));
            notes.push("cache settings changed: the credential cache was emptied".into());
        }
        for w in &new.warnings {
            tracing::warn!(warning = %w, "config");
        }
        self.state.current.store(Arc::new(generation));
        Ok(notes)
    }

    /// Stops accepting; in-flight requests get `server.shutdown_grace`.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until every listener has drained, then writes the audit
    /// records still queued.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.current.load().audit.flush();
    }

    pub async fn shutdown(self) {
        self.trigger_shutdown();
        self.wait().await;
    }
}

/// Runs until SIGTERM or SIGINT, reloading `config_path` on SIGHUP.
pub async fn run_until_signal(
    config: Config,
    config_path: PathBuf,
    env: &dyn Env,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let running = start(config).await?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                match Config::load(&config_path, env) {
                    Err(e) => {
                        running.recent.note_reload(Err(e.to_string()));
                        running.state.metrics.config_reloads.get_or_create(&KindLabel { kind: "invalid" }).inc();
                        tracing::error!(error = %e, "reload: the new config is invalid; still serving the old one");
                    }
                    Ok(new) => match running.reload(new) {
                        Ok(notes) => {
                            for n in notes {
                                tracing::warn!(note = %n, "reload");
                            }
                            tracing::info!(path = %config_path.display(), "config reloaded");
                        }
                        Err(e) => tracing::error!(error = %e, "reload failed; still serving the old config"),
                    },
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    running.shutdown().await;
    Ok(())
}
