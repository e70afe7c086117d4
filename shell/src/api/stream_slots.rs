//! Slots for long answers (event streams, video): a bound for the server and a smaller one
//! per user, so neither many users nor one user opening page after page can hold them all.

use super::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The slots of every kind of long answer on this server.
#[derive(Clone, Debug)]
pub struct Streams {
    /// Server-sent event streams (`/api/events`).
    pub events: Arc<StreamSlots>,
    /// Video (`video.mp4`, `video.ws`).
    pub video: Arc<StreamSlots>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams { events: super::events::slots(), video: super::video_mp4::slots() }
    }
}

/// The slots of one kind of stream on this server.
#[derive(Debug)]
pub struct StreamSlots {
    /// What the streams are, for the refusal ("event streams", "video streams").
    what: &'static str,
    total_max: usize,
    per_user_max: usize,
    /// Slots held, by user; a user holding none has no entry.
    held: Mutex<HashMap<String, usize>>,
}

/// One slot held; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<StreamSlots>,
    user: String,
}

impl StreamSlots {
    /// Slots for `total_max` streams, at most `per_user_max` of them one user's.
    pub fn new(what: &'static str, total_max: usize, per_user_max: usize) -> Arc<Self> {
        assert!(0 < per_user_max && per_user_max <= total_max);
        Arc::new(StreamSlots { what, total_max, per_user_max, held: Mutex::default() })
    }

    /// A slot for `user`'s next stream, or a 503 saying which bound it met.
    pub fn take(self: &Arc<Self>, user: &str) -> Result<Slot, ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = held.values().sum();
        let users = held.get(user).copied().unwrap_or(0);
        let refusal = if users >= self.per_user_max {
            Some(format!("user {user:?} already has {} {} open here", self.per_user_max, self.what))
        } else if total >= self.total_max {
            Some(format!("this server already serves {} {}", self.total_max, self.what))
        } else {
            None
        };
        if let Some(message) = refusal {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                message,
            ));
        }
        *held.entry(user.to_owned()).or_insert(0) += 1;
        debug_assert!(held.values().sum::<usize>() <= self.total_max);
        Ok(Slot { slots: Arc::clone(self), user: user.to_owned() })
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_user_cannot_take_every_slot_and_freed_slots_serve_again() {
        let slots = StreamSlots::new("event streams", 4, 2);
        let a1 = slots.take("ann").unwrap();
        let _a2 = slots.take("ann").unwrap();
        let refused = slots.take("ann").unwrap_err();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams")
        );
        assert!(
            refused.message.contains("\"ann\" already has 2 event streams"),
            "{}",
            refused.message
        );
        let _b1 = slots.take("bob").unwrap();
        let _b2 = slots.take("bob").unwrap();
        let full = slots.take("cy").unwrap_err();
        assert!(full.message.contains("already serves 4 event streams"), "{}", full.message);
        drop(a1);
        assert_eq!(slots.held(), 3);
        assert!(slots.take("cy").is_ok(), "a freed slot serves the next stream");
        assert_eq!(slots.held(), 3, "the slot taken and dropped at once is free again");
    }
}
