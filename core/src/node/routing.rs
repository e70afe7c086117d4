//! Routing: which servers are reachable, in how many hops and through which neighbour, by a
//! distance-vector exchange with split horizon. A server is online for the system while a
//! route to it exists; video to a server without a direct link follows `via`.

use super::{LinkId, Node};
use crate::ids::ServerId;
use crate::wire::Message;
use std::collections::{BTreeMap, BTreeSet};

/// Longest route, in hops (a route this long or longer is unreachable).
pub const HOPS_MAX: u8 = 8;

/// A route to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Links on the way.
    pub hops: u8,
    /// Neighbour to send through.
    pub via: ServerId,
}

#[derive(Default)]
pub(super) struct Routing {
    pub(super) routes: BTreeMap<ServerId, Route>,
    /// Links or neighbour tables changed: recompute and tell neighbours what changed at the
    /// next flush (changes arrive in bursts; once per burst is enough).
    pub(super) stale: bool,
}

impl Node {
    /// A neighbour's table changed: `routes` holds the changed entries, a hop count of
    /// [`HOPS_MAX`] or more withdrawing a route.
    pub(super) fn on_reach(&mut self, link: LinkId, routes: Vec<(ServerId, u8)>) {
        let Some(l) = self.links.get_mut(&link) else { return };
        let mut changed = false;
        let mut lost_direct = Vec::new();
        for (dest, hops) in routes {
            let old =
                if hops >= HOPS_MAX { l.reach.remove(&dest) } else { l.reach.insert(dest, hops) };
            changed |= old != Some(hops);
            if old == Some(1) && hops != 1 {
                lost_direct.push(dest);
            }
        }
        if changed {
            self.routes_changed();
        }
        // The neighbour lost its direct link to these servers, which is how it got their writes:
        // from now on it needs our announcements of them.
        for server in lost_direct {
            self.announce_origins_of(server);
        }
    }

    /// Notes that links or a neighbour's table changed.
    pub(super) fn routes_changed(&mut self) {
        self.routing.stale = true;
        self.schedule_announce();
    }

    /// Recomputes the routing table from the links and the neighbours' tables.
    fn recompute_routes(&mut self) {
        let me = self.identity.server;
        let mut routes: BTreeMap<ServerId, Route> = BTreeMap::new();
        for (&peer, link) in &self.peers {
            routes.insert(peer, Route { hops: 1, via: peer });
            for (&dest, &hops) in &self.links[link].reach {
                if dest == me || hops + 1 >= HOPS_MAX {
                    continue;
                }
                let candidate = Route { hops: hops + 1, via: peer };
                routes.entry(dest).and_modify(|r| *r = (*r).min(candidate)).or_insert(candidate);
            }
        }
        if routes != self.routing.routes {
            self.routing.routes = routes;
            self.licenses_dirty();
        }
    }

    pub(super) fn flush_routes(&mut self) {
        if !std::mem::take(&mut self.routing.stale) {
            return;
        }
        self.recompute_routes();
        // Every neighbour gets what changed since its last table: a new link, everything.
        let peers: Vec<_> = self.peers.iter().map(|(p, l)| (*p, *l)).collect();
        for (peer, link) in peers {
            let l = self.links.get_mut(&link).expect("peer links exist");
            // Split horizon: never offer a neighbour a route that goes through it.
            let table: BTreeMap<ServerId, u8> = self
                .routing
                .routes
                .iter()
                .filter(|(dest, r)| **dest != peer && r.via != peer)
                .map(|(dest, r)| (*dest, r.hops))
                .collect();
            // Only what changed since the last table this neighbour got.
            let withdrawn =
                l.reach_sent.keys().filter(|d| !table.contains_key(d)).map(|d| (*d, HOPS_MAX));
            let changed =
                table.iter().filter(|(d, h)| l.reach_sent.get(d) != Some(h)).map(|(d, h)| (*d, *h));
            let routes: Vec<_> = withdrawn.chain(changed).collect();
            l.reach_sent = table;
            if !routes.is_empty() {
                self.send(link, Message::Reach { routes });
            }
        }
    }

    /// Servers of this system reachable now, this one included.
    pub fn online_servers(&self) -> BTreeSet<ServerId> {
        let mut online: BTreeSet<_> = self.routing.routes.keys().copied().collect();
        online.insert(self.identity.server);
        online
    }

    /// The lowest-numbered server reachable through a route (this one excluded).
    pub(super) fn routing_lowest(&self) -> Option<ServerId> {
        self.routing.routes.keys().next().copied()
    }

    /// The route to `server`, if it is reachable.
    pub fn route_to(&self, server: ServerId) -> Option<Route> {
        self.routing.routes.get(&server).copied()
    }
}
