//! A replica's data directory: the latest snapshot plus the log of records written after it.
//!
//! Files: `snapshot` (see [`snapshot`](super::snapshot), it names its [`Generation`] `g`) and
//! `log.<g>`, the records after that snapshot. Without a snapshot the generation is 0.
//!
//! Writing a snapshot of generation `g + 1`:
//! 1. create `log.<g+1>` empty, durably;
//! 2. replace `snapshot` atomically (temporary file, fsync, rename, fsync directory): this is
//!    the commit point;
//! 3. append to `log.<g+1>` from now on;
//! 4. remove `log.<g>`, whose records the snapshot holds.
//!
//! A crash before step 2 is durable leaves the old snapshot and `log.<g>` in charge; a crash
//! after it leaves the new snapshot and `log.<g+1>`. Loading reads only the log of the
//! snapshot's generation, so no record is lost and none is replayed on top of a snapshot that
//! already holds it; it removes the logs of the neighbouring generations as leftovers.

use crate::storage::fs::Fs;
use crate::storage::log::TxLog;
use crate::storage::recover::{Corruption, TornTail};
use crate::storage::{snapshot, Generation, StorageError};

/// Name of the snapshot file.
const SNAPSHOT: &str = "snapshot";

/// The persistent state of one replica: snapshot and transaction log.
pub struct Persistence<F: Fs> {
    fs: F,
    generation: Generation,
    log: TxLog<F>,
    /// Set when a failure left it unknown which generation is on disk.
    poisoned: bool,
}

/// What loading a data directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The latest snapshot, if one was written.
    pub snapshot: Option<Vec<u8>>,
    /// Records written after it, in order, up to any damage.
    pub records: Vec<Vec<u8>>,
    /// How the data directory was found.
    pub report: RecoveryReport,
}

/// How a data directory was found on loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Generation of the snapshot and log in use.
    pub generation: Generation,
    /// Bytes of intact records in the log.
    pub log_len_bytes: u64,
    /// An interrupted append, cut from the end of the log.
    pub torn_tail: Option<TornTail>,
    /// Damage in the middle of the log, left in place: the records after it are missing from
    /// [`Loaded::records`] and appends fail until [`Persistence::discard_damage`] or
    /// [`Persistence::write_snapshot`].
    pub corruption: Option<Corruption>,
}

impl<F: Fs> Persistence<F> {
    /// Loads the data directory of `fs`, finishing or undoing an interrupted snapshot.
    ///
    /// A snapshot that cannot be read is an error: the log alone cannot rebuild the state.
    pub async fn load(fs: F) -> Result<(Self, Loaded), StorageError> {
        let (generation, snapshot) = read_snapshot(&fs).await?;
        // The previous log is covered by the snapshot (step 4 did not finish); the next one is
        // from a snapshot that never committed, so it holds no records.
        for stale in generation.prev().into_iter().chain([generation.next()]) {
            fs.remove(&stale.log_name()).await?;
        }
        let (log, recovered) = TxLog::open(&fs, &generation.log_name()).await?;
        let report = RecoveryReport {
            generation,
            log_len_bytes: recovered.valid_len,
            torn_tail: recovered.torn_tail,
            corruption: recovered.corruption,
        };
        let loaded = Loaded { snapshot, records: recovered.records, report };
        Ok((Persistence { fs, generation, log, poisoned: false }, loaded))
    }

    /// Appends `records` durably; on `Ok` they survive any crash.
    pub async fn append(&mut self, records: &[Vec<u8>]) -> Result<(), StorageError> {
        self.check_usable()?;
        self.log.append(records).await
    }

