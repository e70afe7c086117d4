//! The world of the discrete-event simulator: hosts, a virtual network and an event queue.

mod death;
mod loss;
mod parts;
mod stall;

use super::disk::Disk;
use crate::check::{self, Violation};
use crate::report::NodeReport;
use hive_core::auth::{KdfParams, Secret};
use hive_core::ids::{HardwareId, PeerAddr, SystemName};
use hive_core::instant::{MonoMs, MonoUs, WallMs};
use hive_core::keys::{PublicKey, StaticKeypair};
use hive_core::licenses::LicenseIssuer;
use hive_core::node::{
    ChannelInfo, ChannelKind, Command, CommandError, CommandId, Config, Input, LinkId, Node, Now,
    Output, Reply, Timing,
};
use hive_core::persist::Record;
use hive_core::store::{ReplicaId, Seq};
use hive_core::wire::{Beacon, Message};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;

/// Index of a host in the world.
pub type HostId = usize;

/// Seed of the license issuer used by simulations (its public key is every node's vendor key).
pub const VENDOR_SEED: [u8; 32] = [42; 32];

/// Network and protocol settings of a world.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// One-way latency of every link, ms.
    pub latency_ms: u64,
    /// Extra random latency per message, up to this, ms (TCP order is kept).
    pub jitter_ms: u64,
    /// Probability that a beacon datagram is lost.
    pub beacon_loss: f64,
    /// Time a dial to an unreachable address takes to fail, ms.
    pub connect_timeout_ms: u64,
    /// Protocol timing of every node.
    pub timing: Timing,
    /// Records after which a host's log is folded into a snapshot.
    pub compact_every: usize,
    /// Whether to encode every message to count bytes (costs time).
    pub measure_bytes: bool,
    /// Whether [`World::check`] also checks [`World::check_single_recorder`].
    pub check_single_recorder: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            latency_ms: 1,
            jitter_ms: 0,
            beacon_loss: 0.0,
            connect_timeout_ms: 1_000,
            timing: Timing::default(),
            compact_every: 10_000,
            measure_bytes: false,
            check_single_recorder: false,
        }
    }
}

/// Longest a camera may be recorded twice inside one connected part: one heartbeat interval
/// (1 s) plus the round of replication that tells the second recorder to stop.
pub const DOUBLE_RECORDING_MS_MAX: u64 = 1_500;

/// How one simulated server is set up.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// System name at first start.
    pub system_name: String,
    /// System secret at first start.
    pub secret: String,
    /// LAN segment: beacons reach only hosts of the same segment.
    pub segment: u32,
    /// Behind NAT: nobody can dial it or send it unsolicited datagrams.
    pub nat: bool,
    /// Wall-clock offset from true time, ms.
    pub clock_offset_ms: i64,
    /// Drift of the host's oscillator, parts per million: its monotonic and wall clocks both
    /// run this much fast (negative: slow) against true (simulated) time.
    pub drift_ppm: i64,
    /// Extra one-way delay of every link message this host sends, ms: with another host's
    /// default, an asymmetric path.
    pub uplink_delay_ms: u64,
    /// Hosts whose addresses it dials and sends beacons to.
    pub manual_peers: Vec<HostId>,
}

