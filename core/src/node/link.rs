//! Links to other servers: the handshake that proves the system secret, liveness, and the
//! choice between two links to one peer.

use super::{Event, Node};
use crate::auth::{mac_eq, Nonce};
use crate::hlc::Hlc;
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::store::Vector;
use crate::wire::{Hello, IdentityChange, Message, Purpose, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The driver's handle for one link (TCP connection).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct LinkId(pub u64);

/// Where a link is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Hello sent, waiting for the peer's.
    AwaitHello,
    /// Hellos exchanged, waiting for the peer's proof.
    AwaitAuth(Box<Hello>),
    /// A member of this system, in the run that `boot` names.
    Up(ServerId, u64),
    /// Carrying an administrator's merge.
    Merge(Box<Hello>),
}

/// One link.
#[derive(Clone, Debug)]
pub(super) struct Link {
    pub dialed: Option<PeerAddr>,
    pub phase: Phase,
    pub nonce: Nonce,
    pub opened_ms: u64,
    pub last_rx_ms: u64,
    pub last_tx_ms: u64,
    /// When the link came up (0 before).
    pub up_ms: u64,
    /// What the peer told us it covers.
    pub known: Vector,
    /// What we told the peer we cover.
    pub announced: Vector,
    /// The peer's routing table.
    pub reach: BTreeMap<ServerId, u8>,
    /// The table this neighbour last got from us, so later messages carry only changes.
    pub reach_sent: BTreeMap<ServerId, u8>,
}

impl Link {
    pub fn peer_boot(&self) -> Option<u64> {
        match self.phase {
            Phase::Up(_, boot) => Some(boot),
            _ => None,
        }
    }
}

impl Node {
    pub(super) fn on_link_opened(&mut self, link: LinkId, dialed: Option<PeerAddr>) {
        let purpose = match &dialed {
            Some(addr) => {
                self.discovery.dial_succeeded(addr);
                self.admin.claim_merge_link(addr, link)
            }
            None => Purpose::Peer,
        };
        let nonce = self.nonce();
        let now = self.now.mono_ms;
        self.links.insert(
            link,
            Link {
                dialed,
                phase: Phase::AwaitHello,
                nonce,
                opened_ms: now,
                last_rx_ms: now,
                last_tx_ms: now,
                up_ms: 0,
                known: Vector::new(),
                announced: Vector::new(),
                reach: BTreeMap::new(),
                reach_sent: BTreeMap::new(),
            },
        );
        let hello = self.hello(nonce, purpose);
        self.send(link, Message::Hello(hello));
    }

