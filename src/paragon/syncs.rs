//! Sync ownership (contract §5): Paragon's sync objects do not say which
//! credential a sync uses, so credgate records sync id → (user, credential)
//! from the create and update calls it forwards and from any sync object
//! that does name its credential. A member reaches a sync only through this
//! record; a sync without one is admin-only.
//!
//! Without `[cluster]` the record is in memory: bounded, and lost on
//! restart (syncs created before a restart become admin-only until an admin
//! call reveals their credential, or a member updates them through an
//! admin). With `[cluster]` it lives in a shared store ([`SyncRecords`],
//! implemented on PostgreSQL by `crate::cluster`).
//!
//! Records are keyed by the sync id exactly as Paragon returned it: two ids
//! that differ only in letter case are two syncs (were they folded, one
//! member could reach another's sync by changing the case of its id).

use std::collections::HashMap;
use std::sync::Arc;

use moka::sync::Cache;

pub use super::replicas::{Owner, StoreUnavailable};
use super::replicas::{StoreFuture, SyncRecords};

/// Records kept in memory. At ~150 bytes each, 1M records is ~150 MB; past
/// it the least recently used are dropped (those syncs become admin-only:
/// failing closed).
const MAX_RECORDS: u64 = 1_000_000;

#[derive(Clone)]
pub struct MemorySyncs {
    map: Cache<String, Owner>,
}

impl Default for MemorySyncs {
    fn default() -> Self {
        MemorySyncs {
            map: Cache::builder().max_capacity(MAX_RECORDS).build(),
        }
    }
}

impl std::fmt::Debug for MemorySyncs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySyncs")
            .field("records", &self.map.entry_count())
            .finish()
    }
}

impl MemorySyncs {
    pub fn owner(&self, sync_id: &str) -> Option<Owner> {
        self.map.get(sync_id)
    }

    pub fn record(&self, sync_id: &str, owner: Owner) {
        self.map.insert(sync_id.to_string(), owner);
    }

    pub fn remove(&self, sync_id: &str) {
        self.map.invalidate(sync_id);
    }

    pub fn clear(&self) {
        self.map.invalidate_all();
    }
}

impl SyncRecords for MemorySyncs {
    fn writable(&self) -> bool {
        true
    }

    fn owners<'a>(&'a self, sync_ids: &'a [&'a str]) -> StoreFuture<'a, HashMap<String, Owner>> {
        let found = sync_ids
            .iter()
            .filter_map(|id| self.owner(id).map(|o| (id.to_string(), o)))
            .collect();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn record<'a>(&'a self, sync_id: &'a str, owner: Owner) -> StoreFuture<'a, ()> {
        MemorySyncs::record(self, sync_id, owner);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, sync_id: &'a str) -> StoreFuture<'a, ()> {
        MemorySyncs::remove(self, sync_id);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Where sync ownership lives: memory, or a shared store.
#[derive(Debug, Clone)]
pub struct SyncStore(Arc<dyn SyncRecords>);

impl Default for SyncStore {
    fn default() -> Self {
        SyncStore(Arc::new(MemorySyncs::default()))
    }
}

impl SyncStore {
    pub fn new(records: Arc<dyn SyncRecords>) -> Self {
        SyncStore(records)
    }

    /// Whether sync records can be written now (contract §11: not while the
    /// cluster store is unreachable).
    pub fn writable(&self) -> bool {
        self.0.writable()
    }

    pub async fn owner(&self, sync_id: &str) -> Result<Option<Owner>, StoreUnavailable> {
        Ok(self.0.owners(&[sync_id]).await?.remove(sync_id))
    }

    /// The owners of many syncs at once (a sync list): one store query,
    /// not one per item. Syncs without a record are absent from the map.
    pub async fn owners(
        &self,
        sync_ids: &[&str],
    ) -> Result<HashMap<String, Owner>, StoreUnavailable> {
        self.0.owners(sync_ids).await
    }

    pub async fn record(&self, sync_id: &str, owner: Owner) -> Result<(), StoreUnavailable> {
        self.0.record(sync_id, owner).await
    }

    pub async fn remove(&self, sync_id: &str) -> Result<(), StoreUnavailable> {
        self.0.remove(sync_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids differing only in case are different syncs: folding them would
    /// let a member reach another member's sync by re-casing its id.
    #[test]
    fn records_are_keyed_by_the_exact_id_and_removable() {
        let s = MemorySyncs::default();
        let owner = Owner {
            user: "acme".into(),
            credential: "c1".into(),
        };
        s.record("SyncAbc1", owner.clone());
        assert_eq!(s.owner("SyncAbc1"), Some(owner));
        assert_eq!(s.owner("syncabc1"), None);
        s.remove("syncabc1");
        assert!(s.owner("SyncAbc1").is_some());
        s.remove("SyncAbc1");
        assert_eq!(s.owner("SyncAbc1"), None);
    }
}
