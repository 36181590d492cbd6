//! What a replica shares with the others (contract §11), as the ports the
//! layers above plug into: [`Replicas`] records invalidations for the other
//! replicas and says whether that store is healthy, [`SyncRecords`] keeps
//! sync ownership. `paragon::syncs::MemorySyncs` is the one-replica store;
//! `crate::cluster` implements both on PostgreSQL. Nothing here knows who
//! implements them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future of a store call (these traits are used as objects).
pub type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreUnavailable>> + Send + 'a>>;

/// Who a sync belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: Arc<str>,
    /// Lowercased credential id.
    pub credential: Arc<str>,
}

/// The shared store could not be reached (contract §11: 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sync ownership store is unavailable")]
pub struct StoreUnavailable;

/// What an invalidation drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One Connected User's credential lists.
    User(String),
    /// Every cached list.
    All,
    /// One sync's ownership record.
    Sync(String),
}

/// The other replicas.
pub trait Replicas: Send + Sync + std::fmt::Debug {
    /// Records an invalidation for them (the caller has dropped its own
    /// copy already).
    fn record<'a>(&'a self, what: &'a Invalidation) -> StoreFuture<'a, ()>;
    /// The shared store is unreachable.
    fn is_degraded(&self) -> bool;
    /// Refuse every request while degraded (`cluster.strict`).
    fn strict(&self) -> bool;
}

/// Sync id → owner records (contract §5 "Syncs").
pub trait SyncRecords: Send + Sync + std::fmt::Debug {
    /// Whether records can be written now (not while a shared store is
    /// unreachable).
    fn writable(&self) -> bool;
    /// The owners of these syncs, one store query for all of them; ids
    /// without a record are absent.
    fn owners<'a>(&'a self, sync_ids: &'a [&'a str]) -> StoreFuture<'a, HashMap<String, Owner>>;
    fn record<'a>(&'a self, sync_id: &'a str, owner: Owner) -> StoreFuture<'a, ()>;
    fn remove<'a>(&'a self, sync_id: &'a str) -> StoreFuture<'a, ()>;
}
