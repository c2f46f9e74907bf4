//! The rendered pod really drives the real server: the ConfigMap YAML starts
//! `strata-server run --config …` exactly as the container args say, `/health` and
//! `/ready` answer, and the preStop command (`strata-server down --config … --wait …`)
//! turns readiness off. Needs the `strata-server` binary (built by `cargo build
//! --workspace`, or named by `STRATA_SERVER_BIN`); skipped with a message without it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use strata_operator::render::config::CONFIG_KEY;
use strata_operator::render::{render, Capabilities, Workload};

fn server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_SERVER_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("strata-server");
    candidate.exists().then_some(candidate)
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_container(example: &str) -> (String, Container) {
    let rendered = render(&common::example(example), Capabilities::default()).unwrap();
    let yaml = rendered.config_map.data.unwrap()[CONFIG_KEY].clone();
    let pod = match rendered.workload {
        Workload::Deployment(d) => d.spec.unwrap().template.spec.unwrap(),
        Workload::StatefulSet(s) => s.spec.unwrap().template.spec.unwrap(),
    };
    (yaml, pod.containers[0].clone())
}

/// Replaces the in-pod config path with the test's file.
fn localise(args: &[String], config: &std::path::Path) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with("/etc/strata/") {
                config.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect()
}

#[test]
fn rendered_config_and_hooks_drive_the_real_server() {
    let Some(bin) = server_bin() else {
        eprintln!("SKIPPED: strata-server binary not built (cargo build --workspace, or set STRATA_SERVER_BIN)");
        return;
    };
    for example in ["memory", "faults-drill"] {
        let (yaml, container) = server_container(example);
        let dir = std::env::temp_dir().join(format!(
            "strata-op-contract-{}-{example}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("strata.yaml");
        std::fs::write(&config, &yaml).unwrap();
        let addr = free_port();
        // Only what differs between a pod and this test: the port and the drain file.
        let env = [
            ("STRATA__HTTP__ADDR", addr.to_string()),
            (
                "STRATA__HTTP__DRAIN_FILE",
                dir.join("down").display().to_string(),
            ),
        ];

        let command = container.command.clone().unwrap();
        assert_eq!(command, ["strata-server"]);
        let args = localise(&container.args.clone().unwrap(), &config);
        let _server = Server(
            Command::new(&bin)
                .args(&args)
                .envs(env.iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let live = container
            .liveness_probe
            .unwrap()
            .http_get
            .unwrap()
            .path
            .unwrap();
        let startup = container
            .startup_probe
            .unwrap()
            .http_get
            .unwrap()
            .path
            .unwrap();
        let ready = container
            .readiness_probe
            .unwrap()
            .http_get
            .unwrap()
            .path
            .unwrap();
        while status_of(addr, &startup) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "{example}: {startup} never answered 200"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(status_of(addr, &live), Some(200), "{example}: {live}");
        assert_eq!(
            status_of(addr, &ready),
            Some(200),
            "{example}: ready before draining"
        );

        let pre_stop = container
            .lifecycle
            .unwrap()
            .pre_stop
            .unwrap()
            .exec
            .unwrap()
            .command
            .unwrap();
        assert_eq!(pre_stop[0], "strata-server");
        let mut hook = localise(&pre_stop[1..], &config);
        // keep the test fast: the hook's --wait is the drain delay
        if let Some(i) = hook.iter().position(|a| a == "--wait") {
            hook[i + 1] = "10ms".into();
        }
        let out = Command::new(&bin)
            .args(&hook)
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: preStop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            status_of(addr, &ready),
            Some(503),
            "{example}: readiness after preStop"
        );
        assert_eq!(
            status_of(addr, &live),
            Some(200),
            "{example}: still live while draining"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
