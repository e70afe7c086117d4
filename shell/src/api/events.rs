//! `GET /api/events`: the system and its cameras as server-sent events, so a page shows a
//! server's death, a camera moving or a merge without being refreshed.
//!
//! Each stream looks at the node every [`POLL_INTERVAL`] and sends a view only when its JSON
//! changed: two reads of the node per stream and poll, no per-change bookkeeping in the
//! driver. A stream ends when its caller no longer holds (logged out, password or role
//! changed: [`Caller::revoked`]) and after [`STREAM_LIFETIME`]; the browser's `EventSource`
//! reconnects, which checks the caller again. Streams are bounded per server and per user.

use super::error::ErrorBody;
use super::openapi::CallerRejections;
use super::stream_slots::{Slot, StreamSlots};
use super::{cameras, system, ApiError, AppState, Caller};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a stream looks for changes: a server's death shows on a page within this of
/// the answering server knowing it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long one stream lasts before the browser reconnects.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);
/// Event streams a server serves at once.
pub const STREAMS_MAX: usize = 256;
/// Event streams one user may hold open on a server (one per open page).
pub const STREAMS_PER_USER_MAX: usize = 16;

/// The slots of event streams.
pub fn slots() -> Arc<StreamSlots> {
    StreamSlots::new("event streams", STREAMS_MAX, STREAMS_PER_USER_MAX)
}

/// What one stream last sent, and what it holds.
struct Watch {
    state: AppState,
    caller: Caller,
    sent_system: String,
    sent_cameras: String,
    /// Events found changed but not yet sent (the system first).
    pending: Vec<Event>,
    first: bool,
    ends_at: Instant,
    _slot: Slot,
}

impl Watch {
    /// Waits for the next change and returns its event; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop() {
                return Some(event);
            }
            if !self.first {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            self.first = false;
            if Instant::now() >= self.ends_at {
                return None;
            }
            let state = State(self.state.clone());
            let system = system::get_system(state.clone(), self.caller.clone()).await.ok()?;
            let cameras = cameras::list(state, self.caller.clone()).await.ok()?;
            let cameras = serde_json::to_string(&cameras.0).ok()?;
            let system = serde_json::to_string(&system.0).ok()?;
            // Popped last first: the system goes out before the cameras.
            if cameras != self.sent_cameras {
                self.pending.push(Event::default().event("cameras").data(&cameras));
                self.sent_cameras = cameras;
            }
            if system != self.sent_system {
                self.pending.push(Event::default().event("system").data(&system));
                self.sent_system = system;
            }
        }
    }
}

/// Streams `system` (as `GET /api/system`) and `cameras` (as `GET /api/cameras`) events: both
/// at once when the stream opens, then each whenever it changes.
///
/// Changes are looked for every 250 ms; a stream ends after 10 minutes (`EventSource`
/// reconnects by itself).
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "system",
    operation_id = "get_events",
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "Server-sent events `system` and `cameras`, each with the JSON of its `GET`.",
         content_type = "text/event-stream", body = String),
        (status = 503, description = "Too many event streams on this server or of this user (`too_many_streams`), or it is stopping.", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state.streams.events.take(&caller.name)?;
    let revoked = caller.clone().revoked(state.clone());
    let watch = Watch {
        state,
        caller,
        sent_system: String::new(),
        sent_cameras: String::new(),
        pending: Vec::new(),
        first: true,
        ends_at: Instant::now() + STREAM_LIFETIME,
        _slot: slot,
    };
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    })
    .take_until(Box::pin(revoked));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use hive_core::resources::Role;

    #[tokio::test]
    async fn streams_beyond_the_bound_are_refused_in_words() {
        let state = crate::api::stopped_state();
        let caller = Caller::for_test("ann", Role::Viewer);
        // Every slot held, as by STREAMS_MAX open pages of many users.
        let held: Vec<_> = (0..STREAMS_MAX)
            .map(|i| state.streams.events.take(&format!("user{i}")).unwrap())
            .collect();
        let refused = events(State(state.clone()), caller.clone()).await.err().unwrap();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams")
        );
        assert!(refused.message.contains(&STREAMS_MAX.to_string()), "{}", refused.message);
        drop(held);
        let served = events(State(state), caller).await.map(IntoResponse::into_response);
        assert!(served.is_ok(), "a slot freed serves the next stream");
    }
}
