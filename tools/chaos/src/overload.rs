//! Overload mode: 10× `service.max_concurrency` clients keep slow uploads (bodies trickled
//! over about a second) going for a bounded time against a small web-tier limit too. Every
//! answer must be 2xx, 429 or 503 (no hang, no reset), the rejection counters must equal
//! the rejections the clients saw, RSS must stay bounded and normal service must resume.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::metrics::{self, scrape, Snapshot};
use crate::server::{rss_bytes, Server, ServerSpec};
use crate::{payload, Ctx, Report};

const MAX_CONCURRENCY: usize = 8;
/// RSS growth over the idle server allowed under overload.
const RSS_GROWTH_LIMIT: u64 = 256 << 20;
/// An answer slower than this is a hang.
const HANG: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    too_many: AtomicU64,
    unavailable: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// A body of `chunks` × `chunk` bytes with `pause` before each chunk.
fn slow_body(seed: u64, chunks: usize, chunk: usize, pause: Duration) -> reqwest::Body {
    let data = Bytes::from(payload::make(seed, chunks * chunk));
    let stream = futures::stream::unfold(0usize, move |i| {
        let data = data.clone();
        async move {
            if i * chunk >= data.len() {
                return None;
            }
            tokio::time::sleep(pause).await;
            let end = ((i + 1) * chunk).min(data.len());
            Some((Ok::<_, std::io::Error>(data.slice(i * chunk..end)), i + 1))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

async fn client(base: String, id: u64, seed: u64, until: Instant, tally: Arc<Tally>) {
    let http = reqwest::Client::builder()
        .timeout(HANG)
        .build()
        .expect("http client");
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 16) ^ 0x0E71);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let chunks = rng.random_range(4..16);
        let pause = Duration::from_millis(rng.random_range(20..80));
        let url = format!("{base}/v1/objects/chaos/org=1/slow/{id}/{n}");
        let result = http
            .put(&url)
            .body(slow_body(rng.random(), chunks, 1024, pause))
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                // Drain the body: a truncated answer is a failure too.
                let drained = response.bytes().await;
                match (status, drained) {
                    (200..=299, Ok(_)) => tally.ok.fetch_add(1, Ordering::SeqCst),
                    (429, Ok(_)) => tally.too_many.fetch_add(1, Ordering::SeqCst),
                    (503, Ok(_)) => tally.unavailable.fetch_add(1, Ordering::SeqCst),
                    (status, Ok(body)) => {
                        tally.failures.lock().expect("tally").push(format!(
                            "PUT answered {status}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        ));
                        0
                    }
                    (status, Err(err)) => {
                        tally
                            .failures
                            .lock()
                            .expect("tally")
                            .push(format!("PUT {status}: body cut: {err}"));
                        0
                    }
                };
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "hang"
                } else {
                    "transport error"
                };
                tally
                    .failures
                    .lock()
                    .expect("tally")
                    .push(format!("PUT {kind}: {err:?}"));
            }
        }
        // A rejected client retries after a short seeded pause, as a real one would.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
    }
}

