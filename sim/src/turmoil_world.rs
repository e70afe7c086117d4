//! The turmoil world: every server is the real shell driver ([`hive::driver::run`]) over
//! turmoil's simulated TCP, UDP multicast and filesystem. Slower than the discrete-event
//! simulator, but it exercises the code the `hive` binary runs; it is the reference for tens
//! of servers and checks the same invariants. Its sockets count what they carry
//! ([`crate::counting_net`]).

use crate::check::{self, Violation};
use crate::counting_net::CountingNet;
use crate::des::world::VENDOR_SEED;
use crate::des::ServerSpec;
use crate::report::NodeReport;
use hive::driver::channel::Entropy;
use hive::driver::{self, DriverConfig, Observer, Request, SkewedClock};
use hive::storage::{DiskFaults, FaultyFs, SimFs};
use hive_core::auth::{KdfParams, Secret};
use hive_core::hlc::Hlc;
use hive_core::ids::SystemId;
use hive_core::ids::{HardwareId, PeerAddr, ServerId, SystemName};
use hive_core::licenses::LicenseIssuer;
use hive_core::node::{Command, CommandError, Config, Node, Reply, Timing};
use hive_core::resources::{Key, Value};
use hive_core::store::{ReplicaId, Seq};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Port servers listen on for links.
const PORT: u16 = 7001;
/// Wall time of the simulation's start.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// Network timing and disk faults of a turmoil world.
#[derive(Clone, Debug)]
pub struct TurmoilOptions {
    /// Shortest one-way latency.
    pub latency_ms_min: u64,
    /// Longest one-way latency.
    pub latency_ms_max: u64,
    /// Simulated time per step.
    pub tick_ms: u64,
    /// Probability that a disk read or write fails.
    pub io_error_probability: f64,
    /// Probability that a disk write is corrupted.
    pub corruption_probability: f64,
    /// With `Some(n)`, a crash keeps a random prefix (in `n`-byte blocks) of unsynced writes:
    /// torn writes.
    pub torn_block_bytes: Option<u64>,
    /// With `Some(ms)`, disk operations take up to this long, so crashes land between a
    /// write and its sync.
    pub io_latency_ms_max: Option<u64>,
}

impl Default for TurmoilOptions {
    fn default() -> Self {
        TurmoilOptions {
            latency_ms_min: 1,
            latency_ms_max: 3,
            tick_ms: 10,
            io_error_probability: 0.0,
            corruption_probability: 0.0,
            torn_block_bytes: None,
            io_latency_ms_max: None,
        }
    }
}

/// What the test side shares with one simulated host.
#[derive(Default)]
struct HostShared {
    report: Option<NodeReport>,
    commands: Option<mpsc::UnboundedSender<Request>>,
    boots: u64,
}

struct Observed {
    shared: Rc<RefCell<Vec<HostShared>>>,
    index: usize,
    vendor: ed25519_dalek::VerifyingKey,
}

impl Observer for Observed {
    fn observe(&mut self, node: &Node) {
        self.shared.borrow_mut()[self.index].report = Some(NodeReport::of(node, &self.vendor));
    }
}

/// A command sent to a server whose reply the world passes on to the test, noting on the way
/// the writes that were acknowledged.
struct PendingReply {
    host: usize,
    /// The key and value (`None`: deleted) the command writes, if it is a write.
    write: Option<(Key, Option<Value>)>,
    from_server: oneshot::Receiver<Result<Reply, CommandError>>,
    to_test: oneshot::Sender<Result<Reply, CommandError>>,
}

/// A write a server acknowledged: it must survive, on every server of its system.
#[derive(Clone, Debug)]
struct AckedWrite {
    host: usize,
    key: Key,
    value: Option<Value>,
    /// Once found in the acknowledging server's replica: the write's rank (stamp, origin,
    /// sequence) and the system it was made in.
    found: Option<((Hlc, ReplicaId, Seq), SystemId)>,
}

/// A turmoil simulation of Hive servers.
pub struct TurmoilWorld<'a> {
    sim: turmoil::Sim<'a>,
    names: Vec<String>,
    shared: Rc<RefCell<Vec<HostShared>>>,
    faults: Vec<DiskFaults>,
    isolated: BTreeSet<usize>,
    up: Vec<bool>,
    pending: Vec<PendingReply>,
    acked: Vec<AckedWrite>,
}

