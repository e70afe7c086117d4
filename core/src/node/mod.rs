//! The server state machine: one [`Node`] per server, driven by [`Input`]s with the time passed
//! in, producing [`Output`]s for the driver to carry out.

mod admin;
mod discovery;
mod invariants;
mod licensing;
mod link;
mod media;
pub use media::MediaHop;
mod merge;
mod mesh;
mod presence;
mod recording;
mod routing;
mod sync;
#[cfg(test)]
mod testing;
mod time;
mod view;
pub use view::HistorySpan;
mod violation;

pub use admin::{Command, CommandError, CommandId, Keep, Reply};
pub use discovery::OtherSystem;
pub use invariants::{Broken, InvariantViolation};
pub use licensing::LicenseStatus;
pub use link::{ChannelInfo, ChannelKind, LinkId};
pub use routing::{Route, HOPS_MAX};
pub use time::{TimeSource, TimeStatus, TIME_PRIMARY_SETTING};
pub use violation::{MergeStep, Violation};

use crate::auth::{KdfParams, Secret};
use crate::hlc::HlcClock;
use crate::identity::Identity;
use crate::ids::{HardwareId, PeerAddr, ServerId, SystemId, SystemName};
use crate::instant::{MonoMs, MonoUs, WallMs};
use crate::keys::{PublicKey, StaticKeypair};
use crate::persist::{Loss, Record, Restored, Snapshot};
use crate::resources::{Key, MediaService, ServerRecord, Value};
use crate::store::{Store, Transaction};
use crate::wire::{Beacon, Message};
use link::Link;
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A reading of the server's clocks, passed in with every input.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Now {
    /// Monotonic time in ms (timers); always `mono_us.to_ms()`.
    pub mono: MonoMs,
    /// The same monotonic reading in µs, the base of receive stamps.
    pub mono_us: MonoUs,
    /// Wall-clock time (timestamps); may jump or be skewed.
    pub wall: WallMs,
}

/// Intervals and limits of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Period of beacons while membership changes, and of housekeeping.
    pub beacon_ms: u64,
    /// Period of beacons once nothing changed for `settle_ms`.
    pub beacon_idle_ms: u64,
    /// Quiet time after which membership counts as settled.
    pub settle_ms: u64,
    /// Links per server the mesh aims at; systems of up to `mesh_degree + 1` servers are a
    /// full mesh.
    pub mesh_degree: u32,
    /// A link that carried nothing (and whose peer sent no beacon) for this long is dead.
    pub link_silence_ms: u64,
    /// Ping period of a link whose peer's beacons arrive; such a link dies after three
    /// periods without traffic.
    pub keepalive_ms: u64,
    /// A handshake that did not finish within this is abandoned.
    pub handshake_ms: u64,
    /// Delay that gathers sync announcements and route changes into one message per link.
    pub announce_ms: u64,
    /// First wait before re-dialling an address that failed; doubles up to `dial_backoff_ms_max`.
    pub dial_backoff_ms: u64,
    /// Longest wait between dials of one address.
    pub dial_backoff_ms_max: u64,
    /// A pull unanswered for this long is asked of another peer.
    pub pull_timeout_ms: u64,
    /// Most transactions in one sync message.
    pub sync_batch: u32,
    /// How far ahead of this server's wall clock a peer's timestamp may be; a link carrying
    /// one further ahead is closed as a clock violation. Wide enough for the skews the hive
    /// survives (clocks an hour apart), narrow enough that one bad stamp cannot end time.
    pub clock_offset_ms_max: u64,
    /// How long a server may be silent (no route to it, nothing heard of it) before its
    /// cameras move to other servers.
    pub hold_ms: u64,
    /// How long a server must have been up before it takes cameras of failed servers.
    pub failover_min_uptime_ms: u64,
    /// How long a failed server must stay reachable before its cameras return to it.
    pub failover_stability_ms: u64,
    /// Period of time samples to the primary time server.
    pub time_poll_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            beacon_ms: 1_000,
            beacon_idle_ms: 20_000,
            settle_ms: 10_000,
            mesh_degree: 6,
            link_silence_ms: 3_500,
            keepalive_ms: 10_000,
            handshake_ms: 5_000,
            announce_ms: 20,
            dial_backoff_ms: 500,
            dial_backoff_ms_max: 5_000,
            pull_timeout_ms: 5_000,
            sync_batch: 512,
            clock_offset_ms_max: 24 * 3_600_000,
            hold_ms: 3_000,
            failover_min_uptime_ms: 10_000,
            failover_stability_ms: 30_000,
            time_poll_ms: 1_000,
        }
    }
}

