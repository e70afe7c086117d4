//! Restoring a server's data directory from a backup taken with `GET /api/backup`.

use crate::storage::{Persistence, StdFs, StorageError, FILE_MODE};
use hive_core::persist::{DecodeError, Snapshot};
use std::path::Path;
use thiserror::Error;

/// Why a restore was refused.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The backup file could not be read.
    #[error("cannot read backup {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a Hive backup.
    #[error("{path} is not a Hive backup: {source}")]
    NotABackup {
        /// The file.
        path: String,
        /// The decode error.
        source: DecodeError,
    },
    /// The data directory holds a replica already.
    #[error("{0} is not empty; restore into a new or emptied data directory")]
    NotEmpty(String),
    /// Writing failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Writes the backup at `file` as the replica of the empty data directory `data_dir`.
///
/// The server started on it takes a new write epoch (changes it made after the backup may
/// already be at its peers) and pulls everything newer from its peers.
pub async fn restore(file: &Path, data_dir: &Path) -> Result<(), RestoreError> {
    let bytes = std::fs::read(file)
        .map_err(|source| RestoreError::Read { path: file.display().to_string(), source })?;
    Snapshot::decode(&bytes)
        .map_err(|source| RestoreError::NotABackup { path: file.display().to_string(), source })?;
    let occupied = std::fs::read_dir(data_dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if occupied {
        return Err(RestoreError::NotEmpty(data_dir.display().to_string()));
    }
    let fs = StdFs::open(data_dir).await?;
    // The marker first: a replica restored without it would reuse sequence numbers.
    write_owner_only(&data_dir.join(super::RESTORED_MARKER), b"restored from a backup\n")
        .map_err(|source| RestoreError::Read { path: data_dir.display().to_string(), source })?;
    let (mut persistence, _) = Persistence::load(fs, crate::driver::is_record).await?;
    persistence.write_snapshot(&bytes).await?;
    Ok(())
}

/// Writes `bytes` to `path`, readable by its owner only ([`FILE_MODE`]), also if it existed: a backup
/// holds the system secret and every password verifier.
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}
