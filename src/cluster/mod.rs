//! Many replicas (contract §11): sync ownership and invalidations shared through
//! PostgreSQL.
//!
//! * Schema (versioned, created on start, credgate's own tables only):
//!   `credgate_schema`, `credgate_syncs` (sync → user, credential) and
//!   `credgate_events` (one row per invalidation).
//! * Every invalidation goes through [`Cluster::record`] (called from
//!   `State::invalidate`, the one place that also drops the local entry). A
//!   sync record and the event it causes are written in one transaction.
//! * Each replica LISTENs for a wake-up and also polls every
//!   `poll_interval`, re-reading a window of recent events so that a
//!   transaction that committed after a later one is not skipped; events
//!   already applied are remembered by id until they leave the window, and
//!   the cursor only moves past events that were read.
//! * PostgreSQL unreachable: degraded mode (a metric, a log line, cached
//!   lists fresh for at most `degraded_ttl`, sync writes and unknown-sync
//!   lookups 503, readiness untouched); `strict` refuses every request. A
//!   replica cut off longer than `event_retention` flushes every cache when
//!   it reconnects, since the events it missed may be gone.
//!
//! The LISTEN connection is a direct connection: it must not go through a
//! transaction-mode pooler (PgBouncer in transaction mode drops LISTEN).

mod pool;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use arc_swap::ArcSwap;

use crate::config::ClusterConfig;
use crate::paragon::directory::Directory;
use crate::paragon::replicas::{
    Invalidation, Replicas, StoreFuture, StoreUnavailable, SyncRecords,
};
use crate::paragon::syncs::{MemorySyncs, Owner};
use crate::telemetry::{KindLabel, Metrics};
use pool::Pool;

/// The NOTIFY channel.
const CHANNEL: &str = "credgate_events";
/// Bound on any one database operation; past it the store counts as down.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a sync id the store did not know is remembered as unknown.
const UNKNOWN_SYNC_TTL: Duration = Duration::from_secs(10);
/// Most unknown sync ids remembered.
const UNKNOWN_SYNC_CAPACITY: u64 = 100_000;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Schema migrations, applied in order under an advisory lock.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS credgate_syncs (
         project        TEXT NOT NULL,
         sync_id        TEXT NOT NULL,
         connected_user TEXT NOT NULL,
         credential_id  TEXT NOT NULL,
         updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
         PRIMARY KEY (project, sync_id)
     );
     CREATE TABLE IF NOT EXISTS credgate_events (
         id         BIGSERIAL PRIMARY KEY,
         project    TEXT NOT NULL,
         kind       TEXT NOT NULL CHECK (kind IN ('user', 'all', 'sync')),
         subject    TEXT,
         origin     TEXT NOT NULL,
         created_us BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
     );
     CREATE INDEX IF NOT EXISTS credgate_events_by_time ON credgate_events (project, created_us);",
)];

/// What an invalidation drops (the events' `kind` and `subject`).
pub type Target = Invalidation;

fn kind(t: &Target) -> &'static str {
    match t {
        Target::User(_) => "user",
        Target::All => "all",
        Target::Sync(_) => "sync",
    }
}

fn subject(t: &Target) -> Option<&str> {
    match t {
        Target::User(u) | Target::Sync(u) => Some(u),
        Target::All => None,
    }
}

