//! Whether two servers truly reach each other, as the simulator knows and they only learn.
//!
//! A server routes to another over the links it believes open. A link cut silently, or one
//! way only, still carries its routes until the link's silence shows the cut, seconds later;
//! until then the two sides are a partition, whatever the servers believe. The single-recorder
//! check counts a double recording only while both servers' routes to each other work.

use super::{HostId, World};
use hive_core::node::HOPS_MAX;
use std::collections::BTreeMap;

impl World {
    /// Whether the route `from`'s server takes to `to`'s delivers now: each hop's link is
    /// open, of both ends' current runs, and cut in neither direction (TCP needs the way back
    /// for its acknowledgements). A route over a link cut silently, or one way only, is the
    /// gray failure servers find only by the link's silence.
    pub fn route_works(&self, from: HostId, to: HostId) -> bool {
        let Some(target) = self.node(to).map(|n| n.identity().server) else { return false };
        let by_server: BTreeMap<_, _> = (0..self.hosts.len())
            .filter_map(|h| self.node(h).map(|n| (n.identity().server, h)))
            .collect();
        let mut at = from;
        for _ in 0..=HOPS_MAX {
            if at == to {
                return true;
            }
            let Some(node) = self.node(at) else { return false };
            let Some(route) = node.route_to(target) else { return false };
            let Some(link) = node.linked_peers().find(|(s, _)| *s == route.via).map(|(_, l)| l)
            else {
                return false;
            };
            let Some(&next) = by_server.get(&route.via) else { return false };
            let Some(l) = self.links.get(&link) else { return false };
            let live = l.ends.iter().all(|&(h, inc)| self.hosts[h].inc == inc && self.is_up(h));
            if l.broken || !live || !self.reachable(at, next) || !self.reachable(next, at) {
                return false;
            }
            at = next;
        }
        false
    }

    /// Since when (simulated ms) hosts `a` and `b`'s routes to each other have worked, kept
    /// in `since` while the two record a camera twice; `None` while one does not work.
    pub(super) fn routes_work_since(
        &self,
        a: HostId,
        b: HostId,
        since: &mut BTreeMap<(HostId, HostId), u64>,
    ) -> Option<u64> {
        if self.route_works(a, b) && self.route_works(b, a) {
            Some(*since.entry((a, b)).or_insert(self.now))
        } else {
            since.remove(&(a, b));
            None
        }
    }
}
