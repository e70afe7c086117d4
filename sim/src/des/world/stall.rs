//! Links through a partition, as TCP behaves: a cut delays what is sent, it does not lose it.
//!
//! While a direction is cut, what a server sends on an open link is held (the kernel keeps
//! retransmitting it) and arrives in order once the cut heals; a FIN sent meanwhile follows
//! it. A server that gave up on the link during the cut (its silence timeout) has closed it,
//! and the other end learns so from that FIN after the heal, as it would from a real
//! connection. Only a crash loses what was in flight.

use super::{Ev, HostId, LinkId, World};

impl World {
    /// `host` closes `link`: the other end reads the FIN one latency later, after the data
    /// already on its way, or after the heal if the direction is cut.
    pub(super) fn close_link(&mut self, host: HostId, link: LinkId) {
        let latency_ms = self.cfg.latency_ms;
        let Some(l) = self.links.get_mut(&link) else { return };
        if l.broken {
            return;
        }
        l.broken = true;
        let dir = if l.ends[0].0 == host { 0 } else { 1 };
        let (to, _) = l.ends[1 - dir];
        if self.blocked.contains(&(host, to)) {
            l.fin_held[dir] = true;
        } else {
            let at = (self.now + latency_ms).max(l.last_at[dir]);
            l.last_at[dir] = at;
            self.schedule(at, Ev::Closed { link, host: to });
        }
    }

    /// Sends on what directions are no longer cut whatever was held on them.
    pub(super) fn release_held(&mut self) {
        let mut due = Vec::new();
        for (&link, l) in &self.links {
            for dir in 0..2 {
                let (from, to) = (l.ends[dir].0, l.ends[1 - dir].0);
                if (!l.held[dir].is_empty() || l.fin_held[dir]) && self.reachable(from, to) {
                    due.push((link, dir, to));
                }
            }
        }
        for (link, dir, to) in due {
            let latency_ms = self.latency();
            let l = self.links.get_mut(&link).expect("listed above");
            let held = std::mem::take(&mut l.held[dir]);
            let fin = std::mem::take(&mut l.fin_held[dir]);
            let at = (self.now + latency_ms).max(l.last_at[dir]);
            l.last_at[dir] = at;
            // Equal times keep their scheduling order, so the held data arrives in order.
            for msg in held {
                self.schedule(at, Ev::Deliver { link, to, msg: Box::new(msg) });
            }
            if fin {
                self.schedule(at, Ev::Closed { link, host: to });
            }
        }
    }
}
