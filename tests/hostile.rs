//! The hostile-input suite (issue 7): attacks that broke other proxies
//! (request smuggling, header and path confusion, parser differentials,
//! slowloris, cache confusion, log forging), run over real sockets against
//! the real gateway in front of the in-process Paragon emulator.
//!
//! Every test asserts three things: the status credgate (or hyper) answers,
//! that nothing unintended reached Paragon (the emulator's request log,
//! leaving out credgate's own `GET /sdk/me` loads), and that the gateway
//! keeps serving afterwards. Waits are only upper bounds that turn a hang
//! into a failure; no test asserts how fast anything is.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use credgate::app::Running;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use credgate::emulator::{
    self, Behaviour, EmulatorConfig, EmulatorHandle, Fixtures, RecordedRequest,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a raw exchange may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The emulator (demo fixtures: user `acme`, members `alice` and `bob`) and
/// a gateway in front of it.
struct Env {
    keys: Keys,
    emu: EmulatorHandle,
    gw: Running,
}

async fn env() -> Env {
    env_with(|b| b).await
}

async fn env_with(configure: impl for<'k> FnOnce(ConfigBuilder<'k>) -> ConfigBuilder<'k>) -> Env {
    let keys = Keys::new();
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .expect("the emulator starts");
    let gw = configure(ConfigBuilder::new(&keys, Hosts::all(&emu.url())))
        .start()
        .await;
    Env { keys, emu, gw }
}

impl Env {
    fn addr(&self) -> SocketAddr {
        self.gw.addr
    }

    fn alice(&self) -> String {
        self.keys.member("acme", "alice")
    }

    fn admin(&self) -> String {
        self.keys.admin("acme")
    }

    /// What reached Paragon, leaving out `GET /sdk/me` (credgate's own
    /// credential-list loads).
    fn reached(&self) -> Vec<RecordedRequest> {
        self.emu
            .state
            .requests()
            .into_iter()
            .filter(|r| !(r.method == "GET" && r.path.ends_with("/sdk/me")))
            .collect()
    }

    fn clear(&self) {
        self.emu.state.clear_requests();
    }

    /// Asserts that nothing but credential-list loads reached Paragon.
    fn assert_nothing_reached(&self, what: &str) {
        let seen = self.reached();
        assert!(
            seen.is_empty(),
            "{what}: nothing may reach Paragon, but it saw {:?}",
            seen.iter()
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                .collect::<Vec<_>>()
        );
    }

    /// A normal allowed request on a fresh connection still works: alice on
    /// her own Salesforce account.
    async fn assert_still_serves(&self) {
        // Only this request's arrivals: a refused or broken request of the
        // test may still be landing at the emulator from another worker.
        let still = |seen: Vec<RecordedRequest>| -> Vec<RecordedRequest> {
            seen.into_iter()
                .filter(|r| r.path.ends_with("/still-serving"))
                .collect()
        };
        let before = still(self.reached()).len();
        let got = send(
            &client(),
            req(
                "GET",
                &self.gw,
                &proxy_path("salesforce", "still-serving"),
                Some(&self.alice()),
                &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
                "",
            ),
        )
        .await;
        assert_eq!(got.status, 200, "the gateway still serves: {:?}", got.body);
        let seen = still(self.reached());
        assert_eq!(seen.len(), before + 1);
        assert_eq!(
            seen.last().unwrap().credential.as_deref(),
            Some(DEMO_SALESFORCE_ALICE)
        );
    }
}

fn proxy_path(integration: &str, rest: &str) -> String {
    format!("/projects/{PROJECT}/sdk/proxy/{integration}/{rest}")
}

/// What a raw HTTP/1 exchange produced.
struct Exchange {
    data: Vec<u8>,
    /// The server closed (or reset) the connection before the wait ended.
    closed: bool,
}

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    fn responses(&self) -> Vec<RawResponse> {
        parse_responses(&self.data)
    }

    fn statuses(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }
}

/// Writes `bytes` on a fresh connection, then reads until the server closes
/// it or `wait` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything (that is often the
    // point): a failed write is not a test failure.
    let _ = s.write_all(bytes).await;
    read_until_close(&mut s, wait).await
}

async fn read_until_close(s: &mut TcpStream, wait: Duration) -> Exchange {
    let mut data = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Exchange { data, closed: true },
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Err(_) => {
                return Exchange {
                    data,
                    closed: false,
                }
            }
        }
    }
}

/// Whether the server closes `s` within `wait` (EOF or reset), discarding
/// whatever it sends first.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    read_until_close(s, wait).await.closed
}

