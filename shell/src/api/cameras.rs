//! `/api/cameras`: list, add, change and remove cameras.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::{camera_url, parse_id, rules, ApiError, AppState, Body, Caller};

use crate::video::plane::VideoPlane;
use crate::video::status::CameraStatus;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hive_core::ids::{CameraId, ServerId};
use hive_core::node::{Command, Node};
use hive_core::resources::{CameraRecord, FailoverPriority, Key, Role, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest stream URL.
const URL_LEN_MAX: usize = 2048;

/// Failover priority as the API spells it: which cameras move first when a server fails.
#[derive(Clone, Copy, Serialize, Deserialize, ToSchema, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Never moves.
    Never,
    /// Moves last.
    Low,
    /// The default.
    Medium,
    /// Moves first.
    High,
}

impl From<Priority> for FailoverPriority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Never => FailoverPriority::Never,
            Priority::Low => FailoverPriority::Low,
            Priority::Medium => FailoverPriority::Medium,
            Priority::High => FailoverPriority::High,
        }
    }
}

impl From<FailoverPriority> for Priority {
    fn from(p: FailoverPriority) -> Self {
        match p {
            FailoverPriority::Never => Priority::Never,
            FailoverPriority::Low => Priority::Low,
            FailoverPriority::Medium => Priority::Medium,
            FailoverPriority::High => Priority::High,
        }
    }
}

/// A camera as the API shows it; a viewer sees its URLs without credentials.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct CameraView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Stream URL.
    pub url: String,
    /// Secondary (low-resolution) stream URL, if the camera has one.
    pub secondary_url: Option<String>,
    /// Where a client plays it over RTSP: on each address of the server recording it (add
    /// `?pos=<ms since epoch or ISO 8601>` for the archive, `?stream=1` for the secondary
    /// stream). Empty while nobody records it.
    pub rtsp_urls: Vec<String>,
    /// Server recording it now, as the answering server's view says (`null`: nobody, e.g.
    /// every server that could is down, or licenses ran out).
    pub server: Option<String>,
    /// Recording status of its primary stream, when the answering server records it.
    pub status: Option<CameraStatus>,
    /// Recording status of its secondary stream, when it has one and the answering server
    /// records it.
    pub secondary_status: Option<CameraStatus>,
    /// Server it returns to after failover.
    pub preferred_server: String,
    /// Failover priority.
    pub failover_priority: Priority,
    /// Whether it records.
    pub recording: bool,
}

impl CameraView {
    /// The camera as `caller` may see it: viewers never see its credentials.
    fn new(
        id: CameraId,
        c: &CameraRecord,
        node: &Node,
        caller: &Caller,
        plane: Option<&VideoPlane>,
    ) -> Self {
        let shown = |url: &str| match caller.role {
            Role::Owner | Role::Admin => url.to_owned(),
            Role::Viewer => camera_url::redacted(url),
        };
        let recorder = node.recorder_of(id);
        let here = plane.filter(|p| p.records(id));
        let status_of = |stream| here.and_then(|p| p.board.get_stream((id, stream)));
        CameraView {
            status: status_of(0),
            secondary_status: c.secondary_url.as_ref().and_then(|_| status_of(1)),
            id: id.to_string(),
            name: c.name.clone(),
            url: shown(&c.url),
            secondary_url: c.secondary_url.as_deref().map(shown),
            rtsp_urls: recorder.map(|s| rtsp_urls(node, s, id)).unwrap_or_default(),
            server: recorder.map(|s| s.to_string()),
            preferred_server: c.preferred.to_string(),
            failover_priority: c.failover_priority.into(),
            recording: c.recording,
        }
    }
}

