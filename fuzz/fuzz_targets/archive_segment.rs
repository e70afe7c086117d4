//! Scanning an archive segment: on any bytes `scan` must not panic, its intact records and
//! damage must tile the file in order up to its `valid_end`, every record it returns must
//! check out, and what follows must be a torn tail or zeros. On segments built of intact
//! records with damage between and inside them, every undamaged record must be found and no
//! other.
#![no_main]

use hive_fuzz::archive::segment_of;
use hive_media::archive::record;
use hive_media::archive::{scan, Scan, SEGMENT_HEADER_LEN};
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

fn check(bytes: &[u8]) -> Scan {
    let found = scan(bytes);
    assert!(found.valid_end <= bytes.len(), "valid_end past the end: {found:?}");

    // Records and damage tile the file from the header to the last record, in order.
    let mut regions: Vec<(usize, usize)> =
        found.records.iter().map(|r| (r.offset, r.len)).collect();
    regions.extend(found.damage.iter().map(|d| (d.offset, d.len)));
    regions.sort_unstable();
    let mut at = SEGMENT_HEADER_LEN.min(bytes.len());
    for &(offset, len) in &regions {
        assert_eq!(offset, at, "{found:?}");
        assert!(len > 0, "{found:?}");
        at = offset + len;
    }
    match found.records.last() {
        Some(last) => {
            assert_eq!(at, last.end(), "damage after the last record: {found:?}");
            assert_eq!(found.valid_end, last.end().min(bytes.len()));
        }
        None => {
            assert!(found.damage.is_empty(), "{found:?}");
            assert_eq!(found.valid_end, SEGMENT_HEADER_LEN.min(bytes.len()));
        }
    }

    // Every record returned checks out and says what the scan says.
    for r in &found.records {
        let header = record::check(&bytes[r.offset..]).expect("an intact record");
        assert_eq!(
            (header.time_us, header.keyframe, header.record_len()),
            (r.time_us, r.keyframe, r.len)
        );
    }

    // After valid_end: a torn tail up to the last non-zero byte, then zeros.
    let tail = &bytes[found.valid_end..];
    match found.torn_tail {
        None => assert!(tail.iter().all(|&b| b == 0), "{found:?}"),
        Some(torn) => {
            assert_eq!(torn.offset, found.valid_end);
            assert!(torn.len > 0 && tail[torn.len - 1] != 0, "{torn:?}");
            assert!(tail[torn.len..].iter().all(|&b| b == 0), "{torn:?}");
        }
    }
    found
}
