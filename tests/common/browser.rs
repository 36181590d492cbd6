//! Paragon's own Connect SDK (npm `@useparagon/connect`, pinned; scripts/test
//! fetches it into `target/vendor/`) driven in Debian's headless Chromium,
//! which can reach nothing but loopback.
//!
//! [`SdkPage::start`] serves, on 127.0.0.1:0, the page a test gives (`/`),
//! the SDK (`/sdk.js`: the bundle is CommonJS, so it is wrapped with a
//! `module`/`exports`/`require` shim and exposed as `window.paragon`), and
//! two endpoints the page reports to (`POST /result`, `POST /log`). Its
//! [`origin`](SdkPage::origin) is the page's origin, for a gateway's
//! `[cors]`. [`SdkPage::run`] opens the page in Chromium and returns the
//! result the page posts, or fails the test with the page's logs after a
//! timeout.
//!
//! [`journey_page`] is such a page: it points the SDK at one base URL (all
//! four API hosts: the emulator, or credgate in front of it), then runs a
//! list of [`Step`]s, reporting for each its value or error and whether the
//! SDK still holds its user (the SDK signs out on some refusals).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use credgate::net::body::{self, Body};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::TempDir;

/// The SDK version the tests pin (scripts/test downloads exactly this).
pub const SDK_VERSION: &str = "2.4.0";

/// How long one run may take unless a test says otherwise.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The bundle's one `require` is lodash's optional `require("util")`: an
/// empty object does.
const SHIM: &str =
    "var module={exports:{}},exports=module.exports,require=function(){return {}};\n";

/// The pinned SDK bundle on disk.
pub fn sdk_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "target/vendor/useparagon-connect-{SDK_VERSION}/index.js"
    ));
    assert!(
        p.is_file(),
        "Paragon's Connect SDK is missing at {}: run scripts/test (it downloads \
         @useparagon/connect {SDK_VERSION} from npm and checks its integrity)",
        p.display()
    );
    p
}

pub fn chromium() -> PathBuf {
    find_chromium(&std::env::var_os("PATH").unwrap_or_default()).expect(
        "Chromium or Chrome: Debian's /usr/bin/chromium, one on PATH (chromium, \
         chromium-browser, google-chrome), or macOS's app (scripts/test installs it: \
         apt-get install chromium)",
    )
}

/// Chromium's program: the usual names on `path` (a `PATH` value:
/// Debian, Fedora, Arch, a Chrome install), then Debian's paths (a `PATH`
/// without /usr/bin), then macOS's apps.
pub fn find_chromium(path: &std::ffi::OsStr) -> Option<PathBuf> {
    let debian = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let mac = [
        "/Applications/Chromium.app/Contents/MacOS/Chromium",
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    ];
    let on_path = names.iter().find_map(|n| {
        std::env::split_paths(path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        debian
            .iter()
            .chain(&mac)
            .map(PathBuf::from)
            .find(|p| p.exists())
    })
}

/// Headless Chromium that can reach loopback only: every other name fails
/// to resolve, any proxied connection goes to a closed local port, and the
/// background services that phone home are off; `profile` is its own
/// user-data directory.
pub fn loopback_chromium(profile: &std::path::Path) -> std::process::Command {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = std::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        &format!("--proxy-server=127.0.0.1:{closed_port}"),
        &format!("--user-data-dir={}", profile.display()),
    ]);
    cmd
}

struct Shared {
    html: Mutex<String>,
    sdk: Bytes,
    result: Mutex<Option<Value>>,
    logs: Mutex<Vec<Value>>,
}

