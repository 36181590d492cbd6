//! What the emulator knows and remembers: the project's users, credentials,
//! syncs and trigger subscriptions (the "world"), the switchable
//! [`Behaviour`], and the log of requests it received.
//!
//! Locks are `std::sync::Mutex`es held only for short, await-free sections
//! (the handlers' futures must be `Send`, which a held guard is not, so the
//! compiler enforces this). A poisoned lock is taken over rather than
//! propagated: the data is plain values, never left half-updated by a
//! panic in a section that only assigns.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::fixtures::{
    check_user_id, resolve_credential, CredentialFixture, Fixtures, Resolved, ResolvedCredential,
    Taken,
};
use super::util::{derived_uuid, random_hex};

/// At most this much of each request body is kept in the log.
pub const RECORDED_BODY_BYTES: usize = 1024 * 1024;
/// The log keeps the most recent this many requests...
pub const MAX_RECORDED_REQUESTS: usize = 100_000;
/// ...and at most this many recorded body bytes in total (oldest dropped
/// first), so a long benchmark cannot exhaust memory.
pub const MAX_RECORDED_BODY_TOTAL: usize = 256 * 1024 * 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Switches that make the emulator misbehave on purpose, for testing how
/// credgate copes with a failing or slow Paragon. Set with
/// [`EmulatorState::set_behaviour`] or `PUT /_emulator/behaviour`; the JSON
/// form accepts any subset of the fields (the rest default to off).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// `GET /sdk/me` answers this status (with a JSON error body) instead.
    pub me_status: Option<u16>,
    /// `GET /sdk/me` answers 200 `{"authenticated": false}`.
    pub me_unauthenticated: bool,
    /// `GET /sdk/me` answers 200 with a body that is not JSON.
    pub me_malformed: bool,
    /// Every non-control response's headers are delayed this long.
    pub delay_ms: u64,
    /// Extra delay for `GET /sdk/me` only.
    pub me_delay_ms: u64,
    /// ActionKit tool runs (`POST /tools`, `/actions`) answer 422 with
    /// this message, as Paragon passes on a provider's refusal.
    pub tool_run_error: Option<String>,
}

/// One request the emulator received on a Paragon route, with what it
/// made of it. Serialized (control API) with the field names below, except
/// that `body` becomes two fields: `body` (the bytes as lossy UTF-8 text)
/// and `body_base64` (exact), and `headers` a list of `[name, value]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lowercased names, in order of first appearance (repeated names are
    /// grouped: that is what hyper's `HeaderMap` keeps); values lossily
    /// UTF-8.
    pub headers: Vec<(String, String)>,
    /// The first [`RECORDED_BODY_BYTES`] of the body (as far as it was read:
    /// a streamed upload refused before its body was read records none).
    pub body: Vec<u8>,
    /// The full length of the body as read.
    pub body_len: u64,
    /// The token's `sub`, once the token verified.
    pub user: Option<String>,
    /// The credential the emulator resolved for the call, if any.
    pub credential: Option<String>,
    /// The verified token's claims.
    pub claims: Option<Value>,
    pub status: u16,
    /// `connect`, `workflows`, `proxy`, `actionkit`, `sync`, or `unknown`
    /// for a path that is no Paragon route.
    pub host: String,
}

impl RecordedRequest {
    /// The value of header `name` (lowercase), first occurrence.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Serialize for RecordedRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        #[derive(Serialize)]
        struct Wire<'a> {
            method: &'a str,
            path: &'a str,
            query: &'a Option<String>,
            headers: &'a [(String, String)],
            body: String,
            body_base64: String,
            body_len: u64,
            user: &'a Option<String>,
            credential: &'a Option<String>,
            claims: &'a Option<Value>,
            status: u16,
            host: &'a str,
        }
        Wire {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: String::from_utf8_lossy(&self.body).into_owned(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&self.body),
            body_len: self.body_len,
            user: &self.user,
            credential: &self.credential,
            claims: &self.claims,
            status: self.status,
            host: &self.host,
        }
        .serialize(s)
    }
}

