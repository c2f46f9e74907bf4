//! `strata-load`: a load generator for objectstore v1 compatible servers.
//!
//! ```text
//! strata-load --url http://127.0.0.1:8888 --usecase attachments --scope org=1 \
//!     --op put|get|mixed --size 4096 --keys 1000 --concurrency 32 --duration 10s \
//!     [--new-connection] [--warmup 2s] [--read-percent 50] [--target-path /health]
//! ```
//!
//! Each of `--concurrency` workers keeps one HTTP/1.1 request in flight (over one
//! keep-alive connection, or a fresh TCP connection per request with `--new-connection`).
//! `--op get` and `--op mixed` first write every key once. The report lists requests,
//! req/s, MiB/s, counts per status code and p50/p99/p999/max latency from an HdrHistogram.
//! `--target-path /health` GETs that path instead, to measure the bare HTTP ceiling.
//! Only loopback targets are accepted. The exit status is 1 when no request succeeded.

mod args;
mod driver;
mod report;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use tokio::time::Instant;

use crate::args::{Args, Op};
use crate::driver::Plan;
use crate::report::{RunInfo, Stats};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.validate() {
        eprintln!("strata-load: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata-load: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("strata-load: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let target = args::parse_target(&args.url)?;
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| format!("cannot resolve {}: {err}", target.authority))?
        .find(|addr| addr.ip().is_loopback())
        .ok_or_else(|| format!("{} does not resolve to a loopback address", target.host))?;
    let plan = Arc::new(Plan::new(&args, &target, addr)?);

    driver::probe(&plan).await?;
    if plan.fixed_path.is_none() && matches!(args.op, Op::Get | Op::Mixed) {
        eprintln!("strata-load: writing {} keys before the run", args.keys);
        let failed = driver::populate(plan.clone(), args.concurrency).await;
        if failed > 0 {
            return Err(format!(
                "{failed} of {} keys could not be written before the run",
                args.keys
            ));
        }
    }

    let start = Instant::now();
    let record_from = start + args.warmup;
    let end = record_from + args.duration;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let seed = 0xA5A5_0000_0000_0001 ^ ((i as u64 + 1) << 20);
            tokio::spawn(driver::worker(plan.clone(), seed, record_from, end))
        })
        .collect();
    let mut stats = Stats::new();
    for task in tasks {
        match task.await {
            Ok(worker_stats) => stats.merge(&worker_stats),
            Err(err) => return Err(format!("a worker failed: {err}")),
        }
    }
    let elapsed = Instant::now().saturating_duration_since(record_from);

    let info = RunInfo {
        description: plan.describe(),
        concurrency: args.concurrency,
        new_connection: args.new_connection,
        warmup: args.warmup,
        elapsed,
    };
    print!("{}", report::render(&info, &stats));
    Ok(if stats.successes() > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
