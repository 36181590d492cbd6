//! MCP sessions (contract §12): an `Mcp-Session-Id` belongs to the
//! principal that opened it, survives landing on another replica, idles
//! out, and is capped.
//!
//! The id carries the session's whole state and is signed: version, when
//! it opened, the negotiated protocol version and a random nonce, then an
//! HMAC-SHA-256 over those bytes *and the caller's user and principal*.
//! So any replica that holds the same key checks it without a shared store,
//! and an id checked against another principal fails like an unknown one
//! (404, one answer for both). The key is derived from the Paragon signing
//! key (mint mode: every replica has it, and whoever has it can mint any
//! Paragon token already); in passthrough mode it is random per process,
//! so sessions stay on the replica that opened them there.
//!
//! The id is not a credential: every request still carries a caller token
//! that is verified as on every route, and a session only remembers what
//! was negotiated. What each replica keeps is when a session was last
//! used (for `mcp.session_idle`, `mcp.max_sessions` and
//! `mcp.max_sessions_per_principal`, per replica like the rate limits of
//! §5c) and the ids that ended here (`DELETE`, idle), which this replica
//! answers 404 while it remembers them. A replica that has not seen a
//! validly signed id adopts it, up to [`MAX_LIFETIME`] after it opened.
//!
//! Live sessions are kept by their principal (the user and principal the
//! id is signed for), so one principal's sessions are counted and swept
//! without scanning the others': a principal at its cap gets 503 on
//! `initialize` while everyone else is served. Ended ids are remembered
//! until [`MAX_LIFETIME`] after they opened (no replica adopts them after
//! that, so they are dead anyway) and at most [`MAX_ENDED`] of them, the
//! nearest that deadline dropped first. Forgetting one early is safe: an
//! id grants nothing without a valid token of the principal it is signed
//! for, who could open a new session anyway, and it is adopted again only
//! within its lifetime, counted against the caps like any session.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;

use crate::auth::Identity;
use crate::config::Config;

/// The protocol versions `/mcp` speaks, newest first; `initialize` gets
/// the client's when it is one of these, else the newest (MCP's version
/// negotiation). Versions after 2025-11-25 drop the `initialize` handshake
/// and sessions, which contract §12 is built on.
const PROTOCOL_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// How long after it opened a replica that never saw a session still
/// adopts it.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The most ended ids a replica remembers (about 150 bytes each).
const MAX_ENDED: usize = 100_000;

const VERSION: u8 = 1;
/// version, opened (unix seconds, big-endian), protocol index, nonce.
const PAYLOAD: usize = 1 + 8 + 1 + 8;
const MAC: usize = 16;

/// What the sessions of one config obey: `mcp.session_idle`,
/// `mcp.max_sessions`, `mcp.max_sessions_per_principal`, and the Paragon
/// signing key the session key is derived from.
#[derive(Clone, Copy)]
pub(super) struct Rules<'c> {
    pub idle: Duration,
    pub max: usize,
    pub per_principal: usize,
    /// Ended ids remembered at most.
    pub max_ended: usize,
    pub signing_key: Option<&'c Arc<[u8]>>,
}

impl<'c> Rules<'c> {
    pub(super) fn of(cfg: &'c Config) -> Rules<'c> {
        Rules {
            idle: cfg.mcp.session_idle,
            max: cfg.mcp.max_sessions,
            per_principal: cfg.mcp.max_sessions_per_principal,
            max_ended: MAX_ENDED,
            signing_key: cfg.paragon.signing_key.as_ref().map(|k| &k.pem),
        }
    }
}

/// A checked session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Session {
    pub protocol: &'static str,
}

/// Why an id was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejected {
    /// Unknown, malformed, another principal's, ended or idle: 404.
    NotFound,
    /// This replica holds `mcp.max_sessions` live sessions: 503.
    Full,
    /// This replica holds `mcp.max_sessions_per_principal` live sessions
    /// of the caller's principal: 503 (other principals are served).
    PrincipalFull,
}

