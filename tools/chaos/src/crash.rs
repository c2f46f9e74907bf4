//! Crash mode: concurrent PUT, overwrite and DELETE of self-checking payloads (log-sized
//! records and large files, across the filesystem backend's 64 KiB threshold), SIGKILL at
//! a seeded random point, restart on the same data directory, then every key must hold a
//! possibly-current outcome (see [`crate::journal`]), whole, and no temp file may remain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::journal::{judge, Effect, Observed, Op, Verdict};
use crate::server::{temp_files, Server, ServerSpec};
use crate::{payload, Ctx, Report};

const WRITERS: u64 = 8;
/// Objects up to this size live in the server's log, larger ones in files of their own.
const SMALL_OBJECT: usize = 64 * 1024;
/// Most bytes of one payload.
const MAX_LARGE: usize = 2_500_000;
/// Acknowledgements to wait for in a cycle before the kill may come.
const MIN_ACKS: u64 = 20;
/// Upper bound on a cycle's writing phase.
const WRITE_PHASE_LIMIT: Duration = Duration::from_secs(60);

/// A payload size: half log records, the rest around and above the file threshold.
fn size(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0..=4 => rng.random_range(payload::CHECKSUM..2048),
        5 => rng.random_range(2048..=SMALL_OBJECT),
        6 => *[SMALL_OBJECT, SMALL_OBJECT + 1]
            .get(rng.random_range(0..2))
            .unwrap_or(&SMALL_OBJECT),
        _ => rng.random_range(SMALL_OBJECT + 1..=MAX_LARGE),
    }
}

fn url(base: &str, key: &str) -> String {
    format!("{base}/v1/objects/chaos/org=1/{key}")
}

#[derive(Default)]
struct Journal {
    ops: Mutex<HashMap<String, Vec<Op>>>,
    acks: AtomicU64,
    large_in_flight: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

impl Journal {
    fn start(&self, key: &str, effect: Effect) -> usize {
        let mut ops = self.ops.lock().expect("journal");
        let list = ops.get_mut(key).expect("key has a baseline");
        list.push(Op {
            effect,
            started: Instant::now(),
            acked: None,
        });
        list.len() - 1
    }