struct RequestLog {
    entries: VecDeque<RecordedRequest>,
    body_bytes: usize,
    max_entries: usize,
    max_body_bytes: usize,
}

impl RequestLog {
    fn new(max_entries: usize, max_body_bytes: usize) -> Self {
        RequestLog {
            entries: VecDeque::new(),
            body_bytes: 0,
            max_entries,
            max_body_bytes,
        }
    }

    fn push(&mut self, r: RecordedRequest) {
        self.body_bytes += r.body.len();
        self.entries.push_back(r);
        while self.entries.len() > self.max_entries || self.body_bytes > self.max_body_bytes {
            match self.entries.pop_front() {
                Some(old) => self.body_bytes -= old.body.len(),
                None => break,
            }
        }
    }
}

/// A credential as the emulator holds it: the resolved fixture, whose user
/// it is, and what only the running emulator knows.
#[derive(Debug, Clone)]
pub(crate) struct Cred {
    pub base: ResolvedCredential,
    pub user: String,
    /// Insertion order: the tie-break between equal `dateCreated`s.
    pub seq: u64,
    /// What `includeAccountAuth=true` reveals; fixed per credential.
    pub access_token: String,
}

impl std::ops::Deref for Cred {
    type Target = ResolvedCredential;
    fn deref(&self) -> &ResolvedCredential {
        &self.base
    }
}

impl std::ops::DerefMut for Cred {
    fn deref_mut(&mut self) -> &mut ResolvedCredential {
        &mut self.base
    }
}

impl Cred {
    pub fn is_valid(&self) -> bool {
        self.status == "VALID"
    }

