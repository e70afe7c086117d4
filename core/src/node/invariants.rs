//! Invariants of one node, stated in code where the state lives: checked after every input in
//! debug builds and by the discrete-event simulator after every event (TigerBeetle's VOPR
//! does the same). Each concern is one function; all together cost O(links + routes +
//! origins + cameras recorded here), never O(store), so debug runs stay fast.

use super::link::Phase;
use super::routing::HOPS_MAX;
use super::{LinkId, Node};
use crate::hlc::Hlc;
use crate::ids::ServerId;
use crate::instant::MonoMs;
use crate::store::StoreViolation;
use thiserror::Error;

/// Outputs a node may hold for its driver beyond a per-link allowance. A driver drains after
/// every input, so a queue past the bound means a loop that emits without end.
const OUTPUTS_BASE_MAX: usize = 4_096;
/// Outputs allowed per link on top of [`OUTPUTS_BASE_MAX`] (one input can send to every link).
const OUTPUTS_PER_LINK_MAX: usize = 64;

/// A broken invariant of the node of `server`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("server {server:?}: {what}")]
pub struct InvariantViolation {
    /// The server whose state is wrong.
    pub server: ServerId,
    /// What is wrong.
    pub what: Broken,
}

/// What a [`InvariantViolation`] found.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Broken {
    /// `peers` names a link that does not exist.
    #[error("peer {peer:?} maps to {link:?}, which is not open")]
    PeerLinkMissing {
        /// The peer.
        peer: ServerId,
        /// Its link.
        link: LinkId,
    },
    /// `peers` names a link that is not up with that peer.
    #[error("peer {peer:?} maps to {link:?}, which is up with {up:?}")]
    PeerLinkElsewhere {
        /// The peer.
        peer: ServerId,
        /// Its link.
        link: LinkId,
        /// Whom the link is up with (`None`: not up).
        up: Option<ServerId>,
    },
    /// A link is up with a peer but `peers` does not map the peer to it.
    #[error("{link:?} is up with {peer:?}, which maps to {mapped:?}")]
    UpLinkNotPeer {
        /// The link.
        link: LinkId,
        /// Its peer.
        peer: ServerId,
        /// The link `peers` names for that peer.
        mapped: Option<LinkId>,
    },
    /// A route leads through a server that is not a peer.
    #[error("route to {dest:?} goes via {via:?}, not a peer")]
    RouteViaNonPeer {
        /// Destination.
        dest: ServerId,
        /// First hop.
        via: ServerId,
    },
    /// A route is as long as routing allows or longer.
    #[error("route to {dest:?} has {hops} hops (limit {HOPS_MAX})")]
    RouteTooLong {
        /// Destination.
        dest: ServerId,
        /// Its length.
        hops: u8,
    },
    /// A direct peer is reached other than in one hop through itself.
    #[error("direct peer {peer:?} routed in {hops} hops via {via:?}")]
    PeerNotDirect {
        /// The peer.
        peer: ServerId,
        /// Route length.
        hops: u8,
        /// First hop.
        via: ServerId,
    },
    /// A route leads to this server itself.
    #[error("a route to itself")]
    RouteToSelf,
    /// The store's sequence vector is not a contiguous prefix.
    #[error("store: {0}")]
    Store(StoreViolation),
    /// The hybrid logical clock is behind a stamp the store holds.
    #[error("clock at {clock:?} is behind the stored stamp {stored:?}")]
    ClockBehindStore {
        /// The clock.
        clock: Hlc,
        /// The newest stored stamp.
        stored: Hlc,
    },
    /// This server records a camera its own assignment gives to another server (or none)
    /// after the assignment was computed.
    #[error("records {camera:?}, which its assignment gives to {assigned:?}")]
    RecordsUnassigned {
        /// The camera.
        camera: crate::ids::CameraId,
        /// Its recorder in the assignment.
        assigned: Option<ServerId>,
    },
    /// This server records a camera but its camera history shows no open span of it here:
    /// the history would say nobody records what this server records.
    #[error("records {camera:?} without an open span in the camera history")]
    RecordsWithoutOpenSpan {
        /// The camera.
        camera: crate::ids::CameraId,
    },
    /// A server counts as reachable by presence but has no route, or the other way round.
    #[error("presence of {server:?} disagrees with the routes")]
    PresenceStale {
        /// The server.
        server: ServerId,
    },
    /// More outputs wait for the driver than any input produces.
    #[error("{queued} outputs queued (bound {bound})")]
    OutputsUnbounded {
        /// Queue length.
        queued: usize,
        /// The bound.
        bound: usize,
    },
    /// After an input the next timer is not in the future: a driver would spin on it.
    #[error("timer {timer:?} at {} ms is not after now ({} ms)", due.0, now.0)]
    TimerNotAhead {
        /// The timer.
        timer: super::Timer,
        /// When the node asks to be woken.
        due: MonoMs,
        /// The node's monotonic time.
        now: MonoMs,
    },
}

