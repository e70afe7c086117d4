//! Discovery: beacons out every second, beacons in sorted into members of this system (to link
//! with) and other systems (listed, never given data), and dialling with back-off.

use super::{Node, Output, Timing};
use crate::auth::mac_eq;
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::instant::MonoMs;
use crate::wire::{Beacon, PROTOCOL_VERSION};
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
    /// Why it is not this system, for the administrator.
    pub reason: String,
}

/// Most servers of other systems remembered: unauthenticated beacons must not grow memory or
/// the system view without bound.
pub const OTHER_SERVERS_MAX: usize = 64;

/// Why a server heard is not a member.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NotMember {
    /// Its beacon's proof fails under our secret: another secret (or a forgery).
    OtherSecret,
    /// Same secret, another name and system.
    OtherName,
    /// Speaks another protocol version.
    Protocol(u32),
}

impl NotMember {
    fn reason(&self) -> String {
        match self {
            NotMember::OtherSecret => "another system secret".into(),
            NotMember::OtherName => "same secret, another system name".into(),
            NotMember::Protocol(v) if *v < PROTOCOL_VERSION => {
                format!("protocol {v}, this server speaks {PROTOCOL_VERSION}: upgrade it")
            }
            NotMember::Protocol(v) => {
                format!("protocol {v}, this server speaks {PROTOCOL_VERSION}: upgrade this server")
            }
        }
    }
}

/// A server heard from. Kept small: every beacon of every server touches one.
#[derive(Clone, Debug)]
struct Seen {
    boot: u64,
    /// Highest beacon sequence number accepted from run `boot`: an older or repeated one is
    /// a replay.
    seq: u64,
    /// When it was first heard in this entry.
    first_heard: MonoMs,
    /// When it was last heard.
    last_heard: MonoMs,
    /// Forgotten this long after `last_heard`: three and a half of its beacon periods.
    ttl_ms: u64,
    /// Since when it has been heard without a route to it (a member), if so.
    unrouted_since: Option<MonoMs>,
    /// `None` for a member; the system, name and reason of another system.
    other: Option<Box<(SystemId, SystemName, NotMember)>>,
}

#[derive(Clone, Debug, Default)]
struct Dial {
    in_flight: bool,
    /// No dial before this.
    next: MonoMs,
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
    /// Sequence number of the last beacon sent.
    beacon_seq: u64,
    /// The key of beacon proofs under the current secret (`None`: derive it again).
    beacon_key: Option<crate::auth::BeaconKey>,
    /// Entries of `seen` that are other systems.
    others_len: usize,
    /// No entry of `seen` expires before this.
    next_expire: MonoMs,
    /// When the last beacon sent in answer to a newcomer went out: at most one such extra
    /// beacon per `beacon_ms`.
    answered_at: Option<MonoMs>,
}

impl Discovery {
    /// Forgets servers not heard from for their time to live; whether any was forgotten.
    pub fn expire(&mut self, now: MonoMs) -> bool {
        if now < self.next_expire {
            return false;
        }
        let before = self.seen.len();
        let mut next = MonoMs(u64::MAX);
        let mut others_len = 0;
        self.seen.retain(|_, s| {
            let until = s.last_heard.plus_ms(s.ttl_ms);
            let keep = now < until;
            if keep {
                next = next.min(until);
                others_len += usize::from(s.other.is_some());
            }
            keep
        });
        self.next_expire = next;
        self.others_len = others_len;
        self.seen.len() != before
    }

    fn expires_by(&mut self, at: MonoMs) {
        self.next_expire = self.next_expire.min(at);
    }

    /// Members of this system heard by beacon.
    pub fn members_heard(&self) -> usize {
        self.seen.values().filter(|s| s.other.is_none()).count()
    }

    /// When a beacon of `server` in its run `boot` was last heard.
    pub fn beacon_heard(&self, server: ServerId, boot: u64) -> Option<MonoMs> {
        self.seen.get(&server).filter(|s| s.other.is_none() && s.boot == boot).map(|s| s.last_heard)
    }

    pub fn dial_succeeded(&mut self, addr: &PeerAddr) {
        self.dials.entry(addr.clone()).or_default().in_flight = false;
    }

