//! `/api/settings`: the system's named text settings.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::{parse_id, ApiError, AppState, Body, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hive_core::ids::ServerId;
use hive_core::node::{Command, TIME_PRIMARY_SETTING};
use hive_core::resources::{Key, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Longest setting name and value.
const NAME_LEN_MAX: usize = 128;
const VALUE_LEN_MAX: usize = 64 * 1024;

/// `POST /api/settings`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSetting {
    /// 1 to 128 of `a-z`, `A-Z`, `0-9`, `_`, `.`, `-`.
    #[schema(example = "time_primary")]
    name: String,
    /// At most 64 KiB. `time_primary` takes a server id.
    value: String,
}

/// One setting.
#[derive(Serialize, ToSchema)]
pub struct SettingView {
    /// Its name.
    name: String,
    /// Its value.
    value: String,
}

fn check(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "setting name {name:?} must be 1 to {NAME_LEN_MAX} of a-z, 0-9, '_', '.', '-'"
        )));
    }
    if value.is_some_and(|v| v.len() > VALUE_LEN_MAX) {
        return Err(ApiError::bad_request(format!(
            "value of {name} exceeds {VALUE_LEN_MAX} bytes"
        )));
    }
    Ok(())
}

/// A setting whose value must name something: `time_primary` must be a server of the system.
async fn check_reference(
    state: &AppState,
    name: &str,
    value: Option<&str>,
) -> Result<(), ApiError> {
    let Some(value) = value.filter(|_| name == TIME_PRIMARY_SETTING) else { return Ok(()) };
    let server: ServerId = parse_id(value, "server")?;
    let known = state.handle.read(move |n| n.servers().any(|(s, _)| s == server)).await?;
    if !known {
        return Err(ApiError::bad_request(format!(
            "{TIME_PRIMARY_SETTING}: server {value} is not in this system"
        )));
    }
    Ok(())
}

async fn put(state: &AppState, name: String, value: Option<String>) -> Result<(), ApiError> {
    let system = state.handle.read(|n| n.identity().system).await?;
    let key = Key::Setting { system, name };
    let cmd = match value {
        Some(v) => Command::Put { key, value: Value::Setting(v) },
        None => Command::Delete { key },
    };
    state.handle.command(cmd).await?;
    Ok(())
}

/// Every setting of the system, by name.
#[utoipa::path(
    get,
    path = "/api/settings",
    tag = "settings",
    operation_id = "list_settings",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "Name to value.", body = BTreeMap<String, String>), CallerRejections),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    Ok(Json(state.handle.read(|n| n.settings()).await?))
}

/// One setting.
#[utoipa::path(
    get,
    path = "/api/settings/{name}",
    tag = "settings",
    operation_id = "get_setting",
    params(("name" = String, Path, description = "The setting's name.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The setting.", body = SettingView),
        (status = 404, description = "No such setting.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<SettingView>, ApiError> {
    let lookup = name.clone();
    let value = state.handle.read(move |n| n.setting(&lookup).map(str::to_owned)).await?;
    match value {
        Some(value) => Ok(Json(SettingView { name, value })),
        None => Err(ApiError::not_found(format!("no setting {name}"))),
    }
}

/// Set one setting (admin).
///
/// Creates or replaces it system-wide. `time_primary` chooses the primary time server.
#[utoipa::path(
    post,
    path = "/api/settings",
    tag = "settings",
    operation_id = "set_setting",
    request_body = NewSetting,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 201, description = "The setting as set.", body = SettingView),
        (status = 400, description = "Malformed body, a bad name, a value too long, or a `time_primary` that is not a server of the system.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewSetting>,
) -> Result<(StatusCode, Json<SettingView>), ApiError> {
    caller.require_admin()?;
    check(&new.name, Some(&new.value))?;
    check_reference(&state, &new.name, Some(&new.value)).await?;
    put(&state, new.name.clone(), Some(new.value.clone())).await?;
    Ok((StatusCode::CREATED, Json(SettingView { name: new.name, value: new.value })))
}

/// Set or remove several settings at once (admin).
///
/// `{ name: value | null, ... }`: a value sets, `null` removes. Every name and value is
/// checked before any is written.
#[utoipa::path(
    patch,
    path = "/api/settings",
    tag = "settings",
    operation_id = "update_settings",
    request_body(content = BTreeMap<String, Option<String>>, description = "Name to new value, or `null` to remove."),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "Every setting after the change.", body = BTreeMap<String, String>),
        (status = 400, description = "Malformed body, a bad name, a value too long, or a `time_primary` that is not a server of the system.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Body(changes): Body<BTreeMap<String, Option<String>>>,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    caller.require_admin()?;
    for (name, value) in &changes {
        check(name, value.as_deref())?;
        check_reference(&state, name, value.as_deref()).await?;
    }
    for (name, value) in changes {
        put(&state, name, value).await?;
    }
    Ok(Json(state.handle.read(|n| n.settings()).await?))
}

/// Remove a setting (admin).
#[utoipa::path(
    delete,
    path = "/api/settings/{name}",
    tag = "settings",
    operation_id = "delete_setting",
    params(("name" = String, Path, description = "The setting's name.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "A bad name.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        (status = 404, description = "No such setting.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    check(&name, None)?;
    put(&state, name, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
