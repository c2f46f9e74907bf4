//! `strata-dashboard`: the on-call dashboard binary.
//!
//! Locally: `strata-dashboard --target local=http://127.0.0.1:8888`. In a cluster (no
//! `--target`): discovers StorageServices through the Kubernetes API.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use strata_dashboard::collector::Source;
use strata_dashboard::sources::kubernetes::KubeSource;
use strata_dashboard::sources::local::Target;
use strata_dashboard::Settings;

fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "strata-dashboard",
    version,
    about = "Read-only on-call dashboard for Strata StorageServices"
)]
struct Args {
    /// Address to serve the dashboard on.
    #[arg(long, env = "STRATA_DASHBOARD_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Static target `NAME=URL` (repeatable); without any, StorageServices are discovered
    /// through the Kubernetes API.
    #[arg(long = "target", value_name = "NAME=URL")]
    targets: Vec<Target>,
    /// Namespace to watch in Kubernetes mode (default: all namespaces).
    #[arg(long, env = "STRATA_DASHBOARD_NAMESPACE")]
    namespace: Option<String>,
    /// How often every target is scraped.
    #[arg(long, default_value = "5s", value_parser = duration)]
    scrape_interval: Duration,
    /// Minimum time between Kubernetes Events lists (StorageServices and pods are watched:
    /// their changes show as soon as the API server reports them).
    #[arg(long, default_value = "15s", value_parser = duration)]
    discovery_interval: Duration,
    /// Timeout of one scrape (capped at the interval).
    #[arg(long, default_value = "3s", value_parser = duration)]
    scrape_timeout: Duration,
    /// Targets scraped at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// History kept per pod for sparklines and rates.
    #[arg(long, default_value = "30m", value_parser = duration)]
    history: Duration,
    /// Window for rates (ops/s, 429/s, 503/s).
    #[arg(long, default_value = "1m", value_parser = duration)]
    rate_window: Duration,
    /// How often pages re-poll their live fragments.
    #[arg(long, default_value = "5s", value_parser = duration)]
    refresh: Duration,
    /// Most pods watched at once (memory bound).
    #[arg(long, default_value_t = 2000)]
    max_targets: usize,
}

#[tokio::main]
async fn main() {
    // Logs go to stdout; colour codes only when that is a terminal (and `NO_COLOR` is
    // unset), so `kubectl logs` and log files get plain text.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(colour)
        .init();
    if let Err(err) = run(Args::parse()).await {
        // One clear line, no backtrace: these are configuration problems, not bugs.
        eprintln!("strata-dashboard: {err:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let source = if args.targets.is_empty() {
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "no --target given and no Kubernetes configuration found ({e}); \
                 pass --target NAME=URL to watch local strata-servers"
            )
        })?;
        Source::Kubernetes(KubeSource::new(client, args.namespace))
    } else {
        Source::Static(args.targets)
    };
    let settings = Settings {
        listen: args.listen,
        scrape_interval: args.scrape_interval,
        discovery_interval: args.discovery_interval,
        scrape_timeout: args.scrape_timeout,
        concurrency: args.concurrency.max(1),
        history: args.history,
        rate_window: args.rate_window,
        refresh: args.refresh,
        max_targets: args.max_targets.max(1),
        ..Settings::default()
    };
    let dashboard = strata_dashboard::start(settings, source).await?;
    println!("strata-dashboard listening on http://{}", dashboard.addr());
    tracing::info!(listen = %dashboard.addr(), "strata-dashboard started");
    tokio::select! {
        _ = dashboard.wait() => {}
        _ = shutdown => {}
    }
    Ok(())
}

/// SIGTERM (Kubernetes, `podman stop`; as a container's PID 1 the process gets no
/// default handler for it) or Ctrl-C. The SIGTERM handler is installed when this is
/// called, not when the future is first polled, so call it before serving.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(err) => {
                tracing::warn!(%err, "cannot handle SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
