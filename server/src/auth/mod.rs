//! Access control (api §6): where credentials come from, EdDSA JWTs, pre-signed URLs,
//! and the per-operation authorization check.
//!
//! [`Authenticator::authenticate`] turns a request head into an [`AuthContext`] once per
//! request (the HTTP layer does this in its [`Auth`](crate::http::auth::Auth) extractor);
//! every operation, including batch and multipart ones, then calls
//! [`AuthContext::authorize`] with its usecase, scopes and [`Permission`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::object::Scopes;

pub mod credentials;
pub mod jwt;
pub mod keys;
pub mod presigned;

pub use keys::{KeyDirectory, KeyError};
pub use strata_types::access::{AuthConfig, KeyConfig, Permission};

fn bit(p: Permission) -> u8 {
    match p {
        Permission::Read => 1,
        Permission::Write => 2,
        Permission::Delete => 4,
    }
}

/// A set of permissions (three bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u8);

impl PermissionSet {
    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & bit(p) != 0
    }

    /// The permissions in both sets.
    pub fn intersect(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        PermissionSet(iter.into_iter().fold(0, |acc, p| acc | bit(p)))
    }
}

/// Why a request was refused by access control. Each variant has a fixed status and a
/// fixed metric `reason`; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 400: no credentials, no `kid`, or unusable query parameters.
    #[error("bad request: {message}")]
    BadRequest {
        /// Metric reason.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 401: the credentials do not prove anything.
    #[error("unauthenticated: {message}")]
    Unauthenticated {
        /// Metric reason.
        reason: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 403: valid credentials that do not allow this operation.
    #[error("operation not allowed: {message}")]
    Forbidden {
        /// Metric reason.
        reason: &'static str,
        /// What is missing.
        message: String,
    },
}

impl AuthError {
    pub(crate) fn bad(reason: &'static str, message: impl Into<String>) -> Self {
        AuthError::BadRequest {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn unauth(reason: &'static str, message: impl Into<String>) -> Self {
        AuthError::Unauthenticated {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        AuthError::Forbidden {
            reason,
            message: message.into(),
        }
    }

    /// The HTTP status code (400, 401 or 403).
    pub fn status(&self) -> u16 {
        match self {
            AuthError::BadRequest { .. } => 400,
            AuthError::Unauthenticated { .. } => 401,
            AuthError::Forbidden { .. } => 403,
        }
    }

    /// The `code` metric label: the status as text.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::BadRequest { .. } => "400",
            AuthError::Unauthenticated { .. } => "401",
            AuthError::Forbidden { .. } => "403",
        }
    }

    /// The `reason` metric label (one of [`FAILURE_REASONS`]).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::BadRequest { reason, .. }
            | AuthError::Unauthenticated { reason, .. }
            | AuthError::Forbidden { reason, .. } => reason,
        }
    }
}

/// Every `reason` label value of `strata_auth_failures_total`, with its `code`.
pub const FAILURE_REASONS: &[(&str, &str)] = &[
    ("400", "missing_token"),
    ("400", "missing_kid"),
    ("400", "bad_query"),
    ("400", "presign_invalid"),
    ("401", "malformed"),
    ("401", "unknown_kid"),
    ("401", "bad_algorithm"),
    ("401", "bad_signature"),
    ("401", "expired"),
    ("401", "bad_claims"),
    ("401", "presign_window"),
    ("403", "presign_method"),
    ("403", "permission"),
    ("403", "usecase"),
    ("403", "scope"),
];

/// What a verified token grants: one usecase, scope values (or `*`), permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `res["os:usecase"]`.
    pub usecase: String,
    /// The other `res` entries: scope name to value or `*`.
    pub scopes: BTreeMap<String, String>,
    /// Token permissions intersected with the key's `max_permissions`.
    pub permissions: PermissionSet,
    /// The token's `exp` (Unix seconds).
    pub expires: i64,
}

/// The outcome of authentication for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Access control is off (or not enforced and the credentials failed): allow all.
    Unrestricted,
    /// A verified JWT.
    Token(Grant),
    /// A verified pre-signed URL: read access to this path.
    Presigned,
}

/// The per-request authorization context.
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// What the request proved.
    pub credentials: Credentials,
    /// Whether authorization failures are rejected (else logged and counted only).
    enforce: bool,
    metrics: Option<crate::metrics::Metrics>,
}