    pub fn link_lost(&mut self, addr: &PeerAddr, now: MonoMs, t: &Timing) {
        let d = self.dials.entry(addr.clone()).or_default();
        d.in_flight = false;
        d.backoff_ms = (d.backoff_ms * 2).clamp(t.dial_backoff_ms, t.dial_backoff_ms_max);
        d.next = now.plus_ms(d.backoff_ms);
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
        self.beacon_key = None;
        // Membership of everyone heard is judged again against the new identity.
        self.seen.clear();
        self.others_len = 0;
    }

    /// Notes a server proven to hold our secret under another name (from a link's Hello).
    pub fn saw_other_system(
        &mut self,
        server: ServerId,
        system: SystemId,
        name: &SystemName,
        boot: u64,
        now: MonoMs,
        ttl_ms: u64,
    ) {
        let other = Box::new((system, name.clone(), NotMember::OtherName));
        self.note_other(server, boot, 0, other, now, ttl_ms);
    }

    /// Remembers a server of another system, within [`OTHER_SERVERS_MAX`].
    fn note_other(
        &mut self,
        server: ServerId,
        boot: u64,
        seq: u64,
        other: Box<(SystemId, SystemName, NotMember)>,
        now: MonoMs,
        ttl_ms: u64,
    ) {
        if !self.seen.contains_key(&server) && self.others_len >= OTHER_SERVERS_MAX {
            return;
        }
        let s = self.seen.entry(server).or_insert_with(|| Seen {
            boot,
            seq,
            first_heard: now,
            last_heard: now,
            ttl_ms,
            unrouted_since: None,
            other: None,
        });
        if s.other.is_none() {
            self.others_len += 1;
        }
        (s.boot, s.seq, s.last_heard, s.ttl_ms) = (boot, seq, now, ttl_ms);
        s.other = Some(other);
        self.expires_by(now.plus_ms(ttl_ms));
    }

    pub fn other_systems(&self) -> Vec<OtherSystem> {
        type Group<'a> = (SystemId, &'a SystemName, String);
        let mut by_system: BTreeMap<Group<'_>, Vec<ServerId>> = BTreeMap::new();
        for (server, s) in &self.seen {
            if let Some(other) = &s.other {
                by_system.entry((other.0, &other.1, other.2.reason())).or_default().push(*server);
            }
        }
        by_system
            .into_iter()
            .map(|((system, name, reason), servers)| OtherSystem {
                system,
                name: name.clone(),
                servers,
                reason,
            })
            .collect()
    }
}

impl Node {
    /// The key of beacon proofs under this server's secret, derived once.
    fn beacon_key(&mut self) -> crate::auth::BeaconKey {
        let secret = &self.identity.secret;
        self.discovery.beacon_key.get_or_insert_with(|| secret.beacon_key()).clone()
    }

    pub(super) fn send_beacon(&mut self) {
        let id = &self.identity;
        let mut beacon = self
            .discovery
            .beacon
            .get_or_insert_with(|| Beacon {
                version: PROTOCOL_VERSION,
                server: id.server,
                system: id.system,
                name: id.name.clone(),
                boot: self.boot,
                seq: 0,
                listen: self.config.listen.clone(),
                interval_ms: 0,
                proof: [0; 32],
            })
            .clone();
        self.discovery.beacon_seq += 1;
        beacon.seq = self.discovery.beacon_seq;
        beacon.interval_ms = u32::try_from(self.beacon_interval_ms()).unwrap_or(u32::MAX);
        beacon.proof = beacon.expected_proof(&self.beacon_key());
        let unicast = self.manual_addresses().into_iter().collect();
        self.outputs.push_back(Output::Beacon { beacon, unicast });
    }

