//! Discovery: beacons out every second, beacons in sorted into members of this system (to link
//! with) and other systems (listed, never given data), and dialling with back-off.

use super::{Node, Output, Timing};
use crate::auth::{mac_eq, Mac};
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::wire::{Beacon, Hello, PROTOCOL_VERSION};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A system seen on the network that this server is not a member of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OtherSystem {
    /// Its id.
    pub system: SystemId,
    /// Its name.
    pub name: SystemName,
    /// Its servers heard from.
    pub servers: Vec<ServerId>,
}

/// A server heard from. Kept small: every beacon of every server touches one.
#[derive(Clone, Debug)]
struct Seen {
    /// First bytes of the beacon's proof (0: learned from a hello): an unchanged beacon needs
    /// no new proof check.
    tag: u64,
    boot: u64,
    first_ms: u64,
    last_ms: u64,
    /// Forgotten this long after `last_ms`: three and a half of its beacon periods.
    ttl_ms: u64,
    /// Since when it has been heard without a route to it (a member), if so.
    unrouted_ms: Option<u64>,
    /// `None` for a member; the system and name of another system.
    other: Option<Box<(SystemId, SystemName)>>,
}

fn tag(proof: &Mac) -> u64 {
    u64::from_le_bytes(proof[..8].try_into().expect("8 bytes")).max(1)
}

#[derive(Clone, Debug, Default)]
struct Dial {
    in_flight: bool,
    next_ms: u64,
    backoff_ms: u64,
}

/// What discovery remembers.
#[derive(Default)]
pub(super) struct Discovery {
    seen: BTreeMap<ServerId, Seen>,
    dials: BTreeMap<PeerAddr, Dial>,
    addr_server: BTreeMap<PeerAddr, ServerId>,
    own_addrs: BTreeSet<PeerAddr>,
    beacon: Option<Beacon>,
    /// No entry of `seen` expires before this.
    next_expire_ms: u64,
}

impl Discovery {
    /// Forgets servers not heard from for their time to live; whether any was forgotten.
    pub fn expire(&mut self, now: u64) -> bool {
        if now < self.next_expire_ms {
            return false;
        }
        let before = self.seen.len();
        let mut next = u64::MAX;
        self.seen.retain(|_, s| {
            let until = s.last_ms + s.ttl_ms;
            next = next.min(until);
            now < until
        });
        self.next_expire_ms = next;
        self.seen.len() != before
    }

    fn expires_by(&mut self, ms: u64) {
        self.next_expire_ms = self.next_expire_ms.min(ms);
    }

    /// Members of this system heard by beacon.
    pub fn members_heard(&self) -> usize {
        self.seen.values().filter(|s| s.other.is_none()).count()
    }

    /// When a beacon of `server` in its run `boot` was last heard.
    pub fn beacon_heard_ms(&self, server: ServerId, boot: u64) -> Option<u64> {
        self.seen.get(&server).filter(|s| s.other.is_none() && s.boot == boot).map(|s| s.last_ms)
    }

    pub fn dial_succeeded(&mut self, addr: &PeerAddr) {
        self.dials.entry(addr.clone()).or_default().in_flight = false;
    }

    pub fn link_lost(&mut self, addr: &PeerAddr, now: u64, t: &Timing) {
        let d = self.dials.entry(addr.clone()).or_default();
        d.in_flight = false;
        d.backoff_ms = (d.backoff_ms * 2).clamp(t.dial_backoff_ms, t.dial_backoff_ms_max);
        d.next_ms = now + d.backoff_ms;
    }

    pub fn linked(&mut self, server: ServerId) {
        for (addr, s) in &self.addr_server {
            if *s == server {
                if let Some(d) = self.dials.get_mut(addr) {
                    d.backoff_ms = 0;
                }
            }
        }
    }

    pub fn is_self(&mut self, addr: PeerAddr) {
        self.own_addrs.insert(addr);
    }

    pub fn addr_is(&mut self, addr: PeerAddr, server: ServerId) {
        self.addr_server.insert(addr, server);
    }

    pub fn identity_changed(&mut self) {
        self.beacon = None;
        // Membership of everyone heard is judged again against the new identity.
        self.seen.clear();
    }

    pub fn saw_other_system(&mut self, hello: &Hello, now: u64, ttl_ms: u64) {
        let s = self.seen.entry(hello.server).or_insert(Seen {
            tag: 0,
            boot: hello.boot,
            first_ms: now,
            last_ms: now,
            ttl_ms,
            unrouted_ms: None,
            other: None,
        });
        s.other = Some(Box::new((hello.system, hello.name.clone())));
        s.last_ms = now;
        self.expires_by(now + ttl_ms);
    }

    pub fn other_systems(&self) -> Vec<OtherSystem> {
        let mut by_system: BTreeMap<(SystemId, &SystemName), Vec<ServerId>> = BTreeMap::new();
        for (server, s) in &self.seen {
            if let Some(other) = &s.other {
                by_system.entry((other.0, &other.1)).or_default().push(*server);
            }
        }
        by_system
            .into_iter()
            .map(|((system, name), servers)| OtherSystem { system, name: name.clone(), servers })
            .collect()
    }
}

