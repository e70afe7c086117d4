//! `GET /api/system` and the unauthenticated `GET /api/hello`.

use super::openapi::{CallerRejections, Unavailable};
use super::servers::{server_views, ServerView};
use super::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::Json;
use hive_core::resources::{Key, Value};
use serde::Serialize;
use utoipa::ToSchema;

/// Another system seen on the network.
#[derive(Serialize, ToSchema)]
pub struct OtherSystemView {
    /// Its id.
    id: String,
    /// Its name.
    name: String,
    /// Its servers seen.
    servers: Vec<String>,
    /// Why it is not this system ("another system secret", "protocol 2, …: upgrade it").
    reason: String,
}

/// Licensed channels against cameras recording.
#[derive(Serialize, ToSchema)]
pub struct LicenseSummary {
    /// Channels the counted keys grant.
    total: u64,
    /// Cameras recording.
    used: u64,
}

/// The system as this server sees it.
#[derive(Serialize, ToSchema)]
pub struct SystemView {
    /// The system's id.
    id: String,
    /// The system's name.
    name: String,
    /// The answering server.
    server_id: String,
    /// Every server of the system.
    servers: Vec<ServerView>,
    /// The primary time server.
    time_primary: String,
    /// Licenses against use.
    licenses: LicenseSummary,
    /// Systems seen on the network that this one is not (candidates for a merge).
    other_systems: Vec<OtherSystemView>,
}

/// The system: its servers, licenses, time primary and other systems nearby.
///
/// One call for a dashboard: the answering server's view of the whole system.
#[utoipa::path(
    get,
    path = "/api/system",
    tag = "system",
    operation_id = "get_system",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "The system.", body = SystemView), CallerRejections),
)]
pub async fn get_system(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<SystemView>, ApiError> {
    let view = state
        .handle
        .read(|node| {
            let me = node.identity().server;
            let servers = server_views(node);
            let licenses = node.license_status();
            SystemView {
                id: node.identity().system.to_string(),
                name: node.identity().name.as_str().to_owned(),
                server_id: me.to_string(),
                servers,
                time_primary: node.primary_time_server().to_string(),
                licenses: LicenseSummary { total: licenses.total, used: licenses.used },
                other_systems: node
                    .other_systems()
                    .into_iter()
                    .map(|o| OtherSystemView {
                        id: o.system.to_string(),
                        name: o.name.as_str().to_owned(),
                        servers: o.servers.iter().map(|s| s.to_string()).collect(),
                        reason: o.reason,
                    })
                    .collect(),
            }
        })
        .await?;
    Ok(Json(view))
}

/// What anyone on the network may learn (as much as a beacon tells): enough to merge by URL.
#[derive(Serialize, serde::Deserialize, ToSchema)]
pub struct Hello {
    /// This server.
    pub server_id: String,
    /// Its system's name.
    pub system_name: String,
    /// Where it accepts peer links.
    pub peer_addresses: Vec<String>,
    /// Software version.
    pub version: String,
}

/// Who this server is, without credentials.
///
/// Its id, system name, peer addresses and version: what its discovery beacon tells anyone
/// on the network. Another system's owner merges by URL with it; a client checks it reached a
/// Hive server.
#[utoipa::path(
    get,
    path = "/api/hello",
    tag = "system",
    operation_id = "hello",
    responses((status = 200, description = "This server.", body = Hello), Unavailable),
)]
pub async fn hello(State(state): State<AppState>) -> Result<Json<Hello>, ApiError> {
    let hello = state
        .handle
        .read(|node| {
            let me = node.identity().server;
            Hello {
                server_id: me.to_string(),
                system_name: node.identity().name.as_str().to_owned(),
                peer_addresses: match node.store().get(&Key::Server(me)) {
                    Some(Value::Server(r)) => r.addresses.iter().map(|a| a.0.clone()).collect(),
                    _ => Vec::new(),
                },
                version: env!("CARGO_PKG_VERSION").to_owned(),
            }
        })
        .await?;
    Ok(Json(hello))
}
