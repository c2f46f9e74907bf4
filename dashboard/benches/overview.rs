//! Server-side cost of the overview: 100 services × 10 pods with a full 30-minute history
//! (model building under the lock plus template rendering). Goal: < 10 ms.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use askama::Template;
use criterion::{criterion_group, criterion_main, Criterion};
use strata_dashboard::collector::Source;
use strata_dashboard::parse::parse_metrics;
use strata_dashboard::sources::{PodInfo, ServiceInfo, Topology};
use strata_dashboard::state::PodKey;
use strata_dashboard::views;
use strata_dashboard::web::{OverviewPage, ServicePage};

fn text(i: u64, pod: u64) -> String {
    let panics = if pod == 3 { i / 50 } else { 0 };
    format!(
        "# TYPE strata_service_tasks_running gauge\nstrata_service_tasks_running {}\n\
         # TYPE strata_service_tasks_limit gauge\nstrata_service_tasks_limit 64\n\
         # TYPE strata_service_tasks_queued gauge\nstrata_service_tasks_queued 0\n\
         # TYPE strata_http_requests_in_flight gauge\nstrata_http_requests_in_flight {}\n\
         # TYPE strata_http_requests_limit gauge\nstrata_http_requests_limit 1000\n\
         # TYPE strata_service_operations_total counter\n\
         strata_service_operations_total{{operation=\"get\",outcome=\"ok\"}} {}\n\
         # TYPE strata_service_rejections_total counter\n\
         strata_service_rejections_total{{reason=\"at_capacity\"}} {}\n\
         # TYPE strata_service_panics_total counter\n\
         strata_service_panics_total{{operation=\"get\"}} {panics}\n\
         # TYPE strata_http_rejections_total counter\nstrata_http_rejections_total 0\n\
         # TYPE strata_service_operation_duration_seconds histogram\n\
         strata_service_operation_duration_seconds_bucket{{operation=\"get\",le=\"0.001\"}} {}\n\
         strata_service_operation_duration_seconds_bucket{{operation=\"get\",le=\"0.01\"}} {}\n\
         strata_service_operation_duration_seconds_bucket{{operation=\"get\",le=\"+Inf\"}} {}\n",
        i % 64,
        i % 1000,
        i * 100,
        i * pod,
        i * 90,
        i * 99,
        i * 100
    )
}

fn bench(c: &mut Criterion) {
    let settings = strata_dashboard::Settings::default();
    let (app, limits) = strata_dashboard::build(&settings, &Source::Static(vec![]));
    let services: Vec<ServiceInfo> = (0..100)
        .map(|s| ServiceInfo {
            namespace: format!("team-{}", s % 7),
            name: format!("store-{s}"),
            desired: Some(10),
            ready: Some(10 - (s % 3 == 0) as u32),
            pods: (0..10)
                .map(|p| PodInfo {
                    name: format!("store-{s}-{p}"),
                    metrics_url: Some(format!("http://10.0.{s}.{p}:8888/metrics")),
                    phase: Some("Running".into()),
                    ready: Some(true),
                    restarts: Some(0),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let now = 1_800_000_000.0;
    {
        let mut st = app.store.write().unwrap();
        st.set_topology(Topology {
            services: services.clone(),
        });
        // Pre-parse one sample per (step, pod index) to keep setup fast.
        let points = limits.history_points as u64;
        for i in 0..points {
            let at = now - (points - i) as f64 * 5.0;
            let samples: Vec<_> = (0..10)
                .map(|p| parse_metrics(&text(i, p)).unwrap())
                .collect();
            for svc in &services {
                for (p, pod) in svc.pods.iter().enumerate() {
                    let key = PodKey {
                        namespace: svc.namespace.clone(),
                        service: svc.name.clone(),
                        pod: pod.name.clone(),
                    };
                    st.apply_scrape(&key, at, Ok(samples[p].clone()));
                }
            }
        }
    }
    let view_settings = app.settings.clone();
    let mut group = c.benchmark_group("render");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("overview_100_services_x_10_pods", |b| {
        b.iter(|| {
            let st = app.store.read().unwrap();
            let view = views::overview(&st, now, &view_settings);
            drop(st);
            black_box(OverviewPage { view: &view }.render().unwrap())
        })
    });
    group.bench_function("service_page_10_pods_with_sparklines", |b| {
        b.iter(|| {
            let st = app.store.read().unwrap();
            let view = views::service(&st, "team-0", "store-0", now, &view_settings).unwrap();
            drop(st);
            black_box(ServicePage { view: &view }.render().unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
