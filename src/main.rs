//! The `credgate` process: parse the command line, set up logging, load and
//! validate the config (exit 64 before binding anything if it is bad), then
//! run the chosen command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
    CheckConfig,
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
        #[arg(long, default_value = "http://127.0.0.1:9901/healthz")]
        url: String,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.map(|f| match f {
        Format::Json => LogFormat::Json,
        Format::Pretty => LogFormat::Pretty,
    });
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(cli.config),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Invalidate { admin, user } => invalidate(&admin, user.as_deref()),
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

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", config.to_effective_toml());
    ExitCode::SUCCESS
}

fn serve(path: Option<PathBuf>) -> ExitCode {
    let (config, path) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // One worker: tokio's current-thread scheduler does the same work
    // without the work-stealing machinery (cross-thread wake-ups, atomics).
    let mut builder = if config.server.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if config.server.worker_threads > 0 {
            b.worker_threads(config.server.worker_threads);
        }
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        tokio::time::timeout(std::time::Duration::from_secs(3), exchange)
            .await
            .map_err(|_| "no answer within 3 seconds".to_string())?
    })
}

fn healthcheck(url: &str) -> ExitCode {
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
            let written = write_private(&dir, "paragon-signing.pem", &pair.private_pem, 0o600)
                .and_then(|_| write_private(&dir, "paragon-public.pem", &pair.public_pem, 0o644));
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