/// One HTTP/1 response parsed from raw bytes.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_string()
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Splits a byte stream into HTTP/1 responses, framing bodies the way a
/// client would (Content-Length, chunked, or up to the end). Stops at the
/// first incomplete response.
fn parse_responses(mut data: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Some(end) = find(data, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        if !status_line.starts_with("HTTP/1.") {
            break;
        }
        let Some(status) = status_line.get(9..12).and_then(|s| s.parse::<u16>().ok()) else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &data[end + 4..];
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
            (Vec::new(), 0)
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            match dechunk(rest) {
                Some(x) => x,
                None => break,
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if rest.len() < n {
                break;
            }
            (rest[..n].to_vec(), n)
        } else {
            (rest.to_vec(), rest.len())
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        data = &rest[used..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; `(body, bytes used)`, `None` when incomplete.
fn dechunk(mut data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = data.len();
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            let trailer_end = find(data, b"\r\n")?;
            // Trailers, if any, end with an empty line.
            let mut rest = data;
            let mut end = trailer_end;
            while end != 0 {
                rest = &rest[end + 2..];
                end = find(rest, b"\r\n")?;
            }
            let rest = &rest[2..];
            return Some((body, start - rest.len()));
        }
        if data.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A raw HTTP/1.1 request head (no trailing blank line), with a token.
fn head(method: &str, path: &str, token: Option<&str>, extra: &[&str]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\n");
    if let Some(t) = token {
        h.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for line in extra {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h
}

/// A complete request that, if credgate ever parsed it as a request of its
/// own, would be served (alice's token, her own credential) and show up in
/// the emulator's log under a `smuggled` path.
fn smuggled_request(token: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nX-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\r\n\r\n",
        proxy_path("salesforce", "smuggled")
    )
}

fn assert_nothing_smuggled(env: &Env, what: &str) {
    let smuggled: Vec<_> = env
        .emu
        .state
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("smuggled"))
        .collect();
    assert!(
        smuggled.is_empty(),
        "{what}: a request was smuggled to Paragon: {smuggled:?}"
    );
}

/// A TCP server that answers every request with `response` (raw bytes,
/// written once the request head has arrived), records everything it
/// receives per connection, and closes after writing when `close` is set.
struct RawUpstream {
    addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl RawUpstream {
    async fn spawn(response: &'static [u8], close: bool) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let index = {
                        let mut l = log.lock().unwrap();
                        l.push(Vec::new());
                        l.len() - 1
                    };
                    let mut buf = [0u8; 8192];
                    let mut answered = false;
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let got_head = {
                            let mut l = log.lock().unwrap();
                            l[index].extend_from_slice(&buf[..n]);
                            find(&l[index], b"\r\n\r\n").is_some()
                        };
                        if got_head && !answered {
                            answered = true;
                            let _ = s.write_all(response).await;
                            if close {
                                let _ = s.shutdown().await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawUpstream { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// This upstream answering `response`, and a gateway in front of it
    /// with `server` added to its `[server]` table.
    async fn behind_gateway(
        keys: &Keys,
        response: &'static [u8],
        close: bool,
        server: &str,
    ) -> (RawUpstream, Running) {
        let upstream = RawUpstream::spawn(response, close).await;
        let gw = ConfigBuilder::new(keys, Hosts::all(&upstream.url()))
            .server(server)
            .start()
            .await;
        (upstream, gw)
    }

    fn everything(&self) -> String {
        let l = self.received.lock().unwrap();
        l.iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

// ---------------------------------------------------------------------------
// Smuggling and framing
// ---------------------------------------------------------------------------

/// `Content-Length` together with `Transfer-Encoding: chunked` (CL.TE and
/// TE.CL desync, in both header orders): the chunked coding wins, no
/// `Content-Length` reaches Paragon, the connection is closed after the
/// response, and the request hidden after the chunked body is never parsed.
#[tokio::test]
async fn content_length_with_chunked_is_chunked_then_closed() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "cl-te");
    let cred = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let smuggled = smuggled_request(&alice);
    for framing in [
        ["Content-Length: 6", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: chunked", "Content-Length: 6"],
        ["Content-Length: 200", "Transfer-Encoding: chunked"],
        ["Content-Length: 0", "Transfer-Encoding: chunked"],
    ] {
        env.clear();
        let request = format!(
            "{}\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}",
            head(
                "POST",
                &path,
                Some(&alice),
                &[&cred, framing[0], framing[1]]
            )
        );
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let responses = ex.responses();
        assert!(
            ex.closed,
            "{framing:?}: the connection is closed after the response"
        );
        assert_eq!(
            responses.len(),
            1,
            "{framing:?}: exactly one response, nothing after the chunked body is a request: {}",
            ex.text()
        );
        assert!(
            responses[0].status == 200 || responses[0].status == 400,
            "{framing:?}: {}",
            ex.text()
        );
        assert_nothing_smuggled(&env, &format!("{framing:?}"));
        let seen = env.reached();
        if responses[0].status == 200 {
            assert_eq!(seen.len(), 1, "{framing:?}");
            let r = &seen[0];
            assert_eq!(r.body, b"hello", "{framing:?}: the chunked body, decoded");
            assert!(
                r.header_all("content-length").iter().all(|v| *v == "5"),
                "{framing:?}: the caller's Content-Length never describes the body upstream: {:?}",
                r.headers
            );
        } else {
            assert!(seen.is_empty(), "{framing:?}");
        }
    }
    env.assert_still_serves().await;
}

/// Two different lengths, a list of lengths and malformed lengths are 400
/// (hyper's own answer); equal duplicates are one length. Nothing reaches
/// Paragon from a refused request, and the connection is closed.
#[tokio::test]
async fn conflicting_or_malformed_content_lengths_are_400() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "cl-cl");
    let cred = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let smuggled = smuggled_request(&alice);
    for lengths in [
        vec!["Content-Length: 5", "Content-Length: 6"],
        vec!["Content-Length: 6", "Content-Length: 5"],
        vec!["Content-Length: 5, 6"],
        vec!["Content-Length: +5"],
        vec!["Content-Length: -5"],
        vec!["Content-Length: 0x5"],
        vec!["Content-Length: 5.0"],
        vec!["Content-Length: 5 5"],
        vec!["Content-Length: 99999999999999999999999"],
        vec!["Content-Length:"],
    ] {
        env.clear();
        let mut extra = vec![cred.as_str()];
        extra.extend(lengths.iter().copied());
        let request = format!(
            "{}\r\nhello!{smuggled}",
            head("POST", &path, Some(&alice), &extra)
        );
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert_eq!(ex.statuses(), vec![400], "{lengths:?}: {}", ex.text());
        assert!(ex.closed, "{lengths:?}: closed");
        env.assert_nothing_reached(&format!("{lengths:?}"));
    }

    // Equal duplicates are one length (RFC 9110 §8.6): served once, and the
    // bytes after the body are the next request on the connection.
    env.clear();
    let request = format!(
        "{}\r\nhello{}",
        head(
            "POST",
            &path,
            Some(&alice),
            &[&cred, "Content-Length: 5", "Content-Length: 5"]
        ),
        head("GET", &path, Some(&alice), &[&cred, "Connection: close"]) + "\r\n"
    );
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![200, 200], "{}", ex.text());
    let seen = env.reached();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, b"hello");
    env.assert_still_serves().await;
}

/// Obfuscated `Transfer-Encoding` values (the spellings that split
/// front-ends from back-ends): either refused with 400, or read as chunked
/// with the connection closed. Never a second request.
#[tokio::test]
async fn obfuscated_transfer_encodings_never_desync() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "te");
    let cred = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let smuggled = smuggled_request(&alice);
    for te in [
        vec!["Transfer-Encoding: xchunked"],
        vec!["Transfer-Encoding: chunked, identity"],
        vec!["Transfer-Encoding: identity"],
        vec!["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
        vec!["Transfer-Encoding : chunked"],
        vec!["Transfer-Encoding:\x0bchunked"],
        vec!["Transfer-Encoding: \"chunked\""],
        vec!["Transfer-Encoding: chunked;q=1"],
        vec!["Transfer-Encoding:\tchunked"],
        vec!["Transfer-Encoding: CHUNKED"],
        vec!["Transfer-Encoding: gzip, chunked"],
        vec![" Transfer-Encoding: chunked"],
        vec!["X-Pad: x\r\n Transfer-Encoding: chunked"],
    ] {
        env.clear();
        let mut extra = vec![cred.as_str(), "Content-Length: 6"];
        extra.extend(te.iter().copied());
        let request = format!(
            "{}\r\n5\r\nhello\r\n0\r\n\r\n{smuggled}",
            head("POST", &path, Some(&alice), &extra)
        );
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let statuses = ex.statuses();
        assert!(ex.closed, "{te:?}: closed: {}", ex.text());
        assert_nothing_smuggled(&env, &format!("{te:?}"));
        match statuses.as_slice() {
            [400] => env.assert_nothing_reached(&format!("{te:?}")),
            [200] => {
                let seen = env.reached();
                assert_eq!(seen.len(), 1, "{te:?}");
                assert!(
                    seen[0].header("content-length").is_none_or(|v| v == "5"),
                    "{te:?}: {:?}",
                    seen[0].headers
                );
            }
            other => panic!("{te:?}: unexpected {other:?}: {}", ex.text()),
        }
    }
    env.assert_still_serves().await;
}

/// Bad chunk sizes on a route whose body credgate buffers (Managed Sync):
/// 400, connection closed, nothing reaches Paragon. On a streamed route the
/// request may already be on its way, but Paragon never gets a complete,
/// successful one and nothing after it is parsed.
#[tokio::test]
async fn bad_chunk_sizes_are_refused() {
    let env = env().await;
    let alice = env.alice();
    let body = format!(
        r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{DEMO_SALESFORCE_ALICE}"}}"#
    );
    let smuggled = smuggled_request(&alice);
    let chunked_bodies: Vec<String> = vec![
        format!("zz\r\n{body}\r\n0\r\n\r\n"),
        format!("-{:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
        format!("0x{:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
        format!("fffffffffffffffffffff\r\n{body}\r\n0\r\n\r\n"),
        format!("{:x}\r\n{body}XX0\r\n\r\n", body.len()),
        format!("{:x} \x00\r\n{body}\r\n0\r\n\r\n", body.len()),
        format!("{:x}\n{body}\n0\n\n", body.len()),
        format!(" {:x}\r\n{body}\r\n0\r\n\r\n", body.len()),
    ];
    for (route, rest) in [("/api/syncs", None), ("proxy", Some("chunks"))] {
        for chunked in &chunked_bodies {
            env.clear();
            let (path, mut extra) = match rest {
                None => (route.to_string(), vec![]),
                Some(r) => (
                    proxy_path("salesforce", r),
                    vec![format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}")],
                ),
            };
            extra.push("Transfer-Encoding: chunked".into());
            extra.push("Content-Type: application/json".into());
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let request = format!(
                "{}\r\n{chunked}{smuggled}",
                head("POST", &path, Some(&alice), &extra)
            );
            let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
            let what = format!("{path} {chunked:?}");
            assert!(ex.closed, "{what}: closed: {}", ex.text());
            assert_nothing_smuggled(&env, &what);
            let statuses = ex.statuses();
            assert!(
                statuses.len() <= 1 && statuses.iter().all(|s| *s == 400 || *s == 502),
                "{what}: {}",
                ex.text()
            );
            if rest.is_none() {
                assert_eq!(statuses, vec![400], "{what}: {}", ex.text());
                env.assert_nothing_reached(&what);
            } else {
                assert!(
                    env.reached().iter().all(|r| r.status != 200),
                    "{what}: Paragon never completes a request whose body was malformed"
                );
            }
        }
    }
    env.assert_still_serves().await;
}

/// A request credgate refuses before reading its body (401, 403, 404, 400
/// path, 413) carries a body that is itself a valid request, and another
/// request is pipelined after it. The refusal says `Connection: close`, the
/// connection closes, and neither hidden request is ever parsed. As a
/// control, a refused request *without* a body keeps the connection open
/// and the pipelined request after it is served: the test can tell.
#[tokio::test]
async fn requests_pipelined_behind_an_early_refusal_are_never_parsed() {
    let env = env_with(|b| b.server("max_body_bytes = 4096")).await;
    let alice = env.alice();
    let smuggled = smuggled_request(&alice);
    let sf = proxy_path("salesforce", "x");
    let own = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let foreign = format!("X-Paragon-Credential: {DEMO_SALESFORCE_BOB}");
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unauthenticated",
            sf.clone(),
            None,
            vec![],
            401,
            "unauthenticated",
        ),
        (
            "bad token",
            sf.clone(),
            Some("not.a.token"),
            vec![],
            401,
            "unauthenticated",
        ),
        (
            "foreign credential",
            sf.clone(),
            Some(&alice),
            vec![&foreign],
            403,
            "credential_forbidden",
        ),
        (
            "unknown route",
            format!("/projects/{PROJECT}/nothing"),
            Some(&alice),
            vec![],
            404,
            "route_not_found",
        ),
        (
            "bad path",
            proxy_path("salesforce", "a/../x"),
            Some(&alice),
            vec![&own],
            400,
            "bad_request",
        ),
        (
            "full URL",
            proxy_path("salesforce", "https://evil.example/x"),
            Some(&alice),
            vec![&own],
            403,
            "upstream_host_forbidden",
        ),
    ];
    for (what, path, token, extra, status, code) in cases {
        for chunked in [false, true] {
            env.clear();
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_string()
            } else {
                format!("Content-Length: {}", smuggled.len())
            };
            let body = if chunked {
                format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len())
            } else {
                smuggled.clone()
            };
            let mut h = extra.clone();
            h.push(&framing);
            let request = format!("{}\r\n{body}{smuggled}", head("POST", &path, token, &h));
            let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
            let responses = ex.responses();
            let label = format!("{what} (chunked: {chunked})");
            assert_eq!(responses.len(), 1, "{label}: {}", ex.text());
            assert_eq!(responses[0].status, status, "{label}: {}", ex.text());
            assert_eq!(responses[0].code(), code, "{label}");
            assert!(responses[0].closes(), "{label}: Connection: close");
            assert!(ex.closed, "{label}: the connection is closed");
            env.assert_nothing_reached(&label);
        }
    }

    // 413 before reading: the body is never sent, yet the answer comes.
    env.clear();
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let h = head(
        "POST",
        "/api/syncs",
        Some(&alice),
        &[
            "Content-Length: 100000000",
            "Content-Type: application/json",
        ],
    );
    s.write_all(format!("{h}\r\n{{").as_bytes()).await.unwrap();
    let ex = read_until_close(&mut s, HANG).await;
    let responses = ex.responses();
    assert_eq!(ex.statuses(), vec![413], "{}", ex.text());
    assert_eq!(responses[0].code(), "body_too_large");
    assert!(responses[0].closes());
    assert!(ex.closed);
    env.assert_nothing_reached("413");

    // Control: the same refusals without a body keep the connection, and
    // the pipelined request after them is served.
    env.clear();
    let request = format!(
        "{}\r\n{}\r\n{}",
        head("GET", &sf, None, &[]),
        head("GET", &sf, Some(&alice), &[&foreign]),
        smuggled.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    );
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![401, 403, 200], "{}", ex.text());
    assert_eq!(env.reached().len(), 1);
    env.assert_still_serves().await;
}

/// WebSocket and h2c upgrade requests: the upgrade is a hop-by-hop
/// request, never forwarded; Paragon answers non-101, so no tunnel opens,
/// and bytes the client sends after the upgrade request are parsed as HTTP
/// (an unauthenticated "frame" is a 401, never a request to Paragon).
#[tokio::test]
async fn upgrade_requests_open_no_tunnel() {
    let env = env().await;
    let alice = env.alice();
    let cred = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let path = proxy_path("salesforce", "ws");
    let hidden = format!(
        "GET {} HTTP/1.1\r\nHost: gw\r\nX-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\r\nConnection: close\r\n\r\n",
        proxy_path("salesforce", "smuggled")
    );
    for upgrade in [
        vec![
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
        vec![
            "Connection: Upgrade, HTTP2-Settings",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
        ],
    ] {
        env.clear();
        let mut extra = vec![cred.as_str()];
        extra.extend(upgrade.iter().copied());
        let request = format!("{}\r\n{hidden}", head("GET", &path, Some(&alice), &extra));
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert_eq!(
            ex.statuses(),
            vec![200, 401],
            "{upgrade:?}: Paragon's answer, then the hidden bytes as an (unauthenticated) request: {}",
            ex.text()
        );
        assert_nothing_smuggled(&env, &format!("{upgrade:?}"));
        let seen = env.reached();
        assert_eq!(seen.len(), 1, "{upgrade:?}");
        for h in [
            "upgrade",
            "connection",
            "sec-websocket-key",
            "http2-settings",
        ] {
            if h == "sec-websocket-key" {
                continue;
            }
            assert!(
                seen[0].header(h).is_none(),
                "{upgrade:?}: {h} is hop-by-hop and never forwarded: {:?}",
                seen[0].headers
            );
        }
    }
    env.assert_still_serves().await;
}

/// Paragon is the origin server, not a proxy: requests reach it in origin
/// form (`GET /path?query HTTP/1.1`, RFC 9112 §3.2.1) with its authority
/// in `Host`, never as an absolute URL on the request line.
#[tokio::test]
async fn requests_reach_paragon_in_origin_form() {
    let keys = Keys::new();
    let (upstream, gw) = RawUpstream::behind_gateway(
        &keys,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        false,
        "",
    )
    .await;
    let admin = keys.admin("acme");
    let path = proxy_path("salesforce", "sobjects/Account?limit=5&q=a%20b");
    let request = head("GET", &path, Some(&admin), &["Connection: close"]) + "\r\n";
    let ex = exchange(gw.addr, request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.text());
    let everything = upstream.everything();
    assert!(
        everything.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
        "the request line carries the path and query only: {everything}"
    );
    assert!(
        everything
            .to_ascii_lowercase()
            .contains(&format!("\r\nhost: {}\r\n", upstream.addr)),
        "Host names Paragon: {everything}"
    );
    gw.shutdown().await;
}

/// A Paragon that sends its response headers and part of the body, then
/// stalls: the client's response ends (the connection closes, the body
/// short of its length) after `upstream_timeout` of silence instead of
/// hanging for as long as Paragon keeps the connection open.
#[tokio::test]
async fn a_response_body_that_stalls_is_cut_after_the_upstream_timeout() {
    let keys = Keys::new();
    let (_upstream, gw) = RawUpstream::behind_gateway(&keys, b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n0123456789", false, "upstream_timeout = \"500ms\"").await;
    let admin = keys.admin("acme");
    let path = proxy_path("salesforce", "download");
    let request = head("GET", &path, Some(&admin), &["Connection: close"]) + "\r\n";
    let started = Instant::now();
    let ex = exchange(gw.addr, request.as_bytes(), HANG).await;
    let took = started.elapsed();
    assert!(ex.closed, "credgate ends the response: {}", ex.text());
    assert!(
        took < Duration::from_secs(5),
        "cut after about upstream_timeout, not held open: {took:?}"
    );
    assert!(
        took >= Duration::from_millis(400),
        "not before the stall lasted upstream_timeout: {took:?}"
    );
    let text = ex.text();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("0123456789"),
        "the bytes that came are relayed: {text}"
    );
    gw.shutdown().await;
}

/// A Paragon that answers `101 Switching Protocols` although credgate never
/// asked for an upgrade gets no tunnel: credgate answers 502 instead of
/// relaying a protocol switch it cannot honour, and the client's further
/// bytes never reach Paragon.
#[tokio::test]
async fn an_unsolicited_101_from_upstream_opens_no_tunnel() {
    let keys = Keys::new();
    let (upstream, gw) = RawUpstream::behind_gateway(
        &keys,
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        false,
        "",
    )
    .await;
    let admin = keys.admin("acme");
    let path = proxy_path("salesforce", "ws");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let request = head(
        "GET",
        &path,
        Some(&admin),
        &[
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ],
    ) + "\r\n";
    s.write_all(request.as_bytes()).await.unwrap();
    // Give a tunnel, if one opened, a chance to carry these bytes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = s
        .write_all(b"TUNNELLED-BYTES GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let ex = read_until_close(&mut s, HANG).await;
    let responses = ex.responses();
    assert_eq!(
        ex.statuses().first(),
        Some(&502),
        "a 101 credgate cannot honour is a bad gateway, never relayed: {}",
        ex.text()
    );
    assert_eq!(responses[0].code(), "upstream_unavailable");
    assert!(
        !ex.statuses().contains(&101),
        "the connection never switches protocols: {}",
        ex.text()
    );
    let everything = upstream.everything();
    assert!(
        !everything.contains("TUNNELLED-BYTES"),
        "no tunnel: the client's bytes after the response never reach Paragon: {everything}"
    );
    assert!(
        !everything
            .to_ascii_lowercase()
            .contains("upgrade: websocket"),
        "the upgrade request itself was not forwarded: {everything}"
    );
    gw.shutdown().await;
}

/// HTTP/1.0 clients are served and closed; an HTTP/1.0 request may not use
/// chunked framing (hyper: 400). A close-delimited upstream response reaches
/// an HTTP/1.1 client re-framed (a fake response inside its body stays body)
/// and an HTTP/1.0 client whole.
#[tokio::test]
async fn http_1_0_and_close_delimited_responses() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "one-oh");
    let request = format!(
        "GET {path} HTTP/1.0\r\nAuthorization: Bearer {alice}\r\nX-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\r\n\r\n{}",
        smuggled_request(&alice)
    );
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert!(ex.closed, "HTTP/1.0 without keep-alive is closed");
    assert_eq!(ex.statuses(), vec![200], "{}", ex.text());
    assert_nothing_smuggled(&env, "HTTP/1.0");
    assert_eq!(env.reached().len(), 1);

    env.clear();
    let request = format!(
        "POST {path} HTTP/1.0\r\nAuthorization: Bearer {alice}\r\nX-Paragon-Credential: {DEMO_SALESFORCE_ALICE}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![400], "{}", ex.text());
    env.assert_nothing_reached("HTTP/1.0 chunked");
    env.assert_still_serves().await;

    // Paragon (or something in front of it) answers HTTP/1.0 with a body
    // delimited by closing the connection; the body looks like a response.
    let keys = Keys::new();
    let (_upstream, gw) = RawUpstream::behind_gateway(&keys, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst line\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, "").await;
    let admin = keys.admin("acme");
    let expected_body: &[u8] = b"first line\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let request = format!(
        "{}\r\n{}",
        head("GET", &path, Some(&admin), &[]),
        head("GET", &path, Some(&admin), &["Connection: close"]) + "\r\n"
    );
    let ex = exchange(gw.addr, request.as_bytes(), HANG).await;
    let responses = ex.responses();
    assert_eq!(
        responses.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 200],
        "both pipelined requests answered, the fake response stays inside the first body: {}",
        ex.text()
    );
    assert_eq!(responses[0].body, expected_body);
    assert_eq!(responses[1].body, expected_body);

    let request = format!("GET {path} HTTP/1.0\r\nAuthorization: Bearer {admin}\r\n\r\n");
    let ex = exchange(gw.addr, request.as_bytes(), HANG).await;
    assert!(ex.closed);
    let responses = ex.responses();
    assert_eq!(responses.len(), 1, "{}", ex.text());
    assert_eq!(responses[0].body, expected_body);
    gw.shutdown().await;
}

