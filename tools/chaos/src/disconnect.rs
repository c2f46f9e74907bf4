//! Disconnect mode: clients abort uploads and downloads mid-stream, trickle headers and
//! bodies, hang up right after a complete body and hang up while queued for a permit.
//! Afterwards no task, permit, gauge or temp file may have leaked (gauges idle, a
//! `max_concurrency`-sized burst of permit-holding operations is admitted at once),
//! aborted uploads must be invisible and every write whose body completed readable.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::overload::{check_idle, settle};
use crate::server::{temp_files, Server, ServerSpec};
use crate::{payload, raw, Ctx, Report};

const MAX_CONCURRENCY: usize = 32;
/// How long operations on `slow/` keys hold their permit (fault injection).
const HOLD_MS: u64 = 1500;
/// Shorter than the hold: a burst that found a leaked permit would time out queued.
const QUEUE_TIMEOUT_MS: u64 = 500;
const BIG: usize = 2 << 20;

fn path(key: &str) -> String {
    format!("/v1/objects/chaos/org=1/{key}")
}

#[derive(Default)]
struct Expect {
    /// Keys whose upload was cut short: must be absent.
    absent: Vec<String>,
    /// Keys whose body completed, with their payload: must read back identical.
    present: Vec<(String, Vec<u8>)>,
    failures: Vec<String>,
}

type Shared = Arc<Mutex<Expect>>;

async fn abort_upload(addr: String, key: String, seed: u64, expect: Shared) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = if rng.random_bool(0.5) {
        rng.random_range(64..65_536)
    } else {
        rng.random_range(65_537..BIG)
    };
    let body = payload::make(seed, len);
    let cut = rng.random_range(1..len);
    let mut stream = raw::connect(&addr).await?;
    stream
        .write_all(raw::put_head(&path(&key), body.len()).as_bytes())
        .await?;
    raw::trickle(
        &mut stream,
        &body[..cut],
        16 * 1024,
        Duration::from_millis(rng.random_range(0..20)),
    )
    .await?;
    drop(stream);
    expect.lock().expect("expect").absent.push(key);
    Ok(())
}

async fn abort_download(
    addr: String,
    key: String,
    seed: u64,
    expect: Shared,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stream = raw::connect(&addr).await?;
    stream
        .write_all(raw::get_head(&path(&key)).as_bytes())
        .await?;
    let status = raw::read_status(&mut stream, Duration::from_secs(30)).await?;
    if status != 200 {
        expect
            .lock()
            .expect("expect")
            .failures
            .push(format!("GET {key} before the abort answered {status}"));
        return Ok(());
    }
    let want = rng.random_range(1..BIG / 2);
    let read = async {
        let mut got = 0;
        let mut buf = vec![0u8; 8192];
        while got < want {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
            if rng.random_bool(0.1) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), read).await??;
    Ok(())
}

/// Trickles header bytes; hangs up mid-header, or completes a GET and reads its status.
async fn slowloris(addr: String, key: String, seed: u64, expect: Shared) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let head = raw::get_head(&path(&key));
    let mut stream = raw::connect(&addr).await?;
    if rng.random_bool(0.5) {
        let cut = rng.random_range(1..head.len() - 1);
        raw::trickle(
            &mut stream,
            &head.as_bytes()[..cut],
            3,
            Duration::from_millis(20),
        )
        .await?;
        return Ok(());
    }
    raw::trickle(&mut stream, head.as_bytes(), 8, Duration::from_millis(20)).await?;
    let status = raw::read_status(&mut stream, Duration::from_secs(30)).await?;
    if !matches!(status, 200 | 404 | 408) {
        expect
            .lock()
            .expect("expect")
            .failures
            .push(format!("trickled GET {key} answered {status}"));
    }
    Ok(())
}

/// Trickles a whole body; then either reads the answer or hangs up at once.
async fn trickled_upload(
    addr: String,
    key: String,
    seed: u64,
    wait: bool,
    expect: Shared,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = if rng.random_bool(0.6) {
        rng.random_range(64..65_536)
    } else {
        rng.random_range(65_537..BIG / 2)
    };
    let body = payload::make(seed, len);
    let mut stream = raw::connect(&addr).await?;
    stream
        .write_all(raw::put_head(&path(&key), body.len()).as_bytes())
        .await?;
    let chunk = (len / 8).max(1);
    raw::trickle(
        &mut stream,
        &body,
        chunk,
        Duration::from_millis(rng.random_range(10..40)),
    )
    .await?;
    if wait {
        let status = raw::read_status(&mut stream, Duration::from_secs(30)).await?;
        if status != 200 {
            expect
                .lock()
                .expect("expect")
                .failures
                .push(format!("trickled PUT {key} ({len} B) answered {status}"));
            return Ok(());
        }
    }
    drop(stream);
    expect.lock().expect("expect").present.push((key, body));
    Ok(())
}

/// Connects a GET that queues behind the held permits, then hangs up while queued.
async fn queued_hangup(addr: String, key: String) -> anyhow::Result<()> {
    let mut stream = raw::connect(&addr).await?;
    stream
        .write_all(raw::get_head(&path(&key)).as_bytes())
        .await?;
    tokio::time::sleep(Duration::from_millis(QUEUE_TIMEOUT_MS / 3)).await;
    Ok(())
}

