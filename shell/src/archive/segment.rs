//! One segment file as the archive holds it: its path, what the scan or the writer put in it,
//! and the keyframe index that makes a seek a lookup.

use hive_media::archive::SEGMENT_HEADER_LEN;
use memmap2::{Mmap, MmapMut};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// Frames further apart than this split a recorded range, µs.
pub const GAP_US: i64 = 5_000_000;

/// A position in a camera stream's archive: a record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The segment, by its start time (its name).
    pub segment_start_us: i64,
    /// Offset of the next record to read.
    pub offset: usize,
}

/// The open segment of a stream being written.
pub struct Writer {
    pub map: MmapMut,
    pub file: Arc<File>,
    /// Bytes written (records end here).
    pub written: usize,
    /// Bytes known to be on disk.
    pub flushed: usize,
}

/// What the archive knows of one segment file.
pub struct Segment {
    pub start_us: i64,
    pub path: PathBuf,
    pub file_bytes: u64,
    /// Read-only map, made on first read.
    pub read_map: Option<Arc<Mmap>>,
    /// (time, offset) of every keyframe, in order.
    pub keyframes: Vec<(i64, usize)>,
    /// Recorded ranges (first, last frame time), split at gaps.
    pub spans: Vec<(i64, i64)>,
    /// Where its intact records end.
    pub end: usize,
}

impl Segment {
    pub fn new(start_us: i64, path: PathBuf, file_bytes: u64) -> Segment {
        Segment {
            start_us,
            path,
            file_bytes,
            read_map: None,
            keyframes: Vec::new(),
            spans: Vec::new(),
            end: SEGMENT_HEADER_LEN,
        }
    }

    /// Notes a record the scan found or the writer wrote.
    pub fn note(&mut self, time_us: i64, offset: usize, len: usize, keyframe: bool) {
        if keyframe {
            self.keyframes.push((time_us, offset));
        }
        match self.spans.last_mut() {
            Some((_, last)) if time_us - *last <= GAP_US && time_us >= *last => *last = time_us,
            _ => self.spans.push((time_us, time_us)),
        }
        self.end = offset + len;
    }

    /// The last frame time, if any.
    pub fn last_us(&self) -> Option<i64> {
        self.spans.last().map(|s| s.1)
    }
}
