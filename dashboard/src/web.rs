//! I/O: the HTTP surface. Read-only by construction: a middleware answers 405 to every
//! method but GET before routing, and no handler changes state.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Request, State as AxumState};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Method, StatusCode};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::metrics::DashboardMetrics;
use crate::state::State;
use crate::views::{self, OverviewView, ServiceView, ViewSettings};

/// Shared, cheaply cloneable handler state.
#[derive(Clone)]
pub struct AppState {
    /// The collector's state, read under a short lock.
    pub store: Arc<RwLock<State>>,
    /// How pages are shaped.
    pub settings: Arc<ViewSettings>,
    /// The dashboard's own metrics.
    pub metrics: DashboardMetrics,
}

/// Full overview page.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage<'a> {
    /// Data.
    pub view: &'a OverviewView,
}

/// Overview live fragment.
#[derive(Template)]
#[template(path = "overview_fragment.html")]
pub struct OverviewFragment<'a> {
    /// Data.
    pub view: &'a OverviewView,
}

/// Full service page.
#[derive(Template)]
#[template(path = "service.html")]
pub struct ServicePage<'a> {
    /// Data.
    pub view: &'a ServiceView,
}

/// Service live fragment.
#[derive(Template)]
#[template(path = "service_fragment.html")]
pub struct ServiceFragment<'a> {
    /// Data.
    pub view: &'a ServiceView,
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage<'a> {
    message: &'a str,
}

const CSS: &str = include_str!("../static/dashboard.css");
const JS: &str = include_str!("../static/live.js");

/// Current time as unix seconds.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => Html(body).into_response(),
        Err(err) => {
            tracing::error!(%err, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the dashboard log",
            )
                .into_response()
        }
    }
}

/// Builds the overview model under the read lock (the lock is released before rendering).
pub fn overview_view(app: &AppState) -> OverviewView {
    let state = app.store.read().unwrap_or_else(|e| e.into_inner());
    views::overview(&state, now_unix(), &app.settings)
}

fn service_view(app: &AppState, ns: &str, name: &str) -> Option<ServiceView> {
    let state = app.store.read().unwrap_or_else(|e| e.into_inner());
    views::service(&state, ns, name, now_unix(), &app.settings)
}

async fn overview_page(AxumState(app): AxumState<AppState>) -> Response {
    let view = overview_view(&app);
    html(OverviewPage { view: &view }.render())
}

async fn overview_fragment(AxumState(app): AxumState<AppState>) -> Response {
    let view = overview_view(&app);
    html(OverviewFragment { view: &view }.render())
}

fn not_found(message: &str) -> Response {
    let mut resp = html(NotFoundPage { message }.render());
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}

async fn service_page(
    AxumState(app): AxumState<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match service_view(&app, &ns, &name) {
        Some(view) => html(ServicePage { view: &view }.render()),
        None => not_found("No such service (it may have been deleted)."),
    }
}

async fn service_fragment(
    AxumState(app): AxumState<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match service_view(&app, &ns, &name) {
        Some(view) => html(ServiceFragment { view: &view }.render()),
        None => not_found("No such service (it may have been deleted)."),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn own_metrics(AxumState(app): AxumState<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        JS,
    )
        .into_response()
}

async fn fallback() -> Response {
    not_found("There is no page at this address.")
}

/// Refuses every method except GET (405 with `Allow: GET`) and counts responses.
async fn guard(AxumState(app): AxumState<AppState>, req: Request, next: Next) -> Response {
    let resp = if req.method() == Method::GET {
        next.run(req).await
    } else {
        let mut r = Response::new(Body::from("read-only dashboard: only GET is allowed\n"));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        r
    };
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics.http_requests.with_label_values(&[class]).inc();
    resp
}

/// Security headers on every response (the 405s included); `cache-control` only where
/// a handler set none.
fn with_security_headers(router: Router<AppState>) -> Router<AppState> {
    let fixed =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    router
        .layer(fixed(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .layer(fixed(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(fixed(header::REFERRER_POLICY, "no-referrer"))
        .layer(fixed(header::X_FRAME_OPTIONS, "DENY"))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// The dashboard's router.
pub fn router(app: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(overview_page))
        .route("/fragments/overview", get(overview_fragment))
        .route("/services/{ns}/{name}", get(service_page))
        .route("/fragments/services/{ns}/{name}", get(service_fragment))
        .route("/healthz", get(healthz))
        .route("/metrics", get(own_metrics))
        .route("/static/dashboard.css", get(css))
        .route("/static/live.js", get(js))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), guard));
    with_security_headers(routes).with_state(app)
}
