//! The archive of one storage directory: per camera stream, segment files preallocated with
//! `fallocate`, written through a memory map, flushed every [`FLUSH_INTERVAL`], rebuilt from a
//! scan on start, and trimmed by retention, oldest first. `docs/archive.md` has the format and
//! the crash rules; the format itself, the scan and the index are `hive_media::archive`.
//!
//! - [`Archive::open`] scans every segment, reports damage, cuts torn tails, builds the
//!   indexes (`recovery.rs`).
//! - [`StreamWriter::append`] stores a frame; a full segment is closed and the next one made,
//!   making room first (retention by bytes, then by a full disk).
//! - [`StreamReader::read_batch`] reads frames from a position, blocking: the async side calls
//!   [`StreamReader::read`], which runs it on the blocking pool.
//! - [`Archive::flush`] makes every stored frame durable; something must call it at least
//!   every [`FLUSH_INTERVAL`] (the video plane's flusher thread does).

mod error;
mod files;
mod mapped;
mod reader;
mod recovery;
mod retention;
mod stream;
mod writer;

#[cfg(test)]
mod power_cut;
#[cfg(test)]
mod tests;

pub use error::ArchiveError;
pub use hive_media::archive::{Keyframe, Position, Range, SegmentId};
#[cfg(test)]
pub(crate) use power_cut::power_cut;
pub use reader::{ReadBatch, StreamReader};
pub use recovery::RecoveryReport;
pub use writer::StreamWriter;

use crate::storage::IoOp;
use hive_core::ids::CameraId;
use hive_media::archive::record::{record_len, PAYLOAD_MAX_BYTES};
use hive_media::archive::SEGMENT_HEADER_LEN;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stream::{Stream, StreamKey};

/// How often stored frames must be made durable: a power cut loses at most this much (plus the
/// time one flush takes).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// The smallest segment the archive takes: a header and a few frames.
pub const SEGMENT_BYTES_MIN: u64 = 64 << 10;

/// Sizes and limits of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Bytes of each segment file, all preallocated when it is made.
    pub segment_bytes: u64,
    /// Most bytes of segment files kept; the oldest go first.
    pub max_bytes: u64,
    /// Most days of video kept (0: no limit by age).
    pub max_days: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { segment_bytes: 32 << 20, max_bytes: 64 << 30, max_days: 0 }
    }
}

/// The archive of one storage directory, shared (in an `Arc`) by the recorders, the flusher,
/// retention and playback. Each stream has its own lock; making a segment is serialized.
pub struct Archive {
    root: PathBuf,
    config: ArchiveConfig,
    streams: Mutex<BTreeMap<StreamKey, Arc<Mutex<Stream>>>>,
    /// Bytes of the segment files the streams hold.
    bytes_used: AtomicU64,
    /// Held while a segment is made, so that a stream never makes two at once and the room
    /// retention makes for one is not taken by another.
    creating: Mutex<()>,
    /// What opening found wrong.
    recovery: RecoveryReport,
}

