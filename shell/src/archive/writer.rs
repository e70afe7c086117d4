//! Appending frames to a camera stream: into the open segment's map while it has room, else
//! into a new segment, made after retention made room for it.

use super::error::ArchiveError;
use super::files;
use super::stream::{OpenSegment, SegmentFile, Stream, StreamKey};
use super::{lock, Archive};
use hive_media::archive::{SegmentHeader, SEGMENT_HEADER_LEN};
use hive_media::frame::Frame;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a full disk, how long appends fail at once before one tries again.
const DISK_FULL_RETRY: Duration = Duration::from_secs(1);

/// Appends frames to one camera stream. Cheap to clone; clones append to the same stream.
#[derive(Clone)]
pub struct StreamWriter {
    archive: Arc<Archive>,
    key: StreamKey,
    stream: Arc<Mutex<Stream>>,
}

impl StreamWriter {
    pub(super) fn new(archive: Arc<Archive>, key: StreamKey, stream: Arc<Mutex<Stream>>) -> Self {
        StreamWriter { archive, key, stream }
    }

    /// Stores `frame`: copied into the open segment's map (no disk wait), or into a new
    /// segment when it is full, which may wait for the disk and for retention. Readers see it
    /// at once; it is durable after the next [`Archive::flush`]. Fails with
    /// [`ArchiveError::DiskFull`] when no segment can be made even after retention,
    /// [`ArchiveError::FrameTooLarge`], or an index error when the frame is older than the
    /// last one stored. After a failure, frames up to the next keyframe fail with
    /// [`ArchiveError::AwaitingKeyframe`]: stored, they would be undecodable.
    pub fn append(&self, frame: &Frame) -> Result<(), ArchiveError> {
        if !frame.keyframe && lock(&self.stream).awaiting_keyframe {
            return Err(ArchiveError::AwaitingKeyframe);
        }
        let stored = self.store(frame);
        lock(&self.stream).awaiting_keyframe = stored.is_err();
        stored
    }

    fn store(&self, frame: &Frame) -> Result<(), ArchiveError> {
        let record_bytes = self.archive.record_bytes(frame.data.len())?;
        if lock(&self.stream).try_append(frame, record_bytes)? {
            return Ok(());
        }
        let new_segment =
            || self.archive.append_to_new_segment(&self.stream, self.key, frame, record_bytes);
        off_the_runtime(new_segment)
    }
}

/// Runs `work`, which may wait for the disk (fallocate, retention's deletes), so that it holds
/// up no other task: on a multi-threaded tokio runtime the worker hands its other tasks to
/// another thread first; elsewhere (a plain thread, a current-thread runtime in tests) it
/// simply runs.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

impl Archive {
    /// Makes the next segment of a stream and appends `frame` to it.
    fn append_to_new_segment(
        &self,
        stream: &Mutex<Stream>,
        key: StreamKey,
        frame: &Frame,
        record_bytes: usize,
    ) -> Result<(), ArchiveError> {
        let _creating = lock(&self.creating);
        let (header, dir) = {
            let mut s = lock(stream);
            // Another writer of the stream may have made one while this one waited.
            if s.try_append(frame, record_bytes)? {
                return Ok(());
            }
            if s.disk_full_until.is_some_and(|until| Instant::now() < until) {
                return Err(ArchiveError::DiskFull { path: s.dir.clone() });
            }
            let segment = s.next_id;
            s.next_id = segment.next();
            let header =
                SegmentHeader { camera: key.0 .0, stream: key.1, segment, start_us: frame.time_us };
            (header, s.dir.clone())
        };
        self.make_room(self.config.segment_bytes);
        let created = loop {
            match files::create_segment(&self.root, &dir, &header, self.config.segment_bytes) {
                Ok(created) => break created,
                Err(ArchiveError::DiskFull { path }) => {
                    if self.delete_oldest("the disk is full") {
                        continue;
                    }
                    tracing::warn!(dir = %dir.display(), "disk full and nothing left to delete");
                    lock(stream).disk_full_until = Some(Instant::now() + DISK_FULL_RETRY);
                    return Err(ArchiveError::DiskFull { path });
                }
                Err(e) => return Err(e),
            }
        };
        self.bytes_used.fetch_add(self.config.segment_bytes, Ordering::SeqCst);
        let mut s = lock(stream);
        s.disk_full_until = None;
        s.index.add_segment(header.segment, SEGMENT_HEADER_LEN)?;
        s.files.push_back(SegmentFile {
            id: header.segment,
            path: created.path,
            file_bytes: self.config.segment_bytes,
            read_map: None,
        });
        s.open = Some(OpenSegment {
            id: header.segment,
            map: created.map,
            file: Arc::new(created.file),
            written: SEGMENT_HEADER_LEN,
            flushed: SEGMENT_HEADER_LEN,
        });
        let appended = s.try_append(frame, record_bytes)?;
        assert!(appended, "an empty segment holds any frame record_bytes allowed");
        Ok(())
    }
}
