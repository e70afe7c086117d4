//! The transaction log: opaque record bodies appended as crc32 frames, synced before `append`
//! returns, so a record is durable when it is acknowledged.
//!
//! A failed append may leave a torn prefix of its frames behind the last good byte. The log
//! remembers that length and cuts back to it before writing again, so the file always reads
//! back as the acknowledged records plus at most a torn tail. The records of a failed append
//! were never acknowledged; should a crash come before the cut, recovery may still find whole
//! frames of them, as with any write whose outcome was unknown.

use crate::storage::fs::{AppendFile, Fs};
use crate::storage::recover::{scan, IsRecord, Recovered};
use crate::storage::StorageError;
use hive_core::frame::{encode_into, BODY_LEN_MAX, HEADER_LEN};

/// An append-only log of records in one file of an [`Fs`].
pub struct TxLog<F: Fs> {
    file: F::File,
    /// Bytes of durable, intact frames: where the next append goes.
    valid_len: u64,
    state: State,
}

/// What may lie after `valid_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing.
    Clean,
    /// Perhaps part of a failed append, to cut before the next one.
    Unsure,
    /// Damage found at open, first at this offset: the log is read-only evidence until a
    /// snapshot replaces it.
    Damaged(u64),
}

impl<F: Fs> TxLog<F> {
    /// Opens log `name` (created if missing), reads its records back and cuts a torn tail;
    /// `is_record` tells records from other well-framed bodies.
    ///
    /// Damage in the middle is left in place and reported, with every intact record around
    /// it; appends fail with [`StorageError::DamagedLog`], so the file stays as found until
    /// a snapshot holding its records replaces it.
    pub async fn open(
        fs: &F,
        name: &str,
        is_record: IsRecord,
    ) -> Result<(Self, Recovered), StorageError> {
        let recovered = scan(&fs.read(name).await?.unwrap_or_default(), is_record);
        let mut file = fs.open_append(name).await?;
        if recovered.torn_tail.is_some() {
            file.truncate(recovered.valid_len).await?;
        }
        let state = match recovered.first_damage_offset() {
            Some(offset) => State::Damaged(offset),
            None => State::Clean,
        };
        Ok((TxLog { file, valid_len: recovered.valid_len, state }, recovered))
    }

    /// Appends `bodies` as one batch and syncs; on `Ok` every one of them is durable.
    ///
    /// Bodies must be non-empty and at most [`BODY_LEN_MAX`] bytes; otherwise nothing is written.
    pub async fn append(&mut self, bodies: &[Vec<u8>]) -> Result<(), StorageError> {
        if let State::Damaged(offset) = self.state {
            return Err(StorageError::DamagedLog { offset });
        }
        check_bodies(bodies)?;
        if bodies.is_empty() {
            return Ok(());
        }
        if self.state == State::Unsure {
            self.file.truncate(self.valid_len).await?;
            self.state = State::Clean;
        }
        let mut frames = Vec::with_capacity(bodies.iter().map(|b| HEADER_LEN + b.len()).sum());
        for body in bodies {
            encode_into(body, &mut frames);
        }
        self.state = State::Unsure;
        let written = match self.file.append(&frames).await {
            Ok(()) => self.file.sync_data().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            // Cut the unacknowledged frames now if we can; if not, before the next append.
            if self.file.truncate(self.valid_len).await.is_ok() {
                self.state = State::Clean;
            }
            return Err(e);
        }
        self.valid_len += frames.len() as u64;
        self.state = State::Clean;
        Ok(())
    }

    /// Bytes of the log up to its torn tail, if any: where the next append goes.
    pub fn len_bytes(&self) -> u64 {
        self.valid_len
    }
}

