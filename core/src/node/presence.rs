//! Presence: since when each server has been reachable, and when it was last heard of once
//! it is not.
//!
//! A server is reachable while some route reaches it (see `routing`), so a single broken link
//! or a neighbour's stalled loop does not make it look dead: every neighbour must lose it.
//! When the last route goes, the server was last heard at the latest moment anyone vouched for
//! it: a neighbour's last message from it, carried in route withdrawals as an age
//! (`heard_ago_ms`), so that servers far from the dead one date its death as its neighbours
//! do and the hold time overlaps detection instead of following it.

use super::Node;
use crate::ids::ServerId;
use crate::wire::ServerStatus;
use std::collections::{BTreeMap, BTreeSet};

/// What this server knows of another's presence in this run.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// Monotonic ms since when a route has reached it, while one does.
    pub reachable_since_ms: Option<u64>,
    /// Monotonic ms at which it was last heard of, once unreachable.
    pub last_heard_ms: u64,
    /// Whether `last_heard_ms` is someone's word (a closed link's last message, a withdrawal's
    /// age) rather than the moment the last route here went. Only someone's word is passed on:
    /// a server that merely lost its route late (a route counting up through a loop) would
    /// otherwise vouch for the dead one "just now" and restart everyone's hold.
    vouched: bool,
    /// The latest "heard of at" among withdrawals and closed links, and when that evidence
    /// came; becomes `last_heard_ms` when the last route goes. Evidence older than a link's
    /// silence timeout while the server stayed reachable is stale (a cut link, not a death)
    /// and is dropped.
    evidence: Option<(u64, u64)>,
    /// Whether `evidence` includes another server's word (a route withdrawal), not only the
    /// last message of this server's own link to it.
    evidence_confirmed: bool,
    /// Monotonic ms at which its last route went, while no one else has confirmed the loss
    /// (this server's own link to it closed, and nobody's withdrawal said it was gone).
    unconfirmed_loss_ms: Option<u64>,
    /// What it last announced of itself.
    pub status: ServerStatus,
}

#[derive(Default)]
pub(super) struct Presence {
    pub seen: BTreeMap<ServerId, Seen>,
}

impl Node {
    /// Someone vouched for `server` at monotonic `at_ms` (a withdrawal's age, a closed link's
    /// last message).
    /// `confirmed`: the word is another server's (a withdrawal), not this server's own link.
    pub(super) fn presence_heard(&mut self, server: ServerId, at_ms: u64, confirmed: bool) {
        let now = self.now.mono_ms;
        let at_ms = at_ms.min(now);
        let unreachable = self.route_to(server).is_none();
        let seen = self.presence.seen.entry(server).or_default();
        if unreachable && seen.reachable_since_ms.is_none() && seen.last_heard_ms > 0 {
            if confirmed {
                seen.unconfirmed_loss_ms = None;
            }
            // Word that comes after the last route went (a neighbour that lost it later):
            // it dates the death better than the moment our route went, and is passed on once.
            // Later word only moves the date (each hop adds its transit, so passing every
            // change on would echo between neighbours).
            if seen.vouched {
                seen.last_heard_ms = seen.last_heard_ms.max(at_ms);
            } else {
                seen.last_heard_ms = at_ms;
                seen.vouched = true;
                self.vouch_onward(server);
            }
            self.recording_dirty();
            return;
        }
        seen.evidence = Some((seen.evidence.map_or(at_ms, |(e, _)| e.max(at_ms)), now));
        seen.evidence_confirmed |= confirmed;
    }

    /// When `server`'s last route went, if only this server's own link lost it so far.
    pub(super) fn unconfirmed_loss_ms(&self, server: ServerId) -> Option<u64> {
        if self.route_to(server).is_some() {
            return None;
        }
        self.presence.seen.get(&server).and_then(|s| s.unconfirmed_loss_ms)
    }

