//! Reading a transaction log back: `scan` must find the intact records as a prefix of the file,
//! say where they end, and classify everything after them as one torn tail or one corruption.
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

fn check(log: &[u8]) {
    let found = scan(log);
    let valid_len = usize::try_from(found.valid_len).expect("valid_len fits in memory");
    assert!(valid_len <= log.len(), "valid_len {valid_len} beyond the file's {}", log.len());

    // The records, framed back to back in order, are exactly the first valid_len bytes.
    let mut intact = Vec::with_capacity(valid_len);
    for body in &found.records {
        assert!(!body.is_empty(), "the log never holds an empty record");
        encode_into(body, &mut intact);
    }
    assert_eq!(intact, log[..valid_len]);

    // Whatever follows is one kind of damage, starting where the records end.
    let end = log.len() as u64;
    match (&found.torn_tail, &found.corruption) {
        (None, None) => assert_eq!(found.valid_len, end),
        (Some(torn), None) => {
            assert_eq!(torn.offset, found.valid_len);
            assert!(torn.bytes > 0 && torn.offset + torn.bytes == end, "{torn:?} of {end}");
        }
        (None, Some(corruption)) => {
            assert_eq!(corruption.offset, found.valid_len);
            assert!(found.valid_len < end);
        }
        (Some(_), Some(_)) => panic!("both a torn tail and corruption: {found:?}"),
    }

    // The intact prefix alone reads back the same records and nothing else.
    let expected = Recovered {
        records: found.records,
        valid_len: found.valid_len,
        torn_tail: None,
        corruption: None,
    };
    assert_eq!(scan(&log[..valid_len]), expected);
}
