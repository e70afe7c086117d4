//! Links to other servers: what a member link's secure channel established, the Hello that
//! follows it, pinned link keys, liveness, and the choice between two links to one peer.
//!
//! The driver runs the Noise handshake before the core hears of a link: a member channel
//! (`Noise_XXpsk3`, the pre-shared key derived from the system secret) reaches
//! [`Input::LinkOpened`](super::Input::LinkOpened) only once the peer has proven the secret,
//! and every byte after it is encrypted and authenticated. A merge channel (`Noise_XX`
//! without the key) proves nothing by itself; an OPAQUE login runs inside it (see `merge`).

use super::{Event, Node, Violation};
use crate::hlc::Hlc;
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::instant::MonoMs;
use crate::keys::PublicKey;
use crate::store::Vector;
use crate::wire::{Hello, IdentityChange, Message, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The driver's handle for one link (TCP connection).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct LinkId(pub u64);

/// Which handshake a link's channel ran.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub enum ChannelKind {
    /// Between members: the handshake proved the system secret on both sides.
    Member,
    /// An administrator's merge between two systems: authenticated by an OPAQUE login.
    Merge,
    /// Video between members: the same proof of the system secret as `Member`, on a
    /// connection of its own so that megabytes of video never queue ahead of heartbeats, sync
    /// or time samples. The driver hands it to the video plane; a node told of one closes it.
    Media,
}

/// What a link's secure channel established, reported by the driver.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChannelInfo {
    /// The handshake run.
    pub kind: ChannelKind,
    /// The peer's static (link) public key.
    pub peer_key: PublicKey,
    /// The handshake hash, unique to this channel: logins inside it are bound to it.
    pub handshake_hash: [u8; 32],
}

/// Where a link is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Member channel up, Hello sent, waiting for the peer's.
    AwaitHello,
    /// A member of this system, in the run that `boot` names.
    Up(ServerId, u64),
    /// Carrying an administrator's merge (state in `AdminState`).
    Merge,
}

/// One link.
#[derive(Clone, Debug)]
pub(super) struct Link {
    pub dialed: Option<PeerAddr>,
    pub phase: Phase,
    pub channel: ChannelInfo,
    /// When the channel was reported open.
    pub opened: MonoMs,
    /// When the link last carried something in.
    pub last_rx: MonoMs,
    /// When the link last carried something out.
    pub last_tx: MonoMs,
    /// When the link came up (0 before).
    pub up_since: MonoMs,
    /// What the peer told us it covers.
    pub known: Vector,
    /// What we told the peer we cover.
    pub announced: Vector,
    /// The peer's routing table (itself at 0 hops).
    pub reach: BTreeMap<ServerId, super::routing::Offer>,
    /// The table this neighbour last got from us, so later messages carry only changes.
    pub reach_sent: BTreeMap<ServerId, super::routing::Offer>,
}

impl Link {
    pub fn peer_boot(&self) -> Option<u64> {
        match self.phase {
            Phase::Up(_, boot) => Some(boot),
            _ => None,
        }
    }

    /// The member at the other end, once its Hello arrived.
    pub fn peer(&self) -> Option<ServerId> {
        match self.phase {
            Phase::Up(server, _) => Some(server),
            _ => None,
        }
    }
}

impl Node {
    pub(super) fn on_link_opened(
        &mut self,
        link: LinkId,
        dialed: Option<PeerAddr>,
        channel: ChannelInfo,
    ) {
        let phase = match channel.kind {
            ChannelKind::Member => Phase::AwaitHello,
            ChannelKind::Merge => Phase::Merge,
            ChannelKind::Media => return self.outputs.push_back(super::Output::Close(link)),
        };
        if let Some(addr) = &dialed {
            self.discovery.dial_succeeded(addr);
        }
        let now = self.now.mono;
        self.links.insert(
            link,
            Link {
                dialed: dialed.clone(),
                phase,
                channel,
                opened: now,
                last_rx: now,
                last_tx: now,
                up_since: MonoMs(0),
                known: Vector::new(),
                announced: Vector::new(),
                reach: BTreeMap::new(),
                reach_sent: BTreeMap::new(),
            },
        );
        match channel.kind {
            ChannelKind::Member => {
                let hello = self.hello();
                self.send(link, Message::Hello(hello));
            }
            ChannelKind::Merge => self.on_merge_link_opened(link, dialed),
            ChannelKind::Media => {} // closed above
        }
    }

