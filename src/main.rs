//! The `credgate` process: parse the command line, set up logging, load and
//! validate the config (exit 64 before binding anything if it is bad), then
//! run the chosen command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use credgate::config::{Config, ProcessEnv};
use credgate::telemetry::{self, LogFormat};

/// Exit status for a bad config (EX_CONFIG is 78, but the spec fixes 64:
/// EX_USAGE, "the command was used incorrectly").
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "credgate",
    version,
    about = "Credential-routing gateway in front of Paragon"
)]
struct Cli {
    /// Config file; without a subcommand, `credgate --config PATH` serves.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format [default: json when stdout is not a terminal].
    #[arg(long, global = true, value_enum)]
    log_format: Option<Format>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Validate the config and print it with every default filled in and
    /// secrets left out; exit 64 with one line naming the bad key.
    CheckConfig {
        /// Also connect to `[cluster]`'s PostgreSQL as a replica does (TLS
        /// included); exit 1 naming the cause when it cannot.
        #[arg(long)]
        probe: bool,
        /// Print only the files the config names, `key<TAB>path` as
        /// written, without checking them (deploy/systemd/install.sh).
        #[arg(long, conflicts_with = "probe")]
        files: bool,
    },
    /// Start an emulated Paragon and the gateway on loopback with throwaway
    /// keys; print caller tokens and curl commands. Ctrl-C stops.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Run the Paragon emulator alone, for your own integration tests.
    /// Test-only: it holds no real credentials and must not face a network.
    Emulator {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Users and credentials (TOML or JSON, see
        /// config/emulator-fixtures.example.toml) [default: the demo data].
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// The project's public key (PEM) user tokens are verified with
        /// [default: a new key pair, whose files are printed].
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Probe an admin endpoint (for container health checks, where no curl
    /// is installed): exit 0 on a 2xx answer within 3 seconds, else 1.
    Healthcheck {
        /// [default: /healthz on the `--config` file's admin_listen (on
        /// loopback when it listens on every address), else
        /// http://127.0.0.1:9901/healthz]
        #[arg(long)]
        url: Option<String>,
    },
    /// Drop cached credential lists on a running instance (its admin
    /// listener): one Connected User's, or everyone's. With `[cluster]`,
    /// every replica drops them. Exit 0 when it answered 2xx, else 1.
    Invalidate {
        /// The admin listener, e.g. http://127.0.0.1:9901.
        #[arg(long)]
        admin: String,
        /// The Connected User whose lists go [default: every user's].
        #[arg(long)]
        user: Option<String>,
    },
    /// Explain the decision a running instance makes for a request (its
    /// admin listener's POST /admin/decide): the decision, the reason, the
    /// credential routed and the request Paragon would get. Nothing is
    /// forwarded. Exit 0 when the request would be allowed, 3 when the
    /// policy refuses it (refused, or shadow-refused: a policy assertion
    /// for CI), 1 when it could not be asked, 64 for bad arguments.
    Explain {
        /// The admin listener, e.g. http://127.0.0.1:9901.
        #[arg(long)]
        admin: String,
        /// The caller's token; `-` reads it from standard input (a token
        /// on the command line is visible to other local users).
        #[arg(long, conflicts_with = "user")]
        token: Option<String>,
        /// Or a what-if caller: its Connected User...
        #[arg(long)]
        user: Option<String>,
        /// ...its principal...
        #[arg(long, requires = "user")]
        principal: Option<String>,
        /// ...and whether it is an admin.
        #[arg(long = "as-admin", requires = "user")]
        as_admin: bool,
        /// ...and other claims of its token, `name=value` (the value as
        /// JSON when it parses, else a string); repeat for more.
        #[arg(long = "claim", requires = "user")]
        claims: Vec<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// Path and query, e.g. /projects/P/sdk/proxy/salesforce/x.
        #[arg(long)]
        path: String,
        /// `Name: value`; repeat for more.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A request body, sent as is.
        #[arg(long)]
        body: Option<String>,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Who may use which account of a Connected User, and by which grant
    /// (GET /admin/access). Exit 0 when it answered, else 1.
    Access {
        /// The admin listener, e.g. http://127.0.0.1:9901.
        #[arg(long)]
        admin: String,
        #[arg(long)]
        user: String,
        #[arg(long, value_enum, default_value = "table")]
        format: AccessFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AccessFormat {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.is_none() && cli.config.is_none() {
        // Nothing asked: the commands, not a config error.
        eprintln!("{}", Cli::command().render_help());
        return ExitCode::from(2);
    }
    let format = cli.log_format.map(|f| match f {
        Format::Json => LogFormat::Json,
        Format::Pretty => LogFormat::Pretty,
    });
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig { probe, files } => check_config(cli.config, probe, files),
        Command::Healthcheck { url } => healthcheck(url, cli.config),
        Command::Invalidate { admin, user } => invalidate(&admin, user.as_deref()),
        Command::Explain {
            admin,
            token,
            user,
            principal,
            as_admin,
            claims,
            method,
            path,
            headers,
            body,
            json,
        } => {
            let caller = match (token, user) {
                (Some(t), _) => Caller::Token(t),
                (None, Some(user)) => Caller::WhatIf {
                    user,
                    principal,
                    admin: as_admin,
                    claims,
                },
                (None, None) => Caller::Anonymous,
            };
            explain(&admin, caller, &method, &path, &headers, body, json)
        }
        Command::Access {
            admin,
            user,
            format,
        } => access(&admin, &user, format),
        Command::Demo { listen } => {
            telemetry::init_logging_with(format, "warn,credgate::audit=info");
            demo(listen)
        }
        Command::Emulator {
            listen,
            fixtures,
            public_key,
        } => {
            telemetry::init_logging(format);
            emulator(listen, fixtures, public_key)
        }
        Command::Serve => {
            telemetry::init_logging(format);
            serve(cli.config)
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<(Config, PathBuf), ExitCode> {
    let Some(path) = path else {
        eprintln!("config error: `--config`: a config file is required");
        return Err(ExitCode::from(EXIT_CONFIG));
    };
    match Config::load(&path, &ProcessEnv) {
        Ok(c) => Ok((c, path)),
        Err(e) => {
            eprintln!("config error: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn check_config(path: Option<PathBuf>, probe: bool, files: bool) -> ExitCode {
    if let (true, Some(p)) = (files, &path) {
        return match credgate::config::named_files(p) {
            Ok(list) => {
                list.iter().for_each(|(k, v)| println!("{k}\t{v}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("config error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let (config, _) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", config.to_effective_toml());
    if probe {
        let probed = credgate::cluster::probe_blocking(&config);
        eprintln!("probe: {}", probed.as_ref().unwrap_or_else(|e| e));
        if probed.is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let (config, path) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // `scheduler = "workers"`: this thread's current-thread runtime is
    // worker 0 (and runs the admin listener and background tasks); app.rs
    // starts the others, each on its own thread and runtime.
    let mut builder = match config.server.scheduler {
        credgate::config::Scheduler::Workers => tokio::runtime::Builder::new_current_thread(),
        credgate::config::Scheduler::WorkStealing => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(config.server.workers());
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        "credgate starting"
    );
    match runtime.block_on(credgate::app::run_until_signal(config, path, &ProcessEnv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "credgate stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request to an admin listener, at most 3 seconds: the status and
/// body, or why there is none.
fn admin_call(
    method: http::Method,
    url: &str,
    body: Option<String>,
) -> Result<(http::StatusCode, String), String> {
    admin_call_within(method, url, body, std::time::Duration::from_secs(3))
}

/// [`admin_call`] with its own bound (a decision may load a list from
/// Paragon first).
fn admin_call_within(
    method: http::Method,
    url: &str,
    body: Option<String>,
    within: std::time::Duration,
) -> Result<(http::StatusCode, String), String> {
    use http_body_util::BodyExt;
    let uri = url
        .parse::<http::Uri>()
        .map_err(|_| format!("`{url}` is not a URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let mut req = http::Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default(),
            )))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp
                .into_body()
                .collect()
                .await
                .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
                .map_err(|e| e.to_string())?;
            Ok((status, text))
        };
        tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| format!("no answer within {} seconds", within.as_secs()))?
    })
}

fn healthcheck(url: Option<String>, config: Option<PathBuf>) -> ExitCode {
    // Without --url: /healthz of the admin listener --config names.
    let at = config.map(|c| credgate::config::local_admin_addr(&c));
    let url = &match (url, at) {
        (Some(url), _) => url,
        (None, None) => "http://127.0.0.1:9901/healthz".into(),
        (None, Some(Ok(addr))) => format!("http://{addr}/healthz"),
        (None, Some(Err(e))) => {
            eprintln!("healthcheck: config error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match admin_call(http::Method::GET, url, None) {
        Ok((status, _)) if status.is_success() => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("healthcheck: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn invalidate(admin: &str, user: Option<&str>) -> ExitCode {
    let url = format!("{}/admin/cache/invalidate", admin.trim_end_matches('/'));
    let body = match user {
        Some(u) => serde_json::json!({ "user": u }),
        None => serde_json::json!({}),
    };
    match admin_call(http::Method::POST, &url, Some(body.to_string())) {
        Ok((status, text)) if status.is_success() => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!("invalidate: {url} answered {status}: {}", text.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("invalidate: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Who `credgate explain` asks about.
enum Caller {
    Token(String),
    WhatIf {
        user: String,
        principal: Option<String>,
        admin: bool,
        /// `name=value` pairs.
        claims: Vec<String>,
    },
    Anonymous,
}

/// `credgate explain`'s exit status when the policy refuses the request.
const EXIT_REFUSED: u8 = 3;

/// An admin answer as JSON, or exit 1 with what went wrong.
fn admin_json(
    what: &str,
    method: http::Method,
    url: &str,
    body: Option<String>,
) -> Result<serde_json::Value, ExitCode> {
    let fail = |m: String| {
        eprintln!("{what}: {url}: {m}");
        ExitCode::FAILURE
    };
    let (status, text) =
        admin_call_within(method, url, body, std::time::Duration::from_secs(30)).map_err(fail)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| fail(format!("answered {status}: {text}")))?;
    if !status.is_success() {
        let message = value["message"].as_str().unwrap_or(&text).to_string();
        return Err(fail(format!("answered {status}: {message}")));
    }
    Ok(value)
}

fn explain(
    admin: &str,
    caller: Caller,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<String>,
    as_json: bool,
) -> ExitCode {
    use serde_json::{json, Value};
    let mut question = json!({"method": method, "path": path});
    match caller {
        Caller::Token(t) => {
            let token = if t == "-" {
                let mut s = String::new();
                if std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).is_err() {
                    eprintln!("explain: cannot read the token from standard input");
                    return ExitCode::FAILURE;
                }
                s.trim().to_string()
            } else {
                t
            };
            question["token"] = json!(token);
        }
        Caller::WhatIf {
            user,
            principal,
            admin,
            claims,
        } => {
            let mut extra = serde_json::Map::new();
            for c in &claims {
                let Some((name, value)) = c.split_once('=').filter(|(n, _)| !n.trim().is_empty())
                else {
                    eprintln!("explain: --claim `{c}` is not `name=value`");
                    return ExitCode::from(EXIT_CONFIG);
                };
                let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                extra.insert(name.trim().to_string(), value);
            }
            question["identity"] =
                json!({"user": user, "principal": principal, "admin": admin, "claims": extra});
        }
        Caller::Anonymous => {}
    }
    let mut h = serde_json::Map::new();
    for line in headers {
        let Some((name, value)) = line.split_once(':') else {
            eprintln!("explain: --header `{line}` is not `Name: value`");
            return ExitCode::from(EXIT_CONFIG);
        };
        let values = h
            .entry(name.trim().to_ascii_lowercase())
            .or_insert_with(|| json!([]));
        if let Value::Array(a) = values {
            a.push(json!(value.trim()));
        }
    }
    question["headers"] = Value::Object(h);
    if let Some(b) = body {
        question["body"] = json!(b);
    }
    let url = format!("{}/admin/decide", admin.trim_end_matches('/'));
    let answer = match admin_json(
        "explain",
        http::Method::POST,
        &url,
        Some(question.to_string()),
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print!("{}", explanation_text(&answer));
    }
    match answer["decision"].as_str() {
        Some("allowed") => ExitCode::SUCCESS,
        Some("refused" | "shadow_refused") => ExitCode::from(EXIT_REFUSED),
        // Not decided (a list that could not be loaded, a failed signing).
        _ => ExitCode::FAILURE,
    }
}

/// `/admin/decide`'s answer for a person.
fn explanation_text(a: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let decision = s(&a["decision"]);
    let mut line = decision.clone();
    if let Some(code) = a["code"].as_str() {
        match a["response"]["status"].as_u64() {
            Some(status) => line.push_str(&format!(": credgate answers {status} {code}")),
            None => line.push_str(&format!(" (it would have been {code}); forwarded")),
        }
    }
    let _ = writeln!(out, "decision     {line}");
    let mut reason = s(&a["reason"]);
    if let Some(g) = a["grant"].as_u64() {
        reason.push_str(&format!(
            " (grant {g}, principal {})",
            s(&a["grant_principal"])
        ));
    }
    if let Some(scope) = a["scope"].as_str() {
        reason.push_str(&format!(" (scope {scope})"));
    }
    if let Some(cause) = a["cause"].as_str() {
        reason.push_str(&format!(" (cause {cause})"));
    }
    if let Some(rule) = a["rule"].as_str() {
        reason.push_str(&format!(" (rule {rule})"));
    }
    let _ = writeln!(out, "reason       {reason}");
    if let Some(text) = a["explanation"].as_str() {
        let _ = writeln!(out, "             {text}");
    }
    if let Some(m) = a["response"]["body"]["message"].as_str() {
        let _ = writeln!(out, "message      {m}");
    }
    if let Some(c) = a["response"]["body"]["candidates"].as_array() {
        let ids: Vec<String> = c.iter().map(s).collect();
        let _ = writeln!(out, "candidates   {}", ids.join(", "));
    }
    if a["caller"].is_object() {
        let c = &a["caller"];
        let role = if c["admin"] == true {
            "admin"
        } else {
            "member"
        };
        // An agent acting for the member (the token's `act`, contract §12).
        let through = c["actor"]
            .as_str()
            .map(|a| format!(", through agent {a}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "caller       {} of Connected User {} ({role}){through}",
            s(&c["principal"]),
            s(&c["user"])
        );
    } else if let Some(p) = a["claimed_principal"].as_str() {
        let _ = writeln!(
            out,
            "caller       not authenticated (the token claims {p:?})"
        );
    }
    let _ = writeln!(
        out,
        "product      {} {}",
        s(&a["product"]),
        s(&a["integration"])
    );
    if let Some(r) = a["requested"].as_str().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "requested    {r}");
    }
    match a["credential"].as_object() {
        Some(c) => {
            let _ = writeln!(
                out,
                "credential   {} ({}, externalId {}, {})",
                s(&c["id"]),
                s(&c["integration"]),
                c["externalId"].as_str().unwrap_or("-"),
                s(&c["status"])
            );
        }
        None => {
            let _ = writeln!(out, "credential   none");
        }
    }
    if let Some(up) = a["upstream"].as_object() {
        let _ = writeln!(out, "upstream     {} {}", s(&up["method"]), s(&up["url"]));
        if let Some(h) = up["headers"].as_object() {
            for (name, values) in h {
                for v in values.as_array().into_iter().flatten() {
                    let _ = writeln!(out, "             {name}: {}", s(v));
                }
            }
        }
        if !up["token_claims"].is_null() {
            let _ = writeln!(out, "token claims {}", up["token_claims"]);
        }
    }
    for (i, r) in a["rules"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "rules" } else { "" };
        let mut line = format!(
            "{} {} ({}, {})",
            s(&r["name"]),
            s(&r["outcome"]),
            s(&r["effect"]),
            s(&r["mode"])
        );
        if r["takes_effect"] == true {
            line.push_str(", takes effect");
        }
        if let Some(e) = r["error"].as_str() {
            line.push_str(&format!(": {e}"));
        }
        let _ = writeln!(out, "{label:<12} {}", line.escape_default());
    }
    let _ = writeln!(out, "decision id  {}", s(&a["decision_id"]));
    out
}

fn access(admin: &str, user: &str, format: AccessFormat) -> ExitCode {
    let mut url = format!("{}/admin/access?user=", admin.trim_end_matches('/'));
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    let answer = match admin_json("access", http::Method::GET, &url, None) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match format {
        AccessFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            )
        }
        AccessFormat::Csv => print!("{}", access_csv(&answer)),
        AccessFormat::Table => print!("{}", access_table(&answer)),
    }
    ExitCode::SUCCESS
}

/// One row per (credential, grant), then one per trigger subscription of
/// the credential (grant `trigger_subscription`, principals: its creator):
/// credential, integration, externalId, status, grant, index, principals,
/// who.
fn access_rows(a: &serde_json::Value) -> Vec<[String; 8]> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut rows = Vec::new();
    for c in a["credentials"].as_array().into_iter().flatten() {
        let grants = c["access"].as_array().cloned().unwrap_or_default();
        let base = [
            s(&c["id"]),
            s(&c["integration"]),
            s(&c["externalId"]),
            s(&c["status"]),
        ];
        if grants.is_empty() {
            rows.push([
                base[0].clone(),
                base[1].clone(),
                base[2].clone(),
                base[3].clone(),
                "none".into(),
                String::new(),
                String::new(),
                "nobody".into(),
            ]);
        }
        for g in grants {
            let principals = match g["principals"].as_array() {
                Some(p) => p.iter().map(s).collect::<Vec<_>>().join(";"),
                None => "(not enumerable)".into(),
            };
            rows.push([
                base[0].clone(),
                base[1].clone(),
                base[2].clone(),
                base[3].clone(),
                s(&g["grant"]),
                g["index"]
                    .as_u64()
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                principals,
                s(&g["who"]),
            ]);
        }
        // Trigger subscriptions: who made each one that keeps sending this
        // account's events (contract §3).
        for sub in c["subscriptions"].as_array().into_iter().flatten() {
            let id = s(&sub["id"]);
            let (by, who) = match sub["created_by"].as_str() {
                Some(p) => (
                    p.to_string(),
                    format!("trigger subscription {id}, created through credgate by {p:?}: it sends this account's events until deleted"),
                ),
                None => (
                    "(not known)".to_string(),
                    format!("trigger subscription {id}, not created through credgate (creator not known): it sends this account's events until deleted"),
                ),
            };
            rows.push([
                base[0].clone(),
                base[1].clone(),
                base[2].clone(),
                base[3].clone(),
                "trigger_subscription".into(),
                String::new(),
                by,
                who,
            ]);
        }
    }
    rows
}

const ACCESS_HEADER: [&str; 8] = [
    "credential",
    "integration",
    "external_id",
    "status",
    "grant",
    "grant_index",
    "principals",
    "who",
];

/// RFC 4180 CSV. A cell that a spreadsheet would run as a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is prefixed
/// with `'`: principals and labels come from outside credgate.
fn access_csv(a: &serde_json::Value) -> String {
    let cell = |v: &str| {
        let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{v}")
        } else {
            v.to_string()
        };
        if v.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v
        }
    };
    let mut out = ACCESS_HEADER.join(",");
    out.push_str("\r\n");
    for row in access_rows(a) {
        out.push_str(&row.iter().map(|v| cell(v)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// Columns padded to their widest cell; control characters shown escaped
/// (quotes and other printable characters as they are).
fn access_table(a: &serde_json::Value) -> String {
    let clean = |v: &str| credgate::telemetry::clean(v).into_owned();
    let columns = [0usize, 1, 2, 3, 4, 6, 7];
    let rows: Vec<Vec<String>> = std::iter::once(ACCESS_HEADER.map(|h| h.to_ascii_uppercase()))
        .chain(access_rows(a))
        .map(|r| columns.iter().map(|&i| clean(&r[i])).collect())
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "Connected User {}\n",
        clean(a["user"].as_str().unwrap_or(""))
    );
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn demo(listen: std::net::SocketAddr) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let demo = match credgate::demo::start(listen).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("demo: {e}");
                if listen.port() != 0 {
                    eprintln!(
                        "(is port {} in use? try: credgate demo --listen 127.0.0.1:0)",
                        listen.port()
                    );
                }
                return ExitCode::FAILURE;
            }
        };
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = out.write_all(demo.script().as_bytes());
        let _ = out.flush();
        stop_signal().await;
        demo.stop().await;
        ExitCode::SUCCESS
    })
}

fn emulator(
    listen: std::net::SocketAddr,
    fixtures: Option<PathBuf>,
    public_key: Option<PathBuf>,
) -> ExitCode {
    use credgate::emulator::{EmulatorConfig, Fixtures};
    let fixtures = match &fixtures {
        Some(p) => match Fixtures::load(p) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("emulator: {}: {e}", p.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Fixtures::demo(credgate::demo::DEMO_PROJECT),
    };
    // The throwaway key pair's directory, removed however this returns.
    let mut keys_dir = None;
    let public_key_pem = match &public_key {
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("emulator: cannot read {}: {e}", p.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => {
            let pair = match credgate::keygen::rsa() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("emulator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // A private directory of the caller's (0700), the private key
            // readable by its owner only (0600).
            let suffix: String = credgate::keygen::random_bytes::<6>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let dir = std::env::temp_dir().join(format!("credgate-emulator-{suffix}"));
            let dir = &keys_dir.insert(RemovedOnDrop(dir)).0;
            let written = write_private(dir, "paragon-signing.pem", &pair.private_pem, 0o600)
                .and_then(|_| write_private(dir, "paragon-public.pem", &pair.public_pem, 0o644));
            if let Err(e) = written {
                eprintln!("emulator: cannot write keys to {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            println!(
                "project signing key (sign user tokens with it): {}",
                dir.join("paragon-signing.pem").display()
            );
            println!(
                "project public key (the emulator verifies with it): {}",
                dir.join("paragon-public.pem").display()
            );
            pair.public_pem.into_bytes()
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let project = fixtures.project_id.clone();
        let handle = match credgate::emulator::spawn(EmulatorConfig {
            listen,
            fixtures,
            public_key_pem,
        })
        .await
        {
            Ok(h) => h,
            Err(e) => {
                eprintln!("emulator: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "Paragon emulator (test-only) for project {project} on {}",
            handle.url()
        );
        println!("control API: {}/_emulator/requests", handle.url());
        stop_signal().await;
        handle.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// A directory removed with everything in it when this is dropped.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `name` in `dir` (created 0700 if missing) with `mode`, refusing
/// to follow an existing file.
fn write_private(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dir.join(name))?
        .write_all(text.as_bytes())
}