    fn ack(&self, key: &str, index: usize) {
        self.ops.lock().expect("journal").get_mut(key).expect("key")[index].acked =
            Some(Instant::now());
        self.acks.fetch_add(1, Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
async fn writer(
    http: reqwest::Client,
    base: Arc<String>,
    journal: Arc<Journal>,
    keys: Arc<Vec<String>>,
    killing: Arc<AtomicBool>,
    seed: u64,
    cycle: u64,
    id: u64,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed ^ (cycle << 20) ^ (id << 8) ^ 0xC4A5);
    let mut sent = 0u64;
    while !killing.load(Ordering::SeqCst) {
        let key = &keys[rng.random_range(0..keys.len())];
        sent += 1;
        let delete = rng.random_bool(0.2);
        let result = if delete {
            let index = journal.start(key, Effect::Delete);
            (index, http.delete(url(&base, key)).send().await, 0)
        } else {
            let len = size(&mut rng);
            let body = payload::make(rng.random(), len);
            let digest = payload::verify(&body).expect("fresh payload verifies");
            let index = journal.start(key, Effect::Put(digest));
            let large = len > SMALL_OBJECT;
            if large {
                journal.large_in_flight.fetch_add(1, Ordering::SeqCst);
            }
            let result = http
                .put(url(&base, key))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await;
            if large {
                journal.large_in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            (index, result, len)
        };
        match result {
            (index, Ok(response), _) if response.status().is_success() => journal.ack(key, index),
            (_, Ok(response), len) => {
                if !killing.load(Ordering::SeqCst) {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let op = if delete {
                        "DELETE".to_owned()
                    } else {
                        format!("PUT ({len} B)")
                    };
                    journal
                        .unexpected
                        .lock()
                        .expect("unexpected")
                        .push(format!("{op} {key} before the kill: {status} {text}"));
                }
            }
            (_, Err(err), _) => {
                if killing.load(Ordering::SeqCst) {
                    break;
                }
                journal
                    .unexpected
                    .lock()
                    .expect("unexpected")
                    .push(format!("{key} before the kill: {err}"));
            }
        }
    }
    sent
}

/// Runs the crash cycles; see the module documentation.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let cycles = if ctx.long { 100 } else { 3 };
    let key_count = if ctx.long { 200 } else { 48 };
    let mut rng = StdRng::seed_from_u64(ctx.seed);
    let data = ctx.work.join("data");
    let spec = ServerSpec::new(data.clone());
    let http = ctx.client();
    let keys: Arc<Vec<String>> = Arc::new((0..key_count).map(|i| format!("k{i}")).collect());
    let journal = Arc::new(Journal::default());
    let t0 = Instant::now();
    for key in keys.iter() {
        journal
            .ops
            .lock()
            .expect("journal")
            .insert(key.clone(), vec![Op::baseline(Effect::Delete, t0)]);
    }
    let mut report = Report::default();
    let (mut sent_total, mut acked_total, mut temps_at_kill) = (0u64, 0u64, 0usize);
    let (mut keys_checked, mut present_acked, mut present_unacked, mut absent, mut bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut server = Server::start(&ctx.bin, &ctx.work, &spec, "crash-0")?;
    for cycle in 0..cycles {
        let base = Arc::new(server.base());
        let killing = Arc::new(AtomicBool::new(false));
        journal.acks.store(0, Ordering::SeqCst);
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    http.clone(),
                    base.clone(),
                    journal.clone(),
                    keys.clone(),
                    killing.clone(),
                    ctx.seed,
                    cycle,
                    id,
                ))
            })
            .collect();
        // Kill at a seeded moment once enough writes were acknowledged, preferably with a
        // large write mid-stream.
        let kill_after = Duration::from_millis(rng.random_range(200..1500));
        let began = Instant::now();
        loop {
            let acks = journal.acks.load(Ordering::SeqCst);
            let large = journal.large_in_flight.load(Ordering::SeqCst);
            let elapsed = began.elapsed();
            if acks >= MIN_ACKS && elapsed >= kill_after && (large > 0 || elapsed >= kill_after * 2)
            {
                break;
            }
            if elapsed > WRITE_PHASE_LIMIT {
                report.failures.push(format!(
                    "cycle {cycle}: only {acks} writes acknowledged in {WRITE_PHASE_LIMIT:?}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        killing.store(true, Ordering::SeqCst);
        server.kill();
        for task in writers {
            sent_total += tokio::time::timeout(Duration::from_secs(120), task).await??;
        }
        acked_total += journal.acks.load(Ordering::SeqCst);
        temps_at_kill += temp_files(&data).len();
        let unexpected = std::mem::take(&mut *journal.unexpected.lock().expect("unexpected"));
        for problem in unexpected {
            report.failures.push(format!("cycle {cycle}: {problem}"));
        }

        server = Server::start(&ctx.bin, &ctx.work, &spec, &format!("crash-{}", cycle + 1))?;
        let leftovers = temp_files(&data);
        report.check(leftovers.is_empty(), || {
            format!("cycle {cycle}: temp files survived recovery: {leftovers:?}")
        });
        let base = server.base();
        let verified_at = Instant::now();
        let mut ops = journal.ops.lock().expect("journal").clone();
        for (key, list) in ops.iter_mut() {
            let response = http.get(url(&base, key)).send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            let observed = match status {
                200 => payload::verify(&body).map_or(Observed::Torn, Observed::Present),
                404 => Observed::Absent,
                other => Observed::Status(other),
            };
            keys_checked += 1;
            match judge(list, observed) {
                Ok(verdict) => {
                    match (verdict, observed) {
                        (Verdict::Acknowledged, Observed::Absent)
                        | (Verdict::Unacknowledged, Observed::Absent) => absent += 1,
                        (Verdict::Acknowledged, _) => present_acked += 1,
                        (Verdict::Unacknowledged, _) => present_unacked += 1,
                    }
                    bytes += body.len() as u64;
                    // What was read is the new baseline: the killed server's in-flight
                    // writes can no longer land.
                    let effect = match observed {
                        Observed::Present(digest) => Effect::Put(digest),
                        _ => Effect::Delete,
                    };
                    *list = vec![Op::baseline(effect, verified_at)];
                }
                Err(problem) => {
                    report.failures.push(format!(
                        "cycle {cycle}: {key} ({} ops): {problem}",
                        list.len()
                    ));
                    *list = vec![Op::baseline(Effect::Delete, verified_at)];
                    // Start the key afresh so later cycles stay judgeable.
                    let _ = http.delete(url(&base, key)).send().await;
                }
            }
        }
        *journal.ops.lock().expect("journal") = ops;
        if !report.failures.is_empty() {
            report.figure(format!("stopped after cycle {cycle} of {cycles}"));
            break;
        }
    }
    // The last restart takes writes normally.
    let base = server.base();
    let fresh = payload::make(ctx.seed, 100_000);
    let put = http
        .put(url(&base, "after-restart"))
        .body(fresh.clone())
        .send()
        .await?;
    report.check(put.status().is_success(), || {
        format!("PUT after the last restart answered {}", put.status())
    });
    let got = http
        .get(url(&base, "after-restart"))
        .send()
        .await?
        .bytes()
        .await?;
    report.check(got[..] == fresh[..], || {
        "GET after the last restart differs".into()
    });
    report.figure(format!(
        "{cycles} SIGKILL cycles, {key_count} keys, {WRITERS} writers: {sent_total} operations sent, {acked_total} acknowledged"
    ));
    report.figure(format!(
        "verified {keys_checked} key reads: {present_acked} held the newest acknowledged payload, {present_unacked} a complete in-flight one, {absent} absent as allowed; {:.1} MiB compared",
        bytes as f64 / (1 << 20) as f64
    ));
    report.figure(format!(
        "{temps_at_kill} temp files right after the kills, none after recovery"
    ));
    Ok(report)
}
