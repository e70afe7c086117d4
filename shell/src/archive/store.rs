//! The archive of one storage directory: every camera stream's segments, appends, reads,
//! flushing and retention.

use super::mapped::{map_for_reading, map_for_writing};
use super::segment::{Cursor, Segment, Writer, GAP_US};
use hive_core::ids::CameraId;
use hive_media::archive::{
    encode_record, record_at, record_len, scan, SegmentHeader, PAYLOAD_MAX, SEGMENT_HEADER_LEN,
};
use hive_media::frame::Frame;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use thiserror::Error;

/// Sizes and limits of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Bytes of each segment file, preallocated.
    pub segment_bytes: u64,
    /// Most bytes of segments kept; the oldest go first.
    pub max_bytes: u64,
    /// Most days kept (0: no limit by age).
    pub max_days: u32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { segment_bytes: 32 << 20, max_bytes: 64 << 30, max_days: 0 }
    }
}

/// Why the archive could not store or read.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No space left, even after retention freed what it could.
    #[error("disk full")]
    DiskFull,
    /// A frame larger than a record may hold.
    #[error("frame of {0} bytes is over the record bound")]
    FrameTooLarge(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

type TrackKey = (CameraId, u8);

struct Track {
    dir: PathBuf,
    segments: Vec<Segment>,
    writer: Option<Writer>,
}

/// A storage directory of camera archives. Shared by recorders (appends), the flusher and
/// RTSP playback (reads, on the blocking pool).
pub struct Archive {
    root: PathBuf,
    config: ArchiveConfig,
    tracks: Mutex<BTreeMap<TrackKey, Arc<Mutex<Track>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Archive {
    /// Opens (creating) the archive at `root`: scans every segment, cuts torn tails, reports
    /// damage with file and offset, and builds the indexes.
    pub fn open(root: &Path, config: ArchiveConfig) -> Result<Arc<Archive>, ArchiveError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        // Video is as private as the rest of the data directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        let mut tracks = BTreeMap::new();
        let mut paths = Vec::new();
        for camera_dir in std::fs::read_dir(root).map_err(io(root))?.flatten() {
            let Ok(camera) = camera_dir.file_name().to_string_lossy().parse::<CameraId>() else {
                continue;
            };
            for stream_dir in std::fs::read_dir(camera_dir.path()).into_iter().flatten().flatten() {
                let Ok(stream) = stream_dir.file_name().to_string_lossy().parse::<u8>() else {
                    continue;
                };
                let track = Track { dir: stream_dir.path(), segments: Vec::new(), writer: None };
                tracks.insert((camera, stream), track);
                for seg in std::fs::read_dir(stream_dir.path()).into_iter().flatten().flatten() {
                    if seg.path().extension().is_some_and(|e| e == "seg") {
                        paths.push(((camera, stream), seg.path()));
                    }
                }
            }
        }
        let started = Instant::now();
        let mut last_log = Instant::now();
        let total = paths.len();
        for (n, (key, path)) in paths.into_iter().enumerate() {
            if last_log.elapsed().as_secs() >= 1 {
                tracing::info!(done = n, total, "scanning the archive");
                last_log = Instant::now();
            }
            match Self::load_segment(&path) {
                Ok(Some(segment)) => {
                    if let Some(track) = tracks.get_mut(&key) {
                        track.segments.push(segment);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "segment skipped"),
            }
        }
        for track in tracks.values_mut() {
            track.segments.sort_by_key(|s| s.start_us);
        }
        if total > 0 {
            tracing::info!(
                segments = total,
                ms = started.elapsed().as_millis() as u64,
                "archive scanned"
            );
        }
        let tracks = tracks.into_iter().map(|(k, t)| (k, Arc::new(Mutex::new(t)))).collect();
        Ok(Arc::new(Archive { root: root.to_owned(), config, tracks: Mutex::new(tracks) }))
    }

    /// Scans one segment file; `None` for a file that is not a segment (logged).
    fn load_segment(path: &Path) -> Result<Option<Segment>, ArchiveError> {
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
        let file_bytes = file.metadata().map_err(io(path))?.len();
        if file_bytes < SEGMENT_HEADER_LEN as u64 {
            tracing::warn!(path = %path.display(), "segment shorter than its header; ignored");
            return Ok(None);
        }
        let map = map_for_reading(&file).map_err(io(path))?;
        let header = match SegmentHeader::decode(&map) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "segment ignored");
                return Ok(None);
            }
        };
        let found = scan(&map);
        for damage in &found.damage {
            tracing::warn!(
                path = %path.display(),
                offset = damage.offset,
                bytes = damage.len,
                "damaged frames skipped"
            );
        }
        let mut segment = Segment::new(header.start_us, path.to_owned(), file_bytes);
        for r in &found.records {
            segment.note(r.time_us, r.offset, r.len, r.keyframe);
        }
        segment.end = found.end;
        if found.torn_tail_bytes > 0 {
            // A crash cut the last write short: clear it so appends start on zeros.
            tracing::info!(
                path = %path.display(),
                offset = found.end,
                bytes = found.torn_tail_bytes,
                "torn tail cut"
            );
            drop(map);
            let zeros = vec![0u8; found.torn_tail_bytes];
            file.write_all_at(&zeros, found.end as u64).map_err(io(path))?;
            file.sync_data().map_err(io(path))?;
        }
        Ok(Some(segment))
    }

    fn track(&self, key: TrackKey) -> Arc<Mutex<Track>> {
        let mut tracks = lock(&self.tracks);
        tracks
            .entry(key)
            .or_insert_with(|| {
                let dir = self.root.join(key.0.to_string()).join(key.1.to_string());
                Arc::new(Mutex::new(Track { dir, segments: Vec::new(), writer: None }))
            })
            .clone()
    }

    fn existing(&self, key: TrackKey) -> Option<Arc<Mutex<Track>>> {
        lock(&self.tracks).get(&key).cloned()
    }

    /// Stores one frame of `camera`'s `stream`.
    pub fn append(&self, camera: CameraId, stream: u8, frame: &Frame) -> Result<(), ArchiveError> {
        if frame.data.len() > PAYLOAD_MAX {
            return Err(ArchiveError::FrameTooLarge(frame.data.len()));
        }
        let need = record_len(frame.data.len());
        if need as u64 + SEGMENT_HEADER_LEN as u64 > self.config.segment_bytes {
            return Err(ArchiveError::FrameTooLarge(frame.data.len()));
        }
        let track = self.track((camera, stream));
        let dir = {
            let mut t = lock(&track);
            if let Some(w) = t.writer.as_mut() {
                if w.written + need <= w.map.len() {
                    return Self::write(&mut t, frame, need);
                }
            }
            // The open segment is full: make what it holds durable, then start the next one.
            if let Some(w) = t.writer.take() {
                w.file.sync_data().map_err(io(&t.dir))?;
            }
            t.dir.clone()
        };
        let (segment, writer) = self.create_segment(camera, stream, &dir, frame.time_us)?;
        let mut t = lock(&track);
        t.segments.push(segment);
        t.writer = Some(writer);
        Self::write(&mut t, frame, need)
    }

    fn write(t: &mut Track, frame: &Frame, need: usize) -> Result<(), ArchiveError> {
        let (offset, len) = {
            let w = t.writer.as_mut().expect("a writer is open");
            let offset = w.written;
            let len = encode_record(frame, &mut w.map[offset..offset + need]);
            w.written += len;
            (offset, len)
        };
        let segment = t.segments.last_mut().expect("the writer's segment is the last");
        segment.note(frame.time_us, offset, len, frame.keyframe);
        Ok(())
    }

    /// A new preallocated, mapped segment; frees the oldest segments when the budget or the
    /// disk is full.
    fn create_segment(
        &self,
        camera: CameraId,
        stream: u8,
        dir: &Path,
        start_us: i64,
    ) -> Result<(Segment, Writer), ArchiveError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            sync_dir(&self.root)?;
        }
        while self.bytes_used() + self.config.segment_bytes > self.config.max_bytes {
            if !self.delete_oldest() {
                break;
            }
        }
        let path = dir.join(format!("{:020}.seg", start_us.max(0)));
        let file = loop {
            let _ = std::fs::remove_file(&path);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io(&path))?;
            match rustix::fs::fallocate(
                &file,
                rustix::fs::FallocateFlags::empty(),
                0,
                self.config.segment_bytes,
            ) {
                Ok(()) => break file,
                Err(e) if e == rustix::io::Errno::NOSPC => {
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                    if !self.delete_oldest() {
                        return Err(ArchiveError::DiskFull);
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(ArchiveError::Io { path, source: e.into() });
                }
            }
        };
        let mut map = map_for_writing(&file).map_err(io(&path))?;
        let header = SegmentHeader { camera: camera.0, stream, start_us };
        map[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        file.sync_data().map_err(io(&path))?;
        sync_dir(dir)?;
        let segment = Segment::new(start_us, path, self.config.segment_bytes);
        let writer = Writer {
            map,
            file: Arc::new(file),
            written: SEGMENT_HEADER_LEN,
            flushed: SEGMENT_HEADER_LEN,
        };
        Ok((segment, writer))
    }

    /// Bytes of all segment files.
    pub fn bytes_used(&self) -> u64 {
        let tracks: Vec<_> = lock(&self.tracks).values().cloned().collect();
        tracks.iter().map(|t| lock(t).segments.iter().map(|s| s.file_bytes).sum::<u64>()).sum()
    }

    /// Deletes the segment whose newest frame is oldest (never one being written); `false`
    /// when there is none.
    fn delete_oldest(&self) -> bool {
        let tracks: Vec<_> = lock(&self.tracks).values().cloned().collect();
        let mut oldest: Option<(i64, usize, i64)> = None; // (last frame, track index, start)
        for (i, track) in tracks.iter().enumerate() {
            let t = lock(track);
            let writing =
                t.writer.is_some().then(|| t.segments.last().map(|s| s.start_us)).flatten();
            for s in &t.segments {
                if Some(s.start_us) == writing {
                    continue;
                }
                let last = s.last_us().unwrap_or(i64::MIN);
                if oldest.is_none_or(|(o, _, _)| last < o) {
                    oldest = Some((last, i, s.start_us));
                }
            }
        }
        let Some((_, i, start)) = oldest else { return false };
        let mut t = lock(&tracks[i]);
        let Some(pos) = t.segments.iter().position(|s| s.start_us == start) else { return false };
        let segment = t.segments.remove(pos);
        drop(t);
        tracing::info!(path = %segment.path.display(), "retention deletes a segment");
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::warn!(path = %segment.path.display(), error = %e, "cannot delete a segment");
        }
        true
    }

    /// Deletes segments past the age limit and over the byte budget.
    pub fn enforce_retention(&self, now_us: i64) {
        if self.config.max_days > 0 {
            let cutoff = now_us - i64::from(self.config.max_days) * 86_400 * 1_000_000;
            let tracks: Vec<_> = lock(&self.tracks).values().cloned().collect();
            for track in tracks {
                let mut t = lock(&track);
                let writing =
                    t.writer.is_some().then(|| t.segments.last().map(|s| s.start_us)).flatten();
                let (old, keep): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut t.segments).into_iter().partition(|s| {
                        Some(s.start_us) != writing && s.last_us().is_none_or(|l| l < cutoff)
                    });
                t.segments = keep;
                drop(t);
                for s in old {
                    tracing::info!(path = %s.path.display(), "retention deletes a segment past the age limit");
                    let _ = std::fs::remove_file(&s.path);
                }
            }
        }
        while self.bytes_used() > self.config.max_bytes && self.delete_oldest() {}
    }

    /// Makes every appended frame durable (fdatasync of each open segment, which writes its
    /// dirty mapped pages). Called at least once a second.
    pub fn flush(&self) -> Result<(), ArchiveError> {
        let tracks: Vec<_> = lock(&self.tracks).values().cloned().collect();
        for track in tracks {
            let (file, target, dir) = {
                let t = lock(&track);
                match &t.writer {
                    Some(w) if w.written > w.flushed => (w.file.clone(), w.written, t.dir.clone()),
                    _ => continue,
                }
            };
            file.sync_data().map_err(io(&dir))?;
            if let Some(w) = lock(&track).writer.as_mut() {
                if Arc::ptr_eq(&w.file, &file) {
                    w.flushed = w.flushed.max(target);
                }
            }
        }
        Ok(())
    }

    /// Bytes appended but not yet flushed, summed over streams (for tests and metrics).
    pub fn unflushed_bytes(&self) -> usize {
        let tracks: Vec<_> = lock(&self.tracks).values().cloned().collect();
        tracks.iter().map(|t| lock(t).writer.as_ref().map_or(0, |w| w.written - w.flushed)).sum()
    }

    /// The keyframe at or before `time_us` (the first one when `time_us` is earlier).
    pub fn seek(&self, camera: CameraId, stream: u8, time_us: i64) -> Option<Cursor> {
        let track = self.existing((camera, stream))?;
        let t = lock(&track);
        let mut first = None;
        for s in t.segments.iter().rev() {
            let Some(&(first_key, _)) = s.keyframes.first() else { continue };
            first = Some(Cursor { segment_start_us: s.start_us, offset: s.keyframes[0].1 });
            if first_key <= time_us {
                let i = s.keyframes.partition_point(|&(t, _)| t <= time_us) - 1;
                return Some(Cursor { segment_start_us: s.start_us, offset: s.keyframes[i].1 });
            }
        }
        first
    }

    /// Up to `max_bytes` of frames from `cursor`, and where to go on. Blocking (page faults on
    /// the map): call it on the blocking pool. Damaged records are never returned.
    pub fn read(
        &self,
        camera: CameraId,
        stream: u8,
        cursor: Cursor,
        max_bytes: usize,
    ) -> (Vec<Frame>, Cursor) {
        let mut frames = Vec::new();
        let Some(track) = self.existing((camera, stream)) else { return (frames, cursor) };
        let mut cursor = cursor;
        let mut bytes = 0;
        while bytes < max_bytes {
            let (map, end, next) = {
                let mut t = lock(&track);
                let Some(i) = t.segments.iter().position(|s| s.start_us >= cursor.segment_start_us)
                else {
                    break;
                };
                if t.segments[i].start_us != cursor.segment_start_us {
                    // The segment was deleted by retention: go on from the next one.
                    cursor = Cursor {
                        segment_start_us: t.segments[i].start_us,
                        offset: SEGMENT_HEADER_LEN,
                    };
                }
                let next = t.segments.get(i + 1).map(|s| s.start_us);
                let s = &mut t.segments[i];
                if s.read_map.is_none() {
                    match File::open(&s.path).and_then(|f| map_for_reading(&f)) {
                        Ok(m) => s.read_map = Some(Arc::new(m)),
                        Err(e) => {
                            tracing::warn!(path = %s.path.display(), error = %e, "segment unreadable");
                            break;
                        }
                    }
                }
                (s.read_map.clone().expect("mapped above"), s.end, next)
            };
            while cursor.offset < end && bytes < max_bytes {
                match record_at(&map[..end], cursor.offset) {
                    Some((pos, frame)) => {
                        bytes += frame.data.len();
                        frames.push(frame);
                        cursor.offset += pos.len;
                    }
                    // Damage the scan skipped: step to the next intact record.
                    None => cursor.offset += 8,
                }
            }
            if cursor.offset >= end {
                match next {
                    Some(start) => {
                        cursor = Cursor { segment_start_us: start, offset: SEGMENT_HEADER_LEN }
                    }
                    None => break,
                }
            }
        }
        (frames, cursor)
    }

    /// Recorded ranges of `camera`'s `stream` overlapping `[from_us, to_us]`, gaps merged away
    /// when shorter than the gap bound.
    pub fn ranges(
        &self,
        camera: CameraId,
        stream: u8,
        from_us: i64,
        to_us: i64,
    ) -> Vec<(i64, i64)> {
        let Some(track) = self.existing((camera, stream)) else { return Vec::new() };
        let t = lock(&track);
        let mut out: Vec<(i64, i64)> = Vec::new();
        for &(a, b) in t.segments.iter().flat_map(|s| &s.spans) {
            if b < from_us || a > to_us {
                continue;
            }
            match out.last_mut() {
                Some((_, last)) if a - *last <= GAP_US => *last = (*last).max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }
}
