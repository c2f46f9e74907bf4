//! `strata-operator`: `crd` and `rbac` print generated manifests, `run` runs the
//! controller (leader-elected, with `/healthz`, `/readyz`, `/metrics`, JSON logs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strata_operator::controller::{self, Context};
use strata_operator::metrics::Metrics;
use strata_operator::server::{self, Probes};
use strata_operator::{api, leader, rbac};
use tracing::{error, info, warn};

/// Strata operator: reconciles StorageService resources into storage servers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StorageService CustomResourceDefinition (YAML, deterministic).
    Crd,
    /// Print the ClusterRole rules the operator needs (YAML list of PolicyRules).
    Rbac,
    /// Print the children the operator would apply for a StorageService (multi-document
    /// YAML), or its validation errors (exit 1); needs no cluster.
    Render(RenderArgs),
    /// Run the controller.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    /// StorageService YAML file (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    file: std::path::PathBuf,
    /// Render as if the Prometheus Operator API (monitoring.coreos.com) were served.
    #[arg(long)]
    monitoring: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "STRATA_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Disable leader election (only for a single replica, e.g. local development).
    #[arg(long)]
    no_leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "strata-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // JSON lines never carry colour codes, terminal or not.
    tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .init();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging();
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("strata-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let probes = Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let endpoints = server::ProbeServer::bind(args.listen, probes)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let http = tokio::spawn(endpoints.serve_until(shutdown_signal()));
    info!(listen = %args.listen, %identity, "strata-operator starting");

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let caps = controller::discover(&client).await;
    info!(monitoring = caps.monitoring, "discovered optional APIs");
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        caps,
        Some(identity.clone()),
    ));
    ready.store(true, Ordering::Release);

    // Optional APIs may be installed after start: re-discover so their objects appear.
    let rediscover = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(300)).await;
                ctx.set_capabilities(controller::discover(&ctx.client).await);
            }
        })
    };

    let result = if args.no_leader_election {
        metrics.leader.set(1);
        controller::run(ctx).await;
        Ok(())
    } else {
        let mut election =
            leader::start(client, &args.lease_name, &args.lease_namespace, &identity)
                .await
                .context("cannot start leader election")?;
        let became_leader = tokio::select! {
            _ = shutdown_signal() => false,
            res = election.leading.wait_for(|leading| *leading) => res.is_ok(),
        };
        let outcome = if became_leader {
            info!("acquired leadership; starting controller");
            metrics.leader.set(1);
            tokio::select! {
                _ = controller::run(ctx) => Ok(()),
                _ = election.leading.wait_for(|leading| !*leading) => {
                    // Another replica may already act: stop at once and let the pod restart.
                    Err(anyhow::anyhow!("lost the leader Lease; exiting so that only one replica reconciles"))
                }
            }
        } else {
            Ok(())
        };
        metrics.leader.set(0);
        drop(election.leading); // releases the Lease for a fast hand-over
        match tokio::time::timeout(Duration::from_secs(5), election.task).await {
            Ok(Ok(Err(err))) => warn!(error = %err, "releasing the Lease failed"),
            Err(_) => warn!("timed out releasing the Lease"),
            _ => {}
        }
        outcome
    };
    rediscover.abort();
    http.abort();
    info!("strata-operator stopped");
    result
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", api::crd_yaml()),
        Command::Rbac => print!("{}", rbac::cluster_role_rules_yaml()),
        Command::Render(args) => {
            let text = if args.file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?
            };
            let caps = strata_operator::render::Capabilities {
                monitoring: args.monitoring,
            };
            match strata_operator::render::offline::render_yaml(&text, caps) {
                Ok(yaml) => print!("{yaml}"),
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    std::process::exit(1);
                }
            }
        }
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            if let Err(err) = rt.block_on(run(args)) {
                error!(error = %format!("{err:#}"), "strata-operator failed");
                return Err(err);
            }
        }
    }
    Ok(())
}
