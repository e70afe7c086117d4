//! The driver: binds a core [`Node`] to sockets, timers and disk. Written once, generic over
//! [`Net`], [`Fs`] and [`Clock`], so the `hive` binary runs it over tokio and the simulation
//! runs the very same loop over turmoil.
//!
//! The loop waits for the next event (a message, a connection, a datagram, a command, the
//! node's timer), feeds it to the node and carries out the node's outputs in order. A
//! `Persist` output is appended and synced before any later output (a send, a reply) is acted
//! on; if it cannot be, the driver stops (fail-stop) and its caller restarts it from disk.

pub mod channel;
pub mod clock;
mod lanes;
mod links;
pub mod net;
pub mod ntp;
mod stats;

pub use clock::{Clock, MonoClock, SkewedClock, SystemClock, WallSkewError, WALL_SKEW_ENV};
pub use links::{MediaChannel, MediaStream, MEDIA_CHANNELS_QUEUED_MAX};
pub use net::{Net, TokioNet, TurmoilNet};
pub use stats::{Traffic, TrafficStats};

use crate::storage::{Fs, Persistence, StorageError};
use hive_core::ids::{CameraId, PeerAddr};
use hive_core::node::{
    Command, CommandError, CommandId, Config, Event, Input, Node, Output, Reply, TimeStatus,
};
use hive_core::persist::{ByteRange, DecodeError, LogDamage, Loss, Record, Restored, Snapshot};
use hive_core::wire::{Beacon, BEACON_LEN_MAX};
use links::{LinkEvent, Links};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Where the driver listens and discovers.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// TCP address for links from peers.
    pub listen: SocketAddr,
    /// Multicast group and port of discovery beacons.
    pub discovery_group: SocketAddrV4,
    /// Interface to join the group on.
    pub discovery_interface: Ipv4Addr,
    /// Log bytes after which the replica is folded into a snapshot.
    pub snapshot_after_bytes: u64,
    /// How long a dial may take.
    pub connect_timeout_ms: u64,
    /// Counters of bytes and beacons, read by `/metrics`.
    pub stats: Arc<TrafficStats>,
    /// Start a new write epoch, as after damage: the data was restored from a backup, so
    /// sequence numbers written after the backup may already be at peers.
    pub new_epoch: bool,
    /// Randomness of the links' handshakes: the OS's, or seeded per simulated host.
    pub entropy: channel::Entropy,
    /// NTP server (`host:port`) polled for external time; none in simulation.
    pub ntp: Option<String>,
    /// Where the cameras this server must record (and stop recording) are sent; none in
    /// simulation, where nothing pulls video.
    pub recording: Option<mpsc::UnboundedSender<RecordingOrder>>,
    /// Where media channels that peers open go (the video plane); none: they are closed.
    pub media: Option<mpsc::Sender<links::MediaChannel>>,
}

/// A change in what this server records, for the video plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingOrder {
    /// Record `camera` from `url`.
    Start {
        /// The camera.
        camera: CameraId,
        /// Its stream URL (credentials included, if the record holds them).
        url: String,
        /// Its secondary (low-resolution) stream's URL, if it has one.
        secondary_url: Option<String>,
    },
    /// Stop recording `camera`.
    Stop {
        /// The camera.
        camera: CameraId,
    },
}

impl DriverConfig {
    /// Defaults for a server listening on `listen`: group 239.255.11.11:5007 on all interfaces.
    pub fn new(listen: SocketAddr) -> Self {
        DriverConfig {
            listen,
            discovery_group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 11, 11), 5007),
            discovery_interface: Ipv4Addr::UNSPECIFIED,
            snapshot_after_bytes: 4 * 1024 * 1024,
            connect_timeout_ms: 3_000,
            stats: Arc::default(),
            new_epoch: false,
            entropy: channel::Entropy::Os,
            ntp: None,
            recording: None,
            media: None,
        }
    }
}

