//! Camera video on this server: recording status and recorded ranges.

use super::{ApiError, AppState, Caller};
use axum::extract::{Path, Query, State};
use axum::Json;
use hive_core::ids::CameraId;
use serde::{Deserialize, Serialize};

use super::parse_id;

/// `GET /api/cameras/{id}/status`.
#[derive(Serialize)]
pub struct StatusView {
    /// The camera.
    pub camera: String,
    /// The server recording it now, as this server's view says.
    pub recorder: Option<String>,
    /// Whether this server records it.
    pub recording_here: bool,
    /// This server's recording status of it (`null` if it never recorded it since start).
    pub status: Option<crate::video::status::CameraStatus>,
}

fn plane(state: &AppState) -> Result<std::sync::Arc<crate::video::plane::VideoPlane>, ApiError> {
    state.video.upgrade().ok_or_else(|| ApiError::from(crate::server::handle::Stopped))
}

/// The camera's recording status on this server.
pub async fn status(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let id: CameraId = parse_id(&id, "camera")?;
    let (known, recorder) =
        state.handle.read(move |n| (n.cameras().any(|(c, _)| c == id), n.recorder_of(id))).await?;
    if !known {
        return Err(ApiError::not_found(format!("no camera {id}")));
    }
    let plane = plane(&state)?;
    Ok(Json(StatusView {
        camera: id.to_string(),
        recorder: recorder.map(|s| s.to_string()),
        recording_here: plane.records(id),
        status: plane.board.get(id),
    }))
}

/// `?from=&to=` in ms since the epoch (default: everything).
#[derive(Deserialize)]
pub struct RangeQuery {
    from: Option<i64>,
    to: Option<i64>,
    stream: Option<u8>,
}

/// One recorded range, ms since the epoch.
#[derive(Serialize)]
pub struct RangeView {
    /// First frame.
    pub from_ms: i64,
    /// Last frame.
    pub to_ms: i64,
}

/// `GET /api/cameras/{id}/archive`.
#[derive(Serialize)]
pub struct ArchiveView {
    /// The camera.
    pub camera: String,
    /// Recorded ranges across the hive, oldest first; the spaces between are gaps.
    pub ranges: Vec<RangeView>,
}

/// The camera's recorded ranges across the hive: this server's archive merged with those of
/// every server that recorded the camera (asked through the hive; one that cannot be reached
/// leaves its ranges out).
pub async fn archive(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<ArchiveView>, ApiError> {
    let id: CameraId = parse_id(&id, "camera")?;
    let plane = plane(&state)?;
    let from_us = q.from.unwrap_or(0).saturating_mul(1_000);
    let to_us = q.to.unwrap_or(i64::MAX / 1_000).saturating_mul(1_000);
    let stream = q.stream.unwrap_or(0);
    let ranges: Vec<(i64, i64)> = match plane.hive.get().and_then(std::sync::Weak::upgrade) {
        Some(hive) => hive.ranges(id, stream, from_us, to_us).await,
        None => plane
            .archive
            .ranges(id, stream, from_us, to_us)
            .into_iter()
            .map(|r| (r.from_us, r.to_us))
            .collect(),
    };
    let ranges = ranges
        .into_iter()
        .map(|(from_us, to_us)| RangeView { from_ms: from_us / 1_000, to_ms: to_us / 1_000 })
        .collect();
    Ok(Json(ArchiveView { camera: id.to_string(), ranges }))
}
