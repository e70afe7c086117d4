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
//!
//! A log found damaged is never removed: before step 2 its bytes are copied durably to
//! `log.<g>.damaged-<n>` (the first free `n`), which nothing removes, so the evidence
//! outlives the snapshot that replaces the log whether or not a crash comes in between.

use crate::storage::fs::Fs;
use crate::storage::log::TxLog;
use crate::storage::recover::{Damage, IsRecord, TornTail};
use crate::storage::{snapshot, Generation, StorageError};

/// Name of the snapshot file.
const SNAPSHOT: &str = "snapshot";

/// Most kept copies of one generation's damaged log: a bound on the search for a free name.
const DAMAGED_COPIES_MAX: u32 = 1_000;

/// The persistent state of one replica: snapshot and transaction log.
pub struct Persistence<F: Fs> {
    fs: F,
    generation: Generation,
    log: TxLog<F>,
    is_record: IsRecord,
    /// The log in use was found damaged: it is kept aside before a snapshot replaces it.
    log_damaged: bool,
    /// Set when a failure left it unknown which generation is on disk.
    poisoned: bool,
}

/// What loading a data directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The latest snapshot, if one was written.
    pub snapshot: Option<Vec<u8>>,
    /// Every intact record written after it, in order, before and after any damage.
    pub records: Vec<Vec<u8>>,
    /// How the data directory was found.
    pub report: RecoveryReport,
}

/// How a data directory was found on loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Generation of the snapshot and log in use.
    pub generation: Generation,
    /// Bytes of the log up to its torn tail.
    pub log_len_bytes: u64,
    /// An interrupted append, cut from the end of the log.
    pub torn_tail: Option<TornTail>,
    /// Damaged ranges in the middle of the log, left in place; the records around them are
    /// in [`Loaded::records`]. Appends fail until [`Persistence::write_snapshot`] replaces
    /// the log (keeping it aside).
    pub damage: Vec<Damage>,
}

impl<F: Fs> Persistence<F> {
    /// Loads the data directory of `fs`, finishing or undoing an interrupted snapshot;
    /// `is_record` tells log records from other well-framed bodies.
    ///
    /// A snapshot that cannot be read is an error: the log alone cannot rebuild the state.
    pub async fn load(fs: F, is_record: IsRecord) -> Result<(Self, Loaded), StorageError> {
        let (generation, snapshot) = read_snapshot(&fs).await?;
        // The previous log is covered by the snapshot (step 4 did not finish); the next one is
        // from a snapshot that never committed, so it holds no records.
        for stale in generation.prev().into_iter().chain([generation.next()]) {
            fs.remove(&stale.log_name()).await?;
        }
        let (log, recovered) = TxLog::open(&fs, &generation.log_name(), is_record).await?;
        let log_damaged = !recovered.damage.is_empty();
        let report = RecoveryReport {
            generation,
            log_len_bytes: recovered.valid_len,
            torn_tail: recovered.torn_tail,
            damage: recovered.damage,
        };
        let loaded = Loaded { snapshot, records: recovered.records, report };
        Ok((Persistence { fs, generation, log, is_record, log_damaged, poisoned: false }, loaded))
    }

    /// Appends `records` durably; on `Ok` they survive any crash.
    pub async fn append(&mut self, records: &[Vec<u8>]) -> Result<(), StorageError> {
        self.check_usable()?;
        self.log.append(records).await
    }

