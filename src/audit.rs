//! The audit trail (contract §1 step 9, §10 `[audit]`): one JSON line per
//! request, written to its own sink (a file, or standard output), so no
//! `RUST_LOG` filter can switch it off; only `[audit] enabled = false`
//! does. Each record is one whole line; lines are written in batches off
//! the request path ([`Sink`]): within 20 ms of the response, in order,
//! and all of them at reload and shutdown.
//!
//! Rotation is the platform's: move the file away and send SIGHUP (a
//! reload opens the file again, by name), or let the platform collect
//! standard output. The line has the shape of credgate's JSON logs
//! (`timestamp`, `level`, `target` = `credgate::audit`, then the fields),
//! so one collector reads both.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::AuditConfig;

/// The `target` of audit lines.
pub const AUDIT_TARGET: &str = "credgate::audit";

/// One request's record. Strings a caller controls are written by
/// serde_json, which escapes every control character.
#[derive(Debug, Default, Serialize)]
pub struct Record<'a> {
    pub request_id: &'a str,
    /// The id of this decision (contract §5a): the request id.
    pub decision_id: &'a str,
    /// The caller's own `X-Request-Id`, when it sent a safe one and is not
    /// a trusted proxy (then `request_id` is credgate's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<&'a str>,
    pub principal: &'a str,
    pub user: &'a str,
    /// The agent acting for the principal (the caller token's `act.sub`,
    /// RFC 8693 delegation; contract §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<&'a str>,
    /// A refused token's claimed principal, not verified: who the caller
    /// says it is, for "who tried"; never a basis for anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_principal: Option<&'a str>,
    pub product: &'a str,
    pub integration: &'a str,
    /// The credential the caller named (`X-Paragon-Credential` or the
    /// body's `credentialId`), as named.
    pub requested: &'a str,
    /// The credential routed (empty when none was).
    pub credential: &'a str,
    /// A member's `X-Paragon-*` fields credgate removed, comma-separated.
    pub removed_headers: &'a str,
    /// `allowed`, `refused`, `failed`, or `shadow_refused` (refused by
    /// policy, forwarded in shadow mode).
    pub decision: &'a str,
    /// What decided (contract §5a): a permit (`admin`, `owner_label`,
    /// `acl`, ...), a refusal (`no_grant`, `not_in_list`, ...), or the
    /// error code of any other error.
    pub reason: &'a str,
    /// The error code of a refusal or failure, or the one a shadowed
    /// refusal would have had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    /// `reason = "acl"`: the grant's number in the ACL file (counted from 1,
    /// as a person counts) and its principal (the caller's, or `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_principal: Option<&'a str>,
    /// `reason = "passthrough_claim"`: the scope of the permissions claim
    /// that granted the credential. `reason = "rate_limited"`: which limit
    /// refused (contract §5c): `principal`, `user`, or the limit rule's
    /// name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    /// `reason = "rule"` (and a 429 of a limit rule): the rule's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// Rules in shadow mode that would have taken effect, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_rules: Option<&'a str>,
    /// Why a token was refused (401 only): `expired`, `bad_signature`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'a str>,
    /// An MCP tool call: the tool an agent called (contract §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<&'a str>,
    /// `mcp` for a tool call (whose `product` is what reached Paragon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'a str>,
    /// Whether the request reached Paragon.
    pub forwarded: bool,
    /// `client_closed`: the client went away before its answer (then
    /// `status` is 499); absent when the answer was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'a str>,
    pub status: u16,
    pub latency_ms: f64,
    /// The request's trace (`[telemetry]` on), as 32 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
}

enum Out {
    Stdout,
    File(File),
}

/// Where records go.
pub struct AuditLog {
    sink: Option<Arc<Sink>>,
    path: Option<PathBuf>,
}

/// Records are batched: a request appends its line to `pending` and goes
/// on; the batch is written in one `write` when it reaches [`FLUSH_AT`]
/// bytes (by the request that filled it), every [`FLUSH_EVERY`] (a
/// background task), on reload (the old log is dropped, which writes what
/// it holds) and at shutdown (`app::Running::wait`). So a record is in its
/// file within [`FLUSH_EVERY`] of its response, records keep their order,
/// and a crash that kills the process outright loses at most that window.
struct Sink {
    pending: Mutex<Pending>,
    /// `credgate_audit_write_errors_total`: records in batches that failed.
    errors: prometheus_client::metrics::counter::Counter,
}

