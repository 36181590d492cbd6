//! Shared test harness: keys in a temp dir, a config builder, the gateway
//! on 127.0.0.1:0, recording upstreams, caller tokens, and clients (a hyper
//! client and a raw-socket one for byte-exact requests).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use credgate::app::{self, Running};
use credgate::config::Config;
use credgate::net::body::{self, Body};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod browser;

pub const PROJECT: &str = "11111111-2222-3333-4444-555555555555";

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let suffix: String = credgate::keygen::random_bytes::<6>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let p = std::env::temp_dir().join(format!("credgate-test-{tag}-{suffix}"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The keys a test deployment needs: Paragon's signing pair and the IdP's.
pub struct Keys {
    pub dir: TempDir,
    pub paragon: credgate::keygen::PemPair,
    pub idp: credgate::keygen::PemPair,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = TempDir::new("keys");
        let paragon = credgate::keygen::rsa().unwrap();
        let idp = credgate::keygen::rsa().unwrap();
        dir.write("paragon.pem", &paragon.private_pem);
        dir.write("paragon.pub.pem", &paragon.public_pem);
        dir.write("idp.pub.pem", &idp.public_pem);
        Keys { dir, paragon, idp }
    }

    pub fn path(&self) -> &Path {
        &self.dir.0
    }

    /// An RS256 caller token from the IdP with these claims (exp added if
    /// absent).
    pub fn caller_token(&self, mut claims: Value) -> String {
        if claims.get("exp").is_none() {
            claims["exp"] = json!(credgate::auth::unix_now() + 3600);
        }
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.idp.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    }

    /// A member of `user` acting as `principal`.
    pub fn member(&self, user: &str, principal: &str) -> String {
        self.caller_token(json!({"sub": user, "principal": principal}))
    }

    /// An admin of `user`.
    pub fn admin(&self, user: &str) -> String {
        self.caller_token(json!({"sub": user, "principal": "admin", "role": "admin"}))
    }

    /// Decodes (and verifies) an upstream Paragon token credgate minted.
    pub fn decode_upstream(&self, authorization: &str) -> Value {
        let token = authorization
            .strip_prefix("Bearer ")
            .expect("a bearer token");
        let key =
            jsonwebtoken::DecodingKey::from_rsa_pem(self.paragon.public_pem.as_bytes()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&[format!("useparagon.com/{PROJECT}")]);
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .unwrap()
            .claims
    }
}

/// Upstream base URLs for the six Paragon hosts.
#[derive(Clone)]
pub struct Hosts {
    pub connect: String,
    pub workflows: String,
    pub proxy: String,
    pub actionkit: String,
    pub sync: String,
    pub agentos: String,
}

impl Hosts {
    pub fn all(url: &str) -> Hosts {
        Hosts {
            connect: url.into(),
            workflows: url.into(),
            proxy: url.into(),
            actionkit: url.into(),
            sync: url.into(),
            agentos: url.into(),
        }
    }
}

/// Builds a gateway config: mint mode, RS256 caller keys, `principal` and
/// `role` claims, members owning credentials labelled with their principal.
pub struct ConfigBuilder<'k> {
    keys: &'k Keys,
    hosts: Hosts,
    pub extra_server: String,
    pub extra_auth: String,
    pub extra_policy: String,
    pub extra_cache: String,
    pub extra_paragon: String,
    pub extra_top: String,
    /// `[audit] file`, relative to the keys directory (tests read it with
    /// [`audit_records`]).
    pub audit_file: String,
}

impl<'k> ConfigBuilder<'k> {
    pub fn new(keys: &'k Keys, hosts: Hosts) -> Self {
        ConfigBuilder {
            keys,
            hosts,
            extra_server: String::new(),
            extra_auth: String::new(),
            extra_policy: "owner_external_id = \"{principal}\"\n".into(),
            extra_cache: String::new(),
            extra_paragon: String::new(),
            extra_top: String::new(),
            audit_file: "audit.jsonl".into(),
        }
    }

    pub fn server(mut self, s: &str) -> Self {
        self.extra_server.push_str(s);
        self.extra_server.push('\n');
        self
    }

