//! Link tasks: per TCP connection, a handshake task that sets up the secure channel, then one
//! reader and one writer talking to the driver loop over channels, so a slow peer never blocks
//! the loop. The core hears of a link only once its channel is established.
//!
//! Every queue is bounded. Outbound, each link has a control and a bulk lane ([`lanes`]); the
//! loop never waits on them: a link whose lane is full is closed as too slow. Waiting would
//! stall every other link and the API, and dropping a frame would lose a push or a pull's
//! answer for good (the core does not resend them), whereas a closed link is dialled again
//! and its sync resumes from each side's `Have`. Inbound, the readers share one queue of
//! [`INBOUND_EVENTS_MAX`] events and wait for room, so a fast peer meets TCP back-pressure and
//! nothing read is dropped.

use super::channel::{self, ChannelError, Entropy, Keys, Role, Transport};
use super::lanes::{self, Inbox, Lane, Outbox, QueueError};
use super::{MonoClock, Net, TrafficStats};
use hive_core::ids::PeerAddr;
use hive_core::instant::MonoUs;
use hive_core::node::{ChannelInfo, ChannelKind, LinkId};
use hive_core::wire::{Message, MERGE_MESSAGE_LEN_MAX, MESSAGE_LEN_MAX};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Accepted connections still in their handshake at once; more are closed at once, so a
/// flood of half-open connections costs a bounded amount of memory.
pub const HALF_OPEN_MAX: usize = 64;
/// Events of all links waiting for the loop at most; a reader with none free waits.
pub const INBOUND_EVENTS_MAX: usize = 1_024;

/// What happened on the links.
pub enum LinkEvent {
    /// A link's channel is established (dialled or accepted).
    Opened {
        /// The new link.
        link: LinkId,
        /// The address dialled, for outbound links.
        dialed: Option<PeerAddr>,
        /// What the handshake established.
        channel: ChannelInfo,
    },
    /// A dial failed: no connection, or the handshake failed.
    DialFailed(PeerAddr),
    /// A message arrived, read from the socket at the monotonic time given.
    Message(LinkId, Message, MonoUs),
    /// A link ended: closed by the peer, broken, or closed for a malformed frame.
    Closed(LinkId, String),
}

/// An accepted media channel, after its handshake: the video plane's from here on.
pub struct MediaChannel {
    /// The connection.
    pub stream: Box<dyn MediaStream>,
    /// Its transport keys.
    pub transport: Transport,
    /// The peer's link key, proven by the handshake.
    pub peer_key: hive_core::keys::PublicKey,
    /// For a channel this server dialled back because the peer asked (it cannot dial us):
    /// the token to open it with. `None` for a channel the peer opened.
    pub callback: Option<u128>,
}

/// A connection a media channel runs on (TCP, or turmoil's in simulation).
pub trait MediaStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> MediaStream for T {}

/// Accepted media channels waiting for the video plane at most; more are closed.
pub const MEDIA_CHANNELS_QUEUED_MAX: usize = 64;

enum Raw {
    Established {
        link: LinkId,
        dialed: Option<PeerAddr>,
        channel: ChannelInfo,
    },
    /// An accepted media channel went to the video plane (or was closed): not a link.
    HandedOver(LinkId),
    HandshakeFailed {
        link: LinkId,
        dialed: Option<PeerAddr>,
        error: ChannelError,
    },
    Event(LinkEvent),
}

struct LinkTasks {
    outbox: Outbox,
    task: JoinHandle<()>,
    /// Whether the core knows of this link.
    open: bool,
}

/// The open links and their tasks.
pub struct Links<N: Net> {
    next: u64,
    open: BTreeMap<LinkId, LinkTasks>,
    events_tx: mpsc::Sender<Raw>,
    events_rx: mpsc::Receiver<Raw>,
    /// Links closed as too slow, to report to the core.
    too_slow: VecDeque<LinkId>,
    stats: Arc<TrafficStats>,
    entropy: Entropy,
    half_open: Arc<AtomicUsize>,
    mono: MonoClock,
    /// Where accepted media channels go; none: they are closed.
    media: Option<mpsc::Sender<MediaChannel>>,
    _net: std::marker::PhantomData<N>,
}