fn host_name(i: usize) -> String {
    format!("server-{i}")
}

impl<'a> TurmoilWorld<'a> {
    /// A world whose randomness (latencies, disk faults) follows `seed`.
    pub fn new(seed: u64, opts: TurmoilOptions) -> Self {
        let mut b = turmoil::Builder::new();
        b.rng_seed(seed)
            .simulation_duration(Duration::from_secs(100_000))
            .tick_duration(Duration::from_millis(opts.tick_ms))
            .min_message_latency(Duration::from_millis(opts.latency_ms_min))
            .max_message_latency(Duration::from_millis(opts.latency_ms_max))
            // A hundred peers connecting at once must not overflow a listener's queue.
            .tcp_capacity(4096)
            .udp_capacity(4096);
        let fs = b.fs();
        fs.io_error_probability(opts.io_error_probability)
            .corruption_probability(opts.corruption_probability);
        if let Some(block) = opts.torn_block_bytes {
            fs.block_size(block);
        }
        if let Some(ms) = opts.io_latency_ms_max {
            fs.io_latency()
                .min_latency(Duration::from_micros(100))
                .max_latency(Duration::from_millis(ms));
        }
        let sim = b.build();
        TurmoilWorld {
            sim,
            names: Vec::new(),
            shared: Rc::default(),
            faults: Vec::new(),
            isolated: BTreeSet::new(),
            up: Vec::new(),
            pending: Vec::new(),
            acked: Vec::new(),
        }
    }

