//! Packet loss on links, as TCP shows it to the application: never a lost message, but a late
//! one. A lost segment is sent again after a retransmission timeout that doubles each time the
//! retransmission is lost too, and everything behind it on that connection waits (head-of-line
//! blocking; the per-link order is kept by [`World::send`]).

use super::World;
use rand::Rng;

/// First retransmission timeout, ms: Linux's minimum RTO.
pub const RETRANSMIT_MS_MIN: u64 = 200;

/// Longest retransmission timeout, ms (Linux caps it at 120 s).
pub const RETRANSMIT_MS_MAX: u64 = 120_000;

impl World {
    /// Makes a fraction `p` of link messages late by a retransmission timeout (see the module
    /// doc); 0 turns loss off. Beacons have their own loss (`WorldConfig::beacon_loss`).
    pub fn set_link_loss(&mut self, p: f64) {
        assert!((0.0..1.0).contains(&p), "link loss {p} is not a probability below 1");
        self.link_loss = p;
    }

    /// Extra delay of one link message from losses and retransmissions, ms.
    pub(super) fn retransmit_delay_ms(&mut self) -> u64 {
        if self.link_loss == 0.0 {
            // No draw: worlds without loss replay exactly as before loss existed.
            return 0;
        }
        let mut delay_ms = 0;
        let mut rto_ms = RETRANSMIT_MS_MIN;
        while self.rng.gen_bool(self.link_loss) {
            delay_ms += rto_ms;
            rto_ms = (rto_ms * 2).min(RETRANSMIT_MS_MAX);
        }
        delay_ms
    }
}
