//! Lifecycle and response hygiene: SIGTERM with `server.shutdown_grace`
//! (contract §2) on the real binary, ActionKit bodies read only when no
//! credential is named (contract §5, §7 "only bodies that must be read are
//! buffered"), and hop-by-hop headers stripped from Paragon's responses
//! (contract §7).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use credgate::net::body;
use http::{Request, Response, StatusCode};

/// Waits until the upstream has received a request whose path contains
/// `needle` (the recorder logs a request before its handler runs).
async fn wait_for_upstream(p: &Recorder, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.requests().iter().any(|r| r.path.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "the upstream never saw {needle:?}: {:?}",
            p.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the child until it exits or `limit` passes; returns the exit
/// status (None: still running) and how long it took.
async fn wait_exit(
    bin: &mut Binary,
    since: Instant,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, Duration) {
    loop {
        if let Some(status) = bin.child.try_wait().unwrap() {
            return (Some(status), since.elapsed());
        }
        if since.elapsed() > limit {
            return (None, since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET that may fail (the gateway may close the connection under it).
async fn try_get(url: String, token: String) -> Result<StatusCode, String> {
    let r = Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(body::empty())
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(20), client().request(r)).await {
        Err(_) => Err("no response within 20s".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(resp)) => {
            let status = resp.status();
            use http_body_util::BodyExt;
            resp.into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?;
            Ok(status)
        }
    }
}

#[tokio::test]
async fn sigterm_exits_once_the_grace_has_passed_even_with_a_request_still_running() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_secs(10)).await;
    // upstream_timeout well above the 10s answer, so only the grace can end
    // the request early.
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url()))
            .server("shutdown_grace = \"1s\"")
            .server("upstream_timeout = \"30s\"")
            .toml(),
    );
    let mut bin = Binary::serve(&path, &[]);
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/slow"));
    let in_flight = tokio::spawn(try_get(url, keys.admin("acme")));
    wait_for_upstream(&p, "/slow").await;

    bin.signal("TERM");
    let sent = Instant::now();
    bin.wait_for_log("shutting down").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(bin.addr).await.is_err(),
        "the listener is closed once shutdown starts"
    );

    let (status, took) = wait_exit(&mut bin, sent, Duration::from_secs(8)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {took:?} after SIGTERM with shutdown_grace = 1s; log:\n{}",
            bin.log_text()
        )
    });
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM: expected about the 1s grace, not the 10s upstream answer; log:\n{}",
        bin.log_text()
    );
    assert!(
        took >= Duration::from_millis(800),
        "exited after only {took:?}: the in-flight request should have had the 1s grace"
    );
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM (contract §2: exit 0); log:\n{}",
        bin.log_text()
    );
    assert!(
        bin.log_text().contains("grace expired"),
        "the log says the grace ran out: {}",
        bin.log_text()
    );
    // The cut-off request never got a 200.
    let got = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the client sees the connection end once the process exits")
        .unwrap();
    assert!(
        got.as_ref().map(|s| *s != StatusCode::OK).unwrap_or(true),
        "the request cut off by the grace did not complete: {got:?}"
    );
}

#[tokio::test]
async fn sigterm_lets_a_request_finish_within_the_grace_and_then_exits() {
    let keys = Keys::new();
    let p = acme_paragon(Duration::from_millis(300)).await;
    let path = keys.dir.write(
        "credgate.toml",
        &ConfigBuilder::new(&keys, Hosts::all(&p.url()))
            .server("shutdown_grace = \"5s\"")
            .toml(),
    );
    let mut bin = Binary::serve(&path, &[]);
    let url = bin.url(&format!("/projects/{PROJECT}/sdk/proxy/salesforce/slow"));
    let in_flight = tokio::spawn(try_get(url, keys.admin("acme")));
    wait_for_upstream(&p, "/slow").await;

    bin.signal("TERM");
    let sent = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request ends")
        .unwrap();
    assert_eq!(
        got,
        Ok(StatusCode::OK),
        "the in-flight request finished within the grace; log:\n{}",
        bin.log_text()
    );

    let (status, took) = wait_exit(&mut bin, sent, Duration::from_secs(10)).await;
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {took:?} after SIGTERM; log:\n{}",
            bin.log_text()
        )
    });
    assert!(
        status.success(),
        "exit status {status:?} after a graceful shutdown (contract §2: exit 0)"
    );
    // Nothing was left in flight, so there is no reason to sit out the 5s.
    assert!(
        took < Duration::from_millis(4500),
        "exited {took:?} after SIGTERM although the only request finished after ~300ms; log:\n{}",
        bin.log_text()
    );
    assert!(
        !bin.log_text().contains("grace expired"),
        "the grace did not run out: {}",
        bin.log_text()
    );
}

