//! Every error answer is JSON, including those axum makes itself (a path that does not decode,
//! a method a route lacks, a body it refused): a layer rewrites any error response that is not
//! JSON already into `{ "error": code, "message": text }`, keeping its status and headers.

use super::error::code_of;
use super::ApiError;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The most of a non-JSON error body kept as the message.
const MESSAGE_LEN_MAX: usize = 4096;

/// Rewrites a non-JSON error response as JSON.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MESSAGE_LEN_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_lowercase(),
        false => text,
    };
    let json = ApiError::new(status, code_of(status), message).into_response();
    let (json_parts, json_body) = json.into_parts();
    // Keep what the original said (`Allow` on a 405, for one), with the new body's type.
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &json_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, json_body)
}