    /// Sort key: oldest first.
    pub fn age(&self) -> (i64, u64) {
        (self.created_ms, self.seq)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct UserRec {
    pub meta: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
pub(crate) struct SyncRec {
    pub id: String,
    pub user: String,
    pub credential: String,
    pub integration: String,
    pub pipeline: String,
    pub configuration: Value,
    pub configuration_name: Option<String>,
    pub status: String,
    pub frequency: Option<String>,
    pub date_created: String,
    pub date_updated: String,
}

#[derive(Debug, Clone)]
pub(crate) struct SubscriptionRec {
    pub id: String,
    pub user: String,
    pub credential: String,
    pub integration: String,
    pub kind: String,
    pub parameters: Value,
    pub webhook_override: Value,
    pub date_created: String,
}

/// At most this many install sessions are kept (the oldest is dropped
/// first), so an emulator under a long benchmark cannot grow without bound.
pub(crate) const MAX_INSTALL_SESSIONS: usize = 10_000;

/// One `installIntegration` in progress (contract §13): what `build-oauth`
/// recorded for one user under the SDK's `oauthMetaKeyId` (its own random
/// string, not a UUID; the key in [`InstallSessions`]).
#[derive(Debug, Clone)]
pub(crate) struct InstallSession {
    pub user: String,
    /// The integration type.
    pub integration: String,
    /// `installOptions` as sent (a JSON object).
    pub options: serde_json::Map<String, Value>,
    /// The consent page's capability: its path names the session.
    pub nonce: String,
    /// The credential its consent created or re-connected.
    pub credential: Option<String>,
    seq: u64,
}

/// Install sessions by (user, session id): two users who pick the same id
/// never see or replace each other's session.
#[derive(Debug, Default)]
pub(crate) struct InstallSessions {
    by_key: BTreeMap<(String, String), InstallSession>,
    /// Nonce → key, while the consent is still to be given.
    nonces: BTreeMap<String, (String, String)>,
    next_seq: u64,
}

impl InstallSessions {
    /// Starts a session; one of the same user and id is replaced (its
    /// consent page stops working).
    pub fn start(
        &mut self,
        user: &str,
        id: &str,
        integration: &str,
        options: serde_json::Map<String, Value>,
        nonce: String,
    ) {
        self.remove(user, id);
        while self.by_key.len() >= MAX_INSTALL_SESSIONS {
            let oldest = self
                .by_key
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some((u, i)) => {
                    self.remove(&u, &i);
                }
                None => break,
            }
        }
        let key = (user.to_string(), id.to_string());
        self.nonces.insert(nonce.clone(), key.clone());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.insert(
            key,
            InstallSession {
                user: user.to_string(),
                integration: integration.to_string(),
                options,
                nonce,
                credential: None,
                seq,
            },
        );
    }

    pub fn get(&self, user: &str, id: &str) -> Option<&InstallSession> {
        self.by_key.get(&(user.to_string(), id.to_string()))
    }

    /// The session whose consent is still to be given under `nonce`.
    pub fn by_nonce(&self, nonce: &str) -> Option<&InstallSession> {
        self.nonces.get(nonce).and_then(|k| self.by_key.get(k))
    }

    /// Records the consent's credential; the nonce is used up.
    pub fn complete(&mut self, nonce: &str, credential: &str) {
        if let Some(key) = self.nonces.remove(nonce) {
            if let Some(s) = self.by_key.get_mut(&key) {
                s.credential = Some(credential.to_string());
            }
        }
    }

    pub fn remove(&mut self, user: &str, id: &str) -> bool {
        match self.by_key.remove(&(user.to_string(), id.to_string())) {
            Some(s) => {
                self.nonces.remove(&s.nonce);
                true
            }
            None => false,
        }
    }

    fn forget_user(&mut self, user: &str) {
        self.by_key.retain(|(u, _), _| u != user);
        self.nonces.retain(|_, (u, _)| u != user);
    }
}

/// The project's data.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub users: BTreeMap<String, UserRec>,
    /// By lowercase id.
    pub creds: BTreeMap<String, Cred>,
    /// Integration type → integration id. Types are never forgotten, so the
    /// catalog stays stable when a type's last credential goes.
    pub integrations: BTreeMap<String, String>,
    pub syncs: BTreeMap<String, SyncRec>,
    pub subscriptions: BTreeMap<String, SubscriptionRec>,
    /// Agent OS tool executions by id: (user, execution object).
    pub executions: BTreeMap<String, (String, serde_json::Value)>,
    /// The install flow's sessions (`install`).
    pub installs: InstallSessions,
    next_seq: u64,
}

impl World {
    fn from_resolved(r: Resolved) -> World {
        let mut w = World {
            integrations: r.integrations,
            ..World::default()
        };
        for u in r.users {
            w.users.insert(u.id.clone(), UserRec { meta: u.meta });
            for c in u.credentials {
                w.insert(&u.id, c);
            }
        }
        w
    }

    fn insert(&mut self, user: &str, c: ResolvedCredential) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.integrations
            .entry(c.integration.clone())
            .or_insert_with(|| c.integration_id.clone());
        self.creds.insert(
            c.id.clone(),
            Cred {
                base: c,
                user: user.to_string(),
                seq,
                access_token: format!("emulated-{}", random_hex()),
            },
        );
    }

    /// The user's credentials, oldest first.
    pub fn user_credentials(&self, user: &str) -> Vec<&Cred> {
        let mut v: Vec<&Cred> = self.creds.values().filter(|c| c.user == user).collect();
        v.sort_by_key(|c| c.age());
        v
    }

    pub fn credential(&self, id: &str) -> Option<&Cred> {
        self.creds.get(&id.to_ascii_lowercase())
    }

    /// The integration type with this integration id.
    pub fn integration_with_id(&self, id: &str) -> Option<&str> {
        self.integrations
            .iter()
            .find(|(_, i)| i.eq_ignore_ascii_case(id))
            .map(|(t, _)| t.as_str())
    }