/// How a server is set up; supplied by the shell from flags and config.
#[derive(Clone, Debug)]
pub struct Config {
    /// Human name of this server.
    pub server_name: String,
    /// System name used at first start.
    pub system_name: SystemName,
    /// System secret used at first start.
    pub secret: Secret,
    /// Link key pair used at first start (and by state written before link keys existed).
    pub link_key: StaticKeypair,
    /// Seed of the generator for the core's cryptography (OPAQUE logins): 32 bytes from the
    /// operating system in production, from the scenario's seed in simulation.
    pub entropy: [u8; 32],
    /// This machine's hardware id.
    pub hardware_id: HardwareId,
    /// Addresses this server accepts links on, as peers should dial them.
    pub listen: Vec<PeerAddr>,
    /// Addresses to dial and send beacons to beyond the LAN (other subnets, NAT).
    pub manual_peers: Vec<PeerAddr>,
    /// Public key that signs license keys.
    pub vendor_key: ed25519_dalek::VerifyingKey,
    /// Cost of password derivation.
    pub kdf: KdfParams,
    /// Whether this server takes cameras of failed servers.
    pub failover_enabled: bool,
    /// Most cameras this server records.
    pub max_cameras: u32,
    /// This server's RTSP service, published in its server record.
    pub media: Option<MediaService>,
    /// Protocol intervals.
    pub timing: Timing,
}

/// A timer of the node: what it wakes the node for ([`Node::timers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Beacons, link checks, dials, pull expiry and license checks, every `beacon_ms`.
    Housekeeping,
    /// Gathered route and sync announcements go out.
    Announce,
    /// Time sync: the next sample of the primary, or the end of the start-up window.
    TimeSync,
    /// Who records each camera is computed again (a changed view, or a hold, uptime or
    /// stability threshold passing).
    Recording,
    /// This server's minimum uptime for taking failover passes and is announced.
    FailoverReady,
}

/// Something that happened to the node: for the driver to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed; the node runs whatever timers are due.
    Tick,
    /// A beacon arrived.
    Beacon(Beacon),
    /// A link's secure channel is established: `dialed` is the address we dialled, or `None`
    /// for an accepted link. A member channel has proven the system secret.
    LinkOpened {
        /// Driver's handle for the link.
        link: LinkId,
        /// Address dialled, for outbound links.
        dialed: Option<PeerAddr>,
        /// What the channel's handshake established.
        channel: ChannelInfo,
    },
    /// A dial to `addr` failed.
    DialFailed {
        /// Address that could not be reached.
        addr: PeerAddr,
    },
    /// A link closed or broke.
    LinkClosed {
        /// The link.
        link: LinkId,
    },
    /// A message arrived on a link.
    Message {
        /// The link.
        link: LinkId,
        /// The message.
        msg: Message,
        /// Monotonic time (the base of [`Now::mono_us`]) at which the driver read the frame
        /// from the socket: not when the node got round to it (its loop awaits fsyncs), so
        /// round trips measured from it are the network's.
        received: MonoUs,
    },
    /// An administrator's or API client's command.
    Command {
        /// Handle to answer with.
        id: CommandId,
        /// The command.
        cmd: Command,
    },
    /// A sample of an external (NTP) time source, taken by the driver.
    ExternalTime(crate::timesync::TimeSample),
    /// The video plane asks neighbour `via`, which opened its link to this server, to dial a
    /// media channel back and open it with `token` (see [`MediaHop`]).
    AskMediaDial {
        /// The neighbour.
        via: ServerId,
        /// What the channel opens with, so the asker knows it for its own: the shell's, from
        /// the operating system's randomness.
        token: u128,
    },
}

