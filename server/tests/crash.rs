//! Crash safety of the filesystem backend, end to end: concurrent writers (distinct keys
//! and overwrites of shared keys, payloads up to 2.5 MiB), SIGKILL of the server binary
//! while writes are in flight, restart on the same data directory, then every
//! acknowledged write must read back byte-identical, shared keys must hold one complete
//! version that was not superseded, unacknowledged writes are either absent or complete,
//! and no temp file survives the restart.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: u64 = 8;
const SHARED_KEYS: u64 = 4;
/// Payload sizes cycled through by the writers; several are at least 1 MiB.
const SIZES: &[usize] = &[0, 1, 4096, 65_536, 333_333, 1_100_000, 2_500_000, 1_048_576];
const BIG: usize = 1 << 20;
/// Kill once this many writes were acknowledged (and a big write is in flight).
const ACKS_BEFORE_KILL: u64 = 60;
const BIG_ACKS_BEFORE_KILL: u64 = 3;
/// Upper bound on writes per writer (the kill normally comes long before).
const MAX_WRITES_PER_WRITER: u64 = 400;
/// Upper bound on the writing phase.
const WRITE_PHASE_LIMIT: Duration = Duration::from_secs(90);
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// A `strata-server run` child; SIGKILLed on drop if still running.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn start(work: &Path, data: &Path, name: &str) -> Self {
        let config = work.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "http:\n  addr: 127.0.0.1:0\n  drain_file: {}\nstorage:\n  type: filesystem\n  path: {}\nlogging:\n  level: warn\nauth:\n  enforce: false\n",
                work.join("strata.down").display(),
                data.display()
            ),
        )
        .expect("write config");
        let log = std::fs::File::create(work.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata-server"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STRATA__") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("STRATA__HTTP__ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn strata-server");
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
        let addr = match rx.recv_timeout(STARTUP_LIMIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
                panic!("strata-server did not print its address; log:\n{log}");
            }
        };
        Self { child, addr }
    }

    fn url(&self, key: &str) -> String {
        object_url(&self.addr, key)
    }

    /// SIGKILL (`Child::kill` on unix) and reap.
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

fn object_url(addr: &str, key: &str) -> String {
    format!("http://{addr}/v1/objects/crash/org=1/{key}")
}

/// Parses `… listening on http://ADDR …`.
fn listening_addr(line: &str) -> Option<String> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!addr.is_empty()).then_some(addr)
}

/// Content of write `seq` by `writer`: a readable tag followed by seeded noise, so every
/// version of a key is distinguishable and a torn mix of two versions cannot match either.
fn payload(writer: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut data = format!("writer {writer} seq {seq} size {size}|").into_bytes();
    let mut x = (writer << 32) ^ seq ^ 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    data
}

#[derive(Debug, Clone)]
struct Version {
    writer: u64,
    seq: u64,
    size: usize,
    started: Instant,
    acked: Option<Instant>,
}

impl Version {
    fn bytes(&self) -> Vec<u8> {
        payload(self.writer, self.seq, self.size)
    }
}

#[derive(Default)]
struct Journal {
    versions: Mutex<HashMap<String, Vec<Version>>>,
    acks: AtomicU64,
    big_acks: AtomicU64,
    big_in_flight: AtomicU64,
    unexpected: Mutex<Vec<String>>,
}

