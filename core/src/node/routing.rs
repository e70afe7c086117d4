//! Routing: which servers are reachable, in how many hops and through which neighbour, by a
//! distance-vector exchange with split horizon. A server is online for the system while a
//! route to it exists; video to a server without a direct link follows `via`.
//!
//! Routes also carry what each server announces of itself ([`ServerStatus`]: when its run
//! started, where it takes its time from), and a withdrawal says how long ago its sender last
//! heard of the server, so that every server dates a death alike (see `presence`).

use super::{LinkId, Node};
use crate::ids::ServerId;
use crate::wire::{Message, RouteAd, ServerStatus};
use std::collections::{BTreeMap, BTreeSet};

/// Longest route, in hops (a route this long or longer is unreachable). Sparse meshes with
/// servers in other subnets (linked only to the address they were joined by) reach eight
/// hops across in the 30-server seed sweep; sixteen leaves room while keeping a withdrawal's
/// count to infinity short.
pub const HOPS_MAX: u8 = 16;

/// A route to a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Links on the way.
    pub hops: u8,
    /// Neighbour to send through.
    pub via: ServerId,
}

/// `heard_ago_ms` of a withdrawal that says nothing of when the server was heard.
pub const NOT_HEARD: u32 = u32::MAX;

/// A neighbour's entry for one server: hops from the neighbour and the server's status.
pub(super) type Offer = (u8, ServerStatus);

#[derive(Default)]
pub(super) struct Routing {
    pub(super) routes: BTreeMap<ServerId, Route>,
    /// Status of each reachable server, from the neighbour its route goes through.
    statuses: BTreeMap<ServerId, ServerStatus>,
    /// Links or neighbour tables changed: recompute and tell neighbours what changed at the
    /// next flush (changes arrive in bursts; once per burst is enough).
    pub(super) stale: bool,
    /// Unreachable servers whose last-heard time this server learned or improved since the
    /// last flush: every neighbour gets it in a withdrawal, also one that had a withdrawal
    /// without it (sent while this server still had another route).
    pub(super) vouch_pending: BTreeSet<ServerId>,
}

impl Node {
    /// A neighbour's table changed: `routes` holds the changed entries, a hop count of
    /// [`HOPS_MAX`] or more withdrawing a route.
    pub(super) fn on_reach(&mut self, link: LinkId, routes: Vec<RouteAd>) {
        let now = self.now.mono;
        let Some(l) = self.links.get_mut(&link) else { return };
        let peer = l.peer();
        let mut changed = false;
        let mut lost_direct = Vec::new();
        let mut heard = Vec::new();
        for ad in routes {
            // Only the neighbour itself sits at 0 hops of it.
            if ad.hops == 0 && Some(ad.server) != peer {
                continue;
            }
            let old = if ad.hops >= HOPS_MAX {
                if ad.heard_ago_ms != NOT_HEARD {
                    heard.push((ad.server, now.saturating_minus_ms(u64::from(ad.heard_ago_ms))));
                }
                l.reach.remove(&ad.server)
            } else {
                l.reach.insert(ad.server, (ad.hops, ad.status))
            };
            changed |= old.map(|o| o.0) != Some(ad.hops)
                || ad.hops < HOPS_MAX && old.is_none_or(|o| o.1 != ad.status);
            if old.is_some_and(|o| o.0 == 1) && ad.hops != 1 {
                lost_direct.push(ad.server);
            }
        }
        for (server, at) in heard {
            self.presence_heard(server, at, true);
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
        // Each server's newest status, whichever neighbour relays it (see `ServerStatus::stamp`).
        let mut statuses: BTreeMap<ServerId, ServerStatus> = BTreeMap::new();
        let mut newest = |dest: ServerId, status: ServerStatus| {
            let known = statuses.entry(dest).or_insert(status);
            if status.stamp > known.stamp {
                *known = status;
            }
        };
        for (&peer, link) in &self.peers {
            let reach = &self.links[link].reach;
            routes.insert(peer, Route { hops: 1, via: peer });
            newest(peer, reach.get(&peer).map(|o| o.1).unwrap_or_default());
            for (&dest, &(hops, status)) in reach {
                if dest == me || dest == peer || hops + 1 >= HOPS_MAX {
                    continue;
                }
                newest(dest, status);
                let candidate = Route { hops: hops + 1, via: peer };
                if routes.get(&dest).is_none_or(|r| candidate < *r) {
                    routes.insert(dest, candidate);
                }
            }
        }
        let statuses_changed = statuses != self.routing.statuses;
        self.routing.statuses = statuses;
        if statuses_changed {
            self.refresh_statuses();
        }
        if routes != self.routing.routes {
            let before: BTreeSet<ServerId> = self.routing.routes.keys().copied().collect();
            self.routing.routes = routes;
            self.reachability_changed(&before);
            self.licenses_dirty();
        }
    }

    pub(super) fn flush_routes(&mut self) {
        if !std::mem::take(&mut self.routing.stale) {
            return;
        }
        self.recompute_routes();
        let me = self.identity.server;
        let own = (0, self.own_status());
        let now = self.now.mono;
        let vouch_pending = std::mem::take(&mut self.routing.vouch_pending);
        // Every neighbour gets what changed since its last table: a new link, everything.
        let peers: Vec<_> = self.peers.iter().map(|(p, l)| (*p, *l)).collect();
        for (peer, link) in peers {
            // Split horizon: never offer a neighbour a route that goes through it.
            let mut table: BTreeMap<ServerId, Offer> = self
                .routing
                .routes
                .iter()
                .filter(|(dest, r)| **dest != peer && r.via != peer)
                .map(|(dest, r)| (*dest, (r.hops, self.routing.statuses[dest])))
                .collect();
            table.insert(me, own);
            let l = self.links.get(&link).expect("peer links exist");
            // Only what changed since the last table this neighbour got.
            let gone: BTreeSet<ServerId> = l
                .reach_sent
                .keys()
                .filter(|d| !table.contains_key(d))
                .chain(vouch_pending.iter().filter(|d| **d != peer && !table.contains_key(d)))
                .copied()
                .collect();
            let withdrawn = gone.iter().map(|d| {
                // Still reached (through this neighbour, which split horizon hides), or lost
                // without anyone's word of when it was heard: no news of when it was heard.
                let heard_ago_ms = match self.vouched_heard(*d) {
                    Some(at) => u32::try_from(now.saturating_since(at)).unwrap_or(NOT_HEARD - 1),
                    None => NOT_HEARD,
                };
                RouteAd {
                    server: *d,
                    hops: HOPS_MAX,
                    status: ServerStatus::default(),
                    heard_ago_ms,
                }
            });
            let changed = table.iter().filter(|(d, o)| l.reach_sent.get(d) != Some(o)).map(
                |(d, (hops, status))| RouteAd {
                    server: *d,
                    hops: *hops,
                    status: *status,
                    heard_ago_ms: 0,
                },
            );
            let routes: Vec<_> = withdrawn.chain(changed).collect();
            self.links.get_mut(&link).expect("peer links exist").reach_sent = table;
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

    /// Every route, by destination.
    pub fn routes(&self) -> &BTreeMap<ServerId, Route> {
        &self.routing.routes
    }

    /// What a reachable server announced, as its route carries it.
    pub(super) fn routing_status(&self, server: ServerId) -> ServerStatus {
        self.routing.statuses.get(&server).copied().unwrap_or_default()
    }
}
