//! System time: one time for the whole hive, without touching any server's OS clock.
//!
//! Each server keeps a [`SystemClock`] (its monotonic clock plus an offset). The *primary time
//! server* is chosen from the view alike on every server: the one an administrator named in
//! the `time_primary` setting while it is online; otherwise servers taking their time from an
//! external NTP source first, then the highest `time_priority` of the server records, then the
//! smallest id. Every other server samples the primary NTP-style over the routes (a routed
//! request and reply, four timestamps, the receive times stamped by the driver at the socket)
//! once per `time_poll_ms`; the clock filters the samples and steps or slews (see
//! [`crate::timesync`]). A change of primary keeps each server's offset, so nobody jumps.

use super::{Event, Node};
use crate::ids::ServerId;
use crate::instant::{MonoMs, MonoUs};
use crate::resources::{Key, Value};
use crate::timesync::{Correction, SystemClock, SystemUs, TimeSample};
use crate::wire::{Message, Routed, RoutedBody, ServerStatus, ROUTED_TTL};
use serde::Serialize;
use std::collections::BTreeMap;

/// Name of the system setting that names the primary time server (a server id).
pub const TIME_PRIMARY_SETTING: &str = "time_primary";

/// Time requests awaiting their reply at once; older ones are forgotten.
const PENDING_MAX: usize = 8;

/// An external sample keeps a server "synced to an external source" this long, ms.
const EXTERNAL_FRESH_MS: u64 = 64_000;

/// Where a server's system time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "server")]
pub enum TimeSource {
    /// It is the primary and keeps its own clock.
    Own,
    /// It is the primary and follows an external (NTP) source.
    External,
    /// It follows the primary time server.
    Primary(ServerId),
}

/// A server's time as it reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimeStatus {
    /// System time now, ms since the Unix epoch.
    pub system_ms: u64,
    /// System time minus this machine's wall clock, ms: what the hive applies on top of it.
    pub offset_from_wall_ms: i64,
    /// Bound on the difference between this server's time and the primary's, µs.
    pub error_bound_us: u64,
    /// The primary time server.
    pub primary: ServerId,
    /// Where this server's time comes from.
    pub source: TimeSource,
    /// Whether it has synchronized (a server that has not yet runs on its provisional time).
    pub synced: bool,
}

pub(super) struct TimeState {
    pub clock: SystemClock,
    /// The primary sampled now (`Some(None)`: this server is the primary; `None`: not
    /// decided yet).
    primary: Option<Option<ServerId>>,
    /// When the primary is sampled next.
    next_poll: MonoMs,
    /// Requests sent: id → monotonic time sent.
    pending: BTreeMap<u64, MonoUs>,
    next_id: u64,
    /// When the last external sample was accepted.
    external_at: Option<MonoMs>,
    /// What this server announces of itself.
    pub announced: ServerStatus,
}

impl TimeState {
    /// A provisional clock reading system time `initial_ms` at `mono`.
    pub fn new(mono: MonoMs, initial_ms: u64) -> TimeState {
        let clock = SystemClock::new(mono.to_us(), SystemUs(initial_ms * 1000));
        TimeState {
            clock,
            primary: None,
            next_poll: mono,
            pending: BTreeMap::new(),
            next_id: 0,
            external_at: None,
            announced: ServerStatus {
                up_since_ms: initial_ms,
                external_time: false,
                failover_ready: false,
                stamp: crate::hlc::Hlc::default(),
            },
        }
    }
}

impl Node {
    /// System time now, ms: what the hive stamps (camera history, archives).
    pub fn system_now_ms(&mut self) -> u64 {
        let mono = self.now.mono_us;
        self.time.clock.now(mono).0 / 1000
    }

    /// System time at an earlier monotonic `mono` of this run, ms: now less the time since
    /// (the clock answers only for the present; its past was corrected since).
    pub(super) fn system_at_ms(&self, mono: MonoMs) -> u64 {
        self.system_peek_ms().saturating_sub(self.now.mono.saturating_since(mono))
    }

