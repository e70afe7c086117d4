//! Reading a log file back: the intact records, where they end, and what follows them.
//!
//! The log is a run of frames (`u32 len | u32 crc32 | body`, see [`hive_core::frame`]) with
//! non-empty bodies. Scanning stops at the first frame that does not decode, and the rest of the
//! file is classified:
//!
//! - **Torn tail**: damage an interrupted append can leave, which holds only unacknowledged
//!   records (an append is acknowledged after its bytes are synced). The log cuts it. That is
//!   a frame running past the end of the file, or a frame with a bad checksum (or a zeroed,
//!   empty header) followed by nothing but zero bytes, as when a crash kept the file's new
//!   length but not all of its new blocks.
//! - **Corruption**: any other damage, such as a bad checksum with real data after it or an
//!   absurd length. It is reported with its byte offset and never skipped: records after it
//!   cannot be trusted to follow the ones before, so the caller recovers them elsewhere.
//!
//! The rules cannot tell an acknowledged last record that later rotted from a torn one, nor a
//! length field flipped to point past the end from a torn frame; both are cut as torn tails
//! and the cut bytes are reported.

use hive_core::frame::{decode, FrameError, HEADER_LEN};
use thiserror::Error;

/// What reading a log file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Bodies of the intact records before any damage, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes taken by those records: where the log continues.
    pub valid_len: u64,
    /// Damage at the end left by an interrupted append.
    pub torn_tail: Option<TornTail>,
    /// Damage with data after it.
    pub corruption: Option<Corruption>,
}

/// The bytes of an interrupted append at the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes start.
    pub offset: u64,
    /// How many bytes, up to the end of the file.
    pub bytes: u64,
}

/// The first damaged frame in the middle of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// Where the damaged frame starts.
    pub offset: u64,
    /// What is wrong with it.
    pub error: RecordError,
}

/// Why a frame of the log is not a record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The frame itself is damaged.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame is well formed but empty, which the log never writes: a zeroed header.
    #[error("empty frame")]
    Empty,
}

/// Reads the records of the log file contents `log`.
pub fn scan(log: &[u8]) -> Recovered {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < log.len() {
        let rest = &log[offset..];
        let error = match decode(rest) {
            Ok((body, used)) if !body.is_empty() => {
                records.push(body.to_vec());
                offset += used;
                continue;
            }
            Ok(_) => RecordError::Empty,
            Err(error) => RecordError::Frame(error),
        };
        let valid_len = offset as u64;
        let (torn_tail, corruption) = if is_torn(rest, &error) {
            (Some(TornTail { offset: valid_len, bytes: rest.len() as u64 }), None)
        } else {
            (None, Some(Corruption { offset: valid_len, error }))
        };
        return Recovered { records, valid_len, torn_tail, corruption };
    }
    Recovered { records, valid_len: offset as u64, torn_tail: None, corruption: None }
}

/// Whether the damaged frame at the start of `rest` is what an interrupted append leaves.
fn is_torn(rest: &[u8], error: &RecordError) -> bool {
    match error {
        RecordError::Frame(FrameError::Incomplete { .. }) => true,
        RecordError::Frame(FrameError::Checksum { .. }) | RecordError::Empty => {
            frame_end(rest).is_some_and(|end| rest[end..].iter().all(|&b| b == 0))
        }
        RecordError::Frame(FrameError::TooLarge { .. }) => false,
    }
}

