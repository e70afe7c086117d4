//! The Noise handshake of a channel as its responder, fed whatever a stranger sends: the 8-byte
//! preamble and the handshake messages, then end of stream.
//!
//! It must never panic, never ask for more than `HANDSHAKE_MESSAGE_LEN_MAX` bytes in one read
//! (an unauthenticated peer decides the lengths), and fail on every input but the honest
//! initiator's transcript (`hive_fuzz::channel::genuine`), which must succeed.
#![no_main]

use hive::driver::channel::HANDSHAKE_MESSAGE_LEN_MAX;
use hive_core::node::ChannelKind;
use hive_fuzz::channel::{genuine, initiator_key, respond};
use libfuzzer_sys::fuzz_target;

/// Preamble, then the first and third handshake messages, each after its length.
const READ_LEN_MAX: usize = 8 + 2 * (2 + HANDSHAKE_MESSAGE_LEN_MAX);

fuzz_target!(|data: &[u8]| {
    let r = respond(data);
    assert!(
        r.read_request_max <= HANDSHAKE_MESSAGE_LEN_MAX,
        "one read asked for {} bytes",
        r.read_request_max
    );
    assert!(r.read.len() <= READ_LEN_MAX, "read {} bytes before the handshake ended", r.read.len());
    assert!(data.starts_with(&r.read));
    match r.result {
        Ok(info) => {
            assert_eq!(r.read, genuine(info.kind), "a handshake succeeded on forged bytes");
            assert_eq!(info.peer_key, initiator_key());
        }
        Err(e) => {
            for kind in [ChannelKind::Member, ChannelKind::Merge, ChannelKind::Media] {
                assert!(
                    !data.starts_with(genuine(kind)),
                    "the genuine {kind:?} handshake failed: {e}"
                );
            }
        }
    }
});
