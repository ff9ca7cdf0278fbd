//! `ApiError`: every non-2xx answer of the HTTP API, as `{"error","field","message"}` JSON.
//!
//! Client errors are answered and not logged as failures; internal errors are logged here and
//! never shown to the client.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::ErrorBody;
use crate::jwks::EXPIRY_GRACE_SECS;
use crate::service::ServiceError;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 400: a request field (or the body as a whole, `field: None`) is unacceptable.
    InvalidRequest {
        /// The field at fault, if one is.
        field: Option<String>,
        /// Why.
        message: String,
    },
    /// 401: no or wrong admin bearer token.
    Unauthorized,
    /// 404: no such token or route.
    NotFound(&'static str),
    /// 409: the namespace already publishes the most keys allowed.
    NamespaceFull {
        /// The namespace.
        namespace_id: String,
        /// The limit in force.
        limit: u32,
    },
    /// 413: the body is over the limit.
    PayloadTooLarge,
    /// 503: the service is too busy to answer this request (now, or in time); says why.
    Unavailable(String),
    /// 500: the service failed; logged, answered with a generic message.
    Internal(ServiceError),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::InvalidRequest { field: Some(field.to_owned()), message: message.to_string() }
    }

    /// A 400 about the body as a whole.
    pub fn body(message: impl std::fmt::Display) -> Self {
        Self::InvalidRequest { field: None, message: message.to_string() }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NamespaceFull { namespace_id, limit } => Self::NamespaceFull { namespace_id, limit },
            ServiceError::Busy => Self::Unavailable(format!("{}; retry later", ServiceError::Busy)),
            ServiceError::Shared(shared) if matches!(*shared, ServiceError::Busy) => {
                Self::Unavailable(format!("{shared}; retry later"))
            }
            other => Self::Internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, field, message) = match self {
            Self::InvalidRequest { field, message } => (StatusCode::BAD_REQUEST, "invalid_request", field, message),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                "missing or invalid admin token (Authorization: Bearer ...)".to_owned(),
            ),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", None, what.to_owned()),
            Self::NamespaceFull { namespace_id, limit } => (
                StatusCode::CONFLICT,
                "namespace_full",
                None,
                format!(
                    "namespace {namespace_id} already publishes {limit} keys, the most allowed \
                     (serve --max-keys-per-namespace): delete tokens, or wait for expired ones to leave \
                     the key set ({} minutes after they expire)",
                    EXPIRY_GRACE_SECS / 60
                ),
            ),
            Self::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None, "request body is over 16 KiB".to_owned())
            }
            Self::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None, message),
            Self::Internal(cause) => {
                eprintln!("tokengate: internal error: {cause}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None, "internal server error".to_owned())
            }
        };
        let body = Json(ErrorBody { error: error.to_owned(), field, message });
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
