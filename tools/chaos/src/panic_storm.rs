//! Panic-storm mode: thousands of operations on keys the server's fault injection
//! (`faults.panic_key_prefix`) makes panic, mixed with normal PUT/GET traffic. The process
//! must survive, every injected panic must answer 500 and be counted once in
//! `strata_service_panics_total`, normal traffic must be unaffected and the task gauges
//! must return to 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::metrics::{self, scrape};
use crate::overload::{check_idle, normal_service, settle};
use crate::server::{Server, ServerSpec};
use crate::{payload, Ctx, Report};

const WORKERS: u64 = 16;
const PANIC_PREFIX: &str = "panic/";

#[derive(Default)]
struct Tally {
    panics: AtomicU64,
    normal: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, text: String) {
        self.failures.lock().expect("tally").push(text);
    }
}

async fn worker(
    http: reqwest::Client,
    base: String,
    id: u64,
    seed: u64,
    panics: u64,
    tally: Arc<Tally>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id << 24) ^ 0x9A21C);
    let mut injected = 0;
    let mut n = 0u64;
    while injected < panics {
        n += 1;
        if rng.random_bool(0.6) {
            injected += 1;
            let url = format!("{base}/v1/objects/chaos/org=1/{PANIC_PREFIX}{id}/{n}");
            let request = match rng.random_range(0..4) {
                0 => http.get(&url),
                1 => http.head(&url),
                2 => http.delete(&url),
                _ => http
                    .put(&url)
                    .body(payload::make(n, rng.random_range(32..4096))),
            };
            match request.send().await {
                Ok(response) if response.status().as_u16() == 500 => {
                    tally.panics.fetch_add(1, Ordering::SeqCst);
                }
                Ok(response) => tally.fail(format!(
                    "{url}: injected panic answered {}",
                    response.status()
                )),
                Err(err) => tally.fail(format!("{url}: injected panic: {err}")),
            }
        } else {
            let url = format!("{base}/v1/objects/chaos/org=1/normal/{id}/{}", n % 8);
            let body = payload::make(n ^ (id << 32), rng.random_range(32..100_000));
            let put = http.put(&url).body(body.clone()).send().await;
            let status = put.as_ref().map(|r| r.status().as_u16()).ok();
            let got = match http.get(&url).send().await {
                Ok(r) if r.status().as_u16() == 200 => r.bytes().await.ok(),
                _ => None,
            };
            if status == Some(200) && got.is_some_and(|g| g[..] == body[..]) {
                tally.normal.fetch_add(1, Ordering::SeqCst);
            } else {
                tally.fail(format!(
                    "{url}: normal PUT answered {status:?} or read back differently"
                ));
            }
        }
    }
}

/// Runs the storm; see the module documentation.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let total: u64 = if ctx.long { 100_000 } else { 2_000 };
    let per_worker = total / WORKERS;
    let mut spec = ServerSpec::new(ctx.work.join("data"));
    spec.panic_prefix = Some(PANIC_PREFIX.to_owned());
    let mut server = Server::start(&ctx.bin, &ctx.work, &spec, "panic-storm")?;
    let base = server.base();
    let http = ctx.client();
    let mut report = Report::default();
    let before = scrape(&http, &base).await?;
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..WORKERS)
        .map(|id| {
            tokio::spawn(worker(
                http.clone(),
                base.clone(),
                id,
                ctx.seed,
                per_worker,
                tally.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    report.check(server.exited().is_none(), || {
        format!("the server died; log tail:\n{}", server.log_tail(20))
    });
    let after = settle(&http, &base, Duration::from_secs(30)).await?;
    check_idle(&mut report, &after, "after the storm");
    let injected = per_worker * WORKERS;
    let answered = tally.panics.load(Ordering::SeqCst);
    let counted = after.sum(metrics::PANICS) - before.sum(metrics::PANICS);
    report.check(counted == injected as f64, || {
        format!(
            "{} counts {counted}, {injected} panics were injected",
            metrics::PANICS
        )
    });
    report.check(answered == injected, || {
        format!("{answered} of {injected} injected panics answered 500")
    });
    let failures = std::mem::take(&mut *tally.failures.lock().expect("tally"));
    let failure_count = failures.len();
    report.failures.extend(failures.into_iter().take(10));
    normal_service(&http, &base, "after-storm", 32, &mut report).await;
    report.check(server.exited().is_none(), || "the server died".into());
    report.figure(format!(
        "{injected} injected panics over {WORKERS} clients (GET/HEAD/DELETE/PUT), {} normal PUT+GET round trips, {failure_count} bad answers",
        tally.normal.load(Ordering::SeqCst)
    ));
    report.figure(format!("{} = {counted}; process alive", metrics::PANICS));
    server.kill();
    Ok(report)
}
