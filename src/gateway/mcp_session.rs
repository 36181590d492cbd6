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
//! used (for `mcp.session_idle` and `mcp.max_sessions`, per replica like
//! the rate limits of §5c) and the ids that ended here (`DELETE`, idle),
//! which this replica answers 404 from then on. A replica that has not
//! seen a validly signed id adopts it, up to [`MAX_LIFETIME`] after it
//! opened.

use std::collections::HashMap;
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

const VERSION: u8 = 1;
/// version, opened (unix seconds, big-endian), protocol index, nonce.
const PAYLOAD: usize = 1 + 8 + 1 + 8;
const MAC: usize = 16;

/// What the sessions of one config obey: `mcp.session_idle`,
/// `mcp.max_sessions`, and the Paragon signing key the session key is
/// derived from.
#[derive(Clone, Copy)]
pub(super) struct Rules<'c> {
    pub idle: Duration,
    pub max: usize,
    pub signing_key: Option<&'c Arc<[u8]>>,
}

impl<'c> Rules<'c> {
    pub(super) fn of(cfg: &'c Config) -> Rules<'c> {
        Rules {
            idle: cfg.mcp.session_idle,
            max: cfg.mcp.max_sessions,
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
}

/// This replica's sessions (process-wide: they outlive reloads).
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Live sessions by id: last use, and when they opened (unix seconds).
    live: HashMap<Box<str>, (Instant, u64)>,
    /// Ids that ended here, with when they opened.
    ended: HashMap<Box<str>, u64>,
    /// The key and the signing key it was derived from.
    key: Option<(Option<Arc<[u8]>>, hmac::Key)>,
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
        let mac = sign(&key, &payload, identity);
        let mut raw = payload.to_vec();
        raw.extend_from_slice(&mac);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        inner.admit(rules, &id, opened)?;
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
        let key = inner.key(rules);
        let expected = sign(&key, payload, identity);
        if !constant_time_eq(&expected, mac) {
            return Err(Rejected::NotFound);
        }
        let protocol = *PROTOCOL_VERSIONS
            .get(usize::from(payload[9]))
            .ok_or(Rejected::NotFound)?;
        let mut opened_bytes = [0u8; 8];
        opened_bytes.copy_from_slice(&payload[1..9]);
        let opened = u64::from_be_bytes(opened_bytes);
        if inner.ended.contains_key(id) {
            return Err(Rejected::NotFound);
        }
        let idle = rules.idle;
        match inner.live.get_mut(id) {
            Some((last, _)) if last.elapsed() <= idle => *last = Instant::now(),
            Some(_) => {
                inner.end(id, opened);
                return Err(Rejected::NotFound);
            }
            None => {
                let age = crate::clock::unix_now().saturating_sub(opened);
                if age > MAX_LIFETIME.as_secs() {
                    return Err(Rejected::NotFound);
                }
                inner.admit(rules, id, opened)?;
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
        let mut inner = self.lock();
        if let Some((_, opened)) = inner.live.get(id).copied() {
            inner.end(id, opened);
        }
        Ok(())
    }

    /// Sessions this replica holds (idle ones count until swept, which
    /// happens when the cap is reached).
    pub fn open_count(&self) -> usize {
        self.lock().live.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// The session key for `cfg`'s signing key, derived once per key.
    fn key(&mut self, rules: Rules<'_>) -> hmac::Key {
        let pem = rules.signing_key.cloned();
        let same = match (&self.key, &pem) {
            (Some((Some(a), _)), Some(b)) => Arc::ptr_eq(a, b),
            (Some((None, _)), None) => true,
            _ => false,
        };
        if !same {
            let secret = match &pem {
                Some(p) => {
                    let derive = hmac::Key::new(hmac::HMAC_SHA256, b"credgate mcp session key v1");
                    hmac::sign(&derive, p).as_ref().to_vec()
                }
                None => crate::keygen::random_bytes::<32>().to_vec(),
            };
            self.key = Some((pem, hmac::Key::new(hmac::HMAC_SHA256, &secret)));
        }
        self.key
            .as_ref()
            .map(|(_, k)| k.clone())
            .expect("set above")
    }

    /// Takes a live session in, within `mcp.max_sessions` (idle ones are
    /// swept first when full).
    fn admit(&mut self, rules: Rules<'_>, id: &str, opened: u64) -> Result<(), Rejected> {
        if self.live.len() >= rules.max {
            self.sweep(rules.idle);
            if self.live.len() >= rules.max {
                return Err(Rejected::Full);
            }
        }
        self.live.insert(id.into(), (Instant::now(), opened));
        Ok(())
    }

    fn end(&mut self, id: &str, opened: u64) {
        self.live.remove(id);
        self.ended.insert(id.into(), opened);
    }

    /// Ends idle sessions and forgets ended ids past [`MAX_LIFETIME`]
    /// (no replica adopts those any more).
    fn sweep(&mut self, idle: Duration) {
        let idle_ids: Vec<(Box<str>, u64)> = self
            .live
            .iter()
            .filter(|(_, (last, _))| last.elapsed() > idle)
            .map(|(id, (_, opened))| (id.clone(), *opened))
            .collect();
        for (id, opened) in idle_ids {
            self.end(&id, opened);
        }
        let now = crate::clock::unix_now();
        self.ended
            .retain(|_, opened| now.saturating_sub(*opened) <= MAX_LIFETIME.as_secs());
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
    use crate::auth::Role;

    fn who(user: &str, principal: &str) -> Identity {
        Identity::new(
            user.into(),
            principal.into(),
            Role::Member {
                claimed: Box::default(),
            },
            u64::MAX,
            None,
        )
    }

    fn rules(key: &Arc<[u8]>) -> Rules<'_> {
        Rules {
            idle: Duration::from_secs(60),
            max: 3,
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

    #[test]
    fn a_closed_or_idle_session_stays_ended_here_and_the_cap_counts_live_ones() {
        let key: Arc<[u8]> = Arc::from(&b"k"[..]);
        let s = Sessions::default();
        let alice = who("acme", "alice");
        let ids: Vec<String> = (0..3)
            .map(|_| s.open(rules(&key), &alice, "2025-11-25").unwrap())
            .collect();
        assert_eq!(
            s.open(rules(&key), &alice, "2025-11-25"),
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

    #[test]
    fn versions_are_negotiated_newest_first() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2026-07-28")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }
}
