//! Who records each camera: the node's side of failover.
//!
//! Every server computes the same [`failover::assign`] from the replicated view and the
//! servers it can reach, and starts or stops recording the cameras that fall to it
//! ([`Output::StartRecording`], [`Output::StopRecording`]). The rules, in the order they
//! apply to a server S:
//! - S is *presumed alive* while a route reaches it, and for `hold_ms` after it was last
//!   heard of (see `presence`): nothing moves during a short silence.
//! - S's cameras are *displaced* when S is not presumed alive, or while the replicated
//!   `FailedOver(S)` record exists (unless S is this server and it reaches nobody: alone, a
//!   server records its own cameras). The lowest other online server writes that record when
//!   S is no longer presumed alive, and removes it once S has been reachable for
//!   `failover_stability_ms`: a bouncing server gets its cameras back only once it stays.
//! - S *takes failover* when it is presumed alive, not displaced, has failover enabled in its
//!   record, and has been up (by the `up_since_ms` it announces in system time, so everyone
//!   judges alike) for `failover_min_uptime_ms`.
//! - Cameras stopped by a license shortfall past its grace period are not recorded anywhere.
//!
//! Camera history records who recorded what: a start writes an open span, a stop closes it,
//! and a taker closes a dead server's open span at the time it was last heard of.

use super::{Node, Output};
use crate::failover::{self, CameraDemand, ServerState};
use crate::ids::{CameraId, ServerId};
use crate::resources::{HistoryRecord, Key, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub(super) struct Recording {
    /// Cameras this server records, with the system time (ms) it started each.
    here: BTreeMap<CameraId, u64>,
    /// The last assignment of every camera.
    assignment: BTreeMap<CameraId, ServerId>,
    /// The view changed since the last assignment.
    dirty: bool,
    /// Monotonic ms at which a hold, uptime or stability threshold next passes.
    due_ms: Option<u64>,
}

impl Recording {
    /// The replicated view changed.
    pub fn dirty_by_store(&mut self) {
        self.dirty = true;
    }
}

impl Node {
    /// Something the assignment depends on changed.
    pub(super) fn recording_dirty(&mut self) {
        self.recording.dirty = true;
    }

    /// When the assignment must be computed again though nothing changed.
    pub(super) fn recording_due_ms(&self) -> Option<u64> {
        if self.recording.dirty {
            Some(self.now.mono_ms)
        } else {
            self.recording.due_ms
        }
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
        self.now.mono_ms <= self.last_heard_ms(server) + self.config.timing.hold_ms
    }

    fn failed_over_record(&self, server: ServerId) -> Option<u64> {
        match self.store.get(&Key::FailedOver(server)) {
            Some(Value::FailedOver { since_ms }) => Some(*since_ms),
            _ => None,
        }
    }

    /// Each server's state for the assignment, and the next monotonic time one changes by
    /// the clock alone.
    fn server_states(&self) -> (BTreeMap<ServerId, ServerState>, Option<u64>) {
        let t = &self.config.timing;
        let me = self.identity.server;
        let now = self.now.mono_ms;
        let now_sys = self.system_peek_ms();
        let alone = self.routes().is_empty();
        let mut due: Option<u64> = None;
        let mut due_at = |at: u64| due = Some(due.map_or(at, |d: u64| d.min(at)));
        let mut states = BTreeMap::new();
        for (server, record) in self.servers() {
            let reachable = server == me || self.route_to(server).is_some();
            let alive = self.presumed_alive(server);
            if !reachable && alive {
                due_at(self.last_heard_ms(server) + t.hold_ms + 1);
            }
            let flagged = self.failed_over_record(server).is_some() && !(server == me && alone);
            let online = alive && !flagged;
            let up_since = self.last_status(server).map(|s| s.up_since_ms);
            let up_long_enough = up_since.is_some_and(|u| {
                let ready = u.saturating_add(t.failover_min_uptime_ms);
                if now_sys < ready {
                    due_at(now + (ready - now_sys));
                }
                now_sys >= ready
            });
            let takes_failover = online && record.failover_enabled && up_long_enough;
            states.insert(
                server,
                ServerState { online, takes_failover, max_cameras: record.max_cameras },
            );
        }
        (states, due)
    }

    /// Computes who records every camera, and starts or stops this server's share.
    pub(super) fn reassign(&mut self) {
        self.recording.dirty = false;
        let stable_due = self.keep_failover_records();
        let (states, due) = self.server_states();
        let due = match (due, stable_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let stopped: BTreeSet<CameraId> = self.license_status().stopped.into_iter().collect();
        let demands: Vec<CameraDemand> = self
            .cameras()
            .filter(|(id, c)| c.recording && !stopped.contains(id))
            .map(|(camera, c)| CameraDemand {
                camera,
                preferred: c.preferred,
                priority: c.failover_priority,
            })
            .collect();
        let assignment = failover::assign(&states, &demands);
        let me = self.identity.server;
        let mine: BTreeSet<CameraId> =
            assignment.recorder.iter().filter(|(_, s)| **s == me).map(|(c, _)| *c).collect();
        let stop: Vec<CameraId> =
            self.recording.here.keys().filter(|c| !mine.contains(c)).copied().collect();
        let start: Vec<CameraId> =
            mine.iter().filter(|c| !self.recording.here.contains_key(c)).copied().collect();
        self.recording.assignment = assignment.recorder;
        self.recording.due_ms = due;
        for camera in stop {
            self.stop_recording(camera);
        }
        for camera in start {
            self.start_recording(camera);
        }
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
                let end_ms = self.system_at_ms(self.last_heard_ms(server)).max(start_ms);
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
    fn open_spans(&self, camera: CameraId) -> Vec<(ServerId, u64)> {
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

    /// Writes and removes `FailedOver` records; only the lowest online server other than the
    /// one concerned does, so the system does not fill with concurrent copies of one fact.
    /// Returns when a record may next be removed.
    fn keep_failover_records(&mut self) -> Option<u64> {
        let t = self.config.timing.clone();
        let me = self.identity.server;
        let now = self.now.mono_ms;
        let online = self.online_servers();
        let writer_for = |s: ServerId| online.iter().find(|o| **o != s) == Some(&me);
        let mut changes = Vec::new();
        let mut due: Option<u64> = None;
        let servers: Vec<ServerId> = self.servers().map(|(s, _)| s).collect();
        for server in servers {
            let recorded = self.failed_over_record(server).is_some();
            if !writer_for(server) {
                continue;
            }
            if !recorded && self.ever_reached(server) && !self.presumed_alive(server) {
                let since_ms = self.system_at_ms(self.last_heard_ms(server));
                changes.push((Key::FailedOver(server), Some(Value::FailedOver { since_ms })));
            } else if recorded {
                match self.reachable_since_ms(server) {
                    Some(since) if now >= since + t.failover_stability_ms => {
                        changes.push((Key::FailedOver(server), None));
                    }
                    Some(since) => {
                        let at = since + t.failover_stability_ms;
                        due = Some(due.map_or(at, |d| d.min(at)));
                    }
                    None => {}
                }
            }
        }
        self.write(changes);
        due
    }
}