impl ServerSpec {
    /// A server of system `name` with secret `secret` on segment 0.
    pub fn new(name: &str, secret: &str) -> Self {
        ServerSpec {
            system_name: name.into(),
            secret: secret.into(),
            segment: 0,
            nat: false,
            clock_offset_ms: 0,
            drift_ppm: 0,
            uplink_delay_ms: 0,
            manual_peers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Timer { host: HostId, inc: u32 },
    Multicast { from: HostId, beacon: Rc<Beacon>, segment: u32 },
    Unicast { from: HostId, to: HostId, beacon: Rc<Beacon> },
    Deliver { link: LinkId, to: HostId, msg: Box<Message> },
    Opened { link: LinkId, host: HostId, inc: u32, dialed: Option<PeerAddr>, channel: ChannelInfo },
    DialFailed { host: HostId, inc: u32, addr: PeerAddr },
    Closed { link: LinkId, host: HostId },
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Host {
    spec: ServerSpec,
    addr: PeerAddr,
    seed: u64,
    node: Option<Node>,
    inc: u32,
    disk: Disk,
    timer_at: Option<u64>,
    /// Own writes acknowledged to a client: each must survive crashes.
    acked: Vec<(ReplicaId, Seq)>,
    /// Its log was damaged: acknowledged writes may be missing until peers resend them.
    recovering: bool,
    /// Highest own write made durable, per origin.
    durable_own: Option<(ReplicaId, Seq)>,
    /// Cameras it records, with the simulated time each started.
    recording: BTreeMap<hive_core::ids::CameraId, u64>,
}

struct SimLink {
    ends: [(HostId, u32); 2],
    /// Closed by an end, or an end's run is gone: nothing more is sent on it.
    broken: bool,
    last_at: [u64; 2],
    /// Per direction, what was sent while a partition cut it: TCP retransmits it, so it
    /// arrives, in order, once the cut heals (see `stall`).
    held: [Vec<Message>; 2],
    /// Per direction, whether the sender closed the link while the direction was cut: its FIN
    /// follows the held data.
    fin_held: [bool; 2],
}

/// Byte and message counters.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    /// Messages sent on links.
    pub messages: u64,
    /// Bytes of link messages (only with `measure_bytes`).
    pub bytes: u64,
    /// Bytes of messages carrying transactions (`Push`, `Writes`).
    pub txn_bytes: u64,
    /// Beacon datagrams delivered.
    pub beacons: u64,
    /// Events processed.
    pub events: u64,
    /// Bytes by message kind (only with `measure_bytes`).
    pub bytes_by_kind: BTreeMap<&'static str, u64>,
}

/// A simulated world.
pub struct World {
    cfg: WorldConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    hosts: Vec<Host>,
    by_addr: BTreeMap<PeerAddr, HostId>,
    segments: BTreeMap<u32, Vec<HostId>>,
    blocked: BTreeSet<(HostId, HostId)>,
    links: BTreeMap<LinkId, SimLink>,
    next_link: u64,
    next_command: u64,
    replies: BTreeMap<CommandId, Result<Reply, CommandError>>,
    pending: BTreeMap<CommandId, HostId>,
    rng: ChaCha8Rng,
    trace: u64,
    /// Network counters.
    pub stats: NetStats,
    issuer: LicenseIssuer,
    isolated: BTreeSet<HostId>,
    /// The first node invariant broken, found after the event that broke it.
    broken: Option<Violation>,
    /// Fraction of link messages late by a retransmission (see `loss`).
    link_loss: f64,
    /// Pairs of hosts recording a camera twice whose routes to each other work, since when
    /// (see `parts`); kept by the single-recorder check, which reads the world only.
    routes_work_since: RefCell<BTreeMap<(HostId, HostId), u64>>,
}

impl World {
    /// An empty world; everything random in it follows from `seed`.
    pub fn new(seed: u64, cfg: WorldConfig) -> World {
        World {
            cfg,
            now: 1_000_000,
            seq: 0,
            queue: BinaryHeap::new(),
            hosts: Vec::new(),
            by_addr: BTreeMap::new(),
            segments: BTreeMap::new(),
            blocked: BTreeSet::new(),
            links: BTreeMap::new(),
            next_link: 1,
            next_command: 1,
            replies: BTreeMap::new(),
            pending: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            trace: 0xcbf2_9ce4_8422_2325,
            stats: NetStats::default(),
            issuer: LicenseIssuer::from_seed(VENDOR_SEED),
            isolated: BTreeSet::new(),
            broken: None,
            routes_work_since: RefCell::new(BTreeMap::new()),
            link_loss: 0.0,
        }
    }

    /// Simulated true time, ms.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Adds and starts a server.
    pub fn add_server(&mut self, spec: ServerSpec) -> HostId {
        let id = self.hosts.len();
        let addr = PeerAddr(format!("10.{}.{}.{}:7001", spec.segment, id / 250, id % 250 + 1));
        self.by_addr.insert(addr.clone(), id);
        self.segments.entry(spec.segment).or_default().push(id);
        let seed = self.rng.gen();
        self.hosts.push(Host {
            spec,
            addr,
            seed,
            node: None,
            inc: 0,
            disk: Disk::default(),
            timer_at: None,
            acked: Vec::new(),
            recovering: false,
            durable_own: None,
            recording: BTreeMap::new(),
        });
        self.start(id);
        id
    }

    /// Marks a host as one that must never exchange data with anyone (wrong secret).
    pub fn isolate(&mut self, host: HostId) {
        self.isolated.insert(host);
    }

    fn config(&self, host: HostId) -> Config {
        let h = &self.hosts[host];
        Config {
            server_name: format!("server-{host}"),
            system_name: SystemName::new(h.spec.system_name.clone())
                .expect("valid system name in spec"),
            secret: Secret::from_text(&h.spec.secret),
            link_key: des_keypair(host),
            entropy: [host as u8; 32],
            hardware_id: HardwareId(format!("hw-{host}")),
            listen: vec![h.addr.clone()],
            manual_peers: h.spec.manual_peers.iter().map(|p| self.hosts[*p].addr.clone()).collect(),
            media: None,
            vendor_key: self.issuer.verifying_key(),
            kdf: KdfParams::CHEAP,
            failover_enabled: true,
            max_cameras: 256,
            timing: self.cfg.timing.clone(),
        }
    }

    fn clock(&self, host: HostId) -> Now {
        let s = &self.hosts[host].spec;
        let mono_us = self.mono_us_at(host, self.now);
        let mono = mono_us.to_ms();
        let wall = mono.0 as i64 + s.clock_offset_ms;
        Now { mono, mono_us, wall: WallMs(1_700_000_000_000u64.saturating_add_signed(wall)) }
    }

    /// `host`'s monotonic clock at simulated time `at_ms`: true time scaled by its drift.
    pub fn mono_us_at(&self, host: HostId, at_ms: u64) -> MonoUs {
        let drift_ppm = self.hosts[host].spec.drift_ppm;
        let true_us = i128::from(at_ms) * 1000;
        let us = true_us + true_us * i128::from(drift_ppm) / 1_000_000;
        MonoUs(u64::try_from(us.max(0)).unwrap_or(u64::MAX))
    }

    /// System time, µs, that running `host` shows now.
    pub fn system_time_us(&self, host: HostId) -> Option<u64> {
        let node = self.hosts[host].node.as_ref()?;
        Some(node.system_time_us_at(self.mono_us_at(host, self.now)))
    }

    /// The first simulated ms at which `host`'s monotonic clock reads `mono` or later.
    pub fn true_ms_at_mono(&self, host: HostId, mono: MonoMs) -> u64 {
        let drift_ppm = i128::from(self.hosts[host].spec.drift_ppm);
        let guess = i128::from(mono.0) * 1_000_000 / (1_000_000 + drift_ppm);
        let mut at = u64::try_from(guess.max(0)).unwrap_or(u64::MAX);
        while at > 0 && self.mono_us_at(host, at - 1).to_ms() >= mono {
            at -= 1;
        }
        while self.mono_us_at(host, at).to_ms() < mono {
            at += 1;
        }
        at
    }

    fn start(&mut self, host: HostId) {
        let config = self.config(host);
        let now = self.clock(host);
        let h = &mut self.hosts[host];
        h.inc += 1;
        h.timer_at = None;
        let restored = h.disk.restore();
        let seed = h.seed ^ u64::from(h.inc);
        h.node = Some(Node::new(config, restored, seed, now));
        self.check_node(host, "start");
        self.drain(host);
    }

    /// Checks the invariants of the node that just handled an event; the first broken one is
    /// kept for [`World::check`] with the time and the event.
    fn check_node(&mut self, host: HostId, event: &str) {
        if self.broken.is_some() {
            return;
        }
        let Some(node) = self.hosts[host].node.as_ref() else { return };
        if let Err(v) = node.check_invariants() {
            let at = self.now;
            self.broken = Some(Violation(format!("host {host} after {event} @{at}: {v}")));
        }
    }

    /// Crashes a host: it loses everything not on its disk, its links break.
    pub fn crash(&mut self, host: HostId) {
        let h = &mut self.hosts[host];
        h.node = None;
        h.inc += 1;
        // A dead server records nothing.
        h.recording.clear();
        for l in self.links.values_mut() {
            if l.ends.iter().any(|(e, _)| *e == host) {
                // Its own retransmissions die with it; its peers' reach no one.
                l.broken = true;
                l.held = Default::default();
                l.fin_held = [false; 2];
            }
        }
    }

    /// Cameras `host` records, with the simulated time each started.
    pub fn recording(&self, host: HostId) -> &BTreeMap<hive_core::ids::CameraId, u64> {
        &self.hosts[host].recording
    }

    /// Restarts a crashed host from its disk.
    pub fn restart(&mut self, host: HostId) {
        if self.hosts[host].node.is_none() {
            self.start(host);
        }
    }

    /// Whether a host is running.
    pub fn is_up(&self, host: HostId) -> bool {
        self.hosts[host].node.is_some()
    }

    /// Makes appends fail on a host's disk (the driver then stops the server: fail-stop).
    pub fn set_disk_full(&mut self, host: HostId, full: bool) {
        self.hosts[host].disk.full = full;
    }

    /// Damages one record of a crashed host's log, the one `at_fraction` of the way in; the
    /// server reads back every other record it may trust.
    pub fn damage_log(&mut self, host: HostId, at_fraction: f64) {
        let d = &mut self.hosts[host].disk;
        let at = (d.records.len() as f64 * at_fraction) as usize;
        d.damage(at);
        // The damaged record, if acknowledged, now lives only on peers.
        self.hosts[host].recovering = true;
    }

    /// Cuts both directions between two hosts.
    pub fn partition(&mut self, a: HostId, b: HostId) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    /// Cuts traffic from `from` to `to` only.
    pub fn partition_oneway(&mut self, from: HostId, to: HostId) {
        self.blocked.insert((from, to));
    }

    /// Restores both directions between two hosts.
    pub fn repair(&mut self, a: HostId, b: HostId) {
        self.blocked.remove(&(a, b));
        self.blocked.remove(&(b, a));
        self.release_held();
    }

    /// Splits the hosts into two sides that cannot reach each other.
    pub fn partition_sides(&mut self, side: &[HostId]) {
        let side: BTreeSet<_> = side.iter().copied().collect();
        for a in 0..self.hosts.len() {
            for b in 0..self.hosts.len() {
                if side.contains(&a) != side.contains(&b) {
                    self.blocked.insert((a, b));
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.release_held();
    }

    /// The node of a running host.
    pub fn node(&self, host: HostId) -> Option<&Node> {
        self.hosts[host].node.as_ref()
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the world has no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Hash of everything that happened: equal for two runs of one seed.
    pub fn trace(&self) -> u64 {
        self.trace
    }

    fn mix(&mut self, v: u64) {
        self.trace ^= v;
        self.trace = self.trace.wrapping_mul(0x100_0000_01b3);
    }

    /// Sends a command to a host now; its reply arrives through [`World::reply`].
    pub fn command(&mut self, host: HostId, cmd: Command) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.pending.insert(id, host);
        let now = self.clock(host);
        if let Some(node) = self.hosts[host].node.as_mut() {
            node.handle(now, Input::Command { id, cmd });
            self.check_node(host, "a command");
            self.drain(host);
        }
        id
    }

    /// The reply to a command, once it came.
    pub fn reply(&self, id: CommandId) -> Option<&Result<Reply, CommandError>> {
        self.replies.get(&id)
    }

    /// Issues a license of `channels` bound to a host's hardware and adds it through that host.
    pub fn add_license(&mut self, host: HostId, id: u128, channels: u32) -> CommandId {
        self.command(host, crate::fixtures::license(id, host, channels))
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, ev }));
    }

    fn latency(&mut self) -> u64 {
        let j = if self.cfg.jitter_ms > 0 { self.rng.gen_range(0..=self.cfg.jitter_ms) } else { 0 };
        self.cfg.latency_ms + j
    }

    fn reachable(&self, from: HostId, to: HostId) -> bool {
        !self.blocked.contains(&(from, to))
    }

    /// Carries out a host's outputs.
    fn drain(&mut self, host: HostId) {
        loop {
            let Some(node) = self.hosts[host].node.as_mut() else { return };
            let Some(out) = node.poll_output() else { break };
            self.output(host, out);
        }
        let Some(node) = self.hosts[host].node.as_ref() else { return };
        let at = self.true_ms_at_mono(host, node.poll_timeout()).max(self.now);
        if self.hosts[host].timer_at != Some(at) {
            self.hosts[host].timer_at = Some(at);
            let inc = self.hosts[host].inc;
            self.schedule(at, Ev::Timer { host, inc });
        }
    }

    fn output(&mut self, host: HostId, out: Output) {
        match out {
            Output::Persist(records) => {
                if self.hosts[host].disk.full {
                    // Fail-stop: a server that cannot make a change durable stops before
                    // acting on it, and restarts from what its disk holds.
                    self.mix(0xd15c);
                    self.crash(host);
                    return;
                }
                let h = &mut self.hosts[host];
                let own = h.node.as_ref().expect("running").identity().replica();
                for r in &records {
                    if let Record::Txn(t) = r {
                        if t.origin == own {
                            h.durable_own = Some((own, t.seq));
                        }
                    }
                }
                h.disk.records.extend(records);
                if h.disk.records.len() >= self.cfg.compact_every {
                    let snap = h.node.as_ref().expect("running").snapshot();
                    h.disk.compact(snap);
                }
            }
            Output::Snapshot(s) => {
                let own = s.identity.replica();
                let h = &mut self.hosts[host];
                h.durable_own = Some((own, s.store.highest(own)));
                h.disk.compact(*s);
            }
            Output::Send { link, msg } => self.send(host, link, msg),
            Output::Beacon { beacon, unicast } => {
                let beacon = Rc::new(beacon);
                let at = self.now + self.cfg.latency_ms;
                let segment = self.hosts[host].spec.segment;
                self.schedule(at, Ev::Multicast { from: host, beacon: beacon.clone(), segment });
                for addr in unicast {
                    if let Some(&to) = self.by_addr.get(&addr) {
                        if self.hosts[to].spec.segment != segment {
                            self.schedule(
                                at,
                                Ev::Unicast { from: host, to, beacon: beacon.clone() },
                            );
                        }
                    }
                }
            }
            Output::Dial { addr, kind } => self.dial(host, addr, kind),
            Output::Close(link) => self.close_link(host, link),
            Output::Reply { id, result } => {
                if let Ok(Reply::Split { .. }) = result {
                    // The server left its old system's data behind on purpose.
                    self.hosts[host].acked.clear();
                }
                let h = &mut self.hosts[host];
                if let (Ok(_), Some(durable)) = (&result, h.durable_own) {
                    h.acked.push(durable);
                }
                self.replies.insert(id, result);
            }
            Output::Event(_) => {}
            Output::StartRecording { camera } => {
                self.hosts[host].recording.insert(camera, self.now);
            }
            Output::StopRecording { camera } => {
                self.hosts[host].recording.remove(&camera);
            }
            // Video is not simulated at this level.
            Output::RecordedCameraChanged { .. } | Output::DialMedia { .. } => {}
        }
    }

    fn send(&mut self, host: HostId, link: LinkId, msg: Message) {
        let Some(l) = self.links.get_mut(&link) else { return };
        let dir = if l.ends[0].0 == host { 0 } else { 1 };
        let (to, to_inc) = l.ends[1 - dir];
        if l.broken {
            // Closed: its end's FIN (or silence, for a crashed run) tells the other.
            return;
        }
        if self.hosts[to].inc != to_inc {
            // The far end's run is gone. A restarted machine's kernel answers data of a
            // connection it no longer knows with a reset; a dead one says nothing.
            l.broken = true;
            if self.hosts[to].node.is_some() && self.reachable(host, to) && self.reachable(to, host)
            {
                let at = self.now + 2 * self.cfg.latency_ms;
                self.schedule(at, Ev::Closed { link, host });
            }
            return;
        }
        if self.blocked.contains(&(host, to)) {
            l.held[dir].push(msg);
            return;
        }
        self.stats.messages += 1;
        if self.cfg.measure_bytes {
            let n = msg.encode().len() as u64;
            self.stats.bytes += n;
            *self.stats.bytes_by_kind.entry(msg.kind()).or_default() += n;
            if matches!(msg, Message::Push { .. } | Message::Writes { .. }) {
                self.stats.txn_bytes += n;
            }
        }
        let lat =
            self.latency() + self.hosts[host].spec.uplink_delay_ms + self.retransmit_delay_ms();
        let l = self.links.get_mut(&link).expect("present");
        let at = (self.now + lat).max(l.last_at[dir]);
        l.last_at[dir] = at;
        self.schedule(at, Ev::Deliver { link, to, msg: Box::new(msg) });
    }

    /// The channel keys of a running host.
    fn keys_of(&self, host: HostId) -> Option<(PublicKey, [u8; 32])> {
        let (pair, psk) = self.hosts[host].node.as_ref()?.channel_keys();
        Some((pair.public, psk))
    }

    fn dial(&mut self, host: HostId, addr: PeerAddr, kind: ChannelKind) {
        let inc = self.hosts[host].inc;
        let target = self.by_addr.get(&addr).copied();
        // The discrete-event level runs no cryptography: a member handshake succeeds exactly
        // when both ends hold the same pre-shared key, as Noise's would.
        let ok = target.filter(|&t| {
            self.hosts[t].node.is_some()
                && !self.hosts[t].spec.nat
                && self.reachable(host, t)
                && self.reachable(t, host)
                && (kind == ChannelKind::Merge
                    || self.keys_of(t).map(|k| k.1) == self.keys_of(host).map(|k| k.1))
        });
        match ok {
            Some(t) => {
                let link = LinkId(self.next_link);
                self.next_link += 1;
                let t_inc = self.hosts[t].inc;
                self.links.insert(
                    link,
                    SimLink {
                        ends: [(host, inc), (t, t_inc)],
                        broken: false,
                        last_at: [0; 2],
                        held: Default::default(),
                        fin_held: [false; 2],
                    },
                );
                let lat = self.cfg.latency_ms;
                let hash = link_hash(link);
                let key = |h| self.keys_of(h).map(|k| k.0).expect("running host");
                let to_target = ChannelInfo { kind, peer_key: key(host), handshake_hash: hash };
                let to_dialer = ChannelInfo { kind, peer_key: key(t), handshake_hash: hash };
                // Connect, three handshake messages and the responder's confirmation.
                self.schedule(
                    self.now + 3 * lat,
                    Ev::Opened { link, host: t, inc: t_inc, dialed: None, channel: to_target },
                );
                self.schedule(
                    self.now + 4 * lat,
                    Ev::Opened { link, host, inc, dialed: Some(addr), channel: to_dialer },
                );
            }
            None => {
                let refused =
                    target.is_some_and(|t| self.hosts[t].node.is_none() && self.reachable(host, t));
                let wait =
                    if refused { 2 * self.cfg.latency_ms } else { self.cfg.connect_timeout_ms };
                self.schedule(self.now + wait, Ev::DialFailed { host, inc, addr });
            }
        }
    }

    fn deliver(&mut self, host: HostId, input: Input) {
        let now = self.clock(host);
        if let Some(node) = self.hosts[host].node.as_mut() {
            let event = input_kind(&input);
            node.handle(now, input);
            self.check_node(host, event);
            self.drain(host);
        }
    }

    fn beacon_to(&mut self, from: HostId, to: HostId, beacon: &Beacon) {
        if to == from || !self.reachable(from, to) {
            return;
        }
        if self.cfg.beacon_loss > 0.0 && self.rng.gen_bool(self.cfg.beacon_loss) {
            return;
        }
        let now = self.clock(to);
        if let Some(node) = self.hosts[to].node.as_mut() {
            self.stats.beacons += 1;
            node.handle_beacon(now, beacon);
            self.check_node(to, "a beacon");
            self.drain(to);
        }
    }

    fn step(&mut self, s: Scheduled) {
        self.now = s.at;
        self.stats.events += 1;
        self.mix(s.at);
        match s.ev {
            Ev::Timer { host, inc } => {
                let h = &mut self.hosts[host];
                if h.inc == inc && h.timer_at == Some(s.at) {
                    h.timer_at = None;
                    self.mix(host as u64);
                    self.deliver(host, Input::Tick);
                }
            }
            Ev::Multicast { from, beacon, segment } => {
                let members = self.segments.get(&segment).cloned().unwrap_or_default();
                for to in members {
                    self.beacon_to(from, to, &beacon);
                }
            }
            Ev::Unicast { from, to, beacon } => {
                if !self.hosts[to].spec.nat {
                    self.beacon_to(from, to, &beacon);
                }
            }
            Ev::Deliver { link, to, msg } => {
                let alive = self.links.get(&link).is_some_and(|l| {
                    !l.broken || l.ends.iter().all(|(h, i)| self.hosts[*h].inc == *i)
                });
                if alive {
                    self.mix(link.0 ^ ((to as u64) << 48));
                    // Delivered the moment it arrives: the delivery time is its receive stamp.
                    let received = self.mono_us_at(to, self.now);
                    self.deliver(to, Input::Message { link, msg: *msg, received });
                }
            }
            Ev::Opened { link, host, inc, dialed, channel } => {
                if self.hosts[host].inc == inc {
                    self.mix(link.0);
                    self.deliver(host, Input::LinkOpened { link, dialed, channel });
                }
            }
            Ev::DialFailed { host, inc, addr } => {
                if self.hosts[host].inc == inc {
                    self.deliver(host, Input::DialFailed { addr });
                }
            }
            Ev::Closed { link, host } => self.deliver(host, Input::LinkClosed { link }),
        }
    }

    /// Runs until simulated time `until_ms`, or until a node invariant breaks.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(Reverse(s)) = self.queue.peek() {
            if s.at > until_ms || self.broken.is_some() {
                break;
            }
            let Reverse(s) = self.queue.pop().expect("peeked");
            self.step(s);
        }
        self.now = self.now.max(until_ms);
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs until `done` holds (checked every `step_ms`) or `limit_ms` passed; returns the
    /// simulated time it took, or `None` on timeout.
    pub fn run_until_pred(
        &mut self,
        step_ms: u64,
        limit_ms: u64,
        mut done: impl FnMut(&World) -> bool,
    ) -> Option<u64> {
        let start = self.now;
        while self.now < start + limit_ms {
            if done(self) {
                return Some(self.now - start);
            }
            self.run_for(step_ms);
        }
        done(self).then(|| self.now - start)
    }

    /// Reports of every running server.
    pub fn reports(&self) -> Vec<NodeReport> {
        let vendor = self.issuer.verifying_key();
        self.hosts
            .iter()
            .filter_map(|h| h.node.as_ref())
            .map(|n| NodeReport::of(n, &vendor))
            .collect()
    }

    /// Checks the invariants that hold at every step, and reports a node invariant broken
    /// after any event since the start.
    pub fn check(&self) -> Result<(), Violation> {
        if let Some(v) = &self.broken {
            return Err(v.clone());
        }
        let isolated = self
            .isolated
            .iter()
            .filter_map(|h| self.node(*h))
            .map(|n| n.identity().server)
            .collect();
        check::always(&self.reports(), &isolated)?;
        self.check_acknowledged(false)?;
        if self.cfg.check_single_recorder {
            self.check_single_recorder()?;
        }
        Ok(())
    }

    /// In one connected part no camera is recorded by two servers for longer than
    /// [`DOUBLE_RECORDING_MS_MAX`]: two recorders of a camera must have started, come to
    /// reach each other (by their own routes), or had those routes truly work (see
    /// [`World::route_works`]) less than that ago. A route over a silently cut link is a
    /// partition until its link's silence shows it.
    pub fn check_single_recorder(&self) -> Result<(), Violation> {
        let mut works_since = self.routes_work_since.borrow_mut();
        let mut doubles = BTreeSet::new();
        let mut result = Ok(());
        'cameras: for (camera, hosts) in self.recorders() {
            for (i, &a) in hosts.iter().enumerate() {
                for &b in &hosts[i + 1..] {
                    doubles.insert((a, b));
                    let (na, nb) = (self.node(a).expect("up"), self.node(b).expect("up"));
                    let (sa, sb) = (na.identity().server, nb.identity().server);
                    let Some(met) = na.connected_since(sb).zip(nb.connected_since(sa)) else {
                        continue;
                    };
                    let Some(works) = self.routes_work_since(a, b, &mut works_since) else {
                        continue; // a partition, noticed or not
                    };
                    let met = (self.true_ms_at_mono(a, met.0), self.true_ms_at_mono(b, met.1));
                    let since = self.hosts[a].recording[&camera]
                        .max(self.hosts[b].recording[&camera])
                        .max(met.0)
                        .max(met.1)
                        .max(works);
                    if self.now > since + DOUBLE_RECORDING_MS_MAX {
                        result = Err(Violation(format!(
                            "{camera} recorded by hosts {a} and {b}, which reach each other, for {} ms\n  a: {}\n  b: {}\n  started {} and {}, reached each other since {} and {}, routes working since {works}\n  a syncs b: {}\n  b syncs a: {}\n  routes a->b {:?}, b->a {:?}",
                            self.now - since,
                            na.describe_recording(camera),
                            nb.describe_recording(camera),
                            self.hosts[a].recording[&camera],
                            self.hosts[b].recording[&camera],
                            met.0,
                            met.1,
                            na.describe_sync(nb.identity().replica()),
                            nb.describe_sync(na.identity().replica()),
                            na.route_to(sb),
                            nb.route_to(sa),
                        )));
                        break 'cameras;
                    }
                }
            }
        }
        works_since.retain(|pair, _| doubles.contains(pair));
        result
    }

