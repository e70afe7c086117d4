//! Opening an archive: every segment file is scanned, damage is logged with file and offset,
//! torn tails are cut, and the streams' indexes are built from what the scans found.
//!
//! What a start decides, file by file (`docs/archive.md` has the why):
//! - A name that is not a camera, stream or segment name is left alone, with a warning.
//! - A file shorter than a segment header, or with no intact record, is removed: it is a
//!   segment whose making a crash interrupted, or one with nothing left to serve.
//! - A header naming another camera stream than the file's place: left alone, not indexed.
//! - A damaged header: logged; the records are scanned and served all the same.
//! - Damage between intact records: logged (offset, length, what was lost), skipped.
//! - Bytes after the last intact record that are not zero: a torn tail, zeroed.

use super::error::ArchiveError;
use super::files;
use super::stream::{SegmentFile, Stream, StreamKey};
use crate::storage::IoOp;
use hive_core::ids::CameraId;
use hive_media::archive::{
    scan, Damage, DamageKind, HeaderError, RecordPos, SegmentId, TornTail, SEGMENT_HEADER_LEN,
};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a long scan logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What opening an archive found wrong, file by file (all of it is logged as well).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Damaged regions skipped between intact records.
    pub damage: Vec<(PathBuf, Damage)>,
    /// Torn tails cut.
    pub torn_tails: Vec<(PathBuf, TornTail)>,
    /// Segment headers that could not be read (the records were read all the same).
    pub damaged_headers: Vec<(PathBuf, HeaderError)>,
    /// Files removed: segments with nothing intact in them.
    pub removed: Vec<PathBuf>,
    /// Files left alone: not the archive's, not readable, or in the wrong place.
    pub ignored: Vec<PathBuf>,
}

/// The streams found in an archive directory.
pub struct Loaded {
    /// Every stream with its segments indexed.
    pub streams: BTreeMap<StreamKey, Stream>,
    /// Bytes of the segment files kept.
    pub bytes_used: u64,
    /// What was found wrong.
    pub report: RecoveryReport,
}

/// A segment file to scan.
struct Found {
    key: StreamKey,
    id: SegmentId,
    path: PathBuf,
}

/// Scans the archive at `root`.
pub fn load(root: &Path) -> Result<Loaded, ArchiveError> {
    let mut report = RecoveryReport::default();
    let (mut streams, found) = list(root, &mut report)?;
    let mut progress = Progress::new(found.len());
    let mut bytes_used = 0;
    // One buffer for every segment: reading a file is cheaper than faulting in a map of it.
    let mut buffer = Vec::new();
    for f in found {
        let stream = streams.get_mut(&f.key).expect("listed with its stream");
        stream.next_id = stream.next_id.max(f.id.next());
        match load_segment(&f, &mut buffer, &mut report) {
            Ok(Some((file, records))) => {
                progress.scanned(file.file_bytes);
                let file_bytes = file.file_bytes;
                if index_segment(stream, file, &records) {
                    bytes_used += file_bytes;
                }
            }
            Ok(None) => progress.scanned(0),
            Err(e) => {
                progress.scanned(0);
                tracing::warn!(path = %f.path.display(), error = %e, "segment unreadable; left alone");
                report.ignored.push(f.path);
            }
        }
    }
    progress.done();
    Ok(Loaded { streams, bytes_used, report })
}

/// The streams and their segment files, each stream's in order.
fn list(
    root: &Path,
    report: &mut RecoveryReport,
) -> Result<(BTreeMap<StreamKey, Stream>, Vec<Found>), ArchiveError> {
    let mut streams = BTreeMap::new();
    let mut found = Vec::new();
    let entries = |dir: &Path| -> Result<Vec<(String, PathBuf)>, ArchiveError> {
        let read = std::fs::read_dir(dir).map_err(ArchiveError::on(IoOp::Read, dir))?;
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(ArchiveError::on(IoOp::Read, dir))?;
            out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
        }
        out.sort();
        Ok(out)
    };
    let mut stray = |path: &Path| {
        tracing::warn!(path = %path.display(), "not part of the archive; left alone");
        report.ignored.push(path.to_owned());
    };
    for (name, camera_dir) in entries(root)? {
        let camera = match name.parse::<CameraId>() {
            Ok(camera) if name.len() == 32 && camera_dir.is_dir() => camera,
            _ => {
                stray(&camera_dir);
                continue;
            }
        };
        for (name, stream_dir) in entries(&camera_dir)? {
            let stream = match name.parse::<u8>() {
                Ok(stream) if stream.to_string() == name && stream_dir.is_dir() => stream,
                _ => {
                    stray(&stream_dir);
                    continue;
                }
            };
            let key = (camera, stream);
            streams.insert(key, Stream::new(stream_dir.clone()));
            let mut segments = Vec::new();
            for (name, path) in entries(&stream_dir)? {
                match files::parse_segment_name(&name) {
                    Some(id) => segments.push(Found { key, id, path }),
                    None => stray(&path),
                }
            }
            segments.sort_by_key(|f| f.id);
            found.extend(segments);
        }
    }
    Ok((streams, found))
}

