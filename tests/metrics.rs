//! contract §9: the Prometheus metrics of the admin listener move by exactly
//! one for each event they count. Every test scrapes `/metrics` before and
//! after one action and asserts the exact delta of the series concerned:
//! the credential cache (misses, loads, hits, load errors), upstream errors
//! by kind (connect, timeout), client connection errors by kind
//! (malformed), and `requests` by product, decision and status.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use credgate::app::Running;
use credgate::emulator::Behaviour;
use harness::*;
use http::StatusCode;
use serde_json::json;

/// A `/metrics` scrape taken before an action.
struct Before<'g> {
    gw: &'g Running,
    text: String,
}

impl<'g> Before<'g> {
    async fn take(gw: &'g Running) -> Before<'g> {
        Before {
            gw,
            text: scrape_metrics(gw).await,
        }
    }

    /// The deltas of `series` since the scrape, read once now.
    async fn deltas(&self, series: &[&str]) -> Vec<f64> {
        let now = scrape_metrics(self.gw).await;
        series
            .iter()
            .map(|s| metric(&now, s) - metric(&self.text, s))
            .collect()
    }

    /// Asserts the exact delta of every `(series, delta)`. Counters that
    /// are bumped after the response (a connection's end) may lag a little:
    /// scrapes until every expected delta is reached (at most 5 s), then
    /// once more after a pause so that an overshoot is seen too.
    async fn assert_deltas(&self, expected: &[(&str, f64)]) {
        let series: Vec<&str> = expected.iter().map(|(s, _)| *s).collect();
        let want: Vec<f64> = expected.iter().map(|(_, d)| *d).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.deltas(&series).await;
            if got.iter().zip(&want).all(|(g, w)| g >= w) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = self.deltas(&series).await;
        let now = scrape_metrics(self.gw).await;
        for ((s, w), g) in expected.iter().zip(&got) {
            assert_eq!(
                g,
                w,
                "delta of {s}: expected {w}, got {g}\n--- before ---\n{}\n--- after ---\n{now}",
                relevant(&self.text),
                now = relevant(&now)
            );
        }
    }
}

/// The sample lines of an exposition (no `# HELP`/`# TYPE`, no histogram
/// buckets), to keep failure messages readable.
fn relevant(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        .collect::<Vec<_>>()
        .join("\n")
}

const HITS: &str = "credgate_credential_cache_hits_total";
const MISSES: &str = "credgate_credential_cache_misses_total";
const LOADS: &str = "credgate_credential_cache_loads_total";
const LOAD_ERRORS: &str = "credgate_credential_cache_load_errors_total";
const UPSTREAM_CONNECT: &str = "credgate_upstream_errors_total{kind=\"connect\"}";
const UPSTREAM_TIMEOUT: &str = "credgate_upstream_errors_total{kind=\"timeout\"}";
const UPSTREAM_OTHER: &str = "credgate_upstream_errors_total{kind=\"other\"}";
const CONN_MALFORMED: &str = "credgate_connection_errors_total{kind=\"malformed\"}";

fn requests(product: &str, decision: &str, status: u16) -> String {
    format!(
        "credgate_requests_total{{product=\"{product}\",decision=\"{decision}\",status=\"{status}\"}}"
    )
}

/// A loopback port nothing listens on: bound, read, released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// Issue 29: the error counters exist at 0 before the first error, so an
/// alert on their rate has a series to read.
#[tokio::test]
async fn error_counters_exist_before_the_first_error() {
    let env = Env::start().await;
    let text = scrape_metrics(&env.gw).await;
    for series in [
        r#"credgate_upstream_errors_total{kind="connect"}"#,
        r#"credgate_upstream_errors_total{kind="timeout"}"#,
        r#"credgate_upstream_errors_total{kind="other"}"#,
        r#"credgate_connections_refused_total{kind="max_connections"}"#,
        r#"credgate_connections_refused_total{kind="tls_handshake"}"#,
        r#"credgate_connections_refused_total{kind="tls_handshake_timeout"}"#,
        "credgate_upstream_retries_total",
    ] {
        assert_eq!(metric(&text, series), 0.0, "{series} in\n{text}");
        assert!(text.contains(&format!("{series} 0")), "{series}");
    }
    env.gw.shutdown().await;
}

/// A member's first request for a user the cache has never seen is one miss
/// and one `/sdk/me` load; the same user's second request is one hit, with
/// no miss and no load.
#[tokio::test]
async fn cache_miss_and_load_on_first_request_then_hit_on_second() {
    let env = Env::start().await;
    let alice = env.member("alice");
    let sf = p("/sdk/proxy/salesforce/x");

    let before = Before::take(&env.gw).await;
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    before
        .assert_deltas(&[(MISSES, 1.0), (LOADS, 1.0), (HITS, 0.0), (LOAD_ERRORS, 0.0)])
        .await;
    assert_eq!(env.loads().len(), 1, "one /sdk/me load reached Paragon");

    let before = Before::take(&env.gw).await;
    let got = env.send_as("GET", &sf, &alice, SF_ALICE, "").await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    before
        .assert_deltas(&[(HITS, 1.0), (MISSES, 0.0), (LOADS, 0.0), (LOAD_ERRORS, 0.0)])
        .await;
    assert_eq!(env.loads().len(), 1, "no second /sdk/me load");
    env.gw.shutdown().await;
}

/// Paragon answering `/sdk/me` with 500: one load, one load error, and the
/// request is 503 `credentials_unavailable` (counted as failed). An error
/// status is an answer, not an upstream transport error.
#[tokio::test]
async fn a_failed_sdk_me_load_counts_one_load_error_and_is_503() {
    let env = Env::start().await;
    env.state().set_behaviour(Behaviour {
        me_status: Some(500),
        ..Behaviour::default()
    });
    let alice = env.member("alice");

    let before = Before::take(&env.gw).await;
    let got = env
        .send_as("GET", &p("/sdk/proxy/salesforce/x"), &alice, SF_ALICE, "")
        .await;
    env.assert_refused(&got, 503, "credentials_unavailable");
    before
        .assert_deltas(&[
            (LOAD_ERRORS, 1.0),
            (LOADS, 1.0),
            (MISSES, 1.0),
            (HITS, 0.0),
            (UPSTREAM_CONNECT, 0.0),
            (UPSTREAM_TIMEOUT, 0.0),
            (UPSTREAM_OTHER, 0.0),
            (&requests("proxy", "failed", 503), 1.0),
        ])
        .await;
    assert_eq!(env.loads().len(), 1, "exactly one /sdk/me attempt");
    env.gw.shutdown().await;
}

/// Paragon's proxy host refusing connections (a closed loopback port): one
/// `upstream_errors{kind="connect"}`, and 502 `upstream_unavailable`.
#[tokio::test]
async fn a_refused_upstream_connection_counts_one_connect_error_and_is_502() {
    let keys = Keys::new();
    let paragon = acme_paragon(Duration::from_secs(30)).await;
    let mut hosts = Hosts::all(&paragon.url());
    hosts.proxy = format!("http://127.0.0.1:{}", closed_port());
    let gw = ConfigBuilder::new(&keys, hosts).start().await;
    let cl = client();
    let alice = keys.member("acme", "alice");
    let path = p("/sdk/proxy/salesforce/x");

    let before = Before::take(&gw).await;
    let got = get_naming(&cl, &gw, &path, &alice, ACME_SF_ALICE).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (502, "upstream_unavailable"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );
    before
        .assert_deltas(&[
            (UPSTREAM_CONNECT, 1.0),
            (UPSTREAM_TIMEOUT, 0.0),
            (UPSTREAM_OTHER, 0.0),
            (LOAD_ERRORS, 0.0),
            (&requests("proxy", "failed", 502), 1.0),
        ])
        .await;
    gw.shutdown().await;
}

/// 504 `upstream_timeout`, or what came instead.
fn assert_upstream_timeout(got: &Got) {
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (504, "upstream_timeout"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );
}

/// Paragon not answering within `server.upstream_timeout`: one
/// `upstream_errors{kind="timeout"}`, and 504 `upstream_timeout`.
#[tokio::test]
async fn an_upstream_past_the_timeout_counts_one_timeout_error_and_is_504() {
    let keys = Keys::new();
    let paragon = acme_paragon(Duration::from_secs(30)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&paragon.url()))
        .server("upstream_timeout = \"300ms\"")
        .start()
        .await;
    let cl = client();
    let alice = keys.member("acme", "alice");
    let path = p("/sdk/proxy/salesforce/slow");

