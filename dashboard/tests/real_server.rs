//! Against a real strata-server (started in process) with fault injection: panics on
//! `panic/` keys and 429s from saturating `slow/` keys appear on the dashboard; a stopped
//! server shows as unreachable.

mod common;

use std::time::Duration;

use common::{eventually, fast_settings, get, strip_tags, wait_for_text};
use strata_dashboard::collector::Source;
use strata_server::config::Config;

async fn start_server(drain_dir: &std::path::Path) -> strata_server::app::RunningServer {
    let yaml = format!(
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
"#,
        drain_dir.display()
    );
    let config = Config::from_yaml_str(&yaml).expect("valid test config");
    strata_server::app::start(config)
        .await
        .expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn panics_rejections_and_shutdown_of_a_real_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = start_server(tmp.path()).await;
    let server_url = format!("http://{}", server.addr());
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

    // Stop the server: the dashboard keeps serving and says since when it is unreachable.
    server.shutdown().await;
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
