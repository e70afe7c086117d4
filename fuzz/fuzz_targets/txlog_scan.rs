//! Reading a transaction log back: `scan` must find every intact record, and the records,
//! the damaged ranges between them and a torn tail must lay back over the file exactly, in
//! order.
#![no_main]

use hive::storage::{scan, Recovered};
use hive_core::frame::encode_into;
use hive_fuzz::frames::frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Frames with checksums made right: long runs of intact records, ending in empty frames.
    check(&frames(data).flatten().collect::<Vec<u8>>());
});

/// Bodies starting with 0xff are not records, so the resynchronisation on records is covered.
fn is_record(body: &[u8]) -> bool {
    body.first() != Some(&0xff)
}

fn check(log: &[u8]) {
    let found = scan(log, is_record);
    let valid_len = usize::try_from(found.valid_len).expect("valid_len fits in memory");
    assert!(valid_len <= log.len(), "valid_len {valid_len} beyond the file's {}", log.len());

    // Records and damage, in order, are exactly the first valid_len bytes.
    let mut at = 0usize;
    let mut next_record = 0;
    let mut lay_records = |upto: usize, at: &mut usize| {
        for body in &found.records[next_record..upto] {
            assert!(!body.is_empty() && is_record(body), "not a record: {body:?}");
            let mut frame = Vec::new();
            encode_into(body, &mut frame);
            assert_eq!(log[*at..*at + frame.len()], frame);
            *at += frame.len();
        }
        next_record = upto;
    };
    for damage in &found.damage {
        lay_records(damage.records_before, &mut at);
        assert_eq!(damage.offset, at as u64, "{found:?}");
        assert!(damage.len_bytes > 0, "{found:?}");
        at += usize::try_from(damage.len_bytes).expect("fits in memory");
    }
    lay_records(found.records.len(), &mut at);
    assert_eq!(at, valid_len, "{found:?}");

    // Whatever follows is one torn tail, to the end.
    let end = log.len() as u64;
    match &found.torn_tail {
        None => assert_eq!(found.valid_len, end),
        Some(torn) => {
            assert_eq!(torn.offset, found.valid_len);
            assert!(torn.bytes > 0 && torn.offset + torn.bytes == end, "{torn:?} of {end}");
        }
    }

    // The intact records alone read back the same records and nothing else.
    let mut intact = Vec::new();
    for body in &found.records {
        encode_into(body, &mut intact);
    }
    let expected = Recovered {
        records: found.records.clone(),
        valid_len: intact.len() as u64,
        torn_tail: None,
        damage: Vec::new(),
    };
    assert_eq!(scan(&intact, is_record), expected);
}
