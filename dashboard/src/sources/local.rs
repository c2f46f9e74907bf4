//! Static targets from `--target NAME=URL` flags: every distinct NAME is one service, every
//! URL under it one pod. For laptops, demos and tests, where there is no Kubernetes API.

use super::{PodInfo, ServiceInfo, Topology};

/// Namespace shown for static targets.
pub const LOCAL_NAMESPACE: &str = "local";

/// One parsed `--target` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Service name shown on the dashboard.
    pub name: String,
    /// URL of the target's `/metrics`.
    pub url: String,
}

/// Why a `--target` flag was refused (the message is shown at startup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// No `=` between name and URL.
    #[error("target `{0}` is not NAME=URL")]
    Syntax(String),
    /// Empty or overlong name, or characters outside `[A-Za-z0-9._-]`.
    #[error("target name `{0}` must be 1-63 characters of A-Z a-z 0-9 . _ -")]
    Name(String),
    /// The URL does not parse or is not http(s).
    #[error("target URL for `{0}` must be an http:// or https:// URL")]
    Url(String),
}

impl std::str::FromStr for Target {
    type Err = TargetError;

    /// Parses `NAME=URL`. A URL without a path (or with `/`) scrapes `/metrics`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| TargetError::Syntax(s.chars().take(80).collect()))?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(TargetError::Name(name.chars().take(80).collect()));
        }
        let mut parsed =
            reqwest::Url::parse(url.trim()).map_err(|_| TargetError::Url(name.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(TargetError::Url(name.to_owned()));
        }
        if parsed.path().is_empty() || parsed.path() == "/" {
            parsed.set_path("/metrics");
        }
        Ok(Target {
            name: name.to_owned(),
            url: parsed.to_string(),
        })
    }
}

/// The topology of static targets: one service per distinct name (in flag order), one pod
/// per URL, named `host:port`.
pub fn topology(targets: &[Target]) -> Topology {
    let mut services: Vec<ServiceInfo> = Vec::new();
    for t in targets {
        let pod_name = reqwest::Url::parse(&t.url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)))
            })
            .unwrap_or_else(|| t.name.clone());
        let pod = PodInfo {
            name: pod_name,
            metrics_url: Some(t.url.clone()),
            ..Default::default()
        };
        match services.iter_mut().find(|s| s.name == t.name) {
            Some(s) => {
                if !s.pods.iter().any(|p| p.metrics_url == pod.metrics_url) {
                    s.pods.push(pod);
                }
            }
            None => services.push(ServiceInfo {
                namespace: LOCAL_NAMESPACE.to_owned(),
                name: t.name.clone(),
                pods: vec![pod],
                ..Default::default()
            }),
        }
    }
    // Two URLs with the same host:port but different paths would collide: disambiguate.
    for s in &mut services {
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for p in &mut s.pods {
            let n = seen.entry(p.name.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                p.name = format!("{}#{}", p.name, n);
            }
        }
    }
    Topology { services }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t: Target = "local=http://127.0.0.1:8888".parse().unwrap();
        assert_eq!(t.name, "local");
        assert_eq!(t.url, "http://127.0.0.1:8888/metrics");
        let t: Target = "a=http://h:1/custom/metrics".parse().unwrap();
        assert_eq!(t.url, "http://h:1/custom/metrics");
        assert!(matches!(
            "nope".parse::<Target>(),
            Err(TargetError::Syntax(_))
        ));
        assert!(matches!(
            "=http://h".parse::<Target>(),
            Err(TargetError::Name(_))
        ));
        assert!(matches!(
            "a b=http://h".parse::<Target>(),
            Err(TargetError::Name(_))
        ));
        assert!(matches!(
            "a=ftp://h".parse::<Target>(),
            Err(TargetError::Url(_))
        ));
        assert!(matches!("a=::".parse::<Target>(), Err(TargetError::Url(_))));
    }

    #[test]
    fn groups_by_name() {
        let targets: Vec<Target> = [
            "a=http://h1:1",
            "b=http://h2:2",
            "a=http://h3:3",
            "a=http://h3:3",
            "a=http://h3:3/other",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let topo = topology(&targets);
        assert_eq!(topo.services.len(), 2);
        assert_eq!(topo.services[0].name, "a");
        assert_eq!(topo.services[0].namespace, LOCAL_NAMESPACE);
        let names: Vec<_> = topo.services[0]
            .pods
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, vec!["h1:1", "h3:3", "h3:3#2"]);
        assert_eq!(topo.services[1].pods[0].name, "h2:2");
    }
}
