//! System-wide operations: merge with another system, split this server off, rename
//! (merge-all), and backups.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::system::Hello;
use super::{ApiError, AppState, Body, Caller};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use hive_core::ids::{PeerAddr, SystemName};
use hive_core::node::{Command, Keep, Reply};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;

/// Which side's name, settings and administrator win a merge.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KeepSide {
    /// This system's.
    Local,
    /// The other system's.
    Remote,
}

/// `POST /api/merge`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The other server: `https://host:port` (or `http://`) of its API, or `host:port` of
    /// its peer port.
    #[schema(examples("https://10.0.0.7:8443", "10.0.0.7:7700"))]
    url: String,
    /// An owner or admin of the other system.
    user: String,
    /// Their password; it never leaves this server (an OPAQUE login).
    password: String,
    /// Which side's name, settings and administrator win.
    keep: KeepSide,
}

/// `POST /api/split` and `POST /api/system/rename`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    /// A system name.
    name: String,
}

/// `POST /api/merge`: the two systems are one.
#[derive(Serialize, ToSchema)]
pub struct Merged {
    /// Always `true`.
    merged: bool,
    /// The id of the merged system.
    system: String,
}

/// `POST /api/split`: this server's new system.
#[derive(Serialize, ToSchema)]
pub struct SplitOff {
    /// Its id.
    system: String,
    /// Its name.
    name: String,
}

/// `POST /api/system/rename`: the system's new name.
#[derive(Serialize, ToSchema)]
pub struct Renamed {
    /// The name.
    name: String,
}

/// `POST /api/link-key`: this server's new link key.
#[derive(Serialize, ToSchema)]
pub struct LinkKey {
    /// Its fingerprint: compare with the server's log.
    link_key: String,
}

/// `POST /api/system/secret`: the new system secret as a join token.
#[derive(Serialize, ToSchema)]
pub struct JoinToken {
    /// What a server offline meanwhile, or a new one, is started with (`HIVE_SECRET` or
    /// `--secret`). Shown this once.
    join_token: String,
}

