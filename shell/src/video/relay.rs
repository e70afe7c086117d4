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

use super::callbacks::Callbacks;
use super::feed::LiveFeed;
use super::plane::VideoPlane;
use super::sealed::{self, SealedError, SealedReader, SealedWriter};
use super::status::StreamKey;
use crate::driver::channel::{self, ChannelError, Entropy, Keys, Role};
use crate::driver::{MediaChannel, MediaStream};
use crate::rtsp::{Access, ArchiveStart, AuthRequest, Flow, Media};
use crate::server::handle::NodeHandle;
use hive_core::ids::CameraId;
use hive_core::ids::ServerId;
use hive_core::node::{ChannelKind, HistorySpan, MediaHop};
use hive_media::frame::Frame;
use hive_media::relay::{Message, Opening, Request, Start};
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};

/// Media channels served at once: a bound on what even members of the system can make this
/// server hold.
pub const MEDIA_CHANNELS_MAX: usize = 1024;
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
/// How long dialling one address of the next server may take before the next one is tried
/// (or the server is asked to dial back), well within [`UPSTREAM_ANSWER`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A position this close after the start of a span whose server recorded an earlier span may
/// have its keyframe-before in that earlier span: it starts at the next keyframe instead.
const SPAN_START_US: i64 = 3_000_000;
/// How far past its recorded end a span of the history is still asked for frames: the end
/// of a dead server's span is when the others last heard of it, which may be before its last
/// frame by the failover hold time and more.
const SPAN_END_SLACK_US: i64 = 10_000_000;
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
    /// Too many asks for media channels back are waiting.
    #[error("too many asks for media channels back are waiting")]
    Busy,
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
    /// Media channels this server dialled back since start, asked by a server that could not
    /// dial it.
    pub channels_dialled_back_total: AtomicU64,
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
    /// This server.
    server: ServerId,
    plane: Arc<VideoPlane>,
    handle: NodeHandle,
    relays: Mutex<BTreeMap<StreamKey, Relay>>,
    /// Media channels asked of neighbours that dial back.
    callbacks: Callbacks,
    /// Counters for `/metrics`.
    pub stats: RelayStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HiveMedia {
    /// Serves `plane`'s streams and, through the node behind `handle`, everyone else's;
    /// `server` is this server.
    pub fn new(plane: Arc<VideoPlane>, handle: NodeHandle, server: ServerId) -> Arc<HiveMedia> {
        Arc::new_cyclic(|me| HiveMedia {
            me: me.clone(),
            server,
            plane,
            handle,
            relays: Mutex::default(),
            callbacks: Callbacks::default(),
            stats: RelayStats::default(),
        })
    }

    /// Live relays open now (one upstream each).
    pub fn relays_open(&self) -> usize {
        lock(&self.relays).len()
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
        // A camera the system does not have is a 404 at once: no relay is started for it.
        // (One it has but nobody records yet gets a relay, which waits for its recorder.)
        let camera = key.0;
        let known = self.handle.read(move |n| n.cameras().any(|(id, _)| id == camera)).await;
        if !known.unwrap_or(false) {
            return None;
        }
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

    /// Archive frames from `start`: the spans of the camera's history played one after the
    /// other, each from the server that recorded it (this one's archive, or a flow through
    /// the hive), so a camera that moved between servers plays as one stream with gaps only
    /// where nothing was recorded. Without history (nothing recorded yet), the local archive
    /// or the recorder's.
    fn archive_at(
        self: &Arc<Self>,
        target: &Target,
        start: ArchiveStart,
        speed: f64,
        until_us: Option<i64>,
        hops_left: u8,
    ) -> Option<Flow> {
        let camera: CameraId = target.camera.parse().ok()?;
        let (tx, rx) = mpsc::channel(ARCHIVE_QUEUE_FRAMES);
        let me = self.clone();
        let target = Target { speed, ..target.clone() };
        let request = Requested { start, speed, until_us, hops_left };
        tokio::spawn(async move { me.stitch(camera, target, request, tx).await });
        Some(rx)
    }

    /// Archive frames of `server`'s archive (the camera's recorder's if `None`): this
    /// server's own, or through the hive. `None` when this server was asked and holds none.
    fn archive_of(
        self: &Arc<Self>,
        target: &Target,
        request: Requested,
        server: Option<ServerId>,
    ) -> Option<Flow> {
        let Requested { start, speed, until_us, hops_left } = request;
        if server.is_none_or(|s| s == self.server) {
            let local = self.plane.archive(target, start, speed, until_us);
            if local.is_some() || server.is_some() {
                return local;
            }
        }
        let (tx, rx) = mpsc::channel(ARCHIVE_QUEUE_FRAMES);
        let me = self.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let shape = RequestShape { start: start_of(start), speed, until_us };
            match me.upstream_with(&target, shape, hops_left, server).await {
                Ok((mut rd, _wr, _)) => {
                    forward(&mut rd, &tx, &mut Sent::default()).await;
                }
                Err(e) => {
                    tracing::debug!(camera = %target.camera, ?server, error = %e, "no archive flow")
                }
            }
        });
        Some(rx)
    }

    /// Plays the history spans from `request.start` on, into `to`.
    async fn stitch(
        self: Arc<Self>,
        camera: CameraId,
        target: Target,
        request: Requested,
        to: mpsc::Sender<Frame>,
    ) {
        let spans = self.handle.read(move |n| n.camera_history(camera)).await.unwrap_or_default();
        let plan = Stitch::new(&spans, request.until_us);
        let mut at = request.start;
        // The time whose span plays next: only grows, by a whole span each turn.
        let mut next_us = at.time_us();
        let mut sent = Sent::default();
        while let Some(segment) = plan.segment(next_us) {
            // A span starts with the first keyframe its server recorded in it; within one,
            // `at` says where — but where the same server recorded an earlier span, the
            // keyframe before a position near the span's start may be of that span.
            // Two servers stamped the frames around a hand-over each with its own clock
            // mapping: the next span starts a whole frame interval after the last frame sent,
            // so players never see two frames closer than the camera sends them.
            let from = match at {
                _ if segment.from_us > at.time_us() => {
                    ArchiveStart::KeyframeFrom(segment.from_us.max(sent.next_due_us()))
                }
                ArchiveStart::Keyframe(t)
                    if segment.after_own_span && t < segment.from_us + SPAN_START_US =>
                {
                    ArchiveStart::KeyframeFrom(t)
                }
                other => other,
            };
            let span = Requested { start: from, until_us: segment.until_us, ..request };
            let ended = match self.archive_of(&target, span, Some(segment.server)) {
                Some(mut flow) => forward_flow(&mut flow, &to, &mut sent).await,
                None => Forwarded::SourceEnded,
            };
            match (ended, segment.until_us) {
                (Forwarded::ClientGone, _) | (_, None) => return,
                // On with the span after this one (or the end the client asked for).
                (Forwarded::SourceEnded, Some(until)) => {
                    next_us = until;
                    at = ArchiveStart::After(sent.last_us.unwrap_or(until - 1).max(until - 1));
                }
            }
        }
        if spans.is_empty() {
            // Nothing in the history (a camera recorded before it was kept): the local
            // archive, else the recorder's.
            if let Some(mut flow) = self.archive_of(&target, request, None) {
                forward_flow(&mut flow, &to, &mut Sent::default()).await;
            }
        }
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
        self.upstream_with(target, shape, hops_left, None).await
    }

    /// Opens a flow at the next server toward `toward` (the camera's recorder if `None`).
    async fn upstream_with(
        &self,
        target: &Target,
        shape: RequestShape,
        hops_left: u8,
        toward: Option<ServerId>,
    ) -> Result<(SealedReader, SealedWriter, StreamInfo), UpstreamError> {
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, async {
            let (mut rd, wr) = self.ask(target, shape, hops_left, toward).await?;
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
            self.stats.upstreams_opened_total.fetch_add(1, Ordering::Relaxed);
        }
        opened
    }

    /// Opens a media channel to the next server toward `toward` (the camera's recorder if
    /// `None`) and sends the request.
    async fn ask(
        &self,
        target: &Target,
        shape: RequestShape,
        hops_left: u8,
        toward: Option<ServerId>,
    ) -> Result<(SealedReader, SealedWriter), UpstreamError> {
        if hops_left == 0 {
            return Err(UpstreamError::TooManyHops);
        }
        let camera: CameraId = target.camera.parse().map_err(|_| UpstreamError::NotFound)?;
        let (hop, keys, via_key) = self
            .handle
            .read(move |n| {
                let server = toward.or_else(|| n.recorder_of(camera))?;
                let hop = n.media_hop(server)?;
                let via = match &hop {
                    MediaHop::Dial { via, .. } | MediaHop::Callback { via } => *via,
                };
                let (pair, psk) = n.channel_keys();
                Some((hop, Keys { pair, psk }, n.pinned_key(via)))
            })
            .await
            .map_err(|_| UpstreamError::Stopped)?
            .ok_or(UpstreamError::NoRoute)?;
        let (rd, mut wr) = match hop {
            MediaHop::Dial { via, addresses } => match dial(&addresses, &keys).await {
                Ok((stream, transport)) => sealed::split(stream, transport),
                // Its addresses changed since we dialled its link, say: it may still dial us.
                Err(e) => {
                    tracing::debug!(%via, error = %e, "no media channel dialled; asking back");
                    self.channel_back(via, via_key).await?
                }
            },
            // The neighbour opened its link to us and may be behind NAT: it dials back.
            MediaHop::Callback { via } => self.channel_back(via, via_key).await?,
        };
        let request = Request {
            camera: target.camera.clone(),
            stream: target.stream,
            start: shape.start,
            speed: shape.speed,
            until_us: shape.until_us,
            hops_left: hops_left - 1,
            server: toward.map(|s| s.0),
        };
        wr.request(&request).await?;
        Ok((rd, wr))
    }

    /// Asks neighbour `via` (link key `via_key`) over its link to dial a media channel back,
    /// and waits for it (the caller bounds the wait).
    async fn channel_back(
        &self,
        via: ServerId,
        via_key: Option<hive_core::keys::PublicKey>,
    ) -> Result<(SealedReader, SealedWriter), UpstreamError> {
        let via_key = via_key.ok_or(UpstreamError::NoRoute)?;
        let waiting = self.callbacks.ask(via_key).map_err(|_| UpstreamError::Busy)?;
        self.handle.ask_media_dial(via, waiting.token()).map_err(|_| UpstreamError::Stopped)?;
        waiting.channel().await.ok_or(UpstreamError::Stopped)
    }

    /// Recorded ranges of a camera stream in `[from_us, to_us]` across the hive: this
    /// server's and those of every server its history names, merged, oldest first. A server
    /// that cannot be asked is left out (its ranges are missing, not an error).
    pub async fn ranges(
        self: &Arc<Self>,
        camera: CameraId,
        stream: u8,
        from_us: i64,
        to_us: i64,
    ) -> Vec<(i64, i64)> {
        let by_server = self.ranges_by_server(camera, stream, from_us, to_us).await;
        merge_ranges(by_server.into_iter().flat_map(|(_, ranges)| ranges).collect())
    }

    /// The camera's recorded ranges on each server of its history (and this one), as each
    /// lists them: who recorded what, for a timeline that tells servers apart.
    pub async fn ranges_by_server(
        self: &Arc<Self>,
        camera: CameraId,
        stream: u8,
        from_us: i64,
        to_us: i64,
    ) -> Vec<(ServerId, Vec<(i64, i64)>)> {
        let history = self.handle.read(move |n| n.camera_history(camera)).await;
        let mut servers: Vec<ServerId> =
            history.unwrap_or_default().iter().map(|s| s.server).collect();
        servers.push(self.server);
        servers.sort();
        servers.dedup();
        let target = Target { camera: camera.to_string(), stream, pos_us: None, speed: 1.0 };
        let mut by_server = Vec::new();
        for server in servers {
            let ranges = self.ranges_of(&target, from_us, to_us, server, HOPS_MAX).await;
            if !ranges.is_empty() {
                by_server.push((server, ranges));
            }
        }
        by_server
    }

    /// One server's recorded ranges: this one's from its archive, another's asked through
    /// the hive.
    async fn ranges_of(
        &self,
        target: &Target,
        from_us: i64,
        to_us: i64,
        server: ServerId,
        hops_left: u8,
    ) -> Vec<(i64, i64)> {
        if server == self.server {
            let camera = target.camera.parse().ok();
            return camera.map_or_else(Vec::new, |camera| {
                let ranges = self.plane.archive.ranges(camera, target.stream, from_us, to_us);
                ranges.into_iter().map(|r| (r.from_us, r.to_us)).collect()
            });
        }
        let shape =
            RequestShape { start: Start::Ranges(from_us), speed: 1.0, until_us: Some(to_us) };
        let asked = tokio::time::timeout(UPSTREAM_ANSWER, async {
            let (mut rd, _wr) = self.ask(target, shape, hops_left, Some(server)).await?;
            match rd.message().await? {
                Message::Ranges(ranges) => Ok(ranges),
                _ => Err(UpstreamError::OutOfTurn),
            }
        });
        match asked.await {
            Ok(Ok(ranges)) => ranges,
            Ok(Err(e)) => {
                tracing::debug!(camera = %target.camera, %server, error = %e, "ranges not had");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
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
        let opened = async {
            if let Some(token) = channel.callback {
                // Dialled back because the peer cannot dial us: say which ask this answers.
                self.stats.channels_dialled_back_total.fetch_add(1, Ordering::Relaxed);
                wr.callback(token).await?;
                return Ok(rd.request().await?);
            }
            match rd.opening().await? {
                Opening::Request(request) => Ok::<_, Opened>(request),
                Opening::Callback { token } => Err(Opened::Callback(token)),
            }
        };
        let request = match tokio::time::timeout(UPSTREAM_ANSWER, opened).await {
            Ok(Ok(request)) => request,
            Ok(Err(Opened::Callback(token))) => {
                if let Err(e) = self.callbacks.deliver(token, key, (rd, wr)) {
                    tracing::debug!(error = %e, "a media channel back was closed");
                }
                return;
            }
            Ok(Err(Opened::Broken(e))) => {
                return tracing::debug!(error = %e, "a media channel's opening")
            }
            Err(_) => return tracing::debug!("a media channel sent no request"),
        };
        let hops = request.hops_left;
        if let Start::Ranges(from_us) = request.start {
            let target =
                Target { camera: request.camera, stream: request.stream, pos_us: None, speed: 1.0 };
            let server = request.server.map_or(self.server, ServerId);
            let to_us = request.until_us.unwrap_or(i64::MAX);
            let ranges = self.ranges_of(&target, from_us, to_us, server, hops).await;
            let _ = wr.send(&Message::Ranges(ranges)).await;
            return;
        }
        let pos_us = match request.start {
            Start::Keyframe(t) | Start::After(t) | Start::KeyframeFrom(t) => Some(t),
            Start::Describe | Start::Live | Start::Ranges(_) => None,
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
        let archive_start = match request.start {
            Start::Describe | Start::Ranges(_) => return,
            Start::Live => None,
            Start::Keyframe(t) => Some(ArchiveStart::Keyframe(t)),
            Start::After(t) => Some(ArchiveStart::After(t)),
            Start::KeyframeFrom(t) => Some(ArchiveStart::KeyframeFrom(t)),
        };
        let (speed, until_us) = (request.speed, request.until_us);
        let flow = match (archive_start, request.server.map(ServerId)) {
            (None, _) => self.live_at(&target, hops),
            // Stitched playback asks each span of the history of the server that recorded it.
            (Some(start), Some(server)) => {
                let request = Requested { start, speed, until_us, hops_left: hops };
                self.archive_of(&target, request, Some(server))
            }
            (Some(start), None) => self.archive_at(&target, start, speed, until_us, hops),
        };
        let Some(mut flow) = flow else { return };
        self.stats.flows_to_servers.fetch_add(1, Ordering::Relaxed);
        self.stats.flows_to_servers_total.fetch_add(1, Ordering::Relaxed);
        let sent = send_flow(&mut flow, &mut rd, &mut wr).await;
        self.stats.flows_to_servers.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = sent {
            tracing::debug!(camera = %target.camera, error = %e, "a flow to a server ended");
        }
    }
}

/// How a media channel's opening went, when it brought no request to serve.
enum Opened {
    /// The channel answers an ask of ours for a channel back.
    Callback(u128),
    /// It broke or carried something else.
    Broken(SealedError),
}

impl From<SealedError> for Opened {
    fn from(e: SealedError) -> Opened {
        Opened::Broken(e)
    }
}

/// Accepts media channels from the driver until it stops; at most [`MEDIA_CHANNELS_MAX`] are
/// served at once, a channel beyond that is closed.
pub async fn accept_channels(mut channels: mpsc::Receiver<MediaChannel>, media: Arc<HiveMedia>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MEDIA_CHANNELS_MAX));
    while let Some(channel) = channels.recv().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!("{MEDIA_CHANNELS_MAX} media channels served already; one closed");
            continue;
        };
        let media = media.clone();
        tokio::spawn(async move {
            media.serve_channel(channel).await;
            drop(slot);
        });
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
        let connect = tokio::net::TcpStream::connect(address.0.as_str());
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = UpstreamError::Channel(ChannelError::Io(e));
                continue;
            }
            Err(_) => {
                let timed_out = std::io::ErrorKind::TimedOut.into();
                last = UpstreamError::Channel(ChannelError::Io(timed_out));
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

/// Ranges sorted and joined where they overlap or touch.
pub fn merge_ranges(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// How forwarding a flow to a client ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    /// The flow ended, or its source went away or fell silent.
    SourceEnded,
    /// The client went away.
    ClientGone,
}

/// Forwards an upstream archive flow's frames to its one client, as fast as the client takes
/// them (the upstream paces them), noting the last frame's time.
async fn forward(rd: &mut SealedReader, to: &mpsc::Sender<Frame>, sent: &mut Sent) -> Forwarded {
    while let Ok(Ok(Message::Frame(frame))) =
        tokio::time::timeout(UPSTREAM_SILENCE, rd.message()).await
    {
        sent.note(frame.time_us);
        if to.send(frame).await.is_err() {
            return Forwarded::ClientGone;
        }
    }
    Forwarded::SourceEnded
}

/// Forwards a local flow's frames to a client, noting the last frame's time.
async fn forward_flow(flow: &mut Flow, to: &mpsc::Sender<Frame>, sent: &mut Sent) -> Forwarded {
    while let Some(frame) = flow.recv().await {
        sent.note(frame.time_us);
        if to.send(frame).await.is_err() {
            return Forwarded::ClientGone;
        }
    }
    Forwarded::SourceEnded
}

/// The frames sent to a client so far: the last one's time and the interval before it.
#[derive(Debug, Default, Clone, Copy)]
struct Sent {
    last_us: Option<i64>,
    interval_us: i64,
}

impl Sent {
    fn note(&mut self, time_us: i64) {
        if let Some(last) = self.last_us {
            self.interval_us = (time_us - last).clamp(0, 1_000_000);
        }
        self.last_us = Some(time_us);
    }

    /// The earliest time the next frame may have: a frame interval after the last.
    fn next_due_us(&self) -> i64 {
        self.last_us.map_or(i64::MIN, |last| last + self.interval_us.max(1))
    }
}

/// What a client asked of the archive.
#[derive(Clone, Copy)]
struct Requested {
    start: ArchiveStart,
    speed: f64,
    until_us: Option<i64>,
    hops_left: u8,
}

fn start_of(start: ArchiveStart) -> Start {
    match start {
        ArchiveStart::Keyframe(t) => Start::Keyframe(t),
        ArchiveStart::After(t) => Start::After(t),
        ArchiveStart::KeyframeFrom(t) => Start::KeyframeFrom(t),
    }
}

/// A stretch of playback served by one server: its span of the history, cut where the next
/// span begins (spans overlap while a camera changes hands) and where the client's range ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    server: ServerId,
    /// Where the span begins, µs.
    from_us: i64,
    /// Where this stretch ends, µs; `None` goes on into live.
    until_us: Option<i64>,
    /// The server recorded an earlier span of the camera too.
    after_own_span: bool,
}