/// Where the frame at the start of `rest` ends, if its header and body are all there.
fn frame_end(rest: &[u8]) -> Option<usize> {
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let end = HEADER_LEN.checked_add(u32::from_le_bytes(len_bytes) as usize)?;
    (end <= rest.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_core::frame::encode_into;
    use proptest::prelude::*;

    fn log_of(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut log = Vec::new();
        for body in bodies {
            encode_into(body, &mut log);
        }
        log
    }

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8 + 1; i + 1]).collect()
    }

    #[test]
    fn intact_log_yields_every_record() {
        let log = log_of(&bodies(4));
        let found = scan(&log);
        assert_eq!(found.records, bodies(4));
        assert_eq!(found.valid_len, log.len() as u64);
        assert_eq!((found.torn_tail, found.corruption), (None, None));
    }

    #[test]
    fn empty_file_is_an_empty_log() {
        assert_eq!(
            scan(&[]),
            Recovered { records: vec![], valid_len: 0, torn_tail: None, corruption: None }
        );
    }

    #[test]
    fn bad_checksum_in_the_last_frame_is_a_torn_tail() {
        let mut log = log_of(&bodies(3));
        let last_start = log_of(&bodies(2)).len();
        let end = log.len();
        log[end - 1] ^= 0xff;
        let found = scan(&log);
        assert_eq!(found.records, bodies(2));
        assert_eq!(
            found.torn_tail,
            Some(TornTail { offset: last_start as u64, bytes: (end - last_start) as u64 })
        );
        assert_eq!(found.corruption, None);
    }

    #[test]
    fn bad_checksum_in_a_middle_frame_is_corruption_at_its_offset() {
        let mut log = log_of(&bodies(4));
        let second_start = log_of(&bodies(1)).len();
        log[second_start + HEADER_LEN] ^= 0x01;
        let found = scan(&log);
        assert_eq!(found.records, bodies(1));
        assert_eq!(found.valid_len, second_start as u64);
        assert_eq!(found.torn_tail, None);
        let corruption = found.corruption.expect("corruption is reported");
        assert_eq!(corruption.offset, second_start as u64);
        assert!(matches!(corruption.error, RecordError::Frame(FrameError::Checksum { .. })));
    }

    #[test]
    fn absurd_length_in_a_middle_frame_is_corruption() {
        let mut log = log_of(&bodies(3));
        let second_start = log_of(&bodies(1)).len();
        log[second_start..second_start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let found = scan(&log);
        assert_eq!(found.records, bodies(1));
        assert!(matches!(
            found.corruption,
            Some(Corruption { offset, error: RecordError::Frame(FrameError::TooLarge { .. }) })
                if offset == second_start as u64
        ));
    }

    #[test]
    fn zero_filled_tail_is_torn_not_a_run_of_empty_records() {
        let mut log = log_of(&bodies(2));
        let valid = log.len();
        log.resize(valid + 100, 0);
        let found = scan(&log);
        assert_eq!(found.records, bodies(2));
        assert_eq!(found.torn_tail, Some(TornTail { offset: valid as u64, bytes: 100 }));
    }

    #[test]
    fn zeroed_header_with_data_after_it_is_corruption() {
        let mut log = log_of(&bodies(1));
        let valid = log.len();
        log.extend_from_slice(&[0; HEADER_LEN]);
        log.extend_from_slice(&log_of(&bodies(1)));
        let found = scan(&log);
        assert_eq!(
            found.corruption,
            Some(Corruption { offset: valid as u64, error: RecordError::Empty })
        );
    }

    proptest! {
        #[test]
        fn every_truncation_yields_a_prefix_and_no_corruption(
            acked in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..12),
            cut_seed in any::<usize>(),
        ) {
            let log = log_of(&acked);
            let cut = cut_seed % (log.len() + 1);
            let found = scan(&log[..cut]);
            prop_assert!(found.corruption.is_none());
            prop_assert!(acked.starts_with(&found.records));
            prop_assert_eq!(found.valid_len, log_of(&found.records).len() as u64);
            let torn = found.torn_tail.map_or(0, |t| t.bytes);
            prop_assert_eq!(found.valid_len + torn, cut as u64);
        }

        #[test]
        fn zeros_after_the_records_are_a_torn_tail(
            acked in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..8),
            zeros in 1usize..64,
        ) {
            let mut log = log_of(&acked);
            log.resize(log.len() + zeros, 0);
            let found = scan(&log);
            prop_assert_eq!(found.records, acked);
            prop_assert!(found.corruption.is_none());
            prop_assert_eq!(found.torn_tail.map(|t| t.bytes), Some(zeros as u64));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_records_are_a_prefix(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let found = scan(&bytes);
            let valid = log_of(&found.records);
            prop_assert_eq!(found.valid_len, valid.len() as u64);
            prop_assert!(bytes.starts_with(&valid));
        }
    }
}
