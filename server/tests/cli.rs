//! The `strata-server` command line as operators and probes use it: `config`, `version`,
//! `run` with bad configuration, `healthcheck`, `down` (drain) and graceful SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strata-server");

fn strata(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("strata-server runs")
}

/// Writes a config file; access control is off (`auth: {enforce: false}`) in this suite.
fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("strata.yaml");
    std::fs::write(&path, format!("auth:\n  enforce: false\n{yaml}")).unwrap();
    path.display().to_string()
}

#[test]
fn config_prints_the_effective_configuration_with_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "service:\n  max_concurrency: 7\n");
    let out = strata(
        &["config", "--config", &file],
        &[("STRATA__SERVICE__QUEUE_DEPTH", "3")],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("max_concurrency: 7"), "{text}");
    assert!(text.contains("queue_depth: 3"), "{text}");
    // What `config` prints is itself a valid configuration.
    strata_server::config::Config::from_yaml_str(&text).unwrap();
}

#[test]
fn unknown_keys_fail_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "http:\n  max_request: 5\n");
    for command in ["run", "config"] {
        let out = strata(&[command, "--config", &file], &[]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("max_request"), "{err}");
        assert!(err.contains("strata.yaml"), "{err}");
    }
    let out = strata(&["config"], &[("STRATA__FAULTS__PANIC_PREFIX", "x/")]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("panic_prefix"));
}

#[test]
fn version_names_the_package_version() {
    let out = strata(&["version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("strata-server {}", env!("CARGO_PKG_VERSION"))
    );
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_server(config: &str) -> Server {
    let mut child = Command::new(BIN)
        .args(["run", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("strata-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Server { child, addr }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let res = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    })
}

#[test]
fn healthcheck_down_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let drain = dir.path().join("strata.down");
    let config = write_config(
        dir.path(),
        &format!(
            "http:\n  addr: 127.0.0.1:0\n  drain_file: {}\nstorage:\n  type: memory\n",
            drain.display()
        ),
    );
    let mut server = run_server(&config);
    assert_eq!(get(&server.addr, "/ready"), (200, "OK".to_owned()));

    // healthcheck probes the configured address; point it at the running server.
    let out = strata(
        &["healthcheck", "--config", &config],
        &[("STRATA__HTTP__ADDR", server.addr.as_str())],
    );
    assert!(out.status.success(), "{out:?}");

    // `down` marks the server as draining: readiness fails, liveness does not.
    let out = strata(&["down", "--config", &config], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(drain.exists());
    assert_eq!(
        get(&server.addr, "/ready"),
        (503, "Shutting down".to_owned())
    );
    assert_eq!(get(&server.addr, "/health").0, 200);

    // SIGTERM: graceful shutdown, exit status 0.
    let pid = server.child.id();
    assert_eq!(send_sigterm(pid), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    // With the server gone, healthcheck fails.
    let out = strata(
        &["healthcheck", "--config", &config],
        &[("STRATA__HTTP__ADDR", server.addr.as_str())],
    );
    assert!(!out.status.success());
}

/// Sends SIGTERM through the `kill` command (the workspace forbids `unsafe`).
fn send_sigterm(pid: u32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn root_names_the_server_its_version_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "http:\n  addr: 127.0.0.1:0\nstorage:\n  type: memory\n",
    );
    let server = run_server(&config);
    let (status, body) = get(&server.addr, "/");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["name"], "strata-server");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["metrics"], "/metrics");
    assert_eq!(doc["health"], "/health");
    assert_eq!(doc["api"], "/v1/objects/{usecase}/{scopes}/{key}");
    // Other unknown paths still answer an empty 404.
    assert_eq!(get(&server.addr, "/nope"), (404, String::new()));
}

#[test]
fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "http:\n  addr: 127.0.0.1:0\n  drain_file: {}\nstorage:\n  type: memory\n\
             logging:\n  level: debug\n",
            dir.path().join("strata.down").display()
        ),
    );
    // stderr is a pipe here, as under Kubernetes, systemd or `> file`.
    let mut child = Command::new(BIN)
        .args(["run", "--config", &config])
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("strata-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert_eq!(get(&addr, "/health").0, 200);
    assert_eq!(send_sigterm(child.id()), 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = String::from_utf8(out.stderr).unwrap();
    assert!(logs.contains("DEBUG"), "expected debug log lines:\n{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in logs written to a pipe:\n{logs:?}"
    );
}
