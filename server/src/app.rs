//! Assembles and runs a server: backend, service, router, listener, graceful shutdown.
//!
//! Used by the binary and, in-process, by integration tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{self, BackendError};
use crate::config::{Config, StorageConfig};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::service::StorageService;

/// How often expired objects are swept away. Expired objects are already 404 at once; the
/// sweep only reclaims space, and it reads every object's header, so it runs rarely.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The storage backend could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] BackendError),
    /// A key file is missing or not an Ed25519 public key, or enforcement has no keys.
    #[error("cannot start access control: {0}")]
    Auth(#[from] crate::auth::KeyError),
    /// A rate limit, killswitch or usecase policy cannot be enforced.
    #[error("invalid access policy: {0}")]
    Limits(#[from] crate::limits::LimitsConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// A started server; dropping it does not stop it, call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    metrics: Metrics,
    service: StorageService,
    draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds the listener and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let metrics = Metrics::new();
    // Keys and limits are parsed once, before anything is opened or bound.
    let access = http::auth::Access::new(
        crate::auth::Authenticator::new(&config.auth, metrics.clone())?,
        crate::limits::Admission::new(&config.rate_limits, &config.killswitches, &config.usecases)?,
        metrics.clone(),
    );
    if !config.auth.enforce {
        tracing::warn!(
            keys = config.auth.keys.len(),
            "auth.enforce is false: access control is off (failures are only logged and counted)"
        );
    }
    let backend = backend::from_config(&config, &metrics).await?;
    let service = StorageService::new(backend, &config.service, metrics.clone());
    let sweeper = service.start_sweeper(SWEEP_INTERVAL);
    let upload_gc = service.start_upload_gc(config.service.upload_max_age, SWEEP_INTERVAL);
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        service: service.clone(),
        metrics: metrics.clone(),
        drain_file: config.http.drain_file.clone(),
        draining: draining.clone(),
        access,
    };
    let app = http::router(state, config.http.max_requests);

    let listener = TcpListener::bind(config.http.addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http.addr,
        source,
    })?;
    let limits = http::serve::ConnectionLimits::new(&config.http, metrics.clone());

    let (stop, stopped) = watch::channel(false);
    let shutdown_timeout = config.http.shutdown_timeout;
    let drain_service = service.clone();
    let task = tokio::spawn(async move {
        let mut on_stop = stopped.clone();
        let mut on_stop_deadline = stopped;
        let serve = http::serve::serve(listener, app, limits, async move {
            let _ = on_stop.wait_for(|s| *s).await;
        });
        // In-flight requests get `shutdown_timeout` after the stop signal, then we go.
        let deadline = async move {
            let _ = on_stop_deadline.wait_for(|s| *s).await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        tokio::select! {
            () = serve => {}
            () = deadline => tracing::warn!("shutdown timeout reached with requests in flight"),
        }
        // No new chores once draining: stop the tickers first.
        sweeper.abort();
        if let Some(gc) = &upload_gc {
            gc.abort();
        }
        let report = drain_service.drain(shutdown_timeout).await;
        if !report.on_time {
            tracing::warn!(
                background_jobs_left = report.background_left,
                "shutdown timeout reached with storage tasks or background jobs running"
            );
        }
    });
    Ok(RunningServer {
        addr,
        metrics,
        service,
        draining,
        stop,
        task,
    })
}

impl RunningServer {
    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The storage service, for tests that drive it directly.
    pub fn service(&self) -> &StorageService {
        &self.service
    }

    /// Graceful shutdown: readiness fails, the listener closes, in-flight requests and
    /// spawned storage tasks finish (each bounded by `http.shutdown_timeout`).
    pub async fn shutdown(self) {
        self.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutdown signal received; draining");
        self.shutdown().await;
    }
}

/// One-line description of the storage backend, for the start-up banner.
pub fn describe_storage(config: &Config) -> String {
    match &config.storage {
        StorageConfig::Filesystem { path } => {
            let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            format!("filesystem at {}", shown.display())
        }
        StorageConfig::Memory {} => "memory (contents are lost at exit)".to_owned(),
        other => describe_shared(other),
    }
}

/// Shared backends: kind and location, never credentials.
fn describe_shared(storage: &StorageConfig) -> String {
    match storage {
        StorageConfig::Bigtable {
            endpoint,
            project_id,
            instance_name,
            table_name,
            ..
        } => format!(
            "bigtable table {project_id}/{instance_name}/{table_name} at {}",
            endpoint
                .as_deref()
                .unwrap_or("BIGTABLE_EMULATOR_HOST or Google")
        ),
        StorageConfig::S3compatible {
            endpoint, bucket, ..
        } => format!("s3compatible bucket {bucket} at {endpoint}"),
        StorageConfig::Tiered {
            high_volume,
            long_term,
        } => format!(
            "tiered: up to 1 MiB in {}; larger in {}",
            describe_shared(high_volume),
            describe_shared(long_term)
        ),
        StorageConfig::Filesystem { path } => format!("filesystem at {}", path.display()),
        StorageConfig::Memory {} => "memory".to_owned(),
    }
}