/// The sync body rewrite changes the body's length (`ext:alice` becomes a
/// 36-character UUID; an escaped UUID shrinks to 36), for fixed-length and
/// chunked input: Paragon receives exactly the rewritten body with a
/// matching `Content-Length`, every other byte as sent.
#[tokio::test]
async fn sync_body_rewrites_reframe_the_body() {
    let env = env().await;
    let alice = env.alice();
    let escaped_id = DEMO_SALESFORCE_ALICE
        .to_uppercase()
        .replacen('A', "\\u0041", 1);
    for (credential, label) in [("ext:alice", "grows"), (escaped_id.as_str(), "shrinks")] {
        let sent = format!(
            "{{ \"integration\" : \"salesforce\",\"pipeline\":\"p\", \"credentialId\":\"{credential}\" ,\"n\": 1.50e0 , \"dup\":[1,2] }}"
        );
        let expected = format!(
            "{{ \"integration\" : \"salesforce\",\"pipeline\":\"p\", \"credentialId\":\"{DEMO_SALESFORCE_ALICE}\" ,\"n\": 1.50e0 , \"dup\":[1,2] }}"
        );
        assert_ne!(sent.len(), expected.len(), "{label}");
        for chunked in [false, true] {
            env.clear();
            let (framing, body) = if chunked {
                let (a, b) = sent.split_at(7);
                (
                    "Transfer-Encoding: chunked".to_string(),
                    format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()),
                )
            } else {
                (format!("Content-Length: {}", sent.len()), sent.clone())
            };
            let request = format!(
                "{}\r\n{body}",
                head(
                    "POST",
                    "/api/syncs",
                    Some(&alice),
                    &[
                        &framing,
                        "Content-Type: application/json",
                        "Connection: close"
                    ]
                )
            );
            let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
            let what = format!("{label}, chunked: {chunked}");
            assert_eq!(ex.statuses(), vec![200], "{what}: {}", ex.text());
            let seen = env.reached();
            assert_eq!(seen.len(), 1, "{what}");
            let r = &seen[0];
            assert_eq!(
                String::from_utf8_lossy(&r.body),
                expected,
                "{what}: exactly the rewritten body"
            );
            assert_eq!(
                r.header_all("content-length"),
                vec![expected.len().to_string().as_str()],
                "{what}: one Content-Length, the rewritten body's"
            );
            assert!(r.header("transfer-encoding").is_none(), "{what}");
            assert_eq!(r.credential.as_deref(), Some(DEMO_SALESFORCE_ALICE));
        }
    }
    env.assert_still_serves().await;
}

// ---------------------------------------------------------------------------
// Header spoofing
// ---------------------------------------------------------------------------

