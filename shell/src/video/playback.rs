//! Archive playback of one client: frames from the keyframe at or before the position, paced
//! at real time (or the asked speed), on into live unless the range ends.

use super::feed::LiveFeed;
use crate::archive::{Archive, Position, StreamReader};
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
    /// Where, µs since the epoch.
    pub from_us: i64,
    /// Playback speed.
    pub speed: f64,
    /// Where to end, µs since the epoch.
    pub until_us: Option<i64>,
}

impl Playback {
    /// Starts playing; `None` when the archive holds nothing of the stream.
    pub fn start(self) -> Option<mpsc::Receiver<Frame>> {
        let reader = self.archive.reader(self.camera, self.stream)?;
        let keyframe = reader.seek(self.from_us)?;
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
        let started = Instant::now();
        let mut last_sent = i64::MIN;
        let ended = |f: &Frame| self.until_us.is_some_and(|u| f.time_us > u);
        loop {
            let (frames, next) = self.read(&reader, cursor).await;
            cursor = next;
            if frames.is_empty() {
                break;
            }
            for frame in frames {
                if ended(&frame) {
                    return;
                }
                // Frames before the position (from its keyframe) go at once; later ones at
                // their pace.
                if frame.time_us > self.from_us {
                    let ahead_us = ((frame.time_us - self.from_us) as f64 / self.speed) as u64;
                    tokio::time::sleep_until(started + Duration::from_micros(ahead_us)).await;
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
