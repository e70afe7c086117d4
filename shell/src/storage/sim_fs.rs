//! [`Fs`] on turmoil's simulated filesystem: each simulated host has its own disk.
//!
//! turmoil keeps writes pending until they are synced; `sim.crash(host)` drops what is pending
//! (or, with a configured block size, keeps a random prefix of each pending write), so the
//! durability promises of [`Fs`] are checked for real. Operations go through turmoil's tokio
//! shim, so a configured I/O latency applies. Must be used from inside a turmoil host.

use crate::storage::fs::{AppendFile, Fs};
use crate::storage::{IoOp, StorageError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use turmoil::fs::shim::tokio::fs as sim;

/// The simulated filesystem of the current turmoil host, rooted at a data directory.
#[derive(Debug, Clone)]
pub struct SimFs {
    root: Arc<Path>,
}

impl SimFs {
    /// Uses `root` (made absolute) as the data directory, creating it durably if missing.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self, StorageError> {
        let root: Arc<Path> = Path::new("/").join(root).into();
        sim::create_dir_all(&root)
            .await
            .map_err(|e| StorageError::io(IoOp::CreateDir, &*root, e))?;
        for dir in root.ancestors() {
            sync_dir(dir).await?;
        }
        Ok(SimFs { root })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

impl Fs for SimFs {
    type File = SimFile;

    async fn open_append(&self, name: &str) -> Result<SimFile, StorageError> {
        let path = self.path(name);
        let file = sim::OpenOptions::new()
            .write(true)
            .create(true)
            .open(&path)
            .await
            .map_err(|e| StorageError::io(IoOp::Open, &path, e))?;
        // The file may be new: its directory entry must outlive a crash too.
        sync_dir(&self.root).await?;
        let len_bytes =
            file.metadata().await.map_err(|e| StorageError::io(IoOp::Open, &path, e))?.len();
        Ok(SimFile { file, path, len_bytes })
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(name);
        match sim::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io(IoOp::Read, &path, e)),
        }
    }

    async fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        let file =
            sim::File::create(&tmp).await.map_err(|e| StorageError::io(IoOp::Open, &tmp, e))?;
        write_all_at(&file, &tmp, bytes, 0).await?;
        file.sync_all().await.map_err(|e| StorageError::io(IoOp::Sync, &tmp, e))?;
        sim::rename(&tmp, &path).await.map_err(|e| StorageError::io(IoOp::Rename, &path, e))?;
        sync_dir(&self.root).await
    }

    async fn remove(&self, name: &str) -> Result<bool, StorageError> {
        let path = self.path(name);
        match sim::remove_file(&path).await {
            Ok(()) => sync_dir(&self.root).await.map(|()| true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(IoOp::Remove, &path, e)),
        }
    }
}

/// A file of a [`SimFs`] opened for appending.
#[derive(Debug)]
pub struct SimFile {
    file: sim::File,
    path: PathBuf,
    /// Where the next append goes: this handle is the file's only writer.
    len_bytes: u64,
}

impl AppendFile for SimFile {
    async fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let written = write_all_at(&self.file, &self.path, bytes, self.len_bytes).await;
        // A failed write may still have landed a prefix; re-read the length rather than guess.
        if written.is_err() {
            if let Ok(meta) = self.file.metadata().await {
                self.len_bytes = meta.len();
            }
            return written;
        }
        self.len_bytes += bytes.len() as u64;
        Ok(())
    }

    async fn sync_data(&mut self) -> Result<(), StorageError> {
        self.file.sync_data().await.map_err(|e| StorageError::io(IoOp::Sync, &self.path, e))
    }

    async fn truncate(&mut self, len_bytes: u64) -> Result<(), StorageError> {
        self.file
            .set_len(len_bytes)
            .await
            .map_err(|e| StorageError::io(IoOp::Truncate, &self.path, e))?;
        self.len_bytes = len_bytes;
        self.sync_data().await
    }
}

