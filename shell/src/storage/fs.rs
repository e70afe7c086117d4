//! The few filesystem operations persistence needs, so that the same log and snapshot code runs
//! on the real disk ([`StdFs`](super::StdFs)) and on turmoil's simulated one
//! ([`SimFs`](super::SimFs)).
//!
//! An `Fs` is rooted at one data directory; files are named by plain file names inside it.
//! Every operation that returns `Ok` has made its effect durable, except [`AppendFile::append`],
//! which is durable only after [`AppendFile::sync_data`].

use crate::storage::StorageError;
use std::future::Future;

/// A data directory holding flat files.
pub trait Fs: Clone + Send + Sync + 'static {
    /// A file opened for appending.
    type File: AppendFile;

    /// Opens `name` for appending, creating it (with a durable directory entry) if missing.
    fn open_append(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Self::File, StorageError>> + Send;

    /// Reads all of `name`; `None` if it does not exist.
    fn read(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + Send;

    /// Replaces `name` with `bytes` atomically: after a crash the file holds either the old or
    /// the new contents, never a mix.
    fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Removes `name` durably; `false` if it did not exist.
    fn remove(&self, name: &str) -> impl Future<Output = Result<bool, StorageError>> + Send;
}

/// A file that grows only at its end, and is cut back only to drop bytes never acknowledged.
pub trait AppendFile: Send {
    /// Writes `bytes` at the end of the file. On error a prefix of them may have been written.
    fn append(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Makes everything appended so far durable.
    fn sync_data(&mut self) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// Cuts the file to `len_bytes` and makes the cut durable.
    fn truncate(&mut self, len_bytes: u64)
        -> impl Future<Output = Result<(), StorageError>> + Send;
}
