//! Response filtering fails closed (contract §7 "Responses"): on the routes
//! credgate narrows for a member (`GET /sdk/me`, `GET /sdk/credentials`,
//! `GET /sdk/credentials/{id}`, `GET /api/syncs`) it asks Paragon for an
//! uncompressed body, and a 2xx body it cannot parse or whose shape it does
//! not know is 502 `upstream_unavailable`, never passed on unfiltered.
//! Admins get Paragon's body untouched; non-2xx answers pass through.
//!
//! A hand-written Paragon answers credgate's own `/sdk/me` lookup (the
//! credential list) correctly and the route under test with a scripted body.

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use credgate::net::body::{self, Body};
use http::{Response, StatusCode};
use serde_json::{json, Value};

const SF_ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const SF_BOB: &str = "b0b00000-0000-4000-8000-000000000001";
const SYNC: &str = "5e5e0000-0000-4000-8000-000000000001";

/// What Paragon answers on the route under test.
#[derive(Clone)]
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Bytes,
}

impl Scripted {
    fn new(status: u16, headers: &[(&'static str, &'static str)], body: impl Into<Bytes>) -> Self {
        Scripted {
            status,
            headers: headers.to_vec(),
            body: body.into(),
        }
    }

    fn json(status: u16, v: Value) -> Self {
        Scripted::new(
            status,
            &[("content-type", "application/json")],
            v.to_string(),
        )
    }

    fn response(&self) -> Response<Body> {
        let mut r = Response::new(body::full(self.body.clone()));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap();
        for (k, v) in &self.headers {
            r.headers_mut().insert(*k, v.parse().unwrap());
        }
        r
    }
}

struct Fake {
    paragon: Recorder,
    script: Arc<Mutex<Option<Scripted>>>,
}

impl Fake {
    fn script(&self, s: Scripted) {
        *self.script.lock().unwrap() = Some(s);
        self.paragon.clear();
    }

    /// The requests Paragon received other than credgate's own credential
    /// lookups.
    fn forwarded(&self, keys: &Keys) -> Vec<Recorded> {
        self.paragon
            .requests()
            .into_iter()
            .filter(|r| !is_lookup(keys, r))
            .collect()
    }
}

/// credgate's own `GET /sdk/me` (the credential list) is made with an admin
/// token, which carries no permissions claim; a member's forwarded `GET
/// /sdk/me` carries one.
fn is_lookup(keys: &Keys, r: &Recorded) -> bool {
    if r.method != "GET" || !r.path.ends_with("/sdk/me") {
        return false;
    }
    let Some(auth) = r.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    keys.decode_upstream(auth)
        .get("urn:useparagon:connect:permissions")
        .is_none()
}

/// Paragon for user `acme`: alice's and bob's salesforce credentials. The
/// credential lookup is always answered correctly; every other request gets
/// the script when one is set, else a well-formed answer.
async fn fake_paragon(keys: Arc<Keys>) -> Fake {
    let script: Arc<Mutex<Option<Scripted>>> = Arc::new(Mutex::new(None));
    let me = me_body(
        "acme",
        &[
            (SF_ALICE, "salesforce", "alice"),
            (SF_BOB, "salesforce", "bob"),
        ],
    );
    let script2 = script.clone();
    let paragon = spawn_recorder(Arc::new(move |r: Recorded| {
        let script = script2.clone();
        let keys = keys.clone();
        let me = me.clone();
        Box::pin(async move {
            if is_lookup(&keys, &r) {
                return json_response(StatusCode::OK, me);
            }
            if let Some(s) = script.lock().unwrap().clone() {
                return s.response();
            }
            if r.path.ends_with("/sdk/me") {
                return json_response(StatusCode::OK, me);
            }
            if r.path.ends_with("/sdk/credentials") {
                return json_response(
                    StatusCode::OK,
                    json!([{"id": SF_ALICE, "integrationId": "salesforce"}, {"id": SF_BOB, "integrationId": "salesforce"}]),
                );
            }
            if r.path.contains("/sdk/credentials/") {
                return json_response(StatusCode::OK, json!({"id": SF_ALICE}));
            }
            if r.path == "/api/syncs" {
                return json_response(StatusCode::OK, json!({"data": []}));
            }
            json_response(StatusCode::OK, json!({"echo": r.path}))
        })
    }))
    .await;
    Fake { paragon, script }
}