/// This replica's sessions (process-wide: they outlive reloads).
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Live sessions by principal, then by id: last use, and when they
    /// opened (unix seconds). An id is only ever checked against the
    /// principal it is signed for, so its principal is the caller's.
    live: HashMap<Owner, HashMap<Box<str>, (Instant, u64)>>,
    /// Live sessions in `live`, all principals together.
    count: usize,
    /// Ids that ended here.
    ended: Ended,
    /// The key and the signing key it was derived from.
    key: Option<(Option<Arc<[u8]>>, hmac::Key)>,
}

/// A session's principal: its user and principal (contract §12).
type Owner = (Arc<str>, Arc<str>);

fn owner(identity: &Identity) -> Owner {
    (identity.user.clone(), identity.principal.clone())
}

/// Ids that ended here, until no replica would adopt them any more, and
/// at most `Rules::max_ended`.
#[derive(Default)]
struct Ended {
    /// Each id, keyed as in `by_deadline`.
    ids: HashMap<Arc<str>, (u64, u64)>,
    /// The same by the last unix second they could be adopted, soonest
    /// first, then by when they ended here.
    by_deadline: BTreeSet<(u64, u64, Arc<str>)>,
    /// Ids remembered so far, to order those of one deadline.
    seq: u64,
}

impl Ended {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Remembers `id`, opened at `opened`, as ended, forgetting those past
    /// their deadline at `now` and then, over `max`, those nearest it.
    fn insert(&mut self, id: &str, opened: u64, now: u64, max: usize) {
        self.prune(now);
        let deadline = opened.saturating_add(MAX_LIFETIME.as_secs());
        if deadline < now || self.ids.contains_key(id) {
            return;
        }
        let id: Arc<str> = id.into();
        self.seq += 1;
        self.ids.insert(id.clone(), (deadline, self.seq));
        self.by_deadline.insert((deadline, self.seq, id));
        while self.ids.len() > max {
            self.pop_first();
        }
    }

    /// Forgets the ids no replica adopts any more.
    fn prune(&mut self, now: u64) {
        while self.by_deadline.first().is_some_and(|(d, _, _)| *d < now) {
            self.pop_first();
        }
    }