/// What the node asks of its driver, in order. A `Persist` must be durable before any later
/// output is carried out: that is what makes an acknowledged change survive a crash.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Append these records to the log and sync it.
    Persist(Vec<Record>),
    /// Replace everything persisted by this snapshot (after a split).
    Snapshot(Box<Snapshot>),
    /// Send a message on a link.
    Send {
        /// Link.
        link: LinkId,
        /// Message.
        msg: Message,
    },
    /// Send a beacon by multicast and to each unicast address.
    Beacon {
        /// The beacon.
        beacon: Beacon,
        /// Manual addresses to send it to as well.
        unicast: Vec<PeerAddr>,
    },
    /// Open a link to an address with a channel of `kind`; answer with `LinkOpened` or
    /// `DialFailed`.
    Dial {
        /// Where.
        addr: PeerAddr,
        /// Member channel (proves the system secret) or merge channel.
        kind: ChannelKind,
    },
    /// Close a link.
    Close(LinkId),
    /// Answer to a command.
    Reply {
        /// The command.
        id: CommandId,
        /// Its outcome.
        result: Result<Reply, CommandError>,
    },
    /// Something worth logging.
    Event(Event),
    /// Start recording this camera: it falls to this server now.
    StartRecording {
        /// The camera.
        camera: crate::ids::CameraId,
    },
    /// Stop recording this camera: it falls to another server, or to none.
    StopRecording {
        /// The camera.
        camera: crate::ids::CameraId,
    },
    /// Dial a media channel to `peer` at `addr` and open it with `token`: the peer cannot dial
    /// this server (see [`MediaHop`]). The channel goes to the video plane, never to the node.
    DialMedia {
        /// Who asked.
        peer: ServerId,
        /// Where this server dialled the peer's link.
        addr: PeerAddr,
        /// What the channel opens with.
        token: u128,
    },
    /// The record of a camera this server records changed (its URLs, say): the recorder
    /// takes the new record. Who records it may change too; that comes as its own output.
    RecordedCameraChanged {
        /// The camera.
        camera: crate::ids::CameraId,
    },
}

/// Notable happenings, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A link to a member of this system is up.
    PeerUp(ServerId),
    /// A link to a member is down.
    PeerDown(ServerId),
    /// A server proved it is not of this system (wrong secret, other name).
    OtherSystem {
        /// The server.
        server: ServerId,
        /// Its system name.
        name: SystemName,
    },
    /// This server moved into another system or was renamed.
    IdentityChanged {
        /// System now.
        system: SystemId,
        /// Name now.
        name: SystemName,
    },
    /// A peer broke the protocol; the link was closed.
    ProtocolViolation {
        /// The link.
        link: LinkId,
        /// What it did.
        what: Violation,
    },
    /// Writes this server acknowledged may be missing (its log was damaged, or its data
    /// restored from a backup): it took a new write epoch, so its sequence numbers are never
    /// reused, and pulls from peers what they hold. With no peer known, nothing can be
    /// recovered from peers: what `loss` lists as lost is gone.
    WritesMayBeMissing {
        /// What was found.
        loss: Loss,
        /// The new write epoch.
        epoch: u64,
        /// Other servers in the replica plus manual peer addresses: where missing writes
        /// could come back from.
        peers_known: u64,
    },
    /// A server presented a link key other than the one the system pinned for it; the link
    /// was refused.
    KeyMismatch {
        /// The server id it claimed.
        server: ServerId,
        /// The key it presented.
        presented: PublicKey,
    },
    /// A peer's timestamp was beyond the allowed clock offset; the link was closed.
    ClockViolation {
        /// The link.
        link: LinkId,
        /// The stamp refused and the limit it broke.
        what: crate::hlc::ClockViolation,
    },
    /// A merge login for `user` failed (wrong password, unknown user, or a relayed channel).
    MergeLoginFailed {
        /// The login name tried.
        user: String,
        /// Failures in a row for that name.
        failures: u32,
    },
    /// The persisted clock was ahead of the wall clock by more than the allowed offset and
    /// was brought back.
    ClockClamped,
    /// System time stepped (the first sample of a run, or a correction forward beyond the
    /// slew range).
    TimeStepped {
        /// By how much, µs.
        by_us: i64,
        /// The server sampled (`None`: an external source).
        from: Option<ServerId>,
    },
    /// System time was ahead of the primary's beyond the slew range and runs slow until
    /// caught up; it never goes back.
    TimeCatchingDown {
        /// By how much, µs.
        by_us: u64,
        /// The server sampled (`None`: an external source).
        from: Option<ServerId>,
    },
    /// The primary time server changed.
    PrimaryTimeServer(ServerId),
}

