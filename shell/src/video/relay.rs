//! Video through the hive: what a server's RTSP clients (and other servers) are served when
//! the camera is recorded elsewhere.
//!
//! A stream this server holds (recorded here, or in its archive) comes from the local
//! [`VideoPlane`]. Any other comes from the next server on the route to the camera's recorder,
//! over a media channel: a connection of its own with the member handshake, so video never
//! queues ahead of the hive's control traffic, carrying `hive_media::relay` messages. The next
//! server serves it the same way, from its plane or from its own next hop, so a stream crosses
//! as many hops as the route has.
//!
//! Live video is pulled once per camera stream per server: the first viewer starts a relay
//! that feeds a local [`LiveFeed`] (GOP cache and fan-out, as for a camera recorded here), and
//! every later viewer, RTSP client or downstream server, subscribes to it. A relay without
//! viewers for [`RELAY_IDLE`] ends. When its upstream breaks (the recorder died), the relay
//! asks the route again and goes on from the camera's new recorder, so clients keep their
//! sessions. Archive flows are per client: each has an upstream flow of its own.

use super::feed::LiveFeed;
use super::plane::VideoPlane;
use super::sealed::{self, SealedError, SealedReader, SealedWriter};
use super::status::StreamKey;
use crate::driver::channel::{self, ChannelError, Entropy, Keys, Role};
use crate::driver::{MediaChannel, MediaStream};
use crate::rtsp::{Access, ArchiveStart, AuthRequest, Flow, Media};
use crate::server::handle::NodeHandle;
use hive_core::ids::CameraId;
use hive_core::node::ChannelKind;
use hive_media::frame::Frame;
use hive_media::relay::{Message, Request, Start};
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// Servers a request may cross: more than any route in a hive of this size needs.
pub const HOPS_MAX: u8 = 16;
/// A relay with no viewers for this long ends; until then a new viewer starts from its GOP.
pub const RELAY_IDLE: Duration = Duration::from_secs(10);
/// A relay that had no frames from any source this long ends, and so do its viewers'
/// sessions: longer than a failover takes to give the camera a new recorder.
pub const RELAY_GIVE_UP: Duration = Duration::from_secs(30);
/// How long an upstream may stay silent before it is taken as dead and asked again.
pub const UPSTREAM_SILENCE: Duration = Duration::from_secs(5);
/// Longest wait for an upstream's connection, handshake and answer.
pub const UPSTREAM_ANSWER: Duration = Duration::from_secs(10);
/// Frames queued to one client of a relayed archive flow.
const ARCHIVE_QUEUE_FRAMES: usize = 64;
/// Plaintext queued before a write to a media channel.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// Longest wait between retries of a broken live upstream.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Why no upstream flow could be had.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// No server records the camera, or none is reachable.
    #[error("no route to the camera's recorder")]
    NoRoute,
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopped,
    /// The upstream knows no such stream.
    #[error("the stream is unknown upstream")]
    NotFound,
    /// The request crossed [`HOPS_MAX`] servers.
    #[error("too many hops")]
    TooManyHops,
    /// No connection or handshake with the next server.
    #[error("the next server: {0}")]
    Channel(#[from] ChannelError),
    /// The channel broke or carried something else.
    #[error("the media channel: {0}")]
    Sealed(#[from] SealedError),
    /// The upstream answered something else than the flow's start.
    #[error("the upstream answered out of turn")]
    OutOfTurn,
    /// No answer within [`UPSTREAM_ANSWER`].
    #[error("the upstream did not answer in time")]
    Timeout,
}

/// Counters of the media path, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Flows this server serves to other servers now.
    pub flows_to_servers: AtomicU64,
    /// Flows served to other servers since start.
    pub flows_to_servers_total: AtomicU64,
    /// Upstream flows this server opened since start (relays and archive flows).
    pub upstreams_opened_total: AtomicU64,
    /// Live relays open now (one upstream each).
    pub relays_open: AtomicU64,
}

