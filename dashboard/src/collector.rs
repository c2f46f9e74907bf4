//! I/O loop: every scrape interval, refresh the topology, scrape every target with bounded
//! concurrency and fold the results into the shared [`State`]. Between cycles, a change
//! reported by the source (a Kubernetes watch event) refreshes the topology at once.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::metrics::DashboardMetrics;
use crate::scrape::Scraper;
use crate::sources::kubernetes::KubeSource;
use crate::sources::local::{self, Target};
use crate::sources::Topology;
use crate::state::{CycleSummary, State};
use crate::web::now_unix;

/// Where the topology comes from.
#[derive(Clone)]
pub enum Source {
    /// `--target NAME=URL` flags.
    Static(Vec<Target>),
    /// StorageServices through the Kubernetes API.
    Kubernetes(KubeSource),
}

impl Source {
    /// A short description for pages.
    pub fn describe(&self) -> &'static str {
        match self {
            Source::Static(_) => "static targets",
            Source::Kubernetes(_) => "Kubernetes",
        }
    }

    /// One full discovery pass (for Kubernetes: also re-lists Events); errors are returned
    /// as text for the page.
    pub async fn discover(&self) -> Result<Topology, String> {
        match self {
            Source::Static(targets) => Ok(local::topology(targets)),
            Source::Kubernetes(k) => k.discover().await.map_err(|e| e.to_string()),
        }
    }

    /// The topology from what the source already holds, without list calls (for Kubernetes:
    /// the watch stores and the last Events list).
    pub async fn snapshot(&self) -> Result<Topology, String> {
        match self {
            Source::Static(targets) => Ok(local::topology(targets)),
            Source::Kubernetes(k) => k.snapshot().await.map_err(|e| e.to_string()),
        }
    }

    /// Resolves when the source has news worth a [`snapshot`](Self::snapshot); never for
    /// static targets.
    pub async fn changed(&self) {
        match self {
            Source::Static(_) => std::future::pending().await,
            Source::Kubernetes(k) => k.changed().await,
        }
    }
}

/// Least time between two topology refreshes triggered by source changes (bursts of watch
/// events, e.g. a rollout, coalesce instead of rebuilding the topology per event).
pub const MIN_CHANGE_GAP: Duration = Duration::from_millis(250);

/// Runs discovery and scraping for the dashboard.
#[derive(Clone)]
pub struct Collector {
    /// Topology source.
    pub source: Source,
    /// HTTP scraper.
    pub scraper: Scraper,
    /// Shared state.
    pub store: Arc<RwLock<State>>,
    /// Own metrics.
    pub metrics: DashboardMetrics,
    /// Scrape interval.
    pub interval: Duration,
    /// Minimum time between full discovery passes (for Kubernetes: Events list calls;
    /// StorageServices and pods are watched, and their changes show every cycle or sooner).
    pub discovery_interval: Duration,
    /// When discovery last ran (shared by clones).
    pub last_discovery: Arc<Mutex<Option<Instant>>>,
}

impl Collector {
    /// One discovery pass (`full`: [`Source::discover`], else [`Source::snapshot`]); on
    /// failure the previous topology stays and the error is shown.
    async fn discover(&self, at: f64, full: bool) {
        let result = if full {
            self.source.discover().await
        } else {
            self.source.snapshot().await
        };
        match result {
            Ok(topology) => self
                .store
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .set_topology(topology),
            Err(message) => {
                tracing::warn!(%message, "discovery failed; keeping the previous topology");
                self.metrics.discovery_errors.inc();
                self.store
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .discovery_failed(message, at);
            }
        }
    }

    /// One full cycle: discover, scrape all, apply. Returns its summary.
    pub async fn cycle(&self) -> CycleSummary {
        let started = Instant::now();
        let at = now_unix();
        let due = {
            let mut last = self
                .last_discovery
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= self.discovery_interval);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        self.discover(at, due).await;
        let targets = self
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .targets();
        let count = targets.len();
        let results = self.scraper.scrape_all(targets).await;
        let mut ok = 0;
        let mut failed = 0;
        {
            let mut state = self.store.write().unwrap_or_else(|e| e.into_inner());
            for (key, result) in results {
                match &result {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                state.apply_scrape(&key, at, result.map_err(|e| e.to_string()));
            }
            let summary = CycleSummary {
                at: now_unix(),
                duration: started.elapsed(),
                ok,
                failed,
            };
            state.last_cycle = Some(summary);
        }
        let duration = started.elapsed();
        self.metrics
            .scrapes
            .with_label_values(&["ok"])
            .inc_by(ok as u64);
        self.metrics
            .scrapes
            .with_label_values(&["error"])
            .inc_by(failed as u64);
        self.metrics.cycle_duration.observe(duration.as_secs_f64());
        self.metrics.targets.set(count as i64);
        self.metrics.targets_unreachable.set(failed as i64);
        if duration > self.interval {
            self.metrics.cycle_overruns.inc();
            tracing::warn!(?duration, interval = ?self.interval, "scrape cycle overran the interval");
        }
        CycleSummary {
            at: now_unix(),
            duration,
            ok,
            failed,
        }
    }

    /// Cycles forever at the interval (a slow cycle delays the next one rather than
    /// overlapping it, so load on targets stays bounded); in between, refreshes the topology
    /// as soon as the source reports a change, at most every [`MIN_CHANGE_GAP`].
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.cycle().await;
                }
                () = self.source.changed() => {
                    self.discover(now_unix(), false).await;
                    tokio::time::sleep(MIN_CHANGE_GAP).await;
                }
            }
        }
    }
}
