//! The HTTP layer: routes, extractors, web-tier admission and error mapping. It only
//! translates between the wire (api docs) and the storage service.

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::metrics::Metrics;
use crate::service::StorageService;

pub mod auth;
pub mod batch;
pub mod bounds;
pub mod error;
pub mod extract;
pub mod internal;
pub mod limit;
pub mod multipart;
pub mod objects;
pub mod patch;
pub mod range;
pub mod resumable;
pub mod serve;
pub mod trace;

/// State shared by every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The storage service.
    pub service: StorageService,
    /// The metrics registry.
    pub metrics: Metrics,
    /// `/ready` answers 503 while this file exists.
    pub drain_file: PathBuf,
    /// Set when shutdown begins.
    pub draining: Arc<AtomicBool>,
    /// Access control: authentication, killswitches, rate limits, usecase policy.
    pub access: auth::Access,
}

impl AppState {
    /// Whether readiness should fail: shutdown begun or drain file present.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.drain_file.exists()
    }
}

/// Builds the full router with web-tier admission and panic catching applied.
pub fn router(state: AppState, max_requests: usize) -> Router {
    let limit = limit::WebLimit::new(max_requests, state.metrics.clone());
    let collection = post(objects::post_object);
    let object = put(objects::put_object)
        .get(objects::get_object)
        .head(objects::head_object)
        .delete(objects::delete_object)
        .patch(objects::patch_object);
    let initiate = post(multipart::initiate_post);
    let routes = Router::new()
        .route("/v1/objects/{usecase}/{scopes}", collection.clone())
        .route("/v1/objects/{usecase}/{scopes}/", collection)
        .route("/v1/objects/{usecase}/{scopes}/{*key}", object)
        .route(
            "/v1/objects:batch/{usecase}/{scopes}/",
            post(batch::post_batch),
        )
        .route("/v1/objects:multipart/{usecase}/{scopes}", initiate.clone())
        .route("/v1/objects:multipart/{usecase}/{scopes}/", initiate)
        .route(
            "/v1/objects:multipart/{usecase}/{scopes}/{*key}",
            put(multipart::initiate_put).delete(multipart::abort),
        )
        .route(
            "/v1/objects:multipart:parts/{usecase}/{scopes}/{*key}",
            put(multipart::upload_part).get(multipart::list_parts),
        )
        .route(
            "/v1/objects:multipart:complete/{usecase}/{scopes}/{*key}",
            post(multipart::complete),
        )
        .route("/", get(internal::index))
        .route("/health", get(internal::health))
        .route("/ready", get(internal::ready))
        .route("/keda", get(internal::keda))
        .route("/metrics", get(internal::metrics))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(trace::layer())
        .with_state(state);
    with_web_layers(routes, limit)
}

/// Applies panic catching (innermost, so metrics see the 500) and web-tier admission.
pub fn with_web_layers(routes: Router, limit: Arc<limit::WebLimit>) -> Router {
    routes
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(limit, limit::web_tier))
}

fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = crate::service::panic_message(payload.as_ref());
    tracing::error!(%message, "request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn web_code_panic_becomes_plain_500_and_server_keeps_serving() {
        let metrics = Metrics::new();
        let routes = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("handler exploded");
                    }
                    "unreachable"
                }),
            )
            .route("/ok", get(|| async { "fine" }));
        let app = with_web_layers(routes, limit::WebLimit::new(10, metrics.clone()));
        let res = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"handler exploded");
        let res = app
            .oneshot(Request::get("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            metrics
                .http_requests
                .with_label_values(&["GET", "5xx"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn unread_request_body_closes_the_connection() {
        let routes = Router::new()
            .route("/early", put(|| async { StatusCode::BAD_REQUEST }))
            .route(
                "/read",
                put(|body: axum::body::Bytes| async move { body.len().to_string() }),
            );
        let app = with_web_layers(routes, limit::WebLimit::new(10, Metrics::new()));
        let res = app
            .clone()
            .oneshot(Request::put("/early").body(Body::from("payload")).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::CONNECTION], "close");
        let res = app
            .oneshot(Request::put("/read").body(Body::from("payload")).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get(header::CONNECTION).is_none());
    }

    #[tokio::test]
    async fn web_limit_rejects_with_empty_503_but_not_internal_routes() {
        let metrics = Metrics::new();
        let routes = Router::new()
            .route("/v1/x", get(|| async { "x" }))
            .route("/health", get(|| async { "OK" }));
        let app = with_web_layers(routes, limit::WebLimit::new(0, metrics.clone()));
        let res = app
            .clone()
            .oneshot(Request::get("/v1/x").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert!(body.is_empty());
        assert_eq!(metrics.http_rejections.get(), 1);
        let res = app
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // The slot is held until the response body is gone.
        assert_eq!(metrics.http_in_flight.get(), 1);
        drop(res);
        assert_eq!(metrics.http_in_flight.get(), 0);
    }
}
