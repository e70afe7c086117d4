//! Reading a log file back: every intact record, the damaged byte ranges between them, and
//! what an interrupted append left at the end.
//!
//! The log is a run of frames (`u32 len | u32 crc32 | body`, see [`hive_core::frame`]) with
//! non-empty bodies that the caller can read as records (an [`IsRecord`] check: this layer
//! treats bodies as opaque). A frame that fails is classified:
//!
//! - **Torn tail**: damage an interrupted append can leave, which holds only unacknowledged
//!   records (an append is acknowledged after its bytes are synced). The log cuts it. That is
//!   a failed frame with no intact record after its start that either runs past the end of
//!   the file, or has a bad checksum (or a zeroed, empty header) and is followed by nothing
//!   but zero bytes, as when a crash kept the file's new length but not all of its new blocks.
//! - **Damage**: any other failure, such as a bad checksum with real data after it, an absurd
//!   length, a length pointing past the end with intact records after it, or a body that is
//!   not a record. It is reported with its byte range, and scanning resynchronises on the
//!   next offset where a whole frame checks out (length, checksum, a body that is a record),
//!   so no intact record after it is lost. Damage with no record after it runs to the end.
//!
//! Which records after damage may be *applied* is the caller's decision: some records mean
//! something only together with the ones before them (see
//! `hive_core::persist::Record::trusted_after_damage`).
//!
//! Limits, stated plainly. The rules cannot tell an acknowledged last record that later rotted
//! from a torn one, nor the last record's length field flipped to point past the end from a
//! torn frame; both are cut as torn tails and the cut bytes are reported. A frame is
//! recognised by its length, checksum and body alone, so when damage hits a header, the
//! search may take framed bytes that a damaged record's body carried (a value holding a whole
//! frame) for a record; a random match needs a 32-bit checksum to agree and the body to
//! decode.
//!
//! The search tries each offset once and checksums at most the rest of the file there, so a
//! damaged or torn range of `d` bytes costs at most `d` times the file's length; an intact
//! log costs one pass.

use hive_core::frame::{decode, FrameError, HEADER_LEN};
use thiserror::Error;

/// Whether a well-framed, non-empty body is a record the caller can read.
pub type IsRecord = fn(&[u8]) -> bool;

/// What reading a log file found. Record frames, damaged ranges and the torn tail tile the
/// file in order: the records before `damage[i]` are `records[..damage[i].records_before]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Bodies of the intact records, in file order, before and after any damage.
    pub records: Vec<Vec<u8>>,
    /// Bytes of records and damage: the file less its torn tail, where the log continues.
    pub valid_len: u64,
    /// Damage at the end left by an interrupted append.
    pub torn_tail: Option<TornTail>,
    /// Damaged byte ranges in the middle of the log, in order.
    pub damage: Vec<Damage>,
}

impl Recovered {
    /// Where the first damage starts, if the log is damaged.
    pub fn first_damage_offset(&self) -> Option<u64> {
        self.damage.first().map(|d| d.offset)
    }
}

/// The bytes of an interrupted append at the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes start.
    pub offset: u64,
    /// How many bytes, up to the end of the file.
    pub bytes: u64,
}

/// A damaged byte range of the log: no record could be read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the damaged frame starts.
    pub offset: u64,
    /// Bytes skipped, up to the next intact record or the end of the file.
    pub len_bytes: u64,
    /// Intact records before it in the file.
    pub records_before: usize,
    /// What is wrong with the frame at `offset`.
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
    /// The frame checks out but its body is not a record.
    #[error("a frame of {len_bytes} bytes that is not a record")]
    NotARecord {
        /// Length of the body.
        len_bytes: usize,
    },
}

