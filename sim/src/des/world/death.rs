//! The two ways a server dies, as its peers see it.
//!
//! - [`World::crash`]: the machine is gone (power, cable, kernel panic). Nothing more arrives
//!   from it; peers notice only by the silence of their links.
//! - [`World::kill_with_reset`]: the process dies but the machine lives, so its operating system
//!   resets every TCP connection the process held. Each peer reads the reset one latency
//!   later, after whatever the dead process had already sent on that link.

use super::{Ev, HostId, World};

impl World {
    /// Kills `host`'s process: every peer of an open link with it gets the link closed (a TCP
    /// reset) one latency later, unless a partition eats the reset; then the host is down as
    /// after [`World::crash`].
    pub fn kill_with_reset(&mut self, host: HostId) {
        let inc = self.hosts[host].inc;
        let mut resets = Vec::new();
        for (&link, l) in &self.links {
            if l.broken {
                continue;
            }
            let Some(dir) = l.ends.iter().position(|&(h, i)| h == host && i == inc) else {
                continue;
            };
            let (peer, peer_inc) = l.ends[1 - dir];
            if self.hosts[peer].inc == peer_inc && self.reachable(host, peer) {
                // The reset follows the data already on its way: TCP keeps order.
                resets.push((link, peer, l.last_at[dir]));
            }
        }
        for (link, peer, last_at) in resets {
            let at = (self.now + self.cfg.latency_ms).max(last_at);
            self.schedule(at, Ev::Closed { link, host: peer });
        }
        self.crash(host);
    }
}