    /// Adds a server running the real driver. Servers on other segments use another
    /// multicast group; a server behind NAT advertises an address nobody can reach.
    pub fn add_server(&mut self, spec: ServerSpec) -> usize {
        let index = self.names.len();
        let name = host_name(index);
        self.names.push(name.clone());
        self.shared.borrow_mut().push(HostShared::default());
        let faults = DiskFaults::unlimited();
        self.faults.push(faults.clone());
        self.up.push(true);
        let shared = self.shared.clone();
        let seed = index as u64 * 7919;
        self.sim.host(name.clone(), move || {
            let (spec, shared, faults, name) =
                (spec.clone(), shared.clone(), faults.clone(), name.clone());
            async move {
                let ip = turmoil::lookup(name.as_str());
                let advertised = if spec.nat {
                    // A private address: peers that dial it fail, as they would through NAT.
                    PeerAddr(format!("10.255.{}.1:{PORT}", index))
                } else {
                    PeerAddr(format!("{ip}:{PORT}"))
                };
                let manual = spec
                    .manual_peers
                    .iter()
                    .map(|p| {
                        PeerAddr(format!("{}:{PORT}", turmoil::lookup(host_name(*p).as_str())))
                    })
                    .collect();
                let issuer = LicenseIssuer::from_seed(VENDOR_SEED);
                let config = Config {
                    server_name: name.clone(),
                    system_name: SystemName::new(spec.system_name.clone())?,
                    secret: Secret::from_text(&spec.secret),
                    link_key: Entropy::Seeded(seed ^ index as u64).generate_keypair(),
                    entropy: seeded_entropy(seed ^ index as u64),
                    hardware_id: HardwareId(format!("hw-{index}")),
                    listen: vec![advertised],
                    manual_peers: manual,
                    media: None,
                    vendor_key: issuer.verifying_key(),
                    kdf: KdfParams::CHEAP,
                    failover_enabled: true,
                    max_cameras: 256,
                    timing: Timing::default(),
                };
                let mut dc = DriverConfig::new(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)));
                dc.discovery_group =
                    SocketAddrV4::new(Ipv4Addr::new(239, 255, 11, 11 + spec.segment as u8), 5007);
                let boots = {
                    let mut s = shared.borrow_mut();
                    s[index].boots += 1;
                    s[index].boots
                };
                loop {
                    let (tx, rx) = mpsc::unbounded_channel();
                    shared.borrow_mut()[index].commands = Some(tx);
                    let fs = FaultyFs::new(SimFs::open("/data").await?, faults.clone());
                    // Each run of each host draws its own handshake keys, from the seed.
                    dc.entropy = Entropy::Seeded(seed ^ ((index as u64) << 32) ^ boots);
                    let clock = SkewedClock::new(EPOCH_MS, spec.clock_offset_ms, spec.drift_ppm);
                    let mut observer =
                        Observed { shared: shared.clone(), index, vendor: issuer.verifying_key() };
                    let result = driver::run::<CountingNet, _, _, _>(
                        dc.clone(),
                        config.clone(),
                        fs,
                        clock,
                        seed ^ boots,
                        rx,
                        &mut observer,
                    )
                    .await;
                    shared.borrow_mut()[index].report = None;
                    match result {
                        Ok(()) => return Ok(()),
                        // Fail-stop: start again from what the disk holds, like a supervisor.
                        Err(e) => {
                            tracing::warn!(host = index, error = %e, "driver stopped; restarting");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        index
    }

    /// Marks a server that must never exchange data with anyone.
    pub fn isolate(&mut self, host: usize) {
        self.isolated.insert(host);
    }

    /// Runs for `ms` of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.sim.elapsed() + Duration::from_millis(ms);
        while self.sim.elapsed() < until {
            self.sim.step().expect("simulation step");
            self.pass_replies();
        }
    }

    /// Passes replies that arrived on to the test, noting acknowledged writes, and finds
    /// acknowledged writes in their servers' replicas.
    fn pass_replies(&mut self) {
        let mut still = Vec::with_capacity(self.pending.len());
        for mut p in std::mem::take(&mut self.pending) {
            match p.from_server.try_recv() {
                Ok(result) => {
                    match (&result, p.write.take()) {
                        (Ok(Reply::Split { .. }), _) => {
                            // The server left its old system's data behind on purpose.
                            self.acked.retain(|a| a.host != p.host);
                        }
                        (Ok(_), Some((key, value))) => {
                            self.acked.push(AckedWrite { host: p.host, key, value, found: None })
                        }
                        _ => {}
                    }
                    let _ = p.to_test.send(result);
                }
                Err(oneshot::error::TryRecvError::Empty) => still.push(p),
                // The server stopped: the test's receiver closes too.
                Err(oneshot::error::TryRecvError::Closed) => {}
            }
        }
        self.pending = still;
        let shared = self.shared.borrow();
        for a in self.acked.iter_mut().filter(|a| a.found.is_none()) {
            a.found = shared[a.host].report.as_ref().and_then(|r| find_write(r, a));
        }
    }

    /// Runs until `done` holds (checked every `step_ms`) or `limit_ms` passed; returns the
    /// simulated time it took.
    pub fn run_until(
        &mut self,
        step_ms: u64,
        limit_ms: u64,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Option<u64> {
        let start = self.sim.elapsed();
        let limit = start + Duration::from_millis(limit_ms);
        loop {
            if done(self) {
                return Some((self.sim.elapsed() - start).as_millis() as u64);
            }
            if self.sim.elapsed() >= limit {
                return None;
            }
            self.run_for(step_ms);
        }
    }

    /// Sends a command to a running server; the reply comes through the receiver.
    pub fn command(
        &mut self,
        host: usize,
        cmd: Command,
    ) -> oneshot::Receiver<Result<Reply, CommandError>> {
        let (to_test, rx) = oneshot::channel();
        let (tx, from_server) = oneshot::channel();
        let write = match &cmd {
            Command::Put { key, value } => Some((key.clone(), Some(value.clone()))),
            Command::Delete { key } => Some((key.clone(), None)),
            _ => None,
        };
        if let Some(c) = &self.shared.borrow()[host].commands {
            let _ = c.send(Request::Command(cmd, tx));
        }
        self.pending.push(PendingReply { host, write, from_server, to_test });
        rx
    }

    /// Runs until a command's reply arrives (or `limit_ms` passes).
    pub fn await_reply(
        &mut self,
        mut rx: oneshot::Receiver<Result<Reply, CommandError>>,
        limit_ms: u64,
    ) -> Option<Result<Reply, CommandError>> {
        let mut got = None;
        self.run_until(10, limit_ms, |_| {
            if got.is_none() {
                got = rx.try_recv().ok();
            }
            got.is_some()
        });
        got
    }

    /// Crashes a server: unsynced writes are lost, connections drop.
    pub fn crash(&mut self, host: usize) {
        self.sim.crash(self.names[host].as_str());
        self.shared.borrow_mut()[host].report = None;
        self.up[host] = false;
    }

    /// Restarts a crashed server from its disk.
    pub fn restart(&mut self, host: usize) {
        self.sim.bounce(self.names[host].as_str());
        self.up[host] = true;
    }

    /// Limits the free space of a server's disk (`None`: unlimited).
    pub fn set_disk_space(&mut self, host: usize, bytes: Option<u64>) {
        self.faults[host].set_space_left(bytes);
    }

    /// Cuts both directions between two servers.
    pub fn partition(&mut self, a: usize, b: usize) {
        self.sim.partition(self.names[a].as_str(), self.names[b].as_str());
    }

    /// Restores both directions between two servers.
    pub fn repair(&mut self, a: usize, b: usize) {
        self.sim.repair(self.names[a].as_str(), self.names[b].as_str());
    }

    /// Fixes the one-way latency between two servers.
    pub fn set_link_latency(&mut self, a: usize, b: usize, ms: u64) {
        self.sim.set_link_latency(
            self.names[a].as_str(),
            self.names[b].as_str(),
            Duration::from_millis(ms),
        );
    }

    /// Makes the link between two servers drop this fraction of its packets.
    pub fn set_link_loss(&mut self, a: usize, b: usize, rate: f64) {
        self.sim.set_link_fail_rate(self.names[a].as_str(), self.names[b].as_str(), rate);
    }

    /// Reports of the running servers.
    pub fn reports(&self) -> Vec<NodeReport> {
        self.shared.borrow().iter().filter_map(|h| h.report.clone()).collect()
    }

    /// The report of one server, if it runs.
    pub fn report(&self, host: usize) -> Option<NodeReport> {
        self.shared.borrow()[host].report.clone()
    }

    /// Checks the invariants that hold at every step.
    pub fn check(&self) -> Result<(), Violation> {
        let isolated: BTreeSet<ServerId> =
            self.isolated.iter().filter_map(|h| self.report(*h)).map(|r| r.server).collect();
        check::always(&self.reports(), &isolated)
    }

    /// Whether every running server's sync is idle and every system converged.
    pub fn converged(&self) -> bool {
        check::is_converged(&self.reports())
    }

    /// Checks convergence, with a reason, and that every acknowledged write survived.
    pub fn check_converged(&self) -> Result<(), Violation> {
        check::converged(&self.reports())?;
        self.check_acknowledged()
    }

    /// Checks that every write a server acknowledged (or a newer write of the same key) is
    /// held by every running server of that server's system: for a settled, connected world.
    /// A write never seen in its server's replica must at least have its key there.
    pub fn check_acknowledged(&self) -> Result<(), Violation> {
        let reports = self.reports();
        for a in &self.acked {
            let own = self.report(a.host);
            let found = a.found.or_else(|| own.as_ref().and_then(|r| find_write(r, a)));
            let Some((rank, made_in)) = found else {
                if own.as_ref().is_some_and(|r| !r.entries.contains_key(&a.key)) {
                    return Err(Violation(format!(
                        "server-{}: acknowledged write of {:?} missing",
                        a.host, a.key
                    )));
                }
                continue;
            };
            let system = own.map_or(made_in, |r| r.system);
            for r in reports.iter().filter(|r| r.system == system) {
                let held = r.entries.get(&a.key).map(|e| (e.hlc, e.origin, e.seq));
                if held.is_none_or(|h| h < rank) {
                    return Err(Violation(format!(
                        "{:?}: acknowledged write of {:?} by server-{} ({rank:?}) lost; holds {held:?}",
                        r.server, a.key, a.host
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The rank and system of acknowledged write `a` if its server's replica shows it.
fn find_write(r: &NodeReport, a: &AckedWrite) -> Option<((Hlc, ReplicaId, Seq), SystemId)> {
    let e = r.entries.get(&a.key)?;
    (e.origin.server == r.server && e.value == a.value)
        .then_some(((e.hlc, e.origin, e.seq), r.system))
}

/// Entropy for a simulated host's core, from the scenario's seed.
fn seeded_entropy(seed: u64) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..8].copy_from_slice(&seed.to_le_bytes());
    e[8] = 0x5e;
    e
}
