//! The HTTP JSON API: system, servers, time, routes, cameras, users, settings, licenses, merge/split/rename,
//! backup and Prometheus metrics. Every answer is JSON (metrics and backups aside); errors
//! are `{ "error": code, "message": text }`. [`routes`] is the table of every route, from
//! which both the router and the OpenAPI document (`GET /api/openapi.json`) are built.

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
pub mod openapi;
pub mod passwords;
pub mod rules;
mod same_origin;
mod servers;
mod session;
mod settings;
mod stream_slots;
mod system;
mod time;
mod users;
mod video;
mod video_mp4;
mod video_ws;
mod web;

pub use auth::{AuthState, Caller};
pub use body::Body;
pub use error::ApiError;
pub use login_limit::{BACKOFF_MAX, FAILURES_MAX};
pub use passwords::PasswordPool;
pub use stream_slots::Streams;

use crate::driver::TrafficStats;
use crate::server::handle::NodeHandle;
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// The slots of long answers: event streams and video.
    pub streams: Streams,
}

/// What the fallback answers for a path the API does not serve (the tests tell it from a
/// handler's own 404 by this message).
const NO_SUCH_ENDPOINT: &str = "no such endpoint";

/// Every route of the API, documented: `routes!` reads each handler's method and path from its
/// `#[utoipa::path(...)]`, so what is served and what the OpenAPI document says come from one
/// declaration and cannot drift apart.
///
/// To add a route: annotate the handler with `#[utoipa::path(method, path = "...", ...)]`
/// (tag, params, body, responses, and `security(("basic" = []), ("session" = []))` if it takes
/// a [`Caller`]), then add `.routes(routes!(module::handler))` below; handlers of one path
/// may share a `routes!`. Do not add a plain `.route(..)` (here or in [`router`]): it serves
/// without documenting, and the tests in [`openapi`] fail on it unless its path is listed
/// there as not part of the API (the web UI's static files).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(system::hello))
        .routes(routes!(system::get_system))
        .routes(routes!(admin::rename))
        .routes(routes!(admin::merge))
        .routes(routes!(admin::split))
        .routes(routes!(admin::backup))
        .routes(routes!(admin::replace_link_key))
        .routes(routes!(admin::replace_secret))
        .routes(routes!(cameras::list, cameras::create))
        .routes(routes!(cameras::get_one, cameras::update, cameras::remove))
        .routes(routes!(video::status))
        .routes(routes!(video::archive))
        .routes(routes!(servers::list))
        .routes(routes!(servers::update))
        .routes(routes!(time::get_time))
        .routes(routes!(time::routes))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get_one, users::update, users::remove))
        .routes(routes!(settings::list, settings::create, settings::update))
        .routes(routes!(settings::get_one, settings::remove))
        .routes(routes!(licenses::list, licenses::add))
        .routes(routes!(metrics::metrics))
        .routes(routes!(session::whoami, session::login, session::logout))
        .routes(routes!(events::events))
        .routes(routes!(video_mp4::video_mp4))
        .routes(routes!(video_ws::video_ws))
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let (routes, _document) = routes().split_for_parts();
    routes
        .route("/", axum::routing::get(web::index))
        .route("/app.js", axum::routing::get(web::app_js))
        .route("/style.css", axum::routing::get(web::style_css))
        .fallback(|| async { ApiError::not_found(NO_SUCH_ENDPOINT) })
        .layer(axum::middleware::from_fn(same_origin::refuse_cross_site))
        .layer(axum::middleware::map_response(json_errors::json_errors))
        .with_state(state)
}

/// A state whose node loop has stopped, for handler tests: a handler that reads the node
/// answers 503, and no node runs behind it.
#[cfg(test)]
pub(crate) fn stopped_state() -> AppState {
    let (handle, requests) = NodeHandle::new();
    drop(requests);
    AppState {
        handle,
        stats: Arc::new(TrafficStats::default()),
        auth: Arc::new(AuthState::new()),
        passwords: Arc::new(
            PasswordPool::start(hive_core::auth::KdfParams::CHEAP).expect("password workers"),
        ),
        client: reqwest::Client::new(),
        video: std::sync::Weak::new(),
        streams: Streams::default(),
    }
}

/// Parses a hex id from a path.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("{text:?} is not a {what} id")))
}