/// Reads the records of the log file contents `log`; `is_record` tells records from other
/// well-framed bodies.
pub fn scan(log: &[u8], is_record: IsRecord) -> Recovered {
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let mut offset = 0;
    while offset < log.len() {
        let rest = &log[offset..];
        let error = match record_at(rest, is_record) {
            Ok((body, used)) => {
                records.push(body.to_vec());
                offset += used;
                continue;
            }
            Err(error) => error,
        };
        // Resynchronise: the next offset where a whole record frame starts. With none, the
        // failure may be an interrupted append.
        let next = (offset + 1..log.len()).find(|&at| record_at(&log[at..], is_record).is_ok());
        let incomplete = matches!(error, RecordError::Frame(FrameError::Incomplete { .. }));
        if next.is_none() && (incomplete || ends_in_zeros(rest, &error)) {
            let torn_tail = TornTail { offset: offset as u64, bytes: rest.len() as u64 };
            let valid_len = offset as u64;
            return Recovered { records, valid_len, torn_tail: Some(torn_tail), damage };
        }
        let next = next.unwrap_or(log.len());
        damage.push(Damage {
            offset: offset as u64,
            len_bytes: (next - offset) as u64,
            records_before: records.len(),
            error,
        });
        offset = next;
    }
    Recovered { records, valid_len: offset as u64, torn_tail: None, damage }
}

/// The record frame at the start of `rest`: its body and the bytes it occupies.
fn record_at(rest: &[u8], is_record: IsRecord) -> Result<(&[u8], usize), RecordError> {
    match decode(rest) {
        Ok(([], _)) => Err(RecordError::Empty),
        Ok((body, used)) if is_record(body) => Ok((body, used)),
        Ok((body, _)) => Err(RecordError::NotARecord { len_bytes: body.len() }),
        Err(error) => Err(RecordError::Frame(error)),
    }
}