    pub(super) fn on_beacon(&mut self, b: &Beacon) {
        if b.server == self.identity.server {
            return;
        }
        let now = self.now.mono;
        let ttl_ms = u64::from(b.interval_ms).clamp(100, 60_000) * 7 / 2;
        if b.version != PROTOCOL_VERSION {
            // Unauthenticated (its proof is of another format): listed, within the cap, so an
            // administrator sees why it does not join.
            let other = Box::new((b.system, b.name.clone(), NotMember::Protocol(b.version)));
            return self.discovery.note_other(b.server, b.boot, 0, other, now, ttl_ms);
        }
        let replayed = self
            .discovery
            .seen
            .get(&b.server)
            .is_some_and(|s| s.other.is_none() && s.boot == b.boot && b.seq <= s.seq);
        if replayed {
            // Seen already (a replay or a duplicate): it proves nothing about the sender now,
            // and costs no proof check.
            return;
        }
        let valid = mac_eq(&b.proof, &b.expected_proof(&self.beacon_key()));
        let id = &self.identity;
        if !valid {
            if b.system == id.system {
                // Claims our system without our secret: a forgery, not another system.
                return;
            }
            let other = Box::new((b.system, b.name.clone(), NotMember::OtherSecret));
            return self.discovery.note_other(b.server, b.boot, b.seq, other, now, ttl_ms);
        }
        let member = b.system == id.system || b.name == id.name;
        if !member {
            let other = Box::new((b.system, b.name.clone(), NotMember::OtherName));
            return self.discovery.note_other(b.server, b.boot, b.seq, other, now, ttl_ms);
        }
        let (first_heard, newcomer) = match self.discovery.seen.get_mut(&b.server) {
            Some(s) if s.other.is_none() => {
                if s.boot == b.boot && b.seq <= s.seq {
                    // A replay (or a duplicate): it proves nothing about the sender now.
                    return;
                }
                let rebooted = s.boot != b.boot;
                (s.boot, s.seq, s.last_heard, s.ttl_ms) = (b.boot, b.seq, now, ttl_ms);
                let first_heard = s.first_heard;
                self.discovery.expires_by(now.plus_ms(ttl_ms));
                if rebooted {
                    self.membership_changed();
                }
                (first_heard, rebooted)
            }
            _ => {
                if let Some(old) = self.discovery.seen.insert(
                    b.server,
                    Seen {
                        boot: b.boot,
                        seq: b.seq,
                        first_heard: now,
                        last_heard: now,
                        ttl_ms,
                        unrouted_since: None,
                        other: None,
                    },
                ) {
                    self.discovery.others_len -= usize::from(old.other.is_some());
                }
                self.discovery.expires_by(now.plus_ms(ttl_ms));
                self.membership_changed();
                // Count now: whom to link with depends on it.
                self.recount_system();
                (now, true)
            }
        };
        if self.peers.contains_key(&b.server) {
            return;
        }
        // A newcomer our answer cannot reach soon (answers are rate-limited) is dialled by
        // us whatever the ids say: it would learn of us only at our next beacon.
        let unanswered = newcomer && !self.answer_newcomer();
        // Of a mesh pair the lower id dials; the higher one too if no link came for a while
        // (the lower one may be unable to reach it). Any member left unreachable that long is
        // dialled as well, mesh pair or not: the mesh must stay connected.
        let waited = now >= first_heard.plus_ms(3 * self.config.timing.beacon_ms);
        let dial = if self.wants_link(b.server) {
            (self.identity.server < b.server || waited || unanswered) && !self.mesh_undecided()
        } else {
            // Unreachable for three beacon periods, not for the moment a route changes.
            let routed = self.route_to(b.server).is_some();
            let beacon_ms = self.config.timing.beacon_ms;
            let s = self.discovery.seen.get_mut(&b.server).expect("just seen");
            let since = if routed { None } else { Some(s.unrouted_since.unwrap_or(now)) };
            s.unrouted_since = since;
            since.is_some_and(|t| now >= t.plus_ms(3 * beacon_ms))
        };
        if dial {
            let own = &self.discovery.own_addrs;
            if let Some(addr) = b.listen.iter().find(|a| !own.contains(*a)).cloned() {
                self.request_dial(addr);
            }
        }
    }

    /// Answers a member heard for the first time (or in a new run) with a beacon at once,
    /// at most once per `beacon_ms`. A newcomer that started after our last beacon would
    /// otherwise wait for the next one (a second, or twenty once settled) to learn of us,
    /// and if it has the lower id, the link is its to dial.
    /// Whether it answered.
    fn answer_newcomer(&mut self) -> bool {
        let now = self.now.mono;
        let beacon_ms = self.config.timing.beacon_ms;
        if self.discovery.answered_at.is_some_and(|at| now < at.plus_ms(beacon_ms)) {
            return false;
        }
        self.discovery.answered_at = Some(now);
        self.send_beacon();
        true
    }

