//! Scanning an archive segment: on any bytes `scan` must not panic, its intact records and
//! damage must tile the file in order up to its `valid_end`, every record it returns must
//! check out, and what follows must be a torn tail or zeros. On segments built of intact
//! records with damage between and inside them, every undamaged record must be found and no
//! other.
#![no_main]

use hive_fuzz::archive::segment_of;
use hive_media::archive::segment::check_scan as check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    let (segment, written) = segment_of(data);
    let found = check(&segment);
    let offsets: Vec<usize> = found.records.iter().map(|r| r.offset).collect();
    for w in &written {
        let at = offsets.binary_search(&w.offset);
        if !w.damaged {
            let i = at.unwrap_or_else(|_| panic!("intact record at {} lost: {found:?}", w.offset));
            assert_eq!(found.records[i].time_us, w.time_us);
        }
    }
    for r in &found.records {
        assert!(
            written.iter().any(|w| w.offset == r.offset),
            "a record at {} that was never written",
            r.offset
        );
    }
});
