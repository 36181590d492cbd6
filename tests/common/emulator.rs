//! The end-to-end routing harness: the Paragon emulator on 127.0.0.1:0 with
//! the demo fixtures plus two more members (carol, dave), the gateway
//! pointed at it for all five Paragon hosts, and helpers that join a
//! gateway response to what the emulator received (through the gateway's
//! `x-request-id`, which credgate forwards upstream and returns to the
//! caller).
//!
//! Included from `tests/routing.rs` with `#[path]`; it builds on
//! `tests/common/mod.rs` (keys, config builder, client).
#![allow(dead_code)]

use std::collections::BTreeSet;

use bytes::Bytes;
use credgate::app::Running;
use credgate::emulator::fixtures::*;
use credgate::emulator::{
    self, CredentialFixture, EmulatorConfig, EmulatorHandle, EmulatorState, Fixtures,
    RecordedRequest,
};
use credgate::paragon::permissions::claim_for;
use serde_json::{json, Value};

use crate::common::*;

/// Carol's Salesforce account (added to the demo fixtures).
pub const CAROL_SF: &str = "ca401000-5a1e-4000-8000-000000000001";
/// Carol's Google Drive account.
pub const CAROL_DRIVE: &str = "ca401000-d21e-4000-8000-000000000001";
/// Dave's only account, on Slack.
pub const DAVE_SLACK: &str = "da7e0000-51ac-4000-8000-000000000001";
/// A well-formed id no user has.
pub const UNKNOWN: &str = "99999999-9999-4999-8999-999999999999";
/// The permissions claim of Paragon user tokens.
pub const PERMS: &str = "urn:useparagon:connect:permissions";

/// A credential the suite knows: id, integration type, owning member (its
/// `externalId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub integration: String,
    pub owner: String,
}

/// A VALID credential of `integration` labelled as `owner`'s.
pub fn owned(id: &str, integration: &str, owner: &str) -> CredentialFixture {
    let mut c = CredentialFixture::new(id, integration);
    c.external_id = Some(owner.to_string());
    c
}

/// `Fixtures::demo(PROJECT)` (alice: Salesforce, two Slack, Google Drive;
/// bob: Salesforce, Slack) plus carol (Salesforce, Google Drive) and dave
/// (Slack only), all of Connected User `acme`.
pub fn fixtures() -> Fixtures {
    let mut f = Fixtures::demo(PROJECT);
    let creds = &mut f.users[0].credentials;
    creds.push(owned(CAROL_SF, "salesforce", "carol"));
    creds.push(owned(CAROL_DRIVE, "googledrive", "carol"));
    creds.push(owned(DAVE_SLACK, "slack", "dave"));
    f
}

/// Every credential of `fixtures`, with its owner label.
pub fn known_of(f: &Fixtures) -> Vec<Known> {
    f.users
        .iter()
        .flat_map(|u| &u.credentials)
        .map(|c| Known {
            id: c.id.to_ascii_lowercase(),
            integration: c.integration.clone(),
            owner: c.external_id.clone().unwrap_or_default(),
        })
        .collect()
}

/// Where an allowed request carries its credential upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Exactly one `X-Paragon-Credential`.
    Header,
    /// Exactly one `credentialId` in the JSON body, no header.
    Body,
    /// Neither: the path (`/sdk/credentials/{id}`) or the sync id names it;
    /// only the narrowed token says which credential.
    Token,
}

pub struct Env {
    pub keys: Keys,
    pub emu: EmulatorHandle,
    pub gw: Running,
    pub cl: TestClient,
    pub known: Vec<Known>,
}

impl Env {
    /// The suite's fixtures and the default test config
    /// (`owner_external_id = "{principal}"`).
    pub async fn start() -> Env {
        Env::with(fixtures(), |b| b).await
    }

