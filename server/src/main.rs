//! `strata-server`: run the storage server, probe it, drain it, show its configuration.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use strata_server::app;
use strata_server::config::{Config, LogFormat};

/// Small, short-lived allocations dominate (request and connection buffers); mimalloc
/// serves them from per-thread pages instead of glibc's shared arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strata-server",
    version,
    about = "Strata storage server (objectstore v1 API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// YAML configuration file; `STRATA__SECTION__KEY` variables override it.
    #[arg(short, long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGTERM/SIGINT, then drain gracefully.
    Run(ConfigArg),
    /// Exit 0 when `GET /health` on the configured address answers 200.
    Healthcheck(ConfigArg),
    /// Print the version.
    Version,
    /// Start draining: `/ready` answers 503 from now on (for preStop hooks).
    Down {
        #[command(flatten)]
        config: ConfigArg,
        /// Keep running this long after marking the server as draining.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
    },
    /// Print the effective configuration (file plus environment) as YAML.
    Config(ConfigArg),
}

fn load(arg: &ConfigArg) -> Result<Config, String> {
    strata_server::config::load(arg.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("strata-server {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config(arg) => load(&arg).map(|config| print!("{}", config.to_yaml())),
        Command::Down { config, wait } => load(&config).and_then(|config| {
            std::fs::write(&config.http.drain_file, b"draining\n").map_err(|e| {
                format!(
                    "cannot create drain file {}: {e}",
                    config.http.drain_file.display()
                )
            })?;
            println!("draining: {} created", config.http.drain_file.display());
            if let Some(wait) = wait {
                std::thread::sleep(wait);
            }
            Ok(())
        }),
        Command::Healthcheck(arg) => load(&arg).and_then(|config| healthcheck(config.http.addr)),
        Command::Run(arg) => load(&arg).and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("strata-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn healthcheck(mut addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("health check of {addr} failed: {e}"))?;
        if response.status().is_success() {
            println!("OK");
            Ok(())
        } else {
            Err(format!(
                "health check of {addr}: status {}",
                response.status()
            ))
        }
    })
}

/// Logs go to stderr; colour codes only when that is a terminal (and `NO_COLOR` is
/// unset), so files, `kubectl logs` and log shippers get plain text.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.logging.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Text => builder.with_ansi(colour).init(),
    }
}

fn run(config: Config) -> Result<(), String> {
    init_logging(&config);
    // Every log segment and connection is a descriptor; the default soft limit (often
    // 1024) is far below what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(%err, "cannot raise the open file limit"),
    }
    runtime()?.block_on(async move {
        let storage = app::describe_storage(&config);
        let server = app::start(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        println!("strata-server listening on http://{}", server.addr());
        println!("storage: {storage}");
        println!(
            "limits: http.max_requests={} service.max_concurrency={} queue_depth={}",
            config.http.max_requests, config.service.max_concurrency, config.service.queue_depth
        );
        server.run_until(shutdown_signal()).await;
        println!("strata-server stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
