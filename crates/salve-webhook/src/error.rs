//! What can go wrong with one request, split by whose fault it is.
//!
//! A [`Reject`] is the sender's fault: a 4xx with a JSON body naming the problem; Alertmanager
//! does not retry it. A [`ProcessError`] is ours or the cluster's: a 5xx, so Alertmanager
//! retries, which is safe because every write is idempotent. Each variant has a PascalCase
//! `category()` that is both the metrics label and the `error_category` log field.

use std::time::Duration;

use axum::http::StatusCode;

/// A request refused because of what was sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Reject {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("content-type must be application/json, got {0:?}")]
    ContentType(String),
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("payload has {count} alerts; the limit is {limit}")]
    TooManyAlerts { count: usize, limit: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// A missing, mistyped or invalid field; the message starts with its path
    /// (`alerts[3].labels.alertname missing`).
    #[error("{0}")]
    Invalid(String),
    #[error("version: unsupported webhook version {0:?} (salve understands version \"4\")")]
    Version(String),
}

impl Reject {
    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::Unauthorized => StatusCode::UNAUTHORIZED,
            Reject::BodyTooLarge { .. } | Reject::TooManyAlerts { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Reject::ContentType(_)
            | Reject::BodyRead(_)
            | Reject::Syntax(_)
            | Reject::Invalid(_)
            | Reject::Version(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// PascalCase category: the `reason` label of `salve_webhook_rejects_total`.
    pub fn category(&self) -> &'static str {
        match self {
            Reject::Unauthorized => "Unauthorized",
            Reject::ContentType(_) => "ContentType",
            Reject::BodyTooLarge { .. } => "BodyTooLarge",
            Reject::TooManyAlerts { .. } => "TooManyAlerts",
            Reject::BodyRead(_) => "BodyRead",
            Reject::Syntax(_) => "InvalidJson",
            Reject::Invalid(_) => "InvalidField",
            Reject::Version(_) => "UnsupportedVersion",
        }
    }
}

/// A request that could not be completed through no fault of the sender. Alertmanager retries.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The API server is unreachable, overloaded, or refuses us for a reason an operator can
    /// fix (RBAC, missing namespace or CRD). Answered 503 with Retry-After.
    #[error("Kubernetes API unavailable: {0}")]
    ApiUnavailable(#[source] kube::Error),
    /// The API server refused an object as invalid. The shim bounds every field so this should
    /// not happen; answered 500 so it is loud, and retried by Alertmanager.
    #[error("Kubernetes API refused Incident {name}: {message}")]
    ApiRejected { name: String, message: String },
    /// The truncated group could not be fetched from Alertmanager. Answered 503: the retry
    /// fetches again.
    #[error("fetching the truncated group from Alertmanager failed: {0}")]
    Alertmanager(#[from] crate::alertmanager::FetchError),
    /// Persisting took longer than the request deadline. Answered 503.
    #[error("timed out after {0:?} persisting incidents")]
    Timeout(Duration),
}

impl ProcessError {
    /// Sorts a kube error: 4xx answers about the object itself are the shim's bug
    /// ([`ProcessError::ApiRejected`]); everything else is the cluster's state.
    pub fn from_kube(name: &str, e: kube::Error) -> ProcessError {
        match &e {
            kube::Error::Api(s) if matches!(s.code, 400 | 422) => ProcessError::ApiRejected {
                name: name.to_owned(),
                message: s.message.clone(),
            },
            _ => ProcessError::ApiUnavailable(e),
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            ProcessError::ApiRejected { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProcessError::ApiUnavailable(_)
            | ProcessError::Alertmanager(_)
            | ProcessError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// PascalCase category: the `reason` label of `salve_webhook_failures_total`.
    pub fn category(&self) -> &'static str {
        match self {
            ProcessError::ApiUnavailable(_) => "ApiUnavailable",
            ProcessError::ApiRejected { .. } => "ApiRejected",
            ProcessError::Alertmanager(_) => "AlertmanagerUnavailable",
            ProcessError::Timeout(_) => "Timeout",
        }
    }
}
