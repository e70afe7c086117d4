//! Segment files on disk: where they live, what they are called, and how a new one is made so
//! that a crash or a full disk never leaves a file the archive could fault on.
//!
//! Layout: `<root>/<camera id, 32 hex digits>/<stream>/<segment number, 10 digits>_<start
//! time, µs>.seg`. The number orders a stream's segments; the time is for people reading a
//! listing (the header has both).

use super::error::ArchiveError;
use super::mapped::map_for_writing;
use crate::storage::IoOp;
use hive_core::ids::CameraId;
use hive_media::archive::{SegmentHeader, SegmentId, SEGMENT_HEADER_LEN};
use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Segment files are readable by the server alone, like the rest of its data directory.
const FILE_MODE: u32 = 0o600;

/// The directory of one camera stream.
pub fn stream_dir(root: &Path, camera: CameraId, stream: u8) -> PathBuf {
    root.join(camera.to_string()).join(stream.to_string())
}

/// The file name of a segment.
pub fn segment_name(id: SegmentId, start_us: i64) -> String {
    format!("{:010}_{start_us}.seg", id.0)
}

/// The segment number of a file name, `None` when it is not a segment's name.
pub fn parse_segment_name(name: &str) -> Option<SegmentId> {
    let (id, start) = name.strip_suffix(".seg")?.split_once('_')?;
    start.parse::<i64>().ok()?;
    id.parse::<u64>().ok().filter(|&id| id > 0).map(SegmentId)
}

/// Flushes a directory's entries to stable storage, so that files made in it survive a power
/// cut.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    let on = |op| ArchiveError::on(op, dir);
    File::open(dir).map_err(on(IoOp::Open))?.sync_all().map_err(on(IoOp::SyncDir))
}

/// Creates `dir` and the directories above it up to `root`, each synced into its parent.
fn create_dirs(root: &Path, dir: &Path) -> Result<(), ArchiveError> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| p.starts_with(root) && *p != dir);
    if let Some(parent) = parent {
        create_dirs(root, parent)?;
    }
    std::fs::create_dir(dir).or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Ok(()),
        _ => Err(ArchiveError::io(IoOp::CreateDir, dir, e)),
    })?;
    sync_dir(parent.unwrap_or(root))
}

/// A new segment, mapped for writing with its header written and durable.
pub struct NewSegment {
    /// Its path.
    pub path: PathBuf,
    /// The file.
    pub file: File,
    /// The writable map of all of it.
    pub map: MmapMut,
}

/// Makes the segment file `header` describes in `dir` (under the archive `root`): created
/// afresh, given all its `segment_bytes` of disk blocks with `fallocate` (a full disk fails
/// here, as [`ArchiveError::DiskFull`], with the file removed), mapped, its header written and
/// synced, and the directory synced. Only then can frames go into it.
pub fn create_segment(
    root: &Path,
    dir: &Path,
    header: &SegmentHeader,
    segment_bytes: u64,
) -> Result<NewSegment, ArchiveError> {
    create_dirs(root, dir)?;
    let path = dir.join(segment_name(header.segment, header.start_us));
    let on = |op| ArchiveError::on(op, &path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&path)
        .map_err(on(IoOp::Open))?;
    let ready = || -> Result<MmapMut, ArchiveError> {
        let flags = rustix::fs::FallocateFlags::empty();
        rustix::fs::fallocate(&file, flags, 0, segment_bytes).map_err(|errno| {
            if errno == rustix::io::Errno::NOSPC {
                ArchiveError::DiskFull { path: dir.to_owned() }
            } else {
                ArchiveError::Io { op: IoOp::Allocate, path: path.clone(), source: errno.into() }
            }
        })?;
        // Only now, with every block allocated, may the file be mapped for writing.
        let mut map = map_for_writing(&file).map_err(on(IoOp::Map))?;
        map[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        file.sync_data().map_err(on(IoOp::Sync))?;
        sync_dir(dir)?;
        Ok(map)
    };
    match ready() {
        Ok(map) => Ok(NewSegment { path, file, map }),
        Err(e) => {
            drop(file);
            remove_segment(&path);
            Err(e)
        }
    }
}

/// Deletes a segment file; a failure is logged (the space stays taken until the next start
/// finds the file again).
pub fn remove_segment(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete a segment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_other_names_are_not_segments() {
        let name = segment_name(SegmentId(42), 1_700_000_000_000_000);
        assert_eq!(name, "0000000042_1700000000000000.seg");
        assert_eq!(parse_segment_name(&name), Some(SegmentId(42)));
        assert_eq!(parse_segment_name("0000000042_-5.seg"), Some(SegmentId(42)));
        for other in ["42.seg", "0000000000_5.seg", "x_5.seg", "1_5.tmp", "1_x.seg"] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }
}
