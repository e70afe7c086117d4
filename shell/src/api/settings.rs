//! `/api/settings`: the system's named text settings.

use super::{parse_id, ApiError, AppState, Body, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hive_core::ids::ServerId;
use hive_core::node::{Command, TIME_PRIMARY_SETTING};
use hive_core::resources::{Key, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest setting name and value.
const NAME_LEN_MAX: usize = 128;
const VALUE_LEN_MAX: usize = 64 * 1024;

/// `POST /api/settings`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSetting {
    name: String,
    value: String,
}

/// One setting.
#[derive(Serialize)]
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

pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    Ok(Json(state.handle.read(|n| n.settings()).await?))
}

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

/// `PATCH /api/settings { name: value | null, ... }`: sets or (null) removes several at once.
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