/// Whether the failed frame at the start of `rest` is whole and followed by zeros alone, as
/// when a crash kept a file's new length but not all of its new blocks.
fn ends_in_zeros(rest: &[u8], error: &RecordError) -> bool {
    match error {
        RecordError::Frame(FrameError::Checksum { .. }) | RecordError::Empty => {
            frame_end(rest).is_some_and(|end| rest[end..].iter().all(|&b| b == 0))
        }
        RecordError::Frame(FrameError::Incomplete { .. } | FrameError::TooLarge { .. })
        | RecordError::NotARecord { .. } => false,
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

    fn any_body(_: &[u8]) -> bool {
        true
    }

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

    /// Where record `i` of [`log_of`]`(bodies)` starts.
    fn start_of(bodies: &[Vec<u8>], i: usize) -> usize {
        log_of(&bodies[..i]).len()
    }

    fn without(bodies: &[Vec<u8>], skip: &[usize]) -> Vec<Vec<u8>> {
        bodies
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Records, damage and torn tail laid back over the file in order cover it exactly.
    fn assert_tiles(log: &[u8], found: &Recovered) {
        let mut at = 0usize;
        let mut next_record = 0;
        let mut emit_records = |upto: usize, at: &mut usize| {
            for body in &found.records[next_record..upto] {
                let mut frame = Vec::new();
                encode_into(body, &mut frame);
                assert_eq!(&log[*at..*at + frame.len()], &frame[..]);
                *at += frame.len();
            }
            next_record = upto;
        };
        for d in &found.damage {
            emit_records(d.records_before, &mut at);
            assert_eq!(d.offset, at as u64);
            assert!(d.len_bytes > 0);
            at += d.len_bytes as usize;
        }
        emit_records(found.records.len(), &mut at);
        assert_eq!(found.valid_len, at as u64);
        let torn = found.torn_tail.map_or(0, |t| {
            assert_eq!(t.offset, at as u64);
            t.bytes
        });
        assert_eq!(found.valid_len + torn, log.len() as u64);
    }

    #[test]
    fn intact_log_yields_every_record() {
        let log = log_of(&bodies(4));
        let found = scan(&log, any_body);
        assert_eq!(found.records, bodies(4));
        assert_eq!(found.valid_len, log.len() as u64);
        assert_eq!((found.torn_tail, found.damage), (None, vec![]));
    }

    #[test]
    fn empty_file_is_an_empty_log() {
        assert_eq!(
            scan(&[], any_body),
            Recovered { records: vec![], valid_len: 0, torn_tail: None, damage: vec![] }
        );
    }

    #[test]
    fn bad_checksum_in_the_last_frame_is_a_torn_tail() {
        let mut log = log_of(&bodies(3));
        let last_start = start_of(&bodies(3), 2);
        let end = log.len();
        log[end - 1] ^= 0xff;
        let found = scan(&log, any_body);
        assert_eq!(found.records, bodies(2));
        assert_eq!(
            found.torn_tail,
            Some(TornTail { offset: last_start as u64, bytes: (end - last_start) as u64 })
        );
        assert_eq!(found.damage, vec![]);
    }

    #[test]
    fn damage_in_the_middle_is_reported_at_its_offset_and_the_records_after_it_are_kept() {
        let all = bodies(5);
        let mut log = log_of(&all);
        let (second, third) = (start_of(&all, 1), start_of(&all, 2));
        log[second + HEADER_LEN] ^= 0x01;
        let found = scan(&log, any_body);
        assert_eq!(found.records, without(&all, &[1]));
        assert_eq!(found.torn_tail, None);
        assert_eq!(found.valid_len, log.len() as u64);
        let [damage] = &found.damage[..] else { panic!("one damaged range: {found:?}") };
        assert_eq!((damage.offset, damage.len_bytes), (second as u64, (third - second) as u64));
        assert_eq!(damage.records_before, 1);
        assert!(matches!(damage.error, RecordError::Frame(FrameError::Checksum { .. })));
        assert_tiles(&log, &found);
    }

    #[test]
    fn damage_at_the_start_keeps_every_record_after_it() {
        let all = bodies(4);
        let mut log = log_of(&all);
        log[5] ^= 0x80;
        let found = scan(&log, any_body);
        assert_eq!(found.records, without(&all, &[0]));
        assert_eq!(found.first_damage_offset(), Some(0));
        assert_eq!(found.damage[0].records_before, 0);
        assert_tiles(&log, &found);
    }

    #[test]
    fn a_damaged_length_field_keeps_the_records_after_it() {
        let all = bodies(6);
        let second = start_of(&all, 1);
        // Past the end of the file, beyond the frame limit, and shorter than the body.
        for len in [1_000u32, u32::MAX, 1] {
            let mut log = log_of(&all);
            log[second..second + 4].copy_from_slice(&len.to_le_bytes());
            let found = scan(&log, any_body);
            assert_eq!(found.records, without(&all, &[1]), "length {len}");
            assert_eq!(found.torn_tail, None, "length {len}");
            assert_eq!(found.first_damage_offset(), Some(second as u64), "length {len}");
            assert_tiles(&log, &found);
        }
    }

    #[test]
    fn a_length_flipped_to_end_in_zeros_of_the_next_record_is_damage_not_a_torn_tail() {
        let all = vec![vec![1; 4], vec![0; 24], vec![0; 28]];
        let mut log = log_of(&all);
        let second = start_of(&all, 1);
        // The second frame now ends inside the third's body, with only zeros after it.
        log[second..second + 4].copy_from_slice(&42u32.to_le_bytes());
        let found = scan(&log, any_body);
        assert_eq!(found.records, without(&all, &[1]));
        assert_eq!(found.torn_tail, None);
        assert_tiles(&log, &found);
    }

    #[test]
    fn two_damaged_spots_are_both_reported_and_skipped() {
        let all = bodies(7);
        let mut log = log_of(&all);
        let (second, fifth) = (start_of(&all, 1), start_of(&all, 4));
        log[second + HEADER_LEN] ^= 0x10;
        log[fifth + 2] ^= 0x04;
        let found = scan(&log, any_body);
        assert_eq!(found.records, without(&all, &[1, 4]));
        let offsets: Vec<_> = found.damage.iter().map(|d| (d.offset, d.records_before)).collect();
        assert_eq!(offsets, [(second as u64, 1), (fifth as u64, 3)]);
        assert_tiles(&log, &found);
    }

    #[test]
    fn a_torn_tail_after_damage_is_still_cut() {
        let all = bodies(4);
        let mut log = log_of(&all);
        let second = start_of(&all, 1);
        log[second + HEADER_LEN] ^= 0x01;
        let intact_len = log.len();
        let mut torn = Vec::new();
        encode_into(b"never acknowledged", &mut torn);
        log.extend_from_slice(&torn[..11]);
        let found = scan(&log, any_body);
        assert_eq!(found.records, without(&all, &[1]));
        assert_eq!(found.torn_tail, Some(TornTail { offset: intact_len as u64, bytes: 11 }));
        assert_eq!(found.damage.len(), 1);
        assert_tiles(&log, &found);
    }

    #[test]
    fn damage_with_no_record_after_it_runs_to_the_end() {
        let all = bodies(3);
        let mut log = log_of(&all);
        let third = start_of(&all, 2);
        log[third..third + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let found = scan(&log, any_body);
        assert_eq!(found.records, bodies(2));
        let [damage] = &found.damage[..] else { panic!("one damaged range: {found:?}") };
        assert_eq!(damage.offset + damage.len_bytes, log.len() as u64);
        assert!(matches!(damage.error, RecordError::Frame(FrameError::TooLarge { .. })));
        assert_tiles(&log, &found);
    }

    #[test]
    fn a_frame_whose_body_is_not_a_record_is_damage() {
        let all = vec![b"ok-1".to_vec(), b"bad".to_vec(), b"ok-2".to_vec()];
        let log = log_of(&all);
        let found = scan(&log, |body| body.starts_with(b"ok"));
        assert_eq!(found.records, without(&all, &[1]));
        assert_eq!(found.damage[0].error, RecordError::NotARecord { len_bytes: 3 });
        assert_tiles(&log, &found);
    }

    #[test]
    fn zero_filled_tail_is_torn_not_a_run_of_empty_records() {
        let mut log = log_of(&bodies(2));
        let valid = log.len();
        log.resize(valid + 100, 0);
        let found = scan(&log, any_body);
        assert_eq!(found.records, bodies(2));
        assert_eq!(found.torn_tail, Some(TornTail { offset: valid as u64, bytes: 100 }));
    }

    #[test]
    fn zeroed_header_with_data_after_it_is_damage_and_the_data_is_kept() {
        let mut log = log_of(&bodies(1));
        let valid = log.len();
        log.extend_from_slice(&[0; HEADER_LEN]);
        log.extend_from_slice(&log_of(&bodies(2)));
        let found = scan(&log, any_body);
        assert_eq!(found.records, [bodies(1), bodies(2)].concat());
        assert_eq!(
            found.damage,
            vec![Damage {
                offset: valid as u64,
                len_bytes: HEADER_LEN as u64,
                records_before: 1,
                error: RecordError::Empty
            }]
        );
    }

    fn arb_bodies(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), n)
    }

    proptest! {
        #[test]
        fn flipping_bytes_in_one_record_never_loses_another_intact_record(
            acked in arb_bodies(1..12),
            victim_seed in any::<usize>(),
            flips in prop::collection::vec((any::<usize>(), 1u8..=255), 1..6),
        ) {
            let mut log = log_of(&acked);
            let victim = victim_seed % acked.len();
            let start = start_of(&acked, victim);
            let frame_len = HEADER_LEN + acked[victim].len();
            for (at, mask) in flips {
                log[start + at % frame_len] ^= mask;
            }
            let found = scan(&log, any_body);
            // Every other record is read back, in order; the victim itself may go either way.
            let others = without(&acked, &[victim]);
            let mut rest = found.records.iter();
            for body in &others {
                prop_assert!(rest.any(|r| r == body), "lost {body:?}: {found:?}");
            }
            assert_tiles(&log, &found);
        }

        #[test]
        fn every_truncation_yields_a_prefix_and_no_damage(
            acked in arb_bodies(0..12),
            cut_seed in any::<usize>(),
        ) {
            let log = log_of(&acked);
            let cut = cut_seed % (log.len() + 1);
            let found = scan(&log[..cut], any_body);
            prop_assert!(found.damage.is_empty());
            prop_assert!(acked.starts_with(&found.records));
            prop_assert_eq!(found.valid_len, log_of(&found.records).len() as u64);
            let torn = found.torn_tail.map_or(0, |t| t.bytes);
            prop_assert_eq!(found.valid_len + torn, cut as u64);
        }

        #[test]
        fn zeros_after_the_records_are_a_torn_tail(
            acked in arb_bodies(0..8),
            zeros in 1usize..64,
        ) {
            let mut log = log_of(&acked);
            log.resize(log.len() + zeros, 0);
            let found = scan(&log, any_body);
            prop_assert_eq!(found.records, acked);
            prop_assert!(found.damage.is_empty());
            prop_assert_eq!(found.torn_tail.map(|t| t.bytes), Some(zeros as u64));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_records_and_damage_tile_the_file(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            assert_tiles(&bytes, &scan(&bytes, any_body));
        }
    }
}
