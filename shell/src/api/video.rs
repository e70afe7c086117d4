//! Camera video on this server: recording status and recorded ranges.

use super::error::ErrorBody;
use super::openapi::CallerRejections;
use super::{ApiError, AppState, Caller};
use axum::extract::{Path, Query, State};
use axum::Json;
use hive_core::ids::CameraId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::parse_id;

/// `GET /api/cameras/{id}/status`.
#[derive(Serialize, ToSchema)]
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

/// A camera's recording status on the answering server.
///
/// Which server records it now, and whether and how well the answering server does. Ask the
/// recording server for its status.
#[utoipa::path(
    get,
    path = "/api/cameras/{id}/status",
    tag = "video",
    operation_id = "get_camera_status",
    params(("id" = String, Path, description = "The camera's id.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The camera's status here.", body = StatusView),
        (status = 400, description = "The id is not a camera id.", body = ErrorBody),
        (status = 404, description = "No such camera.", body = ErrorBody),
        CallerRejections,
    ),
)]
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
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Earliest time of interest, ms since the epoch; the beginning when absent.
    from: Option<i64>,
    /// Latest time of interest, ms since the epoch; the end when absent.
    to: Option<i64>,
    /// 0 for the primary stream (the default), 1 for the secondary one.
    stream: Option<u8>,
}

/// One recorded range, ms since the epoch.
#[derive(Serialize, ToSchema)]
pub struct RangeView {
    /// First frame.
    pub from_ms: i64,
    /// Last frame.
    pub to_ms: i64,
}

/// `GET /api/cameras/{id}/archive`.
#[derive(Serialize, ToSchema)]
pub struct ArchiveView {
    /// The camera.
    pub camera: String,
    /// Recorded ranges across the hive, oldest first; the spaces between are gaps.
    pub ranges: Vec<RangeView>,
    /// The same per server that recorded them, oldest first (ranges of two servers overlap
    /// where a failover handed the camera over): for a timeline that tells servers apart.
    pub by_server: Vec<ServerRangeView>,
}

/// A range one server recorded, ms since the epoch.
#[derive(Serialize, ToSchema)]
pub struct ServerRangeView {
    /// The server that holds it.
    pub server: String,
    /// First frame.
    pub from_ms: i64,
    /// Last frame.
    pub to_ms: i64,
}

/// What is recorded of a camera, across the system.
///
/// The recorded ranges of every server that recorded the camera, merged (a server that
/// cannot be reached leaves its ranges out): a timeline to seek in. Gaps between ranges are
/// times nothing was recorded.
#[utoipa::path(
    get,
    path = "/api/cameras/{id}/archive",
    tag = "video",
    operation_id = "get_camera_archive",
    params(("id" = String, Path, description = "The camera's id."), RangeQuery),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The recorded ranges, oldest first.", body = ArchiveView),
        (status = 400, description = "The id is not a camera id, or a query value is not a number.", body = ErrorBody),
        CallerRejections,
    ),
)]
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
    let by_server = match plane.hive.get().and_then(std::sync::Weak::upgrade) {
        Some(hive) => hive.ranges_by_server(id, stream, from_us, to_us).await,
        None => {
            let here = plane.archive.ranges(id, stream, from_us, to_us);
            let here: Vec<(i64, i64)> = here.into_iter().map(|r| (r.from_us, r.to_us)).collect();
            let me = state.handle.read(|n| n.identity().server).await?;
            vec![(me, here)]
        }
    };
    let merged = crate::video::relay::merge_ranges(
        by_server.iter().flat_map(|(_, ranges)| ranges.iter().copied()).collect(),
    );
    let ranges = merged
        .into_iter()
        .map(|(from_us, to_us)| RangeView { from_ms: from_us / 1_000, to_ms: to_us / 1_000 })
        .collect();
    let mut by_server: Vec<ServerRangeView> = by_server
        .into_iter()
        .flat_map(|(server, ranges)| {
            ranges.into_iter().map(move |(from_us, to_us)| ServerRangeView {
                server: server.to_string(),
                from_ms: from_us / 1_000,
                to_ms: to_us / 1_000,
            })
        })
        .collect();
    by_server.sort_by_key(|r| (r.from_ms, r.to_ms));
    Ok(Json(ArchiveView { camera: id.to_string(), ranges, by_server }))
}
