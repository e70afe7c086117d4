//! `GET /api/system` and the unauthenticated `GET /api/hello`.

use super::servers::{server_views, ServerView};
use super::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::Json;
use hive_core::resources::{Key, Value};
use serde::Serialize;

/// Another system seen on the network.
#[derive(Serialize)]
pub struct OtherSystemView {
    id: String,
    name: String,
    servers: Vec<String>,
    /// Why it is not this system ("another system secret", "protocol 2, …: upgrade it").
    reason: String,
}

/// Licensed channels against cameras recording.
#[derive(Serialize)]
pub struct LicenseSummary {
    total: u64,
    used: u64,
}

/// The system as this server sees it.
#[derive(Serialize)]
pub struct SystemView {
    id: String,
    name: String,
    server_id: String,
    servers: Vec<ServerView>,
    /// The primary time server.
    time_primary: String,
    licenses: LicenseSummary,
    other_systems: Vec<OtherSystemView>,
}

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
#[derive(Serialize, serde::Deserialize)]
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