/// A reply the node does not give to this command: an internal error, not a success.
fn unexpected(command: &str, reply: Reply) -> ApiError {
    let message = format!("unexpected reply to {command}: {reply:?}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

fn system_name(name: String) -> Result<SystemName, ApiError> {
    SystemName::new(name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The peer address of the server at `url`: asked of its API for an `https://` or `http://`
/// URL.
///
/// The lookup accepts whatever certificate the other server presents (a self-signed one,
/// most likely, which this server has never seen): its `/api/hello` answer is public, no
/// credential is sent with it, and the merge itself is authenticated on the peer link, so a
/// man in the middle gains nothing here he could not learn by asking himself.
async fn peer_address(state: &AppState, url: &str) -> Result<PeerAddr, ApiError> {
    let url = url.trim().trim_end_matches('/');
    if let Ok(addr) = url.parse::<SocketAddr>() {
        return Ok(PeerAddr(addr.to_string()));
    }
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return Err(ApiError::bad_request(format!(
            "url {url:?} must be https://HOST:PORT (or http://) of a server's API or IP:PORT of its peer port"
        )));
    };
    let unreachable = |e: String| {
        ApiError::new(StatusCode::BAD_GATEWAY, "unreachable", format!("cannot ask {url}: {e}"))
    };
    let hello: Hello = state
        .client
        .get(format!("{url}/api/hello"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| unreachable(e.to_string()))?
        .json()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let host_ip = host.parse::<SocketAddr>().map(|a| a.ip()).ok();
    hello
        .peer_addresses
        .iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(|a| match host_ip {
            // A server listening on all interfaces is dialled where its API answered.
            Some(ip) if a.ip().is_unspecified() => SocketAddr::new(ip, a.port()),
            _ => a,
        })
        .find(|a| !a.ip().is_unspecified())
        .map(|a| PeerAddr(a.to_string()))
        .ok_or_else(|| unreachable("it advertises no usable peer address".into()))
}

/// Merge with another system (owner).
///
/// Logs in to the other system as one of its administrators (OPAQUE: the password never
/// leaves this server) and makes the two one system: servers, cameras, users, settings and
/// licenses. `keep` chooses whose name, settings and administrator win. Answers when the
/// merge is done.
#[utoipa::path(
    post,
    path = "/api/merge",
    tag = "admin",
    operation_id = "merge",
    request_body = MergeRequest,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The systems are one.", body = Merged),
        (status = 400, description = "Malformed body, or a `url` that is neither an API URL nor a peer address.", body = ErrorBody),
        (status = 403, description = "The caller is not the owner (`forbidden`), or the other system refused `user` and `password` (`remote_credentials_rejected`).", body = ErrorBody),
        (status = 409, description = "The other system refused the merge (`merge_refused`), or a merge with it is running (`merge_in_progress`).", body = ErrorBody),
        (status = 502, description = "The other server could not be reached (`unreachable`).", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn merge(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<MergeRequest>,
) -> Result<Json<Merged>, ApiError> {
    caller.require_owner()?;
    let addr = peer_address(&state, &req.url).await?;
    tracing::info!(%addr, user = ?req.user, keep = ?req.keep, "merge requested");
    let keep = match req.keep {
        KeepSide::Local => Keep::Local,
        KeepSide::Remote => Keep::Remote,
    };
    let cmd = Command::Merge { addr, user: req.user, password: req.password, keep };
    match state.handle.command(cmd).await? {
        Reply::Merged { system } => Ok(Json(Merged { merged: true, system: system.to_string() })),
        other => Err(unexpected("a merge", other)),
    }
}

/// Split this server off into a new system (owner).
///
/// This server leaves with the cameras it prefers and the licenses bound to it, and starts
/// a new system of that name with a copy of the users; the others forget it.
#[utoipa::path(
    post,
    path = "/api/split",
    tag = "admin",
    operation_id = "split",
    request_body = NameRequest,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "This server's new system.", body = SplitOff),
        (status = 400, description = "Malformed body or system name.", body = ErrorBody),
        (status = 403, description = "The caller is not the owner.", body = ErrorBody),
        (status = 409, description = "The name is the current system's (`name_unchanged`).", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn split(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<NameRequest>,
) -> Result<Json<SplitOff>, ApiError> {
    caller.require_owner()?;
    let name = system_name(req.name)?;
    match state.handle.command(Command::Split { name: name.clone() }).await? {
        Reply::Split { system } => {
            Ok(Json(SplitOff { system: system.to_string(), name: name.as_str().to_owned() }))
        }
        other => Err(unexpected("a split", other)),
    }
}

/// Rename the system (owner).
///
/// Every server of the system takes the new name. If another system on the network has that
/// name and the same secret, the two merge by themselves (merge-all).
#[utoipa::path(
    post,
    path = "/api/system/rename",
    tag = "admin",
    operation_id = "rename_system",
    request_body = NameRequest,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The new name.", body = Renamed),
        (status = 400, description = "Malformed body or system name.", body = ErrorBody),
        (status = 403, description = "The caller is not the owner.", body = ErrorBody),
        (status = 409, description = "The name is the current one (`name_unchanged`).", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<NameRequest>,
) -> Result<Json<Renamed>, ApiError> {
    caller.require_owner()?;
    let name = system_name(req.name)?;
    state.handle.command(Command::Rename { name: name.clone() }).await?;
    Ok(Json(Renamed { name: name.as_str().to_owned() }))
}

/// A backup of this server (owner).
///
/// A consistent snapshot of this server's replica and identity, taken between two events.
/// It holds the system secret and every password verifier, enough to make oneself owner:
/// only the owner may take one, and it must be kept as carefully.
#[utoipa::path(
    get,
    path = "/api/backup",
    tag = "admin",
    operation_id = "backup",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The snapshot, as the attachment `hive-backup.snapshot`.", content(("application/octet-stream"))),
        (status = 403, description = "The caller is not the owner.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn backup(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_owner()?;
    let bytes = state.handle.read(|n| n.snapshot().encode()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"hive-backup.snapshot\""),
        ],
        bytes,
    ))
}

/// Replace this server's link key (owner).
///
/// The new public key is pinned system-wide over the current links, then every link is made
/// again with it. Use it when a server's data directory or a backup may have leaked.
#[utoipa::path(
    post,
    path = "/api/link-key",
    tag = "admin",
    operation_id = "replace_link_key",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The new key's fingerprint.", body = LinkKey),
        (status = 403, description = "The caller is not the owner.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn replace_link_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<LinkKey>, ApiError> {
    caller.require_owner()?;
    let pair = crate::driver::channel::Entropy::Os.generate_keypair();
    match state.handle.command(Command::ReplaceLinkKey { pair }).await? {
        Reply::LinkKey(public) => {
            tracing::warn!(key = %public.fingerprint(), user = ?caller.name, "link key replaced");
            Ok(Json(LinkKey { link_key: public.fingerprint() }))
        }
        other => Err(unexpected("a new link key", other)),
    }
}

/// Replace the system secret (owner).
///
/// A new random secret, answered as its join token, shown this once. Every server online
/// takes it over its encrypted link; a server offline meanwhile must be restarted with the
/// new token. Use it when the old token may have leaked.
#[utoipa::path(
    post,
    path = "/api/system/secret",
    tag = "admin",
    operation_id = "replace_secret",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The new join token.", body = JoinToken),
        (status = 403, description = "The caller is not the owner.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn replace_secret(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<JoinToken>, ApiError> {
    caller.require_owner()?;
    let secret = hive_core::auth::Secret::from_bytes(rand::random());
    let token = secret.token();
    state.handle.command(Command::ReplaceSecret { secret }).await?;
    tracing::warn!(user = ?caller.name, "system secret replaced");
    Ok(Json(JoinToken { join_token: token }))
}