/// Writes all of `bytes` at `offset`.
async fn write_all_at(
    file: &sim::File,
    path: &Path,
    bytes: &[u8],
    offset: u64,
) -> Result<(), StorageError> {
    let mut done = 0;
    while done < bytes.len() {
        let n = file
            .write_at(&bytes[done..], offset + done as u64)
            .await
            .map_err(|e| StorageError::io(IoOp::Write, path, e))?;
        if n == 0 {
            return Err(StorageError::io(IoOp::Write, path, io::ErrorKind::WriteZero.into()));
        }
        done += n;
    }
    Ok(())
}

/// Makes the entries of directory `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    sim::sync_dir(dir).await.map_err(|e| StorageError::io(IoOp::SyncDir, dir, e))
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::storage::StorageError;
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use tokio::sync::Notify;

    type Step = Pin<Box<dyn Future<Output = Result<(), StorageError>>>>;

    /// Runs `before` on host "server", crashes the host, restarts it and runs `after`.
    pub(crate) fn across_crash<B, BF, A, AF>(builder: &turmoil::Builder, before: B, after: A)
    where
        B: Fn() -> BF + 'static,
        BF: Future<Output = Result<(), StorageError>> + 'static,
        A: Fn() -> AF + 'static,
        AF: Future<Output = Result<(), StorageError>> + 'static,
    {
        let mut sim = builder.build();
        let crashed = Rc::new(Cell::new(false));
        let done = Rc::new(Notify::new());
        let (host_crashed, host_done) = (Rc::clone(&crashed), Rc::clone(&done));
        sim.host("server", move || {
            let step: Step =
                if host_crashed.get() { Box::pin(after()) } else { Box::pin(before()) };
            let done = Rc::clone(&host_done);
            async move {
                step.await?;
                done.notify_one();
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        for phase in ["before", "after"] {
            let done = Rc::clone(&done);
            sim.client(phase, async move {
                done.notified().await;
                Ok(())
            });
            sim.run().unwrap_or_else(|e| panic!("{phase} the crash: {e}"));
            if !crashed.get() {
                sim.crash("server");
                crashed.set(true);
                sim.bounce("server");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::across_crash;
    use super::*;

    #[test]
    fn synced_appends_survive_a_crash_and_unsynced_ones_do_not() {
        across_crash(
            &turmoil::Builder::new(),
            || async {
                let fs = SimFs::open("/data").await?;
                let mut file = fs.open_append("file").await?;
                file.append(b"synced").await?;
                file.sync_data().await?;
                file.append(b" and not").await?;
                assert_eq!(fs.read("file").await?.as_deref(), Some(&b"synced and not"[..]));
                Ok(())
            },
            || async {
                let fs = SimFs::open("/data").await?;
                assert_eq!(fs.read("file").await?.as_deref(), Some(&b"synced"[..]));
                Ok(())
            },
        );
    }

    #[test]
    fn atomic_writes_and_removals_survive_a_crash() {
        across_crash(
            &turmoil::Builder::new(),
            || async {
                let fs = SimFs::open("/data/deep").await?;
                fs.write_atomic("kept", b"old").await?;
                fs.write_atomic("kept", b"new").await?;
                fs.write_atomic("gone", b"x").await?;
                assert!(fs.remove("gone").await?);
                assert!(!fs.remove("gone").await?);
                Ok(())
            },
            || async {
                let fs = SimFs::open("/data/deep").await?;
                assert_eq!(fs.read("kept").await?.as_deref(), Some(&b"new"[..]));
                assert_eq!(fs.read("gone").await?, None);
                Ok(())
            },
        );
    }

    #[test]
    fn a_truncation_survives_a_crash() {
        across_crash(
            &turmoil::Builder::new(),
            || async {
                let fs = SimFs::open("/data").await?;
                let mut file = fs.open_append("file").await?;
                file.append(b"keep-cut").await?;
                file.truncate(4).await?;
                file.append(b"!").await?;
                file.sync_data().await?;
                Ok(())
            },
            || async {
                let fs = SimFs::open("/data").await?;
                assert_eq!(fs.read("file").await?.as_deref(), Some(&b"keep!"[..]));
                Ok(())
            },
        );
    }
}
