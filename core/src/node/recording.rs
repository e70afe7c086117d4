//! Who records each camera: the node's side of failover.
//!
//! Every server computes the same [`failover::assign`] from the replicated view and the
//! servers it can reach, and starts or stops recording the cameras that fall to it
//! ([`Output::StartRecording`], [`Output::StopRecording`]). The rules, in the order they
//! apply to a server S:
//! - S is *presumed alive* while a route reaches it, and for `hold_ms` after it was last
//!   heard of (see `presence`): nothing moves during a short silence.
//! - S's cameras are *displaced* when S is not presumed alive.
//! - A camera of S is *held elsewhere* while a taker T that is presumed alive has an open
//!   span of it in the camera history (T took it over). T keeps it (no other taker starts it,
//!   whatever the rendezvous hash says now) until T has reached S for
//!   `failover_stability_ms` without a break, then releases it (stops, closing its span);
//!   S records it again once it sees no other open span. So a bouncing server gets its
//!   cameras back only once it stays, S never records beside its taker, and after a partition
//!   heals each side's taken cameras go back the same way. Servers other than S and T judge
//!   "held" by their own view of S, which agrees with T's up to propagation.
//! - S *takes failover* when it is presumed alive, has failover enabled in its record, and
//!   announces itself `failover_ready`: it has run for `failover_min_uptime_ms` by its own
//!   monotonic clock. Announced as a flag with its routes rather than judged from its start in
//!   system time, so servers judge every taker alike even while their clocks still disagree.
//! - Cameras stopped by a license shortfall past its grace period are not recorded anywhere.
//!
//! Camera history records who recorded what: a start writes an open span, a stop closes it,
//! and a taker closes a dead server's open span at the time it was last heard of.

