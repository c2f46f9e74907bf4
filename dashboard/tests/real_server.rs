//! Against a real `strata-server` process with fault injection: panics on `panic/` keys
//! and 429s from saturating `slow/` keys appear on the dashboard; a killed server shows
//! as unreachable.
//!
//! The server binary is `STRATA_SERVER_BIN` (exported by `scripts/test.sh`), else the
//! `strata-server` beside this test's target directory (`cargo build -p strata-server`);
//! without either the test says SKIPPED and returns.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, fast_settings, get, strip_tags, wait_for_text};
use strata_dashboard::collector::Source;

/// The `strata-server` binary: `STRATA_SERVER_BIN` if set (it must exist), else the one
/// in the workspace target directory, if built.
fn server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_SERVER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "STRATA_SERVER_BIN={} does not exist",
            p.display()
        );
        return Some(p);
    }
    // target/<profile>/deps/real_server-HASH -> target/<profile>/strata-server
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("strata-server");
    candidate.exists().then_some(candidate)
}

/// A `strata-server run` child on a free port; killed and reaped on drop.
struct ServerProcess {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the server and waits until it has printed its address and `/ready` is 200.
    async fn start(bin: &Path, dir: &Path) -> Self {
        let config = dir.join("strata.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
http:
  addr: "127.0.0.1:0"
  drain_file: "{}/strata.down"
service:
  max_concurrency: 1
  queue_depth: 0
storage:
  type: memory
auth:
  enforce: false
faults:
  panic_key_prefix: "panic/"
  delay_key_prefix: "slow/"
  delay: 1s
logging:
  level: warn
"#,
                dir.display()
            ),
        )
        .expect("write config");
        let log = dir.join("strata-server.log");
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
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("spawn strata-server");
        // Read stdout to the end (so the pipe never fills); the first address line wins.
        let stdout = child.stdout.take().expect("piped stdout");
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
        let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap();
        let mut server = Self {
            child,
            addr: String::new(),
            log,
        };
        match addr {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!(
                "strata-server did not print its address; log:\n{}",
                server.log_text()
            ),
        }
        let ready = format!("{}/ready", server.url());
        eventually("strata-server /ready", Duration::from_secs(30), || async {
            match reqwest::get(&ready).await {
                Ok(r) if r.status().as_u16() == 200 => Ok(()),
                Ok(r) => Err(format!("/ready answered {}", r.status())),
                Err(e) => Err(format!("/ready: {e}; log:\n{}", server.log_text())),
            }
        })
        .await;
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (SIGKILL) and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parses `… listening on http://ADDR …`.
fn listening_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!addr.is_empty()).then_some(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panics_rejections_and_shutdown_of_a_real_server() {
    let Some(bin) = server_bin() else {
        eprintln!(
            "SKIPPED: strata-server binary not built (cargo build -p strata-server, or set STRATA_SERVER_BIN)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&bin, tmp.path()).await;
    let server_url = server.url();
    let dash = strata_dashboard::start(
        fast_settings(),
        Source::Static(vec![format!("real={server_url}").parse().unwrap()]),
    )
    .await
    .unwrap();
    let base = format!("http://{}", dash.addr());
    wait_for_text(
        &format!("{base}/fragments/overview"),
        "1 / 1 reachable",
        Duration::from_secs(15),
    )
    .await;

    // Healthy traffic first: an object in, the same object out.
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{server_url}/v1/objects/demo/_/normal/a"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "PUT: {}", put.status());

    // Injected panics: each request answers 500 and counts one panic of operation `get`.
    for i in 0..3 {
        let r = http
            .get(format!("{server_url}/v1/objects/demo/_/panic/x{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500);
    }
    let text = eventually(
        "3 panics on the overview",
        Duration::from_secs(15),
        || async {
            let (status, body) = get(&format!("{base}/fragments/overview")).await;
            assert_eq!(status, 200);
            if body.contains(r#"<span class="panics-5m">3</span>"#) {
                Ok(strip_tags(&body))
            } else {
                Err(strip_tags(&body))
            }
        },
    )
    .await;
    assert!(text.contains("CRIT: FIRING"), "{text}");
    assert!(text.contains("PANIC"), "{text}");
    assert!(text.contains("operation get"), "{text}");
    assert!(text.contains("3 panics"), "{text}");

    // Saturation: max_concurrency 1, slow keys hold the permit for 1 s, the rest get 429.
    let mut rejected = 0;
    for _round in 0..2 {
        let burst: Vec<_> = (0..8)
            .map(|j| {
                let http = http.clone();
                let url = format!("{server_url}/v1/objects/demo/_/slow/k{j}");
                tokio::spawn(async move { http.get(url).send().await.map(|r| r.status().as_u16()) })
            })
            .collect();
        for h in burst {
            if let Ok(Ok(429)) = h.await {
                rejected += 1;
            }
        }
    }
    assert!(
        rejected > 0,
        "the server rejected nothing; saturation did not happen"
    );
    let text = eventually("non-zero 429 rate", Duration::from_secs(15), || async {
        let (_, body) = get(&format!("{base}/fragments/overview")).await;
        let zero = body.contains(r#"data-label="429/s" class="num">0/s<"#)
            || body.contains(r#"data-label="429/s" class="num">—<"#);
        if zero {
            Err(strip_tags(&body))
        } else {
            Ok(strip_tags(&body))
        }
    })
    .await;
    assert!(
        text.contains("rejecting") || text.contains("panic"),
        "{text}"
    );
    let (_, svc) = get(&format!("{base}/services/local/real")).await;
    let svc = strip_tags(&svc);
    assert!(svc.contains("panics since start: get 3"), "{svc}");

    // Kill the server: the dashboard keeps serving and says since when it is unreachable.
    server.kill();
    let text = eventually("unreachable", Duration::from_secs(15), || async {
        let (status, body) = get(&format!("{base}/")).await;
        assert_eq!(status, 200);
        let text = strip_tags(&body);
        if text.contains("unreachable since") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(text.contains("UNREACHABLE"), "{text}");
    dash.shutdown().await;
}
