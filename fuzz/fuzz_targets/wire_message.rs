//! Link messages as a peer streams them: `Message::decode` must return a typed error or a message
//! on any bytes, and every message must come back unchanged from `encode` then `decode`.
#![no_main]

use hive_core::frame::HEADER_LEN;
use hive_core::wire::Message;
use hive_fuzz::frames::frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The raw stream, as a link's read buffer holds it.
    let mut rest = data;
    while let Ok(Some((msg, used))) = Message::decode(rest) {
        assert!((HEADER_LEN..=rest.len()).contains(&used), "used {used} of {}", rest.len());
        assert_round_trips(&msg);
        rest = &rest[used..];
    }
    // The same frames with checksums made right, so mutated bodies reach the CBOR decoder.
    for frame in frames(data) {
        if let Ok(Some((msg, used))) = Message::decode(&frame) {
            assert_eq!(used, frame.len());
            assert_round_trips(&msg);
        }
    }
});

fn assert_round_trips(msg: &Message) {
    let bytes = msg.encode();
    assert_eq!(Message::decode(&bytes), Ok(Some((msg.clone(), bytes.len()))));
}
