//! Sync: new local writes are pushed to linked peers; everything else travels by pull. Peers
//! announce how far they cover each origin (`Have`); a replica that lags asks one peer at a
//! time per origin for the missing writes in bounded batches, so each write reaches each
//! server about once, and a partial mesh converges hop by hop.

use super::link::Phase;
use super::{LinkId, Node, Output, Violation};
use crate::ids::ServerId;
use crate::instant::MonoMs;
use crate::persist::Record;
use crate::store::{ReplicaId, Seq, Transaction};
use crate::wire::Message;
use std::collections::{BTreeMap, BTreeSet};

/// Pulls in flight on one link at most. Each is answered by one batch of writes, and the
/// answering server's link queues hold a bounded number of batches (the shell's bulk lane: 256)
/// before closing the link as a slow reader: a server lagging on many origins (a merge of
/// hundreds of servers) must not ask one peer for more than its queue holds.
pub const PULLS_PER_LINK_MAX: usize = 64;

/// Counters of sync traffic, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Transactions received from peers.
    pub txns_received: u64,
    /// Of those, the ones this replica did not have.
    pub txns_new: u64,
}

#[derive(Default)]
pub(super) struct SyncState {
    /// One outstanding pull per origin: the link asked and when to give up.
    inflight: BTreeMap<ReplicaId, (LinkId, MonoMs)>,
    /// Origins to consider pulling.
    want: BTreeSet<ReplicaId>,
    /// Origins whose coverage grew since the last announcement.
    dirty: BTreeSet<ReplicaId>,
    pub stats: SyncStats,
}

impl Node {
    pub(super) fn sync_link_up(&mut self, link: LinkId) {
        let covered: Vec<_> = self.store.vector().iter().map(|(o, s)| (*o, *s)).collect();
        if let Some(l) = self.links.get_mut(&link) {
            l.announced = self.store.vector().clone();
        }
        self.send(link, Message::Have { covered });
    }

    pub(super) fn sync_link_down(&mut self, link: LinkId) {
        let lost: Vec<_> =
            self.sync.inflight.iter().filter(|(_, (l, _))| *l == link).map(|(o, _)| *o).collect();
        for o in lost {
            self.sync.inflight.remove(&o);
            self.sync.want.insert(o);
        }
        self.schedule_pulls();
    }

    pub(super) fn push_to_peers(&mut self, txns: Vec<Transaction>) {
        let Some(last) = txns.last() else { return };
        let (origin, seq) = (last.origin, last.seq);
        let links = self.up_links();
        for link in &links {
            if let Some(l) = self.links.get_mut(link) {
                l.announced.insert(origin, seq);
            }
        }
        // One encoded message shared by all links would be cheaper; clones keep the driver simple.
        for link in links {
            self.send(link, Message::Push { txns: txns.clone() });
        }
    }

    pub(super) fn on_peer_message(&mut self, link: LinkId, peer: ServerId, msg: Message) {
        match msg {
            Message::Have { covered } => {
                for (o, s) in covered {
                    self.note_peer_covers(link, o, s);
                    if s > self.store.covered(o) {
                        self.sync.want.insert(o);
                    }
                }
                self.schedule_pulls();
            }
            Message::Pull { origin, after, limit } => {
                let limit = limit.clamp(1, self.config.timing.sync_batch) as usize;
                let (txns, upto) = self.store.writes_after(origin, after, limit);
                self.send(link, Message::Writes { origin, upto, txns });
            }
            Message::Writes { origin, upto, txns } => {
                if txns.iter().any(|t| t.origin != origin) {
                    return self.violation(link, Violation::WritesOfAnotherOrigin);
                }
                if self.sync.inflight.get(&origin).is_some_and(|(l, _)| *l == link) {
                    self.sync.inflight.remove(&origin);
                }
                self.apply_remote(link, txns, Some((origin, upto)));
                self.sync.want.insert(origin);
                self.schedule_pulls();
            }
            Message::Push { txns } => {
                if txns.iter().any(|t| t.origin.server != peer) {
                    return self.violation(link, Violation::PushOfAnotherServer);
                }
                self.apply_remote(link, txns, None);
            }
            Message::Reach { routes } => self.on_reach(link, routes),
            Message::Ping => {}
            Message::Routed(routed) => self.on_routed(routed),
            Message::DialMedia { token } => self.on_dial_media(link, peer, token),
            Message::Identity(change) => self.on_peer_identity(link, &change),
            other => self.violation(link, Violation::UnexpectedOnMemberLink(other.kind())),
        }
    }

