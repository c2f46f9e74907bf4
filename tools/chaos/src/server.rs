//! The server under test as a child process: a port-0 config, the listening address read
//! from its stdout, SIGKILL, liveness and resident memory from `/proc`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// How long a start may take (recovery of a large data directory included).
const STARTUP_LIMIT: Duration = Duration::from_secs(120);

/// Settings a mode chooses for its server; everything else keeps the server's defaults.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Filesystem backend root.
    pub data: PathBuf,
    /// `service.max_concurrency`.
    pub max_concurrency: usize,
    /// `service.queue_depth`.
    pub queue_depth: usize,
    /// `service.queue_timeout` in milliseconds.
    pub queue_timeout_ms: u64,
    /// `http.max_requests`.
    pub max_requests: usize,
    /// `faults.panic_key_prefix`.
    pub panic_prefix: Option<String>,
    /// `faults.delay_key_prefix` with its delay in milliseconds.
    pub delay: Option<(String, u64)>,
}

impl ServerSpec {
    /// Defaults matching `config/local.yaml` (without auth) on `data`.
    pub fn new(data: PathBuf) -> Self {
        Self {
            data,
            max_concurrency: 500,
            queue_depth: 0,
            queue_timeout_ms: 1000,
            max_requests: 10_000,
            panic_prefix: None,
            delay: None,
        }
    }

    /// The YAML config for this spec; `drain_file` lives in `work`.
    pub fn yaml(&self, work: &Path) -> String {
        let mut yaml = format!(
            "http:\n  addr: \"127.0.0.1:0\"\n  max_requests: {}\n  drain_file: \"{}\"\n\
             service:\n  max_concurrency: {}\n  queue_depth: {}\n  queue_timeout: {}ms\n\
             storage:\n  type: filesystem\n  path: \"{}\"\n\
             logging:\n  level: warn\n  format: text\n\
             auth:\n  enforce: false\n",
            self.max_requests,
            work.join("strata.down").display(),
            self.max_concurrency,
            self.queue_depth,
            self.queue_timeout_ms,
            self.data.display(),
        );
        if self.panic_prefix.is_some() || self.delay.is_some() {
            yaml.push_str("faults:\n");
            if let Some(prefix) = &self.panic_prefix {
                yaml.push_str(&format!("  panic_key_prefix: \"{prefix}\"\n"));
            }
            if let Some((prefix, ms)) = &self.delay {
                yaml.push_str(&format!(
                    "  delay_key_prefix: \"{prefix}\"\n  delay: {ms}ms\n"
                ));
            }
        }
        yaml
    }
}

/// A running `strata-server run`; SIGKILLed on drop.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts `bin` with `spec` (config and log files named `name` under `work`) and
    /// waits for its listening line.
    pub fn start(bin: &Path, work: &Path, spec: &ServerSpec, name: &str) -> anyhow::Result<Self> {
        let config = work.join(format!("{name}.yaml"));
        std::fs::write(&config, spec.yaml(work)).context("write config")?;
        let log = work.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).context("create log")?;
        let mut command = Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("STRATA__") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        match rx.recv_timeout(STARTUP_LIMIT) {
            Ok(addr) => Ok(Self { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("strata-server did not print its address; log:\n{text}")
            }
        }
    }

    /// Base URL, `http://host:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id (for `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL (what `Child::kill` sends on unix: no shutdown hook, no flush) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of the server's stderr log, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses `… listening on http://ADDR …`.
pub fn listening_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!addr.is_empty()).then_some(addr)
}

/// Resident set size in bytes from a `/proc/<pid>/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        _ => None,
    }
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Files under `root` that are temp files of an unfinished write (`*.tmp`, `*.partial*`
/// or anything under `<root>/tmp`).
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = entry.file_name().to_string_lossy().to_lowercase();
                if name.ends_with(".tmp")
                    || name.contains(".partial")
                    || path.starts_with(root.join("tmp"))
                {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(
            listening_addr("strata-server listening on http://127.0.0.1:4321").as_deref(),
            Some("127.0.0.1:4321")
        );
        assert_eq!(listening_addr("storage: filesystem"), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tstrata-server\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads: 4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn config_names_faults_only_when_set() {
        let mut spec = ServerSpec::new(PathBuf::from("/d"));
        assert!(!spec.yaml(Path::new("/w")).contains("faults"));
        spec.panic_prefix = Some("panic/".into());
        spec.delay = Some(("slow/".into(), 250));
        let yaml = spec.yaml(Path::new("/w"));
        assert!(yaml.contains("panic_key_prefix: \"panic/\""), "{yaml}");
        assert!(yaml.contains("delay: 250ms"), "{yaml}");
        assert!(yaml.contains("enforce: false"), "{yaml}");
    }

    #[test]
    fn finds_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("objects/ab")).unwrap();
        std::fs::write(dir.path().join("objects/ab/x.tmp"), b"").unwrap();
        std::fs::write(dir.path().join("objects/ab/abcd"), b"").unwrap();
        assert_eq!(temp_files(dir.path()).len(), 1);
    }
}