    /// Passes this server's word of when `server` was last heard to the neighbours at the next
    /// route flush, also to those that got a withdrawal without it.
    fn vouch_onward(&mut self, server: ServerId) {
        self.routing.vouch_pending.insert(server);
        self.routes_changed();
    }

    /// The routes changed from reaching `before` to reaching what `routing` holds now.
    pub(super) fn reachability_changed(&mut self, before: &BTreeSet<ServerId>) {
        let now = self.now.mono_ms;
        let silence_ms = self.config.timing.link_silence_ms;
        let routes = self.routes().clone();
        for server in routes.keys() {
            let status = self.routing_status(*server);
            let seen = self.presence.seen.entry(*server).or_default();
            seen.reachable_since_ms.get_or_insert(now);
            seen.unconfirmed_loss_ms = None;
            seen.evidence = seen.evidence.filter(|(_, came)| now <= came + silence_ms);
            if seen.evidence.is_none() {
                seen.evidence_confirmed = false;
            }
            seen.status = status;
        }
        let mut vouched = Vec::new();
        for server in before.iter().filter(|s| !routes.contains_key(s)) {
            let seen = self.presence.seen.entry(*server).or_default();
            let since = seen.reachable_since_ms.take();
            let confirmed = std::mem::take(&mut seen.evidence_confirmed);
            seen.unconfirmed_loss_ms = None;
            match seen.evidence.take() {
                Some((at, _)) => {
                    seen.unconfirmed_loss_ms = (!confirmed).then_some(now);
                    seen.last_heard_ms = at.min(now);
                    seen.vouched = true;
                    vouched.push(*server);
                }
                // A route back for less than a link's silence timeout, without word since, is
                // a ghost (a route counting up through a loop): the earlier word still dates
                // the death.
                None if seen.vouched && since.is_some_and(|s| now < s + silence_ms) => {}
                None => {
                    seen.last_heard_ms = now;
                    seen.vouched = false;
                }
            }
        }
        for server in vouched {
            self.vouch_onward(server);
        }
        self.recording_dirty();
        self.time_recheck = true;
    }

    /// Keeps the remembered statuses of reachable servers current.
    pub(super) fn refresh_statuses(&mut self) {
        let routes: Vec<ServerId> = self.routes().keys().copied().collect();
        for server in routes {
            let status = self.routing_status(server);
            if let Some(seen) = self.presence.seen.get_mut(&server) {
                if seen.status != status {
                    seen.status = status;
                    self.recording_dirty();
                    self.time_recheck = true;
                }
            }
        }
    }

    /// Monotonic ms at which `server` was last heard of: now while it is reachable, this run's
    /// start if it has not been heard of since.
    pub(super) fn last_heard_ms(&self, server: ServerId) -> u64 {
        if server == self.identity.server || self.route_to(server).is_some() {
            return self.now.mono_ms;
        }
        self.presence
            .seen
            .get(&server)
            .map_or(self.started_ms, |s| s.last_heard_ms.max(self.started_ms))
    }

    /// When `server`, unreachable, was last heard of by someone's word (see `Seen::vouched`).
    pub(super) fn vouched_heard_ms(&self, server: ServerId) -> Option<u64> {
        if self.route_to(server).is_some() {
            return None;
        }
        let seen = self.presence.seen.get(&server)?;
        seen.vouched.then(|| seen.last_heard_ms.max(self.started_ms))
    }

    /// Monotonic ms since when `server` has been reachable without a break.
    pub(super) fn reachable_since_ms(&self, server: ServerId) -> Option<u64> {
        if server == self.identity.server {
            return Some(self.started_ms);
        }
        self.presence.seen.get(&server).and_then(|s| s.reachable_since_ms)
    }

    /// What `server` last announced of itself, if it was ever heard of.
    pub(super) fn last_status(&self, server: ServerId) -> Option<ServerStatus> {
        if server == self.identity.server {
            return Some(self.own_status());
        }
        self.presence.seen.get(&server).map(|s| s.status)
    }
}
