//! Pure in-memory state: the current topology plus, per pod, its bounded history, scrape
//! status and recent panic events. The collector writes it; the views read it.
//!
//! Memory is bounded by construction: pods not in the topology are dropped, the topology is
//! capped at `max_pods`, every ring has a fixed capacity.

use std::collections::HashMap;
use std::time::Duration;

use crate::history::{PodHistory, Ring};
use crate::parse::PodSample;
use crate::sources::Topology;

/// Most panic events remembered per pod (enough for "panics in the last 60 minutes" at any
/// plausible rate of distinct detections: at most one per operation per scrape).
pub const PANIC_EVENTS_PER_POD: usize = 64;

/// Identifies a pod across cycles: `(namespace, service, pod)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub service: String,
    /// Pod name.
    pub pod: String,
}

/// Panics of one operation detected between two scrapes.
#[derive(Debug, Clone, PartialEq)]
pub struct PanicEvent {
    /// When the increase was observed (unix seconds; the panic happened in the preceding
    /// scrape interval).
    pub at: f64,
    /// `operation` label.
    pub operation: String,
    /// How many panics.
    pub count: f64,
}

/// Everything known about one pod.
#[derive(Debug, Clone)]
pub struct PodState {
    /// Bounded history of every series.
    pub history: PodHistory,
    /// Time of the last successful scrape.
    pub last_success: Option<f64>,
    /// First failure of the current failure streak.
    pub unreachable_since: Option<f64>,
    /// Message of the last failure (no URL, no secrets).
    pub last_error: Option<String>,
    /// Per-operation panic counters of the last successful scrape.
    pub panics_by_operation: Vec<(String, f64)>,
    /// Auth failures per `code` of the last successful scrape (since process start).
    pub auth_failures_by_code: Vec<(String, f64)>,
    /// Rate-limit rejections per `kind` of the last successful scrape (since start).
    pub rate_limited_by_kind: Vec<(String, f64)>,
    /// Recent panic increases, oldest first.
    pub panic_events: Ring<PanicEvent>,
    /// `strata_build_info` version.
    pub version: Option<String>,
}

impl PodState {
    fn new(capacity: usize, latency_capacity: usize) -> Self {
        Self {
            history: PodHistory::new(capacity, latency_capacity),
            last_success: None,
            unreachable_since: None,
            last_error: None,
            panics_by_operation: Vec::new(),
            auth_failures_by_code: Vec::new(),
            rate_limited_by_kind: Vec::new(),
            panic_events: Ring::new(PANIC_EVENTS_PER_POD),
            version: None,
        }
    }

    /// Panics observed at or after `since`.
    pub fn panics_since(&self, since: f64) -> f64 {
        self.panic_events
            .iter()
            .filter(|e| e.at >= since)
            .map(|e| e.count)
            .sum()
    }
}

/// Summary of the most recent scrape cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CycleSummary {
    /// When it finished (unix seconds).
    pub at: f64,
    /// How long it took.
    pub duration: Duration,
    /// Targets scraped successfully.
    pub ok: usize,
    /// Targets that failed.
    pub failed: usize,
}

/// Sizing of the state, derived from the flags.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Scrapes kept per pod and series.
    pub history_points: usize,
    /// Latency histograms kept per pod.
    pub latency_points: usize,
    /// Most pods tracked at once.
    pub max_pods: usize,
}

