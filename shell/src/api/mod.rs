//! The HTTP JSON API: system, servers, time, routes, cameras, users, settings, licenses, merge/split/rename,
//! backup and Prometheus metrics. Every answer is JSON (metrics and backups aside); errors
//! are `{ "error": code, "message": text }`.

mod admin;
mod auth;
mod body;
mod camera_url;
mod cameras;
mod error;
mod events;
mod json_errors;
mod licenses;
mod login_limit;
mod login_migration;
mod metrics;
pub mod passwords;
pub mod rules;
mod servers;
mod session;
mod settings;
mod system;
mod time;
mod users;
mod video;
mod video_mp4;

pub use auth::{AuthState, Caller};
pub use body::Body;
pub use error::ApiError;
pub use login_limit::{BACKOFF_MAX, FAILURES_MAX};
pub use passwords::PasswordPool;

use crate::driver::TrafficStats;
use crate::server::handle::NodeHandle;
use axum::routing::{get, patch, post};
use axum::Router;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The server's node loop.
    pub handle: NodeHandle,
    /// Link and beacon counters.
    pub stats: Arc<TrafficStats>,
    /// Login failures and checked credentials.
    pub auth: Arc<AuthState>,
    /// Where every password is checked and hashed.
    pub passwords: Arc<PasswordPool>,
    /// For asking another server's API (merge by URL).
    pub client: reqwest::Client,
    /// The server's video plane (camera statuses, archive ranges); weak because the plane
    /// holds this state to check RTSP users.
    pub video: std::sync::Weak<crate::video::plane::VideoPlane>,
    /// The slots of the web UI's event streams.
    pub event_streams: Arc<events::EventStreams>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/hello", get(system::hello))
        .route("/api/system", get(system::get_system))
        .route("/api/system/rename", post(admin::rename))
        .route("/api/merge", post(admin::merge))
        .route("/api/split", post(admin::split))
        .route("/api/backup", get(admin::backup))
        .route("/api/link-key", post(admin::replace_link_key))
        .route("/api/system/secret", post(admin::replace_secret))
        .route("/api/cameras", get(cameras::list).post(cameras::create))
        .route(
            "/api/cameras/{id}",
            get(cameras::get_one).patch(cameras::update).delete(cameras::remove),
        )
        .route("/api/cameras/{id}/status", get(video::status))
        .route("/api/cameras/{id}/archive", get(video::archive))
        .route("/api/cameras/{id}/video.mp4", get(video_mp4::video_mp4))
        .route("/api/servers", get(servers::list))
        .route("/api/servers/{id}", patch(servers::update))
        .route("/api/time", get(time::get_time))
        .route("/api/routes", get(time::routes))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{id}", get(users::get_one).patch(users::update).delete(users::remove))
        .route("/api/settings", get(settings::list).post(settings::create).patch(settings::update))
        .route("/api/settings/{name}", get(settings::get_one).delete(settings::remove))
        .route("/api/licenses", get(licenses::list).post(licenses::add))
        .route("/api/session", get(session::whoami).post(session::login).delete(session::logout))
        .route("/api/events", get(events::events))
        .route("/metrics", get(metrics::metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::map_response(json_errors::json_errors))
        .with_state(state)
}

/// Parses a hex id from a path.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("{text:?} is not a {what} id")))
}
