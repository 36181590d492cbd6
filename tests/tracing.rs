//! OpenTelemetry traces (contract §9, `[telemetry]`): a real OTLP/HTTP
//! receiver in the test decodes what credgate exports with the protocol's
//! generated protobuf types; the spans, their links to each other and to
//! the caller's trace, their attributes, the `traceparent` that reached the
//! Paragon emulator, no token in any attribute, and a collector that never
//! answers slowing no request while the spans it cannot take are counted.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use credgate::emulator::fixtures::{DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB};
use harness::*;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the receiver decoded: every span, with its resource's service name.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&[(String, Span)]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !pred(&self.spans()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {:#?}",
                self.spans()
                    .iter()
                    .map(|(_, s)| &s.name)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An OTLP/HTTP collector on loopback: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`.
async fn collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Received::default();
    let got = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        for rs in export.resource_spans {
                            let service = rs
                                .resource
                                .iter()
                                .flat_map(|r| r.attributes.iter())
                                .find(|kv| kv.key == "service.name")
                                .and_then(|kv| string(kv.value.as_ref()))
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for s in ss.spans {
                                    got.0.lock().unwrap().push((service.clone(), s));
                                }
                            }
                        }
                        Ok::<_, Infallible>(http::Response::new(credgate::net::body::empty()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

fn string(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string(kv.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A caller's own trace context.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn traced_env(collector: &str, extra: &str) -> Env {
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{collector}\"\n{extra}");
    Env::with(fixtures(), move |mut b| {
        b.extra_top = telemetry;
        b
    })
    .await
}

/// Alice naming her own Salesforce account with trace headers of her own.
async fn send_traced(env: &Env, rest: &str, trace_headers: &[(&str, &str)]) -> Got {
    env.salesforce_get("alice", rest, DEMO_SALESFORCE_ALICE, trace_headers)
        .await
}

#[tokio::test]
async fn a_request_is_a_server_span_with_its_phases_and_a_client_span_to_paragon() {
    let (url, received) = collector().await;
    let env = traced_env(&url, "").await;
    let alice = env.member("alice");
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let got = send_traced(
        &env,
        "traced",
        &[
            ("traceparent", &traceparent),
            ("tracestate", "caller=secret"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let refused = env
        .salesforce_get("alice", "foreign", DEMO_SALESFORCE_BOB, &[])
        .await;
    assert_eq!(refused.status, 403);
    received
        .wait_for("a server span for each request and a client span", |s| {
            s.len() >= 3
        })
        .await;
    let spans = received.spans();
    let find = |pred: &dyn Fn(&Span) -> bool| -> Span {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| pred(s))
            .cloned()
            .unwrap_or_else(|| panic!("no such span in {spans:#?}"))
    };
    assert!(spans.iter().all(|(service, _)| service == "credgate"));
    // The allowed request's server span.
    let server = find(&|s| s.kind == 2 && attr(s, "url.path").unwrap().ends_with("/traced"));
    assert_eq!(
        attr(&server, "credgate.decision").as_deref(),
        Some("allowed")
    );
    assert_eq!(attr(&server, "credgate.product").as_deref(), Some("proxy"));
    assert_eq!(
        attr(&server, "credgate.integration").as_deref(),
        Some("salesforce")
    );
    assert_eq!(
        attr(&server, "credgate.reason").as_deref(),
        Some("owner_label")
    );
    assert_eq!(
        attr(&server, "http.response.status_code").as_deref(),
        Some("200")
    );
    let events: Vec<&str> = server.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        [
            "authenticate",
            "classify",
            "load_list",
            "decide",
            "rewrite",
            "filter"
        ]
    );
    // The caller is no trusted proxy: its trace is linked, not joined.
    assert!(server.parent_span_id.is_empty(), "a new trace starts here");
    assert_ne!(hex(&server.trace_id), CALLER_TRACE);
    assert_eq!(server.links.len(), 1);
    assert_eq!(hex(&server.links[0].trace_id), CALLER_TRACE);
    assert_eq!(hex(&server.links[0].span_id), CALLER_SPAN);
    assert_eq!(
        server.links[0].trace_state, "",
        "the caller's tracestate is not carried"
    );
    // The call to Paragon: a client span under it.
    let client = find(&|s| s.kind == 3);
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        attr(&client, "http.response.status_code").as_deref(),
        Some("200")
    );
    // What reached the emulator carries the client span's context, and
    // nothing of the caller's.
    let reached: Vec<_> = env
        .traffic()
        .into_iter()
        .filter(|r| r.path.ends_with("/traced"))
        .collect();
    assert_eq!(reached.len(), 1);
    assert_eq!(
        reached[0].header_all("traceparent"),
        vec![format!(
            "00-{}-{}-01",
            hex(&server.trace_id),
            hex(&client.span_id)
        )]
    );
    assert!(reached[0].header_all("tracestate").is_empty());
    // The refused request: a server span of its own, nothing to Paragon.
    let refusal = find(&|s| s.kind == 2 && attr(s, "url.path").unwrap().ends_with("/foreign"));
    assert_eq!(
        attr(&refusal, "credgate.decision").as_deref(),
        Some("refused")
    );
    assert_eq!(
        attr(&refusal, "credgate.code").as_deref(),
        Some("credential_forbidden")
    );
    assert_eq!(
        attr(&refusal, "http.response.status_code").as_deref(),
        Some("403")
    );
    assert!(!spans
        .iter()
        .any(|(_, s)| s.kind == 3 && s.trace_id == refusal.trace_id));
    // No token in any attribute or event of any span.
    for (_, s) in &spans {
        for kv in s
            .attributes
            .iter()
            .chain(s.events.iter().flat_map(|e| e.attributes.iter()))
        {
            let v = string(kv.value.as_ref()).unwrap_or_default();
            assert!(!v.contains(&alice) && !v.contains("eyJ"), "{}: {v}", kv.key);
        }
    }
    // The audit record names the trace.
    let record = wait_for_audit(&env.keys, |r| r["status"] == 200 && r["product"] == "proxy").await;
    assert_eq!(record["trace_id"], hex(&server.trace_id));
}

#[tokio::test]
async fn a_trusted_callers_trace_is_the_parent() {
    let (url, received) = collector().await;
    let env = traced_env(&url, "trust_incoming_trace = true\n").await;
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let got = send_traced(&env, "joined", &[("traceparent", &traceparent)]).await;
    assert_eq!(got.status, 200);
    received.wait_for("both spans", |s| s.len() >= 2).await;
    let spans = received.spans();
    let server = spans.iter().map(|(_, s)| s).find(|s| s.kind == 2).unwrap();
    assert_eq!(hex(&server.trace_id), CALLER_TRACE);
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert!(server.links.is_empty());
    // An unsampled trusted parent is honoured: nothing is exported for it.
    let unsampled = format!("00-{}-{CALLER_SPAN}-00", "a".repeat(32));
    let got = send_traced(&env, "unsampled", &[("traceparent", &unsampled)]).await;
    assert_eq!(got.status, 200);
    let reached = env
        .traffic()
        .into_iter()
        .find(|r| r.path.ends_with("/unsampled"))
        .unwrap();
    let sent = reached.header_all("traceparent");
    assert!(
        sent[0].starts_with(&format!("00-{}-", "a".repeat(32))) && sent[0].ends_with("-00"),
        "{sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !received
            .spans()
            .iter()
            .any(|(_, s)| hex(&s.trace_id) == "a".repeat(32)),
        "an unsampled trace is not exported"
    );
}

#[tokio::test]
async fn a_collector_that_never_answers_slows_no_request_and_drops_are_counted() {
    // Accepts connections and never reads or answers: every export hangs
    // until its own timeout.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", black_hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = black_hole.accept().await {
            held.push(s);
        }
    });
    let env = traced_env(&url, "max_queued_spans = 4\n").await;
    for i in 0..40 {
        let answered = tokio::time::timeout(
            Duration::from_secs(2),
            env.salesforce_get("alice", &format!("n{i}"), DEMO_SALESFORCE_ALICE, &[]),
        )
        .await
        .expect("answered while the collector hangs (an export takes up to 5 s)");
        assert_eq!(answered.status, 200);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let dropped = metric(
        &scrape_metrics(&env.gw).await,
        "credgate_trace_spans_dropped_total",
    );
    assert!(
        dropped > 0.0,
        "spans beyond the queue are dropped and counted"
    );
    assert!(dropped <= 80.0);
}

#[tokio::test]
async fn an_unsampled_request_exports_nothing_and_still_tells_paragon() {
    let (url, received) = collector().await;
    let env = traced_env(&url, "sample_ratio = 0.0\n").await;
    let got = env
        .salesforce_get("alice", "quiet", DEMO_SALESFORCE_ALICE, &[])
        .await;
    assert_eq!(got.status, 200);
    let reached = env
        .traffic()
        .into_iter()
        .find(|r| r.path.ends_with("/quiet"))
        .unwrap();
    let sent = reached.header_all("traceparent");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("00-") && sent[0].ends_with("-00"),
        "{sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        received.spans().is_empty(),
        "nothing sampled, nothing exported"
    );
}
