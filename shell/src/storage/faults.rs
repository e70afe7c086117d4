//! Full-disk injection over any [`Fs`]: a byte budget that a test or the simulator can change
//! while the server runs.
//!
//! An append larger than the budget writes the prefix that fits (a torn write, as a real disk
//! does) and fails with [`StorageError::DiskFull`]; the log cuts that prefix before its next
//! append. An atomic write larger than the budget writes nothing. The budget counts bytes
//! written; removing or truncating files does not return space (the simulator raises the budget
//! to model freed space).

use crate::storage::fs::{AppendFile, Fs};
use crate::storage::StorageError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Budget value meaning "no limit".
const UNLIMITED: u64 = u64::MAX;

/// Shared handle to the space left on a faulty disk.
#[derive(Debug, Clone)]
pub struct DiskFaults {
    space_left_bytes: Arc<AtomicU64>,
}

impl Default for DiskFaults {
    fn default() -> Self {
        DiskFaults { space_left_bytes: Arc::new(AtomicU64::new(UNLIMITED)) }
    }
}

impl DiskFaults {
    /// A disk with no limit until one is set.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Sets the bytes the disk still accepts; `None` removes the limit.
    pub fn set_space_left(&self, bytes: Option<u64>) {
        self.space_left_bytes.store(bytes.unwrap_or(UNLIMITED), Ordering::SeqCst);
    }

    /// The bytes the disk still accepts; `None` if unlimited.
    pub fn space_left(&self) -> Option<u64> {
        Some(self.space_left_bytes.load(Ordering::SeqCst)).filter(|&left| left != UNLIMITED)
    }

    /// Takes up to `wanted` bytes from the budget; returns how many were granted.
    fn take_up_to(&self, wanted: u64) -> u64 {
        let mut granted = wanted;
        // The closure returns `None` for "unlimited", which leaves the budget untouched.
        let _ = self.space_left_bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            granted = wanted.min(left);
            (left != UNLIMITED).then(|| left - granted)
        });
        granted
    }

    /// Takes exactly `wanted` bytes from the budget, or nothing if they do not fit.
    fn take_all(&self, wanted: u64) -> bool {
        self.space_left_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                UNLIMITED => Some(UNLIMITED),
                left => left.checked_sub(wanted),
            })
            .is_ok()
    }
}

/// An [`Fs`] whose writes draw on a [`DiskFaults`] budget.
#[derive(Debug, Clone)]
pub struct FaultyFs<F> {
    inner: F,
    faults: DiskFaults,
}

impl<F: Fs> FaultyFs<F> {
    /// Wraps `inner`; `faults` is the handle that changes the budget later.
    pub fn new(inner: F, faults: DiskFaults) -> Self {
        FaultyFs { inner, faults }
    }
}

impl<F: Fs> Fs for FaultyFs<F> {
    type File = FaultyFile<F::File>;

    async fn open_append(&self, name: &str) -> Result<Self::File, StorageError> {
        let inner = self.inner.open_append(name).await?;
        Ok(FaultyFile { inner, faults: self.faults.clone(), name: name.into() })
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.read(name).await
    }

    async fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if !self.faults.take_all(bytes.len() as u64) {
            return Err(StorageError::DiskFull { path: name.into() });
        }
        self.inner.write_atomic(name, bytes).await
    }

    async fn remove(&self, name: &str) -> Result<bool, StorageError> {
        self.inner.remove(name).await
    }
}

/// A file of a [`FaultyFs`] opened for appending.
#[derive(Debug)]
pub struct FaultyFile<A> {
    inner: A,
    faults: DiskFaults,
    name: PathBuf,
}

impl<A: AppendFile> AppendFile for FaultyFile<A> {
    async fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        // Bounded by `bytes.len()`, so the conversion back to usize cannot truncate.
        let granted = self.faults.take_up_to(bytes.len() as u64) as usize;
        if granted < bytes.len() {
            if granted > 0 {
                self.inner.append(&bytes[..granted]).await?;
            }
            return Err(StorageError::DiskFull { path: self.name.clone() });
        }
        self.inner.append(bytes).await
    }

    async fn sync_data(&mut self) -> Result<(), StorageError> {
        self.inner.sync_data().await
    }

    async fn truncate(&mut self, len_bytes: u64) -> Result<(), StorageError> {
        self.inner.truncate(len_bytes).await
    }
}