    pub(super) fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            server: self.identity.server,
            system: self.identity.system,
            name: self.identity.name.clone(),
            name_stamp: self.identity.name_stamp,
            boot: self.boot,
            hlc: self.clock.last(),
            listen: self.config.listen.clone(),
        }
    }

    pub(super) fn on_link_closed(&mut self, link: LinkId) {
        let Some(l) = self.links.remove(&link) else { return };
        self.merge_link_closed(link);
        if let Phase::Up(server, _) = l.phase {
            if self.peers.get(&server) == Some(&link) {
                // The peer vouched for itself and the servers behind it until it fell silent.
                for dest in l.reach.keys().copied().chain([server]) {
                    self.presence_heard(dest, l.last_rx, false);
                }
                self.peers.remove(&server);
                self.event(Event::PeerDown(server));
                self.membership_changed();
                self.sync_link_down(link);
                self.routes_changed();
            }
        }
        if let Some(addr) = l.dialed {
            self.discovery.link_lost(&addr, self.now.mono, &self.config.timing);
        }
    }

    /// Closes a link and forgets it, as if the driver had reported it closed.
    pub(super) fn close(&mut self, link: LinkId) {
        if self.links.contains_key(&link) {
            self.outputs.push_back(super::Output::Close(link));
            self.on_link_closed(link);
        }
    }

    /// Reports that the peer on `link` broke the protocol, and closes the link.
    pub(super) fn violation(&mut self, link: LinkId, what: Violation) {
        self.event(Event::ProtocolViolation { link, what });
        self.close(link);
    }

    /// Absorbs a peer's timestamp within the allowed offset; otherwise closes the link as a
    /// clock violation (refusing one transaction would stall the sequence vector) and says so.
    pub(super) fn observe_peer_clock(&mut self, link: LinkId, stamp: Hlc) -> bool {
        let max = self.config.timing.clock_offset_ms_max;
        match self.clock.observe_bounded(stamp, self.now.wall, max) {
            Ok(()) => true,
            Err(e) => {
                self.event(Event::ClockViolation { link, what: e });
                self.close(link);
                false
            }
        }
    }

    /// Closes `link` for carrying `stamp`, beyond the allowed clock offset.
    pub(super) fn refuse_clock(&mut self, link: LinkId, stamp: Hlc) {
        let _ = self.observe_peer_clock(link, stamp);
    }

    pub(super) fn on_message(&mut self, link: LinkId, msg: Message) {
        let Some(l) = self.links.get_mut(&link) else { return };
        l.last_rx = self.now.mono;
        match (l.phase.clone(), msg) {
            (Phase::Up(peer, _), msg) => self.on_peer_message(link, peer, msg),
            (Phase::AwaitHello, Message::Hello(h)) => self.on_hello(link, h),
            (Phase::Merge, Message::Merge(m)) => self.on_merge_message(link, m),
            (Phase::AwaitHello, msg) => {
                self.violation(link, Violation::UnexpectedBeforeHello(msg.kind()))
            }
            (Phase::Merge, msg) => {
                self.violation(link, Violation::UnexpectedOnMergeLink(msg.kind()))
            }
        }
    }

    fn on_hello(&mut self, link: LinkId, hello: Hello) {
        if hello.version != PROTOCOL_VERSION {
            return self.violation(link, Violation::Version(hello.version));
        }
        if hello.server == self.identity.server {
            // We dialled ourselves through one of our own addresses.
            if let Some(addr) = self.links[&link].dialed.clone() {
                self.discovery.is_self(addr);
            }
            return self.close(link);
        }
        let presented = self.links[&link].channel.peer_key;
        if self.pinned_key(hello.server).is_some_and(|pinned| pinned != presented) {
            // A holder of the secret posing as another member, or a server whose key was
            // replaced without an owner saying so.
            self.event(Event::KeyMismatch { server: hello.server, presented });
            return self.close(link);
        }
        if !self.observe_peer_clock(link, hello.hlc) {
            return;
        }
        if let Some(addr) = &self.links[&link].dialed {
            self.discovery.addr_is(addr.clone(), hello.server);
        }
        self.on_authenticated(link, hello);
    }

    fn on_authenticated(&mut self, link: LinkId, hello: Hello) {
        let same_system = hello.system == self.identity.system;
        if !same_system && hello.name != self.identity.name {
            // Same secret, different name: another system until an administrator says otherwise.
            self.event(Event::OtherSystem { server: hello.server, name: hello.name.clone() });
            self.discovery.saw_other_system(
                hello.server,
                hello.system,
                &hello.name,
                hello.boot,
                self.now.mono,
                self.idle_ttl_ms(),
            );
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
        l.up_since = self.now.mono;
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
        let change = IdentityChange { from: self.identity.system, to, name, stamp, new_secret };
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
        if change.name != self.identity.name || change.new_secret.is_some() {
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
            new_secret: None,
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
        if let Some(link) = from_link {
            if !self.observe_peer_clock(link, change.stamp) {
                return;
            }
        } else {
            self.clock.observe(change.stamp);
        }
        if let Some(secret) = &change.new_secret {
            if change.from == self.identity.system {
                self.identity.secret = secret.clone();
            }
        }
        // Relay to every member still linked: they hold the secret we had.
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
        let now = self.now.mono;
        let fast_beacons = self.beacon_interval_ms() <= t.beacon_ms;
        let mut dead = Vec::new();
        let mut ping = Vec::new();
        for (&id, l) in &self.links {
            let Phase::Up(peer, boot) = l.phase else {
                if now >= l.opened.plus_ms(t.handshake_ms) {
                    dead.push(id);
                }
                continue;
            };
            let beacon = self.discovery.beacon_heard(peer, boot);
            let beacons_fresh = beacon.is_some_and(|b| now < b.plus_ms(2 * t.beacon_ms));
            let heard = l.last_rx.max(beacon.unwrap_or(MonoMs(0)));
            if now >= heard.plus_ms(t.link_silence_ms)
                || now >= l.last_rx.plus_ms(3 * t.keepalive_ms)
            {
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
                if now.plus_ms(t.beacon_ms / 10) >= l.last_tx.plus_ms(every) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instant::MonoUs;
    use crate::keys::PublicKey;
    use crate::node::testing::{node, NOW};
    use crate::node::{Command, CommandId, Input, Output, Reply};

    fn member(key: PublicKey) -> ChannelInfo {
        ChannelInfo { kind: ChannelKind::Member, peer_key: key, handshake_hash: [3; 32] }
    }

    fn hello_from(n: &Node, hlc: Hlc) -> Hello {
        Hello { hlc, ..n.hello() }
    }

    /// Opens member link `link` on `a` presenting `key`, and delivers `b`'s Hello stamped `hlc`.
    fn link_from(a: &mut Node, b: &Node, link: u64, key: PublicKey, hlc: Hlc) {
        let link = LinkId(link);
        a.handle(NOW, Input::LinkOpened { link, dialed: None, channel: member(key) });
        a.handle(
            NOW,
            Input::Message { link, msg: Message::Hello(hello_from(b, hlc)), received: MonoUs(0) },
        );
    }

    fn events(n: &mut Node) -> Vec<Event> {
        std::iter::from_fn(|| n.poll_output())
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_hello_stamped_at_the_end_of_time_closes_the_link_and_leaves_the_clock_alone() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        let before = a.clock.last();
        let poison = Hlc { wall_ms: u64::MAX, logical: u32::MAX };
        link_from(&mut a, &b, 1, b.channel_keys().0.public, poison);
        let seen = events(&mut a);
        let what = seen.iter().find_map(|e| match e {
            Event::ClockViolation { link: LinkId(1), what } => Some(*what),
            _ => None,
        });
        assert_eq!(what.map(|w| w.stamp), Some(poison), "{seen:?}");
        assert!(!a.links.contains_key(&LinkId(1)));
        assert_eq!(a.clock.last(), before);
    }

    #[test]
    fn a_message_before_hello_is_reported_as_that_violation_and_closes_the_link() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        let (link, channel) = (LinkId(1), member(b.channel_keys().0.public));
        a.handle(NOW, Input::LinkOpened { link, dialed: None, channel });
        a.handle(NOW, Input::Message { link, msg: Message::Ping, received: MonoUs(0) });
        let seen = events(&mut a);
        let expected =
            Event::ProtocolViolation { link, what: Violation::UnexpectedBeforeHello("Ping") };
        assert!(seen.contains(&expected), "{seen:?}");
        assert!(!a.links.contains_key(&link));
    }

    #[test]
    fn a_push_of_another_servers_transaction_is_reported_as_that_violation() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        link_from(&mut a, &b, 1, b.channel_keys().0.public, b.clock.last());
        while a.poll_output().is_some() {}
        let txn = crate::store::Transaction {
            origin: crate::store::ReplicaId { server: ServerId(99), epoch: 0 },
            seq: 1,
            hlc: b.clock.last(),
            key: crate::resources::Key::Setting { system: a.identity.system, name: "x".into() },
            value: None,
        };
        let (link, msg) = (LinkId(1), Message::Push { txns: vec![txn] });
        a.handle(NOW, Input::Message { link, msg, received: MonoUs(0) });
        let seen = events(&mut a);
        let expected = Event::ProtocolViolation { link, what: Violation::PushOfAnotherServer };
        assert!(seen.contains(&expected), "{seen:?}");
        assert!(!a.links.contains_key(&link));
    }

    #[test]
    fn a_hello_of_another_protocol_version_is_reported_with_that_version() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        let (link, channel) = (LinkId(1), member(b.channel_keys().0.public));
        a.handle(NOW, Input::LinkOpened { link, dialed: None, channel });
        let hello = Hello { version: PROTOCOL_VERSION + 1, ..b.hello() };
        a.handle(NOW, Input::Message { link, msg: Message::Hello(hello), received: MonoUs(0) });
        let seen = events(&mut a);
        let expected =
            Event::ProtocolViolation { link, what: Violation::Version(PROTOCOL_VERSION + 1) };
        assert!(seen.contains(&expected), "{seen:?}");
    }

    #[test]
    fn a_known_server_presenting_another_key_is_refused_and_reported() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        // The system pinned b's key (b wrote it; here it reaches a directly).
        let pin = (
            crate::resources::Key::ServerKey(b.identity.server),
            crate::resources::Value::ServerKey(b.channel_keys().0.public),
        );
        a.handle(
            NOW,
            Input::Command { id: CommandId(9), cmd: Command::Put { key: pin.0, value: pin.1 } },
        );
        let impostor = PublicKey([0xee; 32]);
        link_from(&mut a, &b, 1, impostor, b.clock.last());
        let seen = events(&mut a);
        assert!(
            seen.contains(&Event::KeyMismatch { server: b.identity.server, presented: impostor }),
            "{seen:?}"
        );
        assert!(a.peers.is_empty());
        // The real key still links.
        link_from(&mut a, &b, 2, b.channel_keys().0.public, b.clock.last());
        assert_eq!(a.peers.get(&b.identity.server), Some(&LinkId(2)));
    }

    #[test]
    fn a_media_channel_reported_to_the_node_is_closed_and_never_becomes_a_link() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        let channel = ChannelInfo {
            kind: ChannelKind::Media,
            peer_key: b.channel_keys().0.public,
            handshake_hash: [1; 32],
        };
        a.handle(NOW, Input::LinkOpened { link: LinkId(7), dialed: None, channel });
        let out: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
        assert_eq!(out, vec![Output::Close(LinkId(7))]);
        assert!(a.links.is_empty() && a.peers.is_empty());
    }

    #[test]
    fn replacing_the_link_key_pins_the_new_key_and_remakes_every_link() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        link_from(&mut a, &b, 1, b.channel_keys().0.public, b.clock.last());
        while a.poll_output().is_some() {}
        let pair = crate::keys::StaticKeypair { private: [5; 32], public: PublicKey([6; 32]) };
        a.handle(NOW, Input::Command { id: CommandId(1), cmd: Command::ReplaceLinkKey { pair } });
        let out: Vec<Output> = std::iter::from_fn(|| a.poll_output()).collect();
        let pushed =
            out.iter().position(|o| matches!(o, Output::Send { msg: Message::Push { .. }, .. }));
        let closed = out.iter().position(|o| matches!(o, Output::Close(LinkId(1))));
        assert!(pushed.is_some() && pushed < closed, "{out:?}");
        assert!(out.contains(&Output::Reply {
            id: CommandId(1),
            result: Ok(Reply::LinkKey(PublicKey([6; 32])))
        }));
        assert_eq!(a.pinned_key(a.identity.server), Some(PublicKey([6; 32])));
        assert_eq!(a.channel_keys().0.public, PublicKey([6; 32]));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::auth::Secret;
    use crate::instant::MonoUs;
    use crate::node::testing::{node, NOW};
    use crate::node::{Command, CommandId, Input, Output};

    #[test]
    fn a_replaced_secret_reaches_every_linked_member_and_changes_the_link_key() {
        let (mut a, mut b) = (node("north", 1), node("north", 2));
        let member =
            |k| ChannelInfo { kind: ChannelKind::Member, peer_key: k, handshake_hash: [1; 32] };
        let (ka, kb) = (a.channel_keys().0.public, b.channel_keys().0.public);
        a.handle(NOW, Input::LinkOpened { link: LinkId(1), dialed: None, channel: member(kb) });
        b.handle(NOW, Input::LinkOpened { link: LinkId(1), dialed: None, channel: member(ka) });
        let new = Secret::from_bytes([42; 32]);
        let mut pending: Vec<(bool, Message)> = Vec::new();
        let mut exchange = |a: &mut Node, b: &mut Node| {
            for _ in 0..6 {
                for (to_a, msg) in std::mem::take(&mut pending) {
                    let n = if to_a { &mut *a } else { &mut *b };
                    n.handle(NOW, Input::Message { link: LinkId(1), msg, received: MonoUs(0) });
                }
                for (from_a, n) in [(true, &mut *a), (false, &mut *b)] {
                    while let Some(o) = n.poll_output() {
                        if let Output::Send { msg, .. } = o {
                            pending.push((!from_a, msg));
                        }
                    }
                }
            }
        };
        exchange(&mut a, &mut b);
        assert_eq!(a.identity.system, b.identity.system, "linked and merged first");
        let cmd = Command::ReplaceSecret { secret: new.clone() };
        a.handle(NOW, Input::Command { id: CommandId(1), cmd });
        exchange(&mut a, &mut b);
        assert_eq!(a.identity.secret, new);
        assert_eq!(b.identity.secret, new);
        assert_eq!(b.channel_keys().1, new.noise_psk());
    }
}
