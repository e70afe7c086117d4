//! A data directory in memory whose operations complete at once, so persistence code runs
//! without an async runtime (see [`block_on`]).

use hive::storage::{AppendFile, Fs, StorageError};
use std::collections::BTreeMap;
use std::future::{ready, Future};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Flat files in memory, shared by clones.
#[derive(Clone, Default, Debug)]
pub struct MemFs {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemFs {
    /// A directory holding one file.
    pub fn with_file(name: &str, bytes: &[u8]) -> MemFs {
        let fs = MemFs::default();
        fs.files().insert(name.to_owned(), bytes.to_vec());
        fs
    }

    /// Contents of `name`, if it exists.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        self.files().get(name).cloned()
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        // A panic while the lock was held already failed the run; the map is still usable.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Fs for MemFs {
    type File = MemFile;

    fn open_append(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<MemFile, StorageError>> + Send {
        self.files().entry(name.to_owned()).or_default();
        ready(Ok(MemFile { fs: self.clone(), name: name.to_owned() }))
    }

    fn read(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + Send {
        ready(Ok(self.file(name)))
    }

    fn write_atomic(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.files().insert(name.to_owned(), bytes.to_vec());
        ready(Ok(()))
    }

    fn remove(&self, name: &str) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.files().remove(name).is_some()))
    }
}

/// A file of a [`MemFs`] opened for appending.
#[derive(Debug)]
pub struct MemFile {
    fs: MemFs,
    name: String,
}

impl AppendFile for MemFile {
    fn append(&mut self, bytes: &[u8]) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.fs.files().entry(self.name.clone()).or_default().extend_from_slice(bytes);
        ready(Ok(()))
    }

    fn sync_data(&mut self) -> impl Future<Output = Result<(), StorageError>> + Send {
        ready(Ok(()))
    }

    fn truncate(
        &mut self,
        len_bytes: u64,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        let len = usize::try_from(len_bytes).unwrap_or(usize::MAX);
        self.fs.files().entry(self.name.clone()).or_default().truncate(len);
        ready(Ok(()))
    }
}

/// Runs `fut` to completion; it must not wait on anything but a [`MemFs`].
pub fn block_on<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a future over MemFs waited; nothing would wake it"),
    }
}
