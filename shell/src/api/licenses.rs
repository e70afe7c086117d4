//! `/api/licenses`: the keys of the system and what they add up to.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::{ApiError, AppState, Body, Caller};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hive_core::licenses::{LicenseKey, ShortfallState};
use hive_core::node::Command;
use hive_core::resources::{Key, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One key.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct KeyView {
    /// Id.
    pub id: String,
    /// Channels it grants.
    pub channels: u32,
    /// Hardware it is bound to.
    pub hardware_id: String,
    /// Whether it counts now: vendor-signed and bound to a server that is online.
    pub counted: bool,
    /// The key as text.
    pub key: String,
}

/// The system's licenses.
#[derive(Serialize, ToSchema)]
pub struct LicensesView {
    /// Channels the counted keys grant.
    total: u64,
    /// Cameras recording.
    used: u64,
    /// Whether the system is short of licenses, and since when.
    state: LicenseState,
    /// Cameras stopped for want of licenses.
    stopped_cameras: Vec<String>,
    /// Every key of the system.
    keys: Vec<KeyView>,
}

/// Where the system stands with its licenses. Times are ms since the epoch.
// The core's `ShortfallState` as the API spells it, in the same JSON (a test checks).
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LicenseState {
    /// Enough licenses.
    Within,
    /// Short of licenses from `since_ms`, which is now.
    Started {
        /// When the shortfall began.
        since_ms: u64,
    },
    /// Short of licenses, but every camera keeps recording until `ends_ms`.
    InGrace {
        /// When the shortfall began.
        since_ms: u64,
        /// When the grace period ends and the excess cameras stop.
        ends_ms: u64,
    },
    /// The grace period is over: `excess` cameras are stopped.
    Expired {
        /// When the shortfall began.
        since_ms: u64,
        /// Cameras recording beyond the licensed total.
        excess: u64,
    },
}

impl From<ShortfallState> for LicenseState {
    fn from(s: ShortfallState) -> Self {
        match s {
            ShortfallState::Within => LicenseState::Within,
            ShortfallState::Started { since_ms } => LicenseState::Started { since_ms: since_ms.0 },
            ShortfallState::InGrace { since_ms, ends_ms } => {
                LicenseState::InGrace { since_ms: since_ms.0, ends_ms: ends_ms.0 }
            }
            ShortfallState::Expired { since_ms, excess } => {
                LicenseState::Expired { since_ms: since_ms.0, excess }
            }
        }
    }
}

/// `POST /api/licenses`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The key as the vendor sent it (text).
    key: String,
}

/// The system's licenses: keys, channels granted and used, and any shortfall.
///
/// A key counts while the server it is bound to is online. When more cameras record than
/// the counted keys grant, a grace period starts; after it the excess cameras stop.
#[utoipa::path(
    get,
    path = "/api/licenses",
    tag = "licenses",
    operation_id = "list_licenses",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "The licenses.", body = LicensesView), CallerRejections),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<LicensesView>, ApiError> {
    let view = state
        .handle
        .read(|n| {
            let keys = n
                .license_keys()
                .into_iter()
                .map(|(k, counted)| KeyView {
                    id: format!("{:032x}", k.id.0),
                    channels: k.channels,
                    hardware_id: k.hardware_id.0.clone(),
                    counted,
                    key: k.to_text(),
                })
                .collect();
            let status = n.license_status();
            LicensesView {
                total: status.total,
                used: status.used,
                state: status.state.into(),
                stopped_cameras: status.stopped.iter().map(|c| c.to_string()).collect(),
                keys,
            }
        })
        .await?;
    Ok(Json(view))
}

/// Add a license key (admin).
///
/// The key must be signed by the vendor; it counts once the server whose hardware it is bound
/// to is in the system and online.
#[utoipa::path(
    post,
    path = "/api/licenses",
    tag = "licenses",
    operation_id = "add_license",
    request_body = NewKey,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 201, description = "The key as added.", body = KeyView),
        (status = 400, description = "Malformed body, or a key that does not parse or verify (`invalid_license`).", body = ErrorBody),
        (status = 403, description = "The caller is not an admin.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewKey>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    caller.require_admin()?;
    let key = LicenseKey::from_text(new.key.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_license", e.to_string()))?;
    let view = KeyView {
        id: format!("{:032x}", key.id.0),
        channels: key.channels,
        hardware_id: key.hardware_id.0.clone(),
        counted: false,
        key: key.to_text(),
    };
    state
        .handle
        .command(Command::Put { key: Key::License(key.id), value: Value::License(key) })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[cfg(test)]
mod tests {
    use super::{LicenseState, ShortfallState};
    use hive_core::instant::WallMs;

    #[test]
    fn license_state_is_the_cores_shortfall_state_in_the_same_json() {
        let (since_ms, ends_ms) = (WallMs(1_700_000_000_000), WallMs(1_700_000_600_000));
        let states = [
            ShortfallState::Within,
            ShortfallState::Started { since_ms },
            ShortfallState::InGrace { since_ms, ends_ms },
            ShortfallState::Expired { since_ms, excess: 3 },
        ];
        for state in states {
            let core = serde_json::to_value(state).unwrap();
            assert_eq!(serde_json::to_value(LicenseState::from(state)).unwrap(), core, "{state:?}");
        }
    }
}