impl<N: Net> Links<N> {
    /// No links yet; `mono` stamps what link tasks read; accepted media channels go to
    /// `media`.
    pub fn new(
        stats: Arc<TrafficStats>,
        entropy: Entropy,
        mono: MonoClock,
        media: Option<mpsc::Sender<MediaChannel>>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::channel(INBOUND_EVENTS_MAX);
        Links {
            next: 0,
            open: BTreeMap::new(),
            events_tx,
            events_rx,
            too_slow: VecDeque::new(),
            stats,
            entropy,
            half_open: Arc::default(),
            mono,
            media,
            _net: std::marker::PhantomData,
        }
    }

    /// Takes an accepted connection, unless too many are still in their handshake.
    pub fn accept(&mut self, stream: N::Stream, from: SocketAddr, keys: Keys) {
        if self.half_open.load(Ordering::Relaxed) >= HALF_OPEN_MAX {
            tracing::warn!(%from, "too many connections in their handshake; closed a new one");
            self.stats.half_open_refused();
            return;
        }
        self.half_open.fetch_add(1, Ordering::Relaxed);
        let (link, (outbox, inbox), ctx) = self.new_link();
        let half_open = Arc::clone(&self.half_open);
        let task = tokio::spawn(async move {
            let established = ctx.handshake(stream, Role::Responder, keys).await;
            half_open.fetch_sub(1, Ordering::Relaxed);
            ctx.run(established, None, inbox).await;
        });
        self.open.insert(link, LinkTasks { outbox, task, open: false });
    }

    /// A new link's id, its lanes and what its tasks share.
    fn new_link(&mut self) -> (LinkId, (Outbox, Inbox), LinkContext) {
        self.next += 1;
        let link = LinkId(self.next);
        let ctx = LinkContext {
            link,
            events: self.events_tx.clone(),
            stats: Arc::clone(&self.stats),
            entropy: self.entropy.clone(),
            mono: self.mono,
            media: self.media.clone(),
            callback: None,
        };
        (link, lanes::lanes(), ctx)
    }

    /// Queues a message on its lane of a link; closes the link as too slow if that is full.
    pub fn send(&mut self, link: LinkId, msg: &Message) {
        let Some(l) = self.open.get(&link) else { return };
        let lane = Lane::of(msg);
        match l.outbox.push(lane, msg.encode()) {
            Ok(()) => {}
            Err(QueueError::Full(lane)) => {
                tracing::warn!(?link, ?lane, "closed a link too slow to take what we send");
                self.stats.link_too_slow();
                if let Some(l) = self.open.remove(&link) {
                    l.task.abort();
                    if l.open {
                        self.too_slow.push_back(link);
                    }
                }
            }
            // The link is ending; its `Closed` event is on the way.
            Err(QueueError::Closed) => {}
        }
    }

    /// Closes a link: queued frames are still written, then the connection shuts down.
    pub fn close(&mut self, link: LinkId) {
        if let Some(l) = self.open.remove(&link) {
            if !l.open {
                // Still in its handshake: nothing queued is owed to it.
                l.task.abort();
            }
            // Otherwise dropping the sender lets the writer drain and shut down, which ends
            // the reader too.
        }
    }

    /// Dials `to` in the background for a channel of `kind`.
    pub fn dial(
        &mut self,
        addr: PeerAddr,
        to: SocketAddr,
        kind: ChannelKind,
        timeout_ms: u64,
        keys: Keys,
    ) {
        self.spawn_dial(to, kind, timeout_ms, keys, Some(addr), None);
    }

    /// Dials a media channel back to a peer that asked for one with `token`: once its
    /// handshake is done it goes to the video plane like an accepted one. Never a link, and a
    /// failure is only logged (the asker's wait runs out).
    pub fn dial_media(&mut self, to: SocketAddr, token: u128, timeout_ms: u64, keys: Keys) {
        self.spawn_dial(to, ChannelKind::Media, timeout_ms, keys, None, Some(token));
    }

    /// Connects to `to` within `timeout_ms` and runs the handshake of `kind` in a task of its
    /// own; `dialed` is what the core is told it dialled, `callback` the token of a media
    /// channel dialled back.
    fn spawn_dial(
        &mut self,
        to: SocketAddr,
        kind: ChannelKind,
        timeout_ms: u64,
        keys: Keys,
        dialed: Option<PeerAddr>,
        callback: Option<u128>,
    ) {
        let (link, (outbox, inbox), mut ctx) = self.new_link();
        ctx.callback = callback;
        let task = tokio::spawn(async move {
            let connect = tokio::time::timeout(Duration::from_millis(timeout_ms), N::connect(to));
            let established = match connect.await {
                Ok(Ok(stream)) => ctx.handshake(stream, Role::Initiator(kind), keys).await,
                Ok(Err(e)) => Err(ChannelError::Io(e)),
                Err(_) => Err(ChannelError::Io(std::io::ErrorKind::TimedOut.into())),
            };
            ctx.run(established, dialed, inbox).await;
        });
        self.open.insert(link, LinkTasks { outbox, task, open: false });
    }

