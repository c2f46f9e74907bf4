//! Stateless servers on shared storage, end to end with the real binary: two
//! `strata-server` processes on one Bigtable emulator and one S3 server (`moto_server`)
//! share one keyspace, below and above the tier threshold; start-up fails with a message
//! naming an unreachable backend, a missing bucket or a missing table; an outage later
//! turns into 503 JSON and a failing `/ready`; the S3 secret never appears in logs,
//! error bodies or `/metrics`.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{Service, ACCESS_KEY, SECRET_KEY};

const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// A `strata-server run` child whose stdout and stderr both go to `log`.
struct ServerProcess {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start attempt ended.
enum Started {
    Running(ServerProcess),
    /// The process exited; its combined output.
    Exited(String),
}

fn start(work: &Path, name: &str, storage_yaml: &str) -> Started {
    let config = work.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "http:\n  addr: 127.0.0.1:0\n  drain_file: {}\n{storage_yaml}logging:\n  level: debug\n",
            work.join(format!("{name}.down")).display(),
        ),
    )
    .unwrap();
    let log = work.join(format!("{name}.log"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA__") || key.starts_with("AWS_") || key == "BIGTABLE_EMULATOR_HOST"
        {
            command.env_remove(key);
        }
    }
    let mut child = command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn strata-server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout_log = work.join(format!("{name}.stdout"));
    std::thread::spawn(move || {
        let mut copy = String::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            copy.push_str(&line);
            copy.push('\n');
            let _ = std::fs::write(&stdout_log, &copy);
            if let Some(rest) = line.split("listening on http://").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Some(rest.trim().to_owned()));
                }
            }
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(None);
        }
    });
    match rx.recv_timeout(STARTUP_LIMIT) {
        Ok(Some(addr)) => Started::Running(ServerProcess { child, addr, log }),
        _ => {
            let status = child.wait().expect("server exits");
            assert!(!status.success(), "a failed start exits non-zero");
            Started::Exited(output_of(work, name))
        }
    }
}

fn output_of(work: &Path, name: &str) -> String {
    let read =
        |ext: &str| std::fs::read_to_string(work.join(format!("{name}.{ext}"))).unwrap_or_default();
    format!("{}{}", read("stdout"), read("log"))
}

fn running(started: Started) -> ServerProcess {
    match started {
        Started::Running(server) => server,
        Started::Exited(output) => panic!("server did not start:\n{output}"),
    }
}

fn tiered_yaml(bigtable: &str, s3: &str, bucket: &str, create_table: bool) -> String {
    let table = if create_table {
        "objects"
    } else {
        "never-created"
    };
    format!(
        "auth:\n  enforce: false\nstorage:\n  type: tiered\n  high_volume: {{type: bigtable, endpoint: '{bigtable}', project_id: test, instance_name: test, table_name: {table}, create_table: {create_table}}}\n  long_term: {{type: s3compatible, endpoint: 'http://{s3}', bucket: {bucket}}}\n"
    )
}

async fn services() -> (Service, Service) {
    let bigtable = support::bigtable_emulator().await;
    let s3 = support::s3_server("strata").await;
    (bigtable, s3)
}

