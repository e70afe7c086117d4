//! API errors: a status and `{ "error": code, "message": text }`.

use super::passwords::PoolStopped;
use crate::server::handle::{CommandFailed, Stopped};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hive_core::node::CommandError;
use hive_core::wire::MergeRefusal;
use serde::Serialize;

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
    /// Whether a 401 names Basic in `WWW-Authenticate` (not to a page's script: the browser
    /// would put up its own password dialog).
    pub challenge: bool,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_s: None, challenge: true }
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

/// The body of every error answer; integrators branch on `error`, people read `message`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `exists`, `too_many_failures`, `stopping`, ...
    #[schema(example = "not_found")]
    pub error: &'static str,
    /// What happened, for people.
    #[schema(example = "no camera 5c1e0a9b7d3f48e2a6b0c4d8e2f61a37")]
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code, message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.challenge {
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
    /// Keeps the rejection's status (413 for an oversized body, 415 for a wrong content type),
    /// except that JSON of the wrong shape is a plain 400 like malformed JSON.
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        ApiError::new(status, code_of(status), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(r.status(), code_of(r.status()), r.body_text())
    }
}

/// The error code of a status, for errors that did not choose one.
pub fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    }
}

impl From<PoolStopped> for ApiError {
    fn from(_: PoolStopped) -> Self {
        Stopped.into()
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
