//! The one point where access control meets HTTP: the [`Auth`] extractor authenticates
//! every object request (api §5.3 step 1), and [`Access::admit`] applies killswitches
//! and rate limits once the path is parsed (step 2).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use super::AppState;
use crate::auth::{AuthContext, Authenticator, RequestHead};
use crate::limits::bandwidth::Charge;
use crate::limits::{Admission, AdmissionError, DOWNSTREAM_SERVICE};
use crate::metrics::Metrics;
use crate::object::Scopes;

/// Access control state shared by every handler, built once at start.
#[derive(Debug, Clone)]
pub struct Access {
    /// Verifies tokens and pre-signed URLs.
    pub authenticator: Authenticator,
    /// Killswitches, rate limits, usecase policy.
    pub admission: Arc<Admission>,
    metrics: Metrics,
}

impl Access {
    /// Bundles the verifiers and limiters; records the configured limits for `/keda`.
    pub fn new(authenticator: Authenticator, admission: Admission, metrics: Metrics) -> Self {
        metrics
            .access
            .set_limits(admission.global_rps, admission.global_bps);
        Self {
            authenticator,
            admission: Arc::new(admission),
            metrics,
        }
    }

    /// Killswitch (403), then rate limits (429), counted. Returns what the payload
    /// bytes of this request are charged to.
    pub fn admit(
        &self,
        usecase: &str,
        scopes: &Scopes,
        headers: &HeaderMap,
    ) -> Result<Charge, ApiError> {
        let service = headers
            .get(DOWNSTREAM_SERVICE)
            .and_then(|v| v.to_str().ok());
        if self.admission.killswitched(usecase, scopes, service) {
            self.metrics.access.killswitch_hits.inc();
            return Err(AdmissionError::Killswitched.into());
        }
        match self.admission.admit_reporting(usecase, scopes) {
            Ok((charge, reported)) => {
                reported
                    .into_iter()
                    .for_each(|kind| self.count_limited(kind));
                Ok(charge)
            }
            Err(kind) => Err(self.limited(kind)),
        }
    }

    /// The throughput token of one batch operation (429 for that operation), counted.
    pub fn admit_operation(&self, usecase: &str, scopes: &Scopes) -> Result<(), ApiError> {
        self.admission
            .admit_operation(usecase, scopes)
            .map_err(|kind| self.limited(kind))
    }

    fn count_limited(&self, kind: crate::limits::Limited) {
        self.metrics
            .access
            .rate_limited
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    fn limited(&self, kind: crate::limits::Limited) -> ApiError {
        self.count_limited(kind);
        AdmissionError::RateLimited(kind).into()
    }
}

/// The authenticated context of one request (400/401/403 when it fails and auth is
/// enforced).
#[derive(Debug, Clone)]
pub struct Auth(pub AuthContext);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authenticator = &state.access.authenticator;
        if authenticator.is_off() {
            return Ok(Auth(AuthContext::unrestricted()));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let head = RequestHead {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        Ok(Auth(authenticator.authenticate(head, now)?))
    }
}