use super::{Node, Output};
use crate::failover::{self, CameraDemand, ServerState};
use crate::ids::{CameraId, ServerId};
use crate::instant::MonoMs;
use crate::resources::{FailoverPriority, HistoryRecord, Key, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct Recording {
    /// Cameras this server records, with the system time (ms) it started each.
    here: BTreeMap<CameraId, u64>,
    /// The last assignment of every camera.
    assignment: BTreeMap<CameraId, ServerId>,
    /// Since when the view has changed without a new assignment.
    dirty_since: Option<MonoMs>,
    /// When a hold, uptime or stability threshold next passes.
    due: Option<MonoMs>,
}

impl Recording {
    /// Whether this server records `camera`.
    pub(super) fn records(&self, camera: CameraId) -> bool {
        self.here.contains_key(&camera)
    }

    /// The view changed at `now`.
    pub fn changed(&mut self, now: MonoMs) {
        self.dirty_since.get_or_insert(now);
    }
}

impl Node {
    /// Something the assignment depends on changed: compute it again after `announce_ms`,
    /// which gathers a burst of changes (a bulk sync, a stream of API writes) into one pass.
    pub(super) fn recording_dirty(&mut self) {
        self.recording.changed(self.now.mono);
    }

    /// When the assignment must be computed again.
    pub(super) fn recording_due(&self) -> Option<MonoMs> {
        match (self.recording.dirty_since, self.recording.due) {
            (Some(since), due) => {
                let soon = since.plus_ms(self.config.timing.announce_ms);
                Some(due.map_or(soon, |d| d.min(soon)))
            }
            (None, due) => due,
        }
    }

    /// From when this server may take failover: `failover_min_uptime_ms` after it started.
    /// It announces the moment in its status (see `check_own_status`).
    pub(super) fn failover_ready_at(&self) -> MonoMs {
        self.started.plus_ms(self.config.timing.failover_min_uptime_ms)
    }

    /// When this server's readiness to take failover still has to flip and be announced.
    pub(super) fn failover_ready_due(&self) -> Option<MonoMs> {
        (!self.time.announced.failover_ready).then(|| self.failover_ready_at())
    }

    /// Whether the view changed since the last assignment.
    pub(super) fn recording_pending(&self) -> bool {
        self.recording.dirty_since.is_some()
    }

    /// Since when `server` has been reachable without a break, on this server's monotonic
    /// clock (this server: since it started).
    pub fn connected_since(&self, server: ServerId) -> Option<MonoMs> {
        self.reachable_since(server)
    }

    /// Cameras this server records now, with the system time it started each (ms).
    pub fn recording_here(&self) -> &BTreeMap<CameraId, u64> {
        &self.recording.here
    }

    /// The server recording `camera` now, as this server's view says.
    pub fn recorder_of(&self, camera: CameraId) -> Option<ServerId> {
        self.recording.assignment.get(&camera).copied()
    }

    /// Whether `server` is presumed alive: reachable, or heard of within the hold time.
    fn presumed_alive(&self, server: ServerId) -> bool {
        self.now.mono <= self.presumed_alive_until(server)
    }

    /// Until when `server` is presumed alive: `hold_ms` after it was last heard of, and at
    /// least a moment after its last route went if only this server's own link lost it (no
    /// one else confirmed it gone): a cut link is routed around by neighbours within that
    /// moment, and acting sooner would fail a live server over.
    fn presumed_alive_until(&self, server: ServerId) -> MonoMs {
        let held = self.last_heard(server).plus_ms(self.config.timing.hold_ms);
        match self.unconfirmed_loss(server) {
            Some(lost) => held.max(lost.plus_ms(self.reroute_grace_ms())),
            None => held,
        }
    }

    /// How long a loss that nobody confirmed waits for a route around it.
    fn reroute_grace_ms(&self) -> u64 {
        self.config.timing.beacon_ms / 2
    }

    /// The taker holding `camera` of `preferred` (see the module doc), and when the hold may
    /// end by the clock alone. With several holders (takers on both sides of a healed
    /// partition), the one that takes failover with the highest rendezvous score: every server
    /// that sees the same spans names the same one.
    fn held_by(
        &self,
        camera: CameraId,
        preferred: ServerId,
        states: &BTreeMap<ServerId, ServerState>,
    ) -> (Option<ServerId>, Option<MonoMs>) {
        let holder = self
            .open_spans(camera)
            .into_iter()
            .map(|(server, _)| server)
            .filter(|&server| server != preferred && self.presumed_alive(server))
            .max_by_key(|&server| {
                let takes = states.get(&server).is_some_and(|s| s.takes_failover);
                (takes, failover::rendezvous_score(camera, server), std::cmp::Reverse(server))
            });
        let Some(holder) = holder else {
            return (None, None);
        };
        if preferred == self.identity.server {
            // The preferred server defers to its taker until the taker lets go.
            return (Some(holder), None);
        }
        let stable_at = self
            .reachable_since(preferred)
            .map(|since| since.plus_ms(self.config.timing.failover_stability_ms));
        match stable_at {
            Some(at) if self.now.mono >= at => (None, None),
            Some(at) => (Some(holder), Some(at)),
            None => (Some(holder), None),
        }
    }

    /// Each server's state for the assignment, and the next monotonic time one changes by
    /// the clock alone.
    fn server_states(&self) -> (BTreeMap<ServerId, ServerState>, Option<MonoMs>) {
        let me = self.identity.server;
        let mut due: Option<MonoMs> = None;
        let mut due_at = |at: MonoMs| due = Some(due.map_or(at, |d: MonoMs| d.min(at)));
        let mut states = BTreeMap::new();
        for (server, record) in self.servers() {
            let reachable = server == me || self.route_to(server).is_some();
            let alive = self.presumed_alive(server);
            if !reachable && alive {
                due_at(self.presumed_alive_until(server).plus_ms(1));
            }
            let online = alive;
            let ready = self.last_status(server).is_some_and(|s| s.failover_ready);
            let takes_failover = online && record.failover_enabled && ready;
            states.insert(
                server,
                ServerState { online, takes_failover, max_cameras: record.max_cameras },
            );
        }
        (states, due)
    }

    /// Computes who records every camera, and starts or stops this server's share.
    pub(super) fn reassign(&mut self) {
        self.recording.dirty_since = None;
        if !self.time_settled() {
            // Nothing is recorded (or stamped in camera history) on provisional time.
            let at = self.now.mono.plus_ms(self.config.timing.announce_ms);
            self.recording.due = Some(at);
            return;
        }
        let (states, mut due) = self.server_states();
        let stopped: BTreeSet<CameraId> = self.license_status().stopped.into_iter().collect();
        let wanted: Vec<(CameraId, ServerId, FailoverPriority)> = self
            .cameras()
            .filter(|(id, c)| c.recording && !stopped.contains(id))
            .map(|(camera, c)| (camera, c.preferred, c.failover_priority))
            .collect();
        let mut demands = Vec::with_capacity(wanted.len());
        for (camera, preferred, priority) in wanted {
            let (held_by, until) = if priority == FailoverPriority::Never {
                (None, None)
            } else {
                self.held_by(camera, preferred, &states)
            };
            if let Some(at) = until {
                due = Some(due.map_or(at, |d| d.min(at)));
            }
            demands.push(CameraDemand { camera, preferred, priority, held_by });
        }
        let assignment = failover::assign(&states, &demands);
        let me = self.identity.server;
        let mine: BTreeSet<CameraId> =
            assignment.recorder.iter().filter(|(_, s)| **s == me).map(|(c, _)| *c).collect();
        let stop: Vec<CameraId> =
            self.recording.here.keys().filter(|c| !mine.contains(c)).copied().collect();
        let start: Vec<CameraId> =
            mine.iter().filter(|c| !self.recording.here.contains_key(c)).copied().collect();
        self.recording.assignment = assignment.recorder;
        self.recording.due = due;
        for camera in stop {
            self.stop_recording(camera);
        }
        for camera in start {
            self.start_recording(camera);
        }
        self.reopen_closed_spans();
    }

    /// Opens a new span for each camera this server still records whose open span another
    /// server closed (a taker that presumed this server dead closes its spans at the time it
    /// was last heard): the history then says again who records the camera, from now on.
    fn reopen_closed_spans(&mut self) {
        let me = self.identity.server;
        let closed: Vec<CameraId> = self
            .recording
            .here
            .keys()
            .copied()
            .filter(|c| !self.open_spans(*c).iter().any(|(server, _)| *server == me))
            .collect();
        if closed.is_empty() {
            return;
        }
        let now_sys = self.system_now_ms();
        let changes = closed
            .into_iter()
            .map(|camera| {
                let key = Key::CameraHistory { camera, server: me, start_ms: now_sys };
                (key, Some(Value::CameraHistory(HistoryRecord { end_ms: None })))
            })
            .collect();
        self.write(changes);
    }

    fn start_recording(&mut self, camera: CameraId) {
        let me = self.identity.server;
        let now_sys = self.system_now_ms();
        self.recording.here.insert(camera, now_sys);
        self.outputs.push_back(Output::StartRecording { camera });
        // Spans left open by servers that are gone end when they were last heard of.
        let mut changes = Vec::new();
        for (server, start_ms) in self.open_spans(camera) {
            if server != me && !self.presumed_alive(server) {
                let end_ms = self.system_at_ms(self.last_heard(server)).max(start_ms);
                let key = Key::CameraHistory { camera, server, start_ms };
                changes.push((
                    key,
                    Some(Value::CameraHistory(HistoryRecord { end_ms: Some(end_ms) })),
                ));
            }
        }
        let key = Key::CameraHistory { camera, server: me, start_ms: now_sys };
        changes.push((key, Some(Value::CameraHistory(HistoryRecord { end_ms: None }))));
        self.write(changes);
    }

    fn stop_recording(&mut self, camera: CameraId) {
        let me = self.identity.server;
        self.recording.here.remove(&camera);
        self.outputs.push_back(Output::StopRecording { camera });
        let now_sys = self.system_now_ms();
        let changes: Vec<_> = self
            .open_spans(camera)
            .into_iter()
            .filter(|(server, _)| *server == me)
            .map(|(server, start_ms)| {
                let key = Key::CameraHistory { camera, server, start_ms };
                let end = HistoryRecord { end_ms: Some(now_sys.max(start_ms)) };
                (key, Some(Value::CameraHistory(end)))
            })
            .collect();
        self.write(changes);
    }

    /// Spans of `camera`'s history still open, as `(server, start_ms)`.
    pub(super) fn open_spans(&self, camera: CameraId) -> Vec<(ServerId, u64)> {
        let from = Key::CameraHistory { camera, server: ServerId(0), start_ms: 0 };
        let to =
            Key::CameraHistory { camera: CameraId(camera.0 + 1), server: ServerId(0), start_ms: 0 };
        self.store
            .range(from..to)
            .filter_map(|(k, v)| match (k, v) {
                (
                    Key::CameraHistory { server, start_ms, .. },
                    Value::CameraHistory(HistoryRecord { end_ms: None }),
                ) => Some((*server, *start_ms)),
                _ => None,
            })
            .collect()
    }

    /// Closes the spans this server left open in an earlier run (it stopped without saying
    /// so), at the newest time its replica knows of.
    pub(super) fn close_own_stale_spans(&mut self) {
        let me = self.identity.server;
        let end_ms = self.store.hlc_max().wall_ms;
        let stale: Vec<_> = self
            .store
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (
                    Key::CameraHistory { server, start_ms, .. },
                    Value::CameraHistory(HistoryRecord { end_ms: None }),
                ) if *server == me => Some((k.clone(), *start_ms)),
                _ => None,
            })
            .collect();
        let changes = stale
            .into_iter()
            .map(|(k, start_ms)| {
                (
                    k,
                    Some(Value::CameraHistory(HistoryRecord {
                        end_ms: Some(end_ms.max(start_ms)),
                    })),
                )
            })
            .collect();
        self.write(changes);
    }
}

