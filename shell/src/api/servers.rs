//! `/api/servers`: the system's servers with their failover settings and load, and
//! `PATCH /api/servers/{id}` to change those settings.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::time::bounded_us;
use super::{parse_id, ApiError, AppState, Body, Caller};
use axum::extract::{Path, State};
use axum::Json;
use hive_core::ids::ServerId;
use hive_core::node::{Command, Node};
use hive_core::resources::{Key, ServerRecord, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most cameras a server may be given.
pub const MAX_CAMERAS_MAX: u32 = 10_000;

/// A server of the system.
#[derive(Serialize, ToSchema)]
pub struct ServerView {
    /// Id.
    id: String,
    /// Human name.
    name: String,
    /// "online" when a route reaches it (or it is the answering server), else "offline".
    #[schema(value_type = String, examples("online", "offline"))]
    status: &'static str,
    /// Whether a route reaches it (or it is the answering server).
    online: bool,
    /// Where it accepts peer links (`host:port`).
    addresses: Vec<String>,
    /// Whether it is the answering server.
    is_self: bool,
    /// Whether it takes over cameras of a server that fails.
    failover_enabled: bool,
    /// How many cameras it may record, its own and taken over.
    max_cameras: u32,
    /// Preference for it as primary time server when none is chosen (higher first; a
    /// server with an external time source comes before any).
    time_priority: u32,
    /// Cameras it records now, as the answering server's view says.
    cameras_recording: u32,
    /// Its system time minus its wall clock, ms; only the answering server knows its own.
    time_offset_ms: Option<i64>,
    /// Bound on its time's error against the primary, µs; only for the answering server, and
    /// `null` while it has none (not synced yet).
    time_error_bound_us: Option<u64>,
    /// The hardware its license keys are bound to.
    hardware_id: String,
    /// When its current run began, system time in ms (its uptime), as it announced it;
    /// `null` before anything was heard of it.
    up_since_ms: Option<u64>,
    /// Its pinned link key (hex), once known: compare with the server's own log.
    link_key: Option<String>,
}

/// Every server of the system as `node` sees it.
pub fn server_views(node: &Node) -> Vec<ServerView> {
    let me = node.identity().server;
    let online = node.online_servers();
    let mut recording: BTreeMap<ServerId, u32> = BTreeMap::new();
    for (camera, _) in node.cameras() {
        if let Some(server) = node.recorder_of(camera) {
            *recording.entry(server).or_default() += 1;
        }
    }
    let time = node.time_status();
    node.servers()
        .map(|(id, r)| {
            let is_self = id == me;
            let up = is_self || online.contains(&id);
            ServerView {
                id: id.to_string(),
                name: r.name.clone(),
                status: if up { "online" } else { "offline" },
                online: up,
                addresses: r.addresses.iter().map(|a| a.0.clone()).collect(),
                is_self,
                failover_enabled: r.failover_enabled,
                max_cameras: r.max_cameras,
                time_priority: r.time_priority,
                cameras_recording: recording.get(&id).copied().unwrap_or(0),
                time_offset_ms: is_self.then_some(time.offset_from_wall_ms),
                time_error_bound_us: bounded_us(&time, me).filter(|_| is_self),
                hardware_id: r.hardware_id.0.clone(),
                up_since_ms: node.up_since_ms(id),
                link_key: node.pinned_key(id).map(|k| k.fingerprint()),
            }
        })
        .collect()
}

/// `PATCH /api/servers/{id}`: failover settings to change; absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerChange {
    /// Whether it takes over cameras of a server that fails.
    failover_enabled: Option<bool>,
    /// How many cameras it may record, its own and taken over.
    #[schema(maximum = 10_000)] // MAX_CAMERAS_MAX; a test checks they agree
    max_cameras: Option<u32>,
    /// Preference for it as primary time server when none is chosen (higher first).
    time_priority: Option<u32>,
}

/// The servers of the system with their failover settings and load.
///
/// Online or not, as the answering server sees them; its own entry also has its time offset
/// and error bound.
#[utoipa::path(
    get,
    path = "/api/servers",
    tag = "servers",
    operation_id = "list_servers",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "Every server of the system.", body = Vec<ServerView>), CallerRejections),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<ServerView>>, ApiError> {
    Ok(Json(state.handle.read(server_views).await?))
}

/// Change a server's failover settings (admin).
///
/// Whether it takes over cameras of failed servers, how many it may record, and its
/// preference as time server. The change reaches every server of the system.
#[utoipa::path(
    patch,
    path = "/api/servers/{id}",
    tag = "servers",
    operation_id = "update_server",
    params(("id" = String, Path, description = "The server's id.")),
    request_body = ServerChange,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The server as changed.", body = ServerView),
        (status = 400, description = "Malformed body or id, or `max_cameras` above its maximum.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such server.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(change): Body<ServerChange>,
) -> Result<Json<ServerView>, ApiError> {
    caller.require_admin()?;
    let id: ServerId = parse_id(&id, "server")?;
    if change.max_cameras.is_some_and(|m| m > MAX_CAMERAS_MAX) {
        return Err(ApiError::bad_request(format!(
            "max_cameras must be at most {MAX_CAMERAS_MAX}"
        )));
    }
    let mut record = server(&state, id).await?;
    if let Some(f) = change.failover_enabled {
        record.failover_enabled = f;
    }
    if let Some(m) = change.max_cameras {
        record.max_cameras = m;
    }
    if let Some(p) = change.time_priority {
        record.time_priority = p;
    }
    state
        .handle
        .command(Command::Put { key: Key::Server(id), value: Value::Server(record) })
        .await?;
    let text = id.to_string();
    state
        .handle
        .read(move |n| server_views(n).into_iter().find(|s| s.id == text))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no server {id}")))
}

async fn server(state: &AppState, id: ServerId) -> Result<ServerRecord, ApiError> {
    state
        .handle
        .read(move |n| match n.store().get(&Key::Server(id)) {
            Some(Value::Server(r)) => Some(r.clone()),
            _ => None,
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no server {id}")))
}
