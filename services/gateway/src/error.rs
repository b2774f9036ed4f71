//! The HTTP API's errors: one JSON shape (`{"error": ..., "code": ...}`) with the HTTP status
//! that says what went wrong, from the servers' statuses and the gateway's own checks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tinysns_common::proto::social::Status as Code;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// A stable, machine-readable name: `unauthenticated`, `csrf`, `origin`, `rate_limited`,
    /// `too_large`, `invalid`, `not_found`, `exists`, `not_a_follower`, `upgrading`,
    /// `unavailable`, `unknown`.
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first")
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// A refusal from the servers (`status` other than success), with their detail.
    pub fn refused(status: Code, message: String) -> Self {
        let (http, code) = match status {
            Code::FailureAlreadyExists => (StatusCode::CONFLICT, "exists"),
            Code::FailureNotExists => (StatusCode::NOT_FOUND, "not_found"),
            Code::FailureInvalidUsername | Code::FailureInvalid => (StatusCode::BAD_REQUEST, "invalid"),
            Code::FailureNotAFollower => (StatusCode::CONFLICT, "not_a_follower"),
            Code::FailureUpgrading => (StatusCode::SERVICE_UNAVAILABLE, "upgrading"),
            Code::Success | Code::Unspecified | Code::FailureUnknown => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        };
        let message = if message.is_empty() {
            format!("{status:?}")
        } else {
            message
        };
        Self::new(http, code, message)
    }
}

/// Succeeds on `Success`, else the refusal.
pub fn check(status: i32, message: String) -> Result<(), ApiError> {
    match Code::try_from(status).unwrap_or(Code::FailureUnknown) {
        Code::Success => Ok(()),
        refused => Err(ApiError::refused(refused, message)),
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let (http, code) = match status.code() {
            tonic::Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            tonic::Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => (StatusCode::BAD_REQUEST, "invalid"),
            tonic::Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            tonic::Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::BAD_GATEWAY, "unknown"),
        };
        Self::new(http, code, status.message().to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_http_status_that_says_why() {
        let cases = [
            (Code::FailureAlreadyExists, StatusCode::CONFLICT),
            (Code::FailureNotExists, StatusCode::NOT_FOUND),
            (Code::FailureInvalid, StatusCode::BAD_REQUEST),
            (Code::FailureInvalidUsername, StatusCode::BAD_REQUEST),
            (Code::FailureUpgrading, StatusCode::SERVICE_UNAVAILABLE),
            (Code::FailureUnknown, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (code, http) in cases {
            assert_eq!(check(code as i32, "why".into()).unwrap_err().status, http, "{code:?}");
        }
        assert_eq!(check(Code::Success as i32, String::new()), Ok(()));
        assert_eq!(check(99, String::new()).unwrap_err().code, "unknown");
        assert_eq!(
            ApiError::refused(Code::FailureInvalid, String::new()).message,
            "FailureInvalid",
            "an empty detail still says something"
        );
    }

    #[test]
    fn transport_failures_say_whether_to_retry() {
        let e = ApiError::from(tonic::Status::unavailable("failover"));
        assert_eq!((e.status, e.code), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        let e = ApiError::from(tonic::Status::unauthenticated("expired"));
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    }
}