/// The static page server (see the module doc).
pub struct SdkPage {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl SdkPage {
    /// Loads the SDK and starts serving (an empty page until
    /// [`run`](Self::run) sets one).
    pub async fn start() -> SdkPage {
        let bundle = std::fs::read(sdk_path()).expect("the SDK bundle is readable");
        let mut sdk = SHIM.as_bytes().to_vec();
        sdk.extend_from_slice(&bundle);
        sdk.extend_from_slice(b"\n;window.paragon = module.exports.paragon;\n");
        let shared = Arc::new(Shared {
            html: Mutex::new(String::new()),
            sdk: sdk.into(),
            result: Mutex::new(None),
            logs: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SdkPage { addr, shared }
    }

    /// `http://127.0.0.1:PORT`: the page's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the page logged so far (console, uncaught errors, steps).
    pub fn logs(&self) -> Vec<Value> {
        self.shared.logs.lock().unwrap().clone()
    }

    /// Serves `html` at `/`, opens it in headless Chromium, and returns
    /// what the page posts to `/result`. Chromium is killed then, or after
    /// `timeout`, when the test fails with the page's logs.
    pub async fn run(&self, html: String, timeout: Duration) -> Value {
        *self.shared.html.lock().unwrap() = html;
        *self.shared.result.lock().unwrap() = None;
        self.shared.logs.lock().unwrap().clear();
        let profile = TempDir::new("chromium");
        let browser = Browser::open(&format!("{}/", self.origin()), &profile);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.shared.result.lock().unwrap().take() {
                drop(browser);
                return v;
            }
            if Instant::now() > deadline {
                drop(browser);
                panic!(
                    "the page posted no result within {timeout:?}; its logs:\n{}\nchromium:\n{}",
                    self.logs()
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                    tail(&profile.0.join("chromium.log"), 30),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve(s: &Shared, req: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let read = incoming
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let reply = |status: StatusCode, kind: &'static str, b: Bytes| {
        let mut r = Response::new(body::full(b));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("content-type", http::HeaderValue::from_static(kind));
        r.headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
        r
    };
    let posted = || {
        serde_json::from_slice::<Value>(&read)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&read)}))
    };
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/") => {
            let html = s.html.lock().unwrap().clone();
            reply(StatusCode::OK, "text/html; charset=utf-8", html.into())
        }
        (&Method::GET, "/sdk.js") => reply(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            s.sdk.clone(),
        ),
        (&Method::POST, "/result") => {
            *s.result.lock().unwrap() = Some(posted());
            reply(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
        }
        (&Method::POST, "/log") => {
            s.logs.lock().unwrap().push(posted());
            reply(StatusCode::NO_CONTENT, "text/plain", Bytes::new())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    }
}

/// Headless Chromium on one URL, in its own process group (killed whole on
/// drop), started as `tests/dashboard.rs` starts it: loopback only (every
/// other name fails to resolve, any proxied connection goes to a closed
/// local port, no background networking), its own profile; and popups
/// allowed (`installIntegration` opens one from a promise, not a click).
struct Browser {
    child: std::process::Child,
}

impl Browser {
    fn open(url: &str, profile: &TempDir) -> Browser {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(profile.0.join("chromium.log")).unwrap();
        let child = loopback_chromium(&profile.0.join("profile"))
            .arg("--disable-popup-blocking")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        Browser { child }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser and its helper processes: the group this test started.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One step of a [`journey_page`]. Option values that are strings starting
/// with `$` name a value an earlier step saved.
#[derive(Debug, Clone)]
pub enum Step {
    /// `paragon.authenticate(project, token)`.
    Authenticate { token: String },
    /// `paragon.getUser()`.
    GetUser,
    /// `paragon.request(integration, path, options)`.
    Request {
        integration: String,
        path: String,
        options: Value,
    },
    /// `paragon.installIntegration(integration, options)`; its
    /// `credentialId` is saved as `$installed`.
    Install { integration: String, options: Value },
    /// `paragon.uninstallIntegration(integration, options)`.
    Uninstall { integration: String, options: Value },
}

impl Step {
    fn to_json(&self) -> Value {
        match self {
            Step::Authenticate { token } => json!({"do": "authenticate", "token": token}),
            Step::GetUser => json!({"do": "getUser"}),
            Step::Request {
                integration,
                path,
                options,
            } => {
                json!({"do": "request", "integration": integration, "path": path, "options": options})
            }
            Step::Install {
                integration,
                options,
            } => json!({
                "do": "installIntegration", "integration": integration, "options": options,
                "save": {"installed": "credentialId"},
            }),
            Step::Uninstall {
                integration,
                options,
            } => {
                json!({"do": "uninstallIntegration", "integration": integration, "options": options})
            }
        }
    }
}

/// The journey of a member connecting and using accounts, against `base`
/// (the four API hosts) as `token`: authenticate, list the accounts, call
/// the provider through the primary `integration` account at `path`,
/// connect a new one labelled `external_id`, list again, disconnect the
/// new one, list again. Results are in this order.
pub fn standard_journey(
    token: &str,
    integration: &str,
    path: &str,
    external_id: &str,
) -> Vec<Step> {
    vec![
        Step::Authenticate {
            token: token.to_string(),
        },
        Step::GetUser,
        Step::Request {
            integration: integration.to_string(),
            path: path.to_string(),
            options: json!({"method": "GET", "selectedCredentialId": format!("$primary_{integration}")}),
        },
        Step::Install {
            integration: integration.to_string(),
            options: json!({"allowMultipleCredentials": true, "externalId": external_id}),
        },
        Step::GetUser,
        Step::Uninstall {
            integration: integration.to_string(),
            options: json!({"selectedCredentialId": "$installed"}),
        },
        Step::GetUser,
    ]
}

/// A page that configures the SDK for `base` and project `project`, runs
/// `steps`, and posts `{"origin", "steps": [{"do", "ok", "value" | "error",
/// "authenticated"}]}` to `/result`. Each step may take `step_timeout`.
/// After `getUser`, `$primary_<type>` is the `credentialId` of each
/// integration (the SDK's primary account of it).
pub fn journey_page(base: &str, project: &str, steps: &[Step], step_timeout: Duration) -> String {
    let cfg = json!({
        "base": base,
        "project": project,
        "steps": steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        "stepTimeoutMs": step_timeout.as_millis() as u64,
    });
    // JSON inside a script element: no `<` may end it.
    let cfg = cfg.to_string().replace('<', "\\u003c");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>SDK journey</title></head>\
         <body><script src=\"/sdk.js\"></script><script>var CONFIG = {cfg};\n{JOURNEY_JS}</script></body></html>"
    )
}

const JOURNEY_JS: &str = r#"
(function () {
  var cfg = CONFIG;
  function text(x) {
    if (x instanceof Error) return x.message;
    if (typeof x === "string") return x;
    try { return JSON.stringify(x); } catch (e) { return String(x); }
  }
  function post(path, v) {
    return fetch(path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(v)})
      .catch(function () {});
  }
  ["log", "info", "warn", "error"].forEach(function (level) {
    var orig = console[level];
    console[level] = function () {
      post("/log", {level: level, args: Array.prototype.map.call(arguments, text)});
      return orig.apply(console, arguments);
    };
  });
  window.addEventListener("error", function (e) { post("/log", {level: "uncaught", args: [text(e.message)]}); });
  window.addEventListener("unhandledrejection", function (e) { post("/log", {level: "unhandledrejection", args: [text(e.reason)]}); });
  var saved = {};
  function subst(v) {
    if (typeof v === "string" && v.charAt(0) === "$") return saved[v.slice(1)];
    if (Array.isArray(v)) return v.map(subst);
    if (v && typeof v === "object") {
      var o = {};
      Object.keys(v).forEach(function (k) { o[k] = subst(v[k]); });
      return o;
    }
    return v;
  }
  function withTimeout(p, ms) {
    return new Promise(function (resolve, reject) {
      var t = setTimeout(function () { reject(new Error("step timed out after " + ms + " ms")); }, ms);
      Promise.resolve(p).then(function (v) { clearTimeout(t); resolve(v); },
                              function (e) { clearTimeout(t); reject(e); });
    });
  }
  function act(s) {
    var p = window.paragon;
    switch (s["do"]) {
      case "authenticate": return p.authenticate(cfg.project, s.token);
      case "getUser": return p.getUser();
      case "request": return p.request(s.integration, s.path, subst(s.options || {}));
      case "installIntegration": return p.installIntegration(s.integration, subst(s.options || {}));
      case "uninstallIntegration": return p.uninstallIntegration(s.integration, subst(s.options || {}));
      default: throw new Error("unknown step " + s["do"]);
    }
  }
  async function run() {
    var results = [];
    window.paragon.configureGlobal({host: "paragon.invalid"}, {
      ZEUS_PUBLIC_URL: cfg.base, HERMES_PUBLIC_URL: cfg.base,
      WORKER_PROXY_PUBLIC_URL: cfg.base, API_TRIGGER_KIT_PUBLIC_URL: cfg.base
    });
    for (var i = 0; i < cfg.steps.length; i++) {
      var s = cfg.steps[i];
      var r = {"do": s["do"]};
      try {
        var v = await withTimeout(act(s), cfg.stepTimeoutMs);
        r.ok = true;
        r.value = v === undefined ? null : JSON.parse(JSON.stringify(v));
        Object.keys(s.save || {}).forEach(function (name) { saved[name] = v && v[s.save[name]]; });
        if (s["do"] === "getUser" && v && v.integrations) {
          Object.keys(v.integrations).forEach(function (k) {
            if (v.integrations[k].credentialId) saved["primary_" + k] = v.integrations[k].credentialId;
          });
        }
      } catch (e) {
        r.ok = false;
        r.error = text(e);
      }
      r.authenticated = !!window.paragon.getUser().authenticated;
      results.push(r);
      post("/log", {level: "step", args: [text(r).slice(0, 2000)]});
    }
    await post("/result", {origin: location.origin, steps: results});
  }
  // As an app would: once the page (and the SDK's own frame) has loaded.
  function start() {
    run().catch(function (e) { post("/result", {origin: location.origin, error: text(e)}); });
  }
  if (document.readyState === "complete") start(); else window.addEventListener("load", start);
})();
"#;