/// A live relay of one camera stream.
struct Relay {
    feed: LiveFeed,
    /// `None` until the upstream answered; then its description or `None` for unknown.
    info: watch::Receiver<Option<Option<StreamInfo>>>,
}

/// What the RTSP server serves: local streams from the plane, the others through the hive.
pub struct HiveMedia {
    /// Itself, for the tasks it starts.
    me: std::sync::Weak<HiveMedia>,
    plane: Arc<VideoPlane>,
    handle: NodeHandle,
    relays: Mutex<BTreeMap<StreamKey, Relay>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HiveMedia {
    /// Serves `plane`'s streams and, through the node behind `handle`, everyone else's.
    pub fn new(plane: Arc<VideoPlane>, handle: NodeHandle) -> Arc<HiveMedia> {
        Arc::new_cyclic(|me| HiveMedia { me: me.clone(), plane, handle, relays: Mutex::default() })
    }

    fn arc(&self) -> Option<Arc<HiveMedia>> {
        self.me.upgrade()
    }

    /// The description of a stream; relayed ones ask upstream.
    async fn info_at(self: &Arc<Self>, target: &Target, hops_left: u8) -> Option<StreamInfo> {
        if let Some(info) = self.plane.info(target).await {
            return Some(info);
        }
        let key = key_of(target)?;
        if target.pos_us.is_some() {
            let (_, _, info) = self.upstream(target, Start::Describe, hops_left).await.ok()?;
            return Some(info);
        }
        let mut info = self.relay(key, target.camera.clone(), hops_left).1;
        let answered = tokio::time::timeout(UPSTREAM_ANSWER, info.wait_for(Option::is_some));
        let described = answered.await.ok()?.ok()?.clone();
        described.flatten()
    }

    /// Live frames: the plane's feed, or a relay's.
    fn live_at(self: &Arc<Self>, target: &Target, hops_left: u8) -> Option<Flow> {
        if let Some(flow) = self.plane.live(target) {
            return Some(flow);
        }
        let key = key_of(target)?;
        Some(self.relay(key, target.camera.clone(), hops_left).0)
    }

    /// Archive frames: the plane's archive, or a flow of the next server's.
    fn archive_at(
        self: &Arc<Self>,
        target: &Target,
        start: ArchiveStart,
        speed: f64,
        until_us: Option<i64>,
        hops_left: u8,
    ) -> Option<Flow> {
        if let Some(flow) = self.plane.archive(target, start, speed, until_us) {
            return Some(flow);
        }
        key_of(target)?;
        let start = match start {
            ArchiveStart::Keyframe(t) => Start::Keyframe(t),
            ArchiveStart::After(t) => Start::After(t),
        };
        let (tx, rx) = mpsc::channel(ARCHIVE_QUEUE_FRAMES);
        let me = self.clone();
        let target = Target { speed, ..target.clone() };
        tokio::spawn(async move {
            let request = RequestShape { start, speed, until_us };
            match me.upstream_with(&target, request, hops_left).await {
                Ok((mut rd, _wr, _)) => forward(&mut rd, &tx).await,
                Err(e) => {
                    tracing::debug!(camera = %target.camera, error = %e, "no archive upstream")
                }
            }
        });
        Some(rx)
    }

    /// The relay of a live stream, started if there is none: a viewer's queue of it and its
    /// description to come.
    fn relay(
        self: &Arc<Self>,
        key: StreamKey,
        camera: String,
        hops_left: u8,
    ) -> (Flow, watch::Receiver<Option<Option<StreamInfo>>>) {
        let mut relays = lock(&self.relays);
        if let Some(r) = relays.get(&key) {
            return (r.feed.subscribe(), r.info.clone());
        }
        let feed = LiveFeed::new();
        let (info_tx, info) = watch::channel(None);
        let viewer = feed.subscribe();
        relays.insert(key, Relay { feed: feed.clone(), info: info.clone() });
        self.plane.relay.relays_open.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        tokio::spawn(async move { me.run_relay(key, camera, feed, info_tx, hops_left).await });
        (viewer, info)
    }

    /// Feeds a relay until it has had no viewers for [`RELAY_IDLE`]: from upstream, or from
    /// this server's own feed once it records the camera (a failover brought it here). A
    /// broken upstream is asked again, along the route of the moment, so viewers go on from
    /// the camera's new recorder; after [`RELAY_GIVE_UP`] without a source the relay ends,
    /// and so do its viewers' sessions.
    async fn run_relay(
        self: Arc<Self>,
        key: StreamKey,
        camera: String,
        feed: LiveFeed,
        info: watch::Sender<Option<Option<StreamInfo>>>,
        hops_left: u8,
    ) {
        let target = Target { camera, stream: key.1, pos_us: None, speed: 1.0 };
        let mut times = RelayTimes::new();
        let mut retry = Duration::from_millis(100);
        loop {
            if let Some(mut local) = self.plane.live(&target) {
                if let Some(described) = self.plane.info(&target).await {
                    info.send_replace(Some(Some(described)));
                }
                while let Some(frame) = local.recv().await {
                    if !times.feed(&feed, frame) {
                        break;
                    }
                }
            } else {
                match self.upstream(&target, Start::Live, hops_left).await {
                    Ok((mut rd, _wr, described)) => {
                        info.send_replace(Some(Some(described)));
                        retry = Duration::from_millis(100);
                        pump(&mut rd, |frame| times.feed(&feed, frame)).await;
                    }
                    Err(UpstreamError::NotFound | UpstreamError::TooManyHops) => {
                        info.send_replace(Some(None));
                    }
                    Err(e) => {
                        tracing::debug!(camera = %target.camera, error = %e, "relay upstream")
                    }
                }
            }
            let viewers = feed.viewers();
            if viewers > 0 {
                times.idle_since = tokio::time::Instant::now();
            }
            let given_up = times.fed_at.elapsed() >= RELAY_GIVE_UP;
            {
                let mut relays = lock(&self.relays);
                if (viewers == 0 && times.idle_since.elapsed() >= RELAY_IDLE) || given_up {
                    relays.remove(&key);
                    self.plane.relay.relays_open.fetch_sub(1, Ordering::Relaxed);
                    if given_up && viewers > 0 {
                        tracing::info!(camera = %target.camera, viewers, "no source for the relayed camera; its viewers' sessions end");
                    }
                    return;
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    /// Opens a flow at the next server toward the camera's recorder.
    async fn upstream(
        &self,
        target: &Target,
        start: Start,
        hops_left: u8,
    ) -> Result<(SealedReader, SealedWriter, StreamInfo), UpstreamError> {
        let shape = RequestShape { start, speed: target.speed, until_us: None };
        self.upstream_with(target, shape, hops_left).await
    }

    async fn upstream_with(
        &self,
        target: &Target,
        shape: RequestShape,
        hops_left: u8,
    ) -> Result<(SealedReader, SealedWriter, StreamInfo), UpstreamError> {
        if hops_left == 0 {
            return Err(UpstreamError::TooManyHops);
        }
        let camera: CameraId = target.camera.parse().map_err(|_| UpstreamError::NotFound)?;
        let (addresses, keys) = self
            .handle
            .read(move |n| {
                let recorder = n.recorder_of(camera)?;
                let via = n.route_to(recorder)?.via;
                let record = n.servers().find(|(id, _)| *id == via)?.1;
                let (pair, psk) = n.channel_keys();
                Some((record.addresses.clone(), Keys { pair, psk }))
            })
            .await
            .map_err(|_| UpstreamError::Stopped)?
            .ok_or(UpstreamError::NoRoute)?;
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, async {
            let stream = dial(&addresses, &keys).await?;
            let (mut rd, mut wr) = sealed::split(stream.0, stream.1);
            let request = Request {
                camera: target.camera.clone(),
                stream: target.stream,
                start: shape.start,
                speed: shape.speed,
                until_us: shape.until_us,
                hops_left: hops_left - 1,
            };
            wr.request(&request).await?;
            match rd.message().await? {
                Message::Info { codec, parameter_sets } => {
                    let title = target.camera.clone();
                    Ok((rd, wr, StreamInfo { codec, parameter_sets, title }))
                }
                Message::NotFound => Err(UpstreamError::NotFound),
                _ => Err(UpstreamError::OutOfTurn),
            }
        });
        let opened = opened.await.map_err(|_| UpstreamError::Timeout)?;
        if opened.is_ok() {
            self.plane.relay.upstreams_opened_total.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    /// Serves one media channel a peer opened: checks that the peer is a server of this
    /// system, reads its request and sends the flow until it ends or the peer goes away.
    pub async fn serve_channel(self: Arc<Self>, channel: MediaChannel) {
        let key = channel.peer_key;
        let member = self
            .handle
            .read(move |n| n.servers().any(|(id, _)| n.pinned_key(id) == Some(key)))
            .await
            .unwrap_or(false);
        if !member {
            tracing::debug!("a media channel from a key of no server of this system was closed");
            return;
        }
        let (mut rd, mut wr) = sealed::split(channel.stream, channel.transport);
        let request = match tokio::time::timeout(UPSTREAM_ANSWER, rd.request()).await {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => return tracing::debug!(error = %e, "a media channel's request"),
            Err(_) => return tracing::debug!("a media channel sent no request"),
        };
        let hops = request.hops_left;
        let pos_us = match request.start {
            Start::Keyframe(t) | Start::After(t) => Some(t),
            Start::Describe | Start::Live => None,
        };
        let target =
            Target { camera: request.camera, stream: request.stream, pos_us, speed: request.speed };
        let answer = match self.info_at(&target, hops).await {
            Some(info) => Message::Info { codec: info.codec, parameter_sets: info.parameter_sets },
            None => Message::NotFound,
        };
        let found = matches!(answer, Message::Info { .. });
        if wr.send(&answer).await.is_err() || !found {
            return;
        }
        let flow = match request.start {
            Start::Describe => return,
            Start::Live => self.live_at(&target, hops),
            Start::Keyframe(t) => self
                .archive_at(
                    &target,
                    ArchiveStart::Keyframe(t),
                    request.speed,
                    request.until_us,
                    hops,
                )
                .or_else(|| self.live_at(&target, hops)),
            Start::After(t) => self
                .archive_at(&target, ArchiveStart::After(t), request.speed, request.until_us, hops)
                .or_else(|| self.live_at(&target, hops)),
        };
        let Some(mut flow) = flow else { return };
        self.plane.relay.flows_to_servers.fetch_add(1, Ordering::Relaxed);
        self.plane.relay.flows_to_servers_total.fetch_add(1, Ordering::Relaxed);
        let sent = send_flow(&mut flow, &mut rd, &mut wr).await;
        self.plane.relay.flows_to_servers.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = sent {
            tracing::debug!(camera = %target.camera, error = %e, "a flow to a server ended");
        }
    }
}

/// Accepts media channels from the driver until it stops.
pub async fn accept_channels(mut channels: mpsc::Receiver<MediaChannel>, media: Arc<HiveMedia>) {
    while let Some(channel) = channels.recv().await {
        tokio::spawn(media.clone().serve_channel(channel));
    }
}

/// When a relay last had a viewer and last had a frame.
struct RelayTimes {
    idle_since: tokio::time::Instant,
    fed_at: tokio::time::Instant,
}

impl RelayTimes {
    fn new() -> RelayTimes {
        let now = tokio::time::Instant::now();
        RelayTimes { idle_since: now, fed_at: now }
    }

    /// Publishes a frame to the relay's viewers; whether the relay is still wanted.
    fn feed(&mut self, feed: &LiveFeed, frame: Frame) -> bool {
        feed.publish(frame);
        self.fed_at = tokio::time::Instant::now();
        if feed.viewers() > 0 {
            self.idle_since = self.fed_at;
        }
        self.idle_since.elapsed() < RELAY_IDLE
    }
}

/// What an upstream flow is asked for, besides the stream.
#[derive(Clone, Copy)]
struct RequestShape {
    start: Start,
    speed: f64,
    until_us: Option<i64>,
}

fn key_of(target: &Target) -> Option<StreamKey> {
    Some((target.camera.parse().ok()?, target.stream))
}

/// Connects to the first of `addresses` that answers and runs the media handshake.
async fn dial(
    addresses: &[hive_core::ids::PeerAddr],
    keys: &Keys,
) -> Result<(Box<dyn MediaStream>, channel::Transport), UpstreamError> {
    let mut last = UpstreamError::NoRoute;
    for address in addresses {
        let stream = match tokio::net::TcpStream::connect(address.0.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                last = UpstreamError::Channel(ChannelError::Io(e));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut stream: Box<dyn MediaStream> = Box::new(stream);
        let role = Role::Initiator(ChannelKind::Media);
        match channel::handshake(&mut stream, role, keys, &Entropy::Os, 0).await {
            Ok((transport, _)) => return Ok((stream, transport)),
            Err(e) => last = UpstreamError::Channel(e),
        }
    }
    Err(last)
}

/// Reads frames from an upstream into `take` until the flow ends, the upstream stays silent
/// for [`UPSTREAM_SILENCE`], or `take` says to stop.
async fn pump(rd: &mut SealedReader, mut take: impl FnMut(Frame) -> bool) {
    loop {
        match tokio::time::timeout(UPSTREAM_SILENCE, rd.message()).await {
            Ok(Ok(Message::Frame(frame))) => {
                if !take(frame) {
                    return;
                }
            }
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Forwards an archive flow's frames to its one client, as fast as the client takes them
/// (the upstream paces them).
async fn forward(rd: &mut SealedReader, to: &mpsc::Sender<Frame>) {
    while let Ok(Ok(Message::Frame(frame))) =
        tokio::time::timeout(UPSTREAM_SILENCE, rd.message()).await
    {
        if to.send(frame).await.is_err() {
            return;
        }
    }
}

/// Sends a flow's frames to a peer server, coalesced into large writes, until the flow ends
/// (then `End`) or the peer closes the channel.
async fn send_flow(
    flow: &mut Flow,
    rd: &mut SealedReader,
    wr: &mut SealedWriter,
) -> Result<(), SealedError> {
    loop {
        tokio::select! {
            frame = flow.recv() => {
                let Some(frame) = frame else {
                    return wr.send(&Message::End).await;
                };
                wr.queue(&Message::Frame(frame));
                while wr.queued() < WRITE_BATCH_BYTES {
                    let Ok(frame) = flow.try_recv() else { break };
                    wr.queue(&Message::Frame(frame));
                }
                wr.flush().await?;
            }
            // The asking side sends nothing after its request: any read is the end.
            _ = rd.message() => return Ok(()),
        }
    }
}

impl Media for HiveMedia {
    async fn info(&self, target: &Target) -> Option<StreamInfo> {
        // `Media` takes `&self`; relays need an owner that outlives the request.
        let me = self.arc()?;
        me.info_at(target, HOPS_MAX).await
    }

    fn live(&self, target: &Target) -> Option<Flow> {
        self.arc()?.live_at(target, HOPS_MAX)
    }

    fn archive(
        &self,
        target: &Target,
        start: ArchiveStart,
        speed: f64,
        until_us: Option<i64>,
    ) -> Option<Flow> {
        self.arc()?.archive_at(target, start, speed, until_us, HOPS_MAX)
    }

    async fn authorize(&self, request: AuthRequest, peer: std::net::IpAddr) -> Access {
        self.plane.authorize(request, peer).await
    }

    fn now_us(&self) -> i64 {
        self.plane.now_us()
    }
}