    let before = Before::take(&gw).await;
    let started = Instant::now();
    let got = get_naming(&cl, &gw, &path, &alice, ACME_SF_ALICE).await;
    let took = started.elapsed();
    assert_upstream_timeout(&got);
    assert!(
        took < Duration::from_secs(10),
        "answered after the 300ms timeout, not the upstream's 30s: {took:?}"
    );
    assert!(
        paragon.requests().iter().any(|r| r.path.contains("/slow")),
        "the request did reach Paragon"
    );
    before
        .assert_deltas(&[
            (UPSTREAM_TIMEOUT, 1.0),
            (UPSTREAM_CONNECT, 0.0),
            (UPSTREAM_OTHER, 0.0),
            (LOAD_ERRORS, 0.0),
            (&requests("proxy", "failed", 504), 1.0),
        ])
        .await;
    gw.shutdown().await;
}

/// Every request on one kept-alive client connection gets its own
/// `server.upstream_timeout`, counted from when it is sent, although the
/// connection's requests share one timer (forward.rs, `answer_due`): a
/// timer still armed for an earlier request neither cuts a later one short
/// nor lets it wait past its own deadline.
#[tokio::test]
async fn requests_on_one_connection_each_get_the_whole_upstream_timeout() {
    let keys = Keys::new();
    // "/slow" answers after 200 ms (within the 300 ms timeout), "/stuck"
    // after 30 s (past it), anything else at once.
    let paragon = spawn_recorder(Arc::new(|r: Recorded| {
        Box::pin(async move {
            if r.path.ends_with("/sdk/me") {
                return json_response(
                    StatusCode::OK,
                    me_body("acme", &[(ACME_SF_ALICE, "salesforce", "alice")]),
                );
            }
            if r.path.contains("/slow") {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if r.path.contains("/stuck") {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            json_response(StatusCode::OK, json!({"ok": true}))
        })
    }))
    .await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&paragon.url()))
        .server("upstream_timeout = \"300ms\"")
        .start()
        .await;
    let cl = client();
    let alice = keys.member("acme", "alice");
    let alice_gets = |tail: &'static str| {
        let path = p(&format!("/sdk/proxy/salesforce/{tail}"));
        let (cl, gw, alice) = (&cl, &gw, &alice);
        async move { get_naming(cl, gw, &path, alice, ACME_SF_ALICE).await }
    };
    let accepted = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("credgate_connections_accepted_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = Before::take(&gw).await;

    // A quick answer arms the connection's timer for 300 ms after it.
    let got = alice_gets("quick").await;
    assert_eq!(got.status, StatusCode::OK);
    // 150 ms later, an answer that takes 200 ms: the timer fires for the
    // first request's deadline while this one waits, and must not cut it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let got = alice_gets("slow").await;
    assert_eq!(
        got.status,
        StatusCode::OK,
        "a 200 ms answer within the 300 ms timeout: {}",
        String::from_utf8_lossy(&got.body)
    );
    // The timer fires again with nothing waiting; then a request whose
    // answer never comes is cut at its own 300 ms, not at once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let started = Instant::now();
    let got = alice_gets("stuck").await;
    let took = started.elapsed();
    assert_upstream_timeout(&got);
    assert!(
        took >= Duration::from_millis(300),
        "cut before its own 300 ms by a timer armed for an earlier request: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "not cut at all: {took:?}");
    // All three on one client connection (so one shared timer).
    let now = scrape_metrics(&gw).await;
    assert_eq!(accepted(&now) - accepted(&before.text), 1.0);
    before
        .assert_deltas(&[
            (UPSTREAM_TIMEOUT, 1.0),
            (&requests("proxy", "allowed", 200), 2.0),
            (&requests("proxy", "failed", 504), 1.0),
        ])
        .await;
    gw.shutdown().await;
}

/// Garbage instead of a request line: hyper answers 400 itself and the
/// connection counts one `connection_errors{kind="malformed"}`; no request
/// reaches the pipeline, so `requests` does not move.
#[tokio::test]
async fn a_garbage_request_line_counts_one_malformed_connection_error() {
    let keys = Keys::new();
    let paragon = acme_paragon(Duration::from_secs(30)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&paragon.url()))
        .start()
        .await;

    let before = Before::take(&gw).await;
    let answered = raw(gw.addr, b"GARBAGE\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(
        statuses(&answered),
        vec![400],
        "hyper's own 400: {answered:?}"
    );
    before
        .assert_deltas(&[
            (CONN_MALFORMED, 1.0),
            (&requests("none", "refused", 400), 0.0),
            (&requests("none", "refused", 401), 0.0),
        ])
        .await;
    assert!(paragon.requests().is_empty(), "nothing reached Paragon");
    gw.shutdown().await;
}