/// Runs the storm; see the module documentation.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let rounds = if ctx.long { 40 } else { 2 };
    let per_kind = 6;
    let data = ctx.work.join("data");
    let mut spec = ServerSpec::new(data.clone());
    spec.max_concurrency = MAX_CONCURRENCY;
    spec.queue_depth = MAX_CONCURRENCY;
    spec.queue_timeout_ms = QUEUE_TIMEOUT_MS;
    spec.delay = Some(("slow/".to_owned(), HOLD_MS));
    let mut server = Server::start(&ctx.bin, &ctx.work, &spec, "disconnect")?;
    let base = server.base();
    let addr = server.addr.clone();
    let http = ctx.client();
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ 0xD15C);

    // Objects to abandon downloads of.
    let downloads: Vec<String> = (0..4).map(|i| format!("big/{i}")).collect();
    for (i, key) in downloads.iter().enumerate() {
        let response = http
            .put(format!("{base}{}", path(key)))
            .body(payload::make(i as u64, BIG))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "seeding {key}: {}",
            response.status()
        );
    }
    let expect: Shared = Arc::default();
    let mut errors = 0usize;
    for round in 0..rounds {
        // Phase 1: hold every permit, then hang up clients queued behind them.
        let holders: Vec<_> = (0..MAX_CONCURRENCY)
            .map(|i| {
                let http = http.clone();
                let url = format!("{base}{}", path(&format!("slow/hold/{round}/{i}")));
                tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut tasks = Vec::new();
        for i in 0..MAX_CONCURRENCY {
            tasks.push(tokio::spawn(queued_hangup(
                addr.clone(),
                format!("q/{round}/{i}"),
            )));
        }
        for holder in holders {
            let status = holder.await?;
            report.check(matches!(status, Ok(404)), || {
                format!("permit-holding GET answered {status:?}")
            });
        }
        // Phase 2: rude clients, fewer than the permits.
        for i in 0..per_kind {
            let seed: u64 = rng.random();
            let e = expect.clone();
            tasks.push(tokio::spawn(abort_upload(
                addr.clone(),
                format!("abort/{round}/{i}"),
                seed,
                e,
            )));
            let key = downloads[i % downloads.len()].clone();
            let e = expect.clone();
            tasks.push(tokio::spawn(abort_download(addr.clone(), key, seed, e)));
            let e = expect.clone();
            let key = downloads[(i + 1) % downloads.len()].clone();
            tasks.push(tokio::spawn(slowloris(addr.clone(), key, seed, e)));
            let e = expect.clone();
            let wait = i % 2 == 0;
            tasks.push(tokio::spawn(trickled_upload(
                addr.clone(),
                format!("trickle/{round}/{i}"),
                seed,
                wait,
                e,
            )));
        }
        for task in tasks {
            if let Err(err) = task.await? {
                // Connection errors of a deliberately rude client are not server faults,
                // but are counted.
                errors += 1;
                if errors <= 3 {
                    report.figure(format!("client error (tolerated): {err:#}"));
                }
            }
        }
    }
    report.check(server.exited().is_none(), || "the server died".into());

    // Writes whose body completed must land, even when the client hung up; give the
    // server's run-to-completion a generous moment.
    let (absent, present, failures) = {
        let mut e = expect.lock().expect("expect");
        (
            std::mem::take(&mut e.absent),
            std::mem::take(&mut e.present),
            std::mem::take(&mut e.failures),
        )
    };
    report.failures.extend(failures);
    let after = settle(&http, &base, Duration::from_secs(30)).await?;
    check_idle(&mut report, &after, "after the storm");
    for (key, body) in &present {
        let began = Instant::now();
        loop {
            let response = http.get(format!("{base}{}", path(key))).send().await?;
            let status = response.status().as_u16();
            let got = response.bytes().await?;
            if status == 200 {
                report.check(got[..] == body[..], || {
                    format!("{key}: completed upload reads back different bytes")
                });
                break;
            }
            if began.elapsed() > Duration::from_secs(10) {
                report.failures.push(format!(
                    "{key}: completed upload ({} B) is not readable: {status}",
                    body.len()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for key in &absent {
        let response = http.get(format!("{base}{}", path(key))).send().await?;
        let status = response.status().as_u16();
        report.check(status == 404, || {
            format!("{key}: aborted upload is visible ({status})")
        });
    }
    let leftovers = temp_files(&data);
    report.check(leftovers.is_empty(), || {
        format!("temp files left: {leftovers:?}")
    });

    // No leaked permit: a max_concurrency burst of permit-holding operations is admitted
    // at once (a missing permit would make one wait past its queue timeout).
    let burst: Vec<_> = (0..MAX_CONCURRENCY)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}{}", path(&format!("slow/burst/{i}")));
            tokio::spawn(async move {
                http.put(url)
                    .body("x")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in burst {
        statuses.push(task.await?.ok());
    }
    report.check(statuses.iter().all(|s| *s == Some(200)), || {
        format!("a {MAX_CONCURRENCY}-wide burst after the storm got {statuses:?}")
    });
    let idle = settle(&http, &base, Duration::from_secs(30)).await?;
    check_idle(&mut report, &idle, "after the burst");
    report.figure(format!(
        "{rounds} rounds × ({MAX_CONCURRENCY} queued hang-ups behind held permits, {per_kind} each of aborted uploads, aborted downloads, slowloris headers, trickled uploads); {errors} client-side errors"
    ));
    report.figure(format!(
        "{} aborted uploads absent, {} completed trickled uploads readable, gauges idle, {MAX_CONCURRENCY}-wide burst admitted, no temp files",
        absent.len(),
        present.len()
    ));
    server.kill();
    Ok(report)
}
