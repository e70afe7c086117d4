//! Log record bodies: `Record::decode` must return a typed error or a record on any bytes, and a
//! record must come back unchanged from `encode` then `decode`.
#![no_main]

use hive_core::persist::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(Record::decode(&record.encode()), Ok(record));
    }
});
