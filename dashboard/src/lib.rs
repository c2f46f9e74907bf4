//! Strata dashboard: a server-rendered, read-only on-call view of every StorageService.
//!
//! It answers "is anything on fire, where, since when" at a glance: an alerts strip for
//! panics and unreachable pods, per-service health with in-flight-vs-limit bars, rejection
//! rates and latency, and a page per service with per-pod sparklines, conditions and Events.
//!
//! Layout (DESIGN §1): pure logic — [`parse`], [`history`], [`sparkline`], [`health`],
//! [`state`], [`views`], [`format`](mod@format) — is separate from I/O — [`sources`], [`scrape`],
//! [`collector`], [`web`] — so everything that decides what is shown is unit-tested without a
//! network.

pub mod collector;
pub mod format;
pub mod health;
pub mod history;
pub mod metrics;
pub mod parse;
pub mod scrape;
pub mod sources;
pub mod sparkline;
pub mod state;
pub mod views;
pub mod web;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::collector::{Collector, Source};
use crate::health::Thresholds;
use crate::metrics::DashboardMetrics;
use crate::scrape::{ScrapeSettings, Scraper};
use crate::state::{Limits, State};
use crate::views::ViewSettings;
use crate::web::AppState;

/// Everything the dashboard needs to run (the binary fills it from flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Listen address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// How often every target is scraped.
    pub scrape_interval: Duration,
    /// Minimum time between full discovery passes (Kubernetes: Events list calls;
    /// StorageServices and pods are watched and refreshed as they change).
    pub discovery_interval: Duration,
    /// Per-target timeout (at most the interval).
    pub scrape_timeout: Duration,
    /// Targets scraped at once.
    pub concurrency: usize,
    /// History kept per pod (sparklines cover it).
    pub history: Duration,
    /// Window for rates.
    pub rate_window: Duration,
    /// Window for latency percentiles.
    pub latency_window: Duration,
    /// How often pages re-poll their live fragment.
    pub refresh: Duration,
    /// Most pods watched at once (bounds memory whatever the number of targets).
    pub max_targets: usize,
    /// Largest accepted `/metrics` body.
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            scrape_interval: Duration::from_secs(5),
            discovery_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(3),
            concurrency: 64,
            history: Duration::from_secs(30 * 60),
            rate_window: Duration::from_secs(60),
            latency_window: Duration::from_secs(300),
            refresh: Duration::from_secs(5),
            max_targets: 2000,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The HTTP client for scraping could not be built.
    #[error(transparent)]
    Scraper(#[from] scrape::ScrapeError),
}

/// A running dashboard: its address and a handle to stop it (used by tests and `main`).
pub struct RunningDashboard {
    addr: SocketAddr,
    store: Arc<RwLock<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    collector: tokio::task::JoinHandle<()>,
}

impl RunningDashboard {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (read it under a short lock).
    pub fn store(&self) -> Arc<RwLock<State>> {
        self.store.clone()
    }

    /// Stops scraping and serving.
    pub async fn shutdown(mut self) {
        self.collector.abort();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
    }

    /// Serves until the server task ends (i.e. forever, unless shut down).
    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

/// Builds the shared pieces from settings (also used by the benchmarks).
pub fn build(settings: &Settings, source: &Source) -> (AppState, Limits) {
    let limits = Limits::new(
        settings.scrape_interval,
        settings.history,
        settings.latency_window,
        settings.max_targets,
    );
    let store = Arc::new(RwLock::new(State::new(limits)));
    let view = ViewSettings {
        rate_window: settings.rate_window,
        latency_window: settings.latency_window,
        refresh: settings.refresh,
        scrape_interval: settings.scrape_interval,
        thresholds: Thresholds::default(),
        source: source.describe().to_owned(),
    };
    (
        AppState {
            store,
            settings: Arc::new(view),
            metrics: DashboardMetrics::new(),
        },
        limits,
    )
}

/// Starts the collector and the HTTP server.
pub async fn start(settings: Settings, source: Source) -> Result<RunningDashboard, StartError> {
    let (app, _) = build(&settings, &source);
    let scraper = Scraper::new(ScrapeSettings {
        concurrency: settings.concurrency,
        timeout: settings.scrape_timeout.min(settings.scrape_interval),
        max_body_bytes: settings.max_body_bytes,
    })?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    let collector = Collector {
        source,
        scraper,
        store: app.store.clone(),
        metrics: app.metrics.clone(),
        interval: settings.scrape_interval,
        discovery_interval: settings.discovery_interval,
        last_discovery: Default::default(),
    };
    let collector = tokio::spawn(collector.run());
    let store = app.store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = web::router(app);
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(err) = result {
            tracing::error!(%err, "dashboard HTTP server failed");
        }
    });
    Ok(RunningDashboard {
        addr,
        store,
        shutdown: Some(tx),
        server,
        collector,
    })
}
