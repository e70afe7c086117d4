//! Archive playback of one client: frames from the keyframe at or before the position, paced
//! at real time (or the asked speed), on into live unless the range ends.

use super::feed::LiveFeed;
use crate::archive::{Archive, Position, StreamReader};
use crate::rtsp::ArchiveStart;
use hive_core::ids::CameraId;
use hive_media::frame::Frame;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Frames buffered ahead of the client; the reader waits when they are not taken.
const AHEAD_FRAMES: usize = 64;

/// Bytes read from the archive per blocking call.
const READ_BYTES: usize = 1 << 20;

/// A jump between two frames longer than this is a gap in the recording (or the way from a
/// position before the archive's start to its first frame): playback goes straight on to the
/// next frame rather than wait the gap out.
const GAP_SKIP_US: i64 = 1_000_000;

/// What to play.
pub struct Playback {
    /// The archive.
    pub archive: Arc<Archive>,
    /// The live feed to continue into, when this server records the camera.
    pub live: Option<LiveFeed>,
    /// The camera.
    pub camera: CameraId,
    /// Its stream.
    pub stream: u8,
    /// Where.
    pub start: ArchiveStart,
    /// Playback speed.
    pub speed: f64,
    /// Where to end, µs since the epoch.
    pub until_us: Option<i64>,
}

impl Playback {
    /// Starts playing; `None` when the archive holds nothing of the stream.
    pub fn start(self) -> Option<mpsc::Receiver<Frame>> {
        let reader = self.archive.reader(self.camera, self.stream)?;
        let keyframe = reader.seek(self.start.time_us())?;
        let (tx, rx) = mpsc::channel(AHEAD_FRAMES);
        tokio::spawn(self.run(reader, keyframe.position, tx));
        Some(rx)
    }

    /// The next frames from `at` (on the blocking pool) and where to go on; none when the
    /// archive cannot be read (logged).
    async fn read(&self, reader: &StreamReader, at: Position) -> (Vec<Frame>, Position) {
        match reader.read(at, READ_BYTES).await {
            Ok(batch) => (batch.frames, batch.next),
            Err(e) => {
                tracing::warn!(camera = %self.camera, error = %e, "archive read failed; playback ends");
                (Vec::new(), at)
            }
        }
    }

    async fn run(self, reader: StreamReader, mut cursor: Position, tx: mpsc::Sender<Frame>) {
        let mut pace = Pace::new(Instant::now(), self.start.time_us(), self.speed);
        // Going on after a frame the client has: nothing up to it again.
        let mut last_sent = match self.start {
            ArchiveStart::Keyframe(_) => i64::MIN,
            ArchiveStart::After(t) => t,
            ArchiveStart::KeyframeFrom(t) => t - 1,
        };
        // Nothing before a keyframe at or after the start, for `KeyframeFrom`.
        let mut need_keyframe = matches!(self.start, ArchiveStart::KeyframeFrom(_));
        let ended = |f: &Frame| self.until_us.is_some_and(|u| f.time_us > u);
        loop {
            let (frames, next) = self.read(&reader, cursor).await;
            cursor = next;
            if frames.is_empty() {
                break;
            }
            let after = last_sent;
            for frame in frames.into_iter().filter(|f| f.time_us > after) {
                if ended(&frame) {
                    return;
                }
                if need_keyframe && !frame.keyframe {
                    continue;
                }
                need_keyframe = false;
                if let Some(due) = pace.due(frame.time_us, Instant::now()) {
                    tokio::time::sleep_until(due).await;
                }
                last_sent = frame.time_us;
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        }
        // Caught up with the archive: go on live, without a gap or a repeat.
        let Some(feed) = &self.live else {
            return;
        };
        let mut live = feed.subscribe();
        let (frames, _) = self.read(&reader, cursor).await;
        let resume_after = last_sent;
        for frame in frames.into_iter().filter(|f| f.time_us > resume_after) {
            if ended(&frame) {
                return;
            }
            last_sent = frame.time_us;
            if tx.send(frame).await.is_err() {
                return;
            }
        }
        while let Some(frame) = live.recv().await {
            if frame.time_us <= last_sent {
                continue;
            }
            if ended(&frame) {
                return;
            }
            last_sent = frame.time_us;
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    }
}

/// When archive frames are due: at their own spacing divided by the speed, from the position
/// asked for; frames before it (from its keyframe on) at once; a first frame after it (the
/// keyframe at or after the position) at once too, and across a gap, the pace then continuing
/// from that frame: a client never waits for media time in which nothing is sent.
#[derive(Debug)]
struct Pace {
    /// A moment and the media time due then.
    anchor: (Instant, i64),
    /// Media time of the last frame paced.
    last_us: i64,
    /// Whether a frame was paced yet.
    started: bool,
    speed: f64,
}

impl Pace {
    fn new(now: Instant, from_us: i64, speed: f64) -> Pace {
        Pace { anchor: (now, from_us), last_us: from_us, started: false, speed }
    }

    /// When the frame of media time `time_us` is due, or `None` for at once.
    fn due(&mut self, time_us: i64, now: Instant) -> Option<Instant> {
        let first = !std::mem::replace(&mut self.started, true);
        if time_us <= self.anchor.1 {
            return None;
        }
        if first {
            self.anchor = (now, time_us);
            self.last_us = time_us;
            return None;
        }
        if time_us.saturating_sub(self.last_us) > GAP_SKIP_US {
            self.anchor = (now, time_us);
            self.last_us = time_us;
            return None;
        }
        self.last_us = time_us;
        let ahead_us = (time_us - self.anchor.1) as f64 / self.speed;
        Some(self.anchor.0 + Duration::from_micros(ahead_us as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;

    #[test]
    fn frames_keep_their_spacing_at_the_asked_speed() {
        let now = Instant::now();
        let mut pace = Pace::new(now, T0, 2.0);
        assert_eq!(pace.due(T0 - 500_000, now), None, "before the position: at once");
        assert_eq!(pace.due(T0 + 40_000, now), Some(now + Duration::from_millis(20)));
        assert_eq!(pace.due(T0 + 80_000, now), Some(now + Duration::from_millis(40)));
    }

    #[test]
    fn a_first_frame_after_the_position_goes_at_once_and_the_pace_follows_it() {
        let now = Instant::now();
        // Asked 700 ms before the next keyframe (playback from the keyframe at or after).
        let mut pace = Pace::new(now, T0 - 700_000, 1.0);
        assert_eq!(pace.due(T0, now), None);
        assert_eq!(pace.due(T0 + 40_000, now), Some(now + Duration::from_millis(40)));
    }

    #[test]
    fn a_gap_in_the_recording_is_not_waited_out() {
        let now = Instant::now();
        // Asked for a minute before the first frame: the first frame goes at once.
        let mut pace = Pace::new(now, T0 - 60_000_000, 1.0);
        assert_eq!(pace.due(T0, now), None);
        let later = now + Duration::from_millis(40);
        assert_eq!(pace.due(T0 + 40_000, later), Some(now + Duration::from_millis(40)));
        // An hour without recording, then frames again: straight on, then at their pace.
        let after_gap = later + Duration::from_millis(1);
        assert_eq!(pace.due(T0 + 3_600_000_000, after_gap), None);
        assert_eq!(
            pace.due(T0 + 3_600_040_000, after_gap),
            Some(after_gap + Duration::from_millis(40))
        );
    }
}