impl Node {
    pub(super) fn send_beacon(&mut self) {
        let id = &self.identity;
        let beacon = self
            .discovery
            .beacon
            .get_or_insert_with(|| Beacon {
                version: PROTOCOL_VERSION,
                server: id.server,
                system: id.system,
                name: id.name.clone(),
                boot: self.boot,
                listen: self.config.listen.clone(),
                proof: id.secret.beacon_proof(id.server, id.system, &id.name),
                interval_ms: 0,
            })
            .clone();
        let mut beacon = beacon;
        beacon.interval_ms = u32::try_from(self.beacon_interval_ms()).unwrap_or(u32::MAX);
        let unicast = self.manual_addresses().into_iter().collect();
        self.outputs.push_back(Output::Beacon { beacon, unicast });
    }

    pub(super) fn on_beacon(&mut self, b: &Beacon) {
        if b.server == self.identity.server || b.version != PROTOCOL_VERSION {
            return;
        }
        let now = self.now.mono_ms;
        // Fast path: an unchanged beacon needs no new proof check (a simulator delivers
        // thousands a second).
        // Equal proofs mean equal server, system and name: the proof covers them.
        let ttl_ms = u64::from(b.interval_ms).clamp(100, 60_000) * 7 / 2;
        let known = self.discovery.seen.get_mut(&b.server).filter(|s| s.tag == tag(&b.proof));
        let (member, first_ms) = match known {
            Some(s) => {
                s.last_ms = now;
                s.ttl_ms = ttl_ms;
                self.discovery.next_expire_ms = self.discovery.next_expire_ms.min(now + ttl_ms);
                let rebooted = s.boot != b.boot;
                s.boot = b.boot;
                let member = s.other.is_none();
                let first_ms = s.first_ms;
                if member && rebooted {
                    self.membership_changed();
                }
                (member, first_ms)
            }
            None => {
                let id = &self.identity;
                let valid = mac_eq(&b.proof, &id.secret.beacon_proof(b.server, b.system, &b.name));
                let member = valid && (b.system == id.system || b.name == id.name);
                self.discovery.seen.insert(
                    b.server,
                    Seen {
                        tag: tag(&b.proof),
                        boot: b.boot,
                        first_ms: now,
                        last_ms: now,
                        ttl_ms,
                        unrouted_ms: None,
                        other: (!member).then(|| Box::new((b.system, b.name.clone()))),
                    },
                );
                self.discovery.expires_by(now + ttl_ms);
                if member {
                    self.membership_changed();
                    // Count now: whom to link with depends on it.
                    self.recount_system();
                }
                (member, now)
            }
        };
        if !member || self.peers.contains_key(&b.server) {
            return;
        }
        // Of a mesh pair the lower id dials; the higher one too if no link came for a while
        // (the lower one may be unable to reach it). Any member left unreachable that long is
        // dialled as well, mesh pair or not: the mesh must stay connected.
        let waited = now >= first_ms + 3 * self.config.timing.beacon_ms;
        let dial = if self.wants_link(b.server) {
            (self.identity.server < b.server || waited) && !self.mesh_undecided()
        } else {
            // Unreachable for three beacon periods, not for the moment a route changes.
            let routed = self.route_to(b.server).is_some();
            let beacon_ms = self.config.timing.beacon_ms;
            let s = self.discovery.seen.get_mut(&b.server).expect("just seen");
            let since = if routed { None } else { Some(s.unrouted_ms.unwrap_or(now)) };
            s.unrouted_ms = since;
            since.is_some_and(|t| now >= t + 3 * beacon_ms)
        };
        if dial {
            let own = &self.discovery.own_addrs;
            if let Some(addr) = b.listen.iter().find(|a| !own.contains(*a)).cloned() {
                self.request_dial(addr);
            }
        }
    }

    fn request_dial(&mut self, addr: PeerAddr) {
        let now = self.now.mono_ms;
        let d = self.discovery.dials.entry(addr.clone()).or_default();
        if d.in_flight || now < d.next_ms {
            return;
        }
        d.in_flight = true;
        self.outputs.push_back(Output::Dial(addr));
    }

    pub(super) fn on_dial_failed(&mut self, addr: &PeerAddr) {
        self.discovery.link_lost(addr, self.now.mono_ms, &self.config.timing);
        self.admin_dial_failed(addr);
    }

    /// Dials manual addresses that have no live link.
    pub(super) fn dial_due(&mut self) {
        for addr in self.manual_addresses() {
            if self.discovery.own_addrs.contains(&addr) {
                continue;
            }
            let linked =
                self.discovery.addr_server.get(&addr).is_some_and(|s| self.peers.contains_key(s));
            if !linked {
                self.request_dial(addr);
            }
        }
    }

    /// Systems heard on the network that this server is not a member of.
    pub fn other_systems(&self) -> Vec<OtherSystem> {
        self.discovery.other_systems()
    }
}
