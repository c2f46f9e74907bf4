//! Per-pod numbers and the per-service row built from them, shared by the overview and
//! the service page.

use super::*;

pub(super) struct PodNumbers {
    pub(super) signals: PodSignals,
    pub(super) ops: Option<f64>,
    pub(super) r429: Option<f64>,
    pub(super) r503: Option<f64>,
    pub(super) panics_5m: f64,
    pub(super) panics_60m: f64,
    pub(super) p99: Option<f64>,
    pub(super) in_flight: Option<f64>,
    pub(super) http_limit: Option<f64>,
    pub(super) running: Option<f64>,
    pub(super) tasks_limit: Option<f64>,
    pub(super) queued: Option<f64>,
    /// Pooled-executor queue depth by priority (interactive, bulk, background).
    pub(super) executor_queue: [Option<f64>; 3],
    pub(super) workers: Option<f64>,
    pub(super) workers_busy: Option<f64>,
    /// Cancelled reads per second.
    pub(super) cancellations: Option<f64>,
}

pub(super) fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

pub(super) fn pod_numbers(
    pod: Option<&PodState>,
    ready: Option<bool>,
    now: f64,
    s: &ViewSettings,
) -> PodNumbers {
    let since = now - s.rate_window.as_secs_f64();
    let Some(p) = pod else {
        return PodNumbers {
            signals: PodSignals {
                ready,
                ..Default::default()
            },
            ops: None,
            r429: None,
            r503: None,
            panics_5m: 0.0,
            panics_60m: 0.0,
            p99: None,
            in_flight: None,
            http_limit: None,
            running: None,
            tasks_limit: None,
            queued: None,
            executor_queue: [None; 3],
            workers: None,
            workers_busy: None,
            cancellations: None,
        };
    };
    let h = &p.history;
    let latest = |se: Series| finite(h.latest(se));
    let ops = h.rate_since(Series::Operations, since);
    let r429 = h.rate_since(Series::ServiceRejections, since);
    let r503 = h.rate_since(Series::HttpRejections, since);
    let panics_5m = p.panics_since(now - 300.0);
    let panics_60m = p.panics_since(now - 3600.0);
    let p99 = h.latency_quantile_since(0.99, now - s.latency_window.as_secs_f64());
    let (in_flight, http_limit) = (latest(Series::HttpInFlight), latest(Series::HttpLimit));
    let (running, tasks_limit) = (latest(Series::TasksRunning), latest(Series::TasksLimit));
    let frac = |u: Option<f64>, l: Option<f64>| match (u, l) {
        (Some(u), Some(l)) if l > 0.0 => Some(u / l),
        _ => None,
    };
    let unreachable = p.unreachable_since.map(|t| {
        format!(
            "since {} ({}){}",
            when(t, now),
            p.last_error.as_deref().unwrap_or("error"),
            ""
        )
    });
    let last_panic = p
        .panic_events
        .iter()
        .rev()
        .find(|e| e.at >= now - 300.0)
        .map(|e| format!("{} at {} UTC", e.operation, format::clock(e.at)));
    PodNumbers {
        signals: PodSignals {
            unreachable,
            scraped: p.last_success.is_some(),
            panics_5m,
            last_panic,
            rejections_429: r429.unwrap_or(0.0),
            rejections_503: r503.unwrap_or(0.0),
            service_saturation: frac(running, tasks_limit),
            web_saturation: frac(in_flight, http_limit),
            ready,
        },
        ops,
        r429,
        r503,
        panics_5m,
        panics_60m,
        p99,
        in_flight,
        http_limit,
        running,
        tasks_limit,
        queued: latest(Series::TasksQueued),
        executor_queue: [
            latest(Series::QueueInteractive),
            latest(Series::QueueBulk),
            latest(Series::QueueBackground),
        ],
        workers: latest(Series::Workers),
        workers_busy: latest(Series::WorkersBusy),
        cancellations: h.rate_since(Series::Cancellations, since),
    }
}

pub(super) fn sum(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for v in values.flatten() {
        any = true;
        total += v;
    }
    any.then_some(total)
}

pub(super) fn service_row(
    state: &State,
    svc: &ServiceInfo,
    now: f64,
    s: &ViewSettings,
) -> (ServiceRow, Vec<(Health, Vec<String>, PodNumbers)>) {
    let pods: Vec<(Health, Vec<String>, PodNumbers)> = svc
        .pods
        .iter()
        .map(|p| {
            let n = pod_numbers(state.pods.get(&pod_key(svc, &p.name)), p.ready, now, s);
            let (h, r) = classify_pod(&n.signals, &s.thresholds);
            (h, r, n)
        })
        .collect();
    let signals = ServiceSignals {
        desired: svc.desired,
        ready: svc.ready,
        conditions: svc
            .conditions
            .iter()
            .map(|c| ConditionSignal {
                kind: c.kind.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
            })
            .collect(),
        pods: pods.iter().map(|p| p.0).collect(),
    };
    let (health, mut reasons) = classify_service(&signals);
    // Bring the worst pod's own words up to the overview: "pod-1: 2 panic(s) …".
    if let Some((i, (_, r, _))) = pods
        .iter()
        .enumerate()
        .filter(|(_, (h, r, _))| *h >= Health::Warning && !r.is_empty())
        .max_by_key(|(_, (h, _, _))| *h)
    {
        reasons.insert(0, format!("{}: {}", svc.pods[i].name, r[0]));
    }
    if reasons.is_empty() && health == Health::Ok {
        reasons.push("serving normally".to_owned());
    }
    let replicas = match (svc.ready, svc.desired) {
        (Some(r), Some(d)) => format!("{r} / {d} ready"),
        (Some(r), None) => format!("{r} ready"),
        _ => {
            let up = pods
                .iter()
                .filter(|p| p.2.signals.scraped && p.2.signals.unreachable.is_none())
                .count();
            format!("{up} / {} reachable", pods.len())
        }
    };
    let nums = || pods.iter().map(|p| &p.2);
    let panics_5m: f64 = nums().map(|n| n.panics_5m).sum();
    let panics_60m: f64 = nums().map(|n| n.panics_60m).sum();
    let p99 = nums()
        .filter_map(|n| n.p99)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let row = ServiceRow {
        namespace: svc.namespace.clone(),
        name: svc.name.clone(),
        href: service_href(&svc.namespace, &svc.name),
        badge: health.into(),
        reasons: reasons.join("; "),
        replicas,
        storage: svc.storage.clone().unwrap_or_else(|| "—".to_owned()),
        access_off: svc.access_control_off == Some(true),
        in_flight: bar(
            sum(nums().map(|n| n.in_flight)),
            sum(nums().map(|n| n.http_limit)),
        ),
        service_tier: bar(
            sum(nums().map(|n| n.running)),
            sum(nums().map(|n| n.tasks_limit)),
        ),
        rate_429: format::rate(sum(nums().map(|n| n.r429))),
        rate_503: format::rate(sum(nums().map(|n| n.r503))),
        ops_rate: format::rate(sum(nums().map(|n| n.ops))),
        panics_5m: format::count(panics_5m),
        panics_60m: format::count(panics_60m),
        panicking: panics_5m > 0.0,
        p99: format::latency(p99),
        health,
    };
    (row, pods)
}
