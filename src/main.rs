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

fn healthcheck(url: &str) -> ExitCode {
    let Ok(uri) = url.parse::<http::Uri>() else {
        eprintln!("healthcheck: `{url}` is not a URL");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let req = http::Request::get(uri).body(http_body_util::Empty::new());
        let Ok(req) = req else { return false };
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(3), client.request(req)).await,
            Ok(Ok(resp)) if resp.status().is_success()
        )
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("healthcheck: {url} is not healthy");
        ExitCode::FAILURE
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
            let dir =
                std::env::temp_dir().join(format!("credgate-emulator-{}", std::process::id()));
            let written = std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("paragon-signing.pem"), &pair.private_pem))
                .and_then(|_| std::fs::write(dir.join("paragon-public.pem"), &pair.public_pem));
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