impl AuthContext {
    /// A context that allows everything (auth off).
    pub fn unrestricted() -> Self {
        Self {
            credentials: Credentials::Unrestricted,
            enforce: false,
            metrics: None,
        }
    }

    /// Checks one operation on `usecase`/`scopes` needing `permission` (api §6.4).
    ///
    /// Batch and multipart code call this once per operation.
    pub fn authorize(
        &self,
        usecase: &str,
        scopes: &Scopes,
        permission: Permission,
    ) -> Result<(), AuthError> {
        let result = check(&self.credentials, usecase, scopes, permission);
        match result {
            Err(err) if !self.enforce => {
                tracing::info!(error = %err, "auth failure (not enforced)");
                if let Some(m) = &self.metrics {
                    m.record_auth_failure(&err);
                }
                Ok(())
            }
            Err(err) => {
                if let Some(m) = &self.metrics {
                    m.record_auth_failure(&err);
                }
                Err(err)
            }
            Ok(()) => Ok(()),
        }
    }
}

/// The pure authorization rule of api §6.4.
pub fn check(
    credentials: &Credentials,
    usecase: &str,
    scopes: &Scopes,
    permission: Permission,
) -> Result<(), AuthError> {
    match credentials {
        Credentials::Unrestricted => Ok(()),
        Credentials::Presigned if permission == Permission::Read => Ok(()),
        Credentials::Presigned => Err(AuthError::forbidden(
            "permission",
            format!(
                "a pre-signed URL grants only object.read, not {}",
                permission.as_str()
            ),
        )),
        Credentials::Token(grant) => {
            if !grant.permissions.contains(permission) {
                return Err(AuthError::forbidden(
                    "permission",
                    format!("token does not grant {}", permission.as_str()),
                ));
            }
            if grant.usecase != usecase {
                return Err(AuthError::forbidden(
                    "usecase",
                    format!("token is for usecase `{}`, not `{usecase}`", grant.usecase),
                ));
            }
            for scope in &scopes.0 {
                match grant.scopes.get(&scope.name) {
                    Some(v) if v == "*" || *v == scope.value => {}
                    _ => {
                        return Err(AuthError::forbidden(
                            "scope",
                            format!("token does not cover scope {}={}", scope.name, scope.value),
                        ))
                    }
                }
            }
            Ok(())
        }
    }
}

/// Verified tokens remembered (bounded; least recently used ones are evicted).
pub const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Authenticates requests: the key directory and the enforcement mode, built once.
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Arc<AuthInner>,
}

#[derive(Debug)]
struct AuthInner {
    keys: KeyDirectory,
    cache: jwt::TokenCache,
    enforce: bool,
    metrics: crate::metrics::Metrics,
}

/// The parts of a request head authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The raw path, still percent-encoded.
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a http::HeaderMap,
}

impl Authenticator {
    /// Loads the keys of `config` (once, at start).
    pub fn new(config: &AuthConfig, metrics: crate::metrics::Metrics) -> Result<Self, KeyError> {
        Ok(Self {
            inner: Arc::new(AuthInner {
                keys: KeyDirectory::load(config)?,
                cache: jwt::TokenCache::new(TOKEN_CACHE_ENTRIES),
                enforce: config.enforce,
                metrics,
            }),
        })
    }

    /// Whether access control is entirely off (`enforce: false` and no keys).
    pub fn is_off(&self) -> bool {
        !self.inner.enforce && self.inner.keys.is_empty()
    }

    /// Authenticates one request head at time `now` (Unix seconds).
    pub fn authenticate(&self, head: RequestHead<'_>, now: i64) -> Result<AuthContext, AuthError> {
        let inner = &self.inner;
        if self.is_off() {
            return Ok(AuthContext::unrestricted());
        }
        let context = |credentials| AuthContext {
            credentials,
            enforce: inner.enforce,
            metrics: Some(inner.metrics.clone()),
        };
        match credentials::verify(&inner.keys, Some(&inner.cache), head, now) {
            Ok(credentials) => Ok(context(credentials)),
            Err(err) => {
                inner.metrics.record_auth_failure(&err);
                if inner.enforce {
                    Err(err)
                } else {
                    tracing::info!(error = %err, "auth failure (not enforced)");
                    Ok(context(Credentials::Unrestricted))
                }
            }
        }
    }
}
