//! The Paragon emulator over real sockets (127.0.0.1, port 0): each test
//! pins one documented behaviour. Nothing here reaches the internet.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use credgate::emulator::fixtures::*;
use credgate::emulator::{
    self, Behaviour, CredentialFixture, EmulatorConfig, EmulatorHandle, Fixtures,
};
use credgate::keygen::PemPair;
use credgate::net::body::{full, stream, Body};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

// ---------------------------------------------------------------- harness

const PROJECT: &str = "test-project";
const AUD: &str = "useparagon.com/test-project";
const MB100: u64 = 100 * 1024 * 1024;

fn keys() -> &'static PemPair {
    static KEYS: OnceLock<PemPair> = OnceLock::new();
    KEYS.get_or_init(|| credgate::keygen::rsa().expect("RSA key generation"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs `claims` with the project key (RS256).
fn sign(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(keys().private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

/// A valid token for `sub` with `aud`, plus `extra` claims.
fn token_for(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "iat": now(), "exp": now() + 3600, "aud": AUD});
    if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
        c.extend(e);
    }
    sign(&claims)
}

/// An unrestricted ("org-level") token for the demo user.
fn admin() -> String {
    token_for("acme", json!({}))
}

/// A token for acme restricted to `credentials` (`(type, id)` pairs).
fn member(credentials: &[(&str, &str)]) -> String {
    let claim = credgate::paragon::permissions::claim_for(credentials.iter().copied());
    token_for("acme", json!({"urn:useparagon:connect:permissions": claim}))
}

struct Env {
    emu: EmulatorHandle,
    client: Client<HttpConnector, Body>,
}

async fn env() -> Env {
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: keys().public_pem.as_bytes().to_vec(),
    })
    .await
    .expect("emulator starts");
    Env {
        emu,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    version: Version,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// `paragonEmulator.credentialId`.
    fn echoed_credential(&self) -> Value {
        self.json()["paragonEmulator"]["credentialId"].clone()
    }
}

struct Req<'e> {
    env: &'e Env,
    builder: http::request::Builder,
    body: Body,
    client: Option<&'e Client<HttpConnector, Body>>,
}

impl Env {
    fn req(&self, method: Method, path: &str) -> Req<'_> {
        Req {
            env: self,
            builder: Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.emu.url())),
            body: full(Bytes::new()),
            client: None,
        }
    }

    fn get(&self, path: &str) -> Req<'_> {
        self.req(Method::GET, path)
    }

    fn post(&self, path: &str) -> Req<'_> {
        self.req(Method::POST, path)
    }

    fn state(&self) -> &emulator::EmulatorState {
        &self.emu.state
    }
}

impl<'e> Req<'e> {
    fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    fn credential(self, id: &str) -> Self {
        self.header("x-paragon-credential", id)
    }

    fn json(mut self, v: Value) -> Self {
        self.body = full(serde_json::to_vec(&v).unwrap());
        self.header("content-type", "application/json")
    }

    fn body(mut self, b: Body) -> Self {
        self.body = b;
        self
    }

    fn via(mut self, client: &'e Client<HttpConnector, Body>) -> Self {
        self.client = Some(client);
        self
    }

    async fn send(self) -> Resp {
        let req = self.builder.body(self.body).unwrap();
        let client = self.client.unwrap_or(&self.env.client);
        let res = client
            .request(req)
            .await
            .expect("request reaches the emulator");
        let (parts, body) = res.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            version: parts.version,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }
}

fn p(path: &str) -> String {
    format!("/projects/{PROJECT}{path}")
}

/// Adds user `globex` with one VALID slack credential; returns its id.
fn add_globex(env: &Env) -> &'static str {
    const G: &str = "91013e00-51ac-4000-8000-000000000001";
    env.state().add_user("globex");
    env.state()
        .add_credential("globex", CredentialFixture::new(G, "slack"))
        .unwrap();
    G
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// `n` generated bytes (`k % 256`), streamed in 64 KiB frames.
struct Generated {
    remaining: u64,
    chunk: Bytes,
}

impl Generated {
    fn new(n: u64) -> Self {
        Generated {
            remaining: n,
            chunk: (0..65536u32)
                .map(|i| (i % 256) as u8)
                .collect::<Vec<u8>>()
                .into(),
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

// ------------------------------------------------------------ auth

#[tokio::test]
async fn bad_or_missing_tokens_are_401_with_a_code_and_are_recorded() {
    let env = env().await;
    let other_key = credgate::keygen::rsa().unwrap();
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "acme", "exp": now() + 60}),
        &EncodingKey::from_rsa_pem(other_key.private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "acme", "exp": now() + 60}),
        &EncodingKey::from_secret(keys().public_pem.as_bytes()),
    )
    .unwrap();
    let me = p("/sdk/me");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some(format!("Basic {}", "YWNtZTp4")), "missing_token"),
        (Some("Bearer not.a.jwt".into()), "invalid_token"),
        (Some(format!("Bearer {foreign}")), "invalid_token"),
        (Some(format!("Bearer {hs256}")), "invalid_token"),
        (
            Some(format!(
                "Bearer {}",
                sign(&json!({"sub": "acme", "exp": now() - 10}))
            )),
            "token_expired",
        ),
        (
            Some(format!("Bearer {}", sign(&json!({"sub": "acme"})))),
            "invalid_token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&json!({"sub": 5, "exp": now() + 60}))
            )),
            "invalid_token",
        ),
        (
            Some(format!("Bearer {}", token_for("nobody", json!({})))),
            "unknown_user",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_for("acme", json!({"aud": "useparagon.com/other"}))
            )),
            "invalid_audience",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_for("acme", json!({"aud": ["x", "y"]}))
            )),
            "invalid_audience",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_for(
                    "acme",
                    json!({"urn:useparagon:connect:permissions": {"integration:slack": "yes"}})
                )
            )),
            "invalid_permissions",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_for(
                    "acme",
                    json!({"urn:useparagon:connect:permissions": "integration:*"})
                )
            )),
            "invalid_permissions",
        ),
    ];
    for (auth, code) in &cases {
        let mut req = env.get(&me);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(r.code(), *code, "{auth:?}");
        assert!(r.json()["message"].is_string());
        assert!(
            r.json().get("paragonEmulator").is_none(),
            "no echo before authentication"
        );
        assert!(r.header("x-emulator-user").is_none());
    }
    // Two Authorization headers, even both valid, are refused.
    let r = env.get(&me).token(&admin()).token(&admin()).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let log = env.state().requests();
    assert_eq!(log.len(), cases.len() + 1);
    for rec in &log {
        assert_eq!(rec.status, 401);
        assert_eq!(rec.user, None);
        assert_eq!(rec.claims, None);
        assert_eq!(rec.host, "connect");
        assert_eq!(rec.path, me);
    }

    // An `aud` array that includes the project's audience is accepted.
    let r = env
        .get(&me)
        .token(&token_for("acme", json!({"aud": ["x", AUD]})))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn managed_sync_requires_aud_and_other_hosts_do_not() {
    let env = env().await;
    let no_aud = sign(&json!({"sub": "acme", "exp": now() + 60}));
    let r = env.get("/api/syncs").token(&no_aud).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_audience")
    );
    let r = env.get("/api/syncs").token(&admin()).send().await;
    assert_eq!(r.status, StatusCode::OK);
    for path in [p("/sdk/me"), p("/sdk/proxy/slack/x"), p("/actions")] {
        let r = env.get(&path).token(&no_aud).send().await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn wrong_project_is_404_after_authentication_and_unknown_routes_are_404() {
    let env = env().await;
    let r = env.get("/projects/other/sdk/me").send().await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the token is checked first"
    );
    let r = env
        .get("/projects/other/sdk/me")
        .token(&admin())
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_project")
    );
    assert_eq!(r.json()["paragonEmulator"]["userId"], "acme");
    let r = env
        .get("/v2/projects/other/sdk/events/trigger")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "GET is no route there");
    let r = env
        .post("/v2/projects/other/sdk/events/trigger")
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.code(), "unknown_project");

    let r = env.get("/nothing/here").token(&admin()).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );
    let r = env
        .req(Method::PUT, &p("/sdk/me"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.code(), "route_not_found");
    let log = env.state().requests();
    let last = log.last().unwrap();
    assert_eq!(
        (last.status, last.host.as_str(), last.user.as_deref()),
        (404, "unknown", None)
    );
}

// ------------------------------------------------------------ connect