async fn writer(id: u64, addr: Arc<String>, journal: Arc<Journal>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && seq < MAX_WRITES_PER_WRITER {
        seq += 1;
        let key = if seq.is_multiple_of(3) {
            format!("shared-{}", (seq / 3 + id) % SHARED_KEYS)
        } else {
            format!("w{id}/u{seq}")
        };
        let size = SIZES[((id + seq) as usize) % SIZES.len()];
        let body = payload(id, seq, size);
        let index = {
            let mut versions = journal.versions.lock().unwrap();
            let list = versions.entry(key.clone()).or_default();
            list.push(Version {
                writer: id,
                seq,
                size,
                started: Instant::now(),
                acked: None,
            });
            list.len() - 1
        };
        if size >= BIG {
            journal.big_in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let result = http
            .put(object_url(&addr, &key))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await;
        if size >= BIG {
            journal.big_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        match result {
            Ok(response) if response.status().is_success() => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                if status != 200 || !text.contains(&format!("\"key\":\"{key}\"")) {
                    journal
                        .unexpected
                        .lock()
                        .unwrap()
                        .push(format!("PUT {key}: {status} {text}"));
                }
                journal.versions.lock().unwrap().get_mut(&key).unwrap()[index].acked =
                    Some(Instant::now());
                journal.acks.fetch_add(1, Ordering::SeqCst);
                if size >= BIG {
                    journal.big_acks.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(response) => {
                if !stop.load(Ordering::Relaxed) {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    journal
                        .unexpected
                        .lock()
                        .unwrap()
                        .push(format!("PUT {key} before the kill: {status} {text}"));
                }
            }
            // Connection errors are expected once the server is killed; the write stays
            // "in flight" (outcome unknown).
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// What a key holds after the restart, when that is acceptable.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// An acknowledged version that nothing acknowledged later supersedes.
    Acknowledged,
    /// A complete version whose write was in flight at the kill.
    UnacknowledgedPresent,
    /// Nothing, and no write to the key was acknowledged.
    Absent,
}

/// Checks what GET returned for a key against the writes made to it.
///
/// A version is superseded when another acknowledged write to the key started after it
/// was acknowledged: the key can no longer legitimately hold it. Any other version, whole,
/// is acceptable; a body matching no version is torn or truncated.
fn judge(list: &[Version], status: u16, body: &[u8]) -> Result<Verdict, String> {
    let acked = list.iter().filter(|v| v.acked.is_some()).count();
    let superseded = |v: &Version| {
        v.acked.is_some_and(|v_acked| {
            list.iter()
                .any(|w| w.acked.is_some() && w.started > v_acked)
        })
    };
    match status {
        200 => {
            // Tiny payloads (0 or 1 byte) of different versions are identical, so look for
            // any matching version that is still current.
            let matching: Vec<&Version> = list.iter().filter(|v| v.bytes() == body).collect();
            let Some(first) = matching.first() else {
                return Err(format!(
                    "body of {} bytes (starts {:?}) matches no version: torn or truncated",
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                ));
            };
            let Some(version) = matching.iter().find(|v| !superseded(v)) else {
                return Err(format!(
                    "holds writer {} seq {}, superseded by a later acknowledged write",
                    first.writer, first.seq
                ));
            };
            Ok(if version.acked.is_some() {
                Verdict::Acknowledged
            } else {
                Verdict::UnacknowledgedPresent
            })
        }
        404 if acked == 0 => Ok(Verdict::Absent),
        other => Err(format!(
            "GET answered {other} although {acked} acknowledged write(s) exist"
        )),
    }
}

/// Regular files left under `dir` whose path mentions a temp file.
fn temp_files(root: &Path) -> Vec<PathBuf> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("data");
    let mut first = ServerProcess::start(work.path(), &data, "first");
    let addr = Arc::new(first.addr.clone());

    let journal = Arc::new(Journal::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(id, addr.clone(), journal.clone(), stop.clone())))
        .collect();

    // Wait until enough writes were acknowledged and a big one is mid-stream, then kill.
    let began = Instant::now();
    loop {
        let acks = journal.acks.load(Ordering::SeqCst);
        let big_acks = journal.big_acks.load(Ordering::SeqCst);
        let big_in_flight = journal.big_in_flight.load(Ordering::SeqCst);
        if acks >= ACKS_BEFORE_KILL && big_acks >= BIG_ACKS_BEFORE_KILL && big_in_flight > 0 {
            break;
        }
        assert!(
            began.elapsed() < WRITE_PHASE_LIMIT,
            "only {acks} writes ({big_acks} big) acknowledged in {WRITE_PHASE_LIMIT:?}; unexpected: {:?}",
            journal.unexpected.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // `Child::kill` is SIGKILL on unix: no shutdown hook, no flush.
    first.kill();
    stop.store(true, Ordering::SeqCst);
    for task in writers {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("writers stop after the kill")
            .expect("writer task");
    }
    drop(first);

    let unexpected = journal.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "server misbehaved before the kill: {unexpected:#?}"
    );
    let temps_after_crash = temp_files(&data).len();

    let second = ServerProcess::start(work.path(), &data, "second");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let versions = journal.versions.lock().unwrap().clone();
    let (mut acked_checked, mut unacked_present, mut unacked_absent) = (0, 0, 0);
    let mut failures = Vec::new();
    for (key, list) in &versions {
        let response = http
            .get(second.url(key))
            .send()
            .await
            .expect("GET after restart");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body after restart");
        match judge(list, status, &body) {
            Ok(Verdict::Acknowledged) => acked_checked += 1,
            Ok(Verdict::UnacknowledgedPresent) => unacked_present += 1,
            Ok(Verdict::Absent) => unacked_absent += 1,
            Err(problem) => failures.push(format!("{key}: {problem}")),
        }
    }
    assert!(
        failures.is_empty(),
        "after SIGKILL + restart ({} keys, {acked_checked} acknowledged ok, {unacked_present} \
         unacknowledged present, {unacked_absent} unacknowledged absent):\n{}",
        versions.len(),
        failures.join("\n")
    );
    assert!(
        acked_checked as u64 >= ACKS_BEFORE_KILL / 2,
        "too few keys checked"
    );
    eprintln!(
        "crash: {} keys, {} writes acknowledged; after restart {acked_checked} keys hold an \
         acknowledged version, {unacked_present} an unacknowledged complete one, \
         {unacked_absent} are absent; {temps_after_crash} temp files right after the kill",
        versions.len(),
        journal.acks.load(Ordering::SeqCst)
    );

    // Recovery removed whatever temp files the crash left behind.
    let leftovers = temp_files(&data);
    assert!(
        leftovers.is_empty(),
        "temp files survived the restart ({temps_after_crash} right after the crash): {leftovers:?}"
    );

    // And the restarted server takes writes normally.
    let response = http
        .put(second.url("after-restart"))
        .body("fresh")
        .send()
        .await
        .expect("PUT after restart");
    assert_eq!(response.status(), 200);
    let body = http
        .get(second.url("after-restart"))
        .send()
        .await
        .expect("GET after restart")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"fresh");
}

#[test]
fn parses_the_listening_line() {
    assert_eq!(
        listening_addr("strata-server listening on http://127.0.0.1:4321").as_deref(),
        Some("127.0.0.1:4321")
    );
    assert_eq!(
        listening_addr("x listening on http://[::1]:80 more").as_deref(),
        Some("[::1]:80")
    );
    assert_eq!(listening_addr("storage: filesystem"), None);
}

#[test]
fn judge_accepts_whole_current_versions_only() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let version = |seq, started, acked: Option<u64>| Version {
        writer: 1,
        seq,
        size: 5000,
        started: at(started),
        acked: acked.map(at),
    };
    // v1 acknowledged at 10; v2 started at 20 (after) and was acknowledged: v1 is stale.
    let sequential = [version(1, 0, Some(10)), version(2, 20, Some(30))];
    assert_eq!(
        judge(&sequential, 200, &sequential[1].bytes()),
        Ok(Verdict::Acknowledged)
    );
    assert!(judge(&sequential, 200, &sequential[0].bytes())
        .unwrap_err()
        .contains("superseded"));
    assert!(judge(&sequential, 404, b"").is_err());
    // A torn mix or a truncated body matches no version.
    let mut torn = sequential[0].bytes()[..2500].to_vec();
    torn.extend_from_slice(&sequential[1].bytes()[2500..]);
    assert!(judge(&sequential, 200, &torn).unwrap_err().contains("torn"));
    assert!(judge(&sequential, 200, &sequential[1].bytes()[..4096])
        .unwrap_err()
        .contains("torn"));
    // Overlapping writes: either may win.
    let overlapping = [version(1, 0, Some(10)), version(2, 5, Some(30))];
    // Identical (empty) payloads: a current version matching is enough.
    let empty = |seq, started, acked: Option<u64>| Version {
        size: 0,
        ..version(seq, started, acked)
    };
    let empties = [empty(1, 0, Some(10)), empty(2, 20, Some(30))];
    assert_eq!(judge(&empties, 200, b""), Ok(Verdict::Acknowledged));
    assert!(judge(&overlapping, 200, &overlapping[0].bytes()).is_ok());
    assert!(judge(&overlapping, 200, &overlapping[1].bytes()).is_ok());
    // An in-flight write may have landed, or not.
    let in_flight = [version(1, 0, Some(10)), version(2, 20, None)];
    assert_eq!(
        judge(&in_flight, 200, &in_flight[1].bytes()),
        Ok(Verdict::UnacknowledgedPresent)
    );
    assert_eq!(
        judge(&in_flight, 200, &in_flight[0].bytes()),
        Ok(Verdict::Acknowledged)
    );
    let never_acked = [version(3, 0, None)];
    assert_eq!(judge(&never_acked, 404, b""), Ok(Verdict::Absent));
    assert!(judge(&never_acked, 500, b"").is_err());
}

#[test]
fn payload_versions_differ() {
    assert_ne!(payload(1, 2, 100), payload(2, 1, 100));
    assert_ne!(payload(1, 2, 100), payload(1, 3, 100));
    assert_eq!(payload(3, 4, 5000).len(), 5000);
    assert!(payload(3, 4, 0).is_empty());
}
