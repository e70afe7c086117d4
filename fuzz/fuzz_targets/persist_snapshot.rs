//! Snapshot bodies: `Snapshot::decode` must return a typed error or a snapshot on any bytes, and
//! a snapshot must come back unchanged from `encode` then `decode`.
#![no_main]

use hive_core::persist::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::decode(data) {
        assert_eq!(Snapshot::decode(&snapshot.encode()), Ok(snapshot));
    }
});