/// Locks a mutex; a panic elsewhere while it was held does not stop the archive (every
/// change under these locks leaves a consistent state before anything that can panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Archive {
    /// Opens (creating) the archive at `root`: scans every segment, logs damage with file and
    /// offset, cuts torn tails and builds the indexes. Blocking, and as long as reading every
    /// segment takes: progress is logged every second.
    pub fn open(root: &Path, config: ArchiveConfig) -> Result<Arc<Archive>, ArchiveError> {
        if config.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(ArchiveError::Config { reason: "segment_bytes is under 64 KiB" });
        }
        if usize::try_from(config.segment_bytes).is_err() {
            return Err(ArchiveError::Config { reason: "segment_bytes does not fit in memory" });
        }
        std::fs::create_dir_all(root).map_err(ArchiveError::on(IoOp::CreateDir, root))?;
        // Video is as private as the rest of the data directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(ArchiveError::on(IoOp::Write, root))?;
        let loaded = recovery::load(root)?;
        let streams =
            loaded.streams.into_iter().map(|(key, s)| (key, Arc::new(Mutex::new(s)))).collect();
        Ok(Arc::new(Archive {
            root: root.to_owned(),
            config,
            streams: Mutex::new(streams),
            bytes_used: AtomicU64::new(loaded.bytes_used),
            creating: Mutex::new(()),
            recovery: loaded.report,
        }))
    }

    /// What opening the archive found wrong: damage, torn tails, removed and ignored files.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The archive's sizes and limits.
    pub fn config(&self) -> ArchiveConfig {
        self.config
    }

    /// Bytes of all segment files.
    pub fn bytes_used(&self) -> u64 {
        self.bytes_used.load(Ordering::SeqCst)
    }

    /// The stream's state, made (empty) if it has none.
    fn stream_or_new(&self, key: StreamKey) -> Arc<Mutex<Stream>> {
        let mut streams = lock(&self.streams);
        let dir = files::stream_dir(&self.root, key.0, key.1);
        streams.entry(key).or_insert_with(|| Arc::new(Mutex::new(Stream::new(dir)))).clone()
    }

    fn stream(&self, key: StreamKey) -> Option<Arc<Mutex<Stream>>> {
        lock(&self.streams).get(&key).cloned()
    }

    fn all_streams(&self) -> Vec<Arc<Mutex<Stream>>> {
        lock(&self.streams).values().cloned().collect()
    }

    /// The appender of `camera`'s `stream` (0 primary, 1 secondary).
    pub fn writer(self: &Arc<Self>, camera: CameraId, stream: u8) -> StreamWriter {
        StreamWriter::new(self.clone(), (camera, stream), self.stream_or_new((camera, stream)))
    }

    /// A reader of `camera`'s `stream`; `None` when the archive holds nothing of it.
    pub fn reader(&self, camera: CameraId, stream: u8) -> Option<StreamReader> {
        let state = self.stream((camera, stream))?;
        let dir = lock(&state).dir.clone();
        Some(StreamReader::new(state, dir))
    }

    /// The keyframe at or before `time_us` of `camera`'s `stream` (the first keyframe when
    /// `time_us` is earlier): where playback of that time starts.
    pub fn seek(&self, camera: CameraId, stream: u8, time_us: i64) -> Option<Keyframe> {
        let state = self.stream((camera, stream))?;
        let keyframe = lock(&state).index.seek(time_us);
        keyframe
    }

    /// Recorded ranges of `camera`'s `stream` overlapping `[from_us, to_us]`, oldest first.
    pub fn ranges(&self, camera: CameraId, stream: u8, from_us: i64, to_us: i64) -> Vec<Range> {
        let Some(state) = self.stream((camera, stream)) else { return Vec::new() };
        let ranges = lock(&state).index.ranges(from_us, to_us);
        ranges
    }

    /// Bytes a record of `payload_len` takes, if a segment can hold it.
    fn record_bytes(&self, payload_len: usize) -> Result<usize, ArchiveError> {
        let too_large =
            ArchiveError::FrameTooLarge { payload_len, segment_bytes: self.config.segment_bytes };
        if payload_len > PAYLOAD_MAX_BYTES {
            return Err(too_large);
        }
        let record_bytes = record_len(payload_len);
        if (SEGMENT_HEADER_LEN + record_bytes) as u64 > self.config.segment_bytes {
            return Err(too_large);
        }
        Ok(record_bytes)
    }

    /// Bytes of records stored but not flushed yet: what a power cut now would put at risk.
    pub fn unflushed_bytes(&self) -> u64 {
        let mut total = 0;
        for state in self.all_streams() {
            let s = lock(&state);
            let closed = s.unsynced.iter().map(|u| u.written - u.flushed);
            let open = s.open.iter().map(|o| o.written - o.flushed);
            total += closed.chain(open).map(|b| b as u64).sum::<u64>();
        }
        total
    }

    /// Makes every stored frame durable: an `fdatasync` of each segment with unflushed
    /// records, which writes its dirty mapped pages. No lock is held while the disk works.
    /// A segment whose sync fails is closed (the next frame starts a new one: after a failed
    /// sync the kernel may have dropped the pages it could not write) and the first error is
    /// returned after every stream was tried.
    pub fn flush(&self) -> Result<(), ArchiveError> {
        let mut first_error = None;
        for state in self.all_streams() {
            let (dir, jobs) = {
                let s = lock(&state);
                let closed = s.unsynced.iter().map(|u| (u.id, u.file.clone(), u.written));
                let open = s.open.iter().filter(|o| o.written > o.flushed);
                let open = open.map(|o| (o.id, o.file.clone(), o.written));
                (s.dir.clone(), closed.chain(open).collect::<Vec<_>>())
            };
            for (id, file, written) in jobs {
                let synced = file.sync_data();
                let mut s = lock(&state);
                match synced {
                    // Records up to `written` are on disk; the segment may have grown (and
                    // even been closed) since, so what is past it still waits.
                    Ok(()) => {
                        if let Some(open) = s.open.as_mut().filter(|o| o.id == id) {
                            open.flushed = open.flushed.max(written);
                        }
                        for closed in s.unsynced.iter_mut().filter(|u| u.id == id) {
                            closed.flushed = closed.flushed.max(written);
                        }
                        s.unsynced.retain(|u| u.flushed < u.written);
                    }
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), segment = id.0, error = %e, "archive sync failed; segment closed");
                        if s.is_open(id) {
                            s.close_open();
                        }
                        s.unsynced.retain(|u| u.id != id);
                        first_error.get_or_insert(ArchiveError::io(IoOp::Sync, dir.clone(), e));
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
