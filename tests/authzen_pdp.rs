//! credgate asking an AuthZEN decision point (contract §14, `[authzen]
//! pdp_url`), end to end: the gateway in front of the Paragon emulator,
//! and a decision point written here to the AuthZEN 1.0 wire format (the
//! `openid/authzen` repository's `api/authorization-api-1_0.md`: the
//! Access Evaluation and Access Evaluations APIs with their default
//! values and evaluation semantics, bearer authentication, `X-Request-ID`
//! echoed) on 127.0.0.1:0, over plain HTTP or TLS, scripted to permit some
//! (principal, credential) pairs or to fail in the ways a real one can.
//!
//! The world (`harness::fixtures`): Connected User `acme` with alice
//! (Salesforce, two Slack, Google Drive), bob (Salesforce, Slack), carol
//! (Salesforce, Google Drive) and dave (Slack), each account labelled with
//! its owner (`owner_external_id = "{principal}"`). erin owns nothing: what
//! she may use comes from the decision point, and from an ACL grant of
//! carol's Drive.

mod common;
#[path = "common/emulator.rs"]
mod harness;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use credgate::emulator::{self, EmulatorConfig};
use credgate::paragon::permissions::claim_for;
use harness::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The bearer token credgate sends the decision point.
const PDP_TOKEN: &str = "pdp-bearer-0123456789";
/// The bearer token of credgate's own AuthZEN endpoints.
const SERVE_TOKEN: &str = "authzen-serve-token-0123456789";

/// How the scripted decision point answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As the spec says, from its permitted pairs.
    Answer,
    /// 500 with an error message.
    Status500,
    /// A 200 whose body is not JSON.
    NotJson,
    /// `{"decision": "true"}` (a string, not a boolean).
    NotBool,
    /// Answers after 2 s.
    Slow,
    /// A batch answer missing its last decision.
    Short,
}

/// One question the decision point received.
#[derive(Debug, Clone)]
struct Asked {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Debug)]
struct PdpState {
    permits: Mutex<HashSet<(String, String)>>,
    mode: Mutex<Mode>,
    asked: Mutex<Vec<Asked>>,
}

/// The scripted decision point.
struct Pdp {
    addr: SocketAddr,
    https: bool,
    state: Arc<PdpState>,
}

impl Pdp {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn permit(&self, principal: &str, credential: &str) {
        let mut p = self.state.permits.lock().unwrap();
        p.insert((principal.to_string(), credential.to_string()));
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.state.asked.lock().unwrap().len()
    }
}