/// Refuses bodies the log does not store.
fn check_bodies(bodies: &[Vec<u8>]) -> Result<(), StorageError> {
    for body in bodies {
        if body.is_empty() {
            return Err(StorageError::EmptyRecord);
        }
        if body.len() > BODY_LEN_MAX {
            return Err(StorageError::RecordTooLarge { len: body.len(), max: BODY_LEN_MAX });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::faults::{DiskFaults, FaultyFs};
    use crate::storage::recover::{RecordError, TornTail};
    use crate::storage::std_fs::testing::temp_fs;
    use hive_core::frame::{encode, FrameError};

    const LOG: &str = "log.0";

    fn any_body(_: &[u8]) -> bool {
        true
    }

    fn records(range: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        range.map(|i| vec![i; 3 + i as usize]).collect()
    }

    #[tokio::test]
    async fn appended_records_read_back_after_reopening() {
        let (_dir, fs) = temp_fs().await;
        let (mut log, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert!(found.records.is_empty());
        log.append(&records(0..3)).await.unwrap();
        log.append(&records(3..5)).await.unwrap();
        log.append(&[]).await.unwrap();
        drop(log);
        let (log, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, records(0..5));
        assert_eq!(log.len_bytes(), fs.read(LOG).await.unwrap().unwrap().len() as u64);
    }

    #[tokio::test]
    async fn torn_tail_is_cut_and_appends_continue_after_it() {
        let (_dir, fs) = temp_fs().await;
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        log.append(&records(0..2)).await.unwrap();
        let acked_len = log.len_bytes();
        drop(log);
        let mut raw = fs.open_append(LOG).await.unwrap();
        raw.append(&encode(b"never acknowledged")[..12]).await.unwrap();
        drop(raw);

        let (mut log, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, records(0..2));
        assert_eq!(found.torn_tail, Some(TornTail { offset: acked_len, bytes: 12 }));
        assert_eq!(fs.read(LOG).await.unwrap().unwrap().len() as u64, acked_len);
        log.append(&records(2..4)).await.unwrap();
        drop(log);

        let (_, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, records(0..4));
        assert_eq!(found.torn_tail, None);
    }

    #[tokio::test]
    async fn a_damaged_middle_record_is_reported_the_records_after_it_kept_and_the_file_left_alone()
    {
        let (_dir, fs) = temp_fs().await;
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        log.append(&records(0..2)).await.unwrap();
        let damaged_at = log.len_bytes();
        log.append(&records(2..5)).await.unwrap();
        drop(log);
        let mut bytes = fs.read(LOG).await.unwrap().unwrap();
        bytes[damaged_at as usize + HEADER_LEN] ^= 0x40;
        fs.write_atomic(LOG, &bytes).await.unwrap();

        let (mut log, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, [records(0..2), records(3..5)].concat());
        let [damage] = &found.damage[..] else { panic!("one damaged range: {found:?}") };
        assert_eq!(damage.offset, damaged_at);
        assert!(matches!(damage.error, RecordError::Frame(FrameError::Checksum { .. })));
        assert!(matches!(
            log.append(&records(9..10)).await,
            Err(StorageError::DamagedLog { offset }) if offset == damaged_at
        ));
        drop(log);
        assert_eq!(fs.read(LOG).await.unwrap(), Some(bytes), "the damaged file is evidence");
    }

    #[tokio::test]
    async fn full_disk_fails_the_append_and_recovery_yields_exactly_the_acknowledged_records() {
        let (_dir, std_fs) = temp_fs().await;
        let faults = DiskFaults::unlimited();
        let fs = FaultyFs::new(std_fs, faults.clone());
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        log.append(&records(0..2)).await.unwrap();
        faults.set_space_left(Some(5));
        assert!(matches!(log.append(&records(2..4)).await, Err(StorageError::DiskFull { .. })));
        assert_eq!(faults.space_left(), Some(0));
        drop(log);

        let (mut log, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, records(0..2));
        assert_eq!(found.damage, vec![]);

        faults.set_space_left(None);
        log.append(&records(4..5)).await.unwrap();
        drop(log);
        let (_, found) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, [records(0..2), records(4..5)].concat());
    }

    #[tokio::test]
    async fn appends_after_a_full_disk_follow_the_acknowledged_records_without_a_gap() {
        let (_dir, std_fs) = temp_fs().await;
        let faults = DiskFaults::unlimited();
        let fs = FaultyFs::new(std_fs.clone(), faults.clone());
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        log.append(&records(0..1)).await.unwrap();
        faults.set_space_left(Some(7));
        assert!(log.append(&records(1..2)).await.is_err());
        faults.set_space_left(None);
        log.append(&records(2..3)).await.unwrap();
        drop(log);

        let (_, found) = TxLog::open(&std_fs, LOG, any_body).await.unwrap();
        assert_eq!(found.records, [records(0..1), records(2..3)].concat());
        assert_eq!((found.torn_tail, found.damage), (None, vec![]));
    }

    #[tokio::test]
    async fn every_truncation_recovers_a_prefix_and_accepts_appends() {
        let (_dir, fs) = temp_fs().await;
        let acked = records(0..4);
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        log.append(&acked[..2]).await.unwrap();
        log.append(&acked[2..]).await.unwrap();
        drop(log);
        let full = fs.read(LOG).await.unwrap().unwrap();

        for cut in 0..=full.len() {
            let name = format!("cut.{cut}");
            fs.write_atomic(&name, &full[..cut]).await.unwrap();
            let (mut log, found) = TxLog::open(&fs, &name, any_body).await.unwrap();
            assert!(acked.starts_with(&found.records), "cut at {cut}");
            assert_eq!(found.damage, vec![], "cut at {cut}");
            log.append(&records(9..10)).await.unwrap();
            drop(log);
            let (_, again) = TxLog::open(&fs, &name, any_body).await.unwrap();
            assert_eq!(again.records, [found.records, records(9..10)].concat(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn empty_or_oversized_bodies_are_refused_before_writing() {
        let (_dir, fs) = temp_fs().await;
        let (mut log, _) = TxLog::open(&fs, LOG, any_body).await.unwrap();
        let empty = log.append(&[b"ok".to_vec(), vec![]]).await;
        assert!(matches!(empty, Err(StorageError::EmptyRecord)));
        let huge = log.append(&[vec![1; BODY_LEN_MAX + 1]]).await;
        assert!(matches!(huge, Err(StorageError::RecordTooLarge { .. })));
        assert_eq!(fs.read(LOG).await.unwrap(), Some(vec![]));
    }
}
