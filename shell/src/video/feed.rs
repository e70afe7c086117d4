//! The live fan-out of one camera stream: every frame goes to each viewer's bounded queue, and
//! the frames since the last keyframe (the GOP) are kept so a new viewer starts at once.
//!
//! A viewer whose queue is full misses frames up to the next keyframe; the camera, the archive
//! and other viewers never wait for it.

use hive_media::frame::{Codec, Frame};
use hive_media::nal::ParameterSets;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Frames a viewer's queue holds before it starts skipping to the next keyframe.
pub const VIEWER_QUEUE_FRAMES: usize = 256;

/// The largest GOP kept, bytes: a camera with a very long GOP keeps none rather than unbounded
/// memory, and its new viewers wait for the next keyframe.
pub const GOP_BYTES_MAX: usize = 16 << 20;

#[derive(Debug)]
struct Viewer {
    queue: mpsc::Sender<Frame>,
    /// Dropping frames until the next keyframe, after its queue filled.
    skipping: bool,
}

#[derive(Debug, Default)]
struct State {
    codec: Option<Codec>,
    parameter_sets: ParameterSets,
    gop: Vec<Frame>,
    gop_bytes: usize,
    viewers: Vec<Viewer>,
    frames_skipped: u64,
}

/// One camera stream's live fan-out. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct LiveFeed {
    state: Arc<Mutex<State>>,
}

/// What a viewer receives: the cached GOP, then every live frame it keeps up with.
pub type Viewing = mpsc::Receiver<Frame>;

impl LiveFeed {
    /// A feed with no frames yet.
    pub fn new() -> LiveFeed {
        LiveFeed::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `frame` to every viewer and keeps it in the GOP cache.
    pub fn publish(&self, frame: Frame) {
        let mut state = self.lock();
        let state = &mut *state;
        if frame.keyframe {
            state.codec = Some(frame.codec);
            state.parameter_sets.update(frame.codec, &frame.data);
            state.gop.clear();
            state.gop_bytes = 0;
        }
        if frame.keyframe || !state.gop.is_empty() {
            state.gop_bytes += frame.data.len();
            if state.gop_bytes > GOP_BYTES_MAX {
                state.gop.clear();
                state.gop_bytes = 0;
            } else {
                state.gop.push(frame.clone());
            }
        }
        let mut skipped = 0;
        state.viewers.retain_mut(|viewer| {
            if viewer.skipping && !frame.keyframe {
                skipped += 1;
                return !viewer.queue.is_closed();
            }
            match viewer.queue.try_send(frame.clone()) {
                Ok(()) => {
                    viewer.skipping = false;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    viewer.skipping = true;
                    skipped += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        state.frames_skipped += skipped;
    }

    /// A new viewer, starting with the cached GOP.
    pub fn subscribe(&self) -> Viewing {
        let mut state = self.lock();
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE_FRAMES.max(state.gop.len() + 1));
        for frame in &state.gop {
            // The queue is larger than the GOP; this cannot fail.
            let _ = tx.try_send(frame.clone());
        }
        state.viewers.push(Viewer { queue: tx, skipping: false });
        rx
    }

    /// The codec and parameter sets seen so far (`None` before the first keyframe).
    pub fn stream_params(&self) -> Option<(Codec, ParameterSets)> {
        let state = self.lock();
        state.codec.map(|c| (c, state.parameter_sets.clone()))
    }

    /// Viewers still watching.
    pub fn viewers(&self) -> usize {
        self.lock().viewers.iter().filter(|v| !v.queue.is_closed()).count()
    }

    /// Frames viewers missed because their queues were full, since the feed began.
    pub fn frames_skipped(&self) -> u64 {
        self.lock().frames_skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(n: i64, keyframe: bool) -> Frame {
        Frame {
            time_us: n,
            keyframe,
            codec: Codec::H264,
            data: Bytes::from(vec![0, 0, 0, 1, 0x41]),
        }
    }

    #[tokio::test]
    async fn a_new_viewer_starts_at_the_last_keyframe() {
        let feed = LiveFeed::new();
        for n in 0..10 {
            feed.publish(frame(n, n % 4 == 0));
        }
        let mut viewer = feed.subscribe();
        let first: Vec<i64> = (0..2).map(|_| viewer.try_recv().unwrap().time_us).collect();
        assert_eq!(first, [8, 9]);
        feed.publish(frame(10, false));
        assert_eq!(viewer.recv().await.unwrap().time_us, 10);
    }

    #[tokio::test]
    async fn a_viewer_that_falls_behind_skips_to_the_next_keyframe_and_others_get_everything() {
        let feed = LiveFeed::new();
        let mut slow = feed.subscribe();
        let mut fast = feed.subscribe();
        let total = VIEWER_QUEUE_FRAMES as i64 + 50;
        let mut fast_got = Vec::new();
        for n in 0..total {
            feed.publish(frame(n, n % 100 == 0));
            fast_got.push(fast.recv().await.unwrap().time_us);
        }
        assert_eq!(fast_got, (0..total).collect::<Vec<_>>());
        // The slow viewer got the first queue-full, then nothing until keyframe 300.
        let got: Vec<i64> =
            std::iter::from_fn(|| slow.try_recv().ok()).map(|f| f.time_us).collect();
        assert_eq!(got, (0..VIEWER_QUEUE_FRAMES as i64).collect::<Vec<_>>());
        feed.publish(frame(total, false));
        feed.publish(frame(300, true));
        assert_eq!(slow.try_recv().unwrap().time_us, 300);
        assert!(feed.frames_skipped() > 0);
    }
}
