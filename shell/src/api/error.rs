//! API errors: a status and `{ "error": code, "message": text }`.

use crate::server::handle::{CommandFailed, Stopped};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hive_core::node::CommandError;
use hive_core::wire::MergeRefusal;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
    /// Seconds to wait before retrying (rate limits).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_s: None }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such resource.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 403: the caller's role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hive\""));
        }
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<Stopped> for ApiError {
    fn from(_: Stopped) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "the server is stopping")
    }
}

impl From<CommandFailed> for ApiError {
    fn from(e: CommandFailed) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            CommandFailed::Stopped(s) => return s.into(),
            CommandFailed::Refused(c) => match c {
                CommandError::ValueDoesNotFitKey => (StatusCode::BAD_REQUEST, "bad_request"),
                CommandError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                CommandError::InvalidLicense(_) => (StatusCode::BAD_REQUEST, "invalid_license"),
                CommandError::MergeRefused(MergeRefusal::BadCredentials) => {
                    (StatusCode::FORBIDDEN, "remote_credentials_rejected")
                }
                CommandError::MergeRefused(_) => (StatusCode::CONFLICT, "merge_refused"),
                CommandError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "unreachable"),
                CommandError::MergeInProgress(_) => (StatusCode::CONFLICT, "merge_in_progress"),
                CommandError::NameUnchanged(_) => (StatusCode::CONFLICT, "name_unchanged"),
            },
        };
        ApiError::new(status, code, message)
    }
}