    /// Replaces the snapshot with `snapshot`, which must hold every record appended so far
    /// (and every intact one of a damaged log), and starts an empty log after it. A damaged
    /// log is first copied aside (`keep_damaged_log`).
    ///
    /// On an error the old snapshot and log stay in use, unless the error left it unknown which
    /// one is on disk: then every later call fails with [`StorageError::Poisoned`] and the
    /// directory must be loaded again.
    pub async fn write_snapshot(&mut self, snapshot: &[u8]) -> Result<(), StorageError> {
        self.check_usable()?;
        if self.log_damaged {
            self.keep_damaged_log().await?;
        }
        let next = self.generation.next();
        self.fs.write_atomic(&next.log_name(), &[]).await?;
        if let Err(e) = self.fs.write_atomic(SNAPSHOT, &snapshot::encode(next, snapshot)).await {
            // Only a snapshot that was never renamed into place is certainly not on disk.
            let on_disk = read_snapshot(&self.fs).await;
            self.poisoned = !matches!(on_disk, Ok((g, _)) if g == self.generation);
            return Err(e);
        }
        let opened = TxLog::open(&self.fs, &next.log_name(), self.is_record).await;
        let (log, _) = opened.inspect_err(|_| {
            // The new snapshot is in charge but its log is not open: appends must not go on.
            self.poisoned = true;
        })?;
        self.log = log;
        self.log_damaged = false;
        let old = std::mem::replace(&mut self.generation, next);
        // Harmless if it fails: the next load removes it.
        if let Err(e) = self.fs.remove(&old.log_name()).await {
            tracing::warn!(error = %e, generation = %old, "could not remove the log of the previous snapshot");
        }
        Ok(())
    }

    /// Copies the damaged log in use to `log.<g>.damaged-<n>`, the first free `n`, durably.
    /// Copies of an earlier try (a crash before the snapshot committed) are kept too: nothing
    /// removes these files.
    async fn keep_damaged_log(&self) -> Result<(), StorageError> {
        let name = self.generation.log_name();
        let bytes = self.fs.read(&name).await?.unwrap_or_default();
        for n in 1..=DAMAGED_COPIES_MAX {
            let aside = format!("{name}.damaged-{n}");
            if self.fs.read(&aside).await?.is_none() {
                self.fs.write_atomic(&aside, &bytes).await?;
                tracing::warn!(log = %name, kept_as = %aside, "kept the damaged log aside");
                return Ok(());
            }
        }
        Err(StorageError::TooManyDamagedCopies { log: name, max: DAMAGED_COPIES_MAX })
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
    use hive_core::frame::{encode, HEADER_LEN};
    use std::io;

    fn records(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        range.map(|i| vec![i; 2 + i as usize]).collect()
    }

    fn any_body(_: &[u8]) -> bool {
        true
    }

    async fn reload<F: Fs>(fs: &F) -> Loaded {
        Persistence::load(fs.clone(), any_body).await.expect("loads").1
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
        let (mut store, _) = Persistence::load(fs.clone(), any_body).await.unwrap();
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
        let (mut store, _) = Persistence::load(fs.clone(), any_body).await.unwrap();
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
        let (mut store, _) = Persistence::load(fs.clone(), any_body).await.unwrap();
        store.append(&records(0..3)).await.unwrap();
        drop(store);
        // Steps 1 and 2, without removing the old log.
        fs.write_atomic("log.1", &[]).await.unwrap();
        fs.write_atomic(SNAPSHOT, &snapshot::encode(Generation(1), b"holds 0..3")).await.unwrap();

        let (mut store, loaded) = Persistence::load(fs.clone(), any_body).await.unwrap();
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
        let (mut store, loaded) = Persistence::load(fs.clone(), any_body).await.unwrap();
        assert_eq!((loaded.report.generation, loaded.records.len()), (Generation(4), 0));
        store.append(&records(0..1)).await.unwrap();
        assert_eq!(reload(&fs).await.records, records(0..1));
    }

    #[tokio::test]
    async fn a_full_disk_fails_appends_and_snapshots_but_loses_no_acknowledged_record() {
        let (_dir, std_fs) = temp_fs().await;
        let faults = DiskFaults::unlimited();
        let fs = FaultyFs::new(std_fs.clone(), faults.clone());
        let (mut store, _) = Persistence::load(fs, any_body).await.unwrap();
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
        let load = Persistence::load(fs, any_body).await;
        assert!(matches!(load, Err(StorageError::CorruptSnapshot(_))));
    }

    #[tokio::test]
    async fn a_damaged_log_keeps_its_other_records_and_is_kept_aside_when_a_snapshot_replaces_it() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone(), any_body).await.unwrap();
        store.append(&records(0..1)).await.unwrap();
        let damaged_at = store.log_len_bytes();
        store.append(&records(1..4)).await.unwrap();
        drop(store);
        let mut log = fs.read("log.0").await.unwrap().unwrap();
        log[damaged_at as usize + 5] ^= 0x01;
        fs.write_atomic("log.0", &log).await.unwrap();

