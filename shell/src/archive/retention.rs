//! Retention: the oldest segments go first, across every stream of the storage, by age
//! (`max_days`), by bytes (`max_bytes`) and when the disk is full. The segment a stream is
//! writing is never deleted; readers that still map a deleted segment keep its pages.

use super::stream::Stream;
use super::{files, lock, Archive};
use hive_media::archive::SegmentId;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

const DAY_US: i64 = 86_400 * 1_000_000;

impl Archive {
    /// Deletes segments older than the age limit, then the oldest ones while the archive is
    /// over its byte budget. Called periodically with the system time.
    pub fn enforce_retention(&self, now_us: i64) {
        if self.config.max_days > 0 {
            let cutoff_us = now_us.saturating_sub(i64::from(self.config.max_days) * DAY_US);
            for stream in self.all_streams() {
                loop {
                    let oldest = {
                        let s = lock(&stream);
                        let old = s.index.oldest().filter(|o| !s.is_open(o.id));
                        old.filter(|o| o.last_us.is_none_or(|last| last < cutoff_us))
                    };
                    match oldest {
                        Some(o) if self.delete(&stream, o.id, "past the age limit") => {}
                        _ => break,
                    }
                }
            }
        }
        while self.bytes_used() > self.config.max_bytes
            && self.delete_oldest("over the byte budget")
        {}
    }

    /// Deletes the oldest segments while `bytes` more would go over the byte budget.
    pub(super) fn make_room(&self, bytes: u64) {
        while self.bytes_used().saturating_add(bytes) > self.config.max_bytes
            && self.delete_oldest("making room under the byte budget")
        {}
    }

    /// Deletes the segment whose newest frame is the oldest of the storage (never one being
    /// written); `false` when there is none.
    pub(super) fn delete_oldest(&self, why: &str) -> bool {
        loop {
            let mut oldest: Option<(i64, SegmentId, Arc<Mutex<Stream>>)> = None;
            for stream in self.all_streams() {
                let candidate = {
                    let s = lock(&stream);
                    s.index.oldest().filter(|o| !s.is_open(o.id))
                };
                let Some(candidate) = candidate else { continue };
                let last_us = candidate.last_us.unwrap_or(i64::MIN);
                if oldest.as_ref().is_none_or(|(o, _, _)| last_us < *o) {
                    oldest = Some((last_us, candidate.id, stream));
                }
            }
            let Some((_, id, stream)) = oldest else { return false };
            if self.delete(&stream, id, why) {
                return true;
            }
            // The stream changed since it was looked at: look again.
        }
    }

    /// Deletes segment `id` of `stream` if it is still the stream's oldest and not being
    /// written.
    fn delete(&self, stream: &Mutex<Stream>, id: SegmentId, why: &str) -> bool {
        let file = {
            let mut s = lock(stream);
            if s.index.oldest().map(|o| o.id) != Some(id) || s.is_open(id) {
                return false;
            }
            s.pop_oldest()
        };
        let Some(file) = file else { return false };
        tracing::info!(path = %file.path.display(), why, "retention deletes a segment");
        files::remove_segment(&file.path);
        self.bytes_used.fetch_sub(file.file_bytes, Ordering::SeqCst);
        true
    }
}