/// One server's state machine.
pub struct Node {
    config: Config,
    identity: Identity,
    store: Store,
    clock: HlcClock,
    rng: ChaCha8Rng,
    /// Randomness for the core's cryptography, seeded from [`Config::entropy`].
    crypto_rng: ChaCha20Rng,
    now: Now,
    outputs: VecDeque<Output>,
    links: BTreeMap<LinkId, Link>,
    /// Up links by peer server.
    peers: BTreeMap<ServerId, LinkId>,
    discovery: discovery::Discovery,
    sync: sync::SyncState,
    routing: routing::Routing,
    merges: merge::MergeState,
    /// Random per start, carried in beacons and hellos.
    boot: u64,
    /// When housekeeping runs next.
    next_tick: MonoMs,
    /// When gathered announcements go out, if any wait.
    announce_at: Option<MonoMs>,
    /// When the next beacon goes out.
    next_beacon: MonoMs,
    /// When membership last changed (see `mesh`).
    changed_at: MonoMs,
    /// Servers of the system as last counted.
    mesh_n: u64,
    /// Server records or servers heard changed since the last count.
    mesh_dirty: bool,
    /// When this node started.
    started: MonoMs,
    /// Cameras, keys or membership changed since licenses were last checked.
    license_dirty: bool,
    /// Since when servers have been reachable and when they were last heard of.
    presence: presence::Presence,
    /// Who records which camera.
    recording: recording::Recording,
    /// System time.
    time: time::TimeState,
    /// When the message being handled was read from its socket.
    received: MonoUs,
    /// Routes, statuses or settings changed: elect the primary time server again.
    time_recheck: bool,
    /// The clock was clamped at start below stamps the store holds ([`Event::ClockClamped`]).
    clock_clamped: bool,
}

impl Node {
    /// A node from its configuration and whatever it found on disk, seeded for determinism.
    pub fn new(config: Config, restored: Restored, seed: u64, now: Now) -> Node {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut records = Vec::new();
        let (mut identity, mut store) = match restored.snapshot {
            Some(s) => (Some(s.identity), s.store),
            None => (None, Store::new()),
        };
        for record in restored.records {
            match record {
                Record::Identity(i) => identity = Some(i),
                Record::Txn(t) => {
                    store.apply(&t);
                }
                Record::Cover { origin, upto } => store.cover(origin, upto),
            }
        }
        let mut clock = HlcClock::starting_after(store.hlc_max());
        let mut events = Vec::new();
        let clock_clamped = clock.clamp(now.wall, config.timing.clock_offset_ms_max);
        if clock_clamped {
            events.push(Event::ClockClamped);
        }
        let identity = match identity {
            Some(mut identity) => {
                if restored.loss.is_some() {
                    // Sequence numbers after the damage may have reached peers: never reuse them.
                    identity.epoch = identity.epoch.max(now.wall.0).saturating_add(1);
                    records.push(Record::Identity(identity.clone()));
                }
                if identity.link_key.is_none() {
                    identity.link_key = Some(config.link_key.clone());
                    records.push(Record::Identity(identity.clone()));
                }
                if identity.name_stamp.wall_ms
                    <= now.wall.saturating_plus_ms(config.timing.clock_offset_ms_max).0
                {
                    clock.observe(identity.name_stamp);
                }
                identity
            }
            None => {
                let identity = Identity {
                    server: ServerId(rng.gen()),
                    epoch: 0,
                    system: SystemId::new(now.wall, rng.gen()),
                    name: config.system_name.clone(),
                    name_stamp: clock.tick(now.wall),
                    secret: config.secret.clone(),
                    link_key: Some(config.link_key.clone()),
                };
                records.push(Record::Identity(identity.clone()));
                identity
            }
        };
        let boot = rng.gen();
        // System time continues from the newest stamp this replica holds when the wall clock
        // is behind it (clamped above); a first sample steps it back if that was too far.
        let initial_ms = now.wall.0.max(clock.last().wall_ms);
        let crypto_rng = ChaCha20Rng::from_seed(config.entropy);
        let mut node = Node {
            crypto_rng,
            discovery: discovery::Discovery::default(),
            sync: sync::SyncState::default(),
            routing: routing::Routing::default(),
            merges: merge::MergeState::default(),
            config,
            identity,
            store,
            clock,
            rng,
            now,
            outputs: VecDeque::new(),
            links: BTreeMap::new(),
            peers: BTreeMap::new(),
            boot,
            next_tick: now.mono,
            announce_at: None,
            next_beacon: now.mono,
            changed_at: now.mono,
            mesh_n: 1,
            mesh_dirty: true,
            started: now.mono,
            license_dirty: true,
            presence: presence::Presence::default(),
            recording: recording::Recording::default(),
            time: time::TimeState::new(now.mono, initial_ms),
            received: now.mono_us,
            time_recheck: true,
            clock_clamped,
        };
        if !records.is_empty() {
            node.outputs.push_back(Output::Persist(records));
        }
        if let Some(loss) = restored.loss {
            let me = node.identity.server;
            let servers = node.servers().filter(|(s, _)| *s != me).count();
            let peers_known = (servers + node.manual_addresses().len()) as u64;
            let epoch = node.identity.epoch;
            node.event(Event::WritesMayBeMissing { loss, epoch, peers_known });
        }
        for e in events {
            node.event(e);
        }
        node.publish_own_server_record();
        node.close_own_stale_spans();
        node.recording_dirty();
        node
    }