        let (mut store, loaded) = Persistence::load(fs.clone(), any_body).await.unwrap();
        assert_eq!(loaded.records, [records(0..1), records(2..4)].concat());
        let [damage] = &loaded.report.damage[..] else { panic!("{:?}", loaded.report) };
        assert_eq!(damage.offset, damaged_at);
        assert!(matches!(damage.error, RecordError::Frame(_)));
        let refused = store.append(&records(5..6)).await;
        assert!(matches!(refused, Err(StorageError::DamagedLog { .. })));

        store.write_snapshot(b"holds 0, 2 and 3").await.unwrap();
        store.append(&records(5..6)).await.unwrap();
        let loaded = reload(&fs).await;
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"holds 0, 2 and 3"[..]));
        assert_eq!(loaded.records, records(5..6));
        assert_eq!(loaded.report.damage, vec![]);
        assert_eq!(fs.read("log.0").await.unwrap(), None);
        assert_eq!(fs.read("log.0.damaged-1").await.unwrap(), Some(log), "kept as evidence");
    }

    #[tokio::test]
    async fn a_crash_before_the_replacing_snapshot_commits_keeps_a_second_copy_not_none() {
        let (_dir, fs) = temp_fs().await;
        let (mut store, _) = Persistence::load(fs.clone(), any_body).await.unwrap();
        store.append(&records(0..3)).await.unwrap();
        drop(store);
        let mut log = fs.read("log.0").await.unwrap().unwrap();
        log[HEADER_LEN] ^= 0x01;
        fs.write_atomic("log.0", &log).await.unwrap();
        // A copy from a try whose snapshot never committed.
        fs.write_atomic("log.0.damaged-1", &log).await.unwrap();

        let (mut store, loaded) = Persistence::load(fs.clone(), any_body).await.unwrap();
        assert_eq!(loaded.records, records(1..3));
        store.write_snapshot(b"holds 1 and 2").await.unwrap();
        assert_eq!(fs.read("log.0.damaged-1").await.unwrap().as_ref(), Some(&log));
        assert_eq!(fs.read("log.0.damaged-2").await.unwrap(), Some(log));
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
        let (mut store, _) =
            Persistence::load(FailAfterRename(std_fs.clone()), any_body).await.unwrap();
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
        send(Persistence::load(fs, any_body));
    }

    #[test]
    fn acknowledged_records_and_snapshots_survive_a_crash_and_unsynced_bytes_do_not() {
        across_crash(
            &turmoil::Builder::new(),
            || async {
                let fs = SimFs::open("/hive").await?;
                let (mut store, _) = Persistence::load(fs.clone(), any_body).await?;
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
                assert_eq!((loaded.report.torn_tail, loaded.report.damage), (None, vec![]));
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
                        let (mut store, _) = Persistence::load(fs.clone(), any_body).await?;
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
                        let (mut store, loaded) = Persistence::load(fs.clone(), any_body).await?;
                        let written = [acked.clone(), unacked].concat();
                        assert!(loaded.records.starts_with(&acked), "seed {seed}");
                        assert!(written.starts_with(&loaded.records), "seed {seed}");
                        assert_eq!(loaded.report.damage, vec![], "seed {seed}");
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
