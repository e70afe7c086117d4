//! Beacon datagrams: `Beacon::decode` must return a typed error or a beacon on any datagram, and
//! a beacon that still fits a datagram must come back unchanged from `encode` then `decode`.
//!
//! Each beacon then reaches a node: its proof (`Beacon::expected_proof`) must cover the sequence
//! number and the other fields; a beacon whose proof fails must not make the node dial, nor list
//! a server of its own system under other systems; the same beacon with a valid proof may make
//! it dial once, and replayed never again.
#![no_main]

use hive_core::auth::mac_eq;
use hive_core::ids::PeerAddr;
use hive_core::instant::{MonoUs, WallMs};
use hive_core::node::{Input, Node, Now, Output};
use hive_core::wire::{Beacon, BEACON_LEN_MAX, PROTOCOL_VERSION};
use hive_fuzz::frames::reframe;
use hive_fuzz::peer::{self, NODE_SEED, START, STEP_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The datagram as received, then with its header made to fit so the body reaches CBOR.
    for datagram in [data, &reframe(data)] {
        if let Ok(beacon) = Beacon::decode(datagram) {
            let bytes = beacon.encode();
            // A sender may use shorter CBOR than ours (integer field keys), so ours can be longer.
            if bytes.len() <= BEACON_LEN_MAX {
                assert_eq!(Beacon::decode(&bytes), Ok(beacon.clone()));
            }
            assert_proof_covers_every_field(&beacon);
            deliver(beacon);
        }
    }
});

fn assert_proof_covers_every_field(b: &Beacon) {
    let secret = peer::secret();
    let proof = b.expected_proof(&secret.beacon_key());
    let mut listen = b.listen.clone();
    listen.push(PeerAddr("10.6.6.6:7001".into()));
    let changed = [
        Beacon { seq: b.seq.wrapping_add(1), ..b.clone() },
        Beacon { boot: b.boot.wrapping_add(1), ..b.clone() },
        Beacon { interval_ms: b.interval_ms.wrapping_add(1), ..b.clone() },
        Beacon { server: hive_core::ids::ServerId(b.server.0.wrapping_add(1)), ..b.clone() },
        Beacon { listen, ..b.clone() },
    ];
    for c in changed {
        assert_ne!(
            c.expected_proof(&secret.beacon_key()),
            proof,
            "the proof misses a change: {c:?}"
        );
    }
}

fn deliver(b: Beacon) {
    let mut node = peer::start(NODE_SEED, START);
    let own = node.snapshot().identity;
    let mut now = START;
    let forged = !mac_eq(&b.proof, &b.expected_proof(&own.secret.beacon_key()));
    let dials = |node: &mut Node, now: &mut Now, b: &Beacon| {
        now.mono = now.mono.plus_ms(STEP_MS);
        now.mono_us = MonoUs(now.mono_us.0 + STEP_MS * 1000);
        now.wall = WallMs(now.wall.0 + STEP_MS);
        node.handle(*now, Input::Beacon(b.clone()));
        std::iter::from_fn(|| node.poll_output()).any(|o| matches!(o, Output::Dial { .. }))
    };
    if forged {
        assert!(!dials(&mut node, &mut now, &b), "a beacon whose proof fails made the node dial");
        if b.version == PROTOCOL_VERSION {
            let listed = node.other_systems().iter().any(|o| o.system == own.system);
            assert!(!listed, "a forged beacon listed this system as another");
        }
    }
    let signed = Beacon { proof: b.expected_proof(&own.secret.beacon_key()), ..b };
    dials(&mut node, &mut now, &signed);
    assert!(!dials(&mut node, &mut now, &signed), "a replayed beacon made the node dial");
}