/// Starts the decision point; `tls`: a certificate for 127.0.0.1 (whose
/// PEM is returned, to be trusted through `paragon.ca_file`).
async fn spawn_pdp(tls: bool) -> (Pdp, Option<String>) {
    let state = Arc::new(PdpState {
        permits: Mutex::new(HashSet::new()),
        mode: Mutex::new(Mode::Answer),
        asked: Mutex::new(Vec::new()),
    });
    let (acceptor, ca) = if tls {
        let (a, pem) = tls_acceptor();
        (Some(a), Some(pem))
    } else {
        (None, None)
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (st, acceptor) = (st.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = service_fn(move |r: Request<Incoming>| {
                    let st = st.clone();
                    async move { Ok::<_, std::convert::Infallible>(serve(&st, r).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (
        Pdp {
            addr,
            https: tls,
            state,
        },
        ca,
    )
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), cert.pem())
}

fn answer(
    status: StatusCode,
    body: impl Into<Bytes>,
    request_id: Option<&str>,
) -> Response<credgate::net::body::Body> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(id) = request_id {
        b = b.header("x-request-id", id);
    }
    b.body(credgate::net::body::full(body.into())).unwrap()
}

/// One request to the decision point: bearer checked, then the mode.
async fn serve(st: &PdpState, r: Request<Incoming>) -> Response<credgate::net::body::Body> {
    let (parts, body) = r.into_parts();
    let raw = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    st.asked.lock().unwrap().push(Asked {
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        body: v.clone(),
    });
    let rid = parts
        .headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok());
    let bearer = format!("Bearer {PDP_TOKEN}");
    if parts
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        != Some(&bearer)
    {
        return answer(StatusCode::UNAUTHORIZED, "\"unauthenticated\"", rid);
    }
    let batch = parts.uri.path() == "/access/v1/evaluations";
    if parts.method != "POST" || !(batch || parts.uri.path() == "/access/v1/evaluation") {
        return answer(StatusCode::NOT_FOUND, "\"not found\"", rid);
    }
    let mode = *st.mode.lock().unwrap();
    match mode {
        Mode::Status500 => return answer(StatusCode::INTERNAL_SERVER_ERROR, "\"boom\"", rid),
        Mode::NotJson => return answer(StatusCode::OK, "decision: yes", rid),
        Mode::NotBool => return answer(StatusCode::OK, r#"{"decision":"true"}"#, rid),
        Mode::Slow => tokio::time::sleep(Duration::from_secs(2)).await,
        Mode::Answer | Mode::Short => {}
    }
    let permits = st.permits.lock().unwrap().clone();
    let decide = |q: &Value| -> Option<bool> {
        let (s, a, r) = (q.get("subject")?, q.get("action")?, q.get("resource")?);
        let (sid, rid) = (s.get("id")?.as_str()?, r.get("id")?.as_str()?);
        s.get("type")?.as_str()?;
        r.get("type")?.as_str()?;
        Some(
            s["type"] == "member"
                && a.get("name")? == "use"
                && r["type"] == "credential"
                && permits.contains(&(sid.to_string(), rid.to_string())),
        )
    };
    let items = v
        .get("evaluations")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty());
    let Some(items) = items.filter(|_| batch) else {
        // One evaluation (an evaluations request without items is one too).
        return match decide(&v) {
            Some(d) => answer(StatusCode::OK, json!({"decision": d}).to_string(), rid),
            None => answer(StatusCode::BAD_REQUEST, "\"bad request\"", rid),
        };
    };
    // Default values: the top-level keys, overridden per item.
    let semantic = v["options"]["evaluations_semantic"]
        .as_str()
        .unwrap_or("execute_all");
    let mut out = Vec::new();
    for item in items {
        let mut q = json!({});
        for k in ["subject", "action", "resource", "context"] {
            if let Some(x) = item.get(k).or_else(|| v.get(k)) {
                q[k] = x.clone();
            }
        }
        let Some(d) = decide(&q) else {
            return answer(StatusCode::BAD_REQUEST, "\"bad request\"", rid);
        };
        out.push(json!({"decision": d}));
        if (semantic == "deny_on_first_deny" && !d) || (semantic == "permit_on_first_permit" && d) {
            break;
        }
    }
    if mode == Mode::Short {
        out.pop();
    }
    answer(StatusCode::OK, json!({"evaluations": out}).to_string(), rid)
}

/// The gateway before the emulator and `pdp`, erin granted carol's Drive by
/// the ACL, a deny rule refusing erin Slack accounts; `authzen` lines and
/// `paragon` lines besides.
async fn start(pdp: &Pdp, authzen: &str, paragon: &str) -> (Env, TempDir) {
    let dir = TempDir::new("authzen-pdp");
    let acl = dir.write(
        "acl.toml",
        &format!("[[grant]]\nprincipal = \"erin\"\ncredentials = [\"{CAROL_DRIVE}\"]\n"),
    );
    let rules = dir.write(
        "rules.toml",
        "[[rule]]\nname = \"no-slack-for-erin\"\neffect = \"deny\"\nwhen = \"caller.principal == 'erin' && credential.integration == 'slack' && request.product == 'proxy'\"\n",
    );
    let keys = Keys::new();
    let fixtures = fixtures();
    let known = known_of(&fixtures);
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures,
        public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
    })
    .await
    .expect("the emulator starts");
    let mut b = ConfigBuilder::new(&keys, Hosts::all(&emu.url()))
        .policy(&format!(
            "acl_file = \"{}\"\nrules_file = \"{}\"",
            acl.display(),
            rules.display()
        ))
        .paragon(paragon);
    b.extra_top = format!(
        "[authzen]\npdp_url = \"{}\"\npdp_token_env = \"PDP_TOKEN\"\n{authzen}\n",
        pdp.url()
    );
    let env_vars = HashMap::from([
        ("PDP_TOKEN".to_string(), PDP_TOKEN.to_string()),
        (
            "CREDGATE_AUTHZEN_TOKEN".to_string(),
            SERVE_TOKEN.to_string(),
        ),
    ]);
    let cfg = credgate::config::Config::from_toml(&b.toml(), keys.path(), &env_vars)
        .unwrap_or_else(|e| panic!("config invalid: {e}"));
    // The effective config names the decision point and its token's env
    // var, never the token, and reads back as the same settings.
    let printed = cfg.to_effective_toml();
    assert!(
        printed.contains("pdp_token_env = \"PDP_TOKEN\""),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("pdp_url = \"{}/\"", pdp.url())),
        "{printed}"
    );
    assert!(!printed.contains(PDP_TOKEN), "{printed}");
    let again = credgate::config::Config::from_toml(&printed, keys.path(), &env_vars)
        .expect("the effective config reads back");
    assert_eq!(again.authzen, cfg.authzen);
    let gw = credgate::app::start(cfg).await.expect("gateway starts");
    let env = Env {
        keys,
        emu,
        gw,
        cl: client(),
        known,
    };
    (env, dir)
}