    /// `fixtures` and the default config changed by `cfg`.
    pub async fn with(
        fixtures: Fixtures,
        cfg: impl for<'k> FnOnce(ConfigBuilder<'k>) -> ConfigBuilder<'k>,
    ) -> Env {
        let keys = Keys::new();
        let known = known_of(&fixtures);
        let emu = emulator::spawn(EmulatorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            fixtures,
            public_key_pem: keys.paragon.public_pem.as_bytes().to_vec(),
        })
        .await
        .expect("the emulator starts");
        let gw = cfg(ConfigBuilder::new(&keys, Hosts::all(&emu.url())))
            .start()
            .await;
        Env {
            keys,
            emu,
            gw,
            cl: client(),
            known,
        }
    }

    pub fn state(&self) -> &EmulatorState {
        &self.emu.state
    }

    pub fn member(&self, principal: &str) -> String {
        self.keys.member("acme", principal)
    }

    pub fn admin(&self) -> String {
        self.keys.admin("acme")
    }

    /// A Paragon user token for `acme` signed with the project key, as a
    /// backend would mint it (passthrough mode), with `extra` claims.
    pub fn paragon_token(&self, extra: Value) -> String {
        let mut claims = json!({
            "sub": "acme",
            "aud": format!("useparagon.com/{PROJECT}"),
            "iat": credgate::auth::unix_now(),
            "exp": credgate::auth::unix_now() + 3600,
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.keys.paragon.private_pem.as_bytes())
            .unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    }

    /// Registers a credential added to the emulator after start.
    pub fn add(&mut self, user: &str, c: CredentialFixture) {
        self.known.push(Known {
            id: c.id.to_ascii_lowercase(),
            integration: c.integration.clone(),
            owner: c.external_id.clone().unwrap_or_default(),
        });
        self.state()
            .add_credential(user, c)
            .expect("the emulator accepts the credential");
    }

    /// Registers a credential Paragon created through the API (an install).
    pub fn learn(&mut self, id: &str, integration: &str, owner: &str) {
        self.known.push(Known {
            id: id.to_ascii_lowercase(),
            integration: integration.to_string(),
            owner: owner.to_string(),
        });
    }

    pub fn cred(&self, id: &str) -> &Known {
        let id = id.to_ascii_lowercase();
        self.known
            .iter()
            .find(|k| k.id == id)
            .unwrap_or_else(|| panic!("unknown test credential {id}"))
    }

    /// The credentials labelled as `principal`'s that the emulator still has.
    pub fn owned_by(&self, principal: &str) -> Vec<&Known> {
        self.known
            .iter()
            .filter(|k| k.owner == principal && self.state().credential_owner(&k.id).is_some())
            .collect()
    }

    /// The permissions claim a member's request that routes no credential
    /// must carry: every credential the member owns.
    pub fn claim_of_member(&self, principal: &str) -> Value {
        claim_for(
            self.owned_by(principal)
                .iter()
                .map(|k| (k.integration.as_str(), k.id.as_str())),
        )
    }

    /// Sends one request to the gateway.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Got {
        send(
            &self.cl,
            req(method, &self.gw, path, Some(token), headers, body),
        )
        .await
    }

    /// A member's `GET` on the Salesforce Proxy API (`.../salesforce/{rest}`)
    /// naming `cred`, with `headers` besides.
    pub async fn salesforce_get(
        &self,
        principal: &str,
        rest: &str,
        cred: &str,
        headers: &[(&str, &str)],
    ) -> Got {
        let mut all = vec![("x-paragon-credential", cred)];
        all.extend_from_slice(headers);
        let path = format!("/projects/{PROJECT}/sdk/proxy/salesforce/{rest}");
        self.send("GET", &path, &self.member(principal), &all, "")
            .await
    }

    /// `send` naming `cred` in `X-Paragon-Credential`.
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        token: &str,
        cred: &str,
        body: impl Into<Bytes>,
    ) -> Got {
        self.send(method, path, token, &[("x-paragon-credential", cred)], body)
            .await
    }

    /// Every request that reached the emulator except credgate's own
    /// (`/sdk/me` loads, trigger-subscription lookups).
    pub fn traffic(&self) -> Vec<RecordedRequest> {
        self.state()
            .requests()
            .into_iter()
            .filter(|r| !is_own(r))
            .collect()
    }

    /// credgate's own `/sdk/me` loads so far.
    pub fn loads(&self) -> Vec<RecordedRequest> {
        self.state()
            .requests()
            .into_iter()
            .filter(is_load)
            .collect()
    }

    /// What reached the emulator for the gateway request that answered
    /// `got` (joined by `x-request-id`), credgate's own loads excluded.
    pub fn forwarded(&self, got: &Got) -> Vec<RecordedRequest> {
        let rid = rid(got);
        self.traffic()
            .into_iter()
            .filter(|r| r.header("x-request-id") == Some(rid.as_str()))
            .collect()
    }

    /// Asserts that `got` was allowed and reached Paragon exactly once,
    /// carrying exactly credential `cred` (at `place`) and, for a member, a
    /// token narrowed to it. Returns what the emulator received.
    pub fn assert_routed(&self, got: &Got, cred: &str, place: Place) -> RecordedRequest {
        assert!(
            got.status.is_success(),
            "expected success, got {} {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        );
        let fwd = self.forwarded(got);
        assert_eq!(fwd.len(), 1, "forwarded once: {fwd:#?}");
        let r = fwd.into_iter().next().unwrap();
        let headers = credential_headers(&r);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let body_ids = body.matches("\"credentialId\"").count();
        match place {
            Place::Header => {
                assert_eq!(headers, vec![cred.to_string()], "one credential header");
                if r.host != "sync" {
                    assert_eq!(body_ids, 0, "no body credential: {body}");
                }
            }
            Place::Body => {
                assert!(headers.is_empty(), "no credential header: {headers:?}");
                assert_eq!(body_ids, 1, "one body credentialId: {body}");
                let v: Value = serde_json::from_str(&body).expect("a JSON body");
                assert_eq!(v["credentialId"], cred, "{body}");
            }
            Place::Token => {
                assert!(headers.is_empty(), "no credential header: {headers:?}");
                assert_eq!(body_ids, 0, "no body credential: {body}");
            }
        }
        assert_eq!(
            r.credential.as_deref(),
            Some(cred),
            "the emulator served the call with {cred}"
        );
        let claims = self.upstream_claims(&r);
        assert_eq!(claims["sub"], "acme");
        assert_eq!(claims["aud"], format!("useparagon.com/{PROJECT}"));
        let k = self.cred(cred);
        assert_eq!(
            claims[PERMS],
            claim_for([(k.integration.as_str(), k.id.as_str())]),
            "the token is narrowed to the routed credential"
        );
        r
    }

    /// Asserts that `got` was allowed, reached Paragon exactly once with no
    /// credential, and (for member `principal`) a token listing exactly the
    /// member's credentials; `None` for an admin (no claim).
    pub fn assert_unrouted(&self, got: &Got, principal: Option<&str>) -> RecordedRequest {
        assert!(
            got.status.is_success(),
            "expected success, got {} {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        );
        let fwd = self.forwarded(got);
        assert_eq!(fwd.len(), 1, "forwarded once: {fwd:#?}");
        let r = fwd.into_iter().next().unwrap();
        assert!(credential_headers(&r).is_empty(), "no credential header");
        let claims = self.upstream_claims(&r);
        assert_eq!(claims["sub"], "acme");
        match principal {
            Some(p) => assert_eq!(claims[PERMS], self.claim_of_member(p), "member claim"),
            None => assert!(claims.get(PERMS).is_none(), "admin tokens carry no claim"),
        }
        r
    }

    /// Asserts a credgate refusal: status, code, the JSON error shape, and
    /// that nothing with this request's id reached Paragon.
    pub fn assert_refused(&self, got: &Got, status: u16, code: &str) {
        assert_eq!(
            (got.status.as_u16(), got.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(
            got.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let v = got.json();
        assert_eq!(v["requestId"], rid(got));
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        let fwd = self.forwarded(got);
        assert!(
            fwd.is_empty(),
            "a refused request reached Paragon: {fwd:#?}"
        );
    }

    /// The claims of the token Paragon received, verified with the project
    /// key (mint mode).
    pub fn upstream_claims(&self, r: &RecordedRequest) -> Value {
        let auth = r.header("authorization").expect("an Authorization header");
        self.keys.decode_upstream(auth)
    }

    /// `POST` of a JSON body to the admin listener: status and JSON answer.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = http::Request::post(format!("http://{}{path}", self.gw.admin_addr))
            .header("content-type", "application/json")
            .body(credgate::net::body::full(body.to_string()))
            .unwrap();
        let got = send(&self.cl, r).await;
        (got.status.as_u16(), got.json())
    }

    /// `GET` on the admin listener: status and JSON answer.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let got = get(
            &self.cl,
            &format!("http://{}{path}", self.gw.admin_addr),
            None,
        )
        .await;
        (got.status.as_u16(), got.json())
    }

    /// `credgate explain` against this gateway's admin listener for `path`
    /// with one `header`, the token given on standard input; returns what
    /// it printed, asserting its exit status: 0 when allowed, 3 when the
    /// policy refuses.
    pub async fn explain(&self, token: &str, path: &str, header: &str) -> String {
        self.explain_with(&["--token", "-"], token, path, header)
            .await
    }

    /// `credgate explain` with `args` (a caller), `stdin` on standard input.
    pub async fn explain_with(
        &self,
        args: &[&str],
        stdin: &str,
        path: &str,
        header: &str,
    ) -> String {
        let (code, text) = self.explain_status(args, stdin, path, header).await;
        let decided = text
            .lines()
            .find(|l| l.starts_with("decision"))
            .unwrap_or("");
        let want = if decided.contains("allowed") { 0 } else { 3 };
        assert_eq!(code, Some(want), "{text}");
        text
    }

    /// `credgate explain`'s exit status and output.
    pub async fn explain_status(
        &self,
        args: &[&str],
        stdin: &str,
        path: &str,
        header: &str,
    ) -> (Option<i32>, String) {
        let admin = format!("http://{}", self.gw.admin_addr);
        let (token, path, header) = (stdin.to_string(), path.to_string(), header.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
                .args(["explain", "--admin", &admin, "--path", &path])
                .args(&args)
                .args(["--header", &header])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(token.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.gw.admin_addr);
        String::from_utf8(get(&self.cl, &url, None).await.body.to_vec()).unwrap()
    }

    /// `POST /admin/cache/invalidate` with `body`.
    pub async fn invalidate(&self, body: Value) {
        let r = http::Request::post(format!(
            "http://{}/admin/cache/invalidate",
            self.gw.admin_addr
        ))
        .header("content-type", "application/json")
        .body(credgate::net::body::full(body.to_string()))
        .unwrap();
        let got = send(&self.cl, r).await;
        assert_eq!(got.status, 200, "{:?}", got.body);
    }
}

/// credgate's own `/sdk/me` load.
pub fn is_load(r: &RecordedRequest) -> bool {
    r.method == "GET" && r.path.ends_with("/sdk/me") && is_own(r)
}

/// A request credgate made itself (a load, a lookup): built from scratch,
/// so without the `X-Forwarded-For` every forwarded request gets.
pub fn is_own(r: &RecordedRequest) -> bool {
    r.header("x-forwarded-for").is_none()
}

/// The gateway's request id for a response.
pub fn rid(got: &Got) -> String {
    got.headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("the gateway returns x-request-id")
        .to_string()
}

/// Every value of every spelling of `X-Paragon-Credential` (any case, `_`
/// for `-`) a recorded request carried.
pub fn credential_headers(r: &RecordedRequest) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| {
            n.replace('_', "-")
                .eq_ignore_ascii_case("x-paragon-credential")
        })
        .map(|(_, v)| v.clone())
        .collect()
}