/// The acme Paragon stand-in behind a gateway whose body cap is 1 KiB.
async fn capped_at_1_kib(keys: &Keys) -> (Recorder, credgate::app::Running) {
    let p = acme_paragon(Duration::ZERO).await;
    let gw = ConfigBuilder::new(keys, Hosts::all(&p.url()))
        .server("max_body_bytes = 1024")
        .start()
        .await;
    (p, gw)
}

#[tokio::test]
async fn actionkit_bodies_stream_when_a_credential_is_named_and_are_capped_otherwise() {
    let keys = Keys::new();
    let (p, gw) = capped_at_1_kib(&keys).await;
    let alice = keys.member("acme", "alice");
    let actions = format!("/projects/{PROJECT}/actions");
    // A valid ActionKit call padded to 64 KiB: without the cap, the action
    // name alone would resolve alice's one Salesforce credential.
    let prefix = r#"{"action":"SALESFORCE_CREATE_RECORD","parameters":{"pad":""#;
    let suffix = r#""}}"#;
    let pad = 64 * 1024 - prefix.len() - suffix.len();
    let big = format!("{prefix}{}{suffix}", "p".repeat(pad));
    assert_eq!(big.len(), 64 * 1024);

    // Named: the body is not read for resolution, so it streams whole.
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &actions,
            Some(&alice),
            &[
                ("content-type", "application/json"),
                ("x-paragon-credential", ACME_SF_ALICE),
            ],
            big.clone(),
        ),
    )
    .await;
    assert_eq!(
        got.status,
        200,
        "named credential, 64 KiB ActionKit body: {:?}",
        String::from_utf8_lossy(&got.body)
    );
    let seen: Vec<Recorded> = p
        .requests()
        .into_iter()
        .filter(|r| r.path == actions)
        .collect();
    assert_eq!(seen.len(), 1, "forwarded once");
    assert_eq!(seen[0].body.len(), big.len(), "every byte reached Paragon");
    assert_eq!(&seen[0].body[..], big.as_bytes(), "unchanged");
    assert_eq!(
        seen[0]
            .headers
            .get_all("x-paragon-credential")
            .iter()
            .collect::<Vec<_>>(),
        vec![ACME_SF_ALICE],
    );

    // Also in another spelling of the header: still named, still streamed.
    p.clear();
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &actions,
            Some(&alice),
            &[("X_Paragon_Credential", ACME_SF_ALICE)],
            big.clone(),
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen: Vec<Recorded> = p
        .requests()
        .into_iter()
        .filter(|r| r.path == actions)
        .collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.len(), big.len());

    // Not named: the body must be read to find the integration, so the cap
    // applies, and nothing reaches the ActionKit host.
    p.clear();
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &actions,
            Some(&alice),
            &[("content-type", "application/json")],
            big.clone(),
        ),
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (413, "body_too_large")
    );
    assert!(
        !p.requests().iter().any(|r| r.path == actions),
        "a refused body never reaches Paragon"
    );

    // The same without a Content-Length (chunked): refused once it passes
    // the cap.
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    for chunk in big.as_bytes().chunks(4096) {
        tx.send(bytes::Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(tx);
    let r = Request::post(format!("http://{}{}", gw.addr, actions))
        .header("authorization", format!("Bearer {alice}"))
        .body(body::stream(ChannelBody(rx)))
        .unwrap();
    let got = send(&client(), r).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (413, "body_too_large"),
        "chunked, no credential named"
    );
    assert!(!p.requests().iter().any(|r| r.path == actions));

    // A small body without a credential still resolves from the action.
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &actions,
            Some(&alice),
            &[("content-type", "application/json")],
            r#"{"action":"SALESFORCE_CREATE_RECORD","parameters":{}}"#,
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let last = p
        .requests()
        .into_iter()
        .rfind(|r| r.path == actions)
        .unwrap();
    assert_eq!(last.headers["x-paragon-credential"], ACME_SF_ALICE);

    // An admin naming none is passed through unchanged (admin_default =
    // "passthrough"): no resolution, so the body is not read and streams.
    p.clear();
    let got = send(
        &client(),
        req(
            "POST",
            &gw,
            &actions,
            Some(&keys.admin("acme")),
            &[("content-type", "application/json")],
            big.clone(),
        ),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
    let seen: Vec<Recorded> = p
        .requests()
        .into_iter()
        .filter(|r| r.path == actions)
        .collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], big.as_bytes());
    assert!(seen[0].headers.get("x-paragon-credential").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_from_paragon_are_not_passed_to_the_caller() {
    let keys = Keys::new();
    let p = spawn_recorder(Arc::new(|r: Recorded| {
        Box::pin(async move {
            if r.path.ends_with("/sdk/me") {
                return json_response(
                    StatusCode::OK,
                    me_body("acme", &[(ACME_SF_ALICE, "salesforce", "alice")]),
                );
            }
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("connection", "x-internal, keep-alive")
                .header("x-internal", "secret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "x")
                .header("proxy-connection", "keep-alive")
                .header("x-ok", "1")
                .body(body::full(r#"{"ok":true}"#))
                .unwrap()
        })
    }))
    .await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&p.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    for (who, token) in [("member", alice), ("admin", keys.admin("acme"))] {
        for (proto, c) in [("http/1.1", client()), ("h2", h2_client())] {
            let got = send(
                &c,
                req(
                    "GET",
                    &gw,
                    &format!("/projects/{PROJECT}/sdk/proxy/salesforce/hop"),
                    Some(&token),
                    &[],
                    "",
                ),
            )
            .await;
            assert_eq!(got.status, 200, "{who} {proto}: {:?}", got.body);
            for name in [
                "connection",
                "x-internal",
                "keep-alive",
                "proxy-authenticate",
                "proxy-connection",
            ] {
                assert!(
                    got.headers.get(name).is_none(),
                    "{who} {proto}: {name} reached the caller: {:?}",
                    got.headers
                );
            }
            assert_eq!(got.headers["x-ok"], "1", "{who} {proto}");
            assert_eq!(&got.body[..], br#"{"ok":true}"#, "{who} {proto}");
        }
    }
    gw.shutdown().await;
}

/// A client still sending a body credgate refused (413 here) reads the
/// answer: the connection closes with a lingering close (FIN after the
/// answer, the rest of the body read and discarded), not with the reset a
/// socket closed over unread data sends, which can destroy the answer.
#[tokio::test]
async fn a_refused_body_still_being_sent_gets_its_answer_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = Keys::new();
    let (p, gw) = capped_at_1_kib(&keys).await;
    let alice = keys.member("acme", "alice");
    let size = 256 * 1024;
    for round in 0..5 {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let head = format!(
            "POST /projects/{PROJECT}/actions HTTP/1.1\r\nhost: credgate\r\n\
             authorization: Bearer {alice}\r\ncontent-type: application/json\r\n\
             content-length: {size}\r\n\r\n"
        );
        let writer = tokio::spawn(async move {
            write.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b' '; 16 * 1024];
            // Slower than credgate's answer: most of the body is still to
            // come when credgate has refused it.
            for _ in 0..size / chunk.len() {
                write.write_all(&chunk).await?;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok::<_, std::io::Error>(())
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer))
            .await
            .expect("the connection is closed after the answer");
        assert!(
            read.is_ok(),
            "round {round}: {read:?} after {} bytes",
            answer.len()
        );
        assert!(
            answer.starts_with(b"HTTP/1.1 413"),
            "round {round}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // And the body the client was still sending was taken, not reset
        // (what an HTTP client library needs to hand over the answer).
        let sent = writer.await.unwrap();
        assert!(
            sent.is_ok(),
            "round {round}: writing the body failed: {sent:?}"
        );
    }
    assert!(p.requests().iter().all(|r| !r.path.ends_with("/actions")));
}
