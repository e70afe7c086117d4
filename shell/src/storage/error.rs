//! Errors of the storage layer: every failure has a typed cause, none is a panic.

use crate::storage::snapshot::SnapshotError;
use std::fmt;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why a storage operation failed.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The operating system (or the simulated filesystem) refused an operation.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// No space is left for the bytes being written; a prefix of them may have been written.
    #[error("disk full writing {path}", path = path.display())]
    DiskFull {
        /// The file that could not grow.
        path: PathBuf,
    },
    /// A record body was empty; the log never stores one, so that a zeroed region on disk
    /// cannot pass for a record.
    #[error("empty record")]
    EmptyRecord,
    /// A record body is larger than a frame may carry.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Length of the body.
        len: usize,
        /// Largest body a frame carries.
        max: usize,
    },
    /// The log holds damage in its middle; appends wait until a snapshot replaces it.
    #[error("the log is damaged at byte {offset}; write a snapshot before appending")]
    DamagedLog {
        /// Byte offset of the first damaged frame.
        offset: u64,
    },
    /// Every name for a kept copy of a damaged log is taken.
    #[error("{max} kept copies of the damaged {log} exist already; move some away")]
    TooManyDamagedCopies {
        /// The damaged log.
        log: String,
        /// Most copies kept.
        max: u32,
    },
    /// The snapshot file exists but cannot be read back.
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(#[from] SnapshotError),
    /// An earlier failure left the on-disk state unknown; load the data directory again.
    #[error("storage state unknown after an earlier failure; load again")]
    Poisoned,
}

impl StorageError {
    /// Wraps an I/O error, turning "no space left on device" into [`StorageError::DiskFull`].
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            return StorageError::DiskFull { path };
        }
        StorageError::Io { op, path, source }
    }
}

/// A filesystem operation, named in [`StorageError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Creating a directory.
    CreateDir,
    /// Opening or creating a file.
    Open,
    /// Reading a file.
    Read,
    /// Writing to a file.
    Write,
    /// Flushing a file to stable storage.
    Sync,
    /// Flushing a directory's entries to stable storage.
    SyncDir,
    /// Cutting a file to a length.
    Truncate,
    /// Renaming a file over another.
    Rename,
    /// Removing a file.
    Remove,
    /// Giving a file its disk blocks ahead of writing (`fallocate`).
    Allocate,
    /// Mapping a file into memory.
    Map,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            IoOp::CreateDir => "create dir",
            IoOp::Open => "open",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "sync",
            IoOp::SyncDir => "sync dir",
            IoOp::Truncate => "truncate",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::Allocate => "allocate",
            IoOp::Map => "map",
        };
        f.write_str(verb)
    }
}