    /// System time now, ms, for stamps made outside the node (the API's camera creation).
    pub fn system_time_ms(&self) -> u64 {
        self.system_peek_ms()
    }

    /// System time now without recording the reading, ms.
    pub(super) fn system_peek_ms(&self) -> u64 {
        self.time.clock.peek(self.now.mono_us).0 / 1000
    }

    /// System time, µs, that this server's clock shows at monotonic `mono_us` (not before its
    /// last input): lets a simulator compare servers at one true instant.
    pub fn system_time_us_at(&self, mono_us: MonoUs) -> u64 {
        self.time.clock.peek(mono_us.max(self.now.mono_us)).0
    }

    /// This server's status as it announces it with its routes.
    pub(super) fn own_status(&self) -> ServerStatus {
        self.time.announced
    }

    /// The primary time server as this server's view elects it.
    pub fn primary_time_server(&self) -> ServerId {
        let online = self.online_servers();
        let named = self.setting(TIME_PRIMARY_SETTING).and_then(|v| v.parse::<ServerId>().ok());
        if let Some(named) = named.filter(|s| online.contains(s)) {
            return named;
        }
        let priority = |s: ServerId| match self.store.get(&Key::Server(s)) {
            Some(Value::Server(r)) => r.time_priority,
            _ => 0,
        };
        let external = |s: ServerId| self.last_status(s).is_some_and(|st| st.external_time);
        online
            .into_iter()
            .max_by_key(|&s| (external(s), priority(s), std::cmp::Reverse(s)))
            .unwrap_or(self.identity.server)
    }

    /// The time as this server reports it.
    pub fn time_status(&self) -> TimeStatus {
        let primary = self.primary_time_server();
        let mono = self.now.mono_us;
        let system_us = self.time.clock.peek(mono).0;
        let source = if primary != self.identity.server {
            TimeSource::Primary(primary)
        } else if self.time.announced.external_time {
            TimeSource::External
        } else {
            TimeSource::Own
        };
        TimeStatus {
            system_ms: system_us / 1000,
            offset_from_wall_ms: (system_us / 1000) as i64 - self.now.wall.0 as i64,
            error_bound_us: self.time.clock.error_bound_us(mono),
            primary,
            source,
            synced: self.time.clock.synced() || primary == self.identity.server,
        }
    }

    /// A sample of an external (NTP) source taken by the driver; followed while this server
    /// is the primary.
    pub(super) fn on_external_time(&mut self, sample: TimeSample) {
        self.time.external_at = Some(self.now.mono);
        if self.primary_time_server() == self.identity.server {
            let correction = self.time.clock.add_sample(sample, self.now.mono_us);
            self.time_corrected(correction, None);
        }
    }

    fn time_corrected(&mut self, correction: Correction, from: Option<ServerId>) {
        match correction {
            Correction::Step { by_us } => self.event(Event::TimeStepped { by_us, from }),
            Correction::CatchDown { by_us } => self.event(Event::TimeCatchingDown { by_us, from }),
            Correction::None | Correction::Slew => {}
        }
    }

    /// Runs time sync's timer: follows a change of primary, samples the primary, and keeps
    /// this server's announced status current.
    pub(super) fn time_tick(&mut self) {
        let now = self.now.mono;
        let primary = self.primary_time_server();
        let me = self.identity.server;
        let source = (primary != me).then_some(primary);
        // A server just started waits a little to hear of a primary before it keeps time on
        // its own: its first sample from a remote primary then steps its provisional time;
        // later changes of primary keep the offset (no jump).
        let startup = now < self.started.plus_ms(self.time_startup_ms());
        let decide = Some(source) != self.time.primary && !(source.is_none() && startup);
        if decide {
            if self.time.clock.synced() || source.is_none() {
                self.time.clock.set_source(source.is_none());
            }
            self.time.primary = Some(source);
            self.time.pending.clear();
            // A new primary is asked at once.
            self.time.next_poll = now;
            self.event(Event::PrimaryTimeServer(primary));
        }
        // The poll timer rearms even when there is no one to ask (a primary lost during the
        // start-up window): a timer left in the past would wake the node without end.
        if now >= self.time.next_poll {
            self.time.next_poll = now.plus_ms(self.config.timing.time_poll_ms);
            if let Some(primary) = source {
                self.request_time(primary);
            }
        }
        self.check_own_status();
    }

