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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server.worker_threads > 0 {
        builder.worker_threads(config.server.worker_threads);
    }
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