    /// The next event.
    pub async fn next_event(&mut self) -> LinkEvent {
        if let Some(link) = self.too_slow.pop_front() {
            return LinkEvent::Closed(link, "too slow".into());
        }
        loop {
            match self.events_rx.recv().await.expect("the sender lives in self") {
                Raw::Established { link, dialed, channel } => {
                    let Some(l) = self.open.get_mut(&link) else { continue };
                    l.open = true;
                    return LinkEvent::Opened { link, dialed, channel };
                }
                Raw::HandedOver(link) => {
                    self.open.remove(&link);
                }
                Raw::HandshakeFailed { link, dialed, error } => {
                    self.open.remove(&link);
                    match dialed {
                        Some(addr) => {
                            tracing::debug!(%addr, %error, "dial failed");
                            return LinkEvent::DialFailed(addr);
                        }
                        None => {
                            self.stats.handshake_failed();
                            tracing::debug!(?link, %error, "an accepted connection failed its handshake");
                        }
                    }
                }
                // Events of links closed meanwhile are stale.
                Raw::Event(LinkEvent::Message(link, ..) | LinkEvent::Closed(link, _))
                    if !self.open.get(&link).is_some_and(|l| l.open) => {}
                Raw::Event(LinkEvent::Closed(link, why)) => {
                    if let Some(l) = self.open.remove(&link) {
                        l.task.abort();
                    }
                    return LinkEvent::Closed(link, why);
                }
                Raw::Event(e) => return e,
            }
        }
    }
}

/// What one link's tasks share.
struct LinkContext {
    link: LinkId,
    events: mpsc::Sender<Raw>,
    stats: Arc<TrafficStats>,
    entropy: Entropy,
    mono: MonoClock,
    media: Option<mpsc::Sender<MediaChannel>>,
    /// A media channel dialled back: the token it opens with.
    callback: Option<u128>,
}

impl LinkContext {
    /// The channel's handshake, within [`channel::HANDSHAKE_TIMEOUT_MS`].
    async fn handshake<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        role: Role,
        keys: Keys,
    ) -> Result<(S, Transport, ChannelInfo), ChannelError> {
        let timeout = Duration::from_millis(channel::HANDSHAKE_TIMEOUT_MS);
        let shake = channel::handshake(&mut stream, role, &keys, &self.entropy, self.link.0);
        let (transport, info) =
            tokio::time::timeout(timeout, shake).await.unwrap_or(Err(ChannelError::Timeout))?;
        Ok((stream, transport, info))
    }

    /// Reports the handshake's outcome and, if it succeeded, runs the link until it ends.
    async fn run<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
        self,
        established: Result<(S, Transport, ChannelInfo), ChannelError>,
        dialed: Option<PeerAddr>,
        inbox: Inbox,
    ) {
        let link = self.link;
        match established {
            Err(error) if self.callback.is_some() => {
                tracing::debug!(%error, "a media channel back failed");
                let _ = self.events.send(Raw::HandedOver(link)).await;
            }
            Err(error) => {
                let _ = self.events.send(Raw::HandshakeFailed { link, dialed, error }).await;
            }
            Ok((stream, transport, channel)) if channel.kind == ChannelKind::Media => {
                // Video never reaches the node.
                let handed = MediaChannel {
                    stream: Box::new(stream),
                    transport,
                    peer_key: channel.peer_key,
                    callback: self.callback,
                };
                let taken = self.media.as_ref().is_some_and(|m| m.try_send(handed).is_ok());
                if !taken {
                    tracing::debug!("a media channel was closed: none wanted, or too many waiting");
                }
                let _ = self.events.send(Raw::HandedOver(link)).await;
            }
            Ok((stream, transport, channel)) => {
                let _ = self.events.send(Raw::Established { link, dialed, channel }).await;
                run_link(self, stream, transport, channel, inbox).await;
            }
        }
    }
}

