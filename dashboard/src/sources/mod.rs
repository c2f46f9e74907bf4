//! Where the dashboard learns *what* to watch: a [`Topology`] of services and their pods with
//! the URL of each pod's `/metrics`.
//!
//! Two sources exist: [`local`] (static `--target NAME=URL` flags, for laptops and demos) and
//! [`kubernetes`] (StorageService custom resources and their pods, watched, and Events,
//! listed; in-cluster).
//! Both only *describe*; scraping happens in [`crate::scrape`], so discovery can be tested
//! without any network.

pub mod kubernetes;
pub mod local;

/// Most pods kept per service; more are dropped from the view (and said so).
pub const MAX_PODS_PER_SERVICE: usize = 200;
/// Most Events kept per service, newest first.
pub const MAX_EVENTS_PER_SERVICE: usize = 20;
/// Longest free text (messages, reasons) kept from the API, in characters.
pub const MAX_TEXT: usize = 300;

/// Truncates untrusted free text to [`MAX_TEXT`] characters so a chatty API cannot grow
/// memory or page size without bound.
pub fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX_TEXT).collect();
        s.push('…');
        s
    }
}

/// Everything discovered in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// Services, sorted by namespace then name.
    pub services: Vec<ServiceInfo>,
}

impl Topology {
    /// Total number of pods across services.
    pub fn pod_count(&self) -> usize {
        self.services.iter().map(|s| s.pods.len()).sum()
    }

    /// Keeps at most `max_pods` pods in total (services later in order lose theirs first), so
    /// memory stays bounded whatever the cluster or the flags contain. Returns how many pods
    /// were dropped.
    pub fn limit_pods(&mut self, max_pods: usize) -> usize {
        let mut left = max_pods;
        let mut dropped = 0;
        for s in &mut self.services {
            let keep = s.pods.len().min(left);
            dropped += s.pods.len() - keep;
            s.pods.truncate(keep);
            left -= keep;
        }
        dropped
    }
}

/// One StorageService (or one `--target` name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceInfo {
    /// Namespace (`local` for static targets).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Desired replicas from the spec, when known.
    pub desired: Option<u32>,
    /// Storage kind from the spec (`filesystem`, `memory`, `bigtable`, `s3compatible`,
    /// `tiered`), when known.
    pub storage: Option<String>,
    /// Whether the spec turns access control off (`auth.enforce: false`), when known.
    pub access_control_off: Option<bool>,
    /// Ready replicas from the status, when known.
    pub ready: Option<u32>,
    /// Client endpoint from the status, when known.
    pub endpoint: Option<String>,
    /// Status conditions.
    pub conditions: Vec<Condition>,
    /// Recent Events about the service and its pods, newest first.
    pub events: Vec<EventInfo>,
    /// Its pods.
    pub pods: Vec<PodInfo>,
}

/// A status condition as the operator wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Condition {
    /// `Ready`, `Progressing`, `Degraded`.
    pub kind: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// When the status last changed (unix seconds).
    pub since: Option<f64>,
}

/// A Kubernetes Event, reduced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventInfo {
    /// Last time it happened (unix seconds).
    pub at: Option<f64>,
    /// `Normal` or `Warning`.
    pub kind: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human message.
    pub message: String,
    /// `Kind/name` of the object it is about.
    pub object: String,
    /// How many times it happened.
    pub count: u32,
}

/// One pod (or one static target).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// Pod name (or `host:port` for static targets).
    pub name: String,
    /// Full URL of its `/metrics`; `None` when it has no IP yet.
    pub metrics_url: Option<String>,
    /// Pod phase (`Running`, `Pending`, …), when known.
    pub phase: Option<String>,
    /// Pod readiness, when known.
    pub ready: Option<bool>,
    /// Container restarts, when known.
    pub restarts: Option<u32>,
}

/// Renders a URL for display without credentials, query or fragment, so a secret placed in a
/// `--target` URL never reaches a page.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(p) => format!("{}://{}:{}{}", u.scheme(), host, p, u.path()),
                None => format!("{}://{}{}", u.scheme(), host, u.path()),
            }
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_strips_secrets() {
        assert_eq!(
            display_url("http://user:hunter2@10.0.0.1:8888/metrics?token=abc#x"),
            "http://10.0.0.1:8888/metrics"
        );
        assert_eq!(display_url("not a url"), "(invalid URL)");
    }

    #[test]
    fn limit_pods_is_global() {
        let svc = |n: usize| ServiceInfo {
            pods: (0..n)
                .map(|i| PodInfo {
                    name: format!("p{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let mut t = Topology {
            services: vec![svc(3), svc(3), svc(3)],
        };
        assert_eq!(t.limit_pods(5), 4);
        assert_eq!(t.pod_count(), 5);
        assert_eq!(t.services[2].pods.len(), 0);
    }

    #[test]
    fn clip_bounds_text() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).chars().count(), MAX_TEXT + 1);
    }
}