    /// Feeds one input at time `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.advance_time(now);
        match input {
            Input::Tick => {}
            Input::Beacon(b) => self.on_beacon(&b),
            Input::LinkOpened { link, dialed, channel } => {
                self.on_link_opened(link, dialed, channel)
            }
            Input::DialFailed { addr } => self.on_dial_failed(&addr),
            Input::LinkClosed { link } => self.on_link_closed(link),
            Input::Message { link, msg, received } => {
                self.received = received;
                self.on_message(link, msg)
            }
            Input::Command { id, cmd } => self.on_command(id, cmd),
            Input::ExternalTime(sample) => self.on_external_time(sample),
            Input::AskMediaDial { via, token } => self.on_ask_media_dial(via, token),
        }
        self.run_timers();
        self.debug_check_invariants();
    }

    /// Feeds a beacon by reference: the cheap path for a simulator delivering one multicast
    /// beacon to many nodes.
    pub fn handle_beacon(&mut self, now: Now, beacon: &Beacon) {
        self.advance_time(now);
        self.on_beacon(beacon);
        self.run_timers();
        self.debug_check_invariants();
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Monotonic time at which the node wants a [`Input::Tick`]: the earliest of its timers.
    pub fn poll_timeout(&self) -> MonoMs {
        self.timers().into_iter().filter_map(|(_, at)| at).min().unwrap_or(self.next_tick)
    }

    /// Every timer of the node with the monotonic time it is due at (`None`: not armed).
    pub fn timers(&self) -> [(Timer, Option<MonoMs>); 5] {
        [
            (Timer::Housekeeping, Some(self.next_tick)),
            (Timer::Announce, self.announce_at),
            (Timer::TimeSync, self.time_due()),
            (Timer::Recording, self.recording_due()),
            (Timer::FailoverReady, self.failover_ready_due()),
        ]
    }

    /// The whole persistent state, for a periodic snapshot.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { identity: self.identity.clone(), store: self.store.clone() }
    }

    fn advance_time(&mut self, now: Now) {
        // Monotonic time never goes back, even if a caller errs.
        debug_assert_eq!(now.mono, now.mono_us.to_ms(), "one monotonic reading");
        self.now.mono = self.now.mono.max(now.mono);
        self.now.mono_us = self.now.mono_us.max(now.mono_us);
        self.now.wall = now.wall;
    }

    fn run_timers(&mut self) {
        let now = self.now.mono;
        if now >= self.next_tick {
            self.next_tick = now.plus_ms(self.config.timing.beacon_ms);
            self.recount_system();
            if now >= self.next_beacon {
                self.next_beacon = now.plus_ms(self.beacon_interval_ms());
                self.send_beacon();
            }
            self.check_links();
            self.prune_surplus_links();
            self.dial_due();
            self.mesh_dirty |= self.discovery.expire(now);
            self.expire_pulls();
            self.check_licenses();
            self.time_recheck = true;
        }
        if self.announce_at.is_some_and(|at| now >= at) {
            self.announce_at = None;
            self.flush_announcements();
        }
        if std::mem::take(&mut self.time_recheck) || self.time_due().is_some_and(|at| now >= at) {
            self.time_tick();
        }
        if self.failover_ready_due().is_some_and(|at| now >= at) {
            self.check_own_status();
        }
        if self.recording_due().is_some_and(|at| now >= at) {
            self.reassign();
        }
    }

    /// Asks for the gathered announcements to go out soon.
    fn schedule_announce(&mut self) {
        if self.announce_at.is_none() {
            self.announce_at = Some(self.now.mono.plus_ms(self.config.timing.announce_ms));
        }
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn send(&mut self, link: LinkId, msg: Message) {
        if let Some(l) = self.links.get_mut(&link) {
            l.last_tx = self.now.mono;
            self.outputs.push_back(Output::Send { link, msg });
        }
    }

    /// Writes `value` (or a tombstone) under `key` as a new local transaction: persisted,
    /// applied and pushed to every linked peer.
    fn write(&mut self, changes: Vec<(Key, Option<Value>)>) {
        if changes.is_empty() {
            return;
        }
        let txns = self.apply_local(changes);
        self.outputs.push_back(Output::Persist(txns.iter().cloned().map(Record::Txn).collect()));
        self.push_to_peers(txns);
    }

    /// Turns changes into this server's next transactions and applies them to the replica
    /// only; [`Node::write`] also persists and pushes them.
    fn apply_local(&mut self, changes: Vec<(Key, Option<Value>)>) -> Vec<Transaction> {
        let origin = self.identity.replica();
        let mut txns = Vec::with_capacity(changes.len());
        for (key, value) in changes {
            let txn = Transaction {
                origin,
                seq: self.store.highest(origin) + 1,
                hlc: self.clock.tick(self.now.wall),
                key,
                value,
            };
            self.store.apply(&txn);
            self.touched(&txn.key);
            txns.push(txn);
        }
        txns
    }

    /// Keeps this server's own record in the store up to date with its configuration: name,
    /// hardware and addresses always; the failover settings and time priority only at first
    /// start, since administrators change them in the replicated record from any server.
    fn publish_own_server_record(&mut self) {
        let key = Key::Server(self.identity.server);
        let (failover_enabled, max_cameras, time_priority) = match self.store.get(&key) {
            Some(Value::Server(r)) => (r.failover_enabled, r.max_cameras, r.time_priority),
            _ => (self.config.failover_enabled, self.config.max_cameras, 0),
        };
        let record = ServerRecord {
            name: self.config.server_name.clone(),
            hardware_id: self.config.hardware_id.clone(),
            addresses: self.config.listen.clone(),
            failover_enabled,
            max_cameras,
            time_priority,
            media: self.config.media,
        };
        if self.store.get(&key) != Some(&Value::Server(record.clone())) {
            self.write(vec![(key, Some(Value::Server(record)))]);
        }
        self.publish_own_link_key();
    }

    /// Pins this server's public link key in the store, unless it is pinned already.
    fn publish_own_link_key(&mut self) {
        let Some(pair) = &self.identity.link_key else { return };
        let value = Value::ServerKey(pair.public);
        let key = Key::ServerKey(self.identity.server);
        if self.store.get(&key) != Some(&value) {
            self.write(vec![(key, Some(value))]);
        }
    }

    /// The public link key the system pinned for `server`, if any.
    pub fn pinned_key(&self, server: ServerId) -> Option<PublicKey> {
        match self.store.get(&Key::ServerKey(server)) {
            Some(Value::ServerKey(k)) => Some(*k),
            _ => None,
        }
    }

    /// What the driver needs for a new link's handshake: this server's link key pair and the
    /// pre-shared key of member channels (derived from the current system secret).
    pub fn channel_keys(&self) -> (StaticKeypair, [u8; 32]) {
        let pair = self.identity.link_key.clone().unwrap_or_else(|| self.config.link_key.clone());
        (pair, self.identity.secret.noise_psk())
    }

    /// Notes a change under `key` for the checks that depend on it.
    fn touched(&mut self, key: &Key) {
        if matches!(key, Key::Camera(_) | Key::License(_) | Key::Server(_) | Key::Setting { .. }) {
            self.license_dirty = true;
        }
        if matches!(key, Key::Server(_)) {
            self.mesh_dirty = true;
        }
        if matches!(
            key,
            Key::Camera(_)
                | Key::License(_)
                | Key::Server(_)
                | Key::Setting { .. }
                | Key::CameraHistory { .. }
                | Key::LicenseShortfall
        ) {
            self.recording.changed(self.now.mono);
            self.time_recheck = true;
        }
        if let Key::Camera(camera) = key {
            if self.recording.records(*camera) {
                self.outputs.push_back(Output::RecordedCameraChanged { camera: *camera });
            }
        }
    }

    fn up_links(&self) -> Vec<LinkId> {
        self.peers.values().copied().collect()
    }

    fn manual_addresses(&self) -> BTreeSet<PeerAddr> {
        let manual = Key::ManualAddress(PeerAddr(String::new()))..Key::LicenseShortfall;
        let stored = self.store.range(manual).filter_map(|(k, _)| match k {
            Key::ManualAddress(a) => Some(a.clone()),
            _ => None,
        });
        self.config.manual_peers.iter().cloned().chain(stored).collect()
    }
}
