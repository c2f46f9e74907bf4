//! Sends generated batch requests (api §7) to a real in-process server on the memory
//! backend: parts with any kind, key, extra headers and body, or raw bytes, under one
//! multipart boundary. Whatever arrives, the request is answered 200 with a well-framed
//! multipart response whose parts each carry an index and a status, or 400, and no
//! operation ever answers 5xx (no panic, no internal error reaches the client).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use strata_server::app;
use strata_server::config::{AuthConfig, Config, StorageConfig};

const BOUNDARY: &str = "fuzz-boundary";

#[derive(Arbitrary, Debug)]
struct Input {
    parts: Vec<Part>,
    /// Bytes after the closing delimiter.
    tail: Vec<u8>,
    /// Sent instead of the parts when present: bytes that need not be multipart at all.
    raw: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct Part {
    /// 0–3 pick a valid kind, 4 leaves the header out, anything else sends `kind_text`.
    kind: u8,
    kind_text: String,
    key: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Input {
    fn body(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = Vec::new();
        for part in &self.parts {
            out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            out.extend_from_slice(b"content-disposition: form-data; name=part\r\n");
            let kind = match part.kind {
                0 => Some("get"),
                1 => Some("head"),
                2 => Some("delete"),
                3 => Some("insert"),
                4 => None,
                _ => Some(part.kind_text.as_str()),
            };
            if let Some(kind) = kind {
                out.extend_from_slice(format!("x-sn-batch-operation-kind: {kind}\r\n").as_bytes());
            }
            if let Some(key) = &part.key {
                out.extend_from_slice(format!("x-sn-batch-operation-key: {key}\r\n").as_bytes());
            }
            for (name, value) in &part.headers {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&part.body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{BOUNDARY}--").as_bytes());
        out.extend_from_slice(&self.tail);
        out
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    url: String,
    client: reqwest::Client,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = Config::default();
        config.http.addr = "127.0.0.1:0".parse().expect("address");
        config.auth = AuthConfig::disabled();
        config.storage = StorageConfig::Memory {};
        let server = runtime.block_on(app::start(config)).expect("server starts");
        let url = format!("http://{}/v1/objects:batch/fuzz/org=1/", server.addr());
        // The server lives as long as the fuzzing process.
        std::mem::forget(server);
        Harness {
            runtime,
            url,
            client: reqwest::Client::new(),
        }
    })
}

/// Checks a 200 answer's framing: every part between the response boundary's delimiters
/// has an index and a status header, and no status is a server error.
fn check_response(content_type: &str, body: &[u8]) {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("multipart answers name their boundary")
        .trim_matches('"');
    let body = std::str::from_utf8(body).unwrap_or_else(|_| {
        // Bodies of get parts may be any bytes; framing is checked on the lossy text.
        Box::leak(String::from_utf8_lossy(body).into_owned().into_boxed_str())
    });
    let closing = format!("--{boundary}--");
    assert!(body.ends_with(&closing), "response ends with its closing delimiter");
    let delimiter = format!("--{boundary}\r\n");
    for part in body[..body.len() - closing.len()].split(&delimiter).skip(1) {
        let head = part.split("\r\n\r\n").next().expect("part headers");
        let header = |name: &str| {
            head.lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_else(|| panic!("part without {name}: {head:?}"))
                .to_owned()
        };
        header("x-sn-batch-operation-index: ")
            .parse::<usize>()
            .expect("numeric index");
        let status = header("x-sn-batch-operation-status: ");
        assert!(
            !status.starts_with('5'),
            "an operation answered {status}: {head:?}"
        );
    }
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let body = input.body();
    let (status, content_type, answer) = harness.runtime.block_on(async {
        let response = harness
            .client
            .post(&harness.url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let answer = response.bytes().await.expect("the whole answer arrives");
        (status, content_type, answer)
    });
    match status {
        200 => check_response(&content_type, &answer),
        400 => {}
        other => panic!("batch request answered {other}: {:?}", String::from_utf8_lossy(&answer)),
    }
});