impl Limits {
    /// Limits for `history` of data scraped every `interval`, with percentiles over
    /// `latency_window`.
    pub fn new(
        interval: Duration,
        history: Duration,
        latency_window: Duration,
        max_pods: usize,
    ) -> Self {
        let per = |d: Duration| {
            ((d.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as usize + 1)
                .clamp(2, 100_000)
        };
        Self {
            history_points: per(history),
            latency_points: per(latency_window),
            max_pods,
        }
    }
}

/// The whole dashboard state.
#[derive(Debug, Clone)]
pub struct State {
    /// What to show.
    pub topology: Topology,
    /// Pods dropped by the `max_pods` cap in the last discovery.
    pub dropped_pods: usize,
    /// Discovery failure (e.g. Kubernetes API unreachable): message and since when.
    pub discovery_error: Option<(String, f64)>,
    /// Per-pod data.
    pub pods: HashMap<PodKey, PodState>,
    /// Last completed scrape cycle.
    pub last_cycle: Option<CycleSummary>,
    /// Sizing.
    pub limits: Limits,
}

impl State {
    /// Empty state with the given limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            topology: Topology::default(),
            dropped_pods: 0,
            discovery_error: None,
            pods: HashMap::new(),
            last_cycle: None,
            limits,
        }
    }

    /// Replaces the topology (capped at `max_pods`) and forgets pods that left it.
    pub fn set_topology(&mut self, mut topology: Topology) {
        self.dropped_pods = topology.limit_pods(self.limits.max_pods);
        let keep: std::collections::HashSet<PodKey> = topology
            .services
            .iter()
            .flat_map(|s| {
                s.pods.iter().map(|p| PodKey {
                    namespace: s.namespace.clone(),
                    service: s.name.clone(),
                    pod: p.name.clone(),
                })
            })
            .collect();
        self.pods.retain(|k, _| keep.contains(k));
        self.topology = topology;
        self.discovery_error = None;
    }

    /// Records a failed discovery; the previous topology stays on screen.
    pub fn discovery_failed(&mut self, message: String, at: f64) {
        let since = self.discovery_error.as_ref().map(|(_, s)| *s).unwrap_or(at);
        self.discovery_error = Some((message, since));
    }

    /// The scrape targets of the current topology.
    pub fn targets(&self) -> Vec<(PodKey, String)> {
        self.topology
            .services
            .iter()
            .flat_map(|s| {
                s.pods.iter().filter_map(move |p| {
                    p.metrics_url.as_ref().map(|u| {
                        (
                            PodKey {
                                namespace: s.namespace.clone(),
                                service: s.name.clone(),
                                pod: p.name.clone(),
                            },
                            u.clone(),
                        )
                    })
                })
            })
            .collect()
    }

    /// Applies one scrape result taken at `at` (unix seconds). Pods not in the topology are
    /// ignored, so a slow scrape finishing after a topology change cannot resurrect them.
    pub fn apply_scrape(&mut self, key: &PodKey, at: f64, result: Result<PodSample, String>) {
        let in_topology = self.topology.services.iter().any(|s| {
            s.namespace == key.namespace
                && s.name == key.service
                && s.pods.iter().any(|p| p.name == key.pod)
        });
        if !in_topology {
            return;
        }
        let limits = self.limits;
        let pod = self
            .pods
            .entry(key.clone())
            .or_insert_with(|| PodState::new(limits.history_points, limits.latency_points));
        match result {
            Ok(sample) => {
                if pod.last_success.is_some() {
                    for (op, now) in &sample.panics_by_operation {
                        let before = pod
                            .panics_by_operation
                            .iter()
                            .find(|(o, _)| o == op)
                            .map(|(_, v)| *v);
                        let delta = match before {
                            Some(b) if *now >= b => now - b,
                            Some(_) => *now, // counter reset: the process restarted
                            None => *now,    // a new label value appeared
                        };
                        if delta > 0.0 {
                            pod.panic_events.push(PanicEvent {
                                at,
                                operation: op.clone(),
                                count: delta,
                            });
                        }
                    }
                }
                pod.history.record(at, &sample);
                pod.panics_by_operation = sample.panics_by_operation;
                pod.auth_failures_by_code = sample.auth_failures_by_code;
                pod.rate_limited_by_kind = sample.rate_limited_by_kind;
                pod.version = sample.version;
                pod.last_success = Some(at);
                pod.unreachable_since = None;
                pod.last_error = None;
            }
            Err(message) => {
                if pod.unreachable_since.is_none() {
                    pod.unreachable_since = Some(at);
                }
                pod.last_error = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_metrics;
    use crate::sources::{PodInfo, ServiceInfo};

    fn topo(pods: &[&str]) -> Topology {
        Topology {
            services: vec![ServiceInfo {
                namespace: "ns".into(),
                name: "svc".into(),
                pods: pods
                    .iter()
                    .map(|p| PodInfo {
                        name: (*p).into(),
                        metrics_url: Some(format!("http://{p}/metrics")),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        }
    }

    fn key(p: &str) -> PodKey {
        PodKey {
            namespace: "ns".into(),
            service: "svc".into(),
            pod: p.into(),
        }
    }

    fn panics(get: u32) -> PodSample {
        parse_metrics(&format!(
            "# TYPE strata_service_panics_total counter\nstrata_service_panics_total{{operation=\"get\"}} {get}\n"
        ))
        .unwrap()
    }

    fn state() -> State {
        State::new(Limits::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
            Duration::from_secs(20),
            10,
        ))
    }

    #[test]
    fn limits_from_durations() {
        let l = Limits::new(
            Duration::from_secs(5),
            Duration::from_secs(1800),
            Duration::from_secs(300),
            7,
        );
        assert_eq!(l.history_points, 361);
        assert_eq!(l.latency_points, 61);
    }

    #[test]
    fn panic_events_from_counter_increases() {
        let mut s = state();
        s.set_topology(topo(&["a"]));
        // Panics that happened before we started watching are not "recent".
        s.apply_scrape(&key("a"), 0.0, Ok(panics(3)));
        assert_eq!(s.pods[&key("a")].panics_since(0.0), 0.0);
        s.apply_scrape(&key("a"), 5.0, Ok(panics(5)));
        s.apply_scrape(&key("a"), 10.0, Ok(panics(5)));
        // Restart: counter back to 1 means one new panic.
        s.apply_scrape(&key("a"), 15.0, Ok(panics(1)));
        let pod = &s.pods[&key("a")];
        let ev: Vec<_> = pod.panic_events.iter().map(|e| (e.at, e.count)).collect();
        assert_eq!(ev, vec![(5.0, 2.0), (15.0, 1.0)]);
        assert_eq!(pod.panics_since(10.0), 1.0);
        assert_eq!(pod.panic_events.iter().next().unwrap().operation, "get");
    }

    #[test]
    fn unreachable_since_first_failure_and_cleared_on_success() {
        let mut s = state();
        s.set_topology(topo(&["a"]));
        s.apply_scrape(&key("a"), 1.0, Err("connection refused".into()));
        s.apply_scrape(&key("a"), 2.0, Err("timeout".into()));
        let pod = &s.pods[&key("a")];
        assert_eq!(pod.unreachable_since, Some(1.0));
        assert_eq!(pod.last_error.as_deref(), Some("timeout"));
        s.apply_scrape(&key("a"), 3.0, Ok(panics(0)));
        assert_eq!(s.pods[&key("a")].unreachable_since, None);
    }

    #[test]
    fn pods_leaving_topology_are_forgotten_and_ignored() {
        let mut s = state();
        s.set_topology(topo(&["a", "b"]));
        s.apply_scrape(&key("a"), 1.0, Ok(panics(0)));
        s.apply_scrape(&key("b"), 1.0, Ok(panics(0)));
        s.set_topology(topo(&["a"]));
        assert_eq!(s.pods.len(), 1);
        s.apply_scrape(&key("b"), 2.0, Ok(panics(0)));
        assert_eq!(s.pods.len(), 1);
        assert_eq!(s.targets().len(), 1);
    }

    #[test]
    fn topology_is_capped() {
        let mut s = state();
        let names: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        s.set_topology(topo(&refs));
        assert_eq!(s.targets().len(), 10);
        assert_eq!(s.dropped_pods, 40);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = state();
        s.set_topology(topo(&["a"]));
        for i in 0..1000 {
            s.apply_scrape(&key("a"), i as f64, Ok(panics(0)));
        }
        assert_eq!(s.pods[&key("a")].history.len(), s.limits.history_points);
    }
}
