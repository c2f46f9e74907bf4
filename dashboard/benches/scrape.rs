//! One scrape cycle over 1,000 targets against a local fake `/metrics` endpoint serving the
//! real server's full metrics text: bounded concurrency (64), and the cycle must finish well
//! within the default 5 s interval.
//!
//! The text is `benches/fixtures/server-metrics.txt`, captured from a real `strata-server`
//! (see `benches/fixtures/README.md`), so the bench parses exactly what a pod serves
//! without linking the server crate.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use strata_dashboard::collector::{Collector, Source};
use strata_dashboard::metrics::DashboardMetrics;
use strata_dashboard::scrape::{ScrapeSettings, Scraper};
use strata_dashboard::sources::local::Target;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // What a real strata-server exports (every label set pre-registered), plus some traffic.
    let body: Arc<str> = include_str!("fixtures/server-metrics.txt").into();
    let addr = rt.block_on(async {
        let body = body.clone();
        let app = Router::new().route(
            "/pod/{i}/metrics",
            get(move || {
                let body = body.clone();
                async move { body.to_string() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let targets: Vec<Target> = (0..1000)
        .map(|i| {
            format!("svc-{}=http://{addr}/pod/{i}/metrics", i / 10)
                .parse()
                .unwrap()
        })
        .collect();
    let settings = strata_dashboard::Settings::default();
    let source = Source::Static(targets);
    let (app, _) = strata_dashboard::build(&settings, &source);
    let collector = Collector {
        source,
        scraper: Scraper::new(ScrapeSettings::default()).unwrap(),
        store: app.store.clone(),
        metrics: DashboardMetrics::new(),
        interval: settings.scrape_interval,
        discovery_interval: settings.discovery_interval,
        last_discovery: Default::default(),
    };
    let first = rt.block_on(collector.cycle());
    assert_eq!(first.ok, 1000, "every fake target answers: {first:?}");
    eprintln!(
        "one cycle of 1000 targets ({} bytes each): {:?} (interval {:?})",
        body.len(),
        first.duration,
        settings.scrape_interval
    );
    let mut group = c.benchmark_group("scrape");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("cycle_1000_targets_concurrency_64", |b| {
        b.to_async(&rt).iter(|| async {
            let s = collector.cycle().await;
            assert_eq!(s.failed, 0);
            assert!(
                s.duration < settings.scrape_interval,
                "cycle overran: {s:?}"
            );
            s
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