pub struct Cluster {
    cfg: ClusterConfig,
    project: String,
    /// Identifies this replica's own events (which it has applied already).
    replica: String,
    pool: Pool,
    degraded: AtomicBool,
    /// When the store last answered (for the `event_retention` check).
    last_ok: Mutex<Instant>,
    /// Local cache of sync owners (write-through).
    syncs: MemorySyncs,
    /// Sync ids the store had no record of, for [`UNKNOWN_SYNC_TTL`]: a
    /// member probing unknown ids (or a list of syncs credgate never saw)
    /// costs the store one query per id per TTL, not one per request.
    /// Dropped when any replica records the sync (its event).
    unknown_syncs: moka::sync::Cache<String, ()>,
    wake: Notify,
    cursor_us: AtomicI64,
    migrated: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

/// tokio-postgres errors name the failing operation, never the URL or its
/// password; their causes follow (a certificate error, a server message).
fn err_text(e: &(dyn std::error::Error + 'static)) -> String {
    pool::describe(e)
}

/// `credgate check-config --probe`: connects to the store once, as a
/// replica does (the same TLS roots), and runs `SELECT 1`; the error names
/// its cause (a certificate refused, and what to do about it).
pub async fn probe(
    cfg: &ClusterConfig,
    paragon_ca: Option<&crate::config::PemFile>,
) -> Result<(), String> {
    Pool::new(&cfg.postgres_url, cfg.ca_file.as_ref(), paragon_ca)?
        .probe()
        .await
}

/// [`probe`] for `check-config --probe`, on a runtime of its own: what
/// it found, to print; `Err` when a replica could not connect.
pub fn probe_blocking(config: &crate::config::Config) -> Result<String, String> {
    let Some(cluster) = &config.cluster else {
        return Ok("no [cluster]: nothing to connect to".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime
        .block_on(probe(cluster, config.paragon.ca_file.as_ref()))
        .map(|()| "[cluster] PostgreSQL answered".into())
        .map_err(|e| format!("[cluster] PostgreSQL: {e}"))
}

impl Cluster {
    /// Prepares the store. An unreachable database is not fatal: the
    /// replica starts degraded and connects when it can.
    pub async fn new(
        cfg: ClusterConfig,
        project: &str,
        metrics: Arc<Metrics>,
        ca: Option<&crate::config::PemFile>,
    ) -> Result<Arc<Cluster>, String> {
        let pool = Pool::new(&cfg.postgres_url, cfg.ca_file.as_ref(), ca)?;
        let replica: String = crate::keygen::random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cluster = Arc::new(Cluster {
            cfg,
            project: project.to_string(),
            replica,
            pool,
            degraded: AtomicBool::new(false),
            last_ok: Mutex::new(Instant::now()),
            syncs: MemorySyncs::default(),
            unknown_syncs: moka::sync::Cache::builder()
                .max_capacity(UNKNOWN_SYNC_CAPACITY)
                .time_to_live(UNKNOWN_SYNC_TTL)
                .build(),
            wake: Notify::new(),
            cursor_us: AtomicI64::new(0),
            migrated: AtomicBool::new(false),
            metrics,
        });
        if let Err(e) = cluster.prepare().await {
            tracing::warn!(error = %e, "cluster store unreachable at start (the error says why); starting degraded");
            cluster.set_degraded(true, &e);
        }
        Ok(cluster)
    }

    pub fn strict(&self) -> bool {
        self.cfg.strict
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    pub fn degraded_ttl(&self) -> Duration {
        self.cfg.degraded_ttl
    }

    /// Migrates the schema and sets the event cursor to the store's now.
    async fn prepare(&self) -> Result<(), String> {
        let mut client = self.pool.get().await?;
        if !self.migrated.load(Ordering::Acquire) {
            let tx = timeout(client.transaction()).await?;
            timeout(tx.execute("SELECT pg_advisory_xact_lock(7428451893)", &[])).await?;
            timeout(tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS credgate_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            ))
            .await?;
            let row =
                timeout(tx.query_one("SELECT COALESCE(MAX(version), 0) FROM credgate_schema", &[]))
                    .await?;
            let current: i32 = row.get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                timeout(tx.batch_execute(sql)).await?;
                timeout(tx.execute(
                    "INSERT INTO credgate_schema (version) VALUES ($1)",
                    &[version],
                ))
                .await?;
                tracing::info!(version, "cluster schema migrated");
            }
            timeout(tx.commit()).await?;
            self.migrated.store(true, Ordering::Release);
        }
        if self.cursor_us.load(Ordering::Acquire) == 0 {
            let row = timeout(client.query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT",
                &[],
            ))
            .await?;
            self.cursor_us.store(row.get(0), Ordering::Release);
        }
        client.keep();
        Ok(())
    }

    fn set_degraded(&self, degraded: bool, why: &str) {
        let was = self.degraded.swap(degraded, Ordering::AcqRel);
        if was == degraded {
            return;
        }
        self.metrics.cluster_degraded.set(i64::from(degraded));
        if degraded {
            tracing::error!(error = %why, "cluster degraded: PostgreSQL is unreachable; cached decisions serve with short TTLs");
        } else {
            tracing::info!("cluster recovered: PostgreSQL is reachable again");
        }
    }

    fn failed(&self, op: &'static str, e: &str) -> StoreUnavailable {
        self.metrics
            .cluster_errors
            .get_or_create(&KindLabel { kind: op })
            .inc();
        self.set_degraded(true, e);
        StoreUnavailable
    }

    /// Records an invalidation for the other replicas (the caller has
    /// dropped its own entry).
    pub async fn record(&self, target: &Target) -> Result<(), StoreUnavailable> {
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = timeout(client.transaction()).await?;
            self.insert_event(&tx, target).await?;
            timeout(tx.commit()).await?;
            client.keep();
            Ok::<_, String>(())
        }
        .await;
        result.map_err(|e| self.failed("record_event", &e))
    }

    async fn insert_event(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        target: &Target,
    ) -> Result<(), String> {
        timeout(tx.execute(
            "INSERT INTO credgate_events (project, kind, subject, origin) VALUES ($1, $2, $3, $4)",
            &[
                &self.project,
                &kind(target),
                &subject(target),
                &self.replica,
            ],
        ))
        .await?;
        timeout(tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &self.project])).await?;
        Ok(())
    }

    /// Runs `statement` and records `target`'s invalidation event in one
    /// transaction: either both happen or neither (contract §11).
    async fn with_event(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        target: &Target,
    ) -> Result<(), String> {
        let mut client = self.pool.get().await?;
        let tx = timeout(client.transaction()).await?;
        timeout(tx.execute(statement, params)).await?;
        self.insert_event(&tx, target).await?;
        timeout(tx.commit()).await?;
        client.keep();
        Ok(())
    }

    /// The owner of a sync: the local cache, else the store.
    pub async fn sync_owner(&self, sync_id: &str) -> Result<Option<Owner>, StoreUnavailable> {
        Ok(self.sync_owners(&[sync_id]).await?.remove(sync_id))
    }

    /// The owners of many syncs: those in the local cache, the rest in one
    /// query (ids known to be unknown are not asked again for a while).
    pub async fn sync_owners(
        &self,
        sync_ids: &[&str],
    ) -> Result<HashMap<String, Owner>, StoreUnavailable> {
        let mut found = HashMap::new();
        let mut ask: Vec<String> = Vec::new();
        for id in sync_ids {
            match self.syncs.owner(id) {
                Some(o) => {
                    found.insert(id.to_string(), o);
                }
                None if self.unknown_syncs.contains_key(*id) => {}
                None => ask.push(id.to_string()),
            }
        }
        ask.sort_unstable();
        ask.dedup();
        if ask.is_empty() {
            return Ok(found);
        }
        self.metrics.cluster_sync_lookups.inc();
        let result = async {
            let client = self.pool.get().await?;
            let rows = timeout(client.query(
                "SELECT sync_id, connected_user, credential_id FROM credgate_syncs WHERE project = $1 AND sync_id = ANY($2)",
                &[&self.project, &ask],
            ))
            .await?;
            client.keep();
            Ok::<_, String>(rows)
        }
        .await;
        let rows = result.map_err(|e| self.failed("sync_owner", &e))?;
        for r in rows {
            let id: String = r.get(0);
            let owner = Owner {
                user: Arc::from(r.get::<_, String>(1)),
                credential: Arc::from(r.get::<_, String>(2)),
            };
            self.syncs.record(&id, owner.clone());
            found.insert(id, owner);
        }
        for id in ask {
            if !found.contains_key(&id) {
                self.unknown_syncs.insert(id, ());
            }
        }
        Ok(found)
    }

    /// Records a sync's owner and the invalidation of other replicas'
    /// cached record, in one transaction.
    pub async fn record_sync(&self, sync_id: &str, owner: Owner) -> Result<(), StoreUnavailable> {
        let id = sync_id.to_string();
        let result = self
            .with_event(
                "INSERT INTO credgate_syncs (project, sync_id, connected_user, credential_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project, sync_id) DO UPDATE SET connected_user = EXCLUDED.connected_user,
                     credential_id = EXCLUDED.credential_id, updated_at = now()",
                &[&self.project, &id, &&*owner.user, &&*owner.credential],
                &Target::Sync(id.clone()),
            )
            .await;
        match result {
            Ok(()) => {
                self.unknown_syncs.invalidate(&id);
                self.syncs.record(&id, owner);
                Ok(())
            }
            Err(e) => Err(self.failed("record_sync", &e)),
        }
    }

    /// Deletes a sync's record (and tells the other replicas).
    pub async fn remove_sync(&self, sync_id: &str) -> Result<(), StoreUnavailable> {
        let id = sync_id.to_string();
        self.syncs.remove(&id);
        self.with_event(
            "DELETE FROM credgate_syncs WHERE project = $1 AND sync_id = $2",
            &[&self.project, &id],
            &Target::Sync(id.clone()),
        )
        .await
        .map_err(|e| self.failed("remove_sync", &e))
    }

    /// Drops the local copy of a sync record (an event from another replica).
    fn forget_sync(&self, sync_id: &str) {
        self.syncs.remove(sync_id);
        self.unknown_syncs.invalidate(sync_id);
    }

    /// Starts the LISTEN and poll tasks, which apply other replicas'
    /// invalidations to `directory` (the current credential directory, as
    /// the gateway swaps it on reload). They end when it is dropped.
    pub fn start(self: &Arc<Self>, directory: Weak<ArcSwap<Directory>>) {
        let listener = Arc::downgrade(self);
        tokio::spawn(listen_loop(listener));
        let poller = Arc::downgrade(self);
        tokio::spawn(poll_loop(poller, directory));
    }

    fn window_us(&self) -> i64 {
        let w = (self.cfg.poll_interval * 5).max(Duration::from_secs(5));
        i64::try_from(w.as_micros()).unwrap_or(i64::MAX)
    }

    /// One poll: read the window, apply unseen events, move the cursor.
    async fn poll_once(
        &self,
        directory: &ArcSwap<Directory>,
        seen: &mut HashMap<i64, i64>,
    ) -> Result<usize, String> {
        if !self.migrated.load(Ordering::Acquire) || self.cursor_us.load(Ordering::Acquire) == 0 {
            self.prepare().await?;
        }
        let cursor = self.cursor_us.load(Ordering::Acquire);
        let since = cursor.saturating_sub(self.window_us());
        let client = self.pool.get().await?;
        let rows = timeout(client.query(
            "SELECT id, kind, subject, origin, created_us FROM credgate_events
             WHERE project = $1 AND created_us > $2 ORDER BY created_us, id",
            &[&self.project, &since],
        ))
        .await?;
        client.keep();
        let mut applied = 0;
        let mut newest = cursor;
        for row in rows {
            let id: i64 = row.get(0);
            let created: i64 = row.get(4);
            newest = newest.max(created);
            if seen.insert(id, created).is_some() {
                continue;
            }
            let origin: &str = row.get(3);
            if origin == self.replica {
                continue;
            }
            let kind: &str = row.get(1);
            let subject: Option<&str> = row.get(2);
            match (kind, subject) {
                ("user", Some(u)) => directory.load().invalidate_user(u).await,
                ("all", _) => directory.load().invalidate_all(),
                ("sync", Some(s)) => self.forget_sync(s),
                _ => continue,
            }
            applied += 1;
            self.metrics.cluster_events_applied.inc();
        }
        self.cursor_us.store(newest, Ordering::Release);
        let floor = newest.saturating_sub(self.window_us());
        seen.retain(|_, created| *created > floor);
        Ok(applied)
    }

    /// Deletes events older than `event_retention`.
    async fn prune(&self) -> Result<(), String> {
        let retention = i64::try_from(self.cfg.event_retention.as_micros()).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        timeout(client.execute(
            "DELETE FROM credgate_events WHERE project = $1
             AND created_us < (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT - $2",
            &[&self.project, &retention],
        ))
        .await?;
        client.keep();
        Ok(())
    }
}

