//! Reading a camera stream's frames from a position, in batches. Reads touch mapped pages,
//! which can wait on the disk for as long as it likes: the async side reads on the blocking
//! pool ([`StreamReader::read`]).

use super::error::ArchiveError;
use super::mapped::ReadMap;
use super::stream::Stream;
use super::{lock, Keyframe, Position};
use crate::storage::IoOp;
use hive_media::archive::record::{self, RECORD_ALIGN};
use hive_media::archive::{SegmentId, SEGMENT_HEADER_LEN};
use hive_media::frame::Frame;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Frames read from a position, and where the next read goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// Intact frames in stream order; damaged records are skipped, never returned.
    pub frames: Vec<Frame>,
    /// Where to read next: past the last frame returned, or where the stream ends now (frames
    /// appended later are read from there).
    pub next: Position,
}

/// Reads one camera stream. Cheap to clone.
#[derive(Clone)]
pub struct StreamReader {
    stream: Arc<Mutex<Stream>>,
    dir: PathBuf,
}

impl StreamReader {
    pub(super) fn new(stream: Arc<Mutex<Stream>>, dir: PathBuf) -> StreamReader {
        StreamReader { stream, dir }
    }

    /// The keyframe at or before `time_us` (the first keyframe when `time_us` is earlier):
    /// a lookup in the index, no read.
    pub fn seek(&self, time_us: i64) -> Option<Keyframe> {
        lock(&self.stream).index.seek(time_us)
    }

    /// [`StreamReader::read_batch`] on the blocking pool.
    pub async fn read(&self, from: Position, max_bytes: usize) -> Result<ReadBatch, ArchiveError> {
        let reader = self.clone();
        match tokio::task::spawn_blocking(move || reader.read_batch(from, max_bytes)).await {
            Ok(read) => read,
            Err(e) => Err(ArchiveError::Io {
                op: IoOp::Read,
                path: self.dir.clone(),
                source: std::io::Error::other(e),
            }),
        }
    }

    /// Frames from the record at `from` on, across segments, until their payloads reach
    /// `max_bytes` (at least one frame when there is one). A position in a segment retention
    /// deleted goes on at the next segment. Blocking: it reads mapped pages.
    pub fn read_batch(&self, from: Position, max_bytes: usize) -> Result<ReadBatch, ArchiveError> {
        let mut frames = Vec::new();
        let mut payload_bytes = 0;
        let mut at = from;
        'segments: while let Some((end, map)) = self.segment_at(&mut at)? {
            let records = map.stable_prefix(end);
            while at.offset < records.len() {
                if !frames.is_empty() && payload_bytes >= max_bytes {
                    break 'segments;
                }
                let rest = &records[at.offset..];
                match record::decode(rest) {
                    Ok((header, frame)) => {
                        at.offset += header.record_len();
                        payload_bytes += frame.data.len();
                        frames.push(frame);
                    }
                    Err(error) => {
                        // Damage (reported by the scan at start, or new): skip the record
                        // whole when its header holds, else step to the next candidate.
                        let skip =
                            record::decode_header(rest).map_or(RECORD_ALIGN, |h| h.record_len());
                        tracing::debug!(dir = %self.dir.display(), segment = at.segment.0, offset = at.offset, %error, "damaged record skipped");
                        at.offset += skip;
                    }
                }
            }
            match lock(&self.stream).index.segment_after(at.segment) {
                Some(next) => at = Position { segment: next.id, offset: SEGMENT_HEADER_LEN },
                None => break,
            }
        }
        Ok(ReadBatch { frames, next: at })
    }

    /// The end of the records of the segment `at` names and a map of it; `at` moves to the
    /// start of the next segment when its own is gone. `None` past the last segment.
    fn segment_at(&self, at: &mut Position) -> Result<Option<(usize, Arc<ReadMap>)>, ArchiveError> {
        loop {
            let (id, end, path, map) = {
                let mut s = lock(&self.stream);
                let segment = match s.index.segment(at.segment) {
                    Some(segment) => segment,
                    None => match s.index.segment_after(at.segment) {
                        Some(next) => {
                            *at = Position { segment: next.id, offset: SEGMENT_HEADER_LEN };
                            next
                        }
                        None => return Ok(None),
                    },
                };
                let file =
                    s.file(segment.id).expect("the index and the files list the same segments");
                (segment.id, segment.end, file.path.clone(), file.read_map.clone())
            };
            if let Some(map) = map {
                return Ok(Some((end, map)));
            }
            match Self::map(&path) {
                Ok(map) => {
                    let map = Arc::new(map);
                    if let Some(file) = lock(&self.stream).file(id) {
                        file.read_map.get_or_insert_with(|| map.clone());
                    }
                    return Ok(Some((end, map)));
                }
                // Deleted by retention since the lock was let go: go on with the next one.
                Err(_) if !self.still_indexed(id) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn still_indexed(&self, id: SegmentId) -> bool {
        lock(&self.stream).index.segment(id).is_some()
    }

    fn map(path: &std::path::Path) -> Result<ReadMap, ArchiveError> {
        let file = File::open(path).map_err(ArchiveError::on(IoOp::Open, path))?;
        ReadMap::new(&file).map_err(ArchiveError::on(IoOp::Map, path))
    }
}