    /// Applies writes from a peer; persists what is new and announces the progress.
    fn apply_remote(
        &mut self,
        link: LinkId,
        txns: Vec<Transaction>,
        cover: Option<(ReplicaId, Seq)>,
    ) {
        if let Some(bad) = txns.iter().find(|t| t.value.as_ref().is_some_and(|v| !v.fits(&t.key))) {
            return self.violation(link, Violation::ValueDoesNotFitKey(bad.key.clone()));
        }
        let limit_ms = self.now.wall.saturating_plus_ms(self.config.timing.clock_offset_ms_max).0;
        if let Some(t) = txns.iter().find(|t| t.hlc.wall_ms > limit_ms) {
            // Refusing just this one would stall its origin's sequence vector for good.
            let stamp = t.hlc;
            return self.refuse_clock(link, stamp);
        }
        let mut records = Vec::new();
        let mut grown = BTreeSet::new();
        self.sync.stats.txns_received += txns.len() as u64;
        for t in txns {
            let before = self.store.covered(t.origin);
            if self.store.apply(&t).is_new() {
                self.sync.stats.txns_new += 1;
                self.clock.observe(t.hlc); // within the bound: checked above
                self.touched(&t.key);
                if self.store.covered(t.origin) > before {
                    grown.insert(t.origin);
                }
                self.note_peer_covers(link, t.origin, t.seq);
                records.push(Record::Txn(t));
            }
        }
        if let Some((origin, upto)) = cover {
            self.note_peer_covers(link, origin, upto);
            if upto > self.store.covered(origin) {
                self.store.cover(origin, upto);
                records.push(Record::Cover { origin, upto });
                grown.insert(origin);
            }
        }
        if !records.is_empty() {
            self.outputs.push_back(Output::Persist(records));
        }
        if !grown.is_empty() {
            self.sync.dirty.extend(grown);
            self.schedule_announce();
        }
    }

    fn note_peer_covers(&mut self, link: LinkId, origin: ReplicaId, seq: Seq) {
        if let Some(l) = self.links.get_mut(&link) {
            let k = l.known.entry(origin).or_insert(0);
            *k = (*k).max(seq);
        }
    }

    /// Sends one pull per lagging origin that has none outstanding, at most
    /// [`PULLS_PER_LINK_MAX`] in flight on each link; the rest wait for answers.
    fn schedule_pulls(&mut self) {
        let want = std::mem::take(&mut self.sync.want);
        let me = self.identity.server.0;
        let mut in_flight: BTreeMap<LinkId, usize> = BTreeMap::new();
        for (link, _) in self.sync.inflight.values() {
            *in_flight.entry(*link).or_default() += 1;
        }
        let mut waiting = BTreeSet::new();
        for origin in want {
            if self.sync.inflight.contains_key(&origin) {
                continue;
            }
            let mine = self.store.covered(origin);
            let mut full = false;
            // The peer that covers most; among equals, a per-puller choice spreads the load.
            let best = self
                .links
                .iter()
                .filter(|(id, _)| {
                    let room = in_flight.get(id).copied().unwrap_or(0) < PULLS_PER_LINK_MAX;
                    full |= !room;
                    room
                })
                .filter_map(|(id, l)| match l.phase {
                    Phase::Up(peer, _) => {
                        let has = l.known.get(&origin).copied().unwrap_or(0);
                        (has > mine).then_some((
                            has,
                            std::cmp::Reverse((peer.0 ^ me).rotate_left(29)),
                            *id,
                        ))
                    }
                    _ => None,
                })
                .max();
            match best {
                Some((_, _, link)) => {
                    let deadline = self.now.mono.plus_ms(self.config.timing.pull_timeout_ms);
                    self.sync.inflight.insert(origin, (link, deadline));
                    *in_flight.entry(link).or_default() += 1;
                    let limit = self.config.timing.sync_batch;
                    self.send(link, Message::Pull { origin, after: mine, limit });
                }
                // A full link may be the one that has it: ask again when an answer comes.
                None if full => {
                    waiting.insert(origin);
                }
                None => {}
            }
        }
        self.sync.want.extend(waiting);
    }

    /// Gives up on pulls that went unanswered and asks again, possibly elsewhere.
    pub(super) fn expire_pulls(&mut self) {
        let now = self.now.mono;
        let late: Vec<_> =
            self.sync.inflight.iter().filter(|(_, (_, at))| now >= *at).map(|(o, _)| *o).collect();
        for o in late {
            self.sync.inflight.remove(&o);
            self.sync.want.insert(o);
        }
        self.schedule_pulls();
    }

    /// Tells each peer how far this replica now covers the origins that grew.
    pub(super) fn flush_announcements(&mut self) {
        self.flush_routes();
        // An origin still being pulled is announced once its pulls are done: peers that want
        // it can pull from the source meanwhile, and each intermediate step would cost every
        // peer a message.
        let (catching_up, dirty): (BTreeSet<_>, BTreeSet<_>) = std::mem::take(&mut self.sync.dirty)
            .into_iter()
            .partition(|o| self.sync.inflight.contains_key(o));
        if !catching_up.is_empty() {
            self.sync.dirty = catching_up;
            self.schedule_announce();
        }
        if dirty.is_empty() {
            return;
        }
        let me = self.identity.server;
        for link in self.up_links() {
            let l = self.links.get_mut(&link).expect("up link exists");
            let mut covered = Vec::new();
            for &o in &dirty {
                // A peer linked to the origin itself got its writes pushed directly; if that
                // link breaks, its routing update makes us announce after all (see `on_reach`).
                if o.server != me && l.reach.get(&o.server).map(|r| r.0) == Some(1) {
                    continue;
                }
                let mine = self.store.covered(o);
                let told = l
                    .known
                    .get(&o)
                    .copied()
                    .unwrap_or(0)
                    .max(l.announced.get(&o).copied().unwrap_or(0));
                if mine > told {
                    covered.push((o, mine));
                    l.announced.insert(o, mine);
                }
            }
            if !covered.is_empty() {
                self.send(link, Message::Have { covered });
            }
        }
    }