/// Every credential id (lowercased) a text mentions, among `known`.
pub fn ids_in<'k>(text: &str, known: &'k [Known]) -> BTreeSet<&'k str> {
    let lower = text.to_ascii_lowercase();
    known
        .iter()
        .filter(|k| lower.contains(&k.id))
        .map(|k| k.id.as_str())
        .collect()
}

/// `/projects/{PROJECT}{rest}`.
pub fn p(rest: &str) -> String {
    format!("/projects/{PROJECT}{rest}")
}

pub const SF_ALICE: &str = DEMO_SALESFORCE_ALICE;
pub const SF_BOB: &str = DEMO_SALESFORCE_BOB;
pub const SLACK_ALICE_1: &str = DEMO_SLACK_ALICE_1;
pub const SLACK_ALICE_2: &str = DEMO_SLACK_ALICE_2;
pub const SLACK_BOB: &str = DEMO_SLACK_BOB;
pub const DRIVE_ALICE: &str = DEMO_GOOGLEDRIVE_ALICE;

/// `application/x-www-form-urlencoded`, as `URLSearchParams` writes it.
pub fn form_enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The query the SDK sends to start an install (`build-oauth`), with
/// `options` as its `installOptions`, `token` as its `userToken` and
/// `session` as its `oauthMetaKeyId`.
pub fn install_start_query(token: &str, options: &Value, session: &str) -> String {
    format!(
        "action=salesforce&endUserSuppliedValues=%7B%7D&parameters=%7B%7D&userToken={token}&integrationId={DEMO_INTEGRATION_SALESFORCE}&originForPostMessage={}&isPreviewMode=false&installOptions={}&oauthMetaKeyId={session}",
        form_enc("http://127.0.0.1:1"),
        form_enc(&options.to_string())
    )
}

/// `build-oauth`'s path with `query`.
pub fn build_oauth_path(query: &str) -> String {
    format!("/v2/projects/{PROJECT}/sdk/actions/build-oauth?{query}")
}

impl Env {
    /// A member's install started as the SDK starts it (`build-oauth`,
    /// session `session`, several accounts allowed) and consented to at
    /// the provider.
    pub async fn install_consented(&self, token: &str, session: &str) {
        let options = json!({"allowMultipleCredentials": true});
        let path = build_oauth_path(&install_start_query(token, &options, session));
        let got = self.send("GET", &path, token, &[], "").await;
        assert!(got.status.is_success(), "{} {:?}", got.status, got.body);
        let redirect = got.json()["redirectUrl"].as_str().unwrap().to_string();
        self.consent(&redirect).await;
    }

    /// The provider's consent to an install's `redirectUrl`, straight at
    /// the emulator (not through credgate).
    pub async fn consent(&self, redirect: &str) {
        let consent = send(
            &self.cl,
            http::Request::post(redirect)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(credgate::net::body::full("approve=1"))
                .unwrap(),
        )
        .await;
        assert!(consent.status.is_success(), "{}", consent.status);
    }
}