    fn hello(&self, nonce: Nonce, purpose: Purpose) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            server: self.identity.server,
            system: self.identity.system,
            name: self.identity.name.clone(),
            name_stamp: self.identity.name_stamp,
            boot: self.boot,
            nonce,
            hlc: self.clock.last(),
            purpose,
            listen: self.config.listen.clone(),
        }
    }

    pub(super) fn on_link_closed(&mut self, link: LinkId) {
        let Some(l) = self.links.remove(&link) else { return };
        self.admin.link_closed(link, &mut self.outputs);
        if let Phase::Up(server, _) = l.phase {
            if self.peers.get(&server) == Some(&link) {
                self.peers.remove(&server);
                self.event(Event::PeerDown(server));
                self.membership_changed();
                self.sync_link_down(link);
                self.routes_changed();
            }
        }
        if let Some(addr) = l.dialed {
            self.discovery.link_lost(&addr, self.now.mono_ms, &self.config.timing);
        }
    }

    /// Closes a link and forgets it, as if the driver had reported it closed.
    pub(super) fn close(&mut self, link: LinkId) {
        if self.links.contains_key(&link) {
            self.outputs.push_back(super::Output::Close(link));
            self.on_link_closed(link);
        }
    }

    pub(super) fn violation(&mut self, link: LinkId, what: impl Into<String>) {
        self.event(Event::ProtocolViolation { link, what: what.into() });
        self.close(link);
    }

    pub(super) fn on_message(&mut self, link: LinkId, msg: Message) {
        let Some(l) = self.links.get_mut(&link) else { return };
        l.last_rx_ms = self.now.mono_ms;
        if let Phase::Up(peer, _) = l.phase {
            return self.on_peer_message(link, peer, msg);
        }
        let phase = l.phase.clone();
        match (phase, msg) {
            (Phase::AwaitHello, Message::Hello(h)) => self.on_hello(link, h),
            (Phase::AwaitAuth(h), Message::Auth { proof }) => {
                let nonce = self.links[&link].nonce;
                if mac_eq(&proof, &self.identity.secret.link_proof(&nonce, h.server)) {
                    self.on_authenticated(link, *h);
                } else {
                    self.event(Event::OtherSystem { server: h.server, name: h.name.clone() });
                    self.discovery.saw_other_system(&h, self.now.mono_ms, self.idle_ttl_ms());
                    self.close(link);
                }
            }
            (Phase::Merge(h), Message::Merge(m)) => self.on_merge_message(link, &h, m),
            (Phase::Merge(_), Message::Hello(_) | Message::Auth { .. }) => {}
            (_, msg) => self.violation(link, format!("unexpected {}", msg.kind())),
        }
    }

    fn on_hello(&mut self, link: LinkId, hello: Hello) {
        if hello.version != PROTOCOL_VERSION {
            return self.violation(link, format!("protocol version {}", hello.version));
        }
        self.clock.observe(hello.hlc);
        if hello.server == self.identity.server {
            // We dialled ourselves through one of our own addresses.
            if let Some(addr) = self.links[&link].dialed.clone() {
                self.discovery.is_self(addr);
            }
            return self.close(link);
        }
        if let Some(addr) = &self.links[&link].dialed {
            self.discovery.addr_is(addr.clone(), hello.server);
        }
        if self.admin.is_outgoing_merge(link) || matches!(hello.purpose, Purpose::Merge { .. }) {
            self.links.get_mut(&link).expect("link exists").phase =
                Phase::Merge(Box::new(hello.clone()));
            if let Purpose::Merge { user } = &hello.purpose {
                self.on_merge_request(link, &hello, user.clone());
            }
            return;
        }
        let proof = self.identity.secret.link_proof(&hello.nonce, self.identity.server);
        self.links.get_mut(&link).expect("link exists").phase = Phase::AwaitAuth(Box::new(hello));
        self.send(link, Message::Auth { proof });
    }

    fn on_authenticated(&mut self, link: LinkId, hello: Hello) {
        let same_system = hello.system == self.identity.system;
        if !same_system && hello.name != self.identity.name {
            // Same secret, different name: another system until an administrator says otherwise.
            self.event(Event::OtherSystem { server: hello.server, name: hello.name.clone() });
            self.discovery.saw_other_system(&hello, self.now.mono_ms, self.idle_ttl_ms());
            return self.close(link);
        }
        if !same_system && hello.system < self.identity.system {
            // Automatic merge: the older system's identity wins.
            self.adopt(hello.system, hello.name.clone(), hello.name_stamp, None);
        } else if same_system && hello.name_stamp > self.identity.name_stamp {
            self.adopt(hello.system, hello.name.clone(), hello.name_stamp, None);
        }
        if let Some(&existing) = self.peers.get(&hello.server) {
            // Two links to one peer: a link to an earlier run of it is dead; otherwise both
            // ends keep the one dialled by the lower server id.
            let dialer =
                |l: &Link| if l.dialed.is_some() { self.identity.server } else { hello.server };
            let stale = self.links[&existing].peer_boot() != Some(hello.boot);
            let keep_new = stale || dialer(&self.links[&link]) < dialer(&self.links[&existing]);
            let drop = if keep_new { existing } else { link };
            self.close(drop);
            if !keep_new {
                return;
            }
        }
        let l = self.links.get_mut(&link).expect("link exists");
        l.phase = Phase::Up(hello.server, hello.boot);
        l.up_ms = self.now.mono_ms;
        self.membership_changed();
        self.peers.insert(hello.server, link);
        self.discovery.linked(hello.server);
        self.event(Event::PeerUp(hello.server));
        // Either side may have moved between its hello and now: state where we are.
        let me = self.identity_statement();
        self.send(link, Message::Identity(me));
        self.sync_link_up(link);
        self.routes_changed();
    }

    /// Moves this server into system `to` named `name` and tells every linked member.
    pub(super) fn adopt(
        &mut self,
        to: SystemId,
        name: SystemName,
        stamp: Hlc,
        new_secret: Option<crate::auth::Secret>,
    ) {
        let nonce = self.nonce();
        let change = IdentityChange {
            from: self.identity.system,
            to,
            name,
            stamp,
            sealed_secret: new_secret.as_ref().map(|s| self.identity.secret.seal(s, &nonce)),
            nonce,
        };
        self.apply_identity_change(&change, None);
    }

    /// A linked peer's identity changed, or it states it after the handshake: follow it if it
    /// concerns this system, merge automatically if it is another system of the same name and
    /// secret, and drop the link if the peer left for a system we cannot join this way.
    pub(super) fn on_peer_identity(&mut self, link: LinkId, change: &IdentityChange) {
        let mine = self.identity.system;
        if change.from == mine || change.to == mine {
            return self.apply_identity_change(change, Some(link));
        }
        if change.name != self.identity.name || change.sealed_secret.is_some() {
            // Renamed away, or moved under another secret: another system now.
            return self.close(link);
        }
        if change.to < mine {
            self.adopt(change.to, change.name.clone(), change.stamp, None);
        } else {
            // The peer must come over to this older system; tell it where we are.
            let me = self.identity_statement();
            self.send(link, Message::Identity(me));
        }
    }

    /// This server's identity as a statement for a peer.
    pub(super) fn identity_statement(&self) -> IdentityChange {
        IdentityChange {
            from: self.identity.system,
            to: self.identity.system,
            name: self.identity.name.clone(),
            stamp: self.identity.name_stamp,
            sealed_secret: None,
            nonce: [0; 16],
        }
    }

    /// Applies a rename or move if it concerns this server and is news; relays it if so.
    pub(super) fn apply_identity_change(
        &mut self,
        change: &IdentityChange,
        from_link: Option<LinkId>,
    ) {
        let id = &self.identity;
        let moves = change.from == id.system && change.to != id.system;
        let renames = change.to == id.system && change.stamp > id.name_stamp;
        if !(moves || renames) {
            return;
        }
        self.clock.observe(change.stamp);
        if let Some(sealed) = &change.sealed_secret {
            if change.from == self.identity.system {
                self.identity.secret = self.identity.secret.unseal(sealed, &change.nonce);
            }
        }
        // Relay sealed with the secret we had, which is the one our links share.
        for link in self.up_links() {
            if Some(link) != from_link {
                self.send(link, Message::Identity(change.clone()));
            }
        }
        self.identity.system = change.to;
        self.identity.name = change.name.clone();
        self.identity.name_stamp = self.identity.name_stamp.max(change.stamp);
        self.outputs.push_back(super::Output::Persist(vec![crate::persist::Record::Identity(
            self.identity.clone(),
        )]));
        self.discovery.identity_changed();
        self.membership_changed();
        self.event(Event::IdentityChanged { system: change.to, name: change.name.clone() });
    }

    /// Closes dead links and keeps idle ones alive.
    ///
    /// A peer whose beacons (from the run the link was made with) keep arriving is alive, so
    /// its link needs only a slow keepalive, which still finds a broken connection to a live
    /// peer; without beacons (other subnets, NAT) the link itself is pinged every beacon
    /// period. This keeps a LAN of n servers from sending n² pings a second.
    pub(super) fn check_links(&mut self) {
        let t = self.config.timing.clone();
        let now = self.now.mono_ms;
        let fast_beacons = self.beacon_interval_ms() <= t.beacon_ms;
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (&id, l) in &self.links {
            let Phase::Up(peer, boot) = l.phase else {
                if now >= l.opened_ms + t.handshake_ms {
                    dead.push(id);
                }
                continue;
            };
            let beacon_ms = self.discovery.beacon_heard_ms(peer, boot);
            let beacons_fresh = beacon_ms.is_some_and(|b| now < b + 2 * t.beacon_ms);
            let heard = l.last_rx_ms.max(beacon_ms.unwrap_or(0));
            if now >= heard + t.link_silence_ms || now >= l.last_rx_ms + 3 * t.keepalive_ms {
                dead.push(id);
            } else {
                // The peer counts our beacons as signs of life only while they come every
                // period and reach it (its own reach us: multicast works between us). Otherwise a
                // ping every one and a half periods (every other tick, in effect) keeps a silent
                // link alive: silence is three and a half.
                let every = if beacons_fresh && fast_beacons {
                    t.keepalive_ms
                } else {
                    t.beacon_ms * 3 / 2
                };
                // A tick's worth of slack, so a ping is not skipped by a hair.
                if now + t.beacon_ms / 10 >= l.last_tx_ms + every {
                    ping.push(id);
                }
            }
        }
        for id in dead {
            self.close(id);
        }
        for id in ping {
            self.send(id, Message::Ping);
        }
    }
}
