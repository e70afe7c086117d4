//! Beacon datagrams: `Beacon::decode` must return a typed error or a beacon on any datagram, and
//! a beacon that still fits a datagram must come back unchanged from `encode` then `decode`.
#![no_main]

use hive_core::wire::{Beacon, BEACON_LEN_MAX};
use hive_fuzz::frames::reframe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The datagram as received, then with its header made to fit so the body reaches CBOR.
    for datagram in [data, &reframe(data)] {
        if let Ok(beacon) = Beacon::decode(datagram) {
            let bytes = beacon.encode();
            // A sender may use shorter CBOR than ours (integer field keys), so ours can be longer.
            if bytes.len() <= BEACON_LEN_MAX {
                assert_eq!(Beacon::decode(&bytes), Ok(beacon));
            }
        }
    }
});