    /// Marks every origin of `server` for announcement.
    pub(super) fn announce_origins_of(&mut self, server: ServerId) {
        let origins = self
            .store
            .vector()
            .range(ReplicaId { server, epoch: 0 }..=ReplicaId { server, epoch: u64::MAX });
        self.sync.dirty.extend(origins.map(|(o, _)| *o));
        self.schedule_announce();
    }

    /// One line on how this replica syncs `origin`: how far it covers it, the pull in flight,
    /// whether it wants more, and per linked peer how far that peer covers it (known) and was
    /// told this replica covers it. For failure reports of the simulators.
    pub fn describe_sync(&self, origin: ReplicaId) -> String {
        let peers: Vec<_> = self
            .links
            .values()
            .filter_map(|l| match l.phase {
                Phase::Up(peer, _) => Some((
                    peer,
                    l.known.get(&origin).copied().unwrap_or(0),
                    l.announced.get(&origin).copied().unwrap_or(0),
                )),
                _ => None,
            })
            .collect();
        format!(
            "covers {}, in flight {:?}, wanted {}, dirty {}, peers (known, told) {:?}",
            self.store.covered(origin),
            self.sync.inflight.get(&origin),
            self.sync.want.contains(&origin),
            self.sync.dirty.contains(&origin),
            peers
        )
    }

    /// Counters of sync traffic.
    pub fn sync_stats(&self) -> SyncStats {
        self.sync.stats
    }

    /// Origins this replica knows it lacks writes of: pulls outstanding or waiting (sync lag).
    pub fn sync_pending_origins(&self) -> usize {
        self.sync.inflight.len() + self.sync.want.len()
    }

    /// Whether no pull is outstanding and nothing waits to be announced.
    pub fn sync_idle(&self) -> bool {
        self.sync.inflight.is_empty() && self.sync.dirty.is_empty() && self.sync.want.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::instant::MonoUs;
    use crate::keys::PublicKey;
    use crate::node::link::{ChannelInfo, ChannelKind};
    use crate::node::testing::{node, NOW};
    use crate::node::Input;

    /// Pulls `a` sends on `link`, drained from its outputs.
    fn pulls(a: &mut Node, link: LinkId) -> Vec<ReplicaId> {
        std::iter::from_fn(|| a.poll_output())
            .filter_map(|o| match o {
                Output::Send { link: l, msg: Message::Pull { origin, .. } } if l == link => {
                    Some(origin)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_server_lagging_on_many_origins_keeps_at_most_the_cap_of_pulls_in_flight_per_link() {
        let (mut a, b) = (node("north", 1), node("north", 2));
        let link = LinkId(7);
        let channel = ChannelInfo {
            kind: ChannelKind::Member,
            peer_key: PublicKey([2; 32]),
            handshake_hash: [3; 32],
        };
        a.handle(NOW, Input::LinkOpened { link, dialed: None, channel });
        let hello = Message::Hello(crate::wire::Hello { hlc: Hlc::default(), ..b.hello() });
        a.handle(NOW, Input::Message { link, msg: hello, received: MonoUs(0) });
        while a.poll_output().is_some() {}

        // The peer covers 300 origins this server has never heard of (a merge of many servers).
        let origins: Vec<ReplicaId> =
            (0..300u128).map(|i| ReplicaId { server: ServerId(1_000 + i), epoch: 0 }).collect();
        let covered = origins.iter().map(|o| (*o, 5)).collect();
        a.handle(NOW, Input::Message { link, msg: Message::Have { covered }, received: MonoUs(0) });
        let first = pulls(&mut a, link);
        assert_eq!(first.len(), PULLS_PER_LINK_MAX);

        // Each answer lets one more pull go, until every origin has been asked for.
        let mut asked: BTreeSet<ReplicaId> = first.iter().copied().collect();
        let mut open: Vec<ReplicaId> = first;
        while let Some(origin) = open.pop() {
            let writes = Message::Writes { origin, upto: 5, txns: vec![] };
            a.handle(NOW, Input::Message { link, msg: writes, received: MonoUs(0) });
            let next = pulls(&mut a, link);
            assert!(next.len() <= 1, "{} pulls for one answer", next.len());
            asked.extend(next.iter().copied());
            open.extend(next);
            assert!(a.sync.inflight.len() <= PULLS_PER_LINK_MAX);
        }
        assert_eq!(asked.len(), 300, "every lagging origin is pulled in the end");
        assert!(origins.iter().all(|o| a.store.covered(*o) == 5));
    }
}
