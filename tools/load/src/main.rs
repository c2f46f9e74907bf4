//! `strata-load`: a load generator for objectstore v1 compatible servers.
//!
//! ```text
//! strata-load --url http://127.0.0.1:8888 --usecase attachments --scope org=1 \
//!     --op put|get|mixed --size 4096 --keys 1000 --concurrency 32 --duration 10s \
//!     [--new-connection] [--warmup 2s] [--read-percent 50] [--target-path /health] \
//!     [--token JWT] [--json]
//! ```
//!
//! Each of `--concurrency` workers keeps one HTTP/1.1 request in flight (over one
//! keep-alive connection, or a fresh TCP connection per request with `--new-connection`).
//! `--op get` and `--op mixed` first write every key once. The report lists requests,
//! req/s, MiB/s, counts per status code and p50/p99/p999/max latency from an HdrHistogram.
//! `--target-path /health` GETs that path instead, to measure the bare HTTP ceiling.
//! `--json` prints the same report as one JSON object.
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
    match runtime.block_on(run(&args)) {
        Ok((info, stats)) => {
            if args.json {
                println!("{}", report::render_json(&info, &stats));
            } else {
                print!("{}", report::render(&info, &stats));
            }
            if stats.successes() > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("strata-load: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the target, writes the keys GETs need, runs the workers for warm-up plus
/// duration, and returns the merged measurements.
async fn run(args: &Args) -> Result<(RunInfo, Stats), String> {
    let target = args::parse_target(&args.url)?;
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|err| format!("cannot resolve {}: {err}", target.authority))?
        .find(|addr| addr.ip().is_loopback())
        .ok_or_else(|| format!("{} does not resolve to a loopback address", target.host))?;
    let plan = Arc::new(Plan::new(args, &target, addr)?);

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
    Ok((info, stats))
}

#[cfg(test)]
mod tests {
    //! End to end against an in-process strata-server (memory backend).

    use super::*;
    use crate::report::Outcome;
    use strata_server::config::{Config, StorageConfig};

    async fn server() -> (strata_server::app::RunningServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            auth: strata_server::auth::AuthConfig::disabled(),
            ..Config::default()
        };
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.http.drain_file = dir.path().join("down");
        config.storage = StorageConfig::Memory {};
        let running = strata_server::app::start(config)
            .await
            .expect("server starts");
        (running, dir)
    }

    fn args(url: &str, extra: &[&str]) -> Args {
        let mut argv = vec!["strata-load", "--url", url, "--duration", "300ms"];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).expect("arguments parse");
        args.validate().expect("arguments valid");
        args
    }

    fn only_ok(stats: &Stats, code: u16) -> u64 {
        assert_eq!(
            stats.outcomes.keys().copied().collect::<Vec<_>>(),
            vec![Outcome::Status(code)],
            "{:?}",
            stats.outcomes
        );
        stats.requests()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drives_a_real_server() {
        let (running, _dir) = server().await;
        let url = format!("http://{}", running.addr());

        let put = args(
            &url,
            &[
                "--op",
                "put",
                "--size",
                "1KiB",
                "--keys",
                "20",
                "--concurrency",
                "4",
                "--scope",
                "org=1",
            ],
        );
        let (info, stats) = run(&put).await.expect("put run");
        let n = only_ok(&stats, 200);
        assert!(n > 0);
        assert_eq!(stats.bytes_sent, n * 1024);
        assert!(
            info.description.starts_with("PUT http://"),
            "{}",
            info.description
        );

        let get = args(
            &url,
            &[
                "--op",
                "get",
                "--size",
                "2048",
                "--keys",
                "10",
                "--concurrency",
                "2",
                "--warmup",
                "100ms",
            ],
        );
        let (_, stats) = run(&get).await.expect("get run");
        let n = only_ok(&stats, 200);
        assert_eq!(stats.bytes_received, n * 2048);
        assert_eq!(stats.bytes_sent, 0);

        let mixed = args(
            &url,
            &[
                "--op",
                "mixed",
                "--read-percent",
                "50",
                "--keys",
                "5",
                "--concurrency",
                "2",
                "--new-connection",
            ],
        );
        let (info, stats) = run(&mixed).await.expect("mixed run");
        only_ok(&stats, 200);
        assert!(stats.bytes_sent > 0 && stats.bytes_received > 0);
        assert!(info.new_connection);

        let health = args(
            &url,
            &[
                "--target-path",
                "/health",
                "--concurrency",
                "2",
                "--token",
                "t0k3n",
                "--json",
            ],
        );
        let (info, stats) = run(&health).await.expect("health run");
        let n = only_ok(&stats, 200);
        assert_eq!(stats.bytes_received, n * 2, "`OK` per request");
        assert!(
            info.description.ends_with("/health"),
            "{}",
            info.description
        );

        let missing = args(
            &url,
            &["--target-path", "/no-such-route", "--concurrency", "1"],
        );
        let (_, stats) = run(&missing).await.expect("404 run");
        assert_eq!(stats.successes(), 0);
        only_ok(&stats, 404);

        running.shutdown().await;
    }

    #[tokio::test]
    async fn refuses_unreachable_and_remote_targets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let closed = args(&format!("http://127.0.0.1:{port}"), &["--timeout", "2s"]);
        assert!(run(&closed).await.is_err());
        let remote = args("http://192.0.2.1:80", &[]);
        assert!(run(&remote).await.unwrap_err().contains("loopback"));
    }
}
