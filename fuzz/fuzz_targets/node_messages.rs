//! Any sequence of messages a peer can send must not panic the node.
//!
//! Input: one byte choosing the [`Opening`] of the link (a member channel before or after the
//! peer's hello, the node's own outgoing merge, or another system's merge), then frames, each decoded as a `Message` and delivered in order.
//! Frames that do not decode are skipped. Time then runs on so the node's timers see the result.
#![no_main]

use hive_core::wire::Message;
use hive_fuzz::frames::frames;
use hive_fuzz::peer::{Opening, Peer};
use libfuzzer_sys::fuzz_target;

/// How long the node runs after the last message: past every protocol timeout.
const WAIT_MS: u64 = 20_000;

fuzz_target!(|data: &[u8]| {
    let Some((&opening, stream)) = data.split_first() else { return };
    let mut peer = Peer::connect(Opening::from_byte(opening));
    for frame in frames(stream) {
        if let Ok(Some((msg, _))) = Message::decode(&frame) {
            peer.send(msg);
        }
    }
    peer.wait(WAIT_MS);
});