    pub(crate) fn add_credential(
        &mut self,
        user: &str,
        c: &CredentialFixture,
    ) -> Result<(), String> {
        if !self.users.contains_key(user) {
            return Err(format!("unknown user {user:?}"));
        }
        let cred_ids = |id: &str| self.creds.contains_key(id);
        let cfg_ids = |id: &str| {
            self.creds
                .values()
                .any(|c| c.configurations.iter().any(|x| x == id))
        };
        let newest_ms = self.creds.values().map(|c| c.created_ms).max();
        let resolved = resolve_credential(
            c,
            &Taken {
                credential_ids: &cred_ids,
                configuration_ids: &cfg_ids,
                integrations: &self.integrations,
                newest_ms,
            },
        )?;
        self.insert(user, resolved);
        Ok(())
    }

    /// Removes a credential; syncs bound to it error, as Paragon's do when
    /// their credential is deleted.
    pub fn remove_credential(&mut self, id: &str) -> bool {
        let id = id.to_ascii_lowercase();
        if self.creds.remove(&id).is_none() {
            return false;
        }
        for s in self.syncs.values_mut().filter(|s| s.credential == id) {
            s.status = "ERRORED".to_string();
        }
        self.subscriptions.retain(|_, s| s.credential != id);
        true
    }

    pub fn persona_id(user: &str) -> String {
        derived_uuid("persona", user)
    }
}

/// The emulator's shared state: the world, the behaviour switches and the
/// request log. Cheap to share (`Arc`); every method takes `&self`.
pub struct EmulatorState {
    pub(crate) project_id: String,
    /// `useparagon.com/{project_id}`, the `aud` Paragon's cloud expects.
    pub(crate) audience: String,
    pub(crate) key: DecodingKey,
    pub(crate) world: Mutex<World>,
    /// ActionKit requires the `actionkit` permission of narrowed tokens
    /// (the fixture's `actionkit_permission`).
    pub(crate) actionkit_permission: bool,
    log: Mutex<RequestLog>,
    behaviour: Mutex<Behaviour>,
    in_flight: AtomicUsize,
}