/// Scans one segment file; `None` when it holds nothing to keep (removed) or is not the
/// stream's (left alone).
fn load_segment(
    f: &Found,
    buffer: &mut Vec<u8>,
    report: &mut RecoveryReport,
) -> Result<Option<(SegmentFile, Vec<RecordPos>)>, ArchiveError> {
    let path = f.path.display();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f.path)
        .map_err(ArchiveError::on(IoOp::Open, &f.path))?;
    let file_bytes = file.metadata().map_err(ArchiveError::on(IoOp::Read, &f.path))?.len();
    if file_bytes < SEGMENT_HEADER_LEN as u64 {
        tracing::info!(%path, file_bytes, "segment shorter than its header (its making was interrupted); removed");
        files::remove_segment(&f.path);
        report.removed.push(f.path.clone());
        return Ok(None);
    }
    let len = usize::try_from(file_bytes).map_err(|_| {
        ArchiveError::io(IoOp::Read, &f.path, std::io::Error::other("larger than memory"))
    })?;
    read_data(&file, buffer, len).map_err(ArchiveError::on(IoOp::Read, &f.path))?;
    let found = scan(buffer);
    match found.header {
        Ok(h) if (h.camera, h.stream, h.segment) == (f.key.0 .0, f.key.1, f.id) => {}
        Ok(h) => {
            tracing::warn!(%path, camera = %CameraId(h.camera), stream = h.stream, segment = h.segment.0, "segment header names another stream; left alone");
            report.ignored.push(f.path.clone());
            return Ok(None);
        }
        Err(error) => {
            tracing::warn!(%path, offset = 0, %error, "segment header damaged; its records are read all the same");
            report.damaged_headers.push((f.path.clone(), error));
        }
    }
    for damage in &found.damage {
        match damage.kind {
            DamageKind::Frame { time_us, keyframe } => {
                tracing::warn!(%path, offset = damage.offset, bytes = damage.len, time_us, keyframe, "damaged frame skipped")
            }
            DamageKind::Unreadable { error } => {
                tracing::warn!(%path, offset = damage.offset, bytes = damage.len, %error, "damaged bytes skipped")
            }
        }
        report.damage.push((f.path.clone(), *damage));
    }
    if found.records.is_empty() {
        tracing::warn!(%path, damaged = found.damage.len(), torn_bytes = found.torn_tail.map_or(0, |t| t.len), "segment holds no intact frame; removed");
        files::remove_segment(&f.path);
        report.removed.push(f.path.clone());
        return Ok(None);
    }
    if let Some(torn) = found.torn_tail {
        // An interrupted write: nothing intact in it. Cleared so that the next scan finds the
        // same records and no damage.
        tracing::info!(%path, offset = torn.offset, bytes = torn.len, "torn tail cut");
        report.torn_tails.push((f.path.clone(), torn));
        let zeros = vec![0u8; torn.len];
        file.write_all_at(&zeros, torn.offset as u64)
            .and_then(|()| file.sync_data())
            .map_err(ArchiveError::on(IoOp::Write, &f.path))?;
    }
    let segment = SegmentFile { id: f.id, path: f.path.clone(), file_bytes, read_map: None };
    Ok(Some((segment, found.records)))
}

/// Reads the first `len` bytes of `file` into `buffer`, skipping what the filesystem reports
/// as holes: the unused, preallocated part of a segment reads as zeros, and asking the kernel
/// for tens of megabytes of zero pages per stream would make a start after a crash slow.
fn read_data(file: &std::fs::File, buffer: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    use rustix::fs::{seek, SeekFrom};
    buffer.clear();
    buffer.resize(len, 0);
    let mut at = 0u64;
    while (at as usize) < len {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(data) => data,
            // No data after `at`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            // A filesystem that cannot tell: read it all.
            Err(_) => return file.read_exact_at(&mut buffer[at as usize..], at),
        };
        let hole = seek(file, SeekFrom::Hole(data))?;
        let (from, to) = ((data as usize).min(len), (hole as usize).min(len));
        file.read_exact_at(&mut buffer[from..to], data)?;
        at = hole.max(data + 1);
    }
    Ok(())
}

/// Adds a scanned segment to its stream's index; `false` when it cannot go in.
fn index_segment(stream: &mut Stream, file: SegmentFile, records: &[RecordPos]) -> bool {
    if let Err(error) = stream.index.add_segment(file.id, SEGMENT_HEADER_LEN) {
        tracing::warn!(path = %file.path.display(), %error, "segment out of order; left alone");
        return false;
    }
    let mut refused = 0;
    for record in records {
        if stream.index.append(file.id, record).is_err() {
            refused += 1;
        }
    }
    if refused > 0 {
        tracing::warn!(path = %file.path.display(), refused, "frames older than frames before them are not indexed");
    }
    stream.files.push_back(file);
    true
}

/// Progress of a scan, logged every [`PROGRESS_EVERY`].
struct Progress {
    total: usize,
    done: usize,
    bytes: u64,
    started: Instant,
    logged: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        if total > 0 {
            tracing::info!(segments = total, "scanning the archive");
        }
        let now = Instant::now();
        Progress { total, done: 0, bytes: 0, started: now, logged: now }
    }

    fn scanned(&mut self, bytes: u64) {
        self.done += 1;
        self.bytes += bytes;
        if self.logged.elapsed() >= PROGRESS_EVERY {
            self.logged = Instant::now();
            tracing::info!(
                done = self.done,
                total = self.total,
                mib = self.bytes >> 20,
                "scanning the archive"
            );
        }
    }

    fn done(&self) {
        if self.total > 0 {
            let ms = self.started.elapsed().as_millis() as u64;
            tracing::info!(segments = self.done, mib = self.bytes >> 20, ms, "archive scanned");
        }
    }
}