impl Node {
    /// One line on how this server sees `camera`'s recording: its preferred server, the
    /// assigned recorder, open history spans, whether it is held elsewhere, and the servers
    /// that take failover. For failure reports of the simulators.
    pub fn describe_recording(&self, camera: CameraId) -> String {
        let preferred = self.cameras().find(|(c, _)| *c == camera).map(|(_, c)| c.preferred);
        let (states, due) = self.server_states();
        let held = preferred.map(|p| self.held_by(camera, p, &states));
        format!(
            "{:?} at system {} ms: preferred {:?}, recorder {:?}, open spans {:?}, held (and until) {:?}, due {:?}, assignment due {:?}, takers {:?}",
            self.identity.server,
            self.system_peek_ms(),
            preferred,
            self.recorder_of(camera),
            self.open_spans(camera),
            held,
            due,
            self.recording_due(),
            states.iter().filter(|(_, s)| s.takes_failover).map(|(k, _)| *k).collect::<Vec<_>>(),
        ) + &format!(
            ", not taking (online, enabled, ready) {:?}",
            self.servers()
                .filter(|(s, _)| !states.get(s).is_some_and(|st| st.takes_failover))
                .map(|(s, r)| (
                    s,
                    states.get(&s).is_some_and(|st| st.online),
                    r.failover_enabled,
                    self.last_status(s).is_some_and(|st| st.failover_ready)
                ))
                .collect::<Vec<_>>()
        )
    }
}
