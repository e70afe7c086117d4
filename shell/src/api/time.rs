//! `GET /api/time`: this server's system time and where it comes from; `GET /api/routes`:
//! how this server reaches the others.

use super::openapi::CallerRejections;
use super::{ApiError, AppState, Caller};
use axum::extract::State;
use axum::Json;
use hive_core::ids::ServerId;
use hive_core::node::{Node, TimeSource, TimeStatus, TIME_PRIMARY_SETTING};
use serde::Serialize;
use utoipa::ToSchema;

/// This server's time.
#[derive(Serialize, ToSchema)]
pub struct TimeView {
    /// The answering server.
    server: String,
    /// System time now, ms since the Unix epoch.
    system_ms: u64,
    /// System time minus this machine's wall clock, ms.
    offset_from_wall_ms: i64,
    /// Bound on the difference from the primary's time, µs; `null` while there is none
    /// (not synced yet).
    error_bound_us: Option<u64>,
    /// The primary time server of the system.
    primary: String,
    /// The primary an administrator chose (setting `time_primary`), if any; it is the
    /// primary while it is online.
    primary_chosen: Option<String>,
    /// "own" (the primary on its own clock), "external" (the primary following NTP) or
    /// "primary" (following the primary).
    #[schema(value_type = String, examples("own", "external", "primary"))]
    source: &'static str,
    /// Whether it has synchronized; before that it runs on its provisional time.
    synced: bool,
}

fn time_view(node: &Node, t: TimeStatus) -> TimeView {
    TimeView {
        server: node.identity().server.to_string(),
        system_ms: t.system_ms,
        offset_from_wall_ms: t.offset_from_wall_ms,
        error_bound_us: bounded_us(&t, node.identity().server),
        primary: t.primary.to_string(),
        primary_chosen: node.setting(TIME_PRIMARY_SETTING).map(str::to_owned),
        source: match t.source {
            TimeSource::Own => "own",
            TimeSource::External => "external",
            TimeSource::Primary(_) => "primary",
        },
        synced: t.synced,
    }
}

/// The error bound as the API shows it: 0 for the primary itself (its time is the system's,
/// though the core reports it unbounded), `None` for a follower not synced yet.
pub fn bounded_us(t: &TimeStatus, me: ServerId) -> Option<u64> {
    if t.primary == me {
        return Some(0);
    }
    (t.error_bound_us != u64::MAX).then_some(t.error_bound_us)
}

/// The system time on this server and where it comes from.
///
/// Every server keeps one system time, set by the primary time server; recordings and
/// archive positions are stamped with it. Shows how far it is from this machine's clock and
/// how close to the primary's.
#[utoipa::path(
    get,
    path = "/api/time",
    tag = "system",
    operation_id = "get_time",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "This server's time.", body = TimeView), CallerRejections),
)]
pub async fn get_time(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<TimeView>, ApiError> {
    let status = state.handle.time().await?;
    Ok(Json(state.handle.read(move |n| time_view(n, status)).await?))
}

/// A route to another server.
#[derive(Serialize, ToSchema)]
pub struct RouteView {
    /// The server reached.
    server: String,
    /// Links on the way.
    hops: u8,
    /// The neighbour the route goes through.
    via: String,
}

/// How this server reaches the other servers.
///
/// Servers that cannot link directly reach each other through others; each route names the
/// neighbour it goes through. A server missing here is unreachable from this one.
#[utoipa::path(
    get,
    path = "/api/routes",
    tag = "servers",
    operation_id = "list_routes",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "A route to each server reached.", body = Vec<RouteView>), CallerRejections),
)]
pub async fn routes(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<RouteView>>, ApiError> {
    let routes = state
        .handle
        .read(|n| {
            n.routes()
                .iter()
                .map(|(server, r)| RouteView {
                    server: server.to_string(),
                    hops: r.hops,
                    via: r.via.to_string(),
                })
                .collect()
        })
        .await?;
    Ok(Json(routes))
}
