//! Access control on the dashboard: services whose spec says `auth.enforce: false` are
//! marked "access control off" on the overview and their page, and the service page
//! shows auth failures by status code and rate-limit rejections by kind, summed over
//! the service's pods.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::Request;
use strata_dashboard::collector::Source;
use strata_dashboard::parse::parse_metrics;
use strata_dashboard::sources::{PodInfo, ServiceInfo, Topology};
use strata_dashboard::state::PodKey;
use tower::ServiceExt;

async fn get(router: &axum::Router, path: &str) -> String {
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

fn svc(name: &str, off: Option<bool>) -> ServiceInfo {
    ServiceInfo {
        namespace: "prod".into(),
        name: name.into(),
        access_control_off: off,
        pods: (0..2)
            .map(|i| PodInfo {
                name: format!("{name}-{i}"),
                metrics_url: Some(format!("http://10.0.0.{i}:8888/metrics")),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One scrape: `n` scales every counter so two scrapes give a rate.
fn scrape(n: u32) -> String {
    format!(
        "# TYPE strata_auth_failures_total counter\n\
         strata_auth_failures_total{{code=\"401\",reason=\"expired\"}} {}\n\
         strata_auth_failures_total{{code=\"401\",reason=\"bad_signature\"}} {}\n\
         strata_auth_failures_total{{code=\"403\",reason=\"permission\"}} {}\n\
         strata_auth_failures_total{{code=\"400\",reason=\"missing\"}} 0\n\
         # TYPE strata_rate_limited_total counter\n\
         strata_rate_limited_total{{kind=\"throughput_global\"}} {}\n\
         strata_rate_limited_total{{kind=\"bandwidth_scope\"}} 0\n",
        3 * n,
        2 * n,
        n,
        10 * n
    )
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn access_control_off_is_shown_and_failures_are_broken_down() {
    let settings = strata_dashboard::Settings::default();
    let (app, _) = strata_dashboard::build(&settings, &Source::Static(vec![]));
    {
        let mut st = app.store.write().unwrap();
        st.set_topology(Topology {
            services: vec![
                svc("open", Some(true)),
                svc("locked", Some(false)),
                svc("local", None),
            ],
        });
        let t = now();
        for pod in ["locked-0", "locked-1"] {
            let key = PodKey {
                namespace: "prod".into(),
                service: "locked".into(),
                pod: pod.into(),
            };
            st.apply_scrape(&key, t - 20.0, Ok(parse_metrics(&scrape(1)).unwrap()));
            st.apply_scrape(&key, t - 10.0, Ok(parse_metrics(&scrape(2)).unwrap()));
        }
    }
    let router = strata_dashboard::web::router(app);

    for path in ["/", "/fragments/overview"] {
        let body = get(&router, path).await;
        assert_eq!(
            body.matches("access control off").count(),
            1,
            "{path}: only `open` is marked:\n{body}"
        );
        let open = body.find("<strong>open</strong>").unwrap();
        let mark = body.find("access control off").unwrap();
        let locked = body.find("<strong>locked</strong>").unwrap();
        assert!(
            open < mark && (mark < locked || locked < open),
            "{path}: the mark is on the `open` row"
        );
    }

    let open = get(&router, "/services/prod/open").await;
    assert!(open.contains("<span class=\"access-off\">access control off</span>"));
    // No scrapes for `open`: nothing counted.
    assert!(
        open.contains("<dd class=\"auth-failures\">\u{2014} · none</dd>"),
        "{open}"
    );

    let locked = get(&router, "/services/prod/locked").await;
    assert!(!locked.contains("access control off"));
    // Two pods, each at 401: 3*2+2*2 = 10, 403: 2 in the latest scrape.
    assert!(
        locked.contains("<dd class=\"auth-failures\">1.20/s · 401 20, 403 4</dd>"),
        "{locked}"
    );
    // 10 more throughput_global rejections per pod over 10 s, two pods: 2/s.
    assert!(
        locked.contains("<dd class=\"rate-limited\">2.00/s · throughput_global 40</dd>"),
        "{locked}"
    );
}
