//! One camera stream's part of the archive: its index, its segment files, the segment being
//! written and the full ones whose last bytes still wait for a flush. Always behind the
//! stream's mutex, held for memory work only (copies into a map, index updates), never for a
//! file operation that can wait on the disk.

use super::mapped::ReadMap;
use hive_core::ids::CameraId;
use hive_media::archive::record;
use hive_media::archive::{IndexError, RecordPos, SegmentId, StreamIndex};
use hive_media::frame::Frame;
use memmap2::MmapMut;
use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A camera and one of its streams.
pub type StreamKey = (CameraId, u8);

/// Frames further apart than this split a recorded range, µs.
pub const GAP_US: i64 = 5_000_000;

/// A segment file of the stream.
pub struct SegmentFile {
    /// Its number.
    pub id: SegmentId,
    /// Its path.
    pub path: PathBuf,
    /// Its size on disk.
    pub file_bytes: u64,
    /// Read-only map, made on the first read.
    pub read_map: Option<Arc<ReadMap>>,
}

/// A segment file being written.
pub struct OpenSegment {
    /// Its number.
    pub id: SegmentId,
    /// The writable map of all of it.
    pub map: MmapMut,
    /// The file, shared with the flusher.
    pub file: Arc<File>,
    /// Where its records end.
    pub written: usize,
    /// How much of it is known to be on disk.
    pub flushed: usize,
}

/// A full segment whose last bytes may not be on disk yet.
pub struct Unsynced {
    /// Its number.
    pub id: SegmentId,
    /// The file, to sync.
    pub file: Arc<File>,
    /// Where its records end.
    pub written: usize,
    /// How much of it is known to be on disk.
    pub flushed: usize,
}

/// What the archive holds of one camera stream.
pub struct Stream {
    /// Where its segment files are.
    pub dir: PathBuf,
    /// Keyframes and recorded spans.
    pub index: StreamIndex,
    /// Its segment files, the same as the index's segments, oldest first.
    pub files: VecDeque<SegmentFile>,
    /// The segment being written.
    pub open: Option<OpenSegment>,
    /// Full segments waiting for a flush.
    pub unsynced: Vec<Unsynced>,
    /// The number of the next segment.
    pub next_id: SegmentId,
    /// Until when appends fail at once with a full disk, rather than try again per frame.
    pub disk_full_until: Option<Instant>,
    /// Whether an append failed since the last keyframe stored: the frames after it until the
    /// next keyframe could not be decoded, so they are not stored either.
    pub awaiting_keyframe: bool,
}

impl Stream {
    /// A stream with no segments yet.
    pub fn new(dir: PathBuf) -> Stream {
        Stream {
            dir,
            index: StreamIndex::new(GAP_US),
            files: VecDeque::new(),
            open: None,
            unsynced: Vec::new(),
            next_id: SegmentId(1),
            disk_full_until: None,
            awaiting_keyframe: false,
        }
    }

    /// The segment file `id`.
    pub fn file(&mut self, id: SegmentId) -> Option<&mut SegmentFile> {
        let i = self.files.binary_search_by_key(&id, |f| f.id).ok()?;
        self.files.get_mut(i)
    }

    /// Whether `id` is the segment being written.
    pub fn is_open(&self, id: SegmentId) -> bool {
        self.open.as_ref().is_some_and(|o| o.id == id)
    }

    /// Forgets the oldest segment (index entries, file entry); the caller deletes the file.
    pub fn pop_oldest(&mut self) -> Option<SegmentFile> {
        let oldest = self.files.front()?;
        assert!(!self.is_open(oldest.id), "the segment being written is never dropped");
        let dropped = self.index.drop_oldest().map(|s| s.id);
        let file = self.files.pop_front()?;
        assert_eq!(dropped, Some(file.id), "the index and the files list the same segments");
        self.unsynced.retain(|u| u.id != file.id);
        Some(file)
    }

    /// Writes `frame` into the open segment if it has room for `record_bytes`; `false` when
    /// there is no open segment or it is full (then it is closed and waits for a flush).
    pub fn try_append(&mut self, frame: &Frame, record_bytes: usize) -> Result<bool, IndexError> {
        if let Some(last_us) = self.index.last_us() {
            if frame.time_us < last_us {
                return Err(IndexError::TimeWentBack { time_us: frame.time_us, last_us });
            }
        }
        let Some(open) = self.open.as_mut() else { return Ok(false) };
        if open.map.len() - open.written < record_bytes {
            self.close_open();
            return Ok(false);
        }
        let record = RecordPos {
            offset: open.written,
            len: record_bytes,
            time_us: frame.time_us,
            keyframe: frame.keyframe,
        };
        self.index.check_append(open.id, &record)?;
        let room = &mut open.map[record.offset..record.end()];
        let written = record::encode(frame, room).expect("the caller bounded the frame's size");
        assert_eq!(written, record_bytes, "the caller sized the record");
        open.written = record.end();
        self.index.append(open.id, &record)?;
        Ok(true)
    }

    /// Closes the open segment: its map goes (its dirty pages stay in the page cache), and its
    /// file waits for the next flush.
    pub fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            self.unsynced.push(Unsynced {
                id: open.id,
                file: open.file,
                written: open.written,
                flushed: open.flushed,
            });
        }
    }
}
