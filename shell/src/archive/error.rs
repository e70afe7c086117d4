//! Errors of the archive: every failure has a typed cause, none is a panic or a signal.

use crate::storage::IoOp;
use hive_media::archive::IndexError;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why the archive could not store, read or open.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// The operating system refused an operation.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// No room for a new segment, even after retention deleted every segment it could: the
    /// camera's status says so until space comes back.
    #[error("disk full: no room for a segment in {path}", path = path.display())]
    DiskFull {
        /// The stream directory that needed the segment.
        path: PathBuf,
    },
    /// A frame larger than a record or an empty segment can hold.
    #[error("frame of {payload_len} bytes does not fit a segment of {segment_bytes} bytes")]
    FrameTooLarge {
        /// Bytes of the frame.
        payload_len: usize,
        /// Bytes of a segment.
        segment_bytes: u64,
    },
    /// The stream's index refused the frame; [`IndexError::TimeWentBack`] when the frame is
    /// older than the last one stored.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A frame after a failed append, before the next keyframe: not stored, since no decoder
    /// could use it without the frame that failed.
    #[error("waiting for a keyframe after a failed append")]
    AwaitingKeyframe,
    /// A configuration the archive cannot work with.
    #[error("bad archive configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: &'static str,
    },
}

impl ArchiveError {
    /// Wraps an I/O error, turning "no space left on device" into [`ArchiveError::DiskFull`].
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            return ArchiveError::DiskFull { path };
        }
        ArchiveError::Io { op, path, source }
    }

    /// A closure for `map_err` that wraps an I/O error of `op` on `path`.
    pub(crate) fn on(op: IoOp, path: &std::path::Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| ArchiveError::io(op, path, source)
    }
}