/// The history spans of a camera, in µs, and the end of the range a client asked for.
struct Stitch {
    /// (server, start µs, end µs), oldest start first.
    spans: Vec<(ServerId, i64, Option<i64>)>,
    until_us: Option<i64>,
}

impl Stitch {
    fn new(spans: &[HistorySpan], until_us: Option<i64>) -> Stitch {
        let us = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
        Stitch {
            spans: spans.iter().map(|s| (s.server, us(s.start_ms), s.end_ms.map(us))).collect(),
            until_us,
        }
    }

    /// The stretch that plays time `at_us`: the latest-begun span covering it, else the next
    /// span to begin (a gap is skipped); `None` past the last span or the client's end.
    ///
    /// The end of a span whose server died is an estimate (when the others last heard of
    /// it), so a span is taken to cover up to [`SPAN_END_SLACK_US`] past it, and plays until
    /// the next span begins: the server's archive itself says where its frames end.
    fn segment(&self, at_us: i64) -> Option<Segment> {
        if self.until_us.is_some_and(|until| at_us >= until) {
            return None;
        }
        let covers = |start: i64, end: Option<i64>| {
            start <= at_us && end.is_none_or(|e| at_us < e.saturating_add(SPAN_END_SLACK_US))
        };
        let covering = self
            .spans
            .iter()
            .enumerate()
            .filter(|(_, &(_, start, end))| covers(start, end))
            .max_by_key(|(_, (_, start, _))| *start);
        let (i, &(server, from_us, _)) = match covering {
            Some(found) => found,
            None => self.spans.iter().enumerate().find(|(_, (_, start, _))| *start > at_us)?,
        };
        let next_start = self.spans[i + 1..].iter().map(|s| s.1).find(|&s| s > from_us);
        let until_us = [next_start, self.until_us].into_iter().flatten().min();
        let after_own_span = self.spans[..i].iter().any(|s| s.0 == server);
        Some(Segment { server, from_us, until_us, after_own_span })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(server: u128, start_ms: u64, end_ms: Option<u64>) -> HistorySpan {
        HistorySpan { server: ServerId(server), start_ms, end_ms }
    }

    fn segment(server: u128, from_ms: i64, until_ms: Option<i64>) -> Option<Segment> {
        Some(Segment {
            server: ServerId(server),
            from_us: from_ms * 1000,
            until_us: until_ms.map(|u| u * 1000),
            after_own_span: false,
        })
    }

    #[test]
    fn a_camera_that_failed_over_and_came_back_plays_each_span_from_its_server_in_turn() {
        // A recorded until it died (last heard at 100 s), B took over at 103 s until A came
        // back at 200 s; A records since, and B's span was closed at 201 s.
        let spans =
            [span(1, 0, Some(100_000)), span(2, 103_000, Some(201_000)), span(1, 200_000, None)];
        let plan = Stitch::new(&spans, None);
        // A plays until B began: A's archive says where its frames end (the end in the
        // history is only when B last heard of A).
        assert_eq!(plan.segment(50_000_000), segment(1, 0, Some(103_000)));
        assert_eq!(plan.segment(101_000_000), segment(1, 0, Some(103_000)));
        assert_eq!(plan.segment(103_000_000), segment(2, 103_000, Some(200_000)));
        // Where B's and A's spans overlap, the later-begun one plays: no frame twice. It is
        // A's second span: the keyframe before a position near its start may be of the first.
        let second = segment(1, 200_000, None).map(|s| Segment { after_own_span: true, ..s });
        assert_eq!(plan.segment(200_000_000), second);
        assert_eq!(plan.segment(500_000_000), second);
        // Before anything was recorded: the first span.
        assert_eq!(Stitch::new(&spans[1..], None).segment(0), segment(2, 103_000, Some(200_000)));
    }

    #[test]
    fn a_range_with_an_end_stops_there_and_past_the_last_span_nothing_plays() {
        let spans = [span(1, 0, Some(100_000)), span(2, 150_000, Some(300_000))];
        let plan = Stitch::new(&spans, Some(160_000_000));
        assert_eq!(plan.segment(10_000_000), segment(1, 0, Some(150_000)));
        // Well past A's end, before B's start: a gap, skipped to B.
        assert_eq!(plan.segment(120_000_000), segment(2, 150_000, Some(160_000)));
        assert_eq!(plan.segment(160_000_000), None);
        assert_eq!(Stitch::new(&spans, None).segment(311_000_000), None);
        assert_eq!(Stitch::new(&[], None).segment(0), None);
    }

    #[test]
    fn ranges_of_several_servers_merge_where_they_overlap_and_keep_their_gaps() {
        let merged = merge_ranges(vec![(50, 60), (0, 10), (5, 20), (30, 40), (40, 45)]);
        assert_eq!(merged, vec![(0, 20), (30, 45), (50, 60)]);
        assert_eq!(merge_ranges(Vec::new()), Vec::new());
    }
}
