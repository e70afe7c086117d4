//! `/api/users`: accounts with roles; passwords are stored as argon2id verifiers.

use super::error::ErrorBody;
use super::openapi::{BodyRejections, CallerRejections};
use super::{parse_id, rules, ApiError, AppState, Body, Caller};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hive_core::ids::UserId;
use hive_core::node::Command;
use hive_core::resources::{Key, Role, UserRecord, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A role as the API spells it: a viewer reads; an admin also changes cameras, users,
/// settings, servers and licenses; the owner also merges, splits, renames, takes backups and
/// replaces keys.
#[derive(Clone, Copy, Serialize, Deserialize, ToSchema, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// See [`Role::Owner`].
    Owner,
    /// See [`Role::Admin`].
    Admin,
    /// See [`Role::Viewer`].
    Viewer,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Owner => Role::Owner,
            RoleName::Admin => Role::Admin,
            RoleName::Viewer => Role::Viewer,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Owner => RoleName::Owner,
            Role::Admin => RoleName::Admin,
            Role::Viewer => RoleName::Viewer,
        }
    }
}

/// A user as the API shows it: never the verifier.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Login.
    pub name: String,
    /// Role.
    pub role: RoleName,
}

/// `POST /api/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login, 1 to 64 bytes without `:` or control characters (trimmed).
    name: String,
    /// At least 8 characters.
    password: String,
    /// Role.
    role: RoleName,
}

/// `PATCH /api/users/{id}`: fields to change; absent fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// A new password, at least 8 characters.
    password: Option<String>,
    /// A new role.
    role: Option<RoleName>,
}

/// Only the owner may create, promote to or touch owners.
fn check_role_change(caller: &Caller, from: Option<Role>, to: Role) -> Result<(), ApiError> {
    caller.require_admin()?;
    if (to == Role::Owner || from == Some(Role::Owner)) && caller.role != Role::Owner {
        return Err(ApiError::forbidden("only the owner manages owners"));
    }
    Ok(())
}

async fn user(state: &AppState, id: UserId) -> Result<UserRecord, ApiError> {
    state
        .handle
        .read(move |n| n.users().into_iter().find(|(u, _)| *u == id).map(|(_, r)| r.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))
}

/// The users of the system.
#[utoipa::path(
    get,
    path = "/api/users",
    tag = "users",
    operation_id = "list_users",
    security(("basic" = []), ("session" = [])),
    responses((status = 200, description = "Every user.", body = Vec<UserView>), CallerRejections),
)]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = state
        .handle
        .read(|n| {
            n.users()
                .into_iter()
                .map(|(id, u)| UserView {
                    id: id.to_string(),
                    name: u.name.clone(),
                    role: u.role.into(),
                })
                .collect()
        })
        .await?;
    Ok(Json(users))
}

/// One user.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "get_user",
    params(("id" = String, Path, description = "The user's id.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 400, description = "The id is not a user id.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn get_one(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = parse_id(&id, "user")?;
    let u = user(&state, id).await?;
    Ok(Json(UserView { id: id.to_string(), name: u.name, role: u.role.into() }))
}

/// Add a user (admin; owners only by the owner).
///
/// The user logs in to every server of the system with this name and password.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    operation_id = "create_user",
    request_body = NewUser,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 201, description = "The user as added.", body = UserView),
        (status = 400, description = "Malformed body, a bad name or a short password.", body = ErrorBody),
        (status = 403, description = "The caller is not an admin, or adds an owner without being one.", body = ErrorBody),
        (status = 409, description = "A user of that name exists (`exists`).", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    check_role_change(&caller, None, new.role.into())?;
    let name = rules::user_name(&new.name)?;
    rules::check_password(&new.password)?;
    let lookup = name.clone();
    let (exists, system) =
        state.handle.read(move |n| (n.user(&lookup).is_some(), n.identity().system)).await?;
    if exists {
        return Err(ApiError::new(StatusCode::CONFLICT, "exists", format!("user {name} exists")));
    }
    let login = state.passwords.login_record(&name, &new.password).await?;
    let record = UserRecord {
        name: name.clone(),
        role: new.role.into(),
        password: state.passwords.new_verifier(&new.password).await?,
        home_system: system,
        login,
    };
    let id = UserId(rand::random());
    state.handle.command(Command::Put { key: Key::User(id), value: Value::User(record) }).await?;
    Ok((StatusCode::CREATED, Json(UserView { id: id.to_string(), name, role: new.role })))
}

/// Change a user's password or role.
///
/// Anyone may change their own password; anything else needs an admin, and touching an
/// owner (or making one) needs the owner.
#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "update_user",
    params(("id" = String, Path, description = "The user's id.")),
    request_body = UserChange,
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "The user as changed.", body = UserView),
        (status = 400, description = "Malformed body or id, or a short password.", body = ErrorBody),
        (status = 403, description = "The caller may not make this change.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        BodyRejections,
        CallerRejections,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(change): Body<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = parse_id(&id, "user")?;
    let mut record = user(&state, id).await?;
    let to = change.role.map(Role::from).unwrap_or(record.role);
    // Anyone may change their own password; everything else is an administrator's job.
    let own_password_only = change.role.is_none() && caller.name == record.name;
    if !own_password_only {
        check_role_change(&caller, Some(record.role), to)?;
    }
    if let Some(p) = change.password {
        rules::check_password(&p)?;
        record.login = state.passwords.login_record(&record.name, &p).await?;
        record.password = state.passwords.new_verifier(&p).await?;
    }
    record.role = to;
    let view = UserView { id: id.to_string(), name: record.name.clone(), role: to.into() };
    state.handle.command(Command::Put { key: Key::User(id), value: Value::User(record) }).await?;
    Ok(Json(view))
}

/// Remove a user (admin; owners only by the owner).
///
/// Nobody removes themselves.
#[utoipa::path(
    delete,
    path = "/api/users/{id}",
    tag = "users",
    operation_id = "delete_user",
    params(("id" = String, Path, description = "The user's id.")),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "The id is not a user id, or the caller is that user.", body = ErrorBody),
        (status = 403, description = "The caller may not remove this user.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: UserId = parse_id(&id, "user")?;
    let record = user(&state, id).await?;
    check_role_change(&caller, Some(record.role), Role::Viewer)?;
    if record.name == caller.name {
        return Err(ApiError::bad_request("you cannot delete yourself"));
    }
    state.handle.command(Command::Delete { key: Key::User(id) }).await?;
    Ok(StatusCode::NO_CONTENT)
}
