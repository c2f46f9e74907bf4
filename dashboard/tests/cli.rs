//! The `strata-dashboard` binary as a container runs it: plain-text logs when stdout is
//! not a terminal, and a clean exit on SIGTERM (as PID 1 nothing else would stop it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Dashboard(Child);

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the dashboard with its output on a pipe; returns it with the lines it printed
/// up to and including its "started" log line.
fn start() -> (Dashboard, Vec<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_strata-dashboard"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--target",
            "local=http://127.0.0.1:9",
        ])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dashboard = Dashboard(child);
    let mut reader = BufReader::new(dashboard.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "dashboard exited early; printed {lines:?}");
        let started = line.contains("strata-dashboard started");
        lines.push(line);
        if started {
            break;
        }
        assert!(lines.len() < 50, "no start-up log line in {lines:?}");
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (dashboard, lines)
}

#[test]
fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    let (_dashboard, lines) = start();
    let log = lines.last().unwrap();
    assert!(log.contains("INFO"), "{log:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "ANSI escape codes: {line:?}");
    }
}

#[test]
fn sigterm_stops_it_cleanly() {
    let (mut dashboard, _) = start();
    let status = Command::new("kill")
        .args(["-TERM", &dashboard.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = dashboard.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