struct Setup {
    keys: Arc<Keys>,
    fake: Fake,
    gw: credgate::app::Running,
    alice: String,
    admin: String,
    cl: TestClient,
}

async fn setup() -> Setup {
    let keys = Arc::new(Keys::new());
    let fake = fake_paragon(keys.clone()).await;
    let gw = ConfigBuilder::new(&keys, Hosts::all(&fake.paragon.url()))
        .start()
        .await;
    let alice = keys.member("acme", "alice");
    let admin = keys.admin("acme");
    Setup {
        keys,
        fake,
        gw,
        alice,
        admin,
        cl: client(),
    }
}

fn credentials() -> String {
    format!("/projects/{PROJECT}/sdk/credentials")
}

fn credential() -> String {
    format!("/projects/{PROJECT}/sdk/credentials/{SF_ALICE}")
}

fn me() -> String {
    format!("/projects/{PROJECT}/sdk/me")
}

/// The four routes credgate narrows for members.
fn filtered_routes() -> Vec<String> {
    vec![credentials(), credential(), me(), "/api/syncs".to_string()]
}

impl Setup {
    async fn get(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Got {
        send(
            &self.cl,
            req("GET", &self.gw, path, Some(token), headers, ""),
        )
        .await
    }

    /// Asserts a 502 `upstream_unavailable` refusal that leaks none of
    /// `secrets`, and that the scripted route was actually reached.
    fn assert_refused(&self, got: &Got, path: &str, secrets: &[&str]) {
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (502, "upstream_unavailable"),
            "{path}: {:?}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(got.headers["content-type"], "application/json", "{path}");
        let text = String::from_utf8_lossy(&got.body);
        for s in secrets {
            assert!(!text.contains(s), "{path}: {s:?} leaked in {text}");
        }
        let reached: Vec<String> = self
            .fake
            .forwarded(&self.keys)
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(reached, vec![path.to_string()], "{path}");
    }
}

/// Case 1: a member's request on a filtered route reaches Paragon without
/// `Accept-Encoding`; a well-formed answer is narrowed to the member's own.
#[tokio::test]
async fn member_filtered_requests_go_out_without_accept_encoding() {
    let s = setup().await;
    for path in filtered_routes() {
        s.fake.paragon.clear();
        let got = s
            .get(&path, &s.alice, &[("Accept-Encoding", "gzip, br")])
            .await;
        assert_eq!(got.status, 200, "{path}: {:?}", got.body);
        let fwd = s.fake.forwarded(&s.keys);
        assert_eq!(fwd.len(), 1, "{path}");
        assert!(
            fwd[0].headers.get("accept-encoding").is_none(),
            "{path}: Paragon was asked for {:?}",
            fwd[0].headers.get("accept-encoding")
        );
        let text = String::from_utf8_lossy(&got.body);
        assert!(!text.contains(SF_BOB), "{path}: {text}");
    }
    // The list itself is narrowed, not emptied.
    let got = s.get(&credentials(), &s.alice, &[]).await;
    assert_eq!(
        got.json(),
        json!([{"id": SF_ALICE, "integrationId": "salesforce"}])
    );
    s.gw.shutdown().await;
}

/// Case 2: a 2xx body that is not JSON is 502, and its text is not relayed.
#[tokio::test]
async fn member_gets_502_for_a_non_json_body() {
    let s = setup().await;
    for path in filtered_routes() {
        s.fake.script(Scripted::new(
            200,
            &[("content-type", "text/plain")],
            "not json",
        ));
        let got = s.get(&path, &s.alice, &[]).await;
        s.assert_refused(&got, &path, &["not json"]);
    }
    // A JSON content type does not make a truncated body parse.
    s.fake.script(Scripted::new(
        200,
        &[("content-type", "application/json")],
        format!(r#"[{{"id":"{SF_BOB}"}}"#),
    ));
    let got = s.get(&credentials(), &s.alice, &[]).await;
    s.assert_refused(&got, &credentials(), &[SF_BOB]);
    s.gw.shutdown().await;
}

/// Case 3: a compressed 2xx body (whatever its bytes) is 502.
#[tokio::test]
async fn member_gets_502_for_a_compressed_body() {
    let s = setup().await;
    for enc in ["gzip", "br", "GZIP"] {
        for path in filtered_routes() {
            s.fake.script(Scripted::new(
                200,
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", enc),
                ],
                &b"\x1f\x8bcompressed-bytes"[..],
            ));
            let got = s.get(&path, &s.alice, &[("accept-encoding", "gzip")]).await;
            s.assert_refused(&got, &path, &["compressed-bytes"]);
            assert!(got.headers.get("content-encoding").is_none(), "{path}");
        }
    }
    s.gw.shutdown().await;
}

/// Case 4: well-formed JSON in a shape credgate does not know is 502, and
/// the credential id it names is not relayed.
#[tokio::test]
async fn member_gets_502_for_an_unknown_credential_shape() {
    let s = setup().await;
    for (path, body) in [
        (credentials(), json!({"data": [{"id": SF_BOB}]})),
        (credentials(), json!({"credentials": [{"id": SF_BOB}]})),
        (
            credentials(),
            json!({"data": [{"id": SF_ALICE}, {"id": SF_BOB}]}),
        ),
        (credential(), json!({"data": [{"id": SF_BOB}]})),
        (credential(), json!({"credentialId": SF_BOB})),
        (me(), json!({"user": {"allCredentials": [{"id": SF_BOB}]}})),
        (me(), json!({"integrations": [{"credentialId": SF_BOB}]})),
    ] {
        s.fake.script(Scripted::json(200, body.clone()));
        let got = s.get(&path, &s.alice, &[]).await;
        s.assert_refused(&got, &path, &[SF_BOB]);
    }
    s.gw.shutdown().await;
}

/// Case 5: a sync list that is a bare array rather than `{"data": [...]}`
/// is 502.
#[tokio::test]
async fn member_gets_502_for_a_bare_array_sync_list() {
    let s = setup().await;
    for body in [
        json!([{"id": "s1", "credentialId": SF_BOB}]),
        json!([{"id": SYNC, "credentialId": SF_BOB}]),
        json!({"syncs": [{"id": SYNC, "credentialId": SF_BOB}]}),
        json!({"data": {"id": SYNC, "credentialId": SF_BOB}}),
    ] {
        s.fake.script(Scripted::json(200, body.clone()));
        let got = s.get("/api/syncs", &s.alice, &[]).await;
        s.assert_refused(&got, "/api/syncs", &[SF_BOB, SYNC, "s1"]);
    }
    s.gw.shutdown().await;
}

/// Case 6: admins' responses are not filtered, so the same bodies reach
/// an admin byte for byte.
#[tokio::test]
async fn admin_gets_paragons_body_unchanged() {
    let s = setup().await;
    let bare_syncs = format!(r#"[{{"id":"s1","credentialId":"{SF_BOB}"}}]"#);
    let unknown = format!(r#"{{"data":[{{"id":"{SF_BOB}"}}],  "n":1.50}}"#);
    for (path, ct, body) in [
        (credentials(), "text/plain", "not json".to_string()),
        (credentials(), "application/json", unknown.clone()),
        (credential(), "text/plain", "not json".to_string()),
        (credential(), "application/json", unknown.clone()),
        ("/api/syncs".to_string(), "application/json", bare_syncs),
        (
            "/api/syncs".to_string(),
            "text/plain",
            "not json".to_string(),
        ),
    ] {
        s.fake
            .script(Scripted::new(200, &[("content-type", ct)], body.clone()));
        let got = s.get(&path, &s.admin, &[]).await;
        assert_eq!(got.status, 200, "{path}: {:?}", got.body);
        assert_eq!(
            String::from_utf8_lossy(&got.body),
            body,
            "{path}: admin body changed"
        );
        assert_eq!(got.headers["content-type"], ct, "{path}");
        assert_eq!(s.fake.forwarded(&s.keys).len(), 1, "{path}");
    }
    s.gw.shutdown().await;
}

/// Case 7: a non-2xx answer on a filtered route carries no credential list
/// and passes through as Paragon sent it, status and body.
#[tokio::test]
async fn non_2xx_on_filtered_routes_passes_through_unfiltered() {
    let s = setup().await;
    let not_found = json!({"message": "Credential not found", "id": SF_BOB});
    for path in filtered_routes() {
        s.fake.script(Scripted::json(404, not_found.clone()));
        let got = s.get(&path, &s.alice, &[]).await;
        assert_eq!(got.status, 404, "{path}: {:?}", got.body);
        assert_eq!(got.json(), not_found, "{path}");
        assert_eq!(got.headers["content-type"], "application/json", "{path}");

        // Not JSON and not 2xx: still relayed, not turned into a 502.
        s.fake.script(Scripted::new(
            500,
            &[("content-type", "text/plain")],
            "not json",
        ));
        let got = s.get(&path, &s.alice, &[]).await;
        assert_eq!(got.status, 500, "{path}");
        assert_eq!(&got.body[..], b"not json", "{path}");
    }
    s.gw.shutdown().await;
}

/// contract §7: an `/sdk/me` entry whose primary credential is another
/// member's is rebuilt from an allow-list: the fields that describe that
/// credential (its `configuredWorkflows`, `sharedSettings`, fields credgate
/// does not know) do not reach the member; an `allCredentials` that is not
/// an array is 502.
#[tokio::test]
async fn sdk_me_entries_around_a_foreign_primary_are_rebuilt() {
    let s = setup().await;
    let entry = |all: Value| {
        json!({"authenticated": true, "integrations": {"salesforce": {
            "enabled": true,
            "credentialId": SF_BOB,
            "credentialStatus": "VALID",
            "providerId": "P-BOB",
            "configuredWorkflows": {"wf-1": {"enabled": true, "settings": {"channel": "bob-private"}}},
            "sharedSettings": {"apiKey": "bob-shared-secret"},
            "newField": "bob-later",
            "allCredentials": all,
        }}})
    };
    s.fake.script(Scripted::json(
        200,
        entry(json!([
            {"id": SF_BOB, "status": "VALID", "providerId": "P-BOB"},
            {"id": SF_ALICE, "status": "VALID", "providerId": "P-ALICE"}
        ])),
    ));
    let got = s.get(&me(), &s.alice, &[]).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(
        got.json()["integrations"]["salesforce"],
        json!({
            "enabled": true,
            "credentialId": SF_ALICE,
            "credentialStatus": "VALID",
            "providerId": "P-ALICE",
            "allCredentials": [{"id": SF_ALICE, "status": "VALID", "providerId": "P-ALICE"}],
        })
    );
    for (shape, secrets) in [
        (json!({"id": SF_BOB}), ["P-BOB", "bob-private"]),
        (json!("everyone"), ["P-BOB", "bob-shared-secret"]),
    ] {
        s.fake.script(Scripted::json(200, entry(shape)));
        let got = s.get(&me(), &s.alice, &[]).await;
        s.assert_refused(&got, &me(), &secrets);
    }
    s.gw.shutdown().await;
}