async fn timeout<T, E: std::error::Error + 'static>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err_text(&e)),
        Err(_) => Err("the database did not answer in time".into()),
    }
}

async fn poll_loop(cluster: Weak<Cluster>, directory: Weak<ArcSwap<Directory>>) {
    let mut seen = HashMap::new();
    let mut backoff = Duration::ZERO;
    let mut polls: u64 = 0;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let Some(s) = directory.upgrade() else { return };
        s.load()
            .set_degraded_ttl(c.is_degraded().then_some(c.cfg.degraded_ttl));
        let wait = if backoff.is_zero() {
            c.cfg.poll_interval
        } else {
            backoff
        };
        tokio::select! {
            _ = c.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let was_degraded = c.is_degraded();
        let gap = c.last_ok.lock().map(|t| t.elapsed()).unwrap_or_default();
        match c.poll_once(&s, &mut seen).await {
            Ok(_) => {
                backoff = Duration::ZERO;
                if was_degraded {
                    if gap > c.cfg.event_retention {
                        tracing::warn!(gap = ?gap, "cut off from the cluster longer than event_retention: flushing every cache");
                        s.load().invalidate_all();
                        c.syncs_clear();
                    }
                    s.load().set_degraded_ttl(None);
                    c.set_degraded(false, "");
                }
                if let Ok(mut t) = c.last_ok.lock() {
                    *t = Instant::now();
                }
                polls += 1;
                if polls % 600 == 1 {
                    if let Err(e) = c.prune().await {
                        tracing::debug!(error = %e, "pruning old cluster events failed");
                    }
                }
            }
            Err(e) => {
                c.metrics
                    .cluster_errors
                    .get_or_create(&KindLabel { kind: "poll" })
                    .inc();
                c.set_degraded(true, &e);
                s.load().set_degraded_ttl(Some(c.cfg.degraded_ttl));
                backoff = (backoff * 2).clamp(c.cfg.poll_interval, MAX_BACKOFF);
            }
        }
    }
}