    /// Replaces the snapshot with `snapshot`, which must hold every record appended so far,
    /// and starts an empty log after it.
    ///
    /// On an error the old snapshot and log stay in use, unless the error left it unknown which
    /// one is on disk: then every later call fails with [`StorageError::Poisoned`] and the
    /// directory must be loaded again.
    pub async fn write_snapshot(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        self.check_usable()?;
        let next = self.generation.next();
        self.fs.write_atomic(&next.log_name(), &[]).await?;
        if let Err(e) = self.fs.write_atomic(SNAPSHOT, &snapshot::encode(next, snapshot)).await {
            // Only a snapshot that was never renamed into place is certainly not on disk.
            let on_disk = read_snapshot(&self.fs).await;
            self.poisoned = !matches!(on_disk, Ok((g, _)) if g == self.generation);
            return Err(e);
        }
        let (log, _) = TxLog::open(&self.fs, &next.log_name()).await.inspect_err(|_| {
            // The new snapshot is in charge but its log is not open: appends must not go on.
            self.poisoned = true;
        })?;
        self.log = log;
        let old = std::mem::replace(&mut self.generation, next);
        // Harmless if it fails: the next load removes it.
        if let Err(e) = self.fs.remove(&old.log_name()).await {
            tracing::warn!(error = %e, generation = %old, "could not remove the log of the previous snapshot");
        }
        Ok(())
    }

    /// Cuts the log back to the records [`Persistence::load`] returned, dropping reported
    /// corruption and everything after it; call it once those records are recovered elsewhere.
    pub async fn discard_damage(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        self.log.discard_damage().await
    }

    /// Generation of the snapshot and log in use.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Bytes of records in the log since the snapshot.
    pub fn log_len_bytes(&self) -> u64 {
        self.log.len_bytes()
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }
}