/// Runs an established link: a writer that seals queued frames, control lane first, and a
/// reader that opens messages, until either ends.
async fn run_link<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    ctx: LinkContext,
    stream: S,
    transport: Transport,
    channel: ChannelInfo,
    inbox: Inbox,
) {
    let LinkContext { link, events, stats, mono, .. } = ctx;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let transport = Arc::new(transport);
    let writer_transport = Arc::clone(&transport);
    let writer_stats = Arc::clone(&stats);
    let writer = tokio::spawn(async move {
        let mut nonce = writer_transport.send_nonce;
        let seal = |frame: &[u8]| writer_transport.seal_frame(&mut nonce, frame).ok();
        lanes::write_frames(inbox, &mut wr, seal, &writer_stats).await;
    });
    let limit = match channel.kind {
        ChannelKind::Member => MESSAGE_LEN_MAX,
        ChannelKind::Merge => MERGE_MESSAGE_LEN_MAX,
        ChannelKind::Media => return, // handed over in `run`
    };
    let reading = read_frames(&mut rd, &transport, limit, link, &events, &stats, mono);
    let why = tokio::select! {
        why = reading => why,
        // Closed by us (frames drained), or a write failed.
        _ = writer => "closed".to_owned(),
    };
    let _ = events.send(Raw::Event(LinkEvent::Closed(link, why))).await;
}

async fn read_frames<R: AsyncRead + Unpin>(
    rd: &mut R,
    transport: &Transport,
    limit: usize,
    link: LinkId,
    events: &mpsc::Sender<Raw>,
    stats: &TrafficStats,
    mono: MonoClock,
) -> String {
    // When the bytes that completed the next message were read: its receive stamp.
    let mut read_at = MonoUs(0);
    let mut plain: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut sealed = Vec::with_capacity(channel::CHUNK_PLAIN_MAX + 16);
    let mut nonce = transport.recv_nonce;
    loop {
        loop {
            match Message::decode_within(&plain, limit) {
                Ok(Some((msg, used))) => {
                    plain.drain(..used);
                    let event = Raw::Event(LinkEvent::Message(link, msg, read_at));
                    // Waiting here stops reading the socket: TCP back-pressure on the peer.
                    if events.send(event).await.is_err() {
                        return "driver gone".into();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("malformed frame: {e}"),
            }
        }
        match channel::read_message(rd, usize::from(u16::MAX), &mut sealed).await {
            Ok(()) => {
                read_at = MonoUs(mono.now_us());
                stats.link_received(sealed.len() + 2);
                if let Err(e) = transport.open_into(nonce, &sealed, &mut plain) {
                    return format!("{e}");
                }
                nonce += 1;
            }
            Err(ChannelError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return "closed by peer".into()
            }
            Err(e) => return format!("read failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::TokioNet;
    use hive_core::store::ReplicaId;

    fn keys(seed: u64) -> Keys {
        Keys { pair: Entropy::Seeded(seed).generate_keypair(), psk: [7; 32] }
    }

    #[tokio::test]
    async fn a_link_whose_bulk_lane_fills_is_closed_as_too_slow_and_reported_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        // A peer that completes the handshake and then never reads.
        let peer = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            channel::handshake(&mut stream, Role::Responder, &keys(2), &Entropy::Seeded(4), 0)
                .await
                .unwrap();
            stream
        });
        let stats = Arc::new(TrafficStats::default());
        let mut links: Links<TokioNet> =
            Links::new(Arc::clone(&stats), Entropy::Seeded(3), MonoClock::new(), None);
        let addr = PeerAddr(to.to_string());
        links.dial(addr, to, ChannelKind::Member, 5_000, keys(1));
        let LinkEvent::Opened { link, .. } = links.next_event().await else {
            panic!("the link opens")
        };
        let _held = peer.await.unwrap();
        let origin = ReplicaId { server: hive_core::ids::ServerId(1), epoch: 0 };
        let writes = Message::Writes { origin, upto: 1, txns: Vec::new() };
        // Queued in one go, as one pass of the driver loop would, before the writer runs.
        for _ in 0..=lanes::BULK_FRAMES_MAX {
            links.send(link, &writes);
        }
        match links.next_event().await {
            LinkEvent::Closed(closed, why) => {
                assert_eq!((closed, why.as_str()), (link, "too slow"))
            }
            _ => panic!("the link is reported closed"),
        }
        assert_eq!(stats.read().links_too_slow, 1);
        // Sends to it afterwards are dropped quietly.
        links.send(link, &Message::Ping);
    }
}