/// Polls `/metrics` until the service gauges are idle (or `limit` passes).
pub async fn settle(
    http: &reqwest::Client,
    base: &str,
    limit: Duration,
) -> anyhow::Result<Snapshot> {
    let began = Instant::now();
    loop {
        let snapshot = scrape(http, base).await?;
        let idle = snapshot.sum(metrics::TASKS_RUNNING) == 0.0
            && snapshot.sum(metrics::TASKS_QUEUED) == 0.0
            && snapshot.sum(metrics::BULK_RUNNING) == 0.0
            // The scrape itself is in flight.
            && snapshot.sum(metrics::HTTP_IN_FLIGHT) <= 1.0;
        if idle || began.elapsed() > limit {
            return Ok(snapshot);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the idle gauges of `snapshot`.
pub fn check_idle(report: &mut Report, snapshot: &Snapshot, when: &str) {
    for (name, max) in [
        (metrics::TASKS_RUNNING, 0.0),
        (metrics::TASKS_QUEUED, 0.0),
        (metrics::BULK_RUNNING, 0.0),
        (metrics::HTTP_IN_FLIGHT, 1.0),
    ] {
        let value = snapshot.sum(name);
        report.check(value <= max, || {
            format!("{when}: {name} is {value}, expected {max}")
        });
    }
}

/// `count` concurrent 4 KiB PUTs then GETs; every one must succeed byte-identical.
pub async fn normal_service(
    http: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
    report: &mut Report,
) {
    let puts = (0..count).map(|i| {
        let body = payload::make(i as u64 + 77, 4096);
        let url = format!("{base}/v1/objects/chaos/org=1/{prefix}/{i}");
        async move {
            let put = http.put(&url).body(body.clone()).send().await;
            let put_status = put.map(|r| r.status().as_u16());
            let got = match http.get(&url).send().await {
                Ok(r) => r.bytes().await.ok(),
                Err(_) => None,
            };
            (put_status, got.is_some_and(|g| g[..] == body[..]))
        }
    });
    let results = futures::future::join_all(puts).await;
    let bad: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, (status, same))| !matches!(status, Ok(200)) || !same)
        .map(|(i, (status, same))| format!("#{i}: PUT {status:?}, read back identical: {same}"))
        .collect();
    report.check(bad.is_empty(), || {
        format!("normal service afterwards ({count} concurrent PUT+GET): {bad:?}")
    });
}

/// Runs the overload; see the module documentation.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let duration = Duration::from_secs(if ctx.long { 120 } else { 4 });
    let clients = 10 * MAX_CONCURRENCY;
    let mut spec = ServerSpec::new(ctx.work.join("data"));
    spec.max_concurrency = MAX_CONCURRENCY;
    spec.queue_depth = MAX_CONCURRENCY / 2;
    spec.queue_timeout_ms = 200;
    // Room for the admitted and queued uploads and a few quick rejections; the rest of
    // the crowd meets the web tier's 503.
    spec.max_requests = MAX_CONCURRENCY + 2;
    let mut server = Server::start(&ctx.bin, &ctx.work, &spec, "overload")?;
    let base = server.base();
    let http = ctx.client();
    let mut report = Report::default();
    let before = scrape(&http, &base).await?;
    let rss_idle = rss_bytes(server.pid()).unwrap_or(0);

    let tally = Arc::new(Tally::default());
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..clients as u64)
        .map(|id| tokio::spawn(client(base.clone(), id, ctx.seed, until, tally.clone())))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let pid = server.pid();
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(Ordering::SeqCst) {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        })
    };
    for task in tasks {
        task.await?;
    }
    done.store(true, Ordering::SeqCst);
    let rss_peak = sampler.await?;

    report.check(server.exited().is_none(), || "the server died".into());
    let after = settle(&http, &base, Duration::from_secs(30)).await?;
    check_idle(&mut report, &after, "after the overload");
    let ok = tally.ok.load(Ordering::SeqCst);
    let too_many = tally.too_many.load(Ordering::SeqCst);
    let unavailable = tally.unavailable.load(Ordering::SeqCst);
    let service_rejections =
        after.sum(metrics::SERVICE_REJECTIONS) - before.sum(metrics::SERVICE_REJECTIONS);
    let http_rejections =
        after.sum(metrics::HTTP_REJECTIONS) - before.sum(metrics::HTTP_REJECTIONS);
    report.check(service_rejections == too_many as f64, || {
        format!(
            "{} counts {service_rejections} but clients saw {too_many} answers 429",
            metrics::SERVICE_REJECTIONS
        )
    });
    report.check(http_rejections == unavailable as f64, || {
        format!(
            "{} counts {http_rejections} but clients saw {unavailable} answers 503",
            metrics::HTTP_REJECTIONS
        )
    });
    let failures = std::mem::take(&mut *tally.failures.lock().expect("tally"));
    let failure_count = failures.len();
    for failure in failures.into_iter().take(10) {
        report.failures.push(failure);
    }
    if failure_count > 10 {
        report
            .failures
            .push(format!("… {} more bad answers", failure_count - 10));
    }
    report.check(rss_peak <= rss_idle + RSS_GROWTH_LIMIT, || {
        format!(
            "RSS peaked at {} MiB (idle {} MiB)",
            rss_peak >> 20,
            rss_idle >> 20
        )
    });
    report.check(ok > 0, || "no upload was admitted at all".into());
    normal_service(&http, &base, "after-overload", MAX_CONCURRENCY, &mut report).await;
    report.figure(format!(
        "{clients} clients × {duration:?} of trickled uploads against max_concurrency {MAX_CONCURRENCY}, queue {}, max_requests {}",
        spec.queue_depth, spec.max_requests
    ));
    report.figure(format!(
        "answers: {ok} 2xx, {too_many} 429 (= {service_rejections} counted), {unavailable} 503 (= {http_rejections} counted), {failure_count} other"
    ));
    report.figure(format!(
        "RSS idle {} MiB, peak {} MiB",
        rss_idle >> 20,
        rss_peak >> 20
    ));
    server.kill();
    Ok(report)
}