/// The RTSP URLs of `camera` on each advertised address of `server`.
fn rtsp_urls(node: &Node, server: ServerId, camera: CameraId) -> Vec<String> {
    let Some(Value::Server(record)) = node.store().get(&Key::Server(server)) else {
        return Vec::new();
    };
    let Some(media) = record.media else { return Vec::new() };
    let scheme = if media.tls { "rtsps" } else { "rtsp" };
    record
        .addresses
        .iter()
        .filter_map(|a| a.0.rsplit_once(':'))
        .map(|(host, _link_port)| format!("{scheme}://{host}:{}/{camera}", media.port))
        .collect()
}

/// `POST /api/cameras`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCamera {
    /// Name, 1 to 200 bytes without control characters.
    name: String,
    /// Stream URL: `rtsp://`, `rtsps://`, `http://` or `https://`, credentials included, at
    /// most 2048 bytes.
    #[schema(example = "rtsp://admin:secret@10.0.0.5:554/stream1")]
    url: String,
    /// The secondary (low-resolution) stream's URL, if the camera has one.
    secondary_url: Option<String>,
    /// Server to record it (its preferred server); the answering one when absent.
    server: Option<String>,
    /// Failover priority; `medium` when absent.
    failover_priority: Option<Priority>,
    /// Whether it records; `true` when absent.
    recording: Option<bool>,
}

/// `PATCH /api/cameras/{id}`: fields to change; absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraChange {
    /// Name.
    name: Option<String>,
    /// Stream URL.
    url: Option<String>,
    /// A new secondary stream URL; `""` removes it.
    secondary_url: Option<String>,
    /// Preferred server: it records the camera and takes it back after failover.
    server: Option<String>,
    /// Failover priority.
    failover_priority: Option<Priority>,
    /// Whether it records.
    recording: Option<bool>,
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let scheme_ok =
        ["rtsp://", "rtsps://", "http://", "https://"].iter().any(|s| url.starts_with(s));
    let spaced = url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !scheme_ok || url.len() > URL_LEN_MAX || spaced {
        return Err(ApiError::bad_request(format!(
            "url {url:?} must be an rtsp:// or http(s):// URL without spaces, at most {URL_LEN_MAX} bytes"
        )));
    }
    Ok(())
}

/// Resolves a server id the caller named, which must be a server of the system.
async fn known_server(state: &AppState, text: &str) -> Result<ServerId, ApiError> {
    let id: ServerId = parse_id(text, "server")?;
    let known = state.handle.read(move |n| n.servers().any(|(s, _)| s == id)).await?;
    if !known {
        return Err(ApiError::bad_request(format!("server {text} is not in this system")));
    }
    Ok(id)
}

/// The cameras of the system.
///
/// With where each is recorded now, where a client plays it over RTSP, and, for cameras the
/// answering server records, their recording status.
#[utoipa::path(
    get,
    path = "/api/cameras",
    tag = "cameras",
    operation_id = "list_cameras",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "Every camera.", body = Vec<CameraView>), CallerRejections),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CameraView>>, ApiError> {
    let plane = state.video.upgrade();
    let cams = state
        .handle
        .read(move |n| {
            let plane = plane.as_deref();
            n.cameras().map(|(id, c)| CameraView::new(id, c, n, &caller, plane)).collect()
        })
        .await?;
    Ok(Json(cams))
}