#[tokio::test]
async fn get_me_has_paragons_shape_and_the_oldest_valid_credential() {
    let env = env().await;
    // An older INVALID Google Drive account must not become the primary.
    let mut old = CredentialFixture::new("0dd00000-d21e-4000-8000-000000000001", "googledrive");
    old.status = "INVALID".into();
    old.date_created = Some("2020-01-01T00:00:00Z".into());
    env.state().add_credential("acme", old).unwrap();

    let r = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-emulator-user"), Some("acme"));
    assert_eq!(r.header("x-emulator-credential"), Some(""));
    let me = r.json();
    assert_eq!(me["authenticated"], true);
    assert_eq!(me["userId"], "acme");
    assert_eq!(
        me["meta"],
        json!({"Name": "Acme Corp", "Email": "it@acme.example"})
    );
    assert_eq!(
        me["paragonEmulator"],
        json!({"userId": "acme", "credentialId": null})
    );
    let ints = me["integrations"].as_object().unwrap();
    assert_eq!(
        ints.keys().collect::<Vec<_>>(),
        vec!["googledrive", "salesforce", "slack"]
    );

    let sf = &me["integrations"]["salesforce"];
    assert_eq!(sf["enabled"], true);
    assert_eq!(sf["credentialId"], DEMO_SALESFORCE_ALICE);
    assert_eq!(sf["credentialStatus"], "VALID");
    assert_eq!(sf["providerId"], "005ALICE");
    assert_eq!(
        sf["providerData"]["instanceURL"],
        "https://acme.my.salesforce.example"
    );
    assert_eq!(
        ids(&sf["allCredentials"]),
        vec![DEMO_SALESFORCE_ALICE, DEMO_SALESFORCE_BOB]
    );
    let c = &sf["allCredentials"][0];
    for (k, v) in [
        ("projectId", json!(PROJECT)),
        ("integrationId", json!(DEMO_INTEGRATION_SALESFORCE)),
        ("status", json!("VALID")),
        ("externalId", json!("alice")),
        ("isPreviewCredential", json!(false)),
        ("dateCreated", json!("2024-01-01T00:00:00.000Z")),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert!(c["personaId"]
        .as_str()
        .is_some_and(credgate::paragon::credentials::is_uuid));
    assert_eq!(
        c["personaId"], sf["allCredentials"][1]["personaId"],
        "one persona per user"
    );
    assert!(c.get("accountAuth").is_none());
    let cfg = &c["configurations"][0];
    assert_eq!(cfg["connectCredentialId"], DEMO_SALESFORCE_ALICE);
    assert_eq!(cfg["isDefault"], true);
    assert_eq!(cfg["externalId"], Value::Null);
    assert_eq!(
        (
            cfg["workflowSettings"].clone(),
            cfg["sharedSettings"].clone()
        ),
        (json!({}), json!({}))
    );
    assert!(cfg["dateCreated"].is_string());
    assert_eq!(
        me["integrations"]["slack"]["allCredentials"][0]["configurations"][0]["id"],
        DEMO_SLACK_ALICE_1_CONFIG
    );

    let gd = &me["integrations"]["googledrive"];
    assert_eq!(gd["credentialId"], DEMO_GOOGLEDRIVE_ALICE);
    assert_eq!(
        gd["allCredentials"][0]["status"], "INVALID",
        "oldest first, whatever the status"
    );

    // credgate's own parser reads this answer.
    let list = credgate::paragon::credentials::CredentialList::parse(&r.body).unwrap();
    assert_eq!(list.len(), 7);

    // A user whose only credential is not VALID: `enabled: false`, no
    // integration-level fields, the credential still listed.
    env.state().add_user("initech");
    let mut pending = CredentialFixture::new("1e100000-51ac-4000-8000-000000000001", "slack");
    pending.status = "PENDING".into();
    env.state().add_credential("initech", pending).unwrap();
    let me = env
        .get(&p("/sdk/me"))
        .token(&token_for("initech", json!({})))
        .send()
        .await
        .json();
    let slack = &me["integrations"]["slack"];
    assert_eq!(slack["enabled"], false);
    assert!(slack.get("credentialId").is_none() && slack.get("credentialStatus").is_none());
    assert_eq!(slack["allCredentials"][0]["status"], "PENDING");
    assert_eq!(
        me["integrations"]["salesforce"],
        json!({"enabled": false, "allCredentials": []})
    );
    assert_eq!(me["meta"], json!({}));
}

#[tokio::test]
async fn patch_me_sets_and_removes_meta_keys() {
    let env = env().await;
    let r = env
        .req(Method::PATCH, &p("/sdk/me"))
        .token(&admin())
        .json(json!({"meta": {"Email": null, "plan": "gold"}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["meta"],
        json!({"Name": "Acme Corp", "plan": "gold"})
    );
    let me = env.get(&p("/sdk/me")).token(&admin()).send().await.json();
    assert_eq!(me["meta"], json!({"Name": "Acme Corp", "plan": "gold"}));
    for bad in [json!({"meta": 5}), json!({}), json!([1])] {
        let r = env
            .req(Method::PATCH, &p("/sdk/me"))
            .token(&admin())
            .json(bad)
            .send()
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "bad_request")
        );
    }
}

#[tokio::test]
async fn the_permissions_claim_narrows_lists_and_refuses_with_7210() {
    let env = env().await;
    let alice = member(&[
        ("salesforce", DEMO_SALESFORCE_ALICE),
        ("slack", DEMO_SLACK_ALICE_2),
    ]);

    let me = env.get(&p("/sdk/me")).token(&alice).send().await.json();
    let sf = &me["integrations"]["salesforce"];
    assert_eq!(ids(&sf["allCredentials"]), vec![DEMO_SALESFORCE_ALICE]);
    assert_eq!(sf["credentialId"], DEMO_SALESFORCE_ALICE);
    let slack = &me["integrations"]["slack"];
    assert_eq!(ids(&slack["allCredentials"]), vec![DEMO_SLACK_ALICE_2]);
    assert_eq!(
        slack["credentialId"], DEMO_SLACK_ALICE_2,
        "the oldest the token may see"
    );
    assert_eq!(
        me["integrations"]["googledrive"],
        json!({"enabled": false, "allCredentials": []})
    );

    let list = env
        .get(&p("/sdk/credentials"))
        .token(&alice)
        .send()
        .await
        .json();
    let mut got = ids(&list);
    got.sort();
    let mut want = vec![DEMO_SALESFORCE_ALICE, DEMO_SLACK_ALICE_2];
    want.sort();
    assert_eq!(got, want);

    // Using a credential of the user that the claim does not allow.
    let r = env
        .get(&p("/sdk/proxy/salesforce/x"))
        .token(&alice)
        .credential(DEMO_SALESFORCE_BOB)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "7210")
    );
    assert_eq!(r.echoed_credential(), Value::Null);
    assert_eq!(r.header("x-emulator-credential"), Some(""));
    let rec = env.state().requests().pop().unwrap();
    assert_eq!((rec.status, rec.credential), (403, None));

    let r = env
        .get(&p(&format!("/sdk/credentials/{DEMO_SALESFORCE_BOB}")))
        .token(&alice)
        .send()
        .await;
    assert_eq!(r.code(), "7210");
    // No header: the oldest VALID credential the claim allows...
    let r = env.get(&p("/sdk/proxy/slack/x")).token(&alice).send().await;
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_2);
    // ...and when VALID ones exist but none is allowed, 7210.
    let r = env
        .get(&p("/sdk/proxy/googledrive/x"))
        .token(&alice)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "7210")
    );
    let r = env
        .post("/api/syncs")
        .token(&alice)
        .json(json!({"integration": "salesforce", "pipeline": "p", "credentialId": DEMO_SALESFORCE_BOB}))
        .send()
        .await;
    assert_eq!(r.code(), "7210");
    let r = env
        .post(&p("/actions"))
        .token(&alice)
        .json(json!({"action": "GOOGLE_DRIVE_LIST_FILES"}))
        .send()
        .await;
    assert_eq!(r.code(), "7210");

    // `integration:*` grants everything; no claim grants everything.
    let all = token_for(
        "acme",
        json!({"urn:useparagon:connect:permissions": {"integration:*": true}}),
    );
    assert_eq!(
        env.get(&p("/sdk/credentials"))
            .token(&all)
            .send()
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        env.get(&p("/sdk/credentials"))
            .token(&admin())
            .send()
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test]
async fn account_auth_is_only_given_on_request() {
    let env = env().await;
    let list = env
        .get(&p("/sdk/credentials"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 6);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("accountAuth").is_none()));
    let list = env
        .get(&p("/sdk/credentials?includeAccountAuth=false"))
        .token(&admin())
        .send()
        .await
        .json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("accountAuth").is_none()));

    let list = env
        .get(&p(
            "/sdk/credentials?integration=slack&includeAccountAuth=true",
        ))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(
        ids(&list),
        vec![DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_2, DEMO_SLACK_BOB]
    );
    let tokens: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["accountAuth"]["accessToken"].as_str().unwrap())
        .collect();
    assert!(tokens
        .iter()
        .all(|t| t.starts_with("emulated-") && t.len() > 20));
    assert_ne!(tokens[0], tokens[1], "each credential has its own token");

    let path = p(&format!("/sdk/credentials/{DEMO_SLACK_BOB}"));
    let one = env.get(&path).token(&admin()).send().await;
    assert_eq!(one.json()["id"], DEMO_SLACK_BOB);
    assert!(one.json().get("accountAuth").is_none());
    assert_eq!(one.echoed_credential(), DEMO_SLACK_BOB);
    let one = env
        .get(&format!("{path}?includeAccountAuth=TRUE"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(one["accountAuth"]["accessToken"], tokens[2]);

    // With X-Paragon-Credential the list is that one credential.
    let r = env
        .get(&p("/sdk/credentials"))
        .token(&admin())
        .credential(DEMO_SLACK_BOB)
        .send()
        .await;
    assert_eq!(ids(&r.json()), vec![DEMO_SLACK_BOB]);
    assert_eq!(r.header("x-emulator-credential"), Some(DEMO_SLACK_BOB));
}

#[tokio::test]
async fn credential_routes_refuse_other_users_credentials() {
    let env = env().await;
    let g = add_globex(&env);
    for path in [
        p(&format!("/sdk/credentials/{g}")),
        p("/sdk/credentials/not-a-uuid"),
        p("/sdk/credentials/00000000-0000-4000-8000-000000000000/configurations"),
    ] {
        let r = env.get(&path).token(&admin()).send().await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::NOT_FOUND, "credential_not_found"),
            "{path}"
        );
    }
    let r = env
        .req(
            Method::PATCH,
            &p(&format!("/sdk/credentials/{DEMO_SLACK_BOB}")),
        )
        .token(&admin())
        .json(json!({"config": {"configuredWorkflows": {}}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = env
        .post(&p(&format!(
            "/sdk/credentials/{DEMO_SLACK_BOB}/configurations"
        )))
        .token(&admin())
        .body(full("not json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn uninstall_removes_exactly_the_named_credential() {
    let env = env().await;
    let g = add_globex(&env);
    let slack = p(&format!("/sdk/integrations/{DEMO_INTEGRATION_SLACK}"));
    let del = |path: &str| env.req(Method::DELETE, path).token(&admin());

    let r = del(&slack).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "header required"
    );
    let r = del(&slack).credential(g).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "credential_not_found"),
        "another user's"
    );
    let r = del(&p(&format!(
        "/sdk/integrations/{DEMO_INTEGRATION_SALESFORCE}"
    )))
    .credential(DEMO_SLACK_ALICE_1)
    .send()
    .await;
    assert_eq!(r.code(), "credential_not_found", "another integration's");
    let r = del(&p("/sdk/integrations/11111111-1111-4111-8111-111111111111"))
        .credential(DEMO_SLACK_ALICE_1)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "integration_not_found")
    );
    let r = del(&slack)
        .credential(DEMO_SLACK_ALICE_1)
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .send()
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "two Authorization headers"
    );
    let r = env
        .req(Method::DELETE, &slack)
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .credential(DEMO_SLACK_ALICE_1)
        .send()
        .await;
    assert_eq!(r.code(), "7210");
    assert_eq!(
        env.state().credential_owner(DEMO_SLACK_ALICE_1).as_deref(),
        Some("acme")
    );
    assert_eq!(env.state().credential_owner(g).as_deref(), Some("globex"));

    let r = del(&slack).credential(DEMO_SLACK_ALICE_1).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_1);
    assert_eq!(env.state().credential_owner(DEMO_SLACK_ALICE_1), None);
    let me = env.get(&p("/sdk/me")).token(&admin()).send().await.json();
    assert_eq!(
        ids(&me["integrations"]["slack"]["allCredentials"]),
        vec![DEMO_SLACK_ALICE_2, DEMO_SLACK_BOB]
    );
    assert_eq!(
        me["integrations"]["slack"]["credentialId"],
        DEMO_SLACK_ALICE_2
    );
    let r = del(&slack).credential(DEMO_SLACK_ALICE_1).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "already gone");
}