    pub fn policy(mut self, s: &str) -> Self {
        self.extra_policy.push_str(s);
        self.extra_policy.push('\n');
        self
    }

    pub fn cache(mut self, s: &str) -> Self {
        self.extra_cache.push_str(s);
        self.extra_cache.push('\n');
        self
    }

    pub fn auth(mut self, s: &str) -> Self {
        self.extra_auth.push_str(s);
        self.extra_auth.push('\n');
        self
    }

    pub fn paragon(mut self, s: &str) -> Self {
        self.extra_paragon.push_str(s);
        self.extra_paragon.push('\n');
        self
    }

    pub fn toml(&self) -> String {
        let h = &self.hosts;
        format!(
            r#"{top}
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{server_defaults}{server}
[paragon]
project_id = "{PROJECT}"
connect_url = "{c}"
workflows_url = "{w}"
proxy_url = "{p}"
actionkit_url = "{a}"
sync_url = "{s}"
agentos_url = "{o}"
signing_key_file = "paragon.pem"
{paragon}
[auth]
principal_claim = "principal"
admin_claim = "role"
admin_values = ["admin"]
{auth}
[[auth.keys]]
algorithm = "RS256"
pem_file = "idp.pub.pem"

[policy]
{policy}
[cache]
{cache}
[audit]
file = "{audit}"
"#,
            top = self.extra_top,
            server_defaults = [("upstream_timeout", "\"5s\""), ("shutdown_grace", "\"2s\"")]
                .iter()
                .filter(|(k, _)| !self.extra_server.contains(k))
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>(),
            server = self.extra_server,
            paragon = self.extra_paragon,
            auth = self.extra_auth,
            policy = self.extra_policy,
            cache = self.extra_cache,
            c = h.connect,
            w = h.workflows,
            p = h.proxy,
            a = h.actionkit,
            s = h.sync,
            o = h.agentos,
            audit = self.audit_file,
        )
    }

    pub fn build(&self) -> Config {
        Config::from_toml(
            &self.toml(),
            self.keys.path(),
            &HashMap::<String, String>::new(),
        )
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{}", self.toml()))
    }

    pub async fn start(&self) -> Running {
        app::start(self.build()).await.expect("gateway starts")
    }
}