/// How `caller` sees camera `id`.
async fn view(state: &AppState, id: CameraId, caller: Caller) -> Result<CameraView, ApiError> {
    let plane = state.video.upgrade();
    state
        .handle
        .read(move |n| match n.store().get(&Key::Camera(id)) {
            Some(Value::Camera(c)) => Some(CameraView::new(id, c, n, &caller, plane.as_deref())),
            _ => None,
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no camera {id}")))
}

async fn camera(state: &AppState, id: CameraId) -> Result<CameraRecord, ApiError> {
    state
        .handle
        .read(move |n| match n.store().get(&Key::Camera(id)) {
            Some(Value::Camera(c)) => Some(c.clone()),
            _ => None,
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no camera {id}")))
}

/// One camera.
#[utoipa::path(
    get,
    path = "/api/cameras/{id}",
    tag = "cameras",
    operation_id = "get_camera",
    params(("id" = String, Path, description = "The camera's id.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The camera.", body = CameraView),
        (status = 400, description = "The id is not a camera id.", body = ErrorBody),
        (status = 404, description = "No such camera.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CameraView>, ApiError> {
    let id: CameraId = parse_id(&id, "camera")?;
    Ok(Json(view(&state, id, caller).await?))
}

/// Add a camera (admin).
///
/// Its preferred server records it (the answering server unless `server` names another);
/// when that server fails, another takes it over in the order of `failover_priority`.
#[utoipa::path(
    post,
    path = "/api/cameras",
    tag = "cameras",
    operation_id = "create_camera",
    request_body = NewCamera,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 201, description = "The camera as added.", body = CameraView),
        (status = 400, description = "Malformed body, a bad name or URL, or a `server` not in the system.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewCamera>,
) -> Result<(StatusCode, Json<CameraView>), ApiError> {
    caller.require_admin()?;
    rules::check_camera_name(&new.name)?;
    check_url(&new.url)?;
    if let Some(url) = &new.secondary_url {
        check_url(url)?;
    }
    let server = match &new.server {
        Some(s) => known_server(&state, s).await?,
        None => state.handle.read(|n| n.identity().server).await?,
    };
    let id = CameraId(rand::random());
    let record = CameraRecord {
        name: new.name,
        url: new.url,
        secondary_url: new.secondary_url,
        preferred: server,
        failover_priority: new.failover_priority.unwrap_or(Priority::Medium).into(),
        recording: new.recording.unwrap_or(true),
        created_ms: state.handle.read(|n| n.system_time_ms()).await?,
    };
    state
        .handle
        .command(Command::Put { key: Key::Camera(id), value: Value::Camera(record) })
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, id, caller).await?)))
}

/// Change a camera (admin).
#[utoipa::path(
    patch,
    path = "/api/cameras/{id}",
    tag = "cameras",
    operation_id = "update_camera",
    params(("id" = String, Path, description = "The camera's id.")),
    request_body = CameraChange,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The camera as changed.", body = CameraView),
        (status = 400, description = "Malformed body or id, a bad name or URL, or a `server` not in the system.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such camera.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(change): Body<CameraChange>,
) -> Result<Json<CameraView>, ApiError> {
    caller.require_admin()?;
    let id: CameraId = parse_id(&id, "camera")?;
    let mut record = camera(&state, id).await?;
    if let Some(name) = change.name {
        rules::check_camera_name(&name)?;
        record.name = name;
    }
    if let Some(url) = change.url {
        check_url(&url)?;
        record.url = url;
    }
    match change.secondary_url.as_deref() {
        Some("") => record.secondary_url = None,
        Some(url) => {
            check_url(url)?;
            record.secondary_url = Some(url.to_owned());
        }
        None => {}
    }
    if let Some(server) = change.server {
        let server = known_server(&state, &server).await?;
        record.preferred = server;
    }
    if let Some(p) = change.failover_priority {
        record.failover_priority = p.into();
    }
    if let Some(r) = change.recording {
        record.recording = r;
    }
    state
        .handle
        .command(Command::Put { key: Key::Camera(id), value: Value::Camera(record) })
        .await?;
    Ok(Json(view(&state, id, caller).await?))
}

/// Remove a camera (admin): every server stops recording it.
#[utoipa::path(
    delete,
    path = "/api/cameras/{id}",
    tag = "cameras",
    operation_id = "delete_camera",
    params(("id" = String, Path, description = "The camera's id.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The id is not a camera id.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such camera.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let id: CameraId = parse_id(&id, "camera")?;
    state.handle.command(Command::Delete { key: Key::Camera(id) }).await?;
    Ok(StatusCode::NO_CONTENT)
}
