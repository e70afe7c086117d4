//! The framing under both the wire and the log: `frame::decode` must say exactly what it read,
//! and what it read must be what `encode` writes.
#![no_main]

use hive_core::frame::{self, FrameError, BODY_LEN_MAX, HEADER_LEN};
use hive_fuzz::frames::reframe;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match frame::decode(data) {
        Ok((body, used)) => {
            assert_eq!(used, HEADER_LEN + body.len());
            assert_eq!(frame::encode(body), data[..used]);
        }
        Err(FrameError::Incomplete { needed, available }) => {
            assert_eq!(available, data.len());
            assert!(needed > available);
        }
        Err(FrameError::TooLarge { len, max }) => assert!(len > max && max == BODY_LEN_MAX),
        Err(FrameError::Checksum { expected, actual }) => assert_ne!(expected, actual),
    }
    let whole = reframe(data);
    assert_eq!(frame::decode(&whole), Ok((&whole[HEADER_LEN..], whole.len())));
});