/// One allowed (200), one refused (403 `credential_forbidden`) and one
/// unauthenticated (401) request: each adds exactly 1 to its own
/// `requests{product, decision, status}` series and nothing to the others.
#[tokio::test]
async fn requests_are_counted_once_by_product_decision_and_status() {
    let keys = Keys::new();
    let paragon = acme_paragon(Duration::from_secs(30)).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&paragon.url()))
        .start()
        .await;
    let cl = client();
    let alice = keys.member("acme", "alice");
    let path = p("/sdk/proxy/salesforce/x");
    let allowed = requests("proxy", "allowed", 200);
    let forbidden = requests("proxy", "refused", 403);
    let unauthenticated = requests("none", "refused", 401);
    let as_alice = |cred: &'static str| {
        req(
            "GET",
            &gw,
            &path,
            Some(&alice),
            &[("x-paragon-credential", cred)],
            "",
        )
    };

    let before = Before::take(&gw).await;
    let got = send(&cl, as_alice(ACME_SF_ALICE)).await;
    assert_eq!(got.status, StatusCode::OK);
    before
        .assert_deltas(&[(&allowed, 1.0), (&forbidden, 0.0), (&unauthenticated, 0.0)])
        .await;

    let before = Before::take(&gw).await;
    let got = send(&cl, as_alice(ACME_SF_BOB)).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (403, "credential_forbidden")
    );
    before
        .assert_deltas(&[(&allowed, 0.0), (&forbidden, 1.0), (&unauthenticated, 0.0)])
        .await;

    let before = Before::take(&gw).await;
    let got = send(&cl, req("GET", &gw, &path, None, &[], "")).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (401, "unauthenticated")
    );
    before
        .assert_deltas(&[(&allowed, 0.0), (&forbidden, 0.0), (&unauthenticated, 1.0)])
        .await;

    let forwarded: Vec<_> = paragon
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/sdk/proxy/"))
        .collect();
    assert_eq!(forwarded.len(), 1, "only the allowed request was forwarded");
    gw.shutdown().await;
}