/// Why the driver stopped.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The disk failed; nothing after the failed write was acted on.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// A persisted snapshot or record could not be decoded.
    #[error("persisted state unreadable: {0}")]
    Decode(#[from] DecodeError),
    /// A socket could not be opened.
    #[error("cannot {what} {addr}: {source}")]
    Bind {
        /// Listen or join.
        what: &'static str,
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What the driver's owner may ask of it.
pub enum Request {
    /// Run a command; its outcome goes to the sender once durable.
    Command(Command, oneshot::Sender<Result<Reply, CommandError>>),
    /// Look at the node between two events (the API's reads, backups).
    Read(Box<dyn FnOnce(&Node) + Send>),
    /// This server's time now: the node's clock is brought to the present first (a read
    /// alone sees the time of the last event, which may be a second old on an idle server).
    Time(oneshot::Sender<TimeStatus>),
    /// Ask neighbour `via` to dial a media channel back, opened with `token` (the video
    /// plane's, for a neighbour it cannot dial).
    AskMediaDial {
        /// The neighbour.
        via: hive_core::ids::ServerId,
        /// What the channel will open with.
        token: u128,
    },
    /// Stop after the current event.
    Stop,
}

/// Something that looks at the node after every step (metrics, the simulation's checker).
pub trait Observer {
    /// Called after each event has been handled and its outputs carried out.
    fn observe(&mut self, node: &Node);
}

impl Observer for () {
    fn observe(&mut self, _: &Node) {}
}

/// Loads the replica from disk, reporting damage.
///
/// Damage is read twice before it is believed: a read that returned corrupt bytes once (a bad
/// cable, a flaky controller) must not cost the log its records. Every intact record is kept,
/// before and after damage, except those whose meaning depends on what was lost
/// ([`Record::trusted_after_damage`]).
pub async fn load<F: Fs>(fs: F) -> Result<(Persistence<F>, Restored), DriverError> {
    let (mut persistence, mut loaded) = Persistence::load(fs.clone(), is_record).await?;
    if !loaded.report.damage.is_empty() {
        (persistence, loaded) = Persistence::load(fs, is_record).await?;
    }
    let snapshot = loaded.snapshot.as_deref().map(Snapshot::decode).transpose()?;
    let report = &loaded.report;
    let damaged_from = report.damage.first().map(|d| d.records_before);
    let mut records = Vec::with_capacity(loaded.records.len());
    let mut records_skipped = 0;
    for (i, body) in loaded.records.iter().enumerate() {
        let record = Record::decode(body)?;
        if damaged_from.is_some_and(|from| i >= from) && !record.trusted_after_damage() {
            records_skipped += 1;
            continue;
        }
        records.push(record);
    }
    for d in &report.damage {
        tracing::error!(
            offset = d.offset,
            bytes = d.len_bytes,
            error = %d.error,
            "skipped a damaged part of the transaction log; reading resumed after it"
        );
    }
    if let Some(t) = &report.torn_tail {
        tracing::warn!(
            offset = t.offset,
            bytes = t.bytes,
            "cut a torn write from the end of the log"
        );
    }
    let loss = damaged_from.map(|_| {
        Loss::DamagedLog(LogDamage {
            ranges: report
                .damage
                .iter()
                .map(|d| ByteRange { offset: d.offset, len_bytes: d.len_bytes })
                .collect(),
            records_kept: records.len() as u64,
            records_skipped,
        })
    });
    Ok((persistence, Restored { snapshot, records, loss }))
}

/// Whether a log body is a record: the scan resynchronises after damage only on frames that
/// are.
pub fn is_record(body: &[u8]) -> bool {
    Record::decode(body).is_ok()
}

/// Tells the video plane to record `camera` from the URLs of its record now.
fn send_start(dc: &DriverConfig, node: &Node, camera: CameraId) {
    let Some(tx) = &dc.recording else { return };
    let Some((_, record)) = node.cameras().find(|(id, _)| *id == camera) else { return };
    let _ = tx.send(RecordingOrder::Start {
        camera,
        url: record.url.clone(),
        secondary_url: record.secondary_url.clone(),
    });
}

/// Says what a server whose acknowledged writes may be missing found, and whether anything
/// can come back from peers.
fn report_loss(loss: &Loss, epoch: u64, peers_known: u64) {
    if peers_known == 0 {
        tracing::error!(
            epoch,
            "{loss}; took write epoch {epoch}; no peers are known, so nothing can be recovered \
             from peers"
        );
    } else {
        tracing::warn!(
            epoch,
            peers_known,
            "{loss}; took write epoch {epoch}; recovering what is missing from {peers_known} \
             known peers"
        );
    }
}

/// Runs a server until its command channel closes or its disk fails.
pub async fn run<N: Net, F: Fs, C: Clock, O: Observer + ?Sized>(
    dc: DriverConfig,
    config: Config,
    fs: F,
    clock: C,
    seed: u64,
    mut commands: mpsc::UnboundedReceiver<Request>,
    observer: &mut O,
) -> Result<(), DriverError> {
    let (mut persistence, mut restored) = load(fs).await?;
    if dc.new_epoch && restored.loss.is_none() {
        restored.loss = Some(Loss::RestoredFromBackup);
    }
    let lost = restored.loss.is_some();
    let mut node = Node::new(config, restored, seed, clock.now());
    if lost {
        // Start clean from what was recovered, written fresh; a damaged log is kept aside.
        persistence.write_snapshot(&node.snapshot().encode()).await?;
    }
    let listener = N::listen(dc.listen).await.map_err(|source| DriverError::Bind {
        what: "listen on",
        addr: dc.listen.to_string(),
        source,
    })?;
    let udp_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, dc.discovery_group.port()));
    let udp = N::bind_multicast(udp_addr, *dc.discovery_group.ip(), dc.discovery_interface)
        .await
        .map_err(|source| DriverError::Bind {
        what: "join discovery group on",
        addr: udp_addr.to_string(),
        source,
    })?;
    let mut links: Links<N> =
        Links::new(Arc::clone(&dc.stats), dc.entropy.clone(), clock.mono(), dc.media.clone());
    let mut replies: BTreeMap<CommandId, oneshot::Sender<Result<Reply, CommandError>>> =
        BTreeMap::new();
    let mut next_command = 0u64;
    let mut datagram = vec![0u8; BEACON_LEN_MAX + 1];
    // A request taken from the channel while gathering a commit, answered after it.
    let mut stashed: Option<Request> = None;
    let mut ntp = dc.ntp.clone().map(|server| ntp::NtpFeed::start(server, clock.mono()));
    loop {
        // Outputs of the last event (or of loading) first, as group commits: the records of
        // every output queued, and of up to `COMMANDS_PER_COMMIT_MAX` commands waiting in the
        // channel, are appended with one sync; the other outputs wait for it, so a `Persist`
        // is durable before anything after it happens.
        loop {
            let mut records: Vec<Vec<u8>> = Vec::new();
            let mut after: Vec<Output> = Vec::new();
            let mut folded = 0;
            loop {
                while let Some(out) = node.poll_output() {
                    match out {
                        Output::Persist(r) => records.extend(r.iter().map(Record::encode)),
                        Output::Snapshot(s) => {
                            if !records.is_empty() {
                                persistence.append(&std::mem::take(&mut records)).await?;
                            }
                            persistence.write_snapshot(&s.encode()).await?;
                        }
                        other => after.push(other),
                    }
                }
                if records.is_empty() || folded == COMMANDS_PER_COMMIT_MAX || stashed.is_some() {
                    break;
                }
                match commands.try_recv() {
                    Ok(Request::Command(cmd, reply)) => {
                        let id = register(&mut next_command, &mut replies, reply);
                        node.handle(clock.now(), Input::Command { id, cmd });
                        folded += 1;
                    }
                    Ok(other) => stashed = Some(other),
                    Err(_) => break,
                }
            }
            if !records.is_empty() {
                persistence.append(&records).await?;
                if persistence.log_len_bytes() >= dc.snapshot_after_bytes {
                    persistence.write_snapshot(&node.snapshot().encode()).await?;
                }
            }
            if after.is_empty() {
                break;
            }
            for out in after {
                match out {
                    Output::Persist(_) | Output::Snapshot(_) => unreachable!("written above"),
                    Output::Send { link, msg } => links.send(link, &msg),
                    Output::Beacon { beacon, unicast } => {
                        let bytes = beacon.encode();
                        dc.stats.beacon_sent(bytes.len(), 1 + unicast.len());
                        let group = SocketAddr::V4(dc.discovery_group);
                        if let Err(e) = N::send_to(&udp, &bytes, group).await {
                            tracing::debug!(error = %e, "beacon not sent");
                        }
                        for addr in unicast {
                            // Beacons go to the discovery port on the host of a manual address.
                            if let Ok(to) = resolve(&addr) {
                                let to = SocketAddr::new(to.ip(), dc.discovery_group.port());
                                let _ = N::send_to(&udp, &bytes, to).await;
                            }
                        }
                    }
                    Output::Dial { addr, kind } => match resolve(&addr) {
                        Ok(to) => {
                            let keys = channel_keys(&node);
                            links.dial(addr, to, kind, dc.connect_timeout_ms, keys);
                        }
                        Err(()) => node.handle(clock.now(), Input::DialFailed { addr }),
                    },
                    Output::DialMedia { peer, addr, token } => match resolve(&addr) {
                        Ok(to) => {
                            tracing::debug!(%peer, %addr, "dialling a media channel back");
                            let keys = channel_keys(&node);
                            links.dial_media(to, token, dc.connect_timeout_ms, keys);
                        }
                        Err(()) => tracing::debug!(%addr, "no media channel back: bad address"),
                    },
                    Output::Close(link) => links.close(link),
                    Output::Reply { id, result } => {
                        if let Some(tx) = replies.remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Output::Event(Event::WritesMayBeMissing { loss, epoch, peers_known }) => {
                        report_loss(&loss, epoch, peers_known)
                    }
                    Output::Event(e) => log_event(&e),
                    Output::StartRecording { camera } => {
                        tracing::info!(%camera, "recording starts here");
                        send_start(&dc, &node, camera);
                    }
                    Output::RecordedCameraChanged { camera } => send_start(&dc, &node, camera),
                    Output::StopRecording { camera } => {
                        tracing::info!(%camera, "recording stops here");
                        if let Some(tx) = &dc.recording {
                            let _ = tx.send(RecordingOrder::Stop { camera });
                        }
                    }
                }
            }
        }
        observer.observe(&node);
        let deadline = clock.instant_at(node.poll_timeout());
        let input = if let Some(request) = stashed.take() {
            match take_request(request, &mut node, &clock, &mut next_command, &mut replies) {
                ControlFlow::Continue(input) => input,
                ControlFlow::Break(()) => return Ok(()),
            }
        } else {
            tokio::select! {
            ev = links.next_event() => match ev {
                LinkEvent::Opened { link, dialed, channel } => {
                    Some(Input::LinkOpened { link, dialed, channel })
                }
                LinkEvent::DialFailed(addr) => Some(Input::DialFailed { addr }),
                LinkEvent::Message(link, msg, received) => {
                    Some(Input::Message { link, msg, received })
                }
                LinkEvent::Closed(link, why) => {
                    tracing::debug!(?link, why, "link closed");
                    Some(Input::LinkClosed { link })
                }
            },
            accepted = N::accept(&listener) => match accepted {
                Ok((stream, from)) => {
                    tracing::debug!(%from, "accepted a connection");
                    links.accept(stream, from, channel_keys(&node));
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    None
                }
            },
            received = N::recv_from(&udp, &mut datagram) => match received {
                Ok((n, from)) => match Beacon::decode(&datagram[..n]) {
                    Ok(mut b) => {
                        fill_unspecified_hosts(&mut b.listen, from);
                        Some(Input::Beacon(b))
                    }
                    Err(e) => {
                        tracing::debug!(%from, error = %e, "ignored a malformed beacon");
                        None
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "discovery receive failed");
                    None
                }
            },
            request = commands.recv() => match request {
                Some(request) => match take_request(request, &mut node, &clock, &mut next_command, &mut replies) {
                    ControlFlow::Continue(input) => input,
                    ControlFlow::Break(()) => return Ok(()),
                },
                None => return Ok(()),
            },
            sample = ntp::next_sample(&mut ntp) => Some(Input::ExternalTime(sample)),
            () = tokio::time::sleep_until(deadline) => Some(Input::Tick),
            }
        };
        if let Some(input) = input {
            node.handle(clock.now(), input);
        }
    }
}

/// Most commands waiting in the channel folded into one group commit: bounds how long the
/// outputs of the first wait for the sync.
pub const COMMANDS_PER_COMMIT_MAX: usize = 256;

/// What the loop does with a request: an input for the node, or nothing more (a read, run
/// here), or stop.
fn take_request<C: Clock>(
    request: Request,
    node: &mut Node,
    clock: &C,
    next_command: &mut u64,
    replies: &mut BTreeMap<CommandId, oneshot::Sender<Result<Reply, CommandError>>>,
) -> ControlFlow<(), Option<Input>> {
    match request {
        Request::Command(cmd, reply) => {
            let id = register(next_command, replies, reply);
            ControlFlow::Continue(Some(Input::Command { id, cmd }))
        }
        Request::Read(read) => {
            read(node);
            ControlFlow::Continue(None)
        }
        Request::Time(reply) => {
            // Whatever the tick makes the node do is carried out at the top of the loop.
            node.handle(clock.now(), Input::Tick);
            let _ = reply.send(node.time_status());
            ControlFlow::Continue(None)
        }
        Request::AskMediaDial { via, token } => {
            ControlFlow::Continue(Some(Input::AskMediaDial { via, token }))
        }
        Request::Stop => ControlFlow::Break(()),
    }
}

/// Gives a command its id and keeps its reply channel.
fn register(
    next_command: &mut u64,
    replies: &mut BTreeMap<CommandId, oneshot::Sender<Result<Reply, CommandError>>>,
    reply: oneshot::Sender<Result<Reply, CommandError>>,
) -> CommandId {
    *next_command += 1;
    let id = CommandId(*next_command);
    replies.insert(id, reply);
    id
}

/// The keys a new link's handshake needs, as the node holds them now.
fn channel_keys(node: &Node) -> channel::Keys {
    let (pair, psk) = node.channel_keys();
    channel::Keys { pair, psk }
}

/// Logs what the node reports, louder for what an administrator must look at.
fn log_event(e: &hive_core::node::Event) {
    use hive_core::node::Event;
    match e {
        // The reason spelled out, beside the event for whoever searches logs by its name.
        Event::ProtocolViolation { what, .. } => tracing::warn!(event = ?e, reason = %what, "node"),
        Event::ClockViolation { what, .. } => tracing::warn!(event = ?e, reason = %what, "node"),
        Event::KeyMismatch { .. } | Event::MergeLoginFailed { .. } | Event::ClockClamped => {
            tracing::warn!(event = ?e, "node")
        }
        _ => tracing::info!(event = ?e, "node"),
    }
}

/// A server listening on all interfaces advertises `0.0.0.0:port`: its peers dial the
/// address its beacon came from.
fn fill_unspecified_hosts(listen: &mut [PeerAddr], from: SocketAddr) {
    for addr in listen {
        if let Ok(a) = resolve(addr) {
            if a.ip().is_unspecified() {
                *addr = PeerAddr(SocketAddr::new(from.ip(), a.port()).to_string());
            }
        }
    }
}

fn resolve(addr: &PeerAddr) -> Result<SocketAddr, ()> {
    addr.0.parse().map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StdFs;
    use hive_core::frame::HEADER_LEN;
    use hive_core::hlc::Hlc;
    use hive_core::ids::{ServerId, SystemId};
    use hive_core::resources::{Key, Value};
    use hive_core::store::{ReplicaId, Transaction};

    const ORIGIN: ReplicaId = ReplicaId { server: ServerId(7), epoch: 0 };

    fn txn(seq: u64) -> Record {
        Record::Txn(Transaction {
            origin: ORIGIN,
            seq,
            hlc: Hlc { wall_ms: seq, logical: 0 },
            key: Key::Setting { system: SystemId(1), name: format!("s{seq}") },
            value: Some(Value::Setting("v".into())),
        })
    }

    fn cover(upto: u64) -> Record {
        Record::Cover { origin: ORIGIN, upto }
    }

    #[tokio::test]
    async fn a_cover_after_damage_is_skipped_and_every_intact_transaction_is_kept() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let fs = StdFs::open(dir.path().join("data")).await.unwrap();
        let (mut persistence, _) = Persistence::load(fs.clone(), is_record).await.unwrap();
        let before = [txn(1), txn(2), cover(5)];
        let after = [txn(4), cover(9), txn(10)];
        persistence.append(&before.iter().map(Record::encode).collect::<Vec<_>>()).await.unwrap();
        let damaged_at = persistence.log_len_bytes();
        persistence.append(&[txn(3).encode()]).await.unwrap();
        persistence.append(&after.iter().map(Record::encode).collect::<Vec<_>>()).await.unwrap();
        drop(persistence);
        let mut log = fs.read("log.0").await.unwrap().unwrap();
        log[damaged_at as usize + HEADER_LEN + 2] ^= 0x20;
        fs.write_atomic("log.0", &log).await.unwrap();

        let (_, restored) = load(fs).await.unwrap();
        // The cover before the damage stands on intact records; the one after it may not.
        assert_eq!(restored.records, [txn(1), txn(2), cover(5), txn(4), txn(10)]);
        let Some(Loss::DamagedLog(damage)) = restored.loss else { panic!("damage reported") };
        assert_eq!((damage.records_kept, damage.records_skipped), (5, 1));
        assert_eq!(damage.ranges.len(), 1);
        assert_eq!(damage.ranges[0].offset, damaged_at);
        assert_eq!(damage.ranges[0].len_bytes, txn(3).encode().len() as u64 + HEADER_LEN as u64);
    }

    #[tokio::test]
    async fn an_intact_log_reports_no_loss() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let fs = StdFs::open(dir.path().join("data")).await.unwrap();
        let (mut persistence, _) = Persistence::load(fs.clone(), is_record).await.unwrap();
        persistence.append(&[txn(1).encode(), cover(3).encode()]).await.unwrap();
        drop(persistence);
        let (_, restored) = load(fs).await.unwrap();
        assert_eq!(restored.records, [txn(1), cover(3)]);
        assert_eq!(restored.loss, None);
    }
}