impl Replicas for Cluster {
    fn record<'a>(&'a self, what: &'a Invalidation) -> StoreFuture<'a, ()> {
        Box::pin(Cluster::record(self, what))
    }

    fn is_degraded(&self) -> bool {
        Cluster::is_degraded(self)
    }

    fn strict(&self) -> bool {
        Cluster::strict(self)
    }
}

impl SyncRecords for Cluster {
    fn writable(&self) -> bool {
        !Cluster::is_degraded(self)
    }

    fn owners<'a>(&'a self, sync_ids: &'a [&'a str]) -> StoreFuture<'a, HashMap<String, Owner>> {
        Box::pin(self.sync_owners(sync_ids))
    }

    fn record<'a>(&'a self, sync_id: &'a str, owner: Owner) -> StoreFuture<'a, ()> {
        Box::pin(self.record_sync(sync_id, owner))
    }

    fn remove<'a>(&'a self, sync_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.remove_sync(sync_id))
    }
}

impl Cluster {
    fn syncs_clear(&self) {
        self.syncs.clear();
        self.unknown_syncs.invalidate_all();
    }
}

/// Holds a LISTEN connection and wakes the poller on every NOTIFY.
async fn listen_loop(cluster: Weak<Cluster>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        match c.pool.listen(CHANNEL).await {
            Ok(mut conn) => {
                backoff = Duration::from_millis(200);
                c.wake.notify_one();
                let weak = Arc::downgrade(&c);
                drop(c);
                while conn.next_notification().await {
                    match weak.upgrade() {
                        Some(c) => c.wake.notify_one(),
                        None => return,
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cluster LISTEN connection failed; retrying");
                drop(c);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
