//! `GET /api/cameras/{id}/video.ws`: the same fragmented MP4 as `video.mp4`, over a WebSocket.
//!
//! A browser opens at most six HTTP/1.1 connections to one server, and the event stream holds
//! one: a grid of more cameras would wait. WebSockets do not count against that pool, so the
//! grid plays each camera over one. The first message is text, `{"codec", "start_us"}`; every
//! later one is binary, the init segment then one fragment per frame.
//!
//! A WebSocket is not bound by the same-origin policy: another site's page could open one
//! with the user's cookie if the cookie went cross-site (SameSite=Strict keeps it home), so
//! the handshake must also come from this server's own origin (cross-site WebSocket hijacking).

use super::error::ErrorBody;
use super::openapi::CallerRejections;
use super::video_mp4::{open_stream, VideoQuery};
use super::{ApiError, AppState, Caller};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::time::Duration;

/// Longest one message may wait to be sent before the viewer is dropped: a client that reads
/// nothing must not hold the flow (which skips to keyframes meanwhile) forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses a handshake whose `Origin` is not this server.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let same = match (origin, host) {
        // Not a browser (no Origin): nothing to hijack; credentials were checked.
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
    };
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a page of another origin may not open this server's video",
        ))
    }
}

/// Plays a camera over a WebSocket: live, or from `pos` at `speed`, through whichever server
/// is asked.
#[utoipa::path(
    get,
    path = "/api/cameras/{id}/video.ws",
    tag = "video",
    operation_id = "get_camera_video_ws",
    params(("id" = String, Path, description = "The camera's id."), VideoQuery),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 101, description = "A WebSocket: first a text message `{codec, start_us}`, then binary fragmented MP4 (init segment, one fragment per frame)."),
        (status = 400, description = "A bad id, `pos`, `speed` or `stream`, or not a WebSocket handshake.", body = ErrorBody),
        (status = 403, description = "The handshake came from another origin (`cross_origin`).", body = ErrorBody),
        (status = 404, description = "No such camera or stream.", body = ErrorBody),
        (status = 502, description = "The stream ended or was unusable before its first keyframe.", body = ErrorBody),
        (status = 503, description = "The camera's recorder cannot be reached now (`no_stream`), or the server is stopping.", body = ErrorBody),
        (status = 504, description = "No keyframe from the camera within 10 s (`no_video`).", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn video_ws(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VideoQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_origin(&headers)?;
    let upgrade = upgrade.map_err(|e| ApiError::bad_request(format!("not a WebSocket: {e}")))?;
    let opened = open_stream(&state, &id, &q).await?;
    let hello = serde_json::json!({ "codec": opened.codec(), "start_us": opened.start_us() });
    Ok(upgrade.max_message_size(4096).on_upgrade(move |socket| async move {
        if let Err(e) = play(socket, hello.to_string(), opened).await {
            tracing::debug!(error = %e, "video WebSocket ended");
        }
    }))
}

/// Why a WebSocket viewer was let go.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("the viewer read nothing for {} s", SEND_TIMEOUT.as_secs())]
    Stalled,
    #[error("{0}")]
    Socket(#[from] axum::Error),
}

async fn play(
    socket: WebSocket,
    hello: String,
    opened: super::video_mp4::Opened,
) -> Result<(), Ended> {
    let (mut tx, mut rx) = socket.split();
    send_within(&mut tx, Message::Text(hello.into())).await?;
    let mut chunks = std::pin::pin!(opened.fragments());
    loop {
        tokio::select! {
            chunk = chunks.next() => match chunk {
                Some(Ok(bytes)) => send_within(&mut tx, Message::Binary(bytes)).await?,
                _ => break,
            },
            // The browser sends nothing but a close (or pongs); any end of its side ends ours.
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Sends `message`, or gives up on a viewer that has read nothing for [`SEND_TIMEOUT`].
async fn send_within(
    tx: &mut SplitSink<WebSocket, Message>,
    message: Message,
) -> Result<(), Ended> {
    tokio::time::timeout(SEND_TIMEOUT, tx.send(message)).await.map_err(|_| Ended::Stalled)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_this_servers_own_pages_may_open_a_video_socket() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        assert!(check_origin(&headers).is_ok(), "no Origin: not a browser");
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://127.0.0.1:8443"));
        assert!(check_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert_eq!(check_origin(&headers).unwrap_err().code, "cross_origin");
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(check_origin(&headers).unwrap_err().code, "cross_origin");
    }
}
