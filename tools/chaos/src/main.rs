//! `strata-chaos`: black-box fault harnesses against the `strata-server` binary.
//!
//! Each mode starts the server itself (port 0, filesystem backend, access control off),
//! hurts it in one way and checks invariants, not timings. The short default runs in
//! seconds (CI); `--long` is the soak documented in RELIABILITY.md. Exit code 0 only when
//! every invariant held.

mod crash;
mod disconnect;
mod journal;
mod metrics;
mod overload;
mod panic_storm;
mod payload;
mod raw;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

/// Which harness to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// SIGKILL during concurrent PUT/overwrite/DELETE, restart, verify every acknowledged write.
    Crash,
    /// 10× max_concurrency slow uploads: only 2xx/429/503, exact rejection counters, bounded RSS.
    Overload,
    /// Thousands of injected panics amid normal traffic: no deaths, exact panic counter.
    PanicStorm,
    /// Aborted uploads/downloads and trickled headers/bodies: no leaked permits, gauges or temp files.
    Disconnect,
    /// Every mode, one after another.
    All,
}

/// Black-box fault harnesses for strata-server.
#[derive(Debug, Parser)]
#[command(name = "strata-chaos", version)]
struct Args {
    /// The harness to run.
    #[arg(value_enum)]
    mode: Mode,
    /// The soak variant (minutes instead of seconds; crash runs 100 kill cycles).
    #[arg(long)]
    long: bool,
    /// Seed of every random choice (sizes, keys, operations, kill points).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server binary; default `$CARGO_TARGET_DIR/debug/strata-server` (or `target/`).
    #[arg(long, env = "STRATA_SERVER_BIN")]
    server_bin: Option<PathBuf>,
    /// Keep data directories and server logs here instead of a removed temp dir.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// What one mode found.
#[derive(Debug, Default)]
pub struct Report {
    /// Figures worth printing (counts, bytes).
    pub figures: Vec<String>,
    /// Broken invariants; empty means the mode passed.
    pub failures: Vec<String>,
}

impl Report {
    /// Records a figure.
    pub fn figure(&mut self, text: impl Into<String>) {
        self.figures.push(text.into());
    }

    /// Records a failure unless `ok`.
    pub fn check(&mut self, ok: bool, text: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(text());
        }
    }
}

/// What every mode needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The server binary.
    pub bin: PathBuf,
    /// A directory of this mode's own (configs, logs, data).
    pub work: PathBuf,
    /// Seed of every random choice.
    pub seed: u64,
    /// Soak instead of the short run.
    pub long: bool,
}

impl Ctx {
    /// An HTTP client with a generous overall timeout (a hang is a failure, not a wait).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client")
    }
}

fn default_server_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("debug").join("strata-server")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bin = args.server_bin.clone().unwrap_or_else(default_server_bin);
    if !bin.is_file() {
        eprintln!(
            "strata-chaos: server binary {} not found (build it with `cargo build -p strata-server --bins`, or pass --server-bin)",
            bin.display()
        );
        return ExitCode::from(2);
    }
    let temp = match &args.work_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("strata-chaos-")
                .tempdir()
                .expect("temp dir"),
        ),
    };
    let root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
    let modes = match args.mode {
        Mode::All => vec![
            Mode::Crash,
            Mode::Overload,
            Mode::PanicStorm,
            Mode::Disconnect,
        ],
        one => vec![one],
    };
    println!(
        "strata-chaos: {} run, seed {}, server {}",
        if args.long { "long" } else { "short" },
        args.seed,
        bin.display()
    );
    let mut failed = 0;
    for mode in modes {
        let name = mode
            .to_possible_value()
            .expect("named")
            .get_name()
            .to_owned();
        let work = root.join(&name);
        std::fs::create_dir_all(&work).expect("work dir");
        let ctx = Ctx {
            bin: bin.clone(),
            work,
            seed: args.seed,
            long: args.long,
        };
        let began = Instant::now();
        let report = match mode {
            Mode::Crash => crash::run(&ctx).await,
            Mode::Overload => overload::run(&ctx).await,
            Mode::PanicStorm => panic_storm::run(&ctx).await,
            Mode::Disconnect => disconnect::run(&ctx).await,
            Mode::All => unreachable!("expanded above"),
        };
        let report = report.unwrap_or_else(|err| Report {
            figures: Vec::new(),
            failures: vec![format!("harness error: {err:#}")],
        });
        let verdict = if report.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "== {name}: {verdict} in {:.1}s",
            began.elapsed().as_secs_f64()
        );
        for figure in &report.figures {
            println!("   {figure}");
        }
        for failure in &report.failures {
            println!("   FAILED: {failure}");
        }
        if !report.failures.is_empty() {
            failed += 1;
        }
    }
    if failed == 0 {
        println!("strata-chaos: every invariant held");
        ExitCode::SUCCESS
    } else {
        println!(
            "strata-chaos: {failed} mode(s) failed (work dir {})",
            root.display()
        );
        if let Some(temp) = temp {
            // Keep the evidence (logs, data) of a failed run.
            let _ = temp.keep();
        }
        ExitCode::FAILURE
    }
}