    /// Hosts up recording each camera.
    pub fn recorders(&self) -> BTreeMap<hive_core::ids::CameraId, Vec<HostId>> {
        let mut by: BTreeMap<hive_core::ids::CameraId, Vec<HostId>> = BTreeMap::new();
        for (h, host) in self.hosts.iter().enumerate() {
            if host.node.is_some() {
                for c in host.recording.keys() {
                    by.entry(*c).or_default().push(h);
                }
            }
        }
        by
    }

    /// Checks that every acknowledged write is reflected by the server that acknowledged it;
    /// servers recovering a damaged log are exempt unless `strict`.
    pub fn check_acknowledged(&self, strict: bool) -> Result<(), Violation> {
        for (i, h) in self.hosts.iter().enumerate() {
            let Some(node) = &h.node else { continue };
            if h.recovering && !strict {
                continue;
            }
            for (origin, seq) in &h.acked {
                if !node.store().knows(*origin, *seq) {
                    return Err(Violation(format!(
                        "host {i}: acknowledged write {origin:?}#{seq} lost"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether every running server is idle and every system has converged.
    pub fn converged(&self) -> bool {
        check::is_converged(&self.reports())
    }

    /// One line per host: identity, links, routes and sync state, for failure reports.
    pub fn describe(&self) -> Vec<String> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| match &h.node {
                None => format!("host {i}: down"),
                Some(n) => format!(
                    "host {i} {:?} {:?} {:?}: peers {:?}, online {} {:?}, others {:?}, entries {}, idle {}, vector {:?}",
                    n.identity().server,
                    n.identity().system,
                    n.identity().name,
                    n.linked_peers().map(|(s, _)| s).collect::<Vec<_>>(),
                    n.online_servers().len(),
                    n.online_servers().iter().filter_map(|s| n.route_to(*s).filter(|r| r.hops > 1).map(|r| (*s, r))).collect::<Vec<_>>(),
                    n.other_systems().iter().map(|o| (o.system, o.servers.len())).collect::<Vec<_>>(),
                    n.store().len(),
                    n.sync_idle(),
                    n.store().vector()
                ),
            })
            .collect()
    }

    /// Turns byte counting (encoding every message) on or off.
    pub fn set_measure_bytes(&mut self, on: bool) {
        self.cfg.measure_bytes = on;
    }

    /// Whether every running server holds the same entries (cheaper than [`World::converged`]).
    pub fn stores_identical(&self) -> bool {
        let mut stores =
            self.hosts.iter().filter_map(|h| h.node.as_ref()).map(|n| n.store().entries());
        match stores.next() {
            Some(first) => stores.all(|s| s == first),
            None => true,
        }
    }

    /// Checks convergence, with a reason on failure.
    pub fn check_converged(&self) -> Result<(), Violation> {
        check::converged(&self.reports())
    }
}

/// What kind of input an event fed a node, for violation reports.
fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Tick => "a tick",
        Input::Beacon(_) => "a beacon",
        Input::LinkOpened { .. } => "a link opening",
        Input::DialFailed { .. } => "a failed dial",
        Input::LinkClosed { .. } => "a link closing",
        Input::Message { msg, .. } => msg.kind(),
        Input::Command { .. } => "a command",
        Input::ExternalTime(_) => "an external time sample",
        Input::AskMediaDial { .. } => "an ask for a media channel back",
    }
}

/// A host's link key pair at this level: stable per host, never used for cryptography.
fn des_keypair(host: HostId) -> StaticKeypair {
    let mut private = [0u8; 32];
    private[..8].copy_from_slice(&(host as u64).to_le_bytes());
    let mut public = private;
    public[31] = 1;
    StaticKeypair { private, public: PublicKey(public) }
}

/// Both ends' handshake hash of a simulated link.
fn link_hash(link: LinkId) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&link.0.to_le_bytes());
    h
}