fn proxy(integration: &str) -> String {
    p(&format!("/sdk/proxy/{integration}/things"))
}

async fn errors(env: &Env) -> f64 {
    metric(
        &env.metrics_text().await,
        "credgate_authzen_pdp_errors_total",
    )
}

/// The newest audit record of the request that answered `got`.
async fn record_of(env: &Env, got: &Got) -> Value {
    let id = rid(got);
    wait_for_audit(&env.keys, |r| r["request_id"] == id.as_str()).await
}

#[tokio::test]
async fn a_member_gets_the_accounts_the_decision_point_permits_and_no_other() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("erin", SF_BOB);
    let (env, _dir) = start(&pdp, "serve = true", "").await;
    let erin = env.member("erin");
    let text = env.metrics_text().await;
    assert!(
        text.contains("\ncredgate_authzen_pdp_errors_total 0\n"),
        "the error counter is exported at 0 before the first error:\n{text}"
    );

    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["decision"].as_str(), r["reason"].as_str()),
        (Some("allowed"), Some("pdp"))
    );
    assert_eq!(r["credential"], SF_BOB);

    // The one question: the spec's shape, credgate's own bearer and this
    // request's id, nothing of the caller's.
    let asked = pdp.asked();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let q = &asked[0];
    assert_eq!(q.path, "/access/v1/evaluation");
    assert_eq!(
        q.body,
        json!({
            "subject": {"type": "member", "id": "erin", "properties": {"user": "acme"}},
            "action": {"name": "use"},
            "resource": {"type": "credential", "id": SF_BOB, "properties": {"integration": "salesforce", "externalId": "bob"}},
        })
    );
    let header = |n: &str| {
        q.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {PDP_TOKEN}")));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("x-request-id"), Some(rid(&got)));
    for (name, v) in &q.headers {
        assert!(
            !v.as_bytes()
                .windows(erin.len())
                .any(|w| w == erin.as_bytes()),
            "the caller's token reached the decision point in {name}"
        );
    }

    // Another's account the decision point does not permit: the refusal a
    // member gets without a grant.
    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, SF_ALICE, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(record_of(&env, &got).await["reason"], "no_grant");
    assert_eq!(pdp.hits(), 2);

    // A credential not in the user's list is never asked about.
    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, UNKNOWN, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(pdp.hits(), 2, "asked about a credential not in the list");

    // A member's own account (owner label) needs no question.
    let got = env
        .send_as(
            "GET",
            &proxy("salesforce"),
            &env.member("alice"),
            SF_ALICE,
            "",
        )
        .await;
    env.assert_routed(&got, SF_ALICE, Place::Header);
    assert_eq!(pdp.hits(), 2);

    // /admin/decide shows the decision point's part (from the cache).
    let (status, v) = env
        .admin_post(
            "/admin/decide",
            json!({"identity": {"user": "acme", "principal": "erin"}, "method": "GET",
                   "path": proxy("salesforce"), "headers": {"x-paragon-credential": SF_BOB}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["decision"].as_str(), v["reason"].as_str()),
        (Some("allowed"), Some("pdp")),
        "{v}"
    );
    assert!(
        v["explanation"]
            .as_str()
            .unwrap()
            .contains("authzen.pdp_url"),
        "{v}"
    );
    assert_eq!(pdp.hits(), 2, "the answer came from the cache");

    // credgate's own AuthZEN evaluation decides as the gateway does.
    let r = Request::post(format!("http://{}/access/v1/evaluation", env.gw.admin_addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SERVE_TOKEN}"))
        .body(credgate::net::body::full(
            json!({"subject": {"type": "member", "id": "erin", "properties": {"user": "acme"}},
                   "action": {"name": "use"}, "resource": {"type": "credential", "id": SF_BOB}})
            .to_string(),
        ))
        .unwrap();
    let got = send(&env.cl, r).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["decision"], true);
    assert_eq!(got.json()["context"]["reason"], "pdp");
    assert_eq!(errors(&env).await, 0.0);

    // The access review and the subject search say these grants exist and
    // cannot be listed, rather than leaving them out.
    let asked = pdp.hits();
    let r = Request::get(format!(
        "http://{}/admin/access?user=acme",
        env.gw.admin_addr
    ))
    .body(credgate::net::body::empty())
    .unwrap();
    let review = send(&env.cl, r).await.json();
    let bob = review["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == SF_BOB)
        .unwrap_or_else(|| panic!("{review}"));
    let pdp_entry = bob["access"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["grant"] == "pdp")
        .unwrap_or_else(|| panic!("{bob}"));
    assert_eq!(pdp_entry["enumerable"], false, "{pdp_entry}");
    let r = Request::post(format!("http://{}/access/v1/search/subject", env.gw.admin_addr))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {SERVE_TOKEN}"))
        .body(credgate::net::body::full(
            json!({"subject": {"type": "member"}, "action": {"name": "use"},
                   "resource": {"type": "credential", "id": SF_BOB, "properties": {"user": "acme"}}})
            .to_string(),
        ))
        .unwrap();
    let search = send(&env.cl, r).await.json();
    assert!(
        search["context"]["not_enumerable"]
            .as_array()
            .unwrap_or_else(|| panic!("{search}"))
            .iter()
            .any(|n| n.as_str().unwrap().contains("authzen.pdp_url")),
        "{search}"
    );
    assert_eq!(
        pdp.hits(),
        asked,
        "a review asks the decision point nothing"
    );
}

#[tokio::test]
async fn answers_are_cached_for_the_ttl_and_asked_again_after_it() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("erin", SF_BOB);
    let (env, _dir) = start(&pdp, "pdp_cache_ttl = \"1s\"", "").await;
    let erin = env.member("erin");
    for _ in 0..3 {
        let got = env
            .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
            .await;
        env.assert_routed(&got, SF_BOB, Place::Header);
        // A refusal is an answer too, and cached alike.
        let got = env
            .send_as("GET", &proxy("salesforce"), &erin, SF_ALICE, "")
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
    }
    assert_eq!(pdp.hits(), 2, "one question per credential within the TTL");
    // Another principal is another question.
    let got = env
        .send_as(
            "GET",
            &proxy("salesforce"),
            &env.member("frank"),
            SF_BOB,
            "",
        )
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(pdp.hits(), 3);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    assert_eq!(pdp.hits(), 4, "asked again after the TTL");
}

#[tokio::test]
async fn a_failing_decision_point_permits_nothing_and_is_counted() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("erin", SF_BOB);
    pdp.permit("erin", SF_ALICE);
    let (env, _dir) = start(&pdp, "pdp_timeout = \"200ms\"", "").await;
    let erin = env.member("erin");
    assert_eq!(errors(&env).await, 0.0);
    let mut expected = 0.0;
    for mode in [Mode::Status500, Mode::NotJson, Mode::NotBool, Mode::Slow] {
        pdp.set(mode);
        let started = Instant::now();
        let got = env
            .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
            .await;
        env.assert_refused(&got, 403, "credential_forbidden");
        assert_eq!(
            record_of(&env, &got).await["reason"],
            "no_grant",
            "{mode:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{mode:?}: bounded by pdp_timeout"
        );
        expected += 1.0;
        assert_eq!(errors(&env).await, expected, "{mode:?}");
    }
    // A batch answer that leaves a question out: the listing shows nothing
    // the decision point would have granted.
    pdp.set(Mode::Short);
    let got = env
        .send("GET", &p("/sdk/credentials"), &erin, &[], "")
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(listed(&got), BTreeSet::from([CAROL_DRIVE.to_string()]));
    assert_eq!(errors(&env).await, expected + 1.0);
    // Failures are not cached: the decision point back, the grant is too.
    pdp.set(Mode::Answer);
    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    assert_eq!(errors(&env).await, expected + 1.0);
}

