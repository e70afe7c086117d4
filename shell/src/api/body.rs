//! A JSON body whose every rejection is a 400 with the reason, read up to a bound.

use super::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

/// The largest body a request may carry: a settings change of a few of the largest values
/// (64 KiB each, escaped in JSON), far below what 512 connections could pin in memory.
pub const BODY_BYTES_MAX: usize = 512 * 1024;
/// The largest login body: a name and a password. The login is the one body read before any
/// credentials are checked, so it is held to what a login needs.
pub const LOGIN_BYTES_MAX: usize = 4 * 1024;

/// A JSON request body of at most `BYTES_MAX` bytes; malformed JSON, wrong types and unknown
/// fields answer 400, a longer body 413 (read no further than the bound).
pub struct Body<T, const BYTES_MAX: usize = BODY_BYTES_MAX>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const BYTES_MAX: usize> FromRequest<S>
    for Body<T, BYTES_MAX>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // `Json` buffers through the limit and answers 413 past it.
        let req =
            req.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, BYTES_MAX)));
        let Json(value) = Json::<T>::from_request(req, state).await.map_err(|r| {
            let mut e = ApiError::from(r);
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                e.message = format!("the body is longer than {BYTES_MAX} bytes");
            }
            e
        })?;
        Ok(Body(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    fn request(body: String) -> Request {
        Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    }

    #[derive(serde::Deserialize)]
    struct Login {
        #[allow(dead_code)]
        name: String,
    }

    #[tokio::test]
    async fn a_body_past_its_bound_is_refused_with_413() {
        let long = format!(r#"{{"name":"{}"}}"#, "a".repeat(LOGIN_BYTES_MAX));
        let refused = Body::<Login, LOGIN_BYTES_MAX>::from_request(request(long.clone()), &())
            .await
            .err()
            .expect("too long");
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(refused.message.contains(&LOGIN_BYTES_MAX.to_string()), "{}", refused.message);
        assert!(Body::<Login>::from_request(request(long), &()).await.is_ok());
        let short = r#"{"name":"ann"}"#.to_owned();
        assert!(Body::<Login, LOGIN_BYTES_MAX>::from_request(request(short), &()).await.is_ok());
    }
}