/// Counts a Paragon-route request as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState")
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl EmulatorState {
    /// Validates the fixtures and the project's RS256 public key (PEM).
    pub(crate) fn new(fixtures: &Fixtures, public_key_pem: &[u8]) -> Result<Arc<Self>, String> {
        let resolved = Resolved::from_fixtures(fixtures)?;
        let key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|e| {
            format!("the emulator's public key is not an RSA public key in PEM form: {e}")
        })?;
        Ok(Arc::new(EmulatorState {
            audience: format!("useparagon.com/{}", resolved.project_id),
            project_id: resolved.project_id.clone(),
            key,
            world: Mutex::new(World::from_resolved(resolved)),
            actionkit_permission: fixtures.actionkit_permission,
            log: Mutex::new(RequestLog::new(
                MAX_RECORDED_REQUESTS,
                MAX_RECORDED_BODY_TOTAL,
            )),
            behaviour: Mutex::new(Behaviour::default()),
            in_flight: AtomicUsize::new(0),
        }))
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).entries.iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        let mut log = lock(&self.log);
        log.entries.clear();
        log.body_bytes = 0;
    }

    /// Requests on Paragon routes received and not yet answered (response
    /// headers not yet produced). Lets a test wait until a request has
    /// arrived, e.g. before shutting down under load.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    pub(crate) fn record(&self, r: RecordedRequest) {
        lock(&self.log).push(r);
    }

    /// Adds a Connected User with empty metadata; an existing user is left
    /// as it is. An id the fixture format refuses (empty, control
    /// characters, over 256 bytes) is ignored; `POST /_emulator/users`
    /// reports it as a 400 instead.
    pub fn add_user(&self, id: &str) {
        let _ = self.try_add_user(id);
    }

    /// Like [`add_user`](Self::add_user); `Ok(true)` when the user is new.
    pub fn try_add_user(&self, id: &str) -> Result<bool, String> {
        check_user_id(id)?;
        let mut w = lock(&self.world);
        if w.users.contains_key(id) {
            return Ok(false);
        }
        w.users.insert(
            id.to_string(),
            UserRec {
                meta: serde_json::Map::new(),
            },
        );
        Ok(true)
    }

    /// Removes a user with its credentials, syncs and trigger subscriptions.
    pub fn remove_user(&self, id: &str) -> bool {
        let mut w = lock(&self.world);
        if w.users.remove(id).is_none() {
            return false;
        }
        w.creds.retain(|_, c| c.user != id);
        w.installs.forget_user(id);
        w.syncs.retain(|_, s| s.user != id);
        w.subscriptions.retain(|_, s| s.user != id);
        true
    }

    /// Connects an account for `user`, validated like a fixture entry. With
    /// no `date_created` it becomes the user's newest credential.
    pub fn add_credential(&self, user: &str, c: CredentialFixture) -> Result<(), String> {
        lock(&self.world).add_credential(user, &c)
    }

    pub fn remove_credential(&self, id: &str) -> bool {
        lock(&self.world).remove_credential(id)
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *lock(&self.behaviour) = b;
    }

    pub fn behaviour(&self) -> Behaviour {
        lock(&self.behaviour).clone()
    }

    /// The user holding credential `id` (compared case-insensitively).
    pub fn credential_owner(&self, id: &str) -> Option<String> {
        lock(&self.world).credential(id).map(|c| c.user.clone())
    }

    /// The id of the sync's credential, when the sync exists (tests use it to
    /// check which account a sync was bound to).
    pub fn sync_credential(&self, sync_id: &str) -> Option<String> {
        lock(&self.world)
            .syncs
            .get(&sync_id.to_ascii_lowercase())
            .map(|s| s.credential.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Arc<EmulatorState> {
        let pair = crate::keygen::rsa().unwrap();
        EmulatorState::new(&Fixtures::demo("p"), pair.public_pem.as_bytes()).unwrap()
    }

    #[test]
    fn credentials_are_listed_oldest_first_and_added_ones_are_newest() {
        let s = state();
        let extra = "e0000000-0000-4000-8000-000000000001";
        s.add_credential("acme", CredentialFixture::new(extra, "slack"))
            .unwrap();
        let w = lock(&s.world);
        let ids: Vec<&str> = w
            .user_credentials("acme")
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            ids.first(),
            Some(&super::super::fixtures::DEMO_SALESFORCE_ALICE)
        );
        assert_eq!(ids.last(), Some(&extra));
        assert_eq!(
            w.credential(extra).unwrap().integration_id,
            super::super::fixtures::DEMO_INTEGRATION_SLACK,
            "a new credential of a known type gets the type's id"
        );
    }

    #[test]
    fn add_credential_refuses_unknown_users_and_duplicates() {
        let s = state();
        let id = super::super::fixtures::DEMO_SLACK_BOB;
        assert!(s
            .add_credential(
                "nobody",
                CredentialFixture::new("e0000000-0000-4000-8000-000000000001", "slack")
            )
            .unwrap_err()
            .contains("unknown user"));
        assert!(s
            .add_credential("acme", CredentialFixture::new(&id.to_uppercase(), "slack"))
            .unwrap_err()
            .contains("twice"));
        let mut other = CredentialFixture::new("e0000000-0000-4000-8000-000000000001", "slack");
        other.integration_id = Some("e0000000-0000-4000-8000-00000000000f".into());
        assert!(s.add_credential("acme", other).is_err());
    }

    #[test]
    fn users_and_credentials_come_and_go() {
        let s = state();
        s.add_user("globex");
        assert_eq!(s.try_add_user("globex"), Ok(false));
        assert!(s.try_add_user("").is_err());
        assert!(s.try_add_user("a\nb").is_err());
        let id = "e0000000-0000-4000-8000-000000000002";
        s.add_credential("globex", CredentialFixture::new(id, "gmail"))
            .unwrap();
        assert_eq!(
            s.credential_owner(&id.to_uppercase()).as_deref(),
            Some("globex")
        );
        assert!(s.remove_user("globex"));
        assert!(!s.remove_user("globex"));
        assert_eq!(s.credential_owner(id), None);
        assert!(s.remove_credential(super::super::fixtures::DEMO_SLACK_BOB));
        assert!(!s.remove_credential(super::super::fixtures::DEMO_SLACK_BOB));
    }

    #[test]
    fn install_sessions_are_per_user_single_use_and_bounded() {
        let mut s = InstallSessions::default();
        let opts = serde_json::Map::new;
        s.start("acme", "k1", "slack", opts(), "n1".into());
        s.start("globex", "k1", "slack", opts(), "n2".into());
        assert_eq!(s.get("acme", "k1").unwrap().nonce, "n1");
        assert_eq!(s.by_nonce("n2").unwrap().user, "globex");
        // Consent uses the nonce up and names the credential.
        s.complete("n1", "c1");
        assert!(s.by_nonce("n1").is_none());
        assert_eq!(
            s.get("acme", "k1").unwrap().credential.as_deref(),
            Some("c1")
        );
        // Starting the same session again replaces it and its nonce.
        s.start("globex", "k1", "gmail", opts(), "n3".into());
        assert!(s.by_nonce("n2").is_none());
        assert_eq!(s.get("globex", "k1").unwrap().integration, "gmail");
        assert!(s.remove("globex", "k1") && !s.remove("globex", "k1"));
        assert!(s.by_nonce("n3").is_none());
        s.forget_user("acme");
        assert!(s.get("acme", "k1").is_none());
        // The oldest goes first past the cap.
        for i in 0..=MAX_INSTALL_SESSIONS {
            s.start("u", &i.to_string(), "slack", opts(), format!("n{i}"));
        }
        assert_eq!(s.by_key.len(), MAX_INSTALL_SESSIONS);
        assert!(s.get("u", "0").is_none() && s.by_nonce("n0").is_none());
        assert!(s.get("u", "1").is_some());
        assert_eq!(s.nonces.len(), MAX_INSTALL_SESSIONS);
    }

    #[test]
    fn the_request_log_drops_the_oldest_past_its_limits() {
        let mut log = RequestLog::new(5, 100);
        let big = RecordedRequest {
            method: "POST".into(),
            path: "/".into(),
            query: None,
            headers: vec![],
            body: vec![0; 30],
            body_len: 30,
            user: None,
            credential: None,
            claims: None,
            status: 200,
            host: "proxy".into(),
        };
        for _ in 0..5 {
            log.push(big.clone());
        }
        assert_eq!(log.entries.len(), 3, "byte budget: 3 x 30 <= 100");
        assert_eq!(log.body_bytes, 90);
        let small = RecordedRequest {
            body: vec![],
            body_len: 0,
            ..big
        };
        for _ in 0..10 {
            log.push(small.clone());
        }
        assert_eq!(log.entries.len(), 5, "entry cap");
        assert_eq!(log.body_bytes, 0);
    }

    #[test]
    fn recorded_requests_serialize_bodies_as_text_and_base64() {
        let r = RecordedRequest {
            method: "GET".into(),
            path: "/x".into(),
            query: Some("a=1".into()),
            headers: vec![("x-a".into(), "1".into())],
            body: b"hi\xff".to_vec(),
            body_len: 3,
            user: Some("acme".into()),
            credential: None,
            claims: None,
            status: 200,
            host: "proxy".into(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["body"], "hi\u{fffd}");
        assert_eq!(v["body_base64"], "aGn/");
        assert_eq!(v["headers"], serde_json::json!([["x-a", "1"]]));
        assert_eq!(v["body_len"], 3);
        assert_eq!(r.header("x-a"), Some("1"));
    }
}