fn url(server: &ServerProcess, key: &str) -> String {
    format!("http://{}/v1/objects/shared/org=1/{key}", server.addr)
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37) ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_keyspace_across_both_tiers() {
    let (bigtable, s3) = services().await;
    let work = tempfile::tempdir().unwrap();
    let yaml = tiered_yaml(&bigtable.addr, &s3.addr, "strata", true);
    let one = running(start(work.path(), "one", &yaml));
    let two = running(start(work.path(), "two", &yaml));
    let http = reqwest::Client::new();

    for (key, size) in [("small", 1000), ("large", 3 * 1024 * 1024 + 17)] {
        let body = noise(size, size as u8);
        let put = http
            .put(url(&one, key))
            .header("x-sn-expiration", "ttl:1h")
            .header("x-snme-writer", "one")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "put {key}: {}", put.status());

        let got = http.get(url(&two, key)).send().await.unwrap();
        assert_eq!(got.status(), 200, "{key} read through the other server");
        assert_eq!(got.headers()["x-snme-writer"], "one");
        assert!(got.bytes().await.unwrap() == body, "{key} payload");

        let head = http.head(url(&two, key)).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["x-sn-size"], size.to_string().as_str());
        let expires_before = head.headers()["x-sn-time-expires"]
            .to_str()
            .unwrap()
            .to_owned();

        let extended = http
            .patch(url(&two, key))
            .json(&serde_json::json!({"extend_expiry": {"after": "3d", "from": "creation"}}))
            .send()
            .await
            .unwrap();
        assert!(
            extended.status().is_success(),
            "extend {key}: {}",
            extended.status()
        );
        let head = http.head(url(&one, key)).send().await.unwrap();
        assert_ne!(
            head.headers()["x-sn-time-expires"].to_str().unwrap(),
            expires_before,
            "{key}: the extension made through two is visible through one"
        );

        let ranged = http
            .get(url(&one, key))
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(ranged.status(), 206);
        assert!(ranged.bytes().await.unwrap() == body[10..20]);

        let deleted = http.delete(url(&two, key)).send().await.unwrap();
        assert!(deleted.status().is_success());
        for server in [&one, &two] {
            let gone = http.get(url(server, key)).send().await.unwrap();
            assert_eq!(gone.status(), 404, "{key} deleted everywhere");
        }
    }

    // Overwrites across servers and tiers: large through one, small through two, large again.
    for (i, (writer, size)) in [(&one, 2_000_000), (&two, 10), (&one, 1_500_000)]
        .into_iter()
        .enumerate()
    {
        let body = noise(size, i as u8);
        let put = http
            .put(url(writer, "flip"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        for reader in [&one, &two] {
            let got = http.get(url(reader, "flip")).send().await.unwrap();
            assert!(got.bytes().await.unwrap() == body, "flip {i}");
        }
    }

    // The S3 secret never shows up in either server's output or metrics.
    for server in [&one, &two] {
        let metrics = http
            .get(format!("http://{}/metrics", server.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!metrics.contains(SECRET_KEY), "secret in /metrics");
    }
    drop(one);
    drop(two);
    for name in ["one", "two"] {
        let output = output_of(work.path(), name);
        assert!(
            output.contains("tiered"),
            "{name} printed its storage:\n{output}"
        );
        assert!(
            !output.contains(SECRET_KEY),
            "secret in the output of {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_names_an_unreachable_or_missing_backend() {
    let (bigtable, s3) = services().await;
    let work = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", support::free_port());

    let cases = [
        (
            "no-bigtable",
            tiered_yaml(&dead, &s3.addr, "strata", true),
            vec!["bigtable", dead.as_str()],
        ),
        (
            "no-s3",
            tiered_yaml(&bigtable.addr, &dead, "strata", true),
            vec!["s3compatible", dead.as_str()],
        ),
        (
            "no-bucket",
            tiered_yaml(&bigtable.addr, &s3.addr, "missing-bucket", true),
            vec!["missing-bucket", "does not exist"],
        ),
        (
            "no-table",
            tiered_yaml(&bigtable.addr, &s3.addr, "strata", false),
            vec!["never-created", "does not exist"],
        ),
    ];
    for (name, yaml, needles) in cases {
        match start(work.path(), name, &yaml) {
            Started::Running(_) => panic!("{name}: the server must not start"),
            Started::Exited(output) => {
                for needle in needles {
                    assert!(
                        output.contains(needle),
                        "{name}: {needle:?} missing in:\n{output}"
                    );
                }
                assert!(!output.contains(SECRET_KEY), "{name}: secret in output");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_later_answers_503_json_and_fails_readiness() {
    let (mut bigtable, mut s3) = services().await;
    let work = tempfile::tempdir().unwrap();
    let server = running(start(
        work.path(),
        "outage",
        &tiered_yaml(&bigtable.addr, &s3.addr, "strata", true),
    ));
    let http = reqwest::Client::new();
    let ready = format!("http://{}/ready", server.addr);
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 200);
    let put = http
        .put(url(&server, "kept"))
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // Long-term storage goes away: large writes fail, small reads still work.
    s3.stop();
    let big = http
        .put(url(&server, "big"))
        .body(vec![7u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let status = big.status();
    let body: serde_json::Value = big.json().await.expect("JSON error body");
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("s3compatible"), "{body}");
    assert!(!body.to_string().contains(SECRET_KEY));
    assert_eq!(http.get(&ready).send().await.unwrap().status(), 503);
    assert_eq!(
        http.get(url(&server, "kept"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Then Bigtable: every object operation fails with 503 JSON.
    bigtable.stop();
    let got = http.get(url(&server, "kept")).send().await.unwrap();
    let status = got.status();
    let body: serde_json::Value = got.json().await.expect("JSON error body");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("bigtable"),
        "{body}"
    );
    let ready = http.get(&ready).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(!ready.text().await.unwrap().contains(SECRET_KEY));
    let metrics = http
        .get(format!("http://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(SECRET_KEY));
    let log = server.log.clone();
    drop(server);
    let output = std::fs::read_to_string(log).unwrap();
    assert!(!output.contains(SECRET_KEY), "secret in the log");
    assert!(!output.contains(ACCESS_KEY), "access key id in the log");
}
