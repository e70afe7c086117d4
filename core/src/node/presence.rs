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
use crate::instant::MonoMs;
use crate::wire::ServerStatus;
use std::collections::{BTreeMap, BTreeSet};

/// What this server knows of another's presence in this run.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// Since when a route has reached it, while one does.
    pub reachable_since: Option<MonoMs>,
    /// When it was last heard of, once unreachable.
    pub last_heard: MonoMs,
    /// Whether `last_heard` is someone's word (a closed link's last message, a withdrawal's
    /// age) rather than the moment the last route here went. Only someone's word is passed on:
    /// a server that merely lost its route late (a route counting up through a loop) would
    /// otherwise vouch for the dead one "just now" and restart everyone's hold.
    vouched: bool,
    /// The latest "heard of at" among withdrawals and closed links, and when that evidence
    /// came; becomes `last_heard` when the last route goes. Evidence older than a link's
    /// silence timeout while the server stayed reachable is stale (a cut link, not a death)
    /// and is dropped.
    evidence: Option<(MonoMs, MonoMs)>,
    /// Whether `evidence` includes another server's word (a route withdrawal), not only the
    /// last message of this server's own link to it.
    evidence_confirmed: bool,
    /// When its last route went, while no one else has confirmed the loss (this server's own
    /// link to it closed, and nobody's withdrawal said it was gone).
    unconfirmed_loss: Option<MonoMs>,
    /// What it last announced of itself.
    pub status: ServerStatus,
}

#[derive(Default)]
pub(super) struct Presence {
    pub seen: BTreeMap<ServerId, Seen>,
}

impl Node {
    /// Someone vouched for `server` at `at` (a withdrawal's age, a closed link's last
    /// message).
    /// `confirmed`: the word is another server's (a withdrawal), not this server's own link.
    pub(super) fn presence_heard(&mut self, server: ServerId, at: MonoMs, confirmed: bool) {
        let now = self.now.mono;
        let at = at.min(now);
        let unreachable = self.route_to(server).is_none();
        let seen = self.presence.seen.entry(server).or_default();
        if unreachable && seen.reachable_since.is_none() && seen.last_heard > MonoMs(0) {
            if confirmed {
                seen.unconfirmed_loss = None;
            }
            // Word that comes after the last route went (a neighbour that lost it later):
            // it dates the death better than the moment our route went, and is passed on once.
            // Later word only moves the date (each hop adds its transit, so passing every
            // change on would echo between neighbours).
            if seen.vouched {
                seen.last_heard = seen.last_heard.max(at);
            } else {
                seen.last_heard = at;
                seen.vouched = true;
                self.vouch_onward(server);
            }
            self.recording_dirty();
            return;
        }
        seen.evidence = Some((seen.evidence.map_or(at, |(e, _)| e.max(at)), now));
        seen.evidence_confirmed |= confirmed;
    }

    /// When `server`'s last route went, if only this server's own link lost it so far.
    pub(super) fn unconfirmed_loss(&self, server: ServerId) -> Option<MonoMs> {
        if self.route_to(server).is_some() {
            return None;
        }
        self.presence.seen.get(&server).and_then(|s| s.unconfirmed_loss)
    }

    /// Passes this server's word of when `server` was last heard to the neighbours at the next
    /// route flush, also to those that got a withdrawal without it.
    fn vouch_onward(&mut self, server: ServerId) {
        self.routing.vouch_pending.insert(server);
        self.routes_changed();
    }

    /// The routes changed from reaching `before` to reaching what `routing` holds now.
    pub(super) fn reachability_changed(&mut self, before: &BTreeSet<ServerId>) {
        let now = self.now.mono;
        let silence_ms = self.config.timing.link_silence_ms;
        let routes = self.routes().clone();
        for server in routes.keys() {
            let status = self.routing_status(*server);
            let seen = self.presence.seen.entry(*server).or_default();
            seen.reachable_since.get_or_insert(now);
            seen.unconfirmed_loss = None;
            seen.evidence = seen.evidence.filter(|(_, came)| now <= came.plus_ms(silence_ms));
            if seen.evidence.is_none() {
                seen.evidence_confirmed = false;
            }
            seen.status = status;
        }
        let mut vouched = Vec::new();
        for server in before.iter().filter(|s| !routes.contains_key(s)) {
            let seen = self.presence.seen.entry(*server).or_default();
            let since = seen.reachable_since.take();
            let confirmed = std::mem::take(&mut seen.evidence_confirmed);
            seen.unconfirmed_loss = None;
            match seen.evidence.take() {
                Some((at, _)) => {
                    seen.unconfirmed_loss = (!confirmed).then_some(now);
                    seen.last_heard = at.min(now);
                    seen.vouched = true;
                    vouched.push(*server);
                }
                // A route back for less than a link's silence timeout, without word since, is
                // a ghost (a route counting up through a loop): the earlier word still dates
                // the death.
                None if seen.vouched && since.is_some_and(|s| now < s.plus_ms(silence_ms)) => {}
                None => {
                    seen.last_heard = now;
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

    /// When `server` was last heard of: now while it is reachable, this run's start if it
    /// has not been heard of since.
    pub(super) fn last_heard(&self, server: ServerId) -> MonoMs {
        if server == self.identity.server || self.route_to(server).is_some() {
            return self.now.mono;
        }
        self.presence.seen.get(&server).map_or(self.started, |s| s.last_heard.max(self.started))
    }

    /// When `server`, unreachable, was last heard of by someone's word (see `Seen::vouched`).
    pub(super) fn vouched_heard(&self, server: ServerId) -> Option<MonoMs> {
        if self.route_to(server).is_some() {
            return None;
        }
        let seen = self.presence.seen.get(&server)?;
        seen.vouched.then(|| seen.last_heard.max(self.started))
    }

    /// Since when `server` has been reachable without a break.
    pub(super) fn reachable_since(&self, server: ServerId) -> Option<MonoMs> {
        if server == self.identity.server {
            return Some(self.started);
        }
        self.presence.seen.get(&server).and_then(|s| s.reachable_since)
    }

    /// When `server`'s current run started, by the system time it announced, ms (the web
    /// UI's uptime); `None` before anything was heard of it.
    pub fn up_since_ms(&self, server: ServerId) -> Option<u64> {
        self.last_status(server).map(|s| s.up_since_ms).filter(|&ms| ms > 0)
    }

    /// What `server` last announced of itself, if it was ever heard of.
    pub(super) fn last_status(&self, server: ServerId) -> Option<ServerStatus> {
        if server == self.identity.server {
            return Some(self.own_status());
        }
        self.presence.seen.get(&server).map(|s| s.status)
    }
}
