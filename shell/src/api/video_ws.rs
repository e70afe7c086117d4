//! `GET /api/cameras/{id}/video.ws`: the same fragmented MP4 as `video.mp4`, over a WebSocket.
//!
//! A browser opens at most six HTTP/1.1 connections to one server, and the event stream holds
//! one: a grid of more cameras would wait. WebSockets do not count against that pool, so the
//! grid plays each camera over one. The first message is text, `{"codec", "start_us"}`; every
//! later one is binary, the init segment then one fragment per frame.
//!
//! A WebSocket is not bound by the same-origin policy: another site's page could open one
//! with the user's cached Basic credentials, or with the cookie if it went cross-site
//! (SameSite=Strict keeps it home), so the handshake must also come from this server's own
//! origin (cross-site WebSocket hijacking; [`super::same_origin`] checks every handshake, and
//! this handler once more). A viewer sends nothing but a close, so its frames are held to
//! [`INCOMING_BYTES_MAX`]: a frame is buffered whole before its size is judged.

use super::error::ErrorBody;
use super::openapi::CallerRejections;
use super::same_origin;
use super::video_mp4::{open_stream, VideoQuery};
use super::{ApiError, AppState, Caller};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use std::time::Duration;

/// Longest one message may wait to be sent before the viewer is dropped: a client that reads
/// nothing must not hold the flow (which skips to keyframes meanwhile) forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame or message a viewer may send.
pub const INCOMING_BYTES_MAX: usize = 4096;

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
        (status = 503, description = "The camera's recorder cannot be reached now (`no_stream`), too many video streams on this server or of this user (`too_many_streams`), or the server is stopping.", body = ErrorBody),
        (status = 504, description = "No keyframe from the camera within 10 s (`no_video`).", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn video_ws(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VideoQuery>,
    connection: crate::server::http::ConnectionHold,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    same_origin::check(&headers)?;
    let upgrade = upgrade.map_err(|e| ApiError::bad_request(format!("not a WebSocket: {e}")))?;
    let opened = open_stream(&state, caller, &id, &q).await?;
    let hello = serde_json::json!({ "codec": opened.codec(), "start_us": opened.start_us() });
    let upgrade = upgrade.max_frame_size(INCOMING_BYTES_MAX).max_message_size(INCOMING_BYTES_MAX);
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The socket leaves hyper's connection here: it keeps the connection's slot itself.
        let _connection = connection;
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