struct Pending {
    out: Out,
    buf: Vec<u8>,
    /// Without a runtime to run the flusher (a log opened outside one),
    /// every record is written at once.
    batched: bool,
}

/// A batch this large is written at once.
const FLUSH_AT: usize = 32 * 1024;
/// The longest a record waits to be written.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.sink.is_some())
            .field("path", &self.path)
            .finish()
    }
}

/// Opens `path` for appending (created 0640 if missing).
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl AuditLog {
    /// Opens the sink `cfg` names; records that cannot be written are
    /// counted in `errors`.
    pub fn open(
        cfg: &AuditConfig,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> std::io::Result<AuditLog> {
        let out = match (cfg.enabled, &cfg.file) {
            (false, _) => None,
            (true, None) => Some(Out::Stdout),
            (true, Some(p)) => Some(Out::File(open_append(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("audit.file {}: {e}", p.display()))
            })?)),
        };
        let runtime = tokio::runtime::Handle::try_current().ok();
        let sink = out.map(|out| {
            Arc::new(Sink {
                pending: Mutex::new(Pending {
                    out,
                    buf: Vec::with_capacity(FLUSH_AT + 4096),
                    batched: runtime.is_some(),
                }),
                errors,
            })
        });
        if let (Some(sink), Some(runtime)) = (&sink, runtime) {
            let weak = Arc::downgrade(sink);
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(FLUSH_EVERY).await;
                    let Some(sink) = weak.upgrade() else { return };
                    sink.flush();
                }
            });
        }
        Ok(AuditLog {
            sink,
            path: cfg.file.clone(),
        })
    }

    /// A log that writes nothing.
    pub fn disabled() -> AuditLog {
        AuditLog {
            sink: None,
            path: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Queues one record as one line (written with its batch; a failure
    /// is counted and logged there, and the request is answered all the
    /// same).
    pub fn write(&self, record: &Record<'_>) {
        let Some(sink) = &self.sink else {
            return;
        };
        // By hand: serde's `flatten` of the record under the head costs
        // several times the record, and its string escaping goes byte by
        // byte where almost every field needs none (`write_fields`).
        let mut line = Vec::with_capacity(640);
        line.extend_from_slice(b"{\"timestamp\":\"");
        crate::clock::write_iso(crate::clock::now_ms(), &mut line);
        line.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"");
        line.extend_from_slice(AUDIT_TARGET.as_bytes());
        line.push(b'"');
        record.write_fields(&mut line);
        line.push(b'}');
        let line = escape_line_breakers(line);
        let mut pending = sink.lock();
        pending.buf.extend_from_slice(&line);
        pending.buf.push(b'\n');
        if !pending.batched || pending.buf.len() >= FLUSH_AT {
            sink.write_out(&mut pending);
        }
    }

    /// Writes every queued record now.
    pub fn flush(&self) {
        if let Some(sink) = &self.sink {
            sink.flush();
        }
    }
}

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) {
        let mut pending = self.lock();
        if !pending.buf.is_empty() {
            self.write_out(&mut pending);
        }
    }

    /// Writes the batch whole, under the lock, so batches keep their order.
    fn write_out(&self, pending: &mut Pending) {
        let Pending { out, buf, .. } = pending;
        let written = match out {
            Out::Stdout => {
                let mut s = std::io::stdout().lock();
                s.write_all(buf).and_then(|()| s.flush())
            }
            Out::File(f) => f.write_all(buf),
        };
        if let Err(e) = written {
            let lost = memchr::memchr_iter(b'\n', buf).count();
            self.errors.inc_by(lost as u64);
            tracing::error!(error = %e, records = lost, "audit records could not be written");
        }
        buf.clear();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Record<'_> {
    /// The record's members, each as `,"name":value`, in the order and
    /// with the omissions of its `Serialize` form (a test holds them
    /// equal).
    fn write_fields(&self, out: &mut Vec<u8>) {
        let mut put = |name: &str, value: Value<'_>| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Value::Str(v) => json_str(out, v),
                Value::Num(n) => {
                    // Digits into a stack buffer: no `String` per number.
                    let mut digits = [0u8; 20];
                    let mut i = digits.len();
                    let mut n = n;
                    loop {
                        i -= 1;
                        digits[i] = b'0' + (n % 10) as u8;
                        n /= 10;
                        if n == 0 {
                            break;
                        }
                    }
                    out.extend_from_slice(&digits[i..]);
                }
                Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                Value::Float(f) => {
                    // serde_json's own float form (finite; `null` otherwise).
                    let _ = serde_json::to_writer(&mut *out, &f);
                }
            }
        };
        use Value::{Num, Str};
        put("request_id", Str(self.request_id));
        put("decision_id", Str(self.decision_id));
        if let Some(v) = self.client_request_id {
            put("client_request_id", Str(v));
        }
        put("principal", Str(self.principal));
        put("user", Str(self.user));
        if let Some(v) = self.actor {
            put("actor", Str(v));
        }
        if let Some(v) = self.claimed_principal {
            put("claimed_principal", Str(v));
        }
        put("product", Str(self.product));
        put("integration", Str(self.integration));
        put("requested", Str(self.requested));
        put("credential", Str(self.credential));
        put("removed_headers", Str(self.removed_headers));
        put("decision", Str(self.decision));
        put("reason", Str(self.reason));
        if let Some(v) = self.code {
            put("code", Str(v));
        }
        if let Some(v) = self.grant {
            put("grant", Num(v as u64));
        }
        for (name, v) in [
            ("grant_principal", self.grant_principal),
            ("scope", self.scope),
            ("rule", self.rule),
            ("shadow_rules", self.shadow_rules),
            ("cause", self.cause),
            ("tool", self.tool),
            ("via", self.via),
        ] {
            if let Some(v) = v {
                put(name, Str(v));
            }
        }
        put("forwarded", Value::Bool(self.forwarded));
        if let Some(v) = self.outcome {
            put("outcome", Str(v));
        }
        put("status", Num(u64::from(self.status)));
        put("latency_ms", Value::Float(self.latency_ms));
        if let Some(v) = self.trace_id {
            put("trace_id", Str(v));
        }
    }
}