#[tokio::test]
async fn catalog_lists_the_fixture_integrations() {
    let env = env().await;
    let r = env
        .get(&p("/sdk/integrations"))
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .send()
        .await;
    assert_eq!(r.header("x-emulator-user"), Some("acme"));
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let slack = list.iter().find(|i| i["type"] == "slack").unwrap();
    assert_eq!(slack["id"], DEMO_INTEGRATION_SLACK);
    assert_eq!(
        (slack["name"].clone(), slack["isActive"].clone()),
        (json!("Slack"), json!(true))
    );
    assert_eq!(slack["hasCredential"], true);
    let sf = list.iter().find(|i| i["type"] == "salesforce").unwrap();
    assert_eq!(sf["hasCredential"], false, "none the token may see");

    let meta = env
        .get(&p("/sdk/metadata"))
        .token(&admin())
        .send()
        .await
        .json();
    let gd = meta
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "googledrive")
        .unwrap()
        .clone();
    assert_eq!(gd["name"], "Google Drive");
    assert!(gd["brandColor"].as_str().unwrap().starts_with('#'));
    assert!(gd["icon"].is_string());
}

// ------------------------------------------------------------ proxy

#[tokio::test]
async fn proxy_wraps_the_provider_answer_unless_raw_is_asked() {
    let env = env().await;
    let path = p("/sdk/proxy/salesforce/services/data/v59.0/query?q=SELECT+Id");
    let r = env
        .post(&path)
        .token(&admin())
        .json(json!({"a": [1, 2]}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({
            "output": {
                "method": "POST", "path": "/services/data/v59.0/query", "query": "q=SELECT+Id", "body": {"a": [1, 2]},
                "target": {"host": "provider.invalid", "path": "/services/data/v59.0/query", "query": null, "via": "path"},
                "paragonHeaders": {"useRawResponse": null, "useSlackTokenType": null},
            },
            "paragonEmulator": {"userId": "acme", "credentialId": DEMO_SALESFORCE_ALICE},
        })
    );
    assert_eq!(
        r.header("x-emulator-credential"),
        Some(DEMO_SALESFORCE_ALICE)
    );

    let r = env
        .req(Method::PUT, &p("/sdk/proxy/slack/api/x"))
        .token(&admin())
        .header("x-paragon-use-raw-response", "1")
        .body(full("plain text"))
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!({
            "method": "PUT", "path": "/api/x", "query": null, "body": "plain text",
            "target": {"host": "provider.invalid", "path": "/api/x", "query": null, "via": "path"},
            "paragonHeaders": {"useRawResponse": "1", "useSlackTokenType": null},
        })
    );
    assert_eq!(
        r.header("x-emulator-credential"),
        Some(DEMO_SLACK_ALICE_1),
        "headers still echo"
    );

    let r = env.get(&p("/sdk/proxy/slack")).token(&admin()).send().await;
    assert_eq!(r.json()["output"]["path"], "/");
    assert_eq!(r.json()["output"]["body"], Value::Null);
}

#[tokio::test]
async fn custom_integrations_are_reached_by_integration_id() {
    let env = env().await;
    let id = "c0570000-b111-4000-8000-000000000001";
    let mut c = CredentialFixture::new(id, "custom.billing");
    c.integration_id = Some("c0570000-0000-4000-8000-0000000000b1".into());
    env.state().add_credential("acme", c).unwrap();
    let r = env
        .get(&p(
            "/sdk/proxy/custom/C0570000-0000-4000-8000-0000000000B1/v1/invoices",
        ))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.echoed_credential(), id);
    assert_eq!(r.json()["output"]["path"], "/v1/invoices");
    let r = env
        .get(&p("/sdk/proxy/custom.billing/v1/x"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.echoed_credential(), id);
    let r = env
        .get(&p(
            "/sdk/proxy/custom/00000000-0000-4000-8000-000000000000/x",
        ))
        .token(&admin())
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "integration_not_found")
    );
}

#[tokio::test]
async fn proxy_test_hooks_slow_redirect_status() {
    let env = env().await;
    let r = env
        .get(&p("/sdk/proxy/slack/__slow/20"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["output"]["path"], "/__slow/20");

    let r = env
        .get(&p("/sdk/proxy/slack/__redirect"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), Some("https://elsewhere.example/x"));
    assert!(r.body.is_empty());

    let r = env
        .get(&p("/sdk/proxy/slack/__status/418"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.status.as_u16(), 418);
    assert_eq!(r.json()["output"], json!({"status": 418}));
    let r = env
        .get(&p("/sdk/proxy/slack/__status/503"))
        .token(&admin())
        .header("x-paragon-use-raw-response", "1")
        .send()
        .await;
    assert_eq!((r.status.as_u16(), r.json()), (503, json!({"status": 503})));
    let r = env
        .get(&p("/sdk/proxy/slack/__status/204"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());

    for bad in [
        "__status/99",
        "__status/600",
        "__status/x",
        "__slow/-1",
        "__slow/600001",
        "__download/ten",
    ] {
        let r = env
            .get(&p(&format!("/sdk/proxy/slack/{bad}")))
            .token(&admin())
            .send()
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn downloads_and_uploads_of_100_mb_stream() {
    let env = env().await;
    // Download: count and check every byte as it streams.
    let req = Request::get(format!(
        "{}{}",
        env.emu.url(),
        p(&format!("/sdk/proxy/googledrive/__download/{MB100}"))
    ))
    .header("authorization", format!("Bearer {}", admin()))
    .body(full(Bytes::new()))
    .unwrap();
    let res = env.client.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-length"], MB100.to_string().as_str());
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        res.headers()["x-emulator-credential"],
        DEMO_GOOGLEDRIVE_ALICE
    );
    let mut body = res.into_body();
    let mut n: u64 = 0;
    let mut wrong = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            // Every frame starts at a multiple of 256 only by accident: check
            // the offset-adjusted pattern on the frame's first and last byte.
            if let (Some(first), Some(last)) = (data.first(), data.last()) {
                wrong += u64::from(*first != (n % 256) as u8);
                wrong += u64::from(*last != ((n + data.len() as u64 - 1) % 256) as u8);
            }
            n += data.len() as u64;
        }
    }
    assert_eq!(n, MB100);
    assert_eq!(wrong, 0);

    // Upload: a 100 MB stream with no Content-Length.
    let r = env
        .post(&p("/sdk/proxy/googledrive/__upload"))
        .token(&admin())
        .body(stream(Generated::new(MB100)))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["output"], json!({"bytes": MB100}));
    assert_eq!(r.echoed_credential(), DEMO_GOOGLEDRIVE_ALICE);
    let rec = env.state().requests().pop().unwrap();
    assert_eq!(rec.body_len, MB100);
    assert_eq!(rec.body.len(), emulator::RECORDED_BODY_BYTES);
    assert_eq!(rec.body[..512], Generated::new(512).chunk[..512]);
    assert_eq!(rec.credential.as_deref(), Some(DEMO_GOOGLEDRIVE_ALICE));

    // Raw upload answer.
    let r = env
        .post(&p("/sdk/proxy/googledrive/__upload"))
        .token(&admin())
        .header("x-paragon-use-raw-response", "1")
        .body(full(vec![7u8; 1000]))
        .send()
        .await;
    assert_eq!(r.json(), json!({"bytes": 1000}));
}

#[tokio::test]
async fn bodies_past_the_cap_are_413() {
    let env = env().await;
    let r = env
        .post(&p("/sdk/events/trigger"))
        .token(&admin())
        .body(stream(Generated::new(emulator::MAX_BODY_BYTES + 1)))
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
}

// ------------------------------------------------------------ credential choice

#[tokio::test]
async fn credential_headers_are_checked_and_absent_ones_default_to_the_oldest_valid() {
    let env = env().await;
    let g = add_globex(&env);
    let proxy = |t: &str| p(&format!("/sdk/proxy/{t}/x"));

    // Another user's credential: 404, never served.
    let r = env
        .get(&proxy("slack"))
        .token(&admin())
        .credential(g)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "credential_not_found")
    );
    assert_eq!(r.echoed_credential(), Value::Null);
    assert!(r.json().get("output").is_none());
    assert_eq!(env.state().requests().pop().unwrap().credential, None);
    // Another integration's credential of the same user: the same answer.
    let r = env
        .get(&proxy("salesforce"))
        .token(&admin())
        .credential(DEMO_SLACK_BOB)
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!("Connect credential not found for this user and integration")
        )
    );
    // Unknown id: the same again.
    let r = env
        .get(&proxy("slack"))
        .token(&admin())
        .credential("00000000-0000-4000-8000-000000000000")
        .send()
        .await;
    assert_eq!(r.code(), "credential_not_found");
    // Named, any letter case.
    let r = env
        .get(&proxy("slack"))
        .token(&admin())
        .credential(&DEMO_SLACK_BOB.to_uppercase())
        .send()
        .await;
    assert_eq!(r.echoed_credential(), DEMO_SLACK_BOB);
    // Two headers, even equal, and non-UUID values: 400.
    let r = env
        .get(&proxy("slack"))
        .token(&admin())
        .credential(DEMO_SLACK_BOB)
        .credential(DEMO_SLACK_BOB)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    for bad in [
        "ext:alice",
        "",
        "a11ce000-51ac-4000-8000-00000000000g",
        &format!("{DEMO_SLACK_BOB},{DEMO_SLACK_BOB}"),
    ] {
        let r = env
            .get(&proxy("slack"))
            .token(&admin())
            .credential(bad)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // Absent: the oldest VALID credential of the integration.
    let r = env.get(&proxy("slack")).token(&admin()).send().await;
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_1);
    // Not connected at all.
    let r = env.get(&proxy("hubspot")).token(&admin()).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "integration_not_connected")
    );

    // An older INVALID credential is skipped; a named INVALID one is served.
    let mut invalid = CredentialFixture::new("91013e00-51ac-4000-8000-000000000000", "slack");
    invalid.status = "INVALID".into();
    invalid.date_created = Some("2001-01-01T00:00:00Z".into());
    env.state().add_credential("globex", invalid).unwrap();
    let globex = token_for("globex", json!({}));
    let r = env.get(&proxy("slack")).token(&globex).send().await;
    assert_eq!(r.echoed_credential(), g);
    let r = env
        .get(&proxy("slack"))
        .token(&globex)
        .credential("91013e00-51ac-4000-8000-000000000000")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn triggers_and_events_resolve_a_credential_only_when_named_or_unique() {
    let env = env().await;
    let g = add_globex(&env);
    let trigger = p("/sdk/triggers/wf-1?x=1");
    let r = env
        .post(&trigger)
        .token(&admin())
        .json(json!({"hello": "world"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["workflowId"], "wf-1");
    assert_eq!(
        r.json()["received"],
        json!({"query": "x=1", "body": {"hello": "world"}})
    );
    assert_eq!(
        r.echoed_credential(),
        Value::Null,
        "acme has several credentials"
    );
    let r = env
        .post(&trigger)
        .token(&admin())
        .credential(DEMO_SLACK_BOB)
        .send()
        .await;
    assert_eq!(r.echoed_credential(), DEMO_SLACK_BOB);
    let r = env
        .post(&trigger)
        .token(&admin())
        .credential(g)
        .send()
        .await;
    assert_eq!(r.code(), "credential_not_found");
    let r = env
        .post(&trigger)
        .token(&token_for("globex", json!({})))
        .send()
        .await;
    assert_eq!(r.echoed_credential(), g, "globex has exactly one");
    let r = env
        .post(&trigger)
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .send()
        .await;
    assert_eq!(
        r.echoed_credential(),
        DEMO_SLACK_BOB,
        "the only one the claim allows"
    );

    for path in [
        p("/sdk/events/trigger"),
        format!("/v2/projects/{PROJECT}/sdk/events/trigger"),
    ] {
        let r = env
            .post(&path)
            .token(&admin())
            .json(json!({"name": "Contact Created", "payload": {}}))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}");
        assert_eq!(r.json()["name"], "Contact Created");
        assert_eq!(env.state().requests().pop().unwrap().host, "workflows");
    }

    for method in [Method::POST, Method::DELETE] {
        let r = env
            .req(method.clone(), &p("/sdk/workflows/wf-9"))
            .token(&admin())
            .credential(DEMO_SLACK_ALICE_2)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["enabled"], method == Method::POST);
        assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_2);
    }
}