    fn request_dial(&mut self, addr: PeerAddr) {
        let now = self.now.mono;
        let d = self.discovery.dials.entry(addr.clone()).or_default();
        if d.in_flight || now < d.next {
            return;
        }
        d.in_flight = true;
        self.outputs.push_back(Output::Dial { addr, kind: super::ChannelKind::Member });
    }

    pub(super) fn on_dial_failed(&mut self, addr: &PeerAddr) {
        self.discovery.link_lost(addr, self.now.mono, &self.config.timing);
        self.merge_dial_failed(addr);
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

#[cfg(test)]
mod tests {
    use crate::instant::{MonoUs, WallMs};
    use crate::node::testing::{node, NOW};
    use crate::node::{Input, Node, Now, Output};
    use crate::wire::Beacon;

    /// `NOW` plus `ms`, on both clocks.
    fn at(ms: u64) -> Now {
        Now {
            mono: NOW.mono.plus_ms(ms),
            mono_us: MonoUs(NOW.mono_us.0 + ms * 1000),
            wall: WallMs(NOW.wall.0 + ms),
        }
    }

    fn drain(n: &mut Node) -> Vec<Output> {
        std::iter::from_fn(|| n.poll_output()).collect()
    }

    fn beacons(out: &[Output]) -> Vec<Beacon> {
        out.iter()
            .filter_map(|o| match o {
                Output::Beacon { beacon, .. } => Some(beacon.clone()),
                _ => None,
            })
            .collect()
    }

    /// `n` at time `now`, with whatever its timers did drained, and a fresh beacon of it.
    fn beacon_of(n: &mut Node, now: Now) -> Beacon {
        n.handle(now, Input::Tick);
        drain(n);
        n.send_beacon();
        beacons(&drain(n)).pop().expect("a beacon")
    }

    #[test]
    fn a_settled_server_answers_a_newcomers_beacon_at_once_and_the_lower_id_dials_at_once() {
        let (mut a, mut b) = (node("north", 1), node("north", 2));
        let now = at(60_000);
        a.handle(now, Input::Tick);
        drain(&mut a);
        assert!(a.settled(), "a is settled: its next beacon would be 20 s away");
        let newcomer = beacon_of(&mut b, now);
        a.handle(now, Input::Beacon(newcomer));
        let out_a = drain(&mut a);
        let answer = beacons(&out_a).pop().expect("a answers the newcomer at once");
        b.handle(now, Input::Beacon(answer));
        let out_b = drain(&mut b);
        let (lower_out, higher) =
            if a.identity.server < b.identity.server { (&out_a, &b) } else { (&out_b, &a) };
        let dialled = lower_out
            .iter()
            .any(|o| matches!(o, Output::Dial { addr, .. } if *addr == higher.config.listen[0]));
        assert!(dialled, "the lower id dials without waiting for a timer: {lower_out:?}");
    }

    #[test]
    fn newcomers_are_answered_with_at_most_one_extra_beacon_per_beacon_period_and_others_dialled() {
        let (mut a, mut b, mut c, mut d) =
            (node("north", 1), node("north", 2), node("north", 3), node("north", 4));
        let now = at(60_000);
        let period = a.config.timing.beacon_ms;
        a.handle(now, Input::Tick);
        drain(&mut a);
        a.handle(now, Input::Beacon(beacon_of(&mut b, now)));
        assert_eq!(beacons(&drain(&mut a)).len(), 1, "the first newcomer is answered");
        let soon = at(60_000 + period / 2);
        a.handle(soon, Input::Beacon(beacon_of(&mut c, soon)));
        let out = drain(&mut a);
        assert!(beacons(&out).is_empty(), "a second one within the period is not");
        let dialled = out
            .iter()
            .any(|o| matches!(o, Output::Dial { addr, .. } if *addr == c.config.listen[0]));
        assert!(dialled, "but is dialled at once, whichever id is lower: {out:?}");
        a.handle(soon, Input::Beacon(beacon_of(&mut b, soon)));
        assert!(beacons(&drain(&mut a)).is_empty(), "nor is a member heard before");
        let later = at(60_000 + period + period / 2);
        a.handle(later, Input::Tick);
        drain(&mut a);
        a.handle(later, Input::Beacon(beacon_of(&mut d, later)));
        assert_eq!(beacons(&drain(&mut a)).len(), 1, "a period later the next one is");
    }
}
