//! [`Fs`] on the real disk: `std::fs` calls on tokio's blocking pool.
//!
//! Directory entries are made durable by fsyncing the directory, which works on Unix.
//!
//! The log and snapshots hold the system secret and every password verifier: the data
//! directory is kept `0700` and every file written here `0600`, also when an older version
//! left them more open.

use crate::storage::fs::{AppendFile, Fs};
use crate::storage::{IoOp, StorageError};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Mode of the data directory: its owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in it: its owner only.
pub const FILE_MODE: u32 = 0o600;

/// The production filesystem, rooted at a data directory.
#[derive(Debug, Clone)]
pub struct StdFs {
    root: Arc<Path>,
}

impl StdFs {
    /// Uses `root` as the data directory, creating it durably if missing.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root: Arc<Path> = root.into().into();
        let dir = Arc::clone(&root);
        blocking(IoOp::CreateDir, &root, move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StorageError::io(IoOp::CreateDir, &*dir, e))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| StorageError::io(IoOp::CreateDir, &*dir, e))?;
            sync_dir(&dir)?;
            match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
                _ => Ok(()),
            }
        })
        .await?;
        Ok(StdFs { root })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Fs for StdFs {
    type File = StdFile;

    async fn open_append(&self, name: &str) -> Result<StdFile, StorageError> {
        let path = self.path(name);
        let (root, file_path) = (Arc::clone(&self.root), path.clone());
        let file = blocking(IoOp::Open, &path, move || {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(FILE_MODE)
                .open(&file_path)
                .and_then(owner_only)
                .map_err(|e| StorageError::io(IoOp::Open, &file_path, e))?;
            // The file may be new: its directory entry must outlive a crash too.
            sync_dir(&root)?;
            Ok(file)
        })
        .await?;
        Ok(StdFile { file: Arc::new(file), path })
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(name);
        let file_path = path.clone();
        blocking(IoOp::Read, &path, move || match std::fs::read(&file_path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(IoOp::Read, &file_path, e)),
        })
        .await
    }

    async fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        let (root, final_path, bytes) = (Arc::clone(&self.root), path.clone(), bytes.to_vec());
        blocking(IoOp::Write, &path, move || {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)
                .and_then(owner_only)
                .map_err(|e| StorageError::io(IoOp::Open, &tmp, e))?;
            file.write_all(&bytes).map_err(|e| StorageError::io(IoOp::Write, &tmp, e))?;
            file.sync_all().map_err(|e| StorageError::io(IoOp::Sync, &tmp, e))?;
            std::fs::rename(&tmp, &final_path)
                .map_err(|e| StorageError::io(IoOp::Rename, &final_path, e))?;
            sync_dir(&root)
        })
        .await
    }

    async fn remove(&self, name: &str) -> Result<bool, StorageError> {
        let path = self.path(name);
        let (root, file_path) = (Arc::clone(&self.root), path.clone());
        blocking(IoOp::Remove, &path, move || match std::fs::remove_file(&file_path) {
            Ok(()) => sync_dir(&root).map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(IoOp::Remove, &file_path, e)),
        })
        .await
    }
}

/// A file of a [`StdFs`] opened for appending.
#[derive(Debug)]
pub struct StdFile {
    file: Arc<File>,
    path: PathBuf,
}

impl AppendFile for StdFile {
    async fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let (file, path, bytes) = (Arc::clone(&self.file), self.path.clone(), bytes.to_vec());
        blocking(IoOp::Write, &self.path, move || {
            (&*file).write_all(&bytes).map_err(|e| StorageError::io(IoOp::Write, &path, e))
        })
        .await
    }

    async fn sync_data(&mut self) -> Result<(), StorageError> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        blocking(IoOp::Sync, &self.path, move || {
            file.sync_data().map_err(|e| StorageError::io(IoOp::Sync, &path, e))
        })
        .await
    }

    async fn truncate(&mut self, len_bytes: u64) -> Result<(), StorageError> {
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        blocking(IoOp::Truncate, &self.path, move || {
            file.set_len(len_bytes).map_err(|e| StorageError::io(IoOp::Truncate, &path, e))?;
            file.sync_data().map_err(|e| StorageError::io(IoOp::Sync, &path, e))
        })
        .await
    }
}

/// Sets `file` to [`FILE_MODE`]: `mode` applies only when a file is created.
fn owner_only(file: File) -> io::Result<File> {
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Makes the entries of directory `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StorageError::io(IoOp::SyncDir, dir, e))
}

/// Runs `work` on the blocking pool; a task that could not finish is an I/O error on `path`.
async fn blocking<T: Send + 'static>(
    op: IoOp,
    path: &Path,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(StorageError::io(op, path, io::Error::other(join))),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::temp_fs;
    use super::*;
    use crate::storage::fs::Fs;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_data_directory_and_its_files_are_owner_only() {
        let (_guard, fs) = temp_fs().await;
        fs.open_append("log.0").await.expect("opens");
        fs.write_atomic("snapshot", b"secret").await.expect("writes");
        assert_eq!(mode(&fs.root), DIR_MODE);
        assert_eq!(mode(&fs.path("log.0")), FILE_MODE);
        assert_eq!(mode(&fs.path("snapshot")), FILE_MODE);
    }

    #[tokio::test]
    async fn an_open_data_directory_from_before_is_closed_at_start() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("data");
        std::fs::create_dir(&root).expect("creates");
        std::fs::write(root.join("log.0"), b"").expect("writes");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(root.join("log.0"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let fs = StdFs::open(&root).await.expect("opens");
        fs.open_append("log.0").await.expect("opens");
        assert_eq!(mode(&root), DIR_MODE);
        assert_eq!(mode(&root.join("log.0")), FILE_MODE);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::StdFs;
    use tempfile::TempDir;

    /// A [`StdFs`] in a fresh temporary directory, removed when the guard drops.
    pub(crate) async fn temp_fs() -> (TempDir, StdFs) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let fs = StdFs::open(dir.path().join("data")).await.expect("data directory");
        (dir, fs)
    }
}