/// The audit records a gateway built from `keys`' [`ConfigBuilder`] wrote
/// (its `[audit] file`), oldest first.
pub fn audit_records(keys: &Keys) -> Vec<Value> {
    std::fs::read_to_string(keys.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
        .collect()
}

/// Waits until `keys`' audit file holds a record satisfying `pred`.
pub async fn wait_for_audit(keys: &Keys, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = audit_records(keys).into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such audit record: {:?}",
            audit_records(keys)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a recording upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Handler =
    Arc<dyn Fn(Recorded) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A plain HTTP/1.1 server on 127.0.0.1:0 that records each request (body
/// read whole) and answers with `handler`.
pub struct Recorder {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

/// Alice's and bob's Salesforce credentials in [`acme_paragon`].
pub const ACME_SF_ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
pub const ACME_SF_BOB: &str = "b0b00000-0000-4000-8000-000000000001";

/// A recording Paragon for the Connected User `acme`: `/sdk/me` lists one
/// Salesforce credential each for alice and bob ([`ACME_SF_ALICE`],
/// [`ACME_SF_BOB`]); a path containing `/slow` answers after `slow`;
/// anything else answers `200 {"ok": true, "bodyLen": n}` at once.
pub async fn acme_paragon(slow: Duration) -> Recorder {
    spawn_recorder(Arc::new(move |r: Recorded| {
        Box::pin(async move {
            if r.path.ends_with("/sdk/me") {
                return json_response(
                    StatusCode::OK,
                    me_body(
                        "acme",
                        &[
                            (ACME_SF_ALICE, "salesforce", "alice"),
                            (ACME_SF_BOB, "salesforce", "bob"),
                        ],
                    ),
                );
            }
            if r.path.contains("/slow") {
                tokio::time::sleep(slow).await;
            }
            json_response(StatusCode::OK, json!({"ok": true, "bodyLen": r.body.len()}))
        })
    }))
    .await
}

/// The gateway's Prometheus text, from its admin listener.
pub async fn scrape_metrics(gw: &Running) -> String {
    let got = get(
        &client(),
        &format!("http://{}/metrics", gw.admin_addr),
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    String::from_utf8(got.body.to_vec()).expect("metrics are UTF-8")
}

/// The value of one series (`name{labels}` exactly as exported) in a
/// Prometheus text exposition; 0 when the series is not exported yet.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A recorder answering `200 {"upstream": name, "path": ...}`.
pub async fn spawn_echo(name: &'static str) -> Recorder {
    spawn_recorder(Arc::new(move |r: Recorded| {
        Box::pin(async move {
            json_response(
                StatusCode::OK,
                json!({"upstream": name, "method": r.method, "path": r.path, "query": r.query, "bodyLen": r.body.len()}),
            )
        })
    }))
    .await
}

pub fn json_response(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

pub async fn spawn_recorder(handler: Handler) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let rec = Recorded {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().map(str::to_string),
                            headers: parts.headers,
                            body,
                        };
                        log.lock().unwrap().push(rec.clone());
                        Ok::<_, Infallible>(handler(rec).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Recorder { addr, log }
}

/// A `/sdk/me` body for `user` with credentials `(id, integration, externalId)`.
pub fn me_body(user: &str, creds: &[(&str, &str, &str)]) -> Value {
    let mut integrations = serde_json::Map::new();
    for (id, integration, ext) in creds {
        let entry = integrations
            .entry(integration.to_string())
            .or_insert_with(|| json!({"enabled": true, "allCredentials": []}));
        entry["allCredentials"].as_array_mut().unwrap().push(json!({
            "id": id, "integrationId": format!("{:0>8}-0000-4000-8000-000000000000", integration.len()),
            "status": "VALID", "externalId": ext, "providerData": {}, "configurations": []
        }));
    }
    json!({"authenticated": true, "userId": user, "integrations": integrations})
}

pub type TestClient = Client<HttpConnector, Body>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

pub async fn send(client: &TestClient, req: Request<Body>) -> Got {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response within 20s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Builds a request to the gateway.
pub fn req(
    method: &str,
    gw: &Running,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body_bytes: impl Into<Bytes>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}{}", gw.addr, path));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body::full(body_bytes.into())).unwrap()
}

/// `GET path` as `token`, naming `credential` in `X-Paragon-Credential`.
pub async fn get_naming(
    client: &TestClient,
    gw: &Running,
    path: &str,
    token: &str,
    credential: &str,
) -> Got {
    let headers = [("x-paragon-credential", credential)];
    send(client, req("GET", gw, path, Some(token), &headers, "")).await
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it or `wait` passes; returns everything read.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status codes of every response in a raw HTTP/1.1 exchange.
pub fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A request or response body fed chunk by chunk through a channel, so a
/// test controls exactly when each part is sent.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// The `credgate` binary run as a child process, its stdout captured.
pub struct Binary {
    pub child: std::process::Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl Binary {
    /// Starts `credgate serve --config PATH` and waits for it to listen.
    // The child is killed and waited for in `Drop`.
    #[allow(clippy::zombie_processes)]
    pub fn serve(config: &Path, env: &[(&str, &str)]) -> Binary {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("credgate starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (l1, l2) = (lines.clone(), lines.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                l1.lock().unwrap().push(line);
            }
        });
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                l2.lock().unwrap().push(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "credgate listening");
            if let Some(v) = found {
                let addr = v["addr"].as_str().unwrap().parse().unwrap();
                let admin_addr = v["admin_addr"].as_str().unwrap().parse().unwrap();
                return Binary {
                    child,
                    lines,
                    addr,
                    admin_addr,
                };
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("credgate did not start: {:?}", lines.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub fn log_text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log_text().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {needle:?}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET with an optional bearer token, read whole.
pub async fn get(client: &TestClient, url: &str, token: Option<&str>) -> Got {
    let mut b = Request::get(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(client, b.body(body::empty()).unwrap()).await
}