    /// When time sync wants a tick.
    pub(super) fn time_due(&self) -> Option<MonoMs> {
        match self.time.primary {
            None => Some(self.started.plus_ms(self.time_startup_ms())),
            Some(Some(_)) => Some(self.time.next_poll),
            Some(None) => None,
        }
    }

    /// How long a new server listens for a primary before keeping time itself.
    pub(super) fn time_startup_ms(&self) -> u64 {
        2 * self.config.timing.beacon_ms
    }

    /// Whether system time is settled enough to stamp history with: synced to a primary, or
    /// kept by this server as the primary.
    pub(super) fn time_settled(&self) -> bool {
        self.time.clock.synced()
    }

    fn request_time(&mut self, primary: ServerId) {
        self.time.next_id += 1;
        let id = self.time.next_id;
        if self.time.pending.len() >= PENDING_MAX {
            self.time.pending.pop_first();
        }
        let sent = self.now.mono_us;
        self.time.pending.insert(id, sent);
        self.send_routed(primary, RoutedBody::TimeRequest { id });
    }

    /// Re-announces this server's status when what it would say changed: its time source, its
    /// readiness to take failover, or its start in system time by more than a second (a step
    /// of its clock).
    pub(super) fn check_own_status(&mut self) {
        let external =
            self.time.external_at.is_some_and(|at| self.now.mono < at.plus_ms(EXTERNAL_FRESH_MS));
        let up_since_ms = self.system_at_ms(self.started);
        let failover_ready = self.failover_ready_at() <= self.now.mono;
        let announced = self.time.announced;
        if announced.external_time != external
            || announced.failover_ready != failover_ready
            || announced.up_since_ms.abs_diff(up_since_ms) > 1000
        {
            let stamp = self.clock.tick(self.now.wall);
            self.time.announced =
                ServerStatus { up_since_ms, external_time: external, failover_ready, stamp };
            self.routes_changed();
            self.recording_dirty();
        }
    }

    /// Sends `body` to `to` along the route.
    pub(super) fn send_routed(&mut self, to: ServerId, body: RoutedBody) {
        let msg = Routed { from: self.identity.server, to, ttl: ROUTED_TTL, body };
        self.forward_routed(msg);
    }

    fn forward_routed(&mut self, msg: Routed) {
        let Some(route) = self.route_to(msg.to) else { return };
        if let Some(&link) = self.peers.get(&route.via) {
            self.send(link, Message::Routed(msg));
        }
    }

    /// A routed message arrived on a member link.
    pub(super) fn on_routed(&mut self, mut msg: Routed) {
        if msg.to != self.identity.server {
            msg.ttl = msg.ttl.min(ROUTED_TTL).saturating_sub(1);
            if msg.ttl > 0 {
                self.forward_routed(msg);
            }
            return;
        }
        match msg.body {
            RoutedBody::TimeRequest { id } => {
                let received_us = self.time.clock.peek(self.received).0;
                let mono = self.now.mono_us;
                let sent_us = self.time.clock.now(mono).0;
                let error_us = self.time.clock.error_bound_us(mono);
                let body = RoutedBody::TimeReply { id, received_us, sent_us, error_us };
                self.send_routed(msg.from, body);
            }
            RoutedBody::TimeReply { id, received_us, sent_us, error_us } => {
                if self.time.primary != Some(Some(msg.from)) {
                    return;
                }
                let Some(sent) = self.time.pending.remove(&id) else { return };
                let sample = TimeSample {
                    sent,
                    peer_received: SystemUs(received_us),
                    peer_sent: SystemUs(sent_us),
                    received: self.received,
                    peer_error_us: error_us,
                };
                let correction = self.time.clock.add_sample(sample, self.now.mono_us);
                self.time_corrected(correction, Some(msg.from));
            }
        }
    }
}