    fn pop_first(&mut self) {
        if let Some((_, _, id)) = self.by_deadline.pop_first() {
            self.ids.remove(&id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

impl Sessions {
    /// Opens a session for this caller with `protocol` (one of
    /// [`PROTOCOL_VERSIONS`]); its id.
    pub(super) fn open(
        &self,
        rules: Rules<'_>,
        identity: &Identity,
        protocol: &'static str,
    ) -> Result<String, Rejected> {
        let index = PROTOCOL_VERSIONS
            .iter()
            .position(|v| *v == protocol)
            .unwrap_or(0);
        let opened = crate::clock::unix_now();
        let mut payload = [0u8; PAYLOAD];
        payload[0] = VERSION;
        payload[1..9].copy_from_slice(&opened.to_be_bytes());
        payload[9] = index as u8;
        payload[10..].copy_from_slice(&crate::keygen::random_bytes::<8>());
        let mut inner = self.lock();
        let key = inner.key(rules);
        let mac = sign(key, &payload, identity);
        let mut raw = payload.to_vec();
        raw.extend_from_slice(&mac);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        inner.admit(rules, owner(identity), &id, opened)?;
        Ok(id)
    }

    /// The session `id` names, when it is this caller's and still open
    /// (adopted here if another replica opened it); marks it used.
    pub(super) fn resume(
        &self,
        rules: Rules<'_>,
        identity: &Identity,
        id: &str,
    ) -> Result<Session, Rejected> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id)
            .map_err(|_| Rejected::NotFound)?;
        if raw.len() != PAYLOAD + MAC || raw[0] != VERSION {
            return Err(Rejected::NotFound);
        }
        let (payload, mac) = raw.split_at(PAYLOAD);
        let mut inner = self.lock();
        // First: a new key ends every live session.
        inner.key(rules);
        let who = owner(identity);
        // A session live here for this caller had its MAC checked, with
        // the key still in use, when it was taken in (a new key ends every
        // live session, `Inner::key`): it is not computed again per call.
        let checked = inner.live.get(&who).is_some_and(|m| m.contains_key(id));
        if !checked && !constant_time_eq(&sign(inner.current_key(), payload, identity), mac) {
            return Err(Rejected::NotFound);
        }
        let protocol = *PROTOCOL_VERSIONS
            .get(usize::from(payload[9]))
            .ok_or(Rejected::NotFound)?;
        let mut opened_bytes = [0u8; 8];
        opened_bytes.copy_from_slice(&payload[1..9]);
        let opened = u64::from_be_bytes(opened_bytes);
        if inner.ended.contains(id) {
            return Err(Rejected::NotFound);
        }
        let idle = rules.idle;
        let now = crate::clock::unix_now();
        match inner.live.get_mut(&who).and_then(|mine| mine.get_mut(id)) {
            Some((last, _)) if last.elapsed() <= idle => *last = Instant::now(),
            Some(_) => {
                inner.end(rules, &who, id, now);
                return Err(Rejected::NotFound);
            }
            None => {
                let age = now.saturating_sub(opened);
                if age > MAX_LIFETIME.as_secs() {
                    return Err(Rejected::NotFound);
                }
                inner.admit(rules, who, id, opened)?;
            }
        }
        Ok(Session { protocol })
    }

    /// Ends a session of this caller (`DELETE /mcp`).
    pub(super) fn close(
        &self,
        rules: Rules<'_>,
        identity: &Identity,
        id: &str,
    ) -> Result<(), Rejected> {
        self.resume(rules, identity, id)?;
        self.lock()
            .end(rules, &owner(identity), id, crate::clock::unix_now());
        Ok(())
    }

    /// Sessions this replica holds (idle ones count until swept, which
    /// happens when a cap is reached).
    pub fn open_count(&self) -> usize {
        self.lock().count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// The session key for `cfg`'s signing key, derived once per key.
    fn key(&mut self, rules: Rules<'_>) -> &hmac::Key {
        let pem = rules.signing_key.cloned();
        let same = match (&self.key, &pem) {
            (Some((Some(a), _)), Some(b)) => Arc::ptr_eq(a, b),
            (Some((None, _)), None) => true,
            _ => false,
        };
        if !same {
            // Sessions taken in under the old key are not this key's: they
            // end (their ids no longer verify), and `resume`'s shortcut for
            // live sessions stays sound.
            if self.key.is_some() {
                self.live.clear();
                self.count = 0;
            }
            let secret = match &pem {
                Some(p) => {
                    let derive = hmac::Key::new(hmac::HMAC_SHA256, b"credgate mcp session key v1");
                    hmac::sign(&derive, p).as_ref().to_vec()
                }
                None => crate::keygen::random_bytes::<32>().to_vec(),
            };
            self.key = Some((pem, hmac::Key::new(hmac::HMAC_SHA256, &secret)));
        }
        self.current_key()
    }

    /// The key `key` last set (it has always run first).
    fn current_key(&self) -> &hmac::Key {
        self.key
            .as_ref()
            .map(|(_, k)| k)
            .expect("set by Inner::key")
    }

    /// Takes a live session of `who` in, within
    /// `mcp.max_sessions_per_principal` and `mcp.max_sessions` (idle ones
    /// are swept first when full: the principal's own for its cap, all for
    /// the replica's).
    fn admit(
        &mut self,
        rules: Rules<'_>,
        who: Owner,
        id: &str,
        opened: u64,
    ) -> Result<(), Rejected> {
        let now = crate::clock::unix_now();
        let held = |inner: &Inner| inner.live.get(&who).map_or(0, HashMap::len);
        if held(self) >= rules.per_principal {
            self.sweep_owner(rules, &who, now);
            if held(self) >= rules.per_principal {
                return Err(Rejected::PrincipalFull);
            }
        }
        if self.count >= rules.max {
            self.sweep(rules, now);
            if self.count >= rules.max {
                return Err(Rejected::Full);
            }
        }
        self.live
            .entry(who)
            .or_default()
            .insert(id.into(), (Instant::now(), opened));
        self.count += 1;
        Ok(())
    }

    /// Ends `who`'s session `id`, if live, and remembers it as ended.
    fn end(&mut self, rules: Rules<'_>, who: &Owner, id: &str, now: u64) {
        let Some(mine) = self.live.get_mut(who) else {
            return;
        };
        let Some((_, opened)) = mine.remove(id) else {
            return;
        };
        if mine.is_empty() {
            self.live.remove(who);
        }
        self.count -= 1;
        self.ended.insert(id, opened, now, rules.max_ended);
    }

    /// Ends `who`'s idle sessions.
    fn sweep_owner(&mut self, rules: Rules<'_>, who: &Owner, now: u64) {
        let idle: Vec<Box<str>> = self
            .live
            .get(who)
            .into_iter()
            .flatten()
            .filter(|(_, (last, _))| last.elapsed() > rules.idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.end(rules, who, &id, now);
        }
    }

    /// Ends every idle session, and forgets ended ids past their deadline.
    fn sweep(&mut self, rules: Rules<'_>, now: u64) {
        let owners: Vec<Owner> = self.live.keys().cloned().collect();
        for who in owners {
            self.sweep_owner(rules, &who, now);
        }
        self.ended.prune(now);
    }
}

/// The MAC of a session id for this caller: over the payload, the user and
/// the principal (length-prefixed, so no two pairs share an input).
fn sign(key: &hmac::Key, payload: &[u8], identity: &Identity) -> [u8; MAC] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(payload);
    for part in [&*identity.user, &*identity.principal] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let tag = ctx.sign();
    let mut out = [0u8; MAC];
    out.copy_from_slice(&tag.as_ref()[..MAC]);
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The protocol version `initialize` answers: the client's when spoken
/// here, else the newest.
pub(super) fn negotiate(requested: Option<&str>) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(PROTOCOL_VERSIONS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str, principal: &str) -> Identity {
        Identity::test_member(user, principal)
    }

    fn rules(key: &Arc<[u8]>) -> Rules<'_> {
        Rules {
            idle: Duration::from_secs(60),
            max: 3,
            per_principal: 3,
            max_ended: 100,
            signing_key: Some(key),
        }
    }

    #[test]
    fn an_id_opens_only_for_the_principal_it_was_made_for() {
        let key: Arc<[u8]> = Arc::from(&b"paragon signing key"[..]);
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let id = s.open(rules(&key), &alice, "2025-06-18").unwrap();
        assert_eq!(
            s.resume(rules(&key), &alice, &id),
            Ok(Session {
                protocol: "2025-06-18"
            })
        );
        for other in [
            who("acme", "bob"),
            who("other-org", "alice"),
            who("acmea", "lice"),
        ] {
            assert_eq!(s.resume(rules(&key), &other, &id), Err(Rejected::NotFound));
        }
        // One flipped bit anywhere, or another length: unknown.
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&id)
            .unwrap();
        for at in 0..raw.len() {
            let mut bad = raw.clone();
            bad[at] ^= 1;
            let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bad);
            assert_eq!(
                s.resume(rules(&key), &alice, &bad),
                Err(Rejected::NotFound),
                "byte {at}"
            );
        }
        assert_eq!(
            s.resume(rules(&key), &alice, &id[1..]),
            Err(Rejected::NotFound)
        );
        assert_eq!(
            s.resume(rules(&key), &alice, "not base64!"),
            Err(Rejected::NotFound)
        );
    }

    #[test]
    fn another_replica_with_the_same_key_adopts_a_session_and_another_key_does_not() {
        let key: Arc<[u8]> = Arc::from(&b"paragon signing key"[..]);
        let other_key: Arc<[u8]> = Arc::from(&b"another project's key"[..]);
        let alice = who("acme", "alice");
        let id = Sessions::default()
            .open(rules(&key), &alice, "2025-11-25")
            .unwrap();
        let replica = Sessions::default();
        assert!(replica.resume(rules(&key), &alice, &id).is_ok());
        let stranger = Sessions::default();
        assert_eq!(
            stranger.resume(rules(&other_key), &alice, &id),
            Err(Rejected::NotFound)
        );
    }

    /// A live session is resumed without its MAC computed again, so a new
    /// signing key must end it: its id does not verify under the new key.
    #[test]
    fn a_new_signing_key_ends_the_live_sessions() {
        let key: Arc<[u8]> = Arc::from(&b"paragon signing key"[..]);
        let rotated: Arc<[u8]> = Arc::from(&b"the next signing key"[..]);
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let id = s.open(rules(&key), &alice, "2025-11-25").unwrap();
        assert!(s.resume(rules(&key), &alice, &id).is_ok());
        assert_eq!(
            s.resume(rules(&rotated), &alice, &id),
            Err(Rejected::NotFound)
        );
        assert_eq!(s.lock().count, 0, "the old key's sessions no longer count");
        // Another caller's id is never its own, live or not.
        assert_eq!(
            s.resume(rules(&key), &who("acme", "bob"), &id),
            Err(Rejected::NotFound)
        );
    }

    #[test]
    fn a_closed_or_idle_session_stays_ended_here_and_the_cap_counts_live_ones() {
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let ids: Vec<String> = (0..3)
            .map(|_| s.open(rules(&key), &alice, "2025-11-25").unwrap())
            .collect();
        assert_eq!(
            s.open(rules(&key), &who("acme", "bob"), "2025-11-25"),
            Err(Rejected::Full)
        );
        s.close(rules(&key), &alice, &ids[0]).unwrap();
        assert_eq!(
            s.resume(rules(&key), &alice, &ids[0]),
            Err(Rejected::NotFound)
        );
        assert!(s.open(rules(&key), &alice, "2025-11-25").is_ok());
        // Idle past the limit: ended, and not adopted again.
        let quick = Rules {
            idle: Duration::ZERO,
            ..rules(&key)
        };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.resume(quick, &alice, &ids[1]), Err(Rejected::NotFound));
        assert_eq!(
            s.resume(rules(&key), &alice, &ids[1]),
            Err(Rejected::NotFound)
        );
        assert!(s.resume(rules(&key), &alice, &ids[2]).is_ok());
    }

    /// contract §12: one principal at its cap gets `PrincipalFull`; other
    /// principals (of the same user, another user, an admin) are served;
    /// ending one of its sessions, or one idling out, frees a slot.
    #[test]
    fn a_principal_is_capped_and_others_are_served() {
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let capped = Rules {
            max: 10,
            per_principal: 2,
            ..rules(&key)
        };
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let ids: Vec<String> = (0..2)
            .map(|_| s.open(capped, &alice, "2025-11-25").unwrap())
            .collect();
        assert_eq!(
            s.open(capped, &alice, "2025-11-25"),
            Err(Rejected::PrincipalFull)
        );
        // Still refused: the same principal with another token is the same
        // principal.
        assert_eq!(
            s.open(capped, &who("acme", "alice"), "2025-11-25"),
            Err(Rejected::PrincipalFull)
        );
        for other in [
            who("acme", "bob"),
            who("other-org", "alice"),
            who("acme", "admin"),
        ] {
            s.open(capped, &other, "2025-11-25").unwrap();
        }
        assert_eq!(s.open_count(), 5);
        // Her open sessions go on.
        assert!(s.resume(capped, &alice, &ids[1]).is_ok());
        s.close(capped, &alice, &ids[0]).unwrap();
        assert_eq!(s.open_count(), 4);
        let third = s.open(capped, &alice, "2025-11-25").unwrap();
        assert_eq!(
            s.open(capped, &alice, "2025-11-25"),
            Err(Rejected::PrincipalFull)
        );
        // Idle ones of hers are swept when she is at her cap.
        std::thread::sleep(Duration::from_millis(5));
        let quick = Rules {
            idle: Duration::from_millis(1),
            ..capped
        };
        s.open(quick, &alice, "2025-11-25").unwrap();
        assert_eq!(s.resume(capped, &alice, &third), Err(Rejected::NotFound));
        // The replica's cap still holds over every principal.
        let full = Rules { max: 4, ..capped };
        assert_eq!(
            s.open(full, &who("acme", "carol"), "2025-11-25"),
            Err(Rejected::Full)
        );
    }

    /// Ended ids are remembered until no replica would adopt them, and at
    /// most `max_ended`: a loop of `initialize` and `DELETE` cannot grow
    /// them without bound, and the nearest their deadline go first.
    #[test]
    fn ended_ids_are_bounded_and_forgotten_when_dead() {
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let small = Rules {
            max_ended: 10,
            ..rules(&key)
        };
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let mut ids = Vec::new();
        for _ in 0..50 {
            let id = s.open(small, &alice, "2025-11-25").unwrap();
            s.close(small, &alice, &id).unwrap();
            ids.push(id);
        }
        assert_eq!(s.lock().ended.len(), 10);
        assert_eq!(s.open_count(), 0);
        // The latest are still 404 here.
        for id in &ids[40..] {
            assert_eq!(s.resume(small, &alice, id), Err(Rejected::NotFound));
        }
        // By deadline: an id opened nearly a lifetime ago goes first when
        // full, and every one goes once past its deadline.
        let mut ended = Ended::default();
        let now = 1_000_000_000;
        let life = MAX_LIFETIME.as_secs();
        ended.insert("old", now - life, now, 2);
        ended.insert("new", now, now, 2);
        ended.insert("newer", now + 1, now, 2);
        assert!(!ended.contains("old") && ended.contains("new") && ended.contains("newer"));
        // Opened more than a lifetime ago: dead already, not kept.
        ended.insert("dead", now - life - 1, now, 2);
        assert!(!ended.contains("dead"));
        ended.prune(now + life);
        assert!(ended.contains("new") && ended.contains("newer"));
        ended.prune(now + life + 1);
        assert!(!ended.contains("new") && ended.contains("newer"));
        ended.insert("later", now + life, now + life + 2, 2);
        assert_eq!(ended.len(), 1, "pruned on insert");
        assert!(ended.contains("later"));
    }

    /// A dropped ended id is adopted again only within its lifetime, for
    /// its own principal, and counts against the caps.
    #[test]
    fn a_forgotten_ended_id_is_only_its_principals_again() {
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let tiny = Rules {
            max_ended: 1,
            per_principal: 1,
            ..rules(&key)
        };
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let first = s.open(tiny, &alice, "2025-11-25").unwrap();
        s.close(tiny, &alice, &first).unwrap();
        let second = s.open(tiny, &alice, "2025-11-25").unwrap();
        s.close(tiny, &alice, &second).unwrap();
        // `first` was pushed out of the ended set.
        assert_eq!(
            s.resume(tiny, &who("acme", "bob"), &first),
            Err(Rejected::NotFound)
        );
        assert!(s.resume(tiny, &alice, &first).is_ok());
        assert_eq!(
            s.open(tiny, &alice, "2025-11-25"),
            Err(Rejected::PrincipalFull)
        );
    }

    #[test]
    fn versions_are_negotiated_newest_first() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2026-07-28")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }
}