#[tokio::test]
async fn a_deny_rule_beats_the_decision_points_permit() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("erin", SLACK_BOB);
    let (env, _dir) = start(&pdp, "", "").await;
    let got = env
        .send_as("GET", &proxy("slack"), &env.member("erin"), SLACK_BOB, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    let r = record_of(&env, &got).await;
    assert_eq!(
        (r["reason"].as_str(), r["rule"].as_str()),
        (Some("rule"), Some("no-slack-for-erin"))
    );
    assert_eq!(r["credential"], SLACK_BOB);
    // The grant holds where the rule does not reach (a listing).
    let got = env
        .send("GET", &p("/sdk/credentials"), &env.member("erin"), &[], "")
        .await;
    assert!(listed(&got).contains(SLACK_BOB), "{:?}", got.body);
}

/// The credential ids of a `/sdk/credentials` answer.
fn listed(got: &Got) -> BTreeSet<String> {
    got.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn a_listing_asks_one_batch_and_shows_exactly_what_the_member_may_use() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("erin", SF_BOB);
    pdp.permit("erin", DAVE_SLACK);
    let (env, _dir) = start(&pdp, "", "").await;
    let erin = env.member("erin");
    let got = env
        .send("GET", &p("/sdk/credentials"), &erin, &[], "")
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let may_use = BTreeSet::from([
        SF_BOB.to_string(),
        DAVE_SLACK.to_string(),
        CAROL_DRIVE.to_string(),
    ]);
    assert_eq!(listed(&got), may_use);
    // One batch, about every credential of the list no other grant covers.
    let asked = pdp.asked();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].path, "/access/v1/evaluations");
    let b = &asked[0].body;
    assert_eq!(
        b["subject"],
        json!({"type": "member", "id": "erin", "properties": {"user": "acme"}})
    );
    assert_eq!(b["action"], json!({"name": "use"}));
    let ids: BTreeSet<String> = b["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["resource"]["type"], "credential");
            assert!(e["resource"]["properties"]["integration"].is_string());
            e["resource"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let all: BTreeSet<String> = env.known.iter().map(|k| k.id.clone()).collect();
    let mut expected = all.clone();
    expected.remove(CAROL_DRIVE);
    assert_eq!(
        ids, expected,
        "every credential but the ACL-granted one, once"
    );
    // The token Paragon got lists exactly those.
    let fwd = env.forwarded(&got);
    assert_eq!(fwd.len(), 1);
    let claims = env.upstream_claims(&fwd[0]);
    let pairs: Vec<(String, String)> = may_use
        .iter()
        .map(|id| (env.cred(id).integration.clone(), id.clone()))
        .collect();
    assert_eq!(
        claims[PERMS],
        claim_for(pairs.iter().map(|(i, c)| (i.as_str(), c.as_str())))
    );
    // Within the TTL the listing, a named request and a default come from
    // the cache.
    let got = env
        .send("GET", &p("/sdk/credentials"), &erin, &[], "")
        .await;
    assert_eq!(listed(&got), may_use);
    let got = env
        .send_as("GET", &proxy("salesforce"), &erin, SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    assert_eq!(pdp.hits(), 1);
}

#[tokio::test]
async fn the_default_credential_is_chosen_with_one_batch() {
    let (pdp, _) = spawn_pdp(false).await;
    pdp.permit("frank", SF_BOB);
    let (env, _dir) = start(&pdp, "", "").await;
    // No credential named: the one Salesforce account the decision point
    // permits is the default.
    let got = env
        .send("GET", &proxy("salesforce"), &env.member("frank"), &[], "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    let asked = pdp.asked();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].path, "/access/v1/evaluations");
    let ids: BTreeSet<&str> = asked[0].body["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([SF_ALICE, SF_BOB, CAROL_SF]),
        "the Salesforce accounts only"
    );
    // Two permitted: the member must name one.
    pdp.permit("gina", SF_BOB);
    pdp.permit("gina", CAROL_SF);
    let got = env
        .send("GET", &proxy("salesforce"), &env.member("gina"), &[], "")
        .await;
    env.assert_refused(&got, 400, "credential_required");
    let v = got.json();
    let candidates: BTreeSet<&str> = v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(candidates, BTreeSet::from([SF_BOB, CAROL_SF]));
}

#[tokio::test]
async fn admins_are_never_asked_about() {
    let (pdp, _) = spawn_pdp(false).await;
    let (env, _dir) = start(&pdp, "", "").await;
    let admin = env.admin();
    let got = env
        .send_as("GET", &proxy("salesforce"), &admin, SF_BOB, "")
        .await;
    assert!(got.status.is_success());
    assert_eq!(
        credential_headers(&env.forwarded(&got)[0]),
        vec![SF_BOB.to_string()]
    );
    assert_eq!(record_of(&env, &got).await["reason"], "admin");
    let got = env
        .send("GET", &p("/sdk/credentials"), &admin, &[], "")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(listed(&got).len(), env.known.len());
    assert_eq!(pdp.hits(), 0, "{:#?}", pdp.asked());
}

#[tokio::test]
async fn an_https_decision_point_is_trusted_through_paragon_ca_file_only() {
    let (pdp, ca) = spawn_pdp(true).await;
    pdp.permit("erin", SF_BOB);
    let dir = TempDir::new("pdp-ca");
    let ca_file = dir.write("pdp-ca.pem", &ca.unwrap());
    // Without the CA: the certificate does not verify, nothing is granted.
    let (env, _d) = start(&pdp, "", "").await;
    let got = env
        .send_as("GET", &proxy("salesforce"), &env.member("erin"), SF_BOB, "")
        .await;
    env.assert_refused(&got, 403, "credential_forbidden");
    assert_eq!(errors(&env).await, 1.0);
    assert_eq!(
        pdp.hits(),
        0,
        "nothing was sent to an unverified decision point"
    );
    drop(env);
    // With it (the trust every outbound client of credgate uses).
    let (env, _d) = start(&pdp, "", &format!("ca_file = \"{}\"", ca_file.display())).await;
    let got = env
        .send_as("GET", &proxy("salesforce"), &env.member("erin"), SF_BOB, "")
        .await;
    env.assert_routed(&got, SF_BOB, Place::Header);
    assert_eq!(pdp.hits(), 1);
    assert_eq!(errors(&env).await, 0.0);
}
