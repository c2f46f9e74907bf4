//! Rendering throughput: 1,000 StorageServices (the budget is < 1 s total on
//! 2 cores). Run with `cargo bench -p strata-operator --bench render`.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use strata_operator::api::*;
use strata_operator::render::{render, Capabilities};

fn services(n: usize) -> Vec<StorageService> {
    (0..n)
        .map(|i| {
            let mut spec = StorageServiceSpec::minimal();
            spec.replicas = (i % 5) as i32 + 1;
            if i % 2 == 0 {
                spec.storage.filesystem = Some(FilesystemSpec {
                    persistence: Some(PersistenceSpec {
                        size: Quantity("10Gi".into()),
                        storage_class_name: None,
                    }),
                });
            } else {
                spec.storage.backend = StorageBackend::Memory;
            }
            spec.limits = Some(LimitsSpec {
                max_requests: Some(1000 + i as u32),
                queue_depth: Some(10),
                queue_timeout: Some("250ms".into()),
                ..Default::default()
            });
            if i % 3 == 0 {
                spec.autoscaling = Some(AutoscalingSpec {
                    min_replicas: 1,
                    max_replicas: 10,
                    target_cpu_utilization_percentage: Some(70),
                    target_in_flight_percentage: Some(60),
                });
            }
            spec.monitoring = Some(MonitoringSpec {
                service_monitor: Some(ServiceMonitorSpec {
                    enabled: true,
                    ..Default::default()
                }),
                prometheus_rule: Some(PrometheusRuleSpec {
                    enabled: true,
                    ..Default::default()
                }),
            });
            let mut obj = StorageService::new(&format!("svc-{i}"), spec);
            obj.metadata.namespace = Some(format!("ns-{}", i % 20));
            obj.metadata.uid = Some(format!("uid-{i}"));
            obj
        })
        .collect()
}

fn bench_render(c: &mut Criterion) {
    let all = services(1000);
    let caps = Capabilities { monitoring: true };
    c.bench_function("render 1000 StorageServices", |b| {
        b.iter(|| {
            let mut children = 0;
            for obj in &all {
                children += render(obj, caps).expect("valid").children().len();
            }
            children
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_render
}
criterion_main!(benches);