// ------------------------------------------------------------ ActionKit

#[tokio::test]
async fn actionkit_actions_resolve_their_integration_from_the_name() {
    let env = env().await;
    let list = env.get(&p("/actions")).token(&admin()).send().await.json();
    let actions = list["actions"].as_object().unwrap();
    assert_eq!(
        actions.keys().collect::<Vec<_>>(),
        vec!["googledrive", "salesforce", "slack"]
    );
    assert_eq!(list["errors"], json!([]));
    let first = &list["actions"]["slack"][0];
    assert_eq!(first["type"], "function");
    assert_eq!(first["function"]["name"], "SLACK_SEND_MESSAGE");
    assert!(first["function"]["parameters"].is_object());
    let only = env
        .get(&p("/actions?integrations=slack"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(only["actions"].as_object().unwrap().len(), 1);
    let narrowed = env
        .get(&p("/actions"))
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .send()
        .await;
    assert_eq!(narrowed.json()["actions"].as_object().unwrap().len(), 1);
    assert_eq!(narrowed.echoed_credential(), DEMO_SLACK_BOB);

    let r = env
        .post(&p("/actions"))
        .token(&admin())
        .json(json!({"action": "SLACK_SEND_MESSAGE", "parameters": {"channel": "#x"}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["action"], "SLACK_SEND_MESSAGE");
    assert_eq!(r.json()["parameters"], json!({"channel": "#x"}));
    assert_eq!(r.json()["integration"], "slack");
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_1);
    assert_eq!(env.state().requests().pop().unwrap().host, "actionkit");

    let r = env
        .post(&p("/tools"))
        .token(&admin())
        .json(json!({"tool": "GOOGLE_DRIVE_LIST_FILES"}))
        .send()
        .await;
    assert_eq!(r.json()["tool"], "GOOGLE_DRIVE_LIST_FILES");
    assert_eq!(r.echoed_credential(), DEMO_GOOGLEDRIVE_ALICE);

    let r = env
        .post(&p("/actions"))
        .token(&admin())
        .credential(DEMO_SALESFORCE_ALICE)
        .json(json!({"action": "SLACK_SEND_MESSAGE"}))
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "credential_not_found")
    );
    for bad in [
        json!({"action": "JIRA_CREATE_ISSUE"}),
        json!({"parameters": {}}),
        json!({"action": 5}),
    ] {
        let r = env
            .post(&p("/actions"))
            .token(&admin())
            .json(bad.clone())
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = env
        .post(&p("/actions"))
        .token(&admin())
        .body(full("{"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn actionkit_trigger_subscriptions_belong_to_their_user() {
    let env = env().await;
    add_globex(&env);
    let types = env
        .get(&p("/triggers?integrations=slack"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(types["triggers"]["slack"][0]["type"], "SLACK_NEW_MESSAGE");

    let r = env
        .post(&p("/trigger-subscriptions"))
        .token(&admin())
        .credential(DEMO_SLACK_BOB)
        .json(json!({"integration": "slack", "type": "SLACK_NEW_MESSAGE", "parameters": {"channel": "c"}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let sub = r.json();
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(
        (sub["credentialId"].clone(), sub["status"].clone()),
        (json!(DEMO_SLACK_BOB), json!("ACTIVE"))
    );
    let one = p(&format!("/trigger-subscriptions/{id}"));

    let list = env
        .get(&p("/trigger-subscriptions"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(ids(&list["data"]), vec![id.clone()]);
    // The list is not narrowed by the claim (Paragon documents narrowing by
    // the header only): a member token sees bob's subscription in it.
    let unnarrowed = env
        .get(&p("/trigger-subscriptions"))
        .token(&member(&[("slack", DEMO_SLACK_ALICE_1)]))
        .send()
        .await;
    assert_eq!(ids(&unnarrowed.json()["data"]), vec![id.clone()]);
    let r = env
        .get(&one)
        .token(&member(&[("slack", DEMO_SLACK_ALICE_1)]))
        .send()
        .await;
    assert_eq!(r.code(), "7210");

    let globex = token_for("globex", json!({}));
    for m in [Method::GET, Method::PATCH, Method::DELETE] {
        let r = env.req(m, &one).token(&globex).json(json!({})).send().await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::NOT_FOUND, "subscription_not_found")
        );
    }
    let r = env
        .req(Method::PATCH, &one)
        .token(&admin())
        .json(json!({"parameters": {"channel": "d"}}))
        .send()
        .await;
    assert_eq!(r.json()["parameters"], json!({"channel": "d"}));
    assert_eq!(
        env.get(&one).token(&admin()).send().await.json()["parameters"],
        json!({"channel": "d"})
    );
    let r = env.req(Method::DELETE, &one).token(&admin()).send().await;
    assert_eq!(r.json()["deleted"], true);
    assert_eq!(
        env.get(&one).token(&admin()).send().await.status,
        StatusCode::NOT_FOUND
    );
    let r = env
        .post(&p("/trigger-subscriptions"))
        .token(&admin())
        .json(json!({"type": "X"}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

// ------------------------------------------------------------ Managed Sync

#[tokio::test]
async fn syncs_bind_a_credential_and_follow_their_lifecycle() {
    let env = env().await;
    let create = |body: Value| env.post("/api/syncs").token(&admin()).json(body).send();

    let r = create(json!({"integration": "slack", "pipeline": "messages"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let s1 = r.json();
    let id1 = s1["id"].as_str().unwrap().to_string();
    assert!(credgate::paragon::credentials::is_uuid(&id1));
    assert_eq!(
        (
            s1["userId"].clone(),
            s1["integration"].clone(),
            s1["pipeline"].clone(),
            s1["projectId"].clone(),
            s1["status"].clone()
        ),
        (
            json!("acme"),
            json!("slack"),
            json!("messages"),
            json!(PROJECT),
            json!("INITIALIZING")
        )
    );
    assert_eq!(
        env.state().sync_credential(&id1).as_deref(),
        Some(DEMO_SLACK_ALICE_1),
        "the oldest VALID"
    );
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_1);
    assert_eq!(env.state().requests().pop().unwrap().host, "sync");

    let r = create(json!({"integration": "slack", "pipeline": "files", "credentialId": DEMO_SLACK_BOB, "configurationName": "c1"})).await;
    let id2 = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        env.state().sync_credential(&id2).as_deref(),
        Some(DEMO_SLACK_BOB)
    );

    for (bad, status) in [
        (
            json!({"integration": "slack", "pipeline": "p", "credentialId": DEMO_SALESFORCE_BOB}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"integration": "slack", "pipeline": "p", "credentialId": "ext:bob"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"integration": "slack"}), StatusCode::BAD_REQUEST),
        (json!({"pipeline": "p"}), StatusCode::BAD_REQUEST),
        (
            json!({"integration": "hubspot", "pipeline": "p"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(create(bad.clone()).await.status, status, "{bad}");
    }

    let list = env.get("/api/syncs").token(&admin()).send().await.json();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let second = data.iter().find(|s| s["id"] == id2.as_str()).unwrap();
    assert_eq!(second["configurationName"], "c1");
    for k in [
        "integration",
        "pipeline",
        "status",
        "dateCreated",
        "dateUpdated",
    ] {
        assert!(!second[k].is_null(), "{k}");
    }
    let narrowed = env
        .get("/api/syncs")
        .token(&member(&[("slack", DEMO_SLACK_BOB)]))
        .send()
        .await
        .json();
    assert_eq!(ids(&narrowed["data"]), vec![id2.clone()]);

    let one = format!("/api/syncs/{id1}");
    let got = env.get(&one).token(&admin()).send().await.json();
    assert_eq!(got["status"], "INITIALIZING");
    assert_eq!(got["summary"]["totalRecords"], 5);
    assert!(
        got["summary"].get("lastSyncedAt").is_some()
            && got["summary"].get("latestCursor").is_some()
    );

    let patch = |body: Value| {
        env.req(Method::PATCH, &one)
            .token(&admin())
            .json(body)
            .send()
    };
    assert_eq!(patch(json!({})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        patch(json!({"incrementalAccumulatorFrequency": "2m"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        patch(json!({"credentialId": DEMO_SALESFORCE_ALICE}))
            .await
            .code(),
        "credential_not_found"
    );
    let r = patch(json!({"incrementalAccumulatorFrequency": "5m"})).await;
    assert_eq!(
        r.json()["data"],
        json!({"incrementalAccumulatorFrequency": "5m"})
    );
    assert!(r.json()["message"].is_string());
    let r = patch(json!({"credentialId": DEMO_SLACK_ALICE_2})).await;
    assert_eq!(
        (r.json()["id"].clone(), r.json()["data"].clone()),
        (json!(id1), json!({"credentialId": DEMO_SLACK_ALICE_2}))
    );
    assert_eq!(
        env.state().sync_credential(&id1).as_deref(),
        Some(DEMO_SLACK_ALICE_2)
    );
    assert_eq!(r.echoed_credential(), DEMO_SLACK_ALICE_2);

    let r = env
        .post(&format!("{one}/disable"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.json()["status"], "DISABLED");
    let r = env
        .post(&format!("{one}/reenable"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.json()["status"], "ACTIVE");
    assert_eq!(
        env.get(&one).token(&admin()).send().await.json()["status"],
        "ACTIVE"
    );

    let page = env
        .get(&format!("{one}/records?pageSize=2"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(ids(&page["data"]), vec!["rec-1", "rec-2"]);
    assert_eq!(page["paging"]["cursor"], "2");
    assert_eq!(page["paging"]["remainingRecords"], 3);
    let page = env
        .get(&format!("{one}/records?pageSize=2&cursor=4"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(ids(&page["data"]), vec!["rec-5"]);
    assert_eq!(page["paging"]["cursor"], Value::Null);
    for bad in ["pageSize=0", "pageSize=x", "cursor=9", "cursor=-1"] {
        let r = env
            .get(&format!("{one}/records?{bad}"))
            .token(&admin())
            .send()
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let rec = env
        .get(&format!("{one}/records/rec-3"))
        .token(&admin())
        .send()
        .await
        .json();
    assert_eq!(rec["id"], "rec-3");
    let r = env
        .get(&format!("{one}/records/rec-9"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "record_not_found")
    );
    let r = env
        .get(&format!("{one}/records/rec-3/content"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(String::from_utf8_lossy(&r.body).contains("rec-3"));

    let perms = format!("/api/permissions/{id1}");
    let r = env
        .post(&format!("{perms}/batch-check"))
        .token(&admin())
        .json(json!({"checks": [{"object": "o", "user": "user:a@b.example", "role": "can_read"}]}))
        .send()
        .await;
    assert_eq!(r.json()["result"][0]["allowed"], true);
    assert_eq!(r.json()["result"][0]["request"]["object"], "o");
    assert_eq!(
        env.post(&format!("{perms}/batch-check"))
            .token(&admin())
            .json(json!({}))
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        env.post(&format!("{perms}/list-users"))
            .token(&admin())
            .json(json!({"object": "o", "role": "r"}))
            .send()
            .await
            .json()["users"],
        json!([])
    );
    assert_eq!(
        env.post(&format!("{perms}/list-objects"))
            .token(&admin())
            .json(json!({}))
            .send()
            .await
            .json()["objects"],
        json!([])
    );

    let r = env.req(Method::DELETE, &one).token(&admin()).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.get(&one).token(&admin()).send().await.code(),
        "sync_not_found"
    );
    assert_eq!(env.state().sync_credential(&id1), None);
}

#[tokio::test]
async fn syncs_of_another_user_are_404_and_disallowed_credentials_7210() {
    let env = env().await;
    add_globex(&env);
    let r = env
        .post("/api/syncs")
        .token(&admin())
        .json(json!({"integration": "salesforce", "pipeline": "p"}))
        .send()
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let one = format!("/api/syncs/{id}");
    let globex = token_for("globex", json!({}));
    let paths: Vec<(Method, String, Value)> = vec![
        (Method::GET, one.clone(), json!(null)),
        (
            Method::PATCH,
            one.clone(),
            json!({"incrementalAccumulatorFrequency": "1h"}),
        ),
        (Method::DELETE, one.clone(), json!(null)),
        (Method::POST, format!("{one}/disable"), json!(null)),
        (Method::GET, format!("{one}/records"), json!(null)),
        (
            Method::GET,
            format!("{one}/records/rec-1/content"),
            json!(null),
        ),
        (
            Method::POST,
            format!("/api/permissions/{id}/list-users"),
            json!({}),
        ),
    ];
    for (m, path, body) in &paths {
        let r = env
            .req(m.clone(), path)
            .token(&globex)
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::NOT_FOUND, "sync_not_found"),
            "{m} {path}"
        );
    }
    assert_eq!(
        env.get("/api/syncs").token(&globex).send().await.json()["data"],
        json!([])
    );
    let bob = member(&[("salesforce", DEMO_SALESFORCE_BOB)]);
    let r = env.get(&one).token(&bob).send().await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "7210")
    );
    assert_eq!(
        env.get(&one).token(&admin()).send().await.status,
        StatusCode::OK,
        "still there"
    );

    // A sync whose credential is disconnected errors.
    assert!(env.state().remove_credential(DEMO_SALESFORCE_ALICE));
    assert_eq!(
        env.get(&one).token(&admin()).send().await.json()["status"],
        "ERRORED"
    );
}

// ------------------------------------------------------------ control API, log, echo

#[tokio::test]
async fn the_control_api_manages_users_credentials_behaviour_and_the_log() {
    let env = env().await;
    let ctl = |m: Method, path: &str| env.req(m, &format!("/_emulator{path}"));
    assert_eq!(
        ctl(Method::GET, "/health").send().await.json(),
        json!({"status": "ok"})
    );

    assert_eq!(
        ctl(Method::POST, "/users")
            .json(json!({"id": "hooli"}))
            .send()
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        ctl(Method::POST, "/users")
            .json(json!({"id": "hooli"}))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        ctl(Method::POST, "/users")
            .json(json!({"id": ""}))
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ctl(Method::POST, "/users")
            .json(json!({"name": "x"}))
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let cred = "400111e0-51ac-4000-8000-000000000001";
    let r = ctl(Method::POST, "/credentials")
        .json(json!({"user": "hooli", "credential": {"id": cred, "integration": "slack", "external_id": "gavin"}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(env.state().credential_owner(cred).as_deref(), Some("hooli"));
    let r = ctl(Method::POST, "/credentials")
        .json(json!({"user": "hooli", "credential": {"id": cred, "integration": "slack"}}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().contains("twice"));
    let r = ctl(Method::POST, "/credentials").json(json!({"user": "nobody", "credential": {"id": "400111e0-51ac-4000-8000-000000000002", "integration": "slack"}})).send().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let hooli = token_for("hooli", json!({}));
    let me = env.get(&p("/sdk/me")).token(&hooli).send().await.json();
    assert_eq!(me["integrations"]["slack"]["credentialId"], cred);
    assert_eq!(
        me["integrations"]["slack"]["allCredentials"][0]["externalId"],
        "gavin"
    );

    assert_eq!(
        ctl(Method::DELETE, &format!("/credentials/{cred}"))
            .send()
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ctl(Method::DELETE, &format!("/credentials/{cred}"))
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ctl(Method::DELETE, "/users/hooli").send().await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        ctl(Method::DELETE, "/users/hooli").send().await.status,
        StatusCode::NOT_FOUND
    );
    let r = env.get(&p("/sdk/me")).token(&hooli).send().await;
    assert_eq!(r.code(), "unknown_user");
    env.state().add_user("a b");
    assert_eq!(
        ctl(Method::DELETE, "/users/a%20b").send().await.status,
        StatusCode::NO_CONTENT
    );

    // Behaviour.
    let r = ctl(Method::PUT, "/behaviour")
        .json(json!({"me_status": 503}))
        .send()
        .await;
    assert_eq!(r.json()["me_status"], 503);
    assert_eq!(env.state().behaviour().me_status, Some(503));
    assert_eq!(
        ctl(Method::GET, "/behaviour").send().await.json()["me_status"],
        503
    );
    assert_eq!(
        ctl(Method::PUT, "/behaviour")
            .json(json!({"me_status": 42}))
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ctl(Method::PUT, "/behaviour")
            .json(json!({"me_stat": 500}))
            .send()
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ctl(Method::PUT, "/behaviour")
            .json(json!({}))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(env.state().behaviour(), Behaviour::default());

    // The log: control calls are never in it.
    let log = ctl(Method::GET, "/requests").send().await.json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log
        .iter()
        .all(|r| !r["path"].as_str().unwrap().starts_with("/_emulator")));
    assert_eq!(log[0]["user"], "hooli");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["host"], "connect");
    assert_eq!(
        (log[1]["status"].clone(), log[1]["user"].clone()),
        (json!(401), Value::Null)
    );
    assert!(log[1]["body_base64"].is_string());
    assert_eq!(
        ctl(Method::DELETE, "/requests").send().await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(ctl(Method::GET, "/requests").send().await.json(), json!([]));
    assert!(env.state().requests().is_empty());

    assert_eq!(
        ctl(Method::GET, "/nothing").send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ctl(Method::POST, "/health").send().await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(env.state().requests().is_empty());
}

#[tokio::test]
async fn behaviour_switches_change_sdk_me() {
    let env = env().await;
    env.state().set_behaviour(Behaviour {
        me_status: Some(503),
        ..Behaviour::default()
    });
    let r = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.json()["message"].is_string());
    assert_eq!(
        env.get(&p("/sdk/credentials"))
            .token(&admin())
            .send()
            .await
            .status,
        StatusCode::OK,
        "only /sdk/me"
    );

    env.state().set_behaviour(Behaviour {
        me_unauthenticated: true,
        ..Behaviour::default()
    });
    let r = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert_eq!(
        (r.status, r.json()["authenticated"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert!(credgate::paragon::credentials::CredentialList::parse(&r.body).is_err());

    env.state().set_behaviour(Behaviour {
        me_malformed: true,
        ..Behaviour::default()
    });
    let r = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    // Delays hold the answer back but change nothing else (not timed here).
    env.state().set_behaviour(Behaviour {
        delay_ms: 5,
        me_delay_ms: 5,
        ..Behaviour::default()
    });
    let r = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert_eq!(r.json()["authenticated"], true);
    let log = env.state().requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 200, 200, 200, 200]
    );
}

#[tokio::test]
async fn the_request_log_records_what_arrived_and_what_was_decided() {
    let env = env().await;
    let t = member(&[("slack", DEMO_SLACK_BOB)]);
    env.post(&p("/sdk/proxy/slack/api/chat.postMessage?channel=C1"))
        .token(&t)
        .header("X-Custom-Thing", "One")
        .header("x-custom-thing", "Two")
        .json(json!({"text": "hi"}))
        .send()
        .await;
    let log = env.state().requests();
    assert_eq!(log.len(), 1);
    let rec = &log[0];
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path, p("/sdk/proxy/slack/api/chat.postMessage"));
    assert_eq!(rec.query.as_deref(), Some("channel=C1"));
    assert_eq!(rec.header_all("x-custom-thing"), vec!["One", "Two"]);
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert!(rec
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    assert!(rec
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    assert_eq!(rec.body, br#"{"text":"hi"}"#);
    assert_eq!(rec.body_len, 13);
    assert_eq!(rec.user.as_deref(), Some("acme"));
    assert_eq!(rec.credential.as_deref(), Some(DEMO_SLACK_BOB));
    let claims = rec.claims.as_ref().unwrap();
    assert_eq!(claims["sub"], "acme");
    assert!(claims["urn:useparagon:connect:permissions"]["integration:slack"].is_object());
    assert_eq!((rec.status, rec.host.as_str()), (200, "proxy"));

    // Refused calls are recorded too, with their status and body.
    env.post(&p("/sdk/proxy/slack/x"))
        .token(&t)
        .credential(DEMO_SLACK_ALICE_1)
        .body(full("payload"))
        .send()
        .await;
    let rec = env.state().requests().pop().unwrap();
    assert_eq!(
        (rec.status, rec.credential, rec.body),
        (403, None, b"payload".to_vec())
    );
    env.state().clear_requests();
    assert!(env.state().requests().is_empty());
}

#[tokio::test]
async fn the_echo_is_on_json_objects_and_the_headers_on_every_authenticated_answer() {
    let env = env().await;
    // Array bodies: headers only.
    let r = env.get(&p("/sdk/credentials")).token(&admin()).send().await;
    assert!(r.json().is_array());
    assert_eq!(r.header("x-emulator-user"), Some("acme"));
    assert_eq!(r.header("x-emulator-credential"), Some(""));
    // Refusals after authentication: echo with a null credential.
    let r = env
        .get(&p("/sdk/proxy/hubspot/x"))
        .token(&admin())
        .send()
        .await;
    assert_eq!(
        r.json()["paragonEmulator"],
        json!({"userId": "acme", "credentialId": null})
    );
    // Raw: no echo in the body, headers present.
    let r = env
        .get(&p("/sdk/proxy/slack/x"))
        .token(&admin())
        .header("x-paragon-use-raw-response", "1")
        .send()
        .await;
    assert!(r.json().get("paragonEmulator").is_none());
    assert_eq!(r.header("x-emulator-credential"), Some(DEMO_SLACK_ALICE_1));
    // Sync and ActionKit objects carry it.
    let r = env.get("/api/syncs").token(&admin()).send().await;
    assert_eq!(r.json()["paragonEmulator"]["userId"], "acme");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let env = env().await;
    let h2: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let r = env.get(&p("/sdk/me")).token(&admin()).via(&h2).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.json()["userId"], "acme");
    let r = env
        .post(&p("/sdk/proxy/slack/__upload"))
        .token(&admin())
        .via(&h2)
        .body(stream(Generated::new(3_000_000)))
        .send()
        .await;
    assert_eq!(r.json()["output"]["bytes"], 3_000_000);
    let r = env
        .get(&p("/sdk/proxy/slack/__download/5000000"))
        .token(&admin())
        .via(&h2)
        .send()
        .await;
    assert_eq!(r.body.len(), 5_000_000);
    let r = env.get("/_emulator/health").via(&h2).send().await;
    assert_eq!(r.status, StatusCode::OK);
}

// ------------------------------------------------------------ lifecycle

#[tokio::test]
async fn spawn_refuses_bad_fixtures_or_keys_and_shutdown_stops_serving() {
    let mut bad = Fixtures::demo(PROJECT);
    bad.users[0].credentials[0].id = "nope".into();
    let err = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: bad,
        public_key_pem: keys().public_pem.as_bytes().to_vec(),
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures: Fixtures::demo(PROJECT),
        public_key_pem: b"not a key".to_vec(),
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let env = env().await;
    assert!(env.emu.url().starts_with("http://127.0.0.1:"));
    assert_eq!(
        env.get("/_emulator/health").send().await.status,
        StatusCode::OK
    );
    let addr = env.emu.addr;
    env.emu.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let env = env().await;
    let url = format!("{}{}", env.emu.url(), p("/sdk/proxy/slack/__slow/300"));
    let client = env.client.clone();
    let token = admin();
    let in_flight = tokio::spawn(async move {
        let req = Request::get(url)
            .header("authorization", format!("Bearer {token}"))
            .body(full(Bytes::new()))
            .unwrap();
        client.request(req).await.map(|r| r.status())
    });
    // Shut down only once the emulator is handling the request.
    let mut waited = 0;
    while env.emu.state.in_flight() == 0 {
        assert!(waited < 2000, "the request never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        waited += 1;
    }
    env.emu.shutdown().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::OK);
}

// ------------------------------------------------ December 2026 surface

/// `X-Paragon-Proxy-Url` names the provider target like `{rest}` does, and
/// the echo says which host the provider token would have gone to.
#[tokio::test]
async fn the_proxy_url_header_names_the_provider_target() {
    let env = env().await;
    let path = p("/sdk/proxy/slack");
    for (value, host, path_out) in [
        ("https://evil.example/steal?x=1", "evil.example", "/steal"),
        (
            "/api/chat.postMessage",
            "provider.invalid",
            "/api/chat.postMessage",
        ),
        ("api/users.list", "provider.invalid", "/api/users.list"),
    ] {
        let got = env
            .get(&path)
            .token(&admin())
            .credential(DEMO_SLACK_ALICE_1)
            .header("x-paragon-proxy-url", value)
            .header("x-paragon-use-slack-token-type", "user")
            .send()
            .await;
        assert_eq!(got.status, 200, "{value}");
        let target = &got.json()["output"]["target"];
        assert_eq!(target["host"], host, "{value}");
        assert_eq!(target["path"], path_out, "{value}");
        assert_eq!(target["via"], "header");
        assert_eq!(
            got.json()["output"]["paragonHeaders"]["useSlackTokenType"],
            "user"
        );
    }
    let got = env
        .get(&p("/sdk/proxy/slack/api/x"))
        .token(&admin())
        .credential(DEMO_SLACK_ALICE_1)
        .send()
        .await;
    assert_eq!(got.json()["output"]["target"]["via"], "path");
    assert_eq!(got.json()["output"]["target"]["path"], "/api/x");
}

/// Paragon's reference: with `X-Paragon-Credential` the subscription list
/// holds that credential's subscriptions, without it every credential's;
/// the permissions claim does not narrow it (credgate must).
#[tokio::test]
async fn trigger_subscription_lists_are_narrowed_by_the_header_only() {
    let env = env().await;
    let mut ids_by_cred = Vec::new();
    for cred in [DEMO_SLACK_ALICE_1, DEMO_SLACK_BOB] {
        let got = env
            .post(&p("/trigger-subscriptions"))
            .token(&admin())
            .credential(cred)
            .json(json!({"integration": "slack", "type": "SLACK_NEW_MESSAGE"}))
            .send()
            .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["credentialId"], cred);
        ids_by_cred.push(got.json()["id"].as_str().unwrap().to_string());
    }
    let listed = |got: &Resp| -> Vec<String> { ids(&got.json()["data"]) };
    // A member token narrowed to alice's account still lists both.
    let narrowed = member(&[("slack", DEMO_SLACK_ALICE_1)]);
    let got = env
        .get(&p("/trigger-subscriptions"))
        .token(&narrowed)
        .send()
        .await;
    assert_eq!(listed(&got).len(), 2);
    let got = env
        .get(&p("/trigger-subscriptions"))
        .token(&narrowed)
        .credential(DEMO_SLACK_ALICE_1)
        .send()
        .await;
    assert_eq!(listed(&got), vec![ids_by_cred[0].clone()]);
}

/// A fixture may ask ActionKit for the `actionkit` permission: a narrowed
/// token without it is 403 `7210`; with it, or unrestricted, it passes.
#[tokio::test]
async fn actionkit_can_require_the_actionkit_permission() {
    let mut fixtures = Fixtures::demo(PROJECT);
    fixtures.actionkit_permission = true;
    let emu = emulator::spawn(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        fixtures,
        public_key_pem: keys().public_pem.as_bytes().to_vec(),
    })
    .await
    .unwrap();
    let env = Env {
        emu,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let claim = credgate::paragon::permissions::claim_for([("slack", DEMO_SLACK_ALICE_1)]);
    let without = token_for("acme", json!({"urn:useparagon:connect:permissions": claim}));
    let mut with_claim = claim.clone();
    with_claim["actionkit"] = json!(true);
    let with = token_for(
        "acme",
        json!({"urn:useparagon:connect:permissions": with_claim}),
    );
    let run = |t: String| {
        env.post(&p("/actions"))
            .token(&t)
            .credential(DEMO_SLACK_ALICE_1)
            .json(json!({"action": "SLACK_SEND_MESSAGE", "parameters": {}}))
            .send()
    };
    let got = run(without).await;
    assert_eq!((got.status.as_u16(), got.code().as_str()), (403, "7210"));
    assert_eq!(run(with).await.status, 200);
    assert_eq!(run(admin()).await.status, 200);
    // Other products do not ask for it.
    let got = env
        .get(&p("/sdk/credentials"))
        .token(&member(&[("slack", DEMO_SLACK_ALICE_1)]))
        .send()
        .await;
    assert_eq!(got.status, 200);
}

/// Agent OS: tools of the integrations the token may use, a run that says
/// which credential it used (200, or 202 with `Location` under
/// `Prefer: wait=0`), executions readable by their user only, and the
/// Context API requiring `aud`.
#[tokio::test]
async fn agent_os_tools_run_as_the_connected_user() {
    let env = env().await;
    let base = format!("/api/tools/projects/{PROJECT}");
    let narrowed = member(&[("slack", DEMO_SLACK_ALICE_1)]);
    let got = env
        .post(&format!("{base}/search"))
        .token(&narrowed)
        .json(json!({"query": ""}))
        .send()
        .await;
    assert_eq!(got.status, 200);
    let tools = got.json()["tools"].as_array().unwrap().clone();
    assert!(!tools.is_empty());
    assert!(
        tools.iter().all(|t| t["integration"] == "slack"),
        "{tools:?}"
    );
    let name = tools[0]["intentName"].as_str().unwrap().to_string();
    let got = env
        .get(&format!("{base}/tools/{name}"))
        .token(&narrowed)
        .send()
        .await;
    assert_eq!(got.json()["intentName"], name.as_str());
    let got = env
        .post(&format!("{base}/executions"))
        .token(&narrowed)
        .json(json!({"intentName": name, "args": {"input": "hi"}}))
        .send()
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["credentialId"], DEMO_SLACK_ALICE_1);
    let got = env
        .post(&format!("{base}/executions"))
        .token(&narrowed)
        .header("prefer", "wait=0")
        .json(json!({"intentName": name}))
        .send()
        .await;
    assert_eq!(got.status, 202);
    let location = got.header("location").unwrap().to_string();
    let polled = env.get(&location).token(&narrowed).send().await;
    assert_eq!(polled.json()["status"], "SUCCEEDED");
    add_globex(&env);
    let stranger = token_for("globex", json!({}));
    let got = env.get(&location).token(&stranger).send().await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "execution_not_found")
    );
    // Context API: `aud` required.
    let ctx = format!("/api/context/projects/{PROJECT}/search");
    let no_aud = sign(&json!({"sub": "acme", "exp": now() + 600}));
    let got = env
        .post(&ctx)
        .token(&no_aud)
        .json(json!({"query": "x"}))
        .send()
        .await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (401, "invalid_audience")
    );
    let got = env
        .post(&ctx)
        .token(&narrowed)
        .json(json!({"query": "x"}))
        .send()
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["results"].as_array().unwrap().len(), 1);
}

/// `X-Paragon-Configuration-Id` must name a configuration of the named
/// credential (or of one of the caller's) that the claim allows.
#[tokio::test]
async fn configuration_ids_belong_to_their_credential() {
    let env = env().await;
    let path = p("/sdk/triggers/wf-1");
    let send = |cred: &'static str, config: &'static str, token: String| {
        env.post(&path)
            .token(&token)
            .credential(cred)
            .header("x-paragon-configuration-id", config)
            .json(json!({}))
            .send()
    };
    let got = send(DEMO_SLACK_ALICE_1, DEMO_SLACK_ALICE_1_CONFIG, admin()).await;
    assert_eq!(got.status, 202);
    let got = send(DEMO_SLACK_BOB, DEMO_SLACK_ALICE_1_CONFIG, admin()).await;
    assert_eq!(
        (got.status.as_u16(), got.code().as_str()),
        (404, "configuration_not_found")
    );
    let got = send(
        DEMO_SLACK_ALICE_1,
        "99999999-9999-4999-8999-999999999999",
        admin(),
    )
    .await;
    assert_eq!(got.code(), "configuration_not_found");
}

// ------------------------------------------------------ the command line

/// `credgate emulator` without `--public-key` writes the generated pair in
/// a new directory only its user can enter (0700), the private key 0600,
/// prints both paths, and verifies tokens signed with the printed key.
#[test]
fn the_emulator_command_writes_generated_keys_privately() {
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Paragon emulator");
        printed.push(line);
        if done {
            break;
        }
    }
    let path_after = |prefix: &str| {
        printed
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| panic!("no `{prefix}` line in {printed:?}"))
    };
    let private = path_after("project signing key (sign user tokens with it): ");
    let public = path_after("project public key (the emulator verifies with it): ");
    let url = printed
        .last()
        .and_then(|l| l.split(" on ").last())
        .unwrap()
        .to_string();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = private.parent().unwrap().to_path_buf();
    assert_eq!(public.parent().unwrap(), dir);
    let modes = (mode(&dir), mode(&private));

    // The printed private key signs tokens the running emulator accepts.
    let pem = std::fs::read(&private).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let project = credgate::demo::DEMO_PROJECT;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"sub": "acme", "exp": now + 300}),
        &key,
    )
    .unwrap();
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client: Client<HttpConnector, Body> =
                Client::builder(TokioExecutor::new()).build_http();
            let req = Request::get(format!("{url}/projects/{project}/sdk/me"))
                .header("authorization", format!("Bearer {token}"))
                .body(full(Bytes::new()))
                .unwrap();
            client.request(req).await.unwrap().status()
        });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(modes, (0o700, 0o600), "directory and private key modes");
    assert_eq!(status, StatusCode::OK);
}

// ------------------------------------------- the Connect SDK's needs

/// The query string of `pairs`, form-encoded as the SDK's
/// `URLSearchParams` writes it.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `build-oauth` as the SDK sends it (`Authorization` and `userToken`
/// both), for Salesforce, with session id `session` and `options`.
async fn build_oauth(env: &Env, token: &str, session: &str, options: Value) -> Resp {
    let q = query(&[
        ("action", "salesforce"),
        ("endUserSuppliedValues", "{}"),
        ("parameters", "{}"),
        ("userToken", token),
        ("integrationId", DEMO_INTEGRATION_SALESFORCE),
        ("originForPostMessage", "http://127.0.0.1:1"),
        ("isPreviewMode", "false"),
        ("installOptions", &options.to_string()),
        ("oauthMetaKeyId", session),
    ]);
    env.get(&format!(
        "/v2/projects/{PROJECT}/sdk/actions/build-oauth?{q}"
    ))
    .token(token)
    .send()
    .await
}

/// The consent path (`/emulator/consent/{nonce}`) of a build-oauth answer.
fn consent_path(env: &Env, r: &Resp) -> String {
    let url = r.json()["redirectUrl"].as_str().unwrap().to_string();
    let path = url
        .strip_prefix(&env.emu.url())
        .unwrap_or_else(|| panic!("the consent page is the emulator's own: {url}"));
    assert!(path.starts_with("/emulator/consent/"), "{path}");
    path.to_string()
}

fn session_path(id: &str) -> String {
    p(&format!("/sdk/actions/session-id/{id}"))
}

fn text(r: &Resp) -> String {
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// The salesforce credentials of acme in `/sdk/me`, as (id, externalId,
/// status).
async fn salesforce_accounts(env: &Env) -> Vec<(String, Value, Value)> {
    let me = env.get(&p("/sdk/me")).token(&admin()).send().await.json();
    me["integrations"]["salesforce"]["allCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["externalId"].clone(),
                c["status"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_catalog_and_the_user_carry_what_the_sdk_reads() {
    let env = env().await;
    env.state()
        .add_credential(
            "acme",
            CredentialFixture::new("c0570000-0000-4000-8000-000000000001", "custom.billing"),
        )
        .unwrap();
    let list = env
        .get(&p("/sdk/integrations"))
        .token(&admin())
        .send()
        .await
        .json();
    for i in list.as_array().unwrap() {
        // The SDK loads only integrations with a configs[0].values.
        let values = &i["configs"][0]["values"];
        assert!(values["workflowMeta"].is_object(), "{i}");
        assert!(values["sharedMeta"]["inputs"].is_array(), "{i}");
        assert!(i["workflows"].is_array(), "{i}");
        assert_eq!(i["needPreOauthInputs"], false, "{i}");
        assert!(i["sdkIntegrationConfig"]["accountTypes"].is_array(), "{i}");
        assert_eq!(i["isActive"], true);
    }
    let custom = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom.billing")
        .unwrap();
    assert_eq!(custom["customIntegration"]["slug"], "custom.billing");

    let me = env.get(&p("/sdk/me")).token(&admin()).send().await.json();
    let features = me["project"]["accessibleFeatures"].as_array().unwrap();
    assert!(features.contains(&json!("headless-cp")), "{features:?}");
    assert_eq!(me["project"]["id"], PROJECT);
    assert_eq!(me["resources"], json!([]));
    for (_, entry) in me["integrations"].as_object().unwrap() {
        for c in entry["allCredentials"].as_array().unwrap() {
            for cfg in c["configurations"].as_array().unwrap() {
                assert!(cfg["workflowSettings"].is_object(), "{cfg}");
            }
        }
    }
}

#[tokio::test]
async fn preflights_are_answered_for_any_origin_and_every_answer_names_it() {
    let env = env().await;
    let origin = "http://127.0.0.1:4321";
    let r = env
        .req(Method::OPTIONS, &p("/sdk/me"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-paragon-sdk-version",
        )
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization,content-type,x-paragon-sdk-version")
    );
    let methods = r.header("access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert!(r.header("access-control-allow-credentials").is_none());
    // Recorded, with no user, classified by the method it asks for.
    let rec = env.state().requests().pop().unwrap();
    assert_eq!(
        (rec.method.as_str(), rec.status, rec.user, rec.host.as_str()),
        ("OPTIONS", 204, None, "connect")
    );
    // The same on a path that is no route.
    let r = env
        .req(Method::OPTIONS, "/nowhere")
        .header("origin", origin)
        .header("access-control-request-method", "DELETE")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(env.state().requests().pop().unwrap().host, "unknown");
    // OPTIONS without the two headers is an ordinary request.
    let r = env
        .req(Method::OPTIONS, &p("/sdk/me"))
        .header("origin", origin)
        .send()
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "route_not_found".into())
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));

    // Answers, refusals included, name the request's origin; none without.
    let ok = env
        .get(&p("/sdk/me"))
        .token(&admin())
        .header("origin", origin)
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("access-control-allow-origin"), Some(origin));
    assert!(ok.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let refused = env.get(&p("/sdk/me")).header("origin", origin).send().await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("access-control-allow-origin"), Some(origin));
    let plain = env.get(&p("/sdk/me")).token(&admin()).send().await;
    assert!(plain
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
}

#[tokio::test]
async fn build_oauth_authenticates_from_its_query_and_refuses_bad_options() {
    let env = env().await;
    let globex = add_globex(&env);
    let t = admin();
    let path = |pairs: &[(&str, &str)]| {
        format!(
            "/v2/projects/{PROJECT}/sdk/actions/build-oauth?{}",
            query(pairs)
        )
    };
    let base = [
        ("integrationId", DEMO_INTEGRATION_SALESFORCE),
        ("oauthMetaKeyId", "s1"),
    ];
    // The query's token is required, with or without Authorization.
    let r = env.get(&path(&base)).token(&t).send().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    let with = |tok: &str| {
        let mut v = base.to_vec();
        v.push(("userToken", tok));
        path(&v)
    };
    let r = env.get(&with("not-a-jwt")).send().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    // Alone it is enough; beside Authorization both must be the same user.
    assert_eq!(env.get(&with(&t)).send().await.status, StatusCode::OK);
    let other = token_for("globex", json!({}));
    let r = env.get(&with(&t)).token(&other).send().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    let r = env.get(&with(&t)).token("garbage").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut twice = base.to_vec();
    twice.extend([("userToken", t.as_str()), ("userToken", t.as_str())]);
    let r = env.get(&path(&twice)).send().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );

    // Parameters and installOptions.
    let r = env
        .get(&path(&[("userToken", &t), ("oauthMetaKeyId", "s")]))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no integrationId");
    let r = env
        .get(&path(&[
            ("userToken", &t),
            ("integrationId", DEMO_INTEGRATION_SALESFORCE),
        ]))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no oauthMetaKeyId");
    let r = env
        .get(&path(&[
            ("userToken", &t),
            ("integrationId", "99999999-9999-4999-8999-999999999999"),
            ("oauthMetaKeyId", "s"),
        ]))
        .send()
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "integration_not_found".into())
    );
    let mut bad_json = base.to_vec();
    bad_json.extend([("userToken", t.as_str()), ("installOptions", "{nope")]);
    assert_eq!(
        env.get(&path(&bad_json)).send().await.status,
        StatusCode::BAD_REQUEST
    );
    for (options, status, code) in [
        (json!([1]), StatusCode::BAD_REQUEST, "bad_request"),
        (
            json!({"externalId": "x", "selectedCredentialId": DEMO_SALESFORCE_ALICE}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // The SDK requires an externalId unique per integration.
        (
            json!({"externalId": "alice"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // Another user's credential, or one of another integration.
        (
            json!({"selectedCredentialId": globex}),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
        (
            json!({"selectedCredentialId": DEMO_SLACK_BOB}),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
        (
            json!({"selectedCredentialId": "ext:nobody"}),
            StatusCode::NOT_FOUND,
            "credential_not_found",
        ),
    ] {
        let r = build_oauth(&env, &t, "s2", options.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_string()),
            "{options}"
        );
    }
    // Re-connecting a credential the token's claim does not allow: 7210.
    let narrowed = member(&[("salesforce", DEMO_SALESFORCE_BOB)]);
    let r = build_oauth(
        &env,
        &narrowed,
        "s3",
        json!({"selectedCredentialId": DEMO_SALESFORCE_ALICE}),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "7210".into()));
    // Refused sessions were not recorded.
    let r = env.get(&session_path("s2")).token(&t).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Accepted: the consent page on the emulator's own address; the
    // request recorded with its query, as Connect traffic.
    let r = build_oauth(&env, &t, "s4", json!({"externalId": "carol"})).await;
    assert_eq!(r.status, StatusCode::OK);
    consent_path(&env, &r);
    let rec = env.state().requests().pop().unwrap();
    assert_eq!(
        rec.path,
        format!("/v2/projects/{PROJECT}/sdk/actions/build-oauth")
    );
    assert!(rec.query.as_deref().unwrap().contains("oauthMetaKeyId=s4"));
    assert_eq!(
        (rec.user.as_deref(), rec.host.as_str(), rec.status),
        (Some("acme"), "connect", 200)
    );
}

#[tokio::test]
async fn the_consent_page_connects_the_account_and_the_session_names_it() {
    let env = env().await;
    let t = admin();
    let before = salesforce_accounts(&env).await;
    let r = build_oauth(
        &env,
        &t,
        "k3j4h5g6f7d8",
        json!({"allowMultipleCredentials": true, "externalId": "carol"}),
    )
    .await;
    let consent = consent_path(&env, &r);
    // Pending: the SDK keeps polling on an answer without connectCredentialId.
    let pending = env
        .get(&session_path("k3j4h5g6f7d8"))
        .token(&t)
        .send()
        .await;
    assert_eq!(pending.status, StatusCode::OK);
    assert!(
        pending.json().get("connectCredentialId").is_none(),
        "{}",
        pending.json()
    );

    // The consent page: a form posting back, submitted by its own script
    // under a nonce CSP.
    let page = env.get(&consent).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = text(&page);
    assert!(
        html.contains(&format!("<form method=\"post\" action=\"{consent}\">")),
        "{html}"
    );
    assert!(html.contains("document.forms[0].submit()"), "{html}");
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert!(
        salesforce_accounts(&env).await == before,
        "a GET changes nothing"
    );

    // The form post creates the account and closes the popup.
    let done = env
        .post(&consent)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(full("decision=allow"))
        .send()
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(text(&done).contains("window.close()"));
    let created = done.header("x-emulator-credential");
    assert!(created.is_none(), "no token, no x-emulator headers");
    let rec = env.state().requests().pop().unwrap();
    let id = rec
        .credential
        .clone()
        .expect("the record names the new credential");
    assert_eq!(
        (rec.method.as_str(), rec.user.as_deref(), rec.status),
        ("POST", None, 200)
    );
    assert_eq!(env.state().credential_owner(&id).as_deref(), Some("acme"));
    let after = salesforce_accounts(&env).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(
        after.contains(&(id.clone(), json!("carol"), json!("VALID"))),
        "{after:?}"
    );
    // The nonce is used up.
    let again = env.post(&consent).send().await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "consent_not_found".into())
    );
    assert_eq!(salesforce_accounts(&env).await.len(), after.len());

    // The session names it, for its own user only.
    let s = env
        .get(&session_path("k3j4h5g6f7d8"))
        .token(&t)
        .send()
        .await;
    assert_eq!(s.json()["connectCredentialId"], json!(id));
    add_globex(&env);
    let other = token_for("globex", json!({}));
    let s = env
        .get(&session_path("k3j4h5g6f7d8"))
        .token(&other)
        .send()
        .await;
    assert_eq!(
        (s.status, s.code()),
        (StatusCode::NOT_FOUND, "session_not_found".into())
    );
    let s = env
        .req(Method::DELETE, &session_path("k3j4h5g6f7d8"))
        .token(&other)
        .send()
        .await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);
    let s = env.get(&session_path("unknown")).token(&t).send().await;
    assert_eq!(s.status, StatusCode::NOT_FOUND);
    let gone = env
        .req(Method::DELETE, &session_path("k3j4h5g6f7d8"))
        .token(&t)
        .send()
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    for r in [
        env.get(&session_path("k3j4h5g6f7d8"))
            .token(&t)
            .send()
            .await,
        env.req(Method::DELETE, &session_path("k3j4h5g6f7d8"))
            .token(&t)
            .send()
            .await,
    ] {
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    // Session routes want the header token.
    let r = env.get(&session_path("k3j4h5g6f7d8")).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.get("/emulator/consent/00").send().await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn consent_reconnects_a_selected_credential_and_refuses_a_taken_external_id() {
    let env = env().await;
    let t = admin();
    let mut stale = CredentialFixture::new("57a1e000-5a1e-4000-8000-000000000001", "salesforce");
    stale.status = "INVALID".into();
    stale.external_id = Some("dave".into());
    env.state().add_credential("acme", stale).unwrap();
    let count = salesforce_accounts(&env).await.len();
    // `ext:<externalId>`, as the SDK accepts it.
    let r = build_oauth(&env, &t, "re", json!({"selectedCredentialId": "ext:dave"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let done = env.post(&consent_path(&env, &r)).send().await;
    assert_eq!(done.status, StatusCode::OK);
    let accounts = salesforce_accounts(&env).await;
    assert_eq!(accounts.len(), count, "re-connected, not created");
    assert!(accounts.contains(&(
        "57a1e000-5a1e-4000-8000-000000000001".into(),
        json!("dave"),
        json!("VALID")
    )));
    let s = env.get(&session_path("re")).token(&t).send().await.json();
    assert_eq!(
        s["connectCredentialId"],
        "57a1e000-5a1e-4000-8000-000000000001"
    );

    // Two installs with one new label: the second consent is refused.
    let a = build_oauth(&env, &t, "a", json!({"externalId": "erin"})).await;
    let b = build_oauth(&env, &t, "b", json!({"externalId": "erin"})).await;
    assert_eq!(
        env.post(&consent_path(&env, &a)).send().await.status,
        StatusCode::OK
    );
    let refused = env.post(&consent_path(&env, &b)).send().await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(salesforce_accounts(&env).await.len(), count + 1);
    let s = env.get(&session_path("b")).token(&t).send().await.json();
    assert!(s.get("connectCredentialId").is_none());
}

#[tokio::test]
async fn the_oauth_nonce_page_posts_to_its_opener_with_the_origin_escaped() {
    let env = env().await;
    let t = admin();
    let hostile = "http://x\"</script><script>alert(1)</script><!--";
    // The SDK writes this URL unencoded; a test must encode the hostile part.
    let path =
        |pairs: &[(&str, &str)]| format!("{}?{}", p("/sdk/actions/oauth-nonce"), query(pairs));
    let r = env
        .get(&path(&[
            ("action", "salesforce"),
            ("integrationId", DEMO_INTEGRATION_SALESFORCE),
            ("originForPostMessage", hostile),
            ("userToken", &t),
        ]))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("x-emulator-user"), Some("acme"));
    let html = text(&r);
    assert!(
        html.contains("window.opener.postMessage({type: \"oauth-nonce-loaded\"}"),
        "{html}"
    );
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert_eq!(html.matches("</script>").count(), 1, "{html}");
    assert!(!html.contains("alert(1)</"), "{html}");
    assert!(
        html.contains("\\u003c/script\\u003e\\u003cscript\\u003ealert(1)"),
        "{html}"
    );
    let csp = r.header("content-security-policy").unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("<script nonce=\"{nonce}\">")),
        "{html}"
    );

    // As the SDK builds it: unencoded, token in the query only.
    let raw = format!(
        "{}?action=salesforce&integrationId={DEMO_INTEGRATION_SALESFORCE}&originForPostMessage=http://127.0.0.1:5173&userToken={t}",
        p("/sdk/actions/oauth-nonce")
    );
    let r = env.get(&raw).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(text(&r).contains("\"http://127.0.0.1:5173\""));
    let rec = env.state().requests().pop().unwrap();
    assert!(
        rec.query.unwrap().contains("userToken="),
        "recorded with its query"
    );
    // No token in the query: 401 even with the header; no origin: 400.
    let r = env
        .get(&path(&[("originForPostMessage", "http://127.0.0.1:1")]))
        .token(&t)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env.get(&path(&[("userToken", &t)])).send().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    add_globex(&env);
    let r = env
        .get(&path(&[
            ("originForPostMessage", "http://127.0.0.1:1"),
            ("userToken", &t),
        ]))
        .token(&token_for("globex", json!({})))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn post_sdk_credentials_creates_the_callers_account() {
    let env = env().await;
    let t = admin();
    let count = salesforce_accounts(&env).await.len();
    let r = env
        .post(&p("/sdk/credentials"))
        .token(&t)
        .json(json!({
            "integrationId": DEMO_INTEGRATION_SALESFORCE,
            "config": {},
            "payload": {"code": "x"},
            "installOptions": {"isApiInstallation": true, "externalId": "frank"},
        }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let mut created = r.json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        (
            created["externalId"].clone(),
            created["status"].clone(),
            created["integrationId"].clone()
        ),
        (
            json!("frank"),
            json!("VALID"),
            json!(DEMO_INTEGRATION_SALESFORCE)
        )
    );
    assert_eq!(r.header("x-emulator-credential"), Some(id.as_str()));
    assert_eq!(
        env.state().requests().pop().unwrap().credential.as_deref(),
        Some(id.as_str())
    );
    // The same shape as GET /sdk/credentials/{id}.
    let mut read = env
        .get(&p(&format!("/sdk/credentials/{id}")))
        .token(&t)
        .send()
        .await
        .json();
    created.as_object_mut().unwrap().remove("paragonEmulator");
    read.as_object_mut().unwrap().remove("paragonEmulator");
    assert_eq!(created, read);
    assert_eq!(salesforce_accounts(&env).await.len(), count + 1);

    // `completeInstall`'s shape (a code, no installOptions): no label.
    let r = env
        .post(&p("/sdk/credentials"))
        .token(&t)
        .json(json!({"code": "abc", "integrationId": DEMO_INTEGRATION_SALESFORCE, "integrationOptions": {}}))
        .send()
        .await;
    assert_eq!(
        (r.status, r.json()["externalId"].clone()),
        (StatusCode::OK, Value::Null)
    );

    for (body, status) in [
        (json!({"installOptions": {}}), StatusCode::BAD_REQUEST),
        (
            json!({"integrationId": "99999999-9999-4999-8999-999999999999"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"integrationId": DEMO_INTEGRATION_SALESFORCE, "installOptions": {"externalId": "frank"}}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = env
            .post(&p("/sdk/credentials"))
            .token(&t)
            .json(body.clone())
            .send()
            .await;
        assert_eq!(r.status, status, "{body}");
    }
    assert_eq!(salesforce_accounts(&env).await.len(), count + 2);
    let r = env
        .post(&p("/sdk/credentials"))
        .json(json!({"integrationId": DEMO_INTEGRATION_SALESFORCE}))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