/// `X-Paragon-Credential` in every spelling a backend stack might fold
/// together: a member naming a foreign credential in any of them is 403,
/// naming any credential twice (repeated, respelled, comma-joined, listed in
/// `Connection`) is 400, and an allowed request reaches Paragon with exactly
/// one value, the routed credential, even when a chunked trailer tries to
/// add another.
#[tokio::test]
async fn credential_header_spellings_never_let_a_foreign_credential_through() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "spell");
    let own = DEMO_SALESFORCE_ALICE;
    let bob = DEMO_SALESFORCE_BOB;
    let own_upper = own.to_uppercase();
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (
            vec![format!("x-paragon-credential: {bob}")],
            403,
            "credential_forbidden",
        ),
        (
            vec![format!("X-PARAGON-CREDENTIAL: {bob}")],
            403,
            "credential_forbidden",
        ),
        (
            vec![format!("x_paragon_credential: {bob}")],
            403,
            "credential_forbidden",
        ),
        (
            vec![format!("X_Paragon-Credential: {bob}")],
            403,
            "credential_forbidden",
        ),
        (
            vec![
                "Connection: x-paragon-credential".into(),
                format!("X-Paragon-Credential: {bob}"),
            ],
            403,
            "credential_forbidden",
        ),
        (
            vec![
                format!("X-Paragon-Credential: {own}"),
                format!("x_paragon_credential: {bob}"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![
                format!("x_paragon_credential: {bob}"),
                format!("X-Paragon-Credential: {own}"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![
                format!("X-Paragon-Credential: {own}"),
                format!("X-Paragon-Credential: {own}"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![format!("X-Paragon-Credential: {own}, {bob}")],
            400,
            "bad_request",
        ),
        (
            vec![format!("X-Paragon-Credential: {own},{own}")],
            400,
            "bad_request",
        ),
        (
            vec![
                format!("X-Paragon-Credential: {own}"),
                format!("X_PARAGON_CREDENTIAL: {own}"),
            ],
            400,
            "bad_request",
        ),
        (
            vec![
                "Connection: x_paragon_credential".into(),
                format!("x_paragon_credential: {bob}"),
                format!("X-Paragon-Credential: {own}"),
            ],
            400,
            "bad_request",
        ),
        (vec!["X-Paragon-Credential: ".into()], 400, "bad_request"),
        (
            vec![format!("X-Paragon-Credential: {own} x")],
            400,
            "bad_request",
        ),
        (
            vec![format!("X-Paragon-Credential: {{{own}}}")],
            400,
            "bad_request",
        ),
        (
            vec![format!("X-Paragon-Credential: ext:bob")],
            403,
            "credential_forbidden",
        ),
        (
            vec![format!("X-Paragon-Credential:  {own_upper}\t")],
            200,
            "",
        ),
        (
            vec![
                "Connection: x-paragon-credential".into(),
                format!("X-Paragon-Credential: {own}"),
            ],
            200,
            "",
        ),
        (vec![format!("X-Paragon-Credential: ext:alice")], 200, ""),
    ];
    for (headers, status, code) in cases {
        env.clear();
        let extra: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut extra = extra.clone();
        extra.push("Connection: close");
        let request = head("GET", &path, Some(&alice), &extra) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "{headers:?}: {}", ex.text());
        assert_eq!(responses[0].status, status, "{headers:?}: {}", ex.text());
        if status == 200 {
            let seen = env.reached();
            assert_eq!(seen.len(), 1, "{headers:?}");
            assert_eq!(
                seen[0].header_all("x-paragon-credential"),
                vec![own],
                "{headers:?}: exactly one credential header, the routed one"
            );
            assert!(
                seen[0]
                    .headers
                    .iter()
                    .all(|(n, _)| n == "x-paragon-credential" || !n.contains("paragon_credential")),
                "{headers:?}: no other spelling reaches Paragon: {:?}",
                seen[0].headers
            );
            assert_eq!(seen[0].credential.as_deref(), Some(own));
        } else {
            assert_eq!(responses[0].code(), code, "{headers:?}");
            env.assert_nothing_reached(&format!("{headers:?}"));
        }
    }

    // A foreign credential in a chunked trailer is not a header: Paragon
    // sees alice's, once, and never the trailer.
    env.clear();
    let request = format!(
        "{}\r\n5\r\nhello\r\n0\r\nX-Paragon-Credential: {bob}\r\nx_paragon_credential: {bob}\r\n\r\n",
        head(
            "POST",
            &path,
            Some(&alice),
            &[
                &format!("X-Paragon-Credential: {own}"),
                "Transfer-Encoding: chunked",
                "TE: trailers",
                "Trailer: X-Paragon-Credential, x_paragon_credential",
                "Connection: close",
            ]
        )
    );
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.text());
    let seen = env.reached();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_all("x-paragon-credential"), vec![own]);
    assert_eq!(seen[0].body, b"hello");
    assert!(seen[0].header("trailer").is_none(), "{:?}", seen[0].headers);

    // Routes that route no credential drop every spelling.
    env.clear();
    let got = send(
        &client(),
        req(
            "GET",
            &env.gw,
            &format!("/projects/{PROJECT}/sdk/integrations"),
            Some(&alice),
            &[("x_paragon_credential", bob)],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = env.reached();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].headers.iter().all(|(n, _)| !n
            .replace('_', "-")
            .eq_ignore_ascii_case("x-paragon-credential")),
        "{:?}",
        seen[0].headers
    );

    // Header tricks hyper refuses outright: obs-fold, space before the
    // colon, a raw CR inside a value.
    for raw_header in [
        format!("X-Pad: a\r\n X-Paragon-Credential: {bob}"),
        format!("X-Paragon-Credential : {bob}"),
        format!("X-Paragon-Credential: {own}\rX-Paragon-Credential: {bob}"),
        format!("X-Paragon-Credential: {bob}\x00"),
    ] {
        env.clear();
        let request = head("GET", &path, Some(&alice), &[&raw_header]) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert_eq!(ex.statuses(), vec![400], "{raw_header:?}: {}", ex.text());
        env.assert_nothing_reached(&format!("{raw_header:?}"));
    }
    env.assert_still_serves().await;
}

/// `Forwarded` and `X-Forwarded-*` (any case, `_` spellings, unknown
/// `X-Forwarded-` suffixes) from a client outside `server.trusted_proxies`
/// are replaced by what credgate saw; from a trusted proxy they are kept and
/// extended.
#[tokio::test]
async fn forwarded_headers_are_trusted_only_from_trusted_proxies() {
    let spoofed = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("x_forwarded_for", "7.7.7.7"),
        ("X-FORWARDED-HOST", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Prefix", "/admin"),
        ("x-forwarded-port", "443"),
        ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
        ("FORWARDED", "for=8.8.8.8"),
    ];
    let path = proxy_path("salesforce", "fwd");
    for trusted in [None, Some("10.0.0.0/8"), Some("127.0.0.0/8")] {
        let env = env_with(|b| match trusted {
            Some(cidr) => b.server(&format!("trusted_proxies = [\"{cidr}\"]")),
            None => b,
        })
        .await;
        let mut headers: Vec<(&str, &str)> = spoofed.to_vec();
        headers.push(("x-paragon-credential", DEMO_SALESFORCE_ALICE));
        let got = send(
            &client(),
            req("GET", &env.gw, &path, Some(&env.alice()), &headers, ""),
        )
        .await;
        assert_eq!(got.status, 200, "{trusted:?}");
        let seen = env.reached();
        assert_eq!(seen.len(), 1);
        let r = &seen[0];
        let names: Vec<String> = r.headers.iter().map(|(n, _)| n.clone()).collect();
        if trusted == Some("127.0.0.0/8") {
            assert_eq!(
                r.header("x-forwarded-for"),
                Some("6.6.6.6, 127.0.0.1"),
                "{:?}",
                r.headers
            );
            assert_eq!(r.header("x-forwarded-host"), Some("evil.example"));
            assert_eq!(r.header("x-forwarded-proto"), Some("https"));
        } else {
            assert_eq!(
                r.header_all("x-forwarded-for"),
                vec!["127.0.0.1"],
                "{trusted:?}: {:?}",
                r.headers
            );
            assert_eq!(r.header("x-forwarded-proto"), Some("http"));
            assert_eq!(
                r.header("x-forwarded-host"),
                Some(env.addr().to_string().as_str()),
                "the Host the client used"
            );
            for gone in [
                "forwarded",
                "x_forwarded_for",
                "x-forwarded-prefix",
                "x-forwarded-port",
            ] {
                assert!(
                    !names.iter().any(|n| n == gone),
                    "{trusted:?}: {gone} from an untrusted client is dropped: {names:?}"
                );
            }
        }
        env.gw.shutdown().await;
    }
}

/// Two `Authorization` headers are 401 even when both are the same valid
/// token; a caller's token never reaches Paragon, also when the caller lists
/// `Authorization` in `Connection`.
#[tokio::test]
async fn authorization_tricks_are_refused_or_replaced() {
    let env = env().await;
    let alice = env.alice();
    let admin = env.admin();
    let path = proxy_path("salesforce", "auth");
    let own = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    for extra in [
        vec![
            format!("Authorization: Bearer {alice}"),
            format!("Authorization: Bearer {alice}"),
        ],
        vec![
            format!("Authorization: Bearer {alice}"),
            format!("authorization: Bearer {admin}"),
        ],
        vec![format!("Authorization: Bearer {alice}, Bearer {admin}")],
        vec![format!("Authorization: Bearer {alice} {admin}")],
        vec![format!("Authorization: Basic {alice}")],
        vec![format!("Authorization: Bearer")],
        vec![format!("X-Authorization: Bearer {admin}")],
        vec![format!("Proxy-Authorization: Bearer {admin}")],
    ] {
        env.clear();
        let mut h: Vec<&str> = extra.iter().map(String::as_str).collect();
        h.push(&own);
        h.push("Connection: close");
        let request = head("GET", &path, None, &h) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let responses = ex.responses();
        assert_eq!(ex.statuses(), vec![401], "{extra:?}: {}", ex.text());
        assert_eq!(responses[0].code(), "unauthenticated");
        assert!(
            responses[0]
                .header("www-authenticate")
                .is_some_and(|v| v.contains("invalid_token")),
            "{extra:?}"
        );
        let text = ex.text();
        assert!(
            !text.contains(&alice) && !text.contains(&admin),
            "no token echoed"
        );
        env.assert_nothing_reached(&format!("{extra:?}"));
    }

    env.clear();
    let request = head(
        "GET",
        &path,
        Some(&alice),
        &[
            &own,
            "Connection: authorization, close",
            "Proxy-Authorization: Bearer x",
        ],
    ) + "\r\n";
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.text());
    let seen = env.reached();
    assert_eq!(seen.len(), 1);
    let upstream = seen[0].header_all("authorization");
    assert_eq!(upstream.len(), 1);
    assert_ne!(upstream[0], format!("Bearer {alice}"));
    assert_eq!(env.keys.decode_upstream(upstream[0])["sub"], "acme");
    assert!(seen[0].header("proxy-authorization").is_none());
    env.assert_still_serves().await;
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// Every path form a normalizer between credgate and Paragon could rewrite
/// is 400 before authentication; case, matrix parameters, trailing slashes
/// and route-like text in the query or a fragment never change the route
/// credgate decides on. Nothing refused reaches Paragon.
#[tokio::test]
async fn path_confusion_is_refused_or_inert() {
    let env = env().await;
    let alice = env.alice();
    let own = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let p = format!("/projects/{PROJECT}");
    let sf = format!("{p}/sdk/proxy/salesforce");
    let refused: Vec<(String, u16)> = vec![
        (format!("{sf}//x"), 400),
        (format!("/{sf}/x"), 400),
        (format!("{sf}/./x"), 400),
        (format!("{sf}/../../me"), 400),
        (format!("{sf}/x/.."), 400),
        (format!("{sf}/x/."), 400),
        (format!("{sf}/a%2Fb"), 400),
        (format!("{sf}/a%2fb"), 400),
        (format!("{sf}/%2E%2E/x"), 400),
        (format!("{sf}/%2e/x"), 400),
        (format!("{sf}/.%2e/x"), 400),
        (format!("{sf}/a%5Cb"), 400),
        (format!("{sf}/a%5cb"), 400),
        (format!("{sf}/a\\b"), 400),
        (format!("{sf}/a%00b"), 400),
        (format!("{sf}/a%0d%0aX-Injected:%201"), 400),
        (format!("{sf}/a%252Fb"), 400),
        (format!("{sf}/a%25252Fb"), 200),
        (format!("{sf}/a%zz"), 400),
        (format!("{sf}/a%"), 400),
        (format!("{p}/sdk/../sdk/me"), 400),
        (format!("{p}/sdk/me/"), 404),
        (format!("{p}/sdk/me;x=1"), 404),
        (format!("{p};x=1/sdk/me"), 404),
        (format!("{p}/sdk;x/me"), 404),
        (format!("{p}/SDK/me"), 404),
        (format!("{p}/sdk/ME"), 404),
        (format!("/Projects/{PROJECT}/sdk/me"), 404),
        (format!("{p}/sdk/credentials/"), 404),
        ("/api/syncs/".to_string(), 404),
        ("/api/syncs;/x".to_string(), 404),
        (format!("{p}/sdk/m%65"), 404),
    ];
    for (path, status) in &refused {
        env.clear();
        for token in [None, Some(alice.as_str())] {
            let request = head("GET", path, token, &[&own, "Connection: close"]) + "\r\n";
            let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
            let want = if token.is_none() && *status != 400 {
                401
            } else {
                *status
            };
            assert_eq!(
                ex.statuses(),
                vec![want],
                "{path} (token: {}): {}",
                token.is_some(),
                ex.text()
            );
        }
        if *status != 200 {
            env.assert_nothing_reached(path);
        }
    }

    // Matrix parameters, fragments and route-like queries are inert: the
    // route is the proxy's, and Paragon gets the path as sent (fragment
    // dropped: it is never part of a request target).
    for (path, upstream_path, upstream_query) in [
        (format!("{sf}/a;b=c"), format!("{sf}/a;b=c"), None),
        (
            format!("{sf}/x?/projects/{PROJECT}/sdk/me&next=../../sdk/me"),
            format!("{sf}/x"),
            Some(format!("/projects/{PROJECT}/sdk/me&next=../../sdk/me")),
        ),
        (format!("{sf}/x#/../../../sdk/me"), format!("{sf}/x"), None),
        (
            format!("{sf}/x?a=1#frag"),
            format!("{sf}/x"),
            Some("a=1".to_string()),
        ),
    ] {
        env.clear();
        let request = head("GET", &path, Some(&alice), &[&own, "Connection: close"]) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        match ex.statuses().as_slice() {
            [200] => {
                let seen = env.reached();
                assert_eq!(seen.len(), 1, "{path}");
                assert_eq!(seen[0].path, upstream_path, "{path}");
                assert_eq!(seen[0].query, upstream_query, "{path}");
                assert_eq!(seen[0].credential.as_deref(), Some(DEMO_SALESFORCE_ALICE));
            }
            // hyper may refuse a fragment in a request target outright.
            [400] if path.contains('#') => env.assert_nothing_reached(&path),
            other => panic!("{path}: {other:?}: {}", ex.text()),
        }
    }

    // Overlong paths: hyper's 414/431 or credgate's 400, never a crash.
    for len in [9 * 1024, 70 * 1024, 100 * 1024, 1024 * 1024] {
        env.clear();
        let path = format!("{sf}/{}", "a".repeat(len));
        let request = head("GET", &path, Some(&alice), &[&own, "Connection: close"]) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let statuses = ex.statuses();
        assert!(
            matches!(statuses.as_slice(), [200] | [400] | [414] | [431])
                || (statuses.is_empty() && ex.closed),
            "{len}: {statuses:?}"
        );
        if statuses != [200] {
            env.assert_nothing_reached(&format!("path of {len} bytes"));
        }
    }
    env.assert_still_serves().await;
}

/// A Proxy API `{rest}` that is a full URL (in any of the spellings a
/// WHATWG parser accepts, plain or percent-encoded, with userinfo tricks)
/// to a host not in `policy.proxy_url_hosts` is 403 for everyone, admins
/// included; the listed host is allowed and reaches Paragon as sent.
#[tokio::test]
async fn proxy_full_urls_to_unlisted_hosts_are_refused() {
    let env = env_with(|b| b.policy("proxy_url_hosts = [\"allowed.example\"]")).await;
    let alice = env.alice();
    let admin = env.admin();
    let own = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let forbidden = [
        "https://evil.example/x",
        "http://evil.example/x",
        "HTTPS://EVIL.EXAMPLE/x",
        "hTtPs://evil.example",
        "https://evil.example",
        "https:/evil.example/x",
        "https:evil.example/x",
        "http:evil.example",
        "https%3A//evil.example/x",
        "https%3a//evil.example/x",
        "%68ttps://evil.example/x",
        "//evil.example/x",
        "%5C%5Cevil.example/x",
        "%5c%5cevil.example/x",
        "https:%5C%5Cevil.example/x",
        "https://allowed.example@evil.example/x",
        "https://allowed.example:443@evil.example/x",
        "https://allowed.example%40evil.example/x",
        "https://allowed.example%23@evil.example/x",
        "https://allowed.example%3F@evil.example/x",
        "https://allowed.example%3f@evil.example/x",
        "https://evil.example%23.allowed.example/x",
        "https://evil.example./x",
        "https://evil.example:8443/x",
        "https://allowed.example.evil.example/x",
        "https://[::1]/x",
        "https://127.0.0.1/x",
        "https://0x7f000001/x",
        "wss://evil.example/x",
        "ftp://evil.example/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "%20https:/evil.example/x",
        "%20https:evil.example/x",
        "%20%20http:evil.example",
    ];
    let cl = client();
    let mut through = Vec::new();
    for rest in forbidden {
        env.clear();
        for token in [&alice, &admin] {
            let got = send(
                &cl,
                req(
                    "GET",
                    &env.gw,
                    &proxy_path("salesforce", rest),
                    Some(token),
                    &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
                    "",
                ),
            )
            .await;
            if !(got.status == 403 || got.status == 400) {
                through.push(format!("{rest}: {}", got.status));
                continue;
            }
            if got.status == 403 {
                assert_eq!(got.code(), "upstream_host_forbidden", "{rest}");
            }
        }
        if through.is_empty() {
            env.assert_nothing_reached(rest);
        }
    }
    assert!(
        through.is_empty(),
        "full URLs to unlisted hosts got through: {through:#?}"
    );
    // The same on custom integrations.
    let got = send(
        &cl,
        req(
            "GET",
            &env.gw,
            &proxy_path(
                "custom/c0ffee00-0000-4000-8000-000000000001",
                "https://evil.example/x",
            ),
            Some(&admin),
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 403);
    env.assert_nothing_reached("custom");

    for rest in [
        "https://allowed.example/v4/x",
        "HTTPS://ALLOWED.EXAMPLE/v4/x",
        "https://allowed.example./v4/x",
        "https://allowed.example:8443/v4/x",
        "https:/allowed.example/v4",
        "https://allowed.example/v4/x%23y",
    ] {
        env.clear();
        let request = head(
            "GET",
            &proxy_path("salesforce", rest),
            Some(&alice),
            &[&own, "Connection: close"],
        ) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert_eq!(ex.statuses(), vec![200], "{rest}: {}", ex.text());
        let seen = env.reached();
        assert_eq!(seen.len(), 1, "{rest}");
        assert_eq!(
            seen[0].path,
            proxy_path("salesforce", rest),
            "{rest}: as sent"
        );
    }
    env.assert_still_serves().await;
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// POSTs `body` to `/api/syncs` as alice on one raw connection.
async fn post_sync(env: &Env, body: &[u8], extra: &[&str]) -> Exchange {
    let mut h: Vec<String> = vec![
        format!("Content-Length: {}", body.len()),
        "Content-Type: application/json".into(),
        "Connection: close".into(),
    ];
    h.extend(extra.iter().map(|s| s.to_string()));
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    let mut request = (head("POST", "/api/syncs", Some(&env.alice()), &h) + "\r\n").into_bytes();
    request.extend_from_slice(body);
    exchange(env.addr(), &request, HANG).await
}

/// The JSON parser differentials of contract §7: duplicate `credentialId` keys
/// (also spelled with escapes), a `credentialId` of the wrong type, bodies
/// nested past 64 levels, invalid UTF-8 and everything RFC 8259 does not
/// allow are 400, and never reach Paragon. An escaped spelling alone is
/// still `credentialId`: naming bob's account that way is 403.
#[tokio::test]
async fn sync_body_parser_differentials_are_refused() {
    let env = env().await;
    let a = DEMO_SALESFORCE_ALICE;
    let b = DEMO_SALESFORCE_BOB;
    let base = r#""integration":"salesforce","pipeline":"p""#;
    let nest = |depth: usize| {
        // `depth` levels in all, the top object included.
        format!(
            "{{{base},\"x\":{}1{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        ("duplicate".into(), format!(r#"{{{base},"credentialId":"{a}","credentialId":"{a}"}}"#).into_bytes(), 400, "bad_request"),
        ("escaped duplicate".into(), format!(r#"{{{base},"credentialId":"{a}","credential\u0049d":"{b}"}}"#).into_bytes(), 400, "bad_request"),
        ("escaped duplicate first".into(), format!(r#"{{{base},"\u0063redentialId":"{b}","credentialId":"{a}"}}"#).into_bytes(), 400, "bad_request"),
        ("all-escaped key".into(), format!(r#"{{{base},"\u0063\u0072\u0065\u0064\u0065\u006e\u0074\u0069\u0061\u006c\u0049\u0064":"{b}"}}"#).into_bytes(), 403, "credential_forbidden"),
        ("escaped foreign".into(), format!(r#"{{{base},"credential\u0049d":"{b}"}}"#).into_bytes(), 403, "credential_forbidden"),
        ("escaped value".into(), format!(r#"{{{base},"credentialId":"\u0062{}"}}"#, &b[1..]).into_bytes(), 403, "credential_forbidden"),
        ("number".into(), format!(r#"{{{base},"credentialId":12345}}"#).into_bytes(), 400, "bad_request"),
        ("null".into(), format!(r#"{{{base},"credentialId":null}}"#).into_bytes(), 400, "bad_request"),
        ("bool".into(), format!(r#"{{{base},"credentialId":true}}"#).into_bytes(), 400, "bad_request"),
        ("array".into(), format!(r#"{{{base},"credentialId":["{a}"]}}"#).into_bytes(), 400, "bad_request"),
        ("object".into(), format!(r#"{{{base},"credentialId":{{"id":"{a}"}}}}"#).into_bytes(), 400, "bad_request"),
        ("not a uuid".into(), format!(r#"{{{base},"credentialId":"{a}x"}}"#).into_bytes(), 400, "bad_request"),
        ("header and body".into(), format!(r#"{{{base},"credentialId":"{a}"}}"#).into_bytes(), 400, "bad_request"),
        ("65 levels".into(), nest(65).into_bytes(), 400, "bad_request"),
        ("100000 levels".into(), nest(100_000).into_bytes(), 400, "bad_request"),
        ("100000 open objects".into(), format!("{{{base},\"x\":{}", "{\"a\":".repeat(100_000)).into_bytes(), 400, "bad_request"),
        ("invalid UTF-8".into(), [format!(r#"{{{base},"credentialId":"{a}","n":""#).into_bytes(), vec![0xff, 0xfe], b"\"}".to_vec()].concat(), 400, "bad_request"),
        ("overlong quote".into(), [format!(r#"{{{base},"credentialId":"{a}","n":""#).into_bytes(), vec![0xc0, 0xa2], b"\"}".to_vec()].concat(), 400, "bad_request"),
        ("lone surrogate key".into(), format!(r#"{{{base},"credentialId\ud800":"{b}","credentialId":"{a}"}}"#).into_bytes(), 400, "bad_request"),
        ("byte order mark".into(), [vec![0xef, 0xbb, 0xbf], format!(r#"{{{base},"credentialId":"{a}"}}"#).into_bytes()].concat(), 400, "bad_request"),
        ("trailing garbage".into(), format!(r#"{{{base},"credentialId":"{a}"}}x"#).into_bytes(), 400, "bad_request"),
        ("two documents".into(), format!(r#"{{{base},"credentialId":"{a}"}}{{"credentialId":"{b}"}}"#).into_bytes(), 400, "bad_request"),
        ("trailing comma".into(), format!(r#"{{{base},"credentialId":"{a}",}}"#).into_bytes(), 400, "bad_request"),
        ("single quotes".into(), format!(r#"{{{base},'credentialId':'{b}'}}"#).into_bytes(), 400, "bad_request"),
        ("comment".into(), format!(r#"{{{base},/*"credentialId":"{a}",*/"credentialId":"{b}"}}"#).into_bytes(), 400, "bad_request"),
        ("NaN".into(), format!(r#"{{{base},"credentialId":"{a}","n":NaN}}"#).into_bytes(), 400, "bad_request"),
        ("raw control character".into(), format!("{{{base},\"credentialId\":\"{a}\",\"n\":\"a\x01b\"}}").into_bytes(), 400, "bad_request"),
        ("top-level array".into(), format!(r#"[{{{base},"credentialId":"{a}"}}]"#).into_bytes(), 400, "bad_request"),
        ("empty".into(), Vec::new(), 400, "bad_request"),
        ("64 levels".into(), nest(64).into_bytes(), 200, ""),
    ];
    for (what, body, status, code) in &cases {
        env.clear();
        let header = format!("X-Paragon-Credential: {a}");
        let extra: Vec<&str> = if what == "header and body" {
            vec![&header]
        } else {
            vec![]
        };
        let ex = post_sync(&env, body, &extra).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "{what}: {}", ex.text());
        assert_eq!(responses[0].status, *status, "{what}: {}", ex.text());
        if *status == 200 {
            let seen = env.reached();
            assert_eq!(seen.len(), 1, "{what}");
            assert_eq!(seen[0].credential.as_deref(), Some(a), "{what}");
        } else {
            assert_eq!(responses[0].code(), *code, "{what}");
            env.assert_nothing_reached(what);
        }
    }
    env.assert_still_serves().await;
}

/// Bodies credgate must read are capped at `server.max_body_bytes`: 413
/// for a chunked body without a length once it passes the cap, 413 before
/// reading for a large `Content-Length`; the cap counts decoded bytes. The
/// check runs after authentication (401 first). Bodies credgate does not
/// read stream and are not capped.
#[tokio::test]
async fn bodies_over_the_cap_are_413() {
    let env = env_with(|b| b.server("max_body_bytes = 1024")).await;
    let alice = env.alice();
    let at_cap = {
        let prefix = format!(
            r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{DEMO_SALESFORCE_ALICE}","pad":""#
        );
        let pad = 1024 - prefix.len() - 2;
        format!("{prefix}{}\"}}", "x".repeat(pad))
    };
    assert_eq!(at_cap.len(), 1024);
    let over_cap = at_cap.replacen("xx", "xxx", 1);

    // Exactly at the cap, chunked in small pieces: accepted. One byte more:
    // 413, and what follows the refused body is never parsed.
    for (body, status) in [(&at_cap, 200), (&over_cap, 413)] {
        env.clear();
        let chunked: String = body
            .as_bytes()
            .chunks(100)
            .map(|c| format!("{:x}\r\n{}\r\n", c.len(), String::from_utf8_lossy(c)))
            .collect::<String>()
            + "0\r\n\r\n";
        let request = format!(
            "{}\r\n{chunked}{}",
            head(
                "POST",
                "/api/syncs",
                Some(&alice),
                &[
                    "Transfer-Encoding: chunked",
                    "Content-Type: application/json"
                ]
            ),
            if status == 413 {
                smuggled_request(&alice)
            } else {
                String::new()
            }
        );
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let responses = ex.responses();
        assert_eq!(
            responses.first().map(|r| r.status),
            Some(status),
            "{}",
            ex.text()
        );
        if status == 413 {
            assert_eq!(responses.len(), 1, "{}", ex.text());
            assert_eq!(responses[0].code(), "body_too_large");
            assert!(responses[0].closes() && ex.closed);
            env.assert_nothing_reached("over the cap");
        }
        assert_nothing_smuggled(&env, "cap");
    }

    // A chunked body that never ends is refused once past the cap, without
    // waiting for the rest.
    env.clear();
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let h = head(
        "POST",
        "/api/syncs",
        Some(&alice),
        &[
            "Transfer-Encoding: chunked",
            "Content-Type: application/json",
        ],
    );
    s.write_all(format!("{h}\r\n800\r\n{{{}\r\n", "x".repeat(0x7ff)).as_bytes())
        .await
        .unwrap();
    let ex = read_until_close(&mut s, HANG).await;
    assert_eq!(ex.statuses(), vec![413], "{}", ex.text());
    env.assert_nothing_reached("endless chunked");

    // Large Content-Length: 413 before reading (nothing of the body sent);
    // without a token, 401 first.
    for (token, status) in [(Some(alice.as_str()), 413), (None, 401)] {
        let mut s = TcpStream::connect(env.addr()).await.unwrap();
        let h = head("POST", "/api/syncs", token, &["Content-Length: 1073741824"]);
        s.write_all(format!("{h}\r\n").as_bytes()).await.unwrap();
        let ex = read_until_close(&mut s, HANG).await;
        assert_eq!(ex.statuses(), vec![status], "{}", ex.text());
        assert!(ex.closed);
    }

    // ActionKit bodies are read (to find the action's integration) under
    // the same cap.
    env.clear();
    let big = format!(
        r#"{{"action":"SALESFORCE_X","parameters":"{}"}}"#,
        "y".repeat(2000)
    );
    let got = send(
        &client(),
        req(
            "POST",
            &env.gw,
            &format!("/projects/{PROJECT}/actions"),
            Some(&alice),
            &[("content-type", "application/json")],
            big,
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (413, "body_too_large")
    );
    env.assert_nothing_reached("ActionKit over the cap");

    // A Proxy API upload streams: the cap does not apply.
    env.clear();
    let got = send(
        &client(),
        req(
            "POST",
            &env.gw,
            &proxy_path("salesforce", "__upload"),
            Some(&alice),
            &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
            vec![b'u'; 64 * 1024],
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["output"]["bytes"], json!(64 * 1024));
    env.assert_still_serves().await;
}

// ---------------------------------------------------------------------------
// Resource exhaustion
// ---------------------------------------------------------------------------

/// Slowloris: a connection that sends nothing, half a request head, a head
/// one byte at a time, or half an HTTP/2 preface is closed once
/// `server.header_read_timeout` passes (an idle keep-alive connection too),
/// and counted; the gateway keeps serving.
#[tokio::test]
async fn slow_request_heads_are_cut_off_by_the_header_read_timeout() {
    let env = env_with(|b| b.server("header_read_timeout = \"1s\"")).await;
    let before = scrape_metrics(&env.gw).await;
    let sf = proxy_path("salesforce", "slow");
    let partial = format!("GET {sf} HTTP/1.1\r\nHost: gw\r\nX-Pad: 1\r\n");
    for (what, bytes) in [
        ("nothing", &b""[..]),
        ("half a head", partial.as_bytes()),
        ("half an HTTP/2 preface", &b"PRI * HTTP/2.0\r\n"[..]),
        ("one byte", &b"G"[..]),
    ] {
        let mut s = TcpStream::connect(env.addr()).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let ex = read_until_close(&mut s, HANG).await;
        assert!(ex.closed, "{what}: closed by the header read timeout");
        assert!(
            ex.statuses().iter().all(|s| *s == 408),
            "{what}: no answer but a timeout: {}",
            ex.text()
        );
    }

    // A head trickled one byte every 200 ms never completes: the timeout
    // bounds the whole head, not the gap between bytes.
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let trickle = format!(
        "GET {sf} HTTP/1.1\r\nHost: gw\r\n{}",
        "X-Pad: 1\r\n".repeat(1000)
    );
    let started = Instant::now();
    let mut cut = false;
    for b in trickle.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1024];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut probe)).await
        {
            cut = true;
            break;
        }
        assert!(started.elapsed() < HANG, "a trickled head is never cut off");
    }
    assert!(cut, "the trickled head was cut off");

    // An idle keep-alive connection after a served request is closed too.
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let request = head(
        "GET",
        &sf,
        Some(&env.alice()),
        &[&format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}")],
    ) + "\r\n";
    s.write_all(request.as_bytes()).await.unwrap();
    let ex = read_until_close(&mut s, HANG).await;
    assert!(ex.closed, "the idle keep-alive connection is closed");
    assert_eq!(ex.statuses(), vec![200]);

    let after = scrape_metrics(&env.gw).await;
    let timeouts = |t: &str| {
        metric(
            t,
            "credgate_connection_errors_total{kind=\"header_timeout\"}",
        )
    };
    assert!(
        timeouts(&after) - timeouts(&before) >= 5.0,
        "header timeouts are counted: {after}"
    );
    env.assert_still_serves().await;
}

/// A body credgate must buffer (Managed Sync) that stalls, or trickles, is
/// cut off like a slow head: 408, the connection closed, nothing sent to
/// Paragon. Without a bound one client could hold a connection slot and a
/// buffer forever with a byte every few seconds.
#[tokio::test]
async fn slow_buffered_bodies_are_cut_off() {
    let env = env_with(|b| b.server("header_read_timeout = \"1s\"")).await;
    let alice = env.alice();
    for chunked in [false, true] {
        env.clear();
        let mut s = TcpStream::connect(env.addr()).await.unwrap();
        let framing = if chunked {
            "Transfer-Encoding: chunked"
        } else {
            "Content-Length: 100"
        };
        let h = head(
            "POST",
            "/api/syncs",
            Some(&alice),
            &[framing, "Content-Type: application/json"],
        );
        let first = if chunked {
            "5\r\n{\"a\":\r\n"
        } else {
            "{\"a\":"
        };
        s.write_all(format!("{h}\r\n{first}").as_bytes())
            .await
            .unwrap();
        // Then one byte every 300 ms: always some progress, never the end.
        let started = Instant::now();
        let ex = loop {
            let piece: &[u8] = if chunked { b"1\r\n \r\n" } else { b" " };
            let _ = s.write_all(piece).await;
            let ex = read_until_close(&mut s, Duration::from_millis(300)).await;
            if ex.closed || !ex.data.is_empty() {
                break ex;
            }
            assert!(
                started.elapsed() < HANG,
                "chunked: {chunked}: a trickled body is never cut off"
            );
        };
        let responses = ex.responses();
        assert_eq!(
            ex.statuses(),
            vec![408],
            "chunked: {chunked}: {}",
            ex.text()
        );
        assert_eq!(responses[0].code(), "body_timeout");
        assert!(responses[0].closes());
        env.assert_nothing_reached("slow body");
    }
    env.assert_still_serves().await;
}

/// An HTTP/2 connection that completes the preface and then sends no
/// request holds a connection slot like an idle HTTP/1 connection: it is
/// closed after `server.header_read_timeout` without an open request,
/// although the client answers every PING. A request open longer than that
/// is not cut.
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let env = env_with(|b| b.server("header_read_timeout = \"1s\"")).await;
    let stream = TcpStream::connect(env.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // One request proves the connection works, then it goes idle.
    let request = http::Request::get(format!(
        "http://{}{}",
        env.addr(),
        proxy_path("salesforce", "h2")
    ))
    .header("authorization", format!("Bearer {}", env.alice()))
    .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
    .body(credgate::net::body::empty())
    .unwrap();
    let resp = sender.send_request(request).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // A request open longer than the timeout is not idleness: it finishes.
    let slow = http::Request::get(format!(
        "http://{}{}",
        env.addr(),
        proxy_path("salesforce", "__slow/2500")
    ))
    .header("authorization", format!("Bearer {}", env.alice()))
    .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
    .body(credgate::net::body::empty())
    .unwrap();
    let resp = sender.send_request(slow).await.unwrap();
    assert_eq!(resp.status(), 200, "an open request keeps the connection");
    drop(resp);
    let ended = tokio::time::timeout(HANG, conn).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection is closed by the server"
    );
    env.assert_still_serves().await;
}

/// `server.max_connections`: idle connections fill the slots; one more is
/// closed at once without an answer and counted; once the idle ones time
/// out, new connections are served again.
#[tokio::test]
async fn connections_past_max_connections_are_closed_and_counted() {
    let env = env_with(|b| b.server("max_connections = 50\nheader_read_timeout = \"3s\"")).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(env.addr()).await.unwrap());
    }
    let deadline = Instant::now() + HANG;
    loop {
        let m = scrape_metrics(&env.gw).await;
        if metric(&m, "credgate_connections_active") == 50.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "50 idle connections are held: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = head(
        "GET",
        &proxy_path("salesforce", "full"),
        Some(&env.alice()),
        &[&format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}")],
    ) + "\r\n";
    let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
    assert!(ex.closed, "the 51st connection is closed");
    assert!(ex.data.is_empty(), "and gets no answer: {}", ex.text());
    let m = scrape_metrics(&env.gw).await;
    assert_eq!(
        metric(
            &m,
            "credgate_connections_refused_total{kind=\"max_connections\"}"
        ),
        1.0,
        "{m}"
    );
    env.assert_nothing_reached("past max_connections");

    // The idle ones time out and free their slots.
    for s in &mut idle {
        assert!(closed_within(s, HANG).await, "idle connections time out");
    }
    let deadline = Instant::now() + HANG;
    while metric(
        &scrape_metrics(&env.gw).await,
        "credgate_connections_active",
    ) != 0.0
    {
        assert!(Instant::now() < deadline, "slots are given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.assert_still_serves().await;
}

/// Oversized request heads: too many fields, one huge field, a huge total,
/// are refused by hyper (431) and counted; over HTTP/2 the stream is
/// refused. Nothing reaches Paragon.
#[tokio::test]
async fn huge_header_sets_are_refused_and_counted() {
    let env = env().await;
    let alice = env.alice();
    let before = scrape_metrics(&env.gw).await;
    let path = proxy_path("salesforce", "huge");
    let own = format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}");
    let many: Vec<String> = (0..150).map(|i| format!("X-H{i}: v")).collect();
    let one_huge = format!("X-Big: {}", "b".repeat(70 * 1024));
    let total: Vec<String> = (0..40)
        .map(|i| format!("X-M{i}: {}", "m".repeat(2000)))
        .collect();
    for (what, lines) in [
        ("150 fields", many),
        ("one 70 KiB field", vec![one_huge]),
        ("80 KB in total", total),
    ] {
        let mut h: Vec<&str> = lines.iter().map(String::as_str).collect();
        h.push(&own);
        let request = head("GET", &path, Some(&alice), &h) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert_eq!(
            ex.statuses(),
            vec![431],
            "{what}: {}",
            ex.text().chars().take(300).collect::<String>()
        );
        assert!(ex.closed, "{what}");
    }
    env.assert_nothing_reached("huge heads");
    let counted = |t: &str| {
        metric(
            t,
            "credgate_connection_errors_total{kind=\"header_too_large\"}",
        )
    };
    // Counted as each connection's task ends, which may be just after the
    // client saw the close (on another worker's thread).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape_metrics(&env.gw).await;
        if counted(&after) - counted(&before) >= 3.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // HTTP/2: a header list over server.max_header_bytes.
    let got = h2_client()
        .request(req(
            "GET",
            &env.gw,
            &path,
            Some(&alice),
            &[
                ("x-paragon-credential", DEMO_SALESFORCE_ALICE),
                ("x-big", &"b".repeat(70 * 1024)),
            ],
            "",
        ))
        .await;
    // Either a 431, or the stream refused outright (an error here).
    if let Ok(resp) = got {
        assert_eq!(resp.status(), 431);
    }
    env.assert_nothing_reached("huge HTTP/2 head");
    env.assert_still_serves().await;
}

/// 300 users' first requests at once: the emulator never sees more
/// concurrent `/sdk/me` loads than `cache.max_concurrent_loads`, each user
/// is loaded once, and every request is answered.
#[tokio::test]
async fn a_burst_of_new_users_is_bounded_by_max_concurrent_loads() {
    const USERS: usize = 300;
    const LIMIT: usize = 4;
    let env = env_with(|b| {
        b.server("upstream_timeout = \"60s\"")
            .cache(&format!("max_concurrent_loads = {LIMIT}"))
    })
    .await;
    let users: Vec<String> = (0..USERS).map(|i| format!("burst-{i:03}")).collect();
    for u in &users {
        env.emu.state.add_user(u);
    }
    env.emu.state.set_behaviour(Behaviour {
        me_delay_ms: 40,
        ..Behaviour::default()
    });
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak, state) = (done.clone(), peak.clone(), env.emu.state.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(state.in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let cl = client();
    let mut tasks = Vec::new();
    for u in &users {
        let token = env.keys.member(u, "p");
        let request = req(
            "GET",
            &env.gw,
            &proxy_path("salesforce", "burst"),
            Some(&token),
            &[],
            "",
        );
        let cl = cl.clone();
        tasks.push(tokio::spawn(async move { send(&cl, request).await }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (403, "no_permitted_credential"),
            "{:?}",
            got.body
        );
    }
    done.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= LIMIT, "at most {LIMIT} loads at once, saw {peak}");
    assert!(
        peak >= 2,
        "the loads did overlap (the test can see concurrency): {peak}"
    );
    let loads = env
        .emu
        .state
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/sdk/me"))
        .count();
    assert_eq!(loads, USERS, "one load per user");
    env.assert_nothing_reached("new users without credentials");
    env.emu.state.set_behaviour(Behaviour::default());
    env.assert_still_serves().await;
}

/// A slow Paragon: requests fail with 504 at `server.upstream_timeout`
/// instead of piling up (also twenty at once), a credential-list load that
/// does not answer in time is 503, and the gateway recovers when Paragon
/// does.
#[tokio::test]
async fn a_slow_paragon_times_out_instead_of_piling_up() {
    let env = env_with(|b| b.server("upstream_timeout = \"500ms\"")).await;
    let admin = env.admin();
    let cl = client();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let request = req(
            "GET",
            &env.gw,
            &proxy_path("salesforce", "__slow/20000"),
            Some(&admin),
            &[],
            "",
        );
        let cl = cl.clone();
        tasks.push(tokio::spawn(async move { send(&cl, request).await }));
    }
    for t in tasks {
        let got = tokio::time::timeout(HANG, t)
            .await
            .expect("a slow upstream does not hold the caller")
            .unwrap();
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (504, "upstream_timeout")
        );
    }
    let m = scrape_metrics(&env.gw).await;
    assert_eq!(
        metric(&m, "credgate_upstream_errors_total{kind=\"timeout\"}"),
        20.0,
        "{m}"
    );

    env.emu.state.set_behaviour(Behaviour {
        delay_ms: 3000,
        ..Behaviour::default()
    });
    let got = send(
        &cl,
        req(
            "GET",
            &env.gw,
            &proxy_path("salesforce", "slow-me"),
            Some(&env.alice()),
            &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
            "",
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (503, "credentials_unavailable"),
        "a load that does not answer in time fails closed"
    );
    env.emu.state.set_behaviour(Behaviour::default());
    env.assert_still_serves().await;
}

/// A Paragon that sends `/sdk/me` response headers and then stalls the
/// body: the load is bounded like any upstream wait, so the request is 503
/// instead of hanging (and holding the user's load lock and a load slot).
#[tokio::test]
async fn a_stalled_credential_list_body_is_bounded() {
    let keys = Keys::new();
    let upstream = RawUpstream::spawn(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"authenticated\":true,",
        false,
    )
    .await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&upstream.url()))
        .server("upstream_timeout = \"1s\"")
        .cache("max_concurrent_loads = 1")
        .start()
        .await;
    let cl = client();
    for user in ["acme", "globex"] {
        let token = keys.member(user, "alice");
        let request = req(
            "GET",
            &gw,
            &proxy_path("salesforce", "x"),
            Some(&token),
            &[],
            "",
        );
        let got = tokio::time::timeout(HANG, send(&cl, request))
            .await
            .expect("a stalled /sdk/me body does not hang the request");
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (503, "credentials_unavailable"),
            "{user}"
        );
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Cache integrity
// ---------------------------------------------------------------------------

/// Users whose ids look alike (case, whitespace, separators, invisible
/// characters, a NUL) each get their own credential list: `acme`'s cached
/// list, which holds alice's Salesforce account, never answers for them.
#[tokio::test]
async fn a_cached_list_is_never_used_for_another_user() {
    let env = env().await;
    let look_alikes = [
        "ACME",
        "Acme",
        "acme ",
        " acme",
        "acme\t",
        "acme\u{200b}",
        "acme\u{0430}",
        "acme:alice",
        "acme\u{0}",
        "acme\u{0}alice",
        "acme/x",
        "acme%00",
        "a",
        "a:b",
        "acm",
        "acmee",
    ];
    for u in look_alikes {
        env.emu.state.add_user(u);
    }
    // Warm acme's list.
    env.assert_still_serves().await;
    let cl = client();
    for u in look_alikes {
        env.clear();
        let token = env.keys.member(u, "alice");
        for named in [Some(DEMO_SALESFORCE_ALICE), None] {
            let headers: Vec<(&str, &str)> = named
                .map(|c| vec![("x-paragon-credential", c)])
                .unwrap_or_default();
            let got = send(
                &cl,
                req(
                    "GET",
                    &env.gw,
                    &proxy_path("salesforce", "other-user"),
                    Some(&token),
                    &headers,
                    "",
                ),
            )
            .await;
            let want_code = match (named, u.chars().any(char::is_control)) {
                // The emulator has no such user: the load fails, closed.
                (_, true) => "credentials_unavailable",
                (Some(_), false) => "credential_forbidden",
                (None, false) => "no_permitted_credential",
            };
            assert_eq!(
                got.code(),
                want_code,
                "{u:?} (named: {named:?}): {:?}",
                got.body
            );
        }
        env.assert_nothing_reached(&format!("{u:?}"));
        let loads: Vec<Option<String>> = env
            .emu
            .state
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/sdk/me"))
            .map(|r| r.user.clone())
            .collect();
        if !u.chars().any(char::is_control) {
            assert!(
                loads.iter().all(|l| l.as_deref() == Some(u)) && !loads.is_empty(),
                "{u:?} is loaded as itself: {loads:?}"
            );
        }
    }
    // And acme's own list still answers for acme.
    env.assert_still_serves().await;
}

/// A failed load (Paragon 5xx, `authenticated: false`, a body that does not
/// parse) is 503 and never cached: not as a deny (the next request, once
/// Paragon is back, is served), and not as an allow (an expired list is not
/// used when its reload fails; `cache.stale_if_error` is 0).
#[tokio::test]
async fn failed_loads_are_never_cached_as_allow_or_deny() {
    let env = env_with(|b| b.cache("credentials_ttl = \"300ms\"\nrefresh_cooldown = \"0s\"")).await;
    let alice = env.alice();
    let cl = client();
    let ask = || {
        req(
            "GET",
            &env.gw,
            &proxy_path("salesforce", "cache"),
            Some(&alice),
            &[("x-paragon-credential", DEMO_SALESFORCE_ALICE)],
            "",
        )
    };
    for broken in [
        Behaviour {
            me_status: Some(500),
            ..Behaviour::default()
        },
        Behaviour {
            me_unauthenticated: true,
            ..Behaviour::default()
        },
        Behaviour {
            me_malformed: true,
            ..Behaviour::default()
        },
    ] {
        // Cold, and failing: 503, nothing forwarded.
        env.clear();
        env.gw.state.invalidate(None).await.unwrap();
        env.emu.state.set_behaviour(broken.clone());
        let got = send(&cl, ask()).await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (503, "credentials_unavailable"),
            "{broken:?}"
        );
        env.assert_nothing_reached(&format!("{broken:?}"));
        // Paragon is back: served at once, the failure was not a cached deny.
        env.emu.state.set_behaviour(Behaviour::default());
        let got = send(&cl, ask()).await;
        assert_eq!(got.status, 200, "{broken:?}: {:?}", got.body);
        // The list expires, Paragon fails again: the expired allow is not used.
        env.emu.state.set_behaviour(broken.clone());
        tokio::time::sleep(Duration::from_millis(400)).await;
        env.clear();
        let got = send(&cl, ask()).await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (503, "credentials_unavailable"),
            "{broken:?}"
        );
        env.assert_nothing_reached(&format!("{broken:?} after expiry"));
        env.emu.state.set_behaviour(Behaviour::default());
    }
    // A revoked credential is gone after the next successful load.
    assert!(env.emu.state.remove_credential(DEMO_SALESFORCE_ALICE));
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.clear();
    let got = send(&cl, ask()).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "credential_forbidden")
    );
    env.assert_nothing_reached("revoked");
}

// ---------------------------------------------------------------------------
// Redirects and odd methods
// ---------------------------------------------------------------------------

/// A redirect from Paragon is the caller's to follow: it is passed on as
/// 3xx with its `Location`, and credgate never follows it (with or without
/// the minted token): Paragon sees one request, nothing else is contacted.
#[tokio::test]
async fn redirects_are_passed_on_never_followed() {
    let env = env().await;
    for token in [env.alice(), env.admin()] {
        env.clear();
        let request = head(
            "GET",
            &proxy_path("salesforce", "__redirect"),
            Some(&token),
            &[
                &format!("X-Paragon-Credential: {DEMO_SALESFORCE_ALICE}"),
                "Connection: close",
            ],
        ) + "\r\n";
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        let responses = ex.responses();
        assert_eq!(ex.statuses(), vec![302], "{}", ex.text());
        assert_eq!(
            responses[0].header("location"),
            Some("https://elsewhere.example/x")
        );
        assert!(
            !ex.text().to_ascii_lowercase().contains("authorization"),
            "no token in the redirect: {}",
            ex.text()
        );
        let seen = env.reached();
        assert_eq!(seen.len(), 1, "Paragon saw the one request");
        assert!(seen[0].path.ends_with("/__redirect"));
    }
    env.assert_still_serves().await;
}

/// CONNECT, whose 2xx turns a connection into a tunnel, is 400 on every
/// target (a Paragon route path included, where the upstream client would
/// have sent `CONNECT host:port` instead of the path credgate authorized):
/// nothing reaches Paragon, no tunnel opens.
#[tokio::test]
async fn connect_requests_open_no_tunnel() {
    let keys = Keys::new();
    let (upstream, gw) = RawUpstream::behind_gateway(
        &keys,
        b"HTTP/1.1 200 Connection Established\r\n\r\n",
        false,
        "",
    )
    .await;
    let admin = keys.admin("acme");
    for target in [
        proxy_path("salesforce", "x"),
        "evil.example:443".to_string(),
        format!("{}:443", gw.addr.ip()),
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nAuthorization: Bearer {admin}\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = s.write_all(b"TUNNELLED-BYTES\r\n\r\n").await;
        let ex = read_until_close(&mut s, HANG).await;
        assert_eq!(
            ex.statuses().first(),
            Some(&400),
            "{target}: CONNECT is refused: {}",
            ex.text()
        );
        assert!(
            !ex.statuses().iter().any(|s| (200..300).contains(s)),
            "{target}: no 2xx to CONNECT: {}",
            ex.text()
        );
    }
    let everything = upstream.everything();
    assert!(
        everything.is_empty(),
        "CONNECT never reaches Paragon: {everything}"
    );
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

/// The binary with `--log-format pretty`, its stdout and stderr captured
/// line by line.
struct PrettyBinary {
    child: std::process::Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl PrettyBinary {
    // The child is killed and waited for in `Drop`.
    #[allow(clippy::zombie_processes)]
    fn serve(config: &std::path::Path) -> (PrettyBinary, SocketAddr) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
            .args(["serve", "--log-format", "pretty", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("credgate starts");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(strip_ansi(&line));
                }
            });
        }
        let bin = PrettyBinary { child, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let addr = bin.lines().iter().find_map(|l| {
                if !l.contains("credgate listening") {
                    return None;
                }
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse().ok())
            });
            if let Some(addr) = addr {
                return (bin, addr);
            }
            assert!(
                Instant::now() < deadline,
                "credgate did not start: {:?}",
                bin.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for PrettyBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes ANSI SGR sequences (in case colour is on despite NO_COLOR).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A principal or user claim carrying CR/LF, ESC or NEL cannot start a log
/// line of its own in the human-readable format: each request's audit and
/// access records stay one line each, with the control characters escaped;
/// and a principal with spaces cannot add a field (`decision=allowed`) to
/// its audit line.
#[tokio::test]
async fn claims_with_line_breaks_cannot_forge_log_lines() {
    let keys = Keys::new();
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .unwrap();
    let config = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&emu.url())).toml(),
    );
    let (bin, addr) = PrettyBinary::serve(&config);
    let forged = "2030-01-01T00:00:00.000000Z  INFO credgate::audit: request_id=forged principal=admin decision=allowed reason=forwarded status=200";
    let tokens = [
        keys.caller_token(json!({"sub": "acme", "principal": format!("alice\r\n{forged}")})),
        keys.caller_token(json!({"sub": "acme", "principal": format!("alice\n{forged}")})),
        keys.caller_token(json!({"sub": format!("acme\r\n{forged}"), "principal": "alice"})),
        keys.caller_token(json!({"sub": "acme", "principal": format!("alice\u{1b}[2K\r{forged}")})),
        keys.caller_token(json!({"sub": "acme", "principal": format!("alice\u{85}{forged}")})),
        keys.caller_token(
            json!({"sub": "acme", "principal": "mallory decision=allowed reason=forwarded"}),
        ),
    ];
    let cl = client();
    for token in &tokens {
        let got = send(
            &cl,
            http::Request::get(format!("http://{addr}{}", proxy_path("salesforce", "log")))
                .header("authorization", format!("Bearer {token}"))
                .header("x-paragon-credential", DEMO_SALESFORCE_ALICE)
                .body(credgate::net::body::empty())
                .unwrap(),
        )
        .await;
        assert!(got.status == 403 || got.status == 503, "{:?}", got.body);
    }
    // Wait until every request's access record and audit record (written
    // in batches, within `audit::FLUSH_EVERY`) are out.
    let deadline = Instant::now() + HANG;
    loop {
        let done = bin
            .lines()
            .iter()
            .filter(|l| l.contains("credgate::access") && l.contains("salesforce/log"))
            .count();
        if done >= tokens.len() && audit_records(&keys).len() >= tokens.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit records: {:#?}",
            bin.lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = bin.lines();
    for l in &lines {
        assert!(
            !l.starts_with("2030-01-01"),
            "a claim forged a log line: {l:?}\nall: {lines:#?}"
        );
        assert!(
            !l.chars().any(|c| c.is_control()),
            "a control character reached the log: {l:?}"
        );
    }
    // The audit trail is JSON, one line per request whatever the claims
    // hold: each claim is one escaped string field, forging nothing.
    let audit_text = std::fs::read_to_string(keys.path().join("audit.jsonl")).unwrap();
    for l in audit_text.lines() {
        assert!(!l.starts_with("2030-01-01"), "{l:?}");
        assert!(!l.chars().any(|c| c.is_control()), "{l:?}");
    }
    let records = audit_records(&keys);
    assert_eq!(records.len(), tokens.len(), "{audit_text}");
    let principals: Vec<&str> = records
        .iter()
        .map(|r| r["principal"].as_str().unwrap())
        .collect();
    assert!(
        principals.contains(&format!("alice\r\n{forged}").as_str()),
        "{principals:?}"
    );
    assert!(principals.contains(&"mallory decision=allowed reason=forwarded"));
    assert!(records.iter().all(|r| r["decision"] != "allowed"));
    assert!(emu
        .state
        .requests()
        .iter()
        .all(|r| r.path.ends_with("/sdk/me")));
    drop(bin);
}

// ---------------------------------------------------------------------------
// More spoofing: admin endpoints, method overrides, accountAuth, HTTP/2,
// Expect: 100-continue
// ---------------------------------------------------------------------------

/// The admin listener's endpoints do not exist on the traffic listener:
/// an unauthenticated caller gets 401, an authenticated one 404, and
/// nothing is invalidated or revealed.
#[tokio::test]
async fn admin_endpoints_are_not_served_on_the_traffic_listener() {
    let env = env().await;
    let admin = env.admin();
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/admin/cache/invalidate"),
        ("GET", "/_emulator/requests"),
    ] {
        for (token, status) in [(None, 401), (Some(admin.as_str()), 404)] {
            let got = send(&client(), req(method, &env.gw, path, token, &[], "{}")).await;
            assert_eq!(got.status, status, "{method} {path}: {:?}", got.body);
            assert!(
                !String::from_utf8_lossy(&got.body).contains("credgate_"),
                "{path}"
            );
        }
    }
    env.assert_nothing_reached("admin paths");
}

/// Method-override headers in every spelling are removed, so a `GET`
/// credgate classified (and, for members, filtered) cannot become a
/// `DELETE` at Paragon.
#[tokio::test]
async fn method_overrides_never_reach_paragon() {
    let env = env().await;
    let got = send(
        &client(),
        req(
            "GET",
            &env.gw,
            &proxy_path("salesforce", "override"),
            Some(&env.alice()),
            &[
                ("x-paragon-credential", DEMO_SALESFORCE_ALICE),
                ("X-HTTP-Method-Override", "DELETE"),
                ("x_http_method_override", "DELETE"),
                ("X-HTTP-Method", "DELETE"),
                ("X-Method-Override", "DELETE"),
                ("x-paragon-user-metadata", "{\"admin\":true}"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = env.reached();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    for (name, _) in &seen[0].headers {
        let n = name.replace('_', "-");
        assert!(
            !n.contains("method") && !n.contains("user-metadata"),
            "{name} reached Paragon"
        );
    }
}

/// `includeAccountAuth` (raw provider tokens) in any spelling is refused
/// for members; and whatever query a member sends, no `accountAuth` comes
/// back to them.
#[tokio::test]
async fn members_never_get_account_auth() {
    let env = env().await;
    let alice = env.alice();
    let base = format!("/projects/{PROJECT}/sdk/credentials");
    for q in [
        "includeAccountAuth=true",
        "includeAccountAuth=TRUE",
        "includeAccountAuth=null",
        "includeAccountAuth=1",
        "include%41ccountAuth=true",
        "includeAccountAuth%5B%5D=true",
        "includeAccountAuth[0]=true",
        "includeAccountAuth=false&includeAccountAuth=true",
        "INCLUDEACCOUNTAUTH=true",
        "includeAccountAuth=%74rue",
        "includeAccountAuth=+true+",
    ] {
        env.clear();
        let got = send(
            &client(),
            req(
                "GET",
                &env.gw,
                &format!("{base}?{q}"),
                Some(&alice),
                &[],
                "",
            ),
        )
        .await;
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (403, "operation_forbidden"),
            "{q}"
        );
        env.assert_nothing_reached(q);
    }
    // Spellings credgate lets through are not ones Paragon reads as the
    // parameter; either way the member's answer carries no accountAuth.
    // `false`, `undefined` (Paragon's SDK) and empty do not ask (contract
    // §13): forwarded as one `includeAccountAuth=false`.
    for q in [
        "includeAccountAuth=false",
        "includeAccountAuth=undefined",
        "includeAccountAuth",
        "%20includeAccountAuth=true",
        "x=includeAccountAuth%3Dtrue",
    ] {
        for path in [base.clone(), format!("{base}/{DEMO_SALESFORCE_ALICE}")] {
            let got = send(
                &client(),
                req(
                    "GET",
                    &env.gw,
                    &format!("{path}?{q}"),
                    Some(&alice),
                    &[],
                    "",
                ),
            )
            .await;
            assert_eq!(got.status, 200, "{path}?{q}: {:?}", got.body);
            assert!(
                !String::from_utf8_lossy(&got.body).contains("accountAuth"),
                "{path}?{q}: {:?}",
                got.body
            );
        }
    }
}

/// The header and body attacks over HTTP/2: foreign credentials in any
/// spelling, repeated credential headers and two `Authorization` fields are
/// refused as over HTTP/1.1; an allowed request reaches Paragon with one
/// credential header.
#[tokio::test]
async fn http2_requests_get_the_same_checks() {
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("salesforce", "h2");
    let own = DEMO_SALESFORCE_ALICE;
    let bob = DEMO_SALESFORCE_BOB;
    let h2 = h2_client();
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("x_paragon_credential", bob)], 403),
        (
            vec![("x-paragon-credential", own), ("x_paragon_credential", own)],
            400,
        ),
        (
            vec![("x-paragon-credential", own), ("x-paragon-credential", own)],
            400,
        ),
        (vec![("x-paragon-credential", "a, b")], 400),
        (vec![("x-paragon-credential", own)], 200),
    ];
    for (headers, status) in cases {
        env.clear();
        let got = send(&h2, req("GET", &env.gw, &path, Some(&alice), &headers, "")).await;
        assert_eq!(got.status, status, "{headers:?}: {:?}", got.body);
        if status == 200 {
            let seen = env.reached();
            assert_eq!(seen[0].header_all("x-paragon-credential"), vec![own]);
        } else {
            env.assert_nothing_reached(&format!("{headers:?}"));
        }
    }
    // Two Authorization fields.
    let mut request = req(
        "GET",
        &env.gw,
        &path,
        Some(&alice),
        &[("x-paragon-credential", own)],
        "",
    );
    request
        .headers_mut()
        .append("authorization", format!("Bearer {alice}").parse().unwrap());
    env.clear();
    let got = send(&h2, request).await;
    assert_eq!(got.status, 401);
    env.assert_nothing_reached("two Authorization fields over HTTP/2");
    // A body whose length disagrees with its content-length never reaches
    // Paragon as a complete request with that length.
    env.clear();
    let mut request = req(
        "POST",
        &env.gw,
        &path,
        Some(&alice),
        &[("x-paragon-credential", own)],
        "hello world",
    );
    request
        .headers_mut()
        .insert("content-length", "5".parse().unwrap());
    if let Ok(Ok(resp)) = tokio::time::timeout(HANG, h2.request(request)).await {
        assert_ne!(resp.status(), 200, "a mis-framed HTTP/2 body is not served");
    }
    assert!(
        env.reached().iter().all(|r| r.status != 200),
        "{:?}",
        env.reached()
    );
    env.assert_still_serves().await;
}

/// `Expect: 100-continue` on a request credgate refuses: no `100 Continue`
/// is sent, the refusal closes the connection, and a body sent anyway is
/// never parsed.
#[tokio::test]
async fn expect_continue_on_a_refusal_sends_no_continue() {
    let env = env().await;
    let alice = env.alice();
    let smuggled = smuggled_request(&alice);
    let mut s = TcpStream::connect(env.addr()).await.unwrap();
    let h = head(
        "POST",
        &proxy_path("salesforce", "x"),
        None,
        &[
            "Expect: 100-continue",
            &format!("Content-Length: {}", smuggled.len()),
        ],
    );
    s.write_all(format!("{h}\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(HANG, s.read(&mut buf))
        .await
        .expect("an answer without the body")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    let _ = s.write_all(smuggled.as_bytes()).await;
    let rest = read_until_close(&mut s, HANG).await;
    assert!(rest.closed);
    assert!(
        !format!("{first}{}", rest.text()).contains("100 Continue"),
        "{first}{}",
        rest.text()
    );
    assert_eq!(
        parse_responses(format!("{first}{}", rest.text()).as_bytes()).len(),
        1
    );
    env.assert_nothing_reached("expect-continue");
}

/// `X-Paragon-Configuration-Id` must belong to the routed credential, in
/// every spelling; naming it twice is 400; on a route that routes no
/// credential it is dropped.
#[tokio::test]
async fn configuration_ids_must_belong_to_the_routed_credential() {
    use credgate::emulator::fixtures::{
        DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_1_CONFIG, DEMO_SLACK_ALICE_2,
    };
    let env = env().await;
    let alice = env.alice();
    let path = proxy_path("slack", "cfg");
    let cfg = DEMO_SLACK_ALICE_1_CONFIG;
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (
            vec![
                ("x-paragon-credential", DEMO_SLACK_ALICE_1),
                ("x-paragon-configuration-id", cfg),
            ],
            200,
        ),
        (
            vec![
                ("x-paragon-credential", DEMO_SLACK_ALICE_2),
                ("x-paragon-configuration-id", cfg),
            ],
            403,
        ),
        (
            vec![
                ("x-paragon-credential", DEMO_SLACK_ALICE_2),
                ("X_Paragon_Configuration_Id", cfg),
            ],
            403,
        ),
        (
            vec![
                ("x-paragon-credential", DEMO_SLACK_ALICE_1),
                ("x-paragon-configuration-id", cfg),
                ("x_paragon_configuration_id", cfg),
            ],
            400,
        ),
        (
            vec![
                ("x-paragon-credential", DEMO_SLACK_ALICE_1),
                ("x-paragon-configuration-id", "a, b"),
            ],
            400,
        ),
    ];
    for (headers, status) in cases {
        env.clear();
        let got = send(
            &client(),
            req("GET", &env.gw, &path, Some(&alice), &headers, ""),
        )
        .await;
        assert_eq!(got.status, status, "{headers:?}: {:?}", got.body);
        if status == 200 {
            let seen = env.reached();
            assert_eq!(seen[0].header_all("x-paragon-configuration-id"), vec![cfg]);
        } else {
            env.assert_nothing_reached(&format!("{headers:?}"));
        }
    }
    env.clear();
    let got = send(
        &client(),
        req(
            "GET",
            &env.gw,
            &format!("/projects/{PROJECT}/sdk/integrations"),
            Some(&alice),
            &[("x_paragon_configuration_id", cfg)],
            "",
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = env.reached();
    assert!(seen[0]
        .headers
        .iter()
        .all(|(n, _)| !n.replace('_', "-").contains("configuration-id")));
}

/// Chunk extensions and trailer sections are bounded by hyper: a megabyte
/// of either is refused (or the connection closed), never buffered whole,
/// and nothing reaches Paragon on a buffered route.
#[tokio::test]
async fn huge_chunk_extensions_and_trailers_are_refused() {
    let env = env().await;
    let alice = env.alice();
    let body = format!(
        r#"{{"integration":"salesforce","pipeline":"p","credentialId":"{DEMO_SALESFORCE_ALICE}"}}"#
    );
    for (what, chunked) in [
        (
            "extension",
            format!(
                "{:x};{}\r\n{body}\r\n0\r\n\r\n",
                body.len(),
                "e".repeat(1024 * 1024)
            ),
        ),
        (
            "trailers",
            format!(
                "{:x}\r\n{body}\r\n0\r\n{}\r\n",
                body.len(),
                (0..20_000)
                    .map(|i| format!("X-T{i}: {}\r\n", "t".repeat(40)))
                    .collect::<String>()
            ),
        ),
    ] {
        env.clear();
        let request = format!(
            "{}\r\n{chunked}",
            head(
                "POST",
                "/api/syncs",
                Some(&alice),
                &[
                    "Transfer-Encoding: chunked",
                    "Content-Type: application/json",
                    "TE: trailers"
                ]
            )
        );
        let ex = exchange(env.addr(), request.as_bytes(), HANG).await;
        assert!(ex.closed, "{what}: closed");
        assert!(
            ex.statuses()
                .iter()
                .all(|s| *s == 400 || *s == 431 || *s == 413),
            "{what}: {:?}",
            ex.statuses()
        );
        env.assert_nothing_reached(what);
    }
    env.assert_still_serves().await;
}
