//! Untrusted text (names, condition messages, event messages from the API) is HTML-escaped.

use std::time::Duration;

use axum::body::Body;
use http::Request;
use strata_dashboard::collector::Source;
use strata_dashboard::sources::{Condition, EventInfo, PodInfo, ServiceInfo, Topology};
use tower::ServiceExt;

#[tokio::test]
async fn hostile_text_is_escaped_on_every_page() {
    let settings = strata_dashboard::Settings::default();
    let (app, _) = strata_dashboard::build(&settings, &Source::Static(vec![]));
    let evil = "<script>alert(1)</script>";
    app.store.write().unwrap().set_topology(Topology {
        services: vec![ServiceInfo {
            namespace: "ns".into(),
            name: format!("svc{evil}"),
            conditions: vec![Condition {
                kind: "Degraded".into(),
                status: "True".into(),
                reason: "Bad".into(),
                message: format!("message {evil}"),
                since: Some(0.0),
            }],
            events: vec![EventInfo {
                at: Some(0.0),
                kind: "Warning".into(),
                reason: "R".into(),
                message: format!("event {evil}"),
                object: "Pod/p".into(),
                count: 2,
            }],
            pods: vec![PodInfo {
                name: format!("pod{evil}"),
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    let router = strata_dashboard::web::router(app);
    let encoded = "svc%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    for path in [
        "/".to_owned(),
        "/fragments/overview".to_owned(),
        format!("/services/ns/{encoded}"),
        format!("/fragments/services/ns/{encoded}"),
    ] {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            router
                .clone()
                .oneshot(Request::get(&path).body(Body::empty()).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>alert"), "{path}: unescaped");
        assert!(
            body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
            "{path}"
        );
    }
}