enum Value<'a> {
    Str(&'a str),
    Num(u64),
    Bool(bool),
    Float(f64),
}

/// A JSON string: copied as is when nothing in it needs escaping (no `"`,
/// `\` or control character below U+0020), else written by serde_json.
/// The check has no early exit, so it runs over whole vectors at a time.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let needs = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// JSON lets C1 controls (NEL among them) and U+2028/2029 stand raw in a
/// string, and some log readers break lines at them: written as `\uXXXX`
/// escapes instead, the line stays one line and means the same.
fn escape_line_breakers(json: Vec<u8>) -> Vec<u8> {
    // Each of them is encoded with a lead byte 0xC2 (U+0080..U+009F) or
    // 0xE2 (U+2028/2029): a line with neither needs no look at its chars.
    if memchr::memchr2(0xC2, 0xE2, &json).is_none() {
        return json;
    }
    let risky = |c: char| ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{2028}' || c == '\u{2029}';
    let Ok(text) = std::str::from_utf8(&json) else {
        return json;
    };
    if !text.chars().any(risky) {
        return json;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if risky(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod fields_tests {
    use super::*;

    /// The hand-written members are the `Serialize` form byte for byte,
    /// for plain values and for every character JSON escapes.
    #[test]
    fn written_fields_are_the_serialized_record() {
        let hostile = "a\"b\\c\u{0}\u{1f}\n\t\u{7f}é\u{85}\u{2028}€";
        for (i, text) in ["", "plain", hostile, "\"", "\\", "x\u{1}y"]
            .iter()
            .enumerate()
        {
            let mut r = Record {
                request_id: text,
                decision_id: "d",
                principal: text,
                user: "u",
                product: "proxy",
                integration: text,
                requested: "",
                credential: text,
                removed_headers: "x-paragon-foo",
                decision: "allowed",
                reason: "acl",
                status: 200 + i as u16,
                latency_ms: 0.25 * i as f64,
                ..Record::default()
            };
            if i % 2 == 1 {
                r.client_request_id = Some(text);
                r.claimed_principal = Some(text);
                r.actor = Some(text);
                r.code = Some("no_grant");
                r.grant = Some(i * 7);
                r.grant_principal = Some(text);
                r.scope = Some(text);
                r.rule = Some(text);
                r.shadow_rules = Some("a,b");
                r.cause = Some("expired");
                r.tool = Some(text);
                r.via = Some("mcp");
                r.forwarded = true;
                r.outcome = Some("client_closed");
            }
            // Byte for byte what serde_json writes for the record.
            let mut hand = Vec::new();
            r.write_fields(&mut hand);
            let serde = serde_json::to_string(&r).unwrap();
            let inner = &serde[1..serde.len() - 1];
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                format!(",{inner}"),
                "{text:?}"
            );
        }
        // Numbers at their edges: no digit lost or added.
        for (status, grant) in [(0u16, 0usize), (9, 10), (10, 99), (u16::MAX, usize::MAX)] {
            let r = Record {
                status,
                grant: Some(grant),
                ..Record::default()
            };
            let mut hand = Vec::new();
            r.write_fields(&mut hand);
            let serde = serde_json::to_string(&r).unwrap();
            assert_eq!(
                String::from_utf8(hand).unwrap(),
                format!(",{}", &serde[1..serde.len() - 1])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_appended_one_json_line_each() {
        let dir = std::env::temp_dir().join(format!("credgate-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(
            &AuditConfig {
                enabled: true,
                file: Some(path.clone()),
            },
            Default::default(),
        )
        .unwrap();
        let rec = Record {
            request_id: "r1",
            principal: "mallory\n{\"forged\":1}",
            decision: "refused",
            cause: Some("expired"),
            tool: None,
            status: 401,
            ..Record::default()
        };
        log.write(&rec);
        log.write(&Record {
            request_id: "r2",
            ..Record::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["target"], AUDIT_TARGET);
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["request_id"], "r1");
        let ts = lines[0]["timestamp"].as_str().unwrap();
        assert_eq!(
            (ts.len(), &ts[4..5], &ts[10..11], &ts[23..]),
            (24, "-", "T", "Z"),
            "{ts}"
        );
        assert!(text.starts_with("{\"timestamp\":\""), "{text}");
        assert_eq!(lines[0]["principal"], "mallory\n{\"forged\":1}");
        log.write(&Record {
            request_id: "r3",
            principal: "nel\u{85}line\u{2028}sep",
            ..Record::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(
            !last.contains('\u{85}') && !last.contains('\u{2028}'),
            "{last}"
        );
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(v["principal"], "nel\u{85}line\u{2028}sep");
        assert_eq!(lines[0]["cause"], "expired");
        assert!(lines[1].get("cause").is_none());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(!AuditLog::open(
            &AuditConfig {
                enabled: false,
                file: Some(path.clone())
            },
            Default::default()
        )
        .unwrap()
        .is_enabled());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn open_file(path: &Path) -> (AuditLog, prometheus_client::metrics::counter::Counter) {
        let errors = prometheus_client::metrics::counter::Counter::default();
        let log = AuditLog::open(
            &AuditConfig {
                enabled: true,
                file: Some(path.to_path_buf()),
            },
            errors.clone(),
        )
        .unwrap();
        (log, errors)
    }

    fn ids(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["request_id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn records_are_batched_off_the_request_path_and_none_is_lost() {
        let dir = std::env::temp_dir().join(format!("credgate-audit-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let (log, errors) = open_file(&path);
        let write = |id: &str| {
            log.write(&Record {
                request_id: id,
                ..Record::default()
            })
        };
        // Queued, not written: nothing has yielded to the flusher yet.
        write("a0");
        assert_eq!(ids(&path), Vec::<String>::new());
        // Written by the flusher within FLUSH_EVERY.
        tokio::time::sleep(FLUSH_EVERY * 3).await;
        assert_eq!(ids(&path), ["a0"]);
        // A full batch is written by the request that fills it.
        let many: Vec<String> = (0..200).map(|i| format!("b{i}")).collect();
        for id in &many {
            write(id);
        }
        let now = ids(&path);
        assert!(now.len() > 1 && now.len() < 201, "{}", now.len());
        // Dropping the log (a reload, the end) writes the rest, in order.
        write("c0");
        drop(log);
        let mut want = vec!["a0".to_string()];
        want.extend(many);
        want.push("c0".into());
        assert_eq!(ids(&path), want);
        assert_eq!(errors.get(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn records_that_cannot_be_written_are_counted() {
        // Every write to /dev/full fails with ENOSPC.
        let (log, errors) = open_file(Path::new("/dev/full"));
        for id in ["x1", "x2", "x3"] {
            log.write(&Record {
                request_id: id,
                ..Record::default()
            });
        }
        log.flush();
        assert_eq!(errors.get(), 3);
    }
}