impl Node {
    /// Checks every invariant of this node's state; the first broken one is returned.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_peers()
            .and_then(|()| self.check_routes())
            .and_then(|()| self.check_store())
            .and_then(|()| self.check_clock())
            .and_then(|()| self.check_outputs())
            .and_then(|()| self.check_recording())
            .and_then(|()| self.check_presence())
            .and_then(|()| self.check_timer())
            .map_err(|what| InvariantViolation { server: self.identity.server, what })
    }

    /// In debug builds, panics on a broken invariant: called after every input. System time
    /// checks its own (it never goes back; its window and rates stay in bounds).
    pub(super) fn debug_check_invariants(&self) {
        #[cfg(debug_assertions)]
        {
            if let Err(v) = self.check_invariants() {
                panic!("invariant broken: {v}");
            }
            self.time.clock.check_invariants();
        }
    }

    /// Every timer that fell due has run and rearmed itself: the earliest is ahead of now
    /// (once the first tick, due the moment the node starts, has run). A timer left in the
    /// past makes a driver spin without time passing.
    fn check_timer(&self) -> Result<(), Broken> {
        let now = self.now.mono;
        if self.next_tick == self.started {
            // The first tick, due the moment the node starts, has not run yet.
            return Ok(());
        }
        for (timer, due) in self.timers() {
            if let Some(due) = due.filter(|due| *due <= now) {
                return Err(Broken::TimerNotAhead { timer, due, now });
            }
        }
        Ok(())
    }

    /// Once assigned, this server records exactly the cameras its assignment gives it.
    fn check_recording(&self) -> Result<(), Broken> {
        if self.recording_pending() {
            return Ok(());
        }
        let me = self.identity.server;
        for &camera in self.recording_here().keys() {
            let assigned = self.recorder_of(camera);
            if assigned != Some(me) {
                return Err(Broken::RecordsUnassigned { camera, assigned });
            }
            if !self.open_spans(camera).iter().any(|(server, _)| *server == me) {
                return Err(Broken::RecordsWithoutOpenSpan { camera });
            }
        }
        Ok(())
    }

    /// Presence agrees with the routes: a server is reachable since some time exactly while a
    /// route reaches it.
    fn check_presence(&self) -> Result<(), Broken> {
        if self.routing.stale {
            return Ok(());
        }
        for (&server, seen) in &self.presence.seen {
            if seen.reachable_since.is_some() != self.routing.routes.contains_key(&server) {
                return Err(Broken::PresenceStale { server });
            }
        }
        Ok(())
    }

    /// `peers` and the links agree: each peer's link is open and up with it, and every up
    /// link is its peer's link.
    fn check_peers(&self) -> Result<(), Broken> {
        for (&peer, &link) in &self.peers {
            let l = self.links.get(&link).ok_or(Broken::PeerLinkMissing { peer, link })?;
            match l.phase {
                Phase::Up(up, _) if up == peer => {}
                Phase::Up(up, _) => {
                    return Err(Broken::PeerLinkElsewhere { peer, link, up: Some(up) })
                }
                _ => return Err(Broken::PeerLinkElsewhere { peer, link, up: None }),
            }
        }
        for (&link, l) in &self.links {
            if let Phase::Up(peer, _) = l.phase {
                let mapped = self.peers.get(&peer).copied();
                if mapped != Some(link) {
                    return Err(Broken::UpLinkNotPeer { link, peer, mapped });
                }
            }
        }
        Ok(())
    }

    /// Routes are short, lead through current peers, and reach a direct peer in one hop.
    /// While links changed and the table waits for its recomputation at the next flush
    /// (`routing.stale`), only the length bound holds.
    fn check_routes(&self) -> Result<(), Broken> {
        let me = self.identity.server;
        for (&dest, r) in &self.routing.routes {
            if dest == me {
                return Err(Broken::RouteToSelf);
            }
            if r.hops >= HOPS_MAX || r.hops == 0 {
                return Err(Broken::RouteTooLong { dest, hops: r.hops });
            }
        }
        if self.routing.stale {
            return Ok(());
        }
        for (&dest, r) in &self.routing.routes {
            if !self.peers.contains_key(&r.via) {
                return Err(Broken::RouteViaNonPeer { dest, via: r.via });
            }
        }
        for &peer in self.peers.keys() {
            match self.routing.routes.get(&peer) {
                Some(r) if r.hops == 1 && r.via == peer => {}
                Some(r) => return Err(Broken::PeerNotDirect { peer, hops: r.hops, via: r.via }),
                None => return Err(Broken::PeerNotDirect { peer, hops: 0, via: peer }),
            }
        }
        Ok(())
    }

    /// The store's vector is a contiguous prefix per origin.
    fn check_store(&self) -> Result<(), Broken> {
        self.store.check_invariants().map_err(Broken::Store)
    }

    /// The clock is at or ahead of every stored stamp, so a local write orders after everything
    /// this server has seen. A clock clamped at start (a poisoned stamp on disk) is exempt.
    fn check_clock(&self) -> Result<(), Broken> {
        let (clock, stored) = (self.clock.last(), self.store.hlc_max());
        if clock < stored && !self.clock_clamped {
            return Err(Broken::ClockBehindStore { clock, stored });
        }
        Ok(())
    }

    /// The output queue stays within what inputs can produce.
    fn check_outputs(&self) -> Result<(), Broken> {
        let bound = OUTPUTS_BASE_MAX + OUTPUTS_PER_LINK_MAX * self.links.len();
        if self.outputs.len() > bound {
            return Err(Broken::OutputsUnbounded { queued: self.outputs.len(), bound });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{node, NOW};
    use crate::node::{Command, CommandId, Input};
    use crate::resources::{Key, Value};

    #[test]
    fn a_fresh_node_with_writes_keeps_every_invariant() {
        let mut n = node("north", 1);
        let key = Key::Setting { system: n.identity.system, name: "a".into() };
        let put = Command::Put { key, value: Value::Setting("1".into()) };
        n.handle(NOW, Input::Command { id: CommandId(1), cmd: put });
        assert_eq!(n.check_invariants(), Ok(()));
    }

    #[test]
    fn a_peer_without_its_link_is_reported_naming_the_server() {
        let mut n = node("north", 1);
        n.peers.insert(ServerId(9), LinkId(77));
        let v = n.check_invariants().unwrap_err();
        assert_eq!(v.server, n.identity.server);
        assert_eq!(v.what, Broken::PeerLinkMissing { peer: ServerId(9), link: LinkId(77) });
    }

    #[test]
    fn a_route_via_a_server_that_is_not_a_peer_is_reported() {
        let mut n = node("north", 1);
        let route = crate::node::routing::Route { hops: 2, via: ServerId(5) };
        n.routing.routes.insert(ServerId(6), route);
        assert_eq!(
            n.check_invariants().unwrap_err().what,
            Broken::RouteViaNonPeer { dest: ServerId(6), via: ServerId(5) }
        );
    }

    #[test]
    fn a_clock_behind_the_store_is_reported() {
        let mut n = node("north", 1);
        let stored = n.store.hlc_max();
        n.clock = crate::hlc::HlcClock::default();
        assert_eq!(
            n.check_invariants().unwrap_err().what,
            Broken::ClockBehindStore { clock: Hlc::default(), stored }
        );
    }
}