/// Reads the snapshot file: its generation and body, or the first generation if there is none.
async fn read_snapshot<F: Fs>(fs: &F) -> Result<(Generation, Option<Vec<u8>>), StorageError> {
    match fs.read(SNAPSHOT).await? {
        Some(file) => {
            let (generation, body) = snapshot::decode(&file)?;
            Ok((generation, Some(body)))
        }
        None => Ok((Generation::FIRST, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::faults::{DiskFaults, FaultyFs};
    use crate::storage::fs::AppendFile;
    use crate::storage::sim_fs::testing::across_crash;
    use crate::storage::std_fs::testing::temp_fs;
    use crate::storage::{IoOp, RecordError, SimFs, StdFs};
    use hive_core::frame::encode;
    use std::io;

    fn records(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        range.map(|i| vec![i; 2 + i as usize]).collect()
    }

    async fn reload<F: Fs>(fs: &F) -> Loaded {
        Persistence::load(fs.clone()).await.expect("loads").1
    }

    #[tokio::test]
    async fn an_empty_directory_loads_as_the_first_generation_with_nothing() {
        let (_dir, fs) = temp_fs().await;
        let loaded = reload(&fs).await;
        assert_eq!(loaded.snapshot, None);
        assert!(loaded.records.is_empty());
        assert_eq!(loaded.report.generation, Generation::FIRST);
    }

    #[tokio::test]
    async fn a_reload_returns_the_snapshot_and_only_the_records_after_it() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone()).await.unwrap();
        store.append(&records(0..2)).await.unwrap();
        store.write_snapshot(b"state after 0 and 1").await.unwrap();
        store.append(&records(2..4)).await.unwrap();
        assert_eq!(store.generation(), Generation(1));
        drop(store);

        let loaded = reload(&fs).await;
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"state after 0 and 1"[..]));
        assert_eq!(loaded.records, records(2..4));
        assert_eq!(loaded.report.generation, Generation(1));
        assert_eq!(fs.read("log.0").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_crash_before_the_snapshot_commits_keeps_the_old_generation() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone()).await.unwrap();
        store.write_snapshot(b"first").await.unwrap();
        store.append(&records(0..3)).await.unwrap();
        drop(store);
        // Step 1 of the next snapshot, and a temporary snapshot file that was never renamed.
        fs.write_atomic("log.2", &[]).await.unwrap();
        fs.write_atomic("snapshot.tmp", &snapshot::encode(Generation(2), b"second")).await.unwrap();

        let loaded = reload(&fs).await;
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"first"[..]));
        assert_eq!(loaded.records, records(0..3));
        assert_eq!(loaded.report.generation, Generation(1));
        assert_eq!(fs.read("log.2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_crash_after_the_snapshot_commits_does_not_replay_the_records_it_holds() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone()).await.unwrap();
        store.append(&records(0..3)).await.unwrap();
        drop(store);
        // Steps 1 and 2, without removing the old log.
        fs.write_atomic("log.1", &[]).await.unwrap();
        fs.write_atomic(SNAPSHOT, &snapshot::encode(Generation(1), b"holds 0..3")).await.unwrap();

        let (mut store, loaded) = Persistence::load(fs.clone()).await.unwrap();
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"holds 0..3"[..]));
        assert!(loaded.records.is_empty());
        assert_eq!(fs.read("log.0").await.unwrap(), None);
        store.append(&records(3..4)).await.unwrap();
        assert_eq!(reload(&fs).await.records, records(3..4));
    }

    #[tokio::test]
    async fn a_committed_snapshot_without_its_log_starts_an_empty_one() {
        let (_dir, fs) = temp_fs().await;
        fs.write_atomic(SNAPSHOT, &snapshot::encode(Generation(4), b"s")).await.unwrap();
        let (mut store, loaded) = Persistence::load(fs.clone()).await.unwrap();
        assert_eq!((loaded.report.generation, loaded.records.len()), (Generation(4), 0));
        store.append(&records(0..1)).await.unwrap();
        assert_eq!(reload(&fs).await.records, records(0..1));
    }

    #[tokio::test]
    async fn a_full_disk_fails_appends_and_snapshots_but_loses_no_acknowledged_record() {
        let (_dir, std_fs) = temp_fs().await;
        let faults = DiskFaults::unlimited();
        let fs = FaultyFs::new(std_fs.clone(), faults.clone());
        let (mut store, _) = Persistence::load(fs).await.unwrap();
        store.append(&records(0..2)).await.unwrap();

        faults.set_space_left(Some(6));
        let append = store.append(&records(2..4)).await;
        assert!(matches!(append, Err(StorageError::DiskFull { .. })), "{append:?}");
        let snapshot = store.write_snapshot(b"does not fit").await;
        assert!(matches!(snapshot, Err(StorageError::DiskFull { .. })), "{snapshot:?}");
        assert_eq!(reload(&std_fs).await.records, records(0..2));

        faults.set_space_left(None);
        store.append(&records(4..5)).await.unwrap();
        let loaded = reload(&std_fs).await;
        assert_eq!(loaded.records, [records(0..2), records(4..5)].concat());
        assert_eq!((loaded.snapshot, loaded.report.generation), (None, Generation::FIRST));
    }

    #[tokio::test]
    async fn a_corrupt_snapshot_is_an_error_not_a_panic() {
        let (_dir, fs) = temp_fs().await;
        let mut file = snapshot::encode(Generation(1), b"state");
        let last = file.len() - 1;
        file[last] ^= 0x10;
        fs.write_atomic(SNAPSHOT, &file).await.unwrap();
        let load = Persistence::load(fs).await;
        assert!(matches!(load, Err(StorageError::CorruptSnapshot(_))));
    }

    #[tokio::test]
    async fn a_damaged_log_is_reported_and_a_snapshot_replaces_it() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone()).await.unwrap();
        store.append(&records(0..1)).await.unwrap();
        let damaged_at = store.log_len_bytes();
        store.append(&records(1..3)).await.unwrap();
        drop(store);
        let mut log = fs.read("log.0").await.unwrap().unwrap();
        log[damaged_at as usize + 5] ^= 0x01;
        fs.write_atomic("log.0", &log).await.unwrap();

        let (mut store, loaded) = Persistence::load(fs.clone()).await.unwrap();
        assert_eq!(loaded.records, records(0..1));
        let corruption = loaded.report.corruption.expect("reported");
        assert_eq!(corruption.offset, damaged_at);
        assert!(matches!(corruption.error, RecordError::Frame(_)));
        let refused = store.append(&records(5..6)).await;
        assert!(matches!(refused, Err(StorageError::DamagedLog { .. })));

        store.write_snapshot(b"rebuilt from peers").await.unwrap();
        store.append(&records(5..6)).await.unwrap();
        let loaded = reload(&fs).await;
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"rebuilt from peers"[..]));
        assert_eq!(loaded.records, records(5..6));
        assert_eq!(loaded.report.corruption, None);
    }

    /// A filesystem whose snapshot replacement fails after the rename, like a failed
    /// directory fsync.
    #[derive(Clone)]
    struct FailAfterRename(StdFs);

    impl Fs for FailAfterRename {
        type File = <StdFs as Fs>::File;

        async fn open_append(&self, name: &str) -> Result<Self::File, StorageError> {
            self.0.open_append(name).await
        }

        async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
            self.0.read(name).await
        }

        async fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
            self.0.write_atomic(name, bytes).await?;
            if name != SNAPSHOT {
                return Ok(());
            }
            Err(StorageError::io(IoOp::SyncDir, name, io::Error::other("injected")))
        }

        async fn remove(&self, name: &str) -> Result<bool, StorageError> {
            self.0.remove(name).await
        }
    }

    #[tokio::test]
    async fn a_failure_after_the_rename_poisons_until_the_directory_is_loaded_again() {
        let (_dir, std_fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(FailAfterRename(std_fs.clone())).await.unwrap();
        store.append(&records(0..2)).await.unwrap();
        assert!(store.write_snapshot(b"holds 0..2").await.is_err());
        let refused = store.append(&records(2..3)).await;
        assert!(matches!(refused, Err(StorageError::Poisoned)));
        drop(store);

        let loaded = reload(&std_fs).await;
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"holds 0..2"[..]));
        assert!(loaded.records.is_empty());
    }

    /// Compiles only if the driver can hand these futures to `tokio::spawn`.
    #[allow(dead_code)]
    fn futures_are_send(mut store: Persistence<FaultyFs<SimFs>>, fs: StdFs) {
        fn send<T: Send>(_: T) {}
        send(store.append(&[]));
        send(store.write_snapshot(&[]));
        send(store.discard_damage());
        send(Persistence::load(fs));
    }

    #[test]
    fn acknowledged_records_and_snapshots_survive_a_crash_and_unsynced_bytes_do_not() {
        across_crash(
            &turmoil::Builder::new(),
            || async {
                let fs = SimFs::open("/hive").await?;
                let (mut store, _) = Persistence::load(fs.clone()).await?;
                store.append(&records(0..2)).await?;
                store.write_snapshot(b"holds 0..2").await?;
                store.append(&records(2..4)).await?;
                // A whole frame that is written but never synced.
                let mut raw = fs.open_append(&store.generation().log_name()).await?;
                raw.append(&encode(b"unsynced")).await?;
                assert_eq!(reload(&fs).await.records.len(), 3);
                Ok(())
            },
            || async {
                let loaded = reload(&SimFs::open("/hive").await?).await;
                assert_eq!(loaded.snapshot.as_deref(), Some(&b"holds 0..2"[..]));
                assert_eq!(loaded.records, records(2..4));
                assert_eq!((loaded.report.torn_tail, loaded.report.corruption), (None, None));
                Ok(())
            },
        );
    }

    #[test]
    fn torn_writes_at_a_crash_lose_only_unacknowledged_records() {
        let acked = records(0..4);
        let unacked = records(10..16);
        for seed in 0..32 {
            let mut builder = turmoil::Builder::new();
            builder.rng_seed(seed).fs().block_size(8);
            let (acked_before, acked_after) = (acked.clone(), acked.clone());
            let (unacked_before, unacked_after) = (unacked.clone(), unacked.clone());
            across_crash(
                &builder,
                move || {
                    let (acked, unacked) = (acked_before.clone(), unacked_before.clone());
                    async move {
                        let fs = SimFs::open("/hive").await?;
                        let (mut store, _) = Persistence::load(fs.clone()).await?;
                        store.append(&acked[..1]).await?;
                        store.append(&acked[1..]).await?;
                        let mut raw = fs.open_append(&Generation::FIRST.log_name()).await?;
                        let frames: Vec<u8> = unacked.iter().flat_map(|r| encode(r)).collect();
                        raw.append(&frames).await?;
                        Ok(())
                    }
                },
                move || {
                    let (acked, unacked) = (acked_after.clone(), unacked_after.clone());
                    async move {
                        let fs = SimFs::open("/hive").await?;
                        let (mut store, loaded) = Persistence::load(fs.clone()).await?;
                        let written = [acked.clone(), unacked].concat();
                        assert!(loaded.records.starts_with(&acked), "seed {seed}");
                        assert!(written.starts_with(&loaded.records), "seed {seed}");
                        assert_eq!(loaded.report.corruption, None, "seed {seed}");
                        store.append(&records(20..21)).await?;
                        let again = reload(&fs).await.records;
                        assert_eq!(again, [loaded.records, records(20..21)].concat());
                        Ok(())
                    }
                },
            );
        }
    }
}
