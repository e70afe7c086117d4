//! Link tasks: one reader and one writer per TCP connection, talking to the driver loop over
//! channels so a slow peer never blocks the loop.

use super::{Net, TrafficStats};
use hive_core::ids::PeerAddr;
use hive_core::node::LinkId;
use hive_core::wire::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What happened on the links.
pub enum LinkEvent {
    /// A dialled link is open.
    Opened {
        /// The new link.
        link: LinkId,
        /// The address dialled.
        dialed: Option<PeerAddr>,
    },
    /// A dial failed.
    DialFailed(PeerAddr),
    /// A message arrived.
    Message(LinkId, Message),
    /// A link ended: closed by the peer, broken, or closed for a malformed frame.
    Closed(LinkId, String),
}

enum Raw<S> {
    Dialed(PeerAddr, std::io::Result<S>),
    Event(LinkEvent),
}

struct LinkTasks {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
}

/// The open links and their tasks.
pub struct Links<N: Net> {
    next: u64,
    open: BTreeMap<LinkId, LinkTasks>,
    events_tx: mpsc::UnboundedSender<Raw<N::Stream>>,
    events_rx: mpsc::UnboundedReceiver<Raw<N::Stream>>,
    stats: Arc<TrafficStats>,
}

impl<N: Net> Links<N> {
    pub fn new(stats: Arc<TrafficStats>) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Links { next: 0, open: BTreeMap::new(), events_tx, events_rx, stats }
    }

    /// Starts the tasks of a new connection.
    pub fn add(&mut self, stream: N::Stream) -> LinkId {
        self.next += 1;
        let link = LinkId(self.next);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if wr.write_all(&frame).await.is_err() {
                    return;
                }
                stats.link_sent(frame.len());
            }
            let _ = wr.shutdown().await;
        });
        let events = self.events_tx.clone();
        let stats = Arc::clone(&self.stats);
        let reader = tokio::spawn(async move {
            let why = read_frames(&mut rd, link, &events, &stats).await;
            let _ = events.send(Raw::Event(LinkEvent::Closed(link, why)));
        });
        self.open.insert(link, LinkTasks { tx, reader });
        link
    }

    /// Queues a frame on a link.
    pub fn send(&mut self, link: LinkId, frame: Vec<u8>) {
        if let Some(l) = self.open.get(&link) {
            let _ = l.tx.send(frame);
        }
    }

    /// Closes a link: queued frames are still written, then the connection shuts down.
    pub fn close(&mut self, link: LinkId) {
        if let Some(l) = self.open.remove(&link) {
            l.reader.abort();
        }
    }

    /// Dials `to` in the background.
    pub fn dial(&mut self, addr: PeerAddr, to: SocketAddr, timeout_ms: u64) {
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(Duration::from_millis(timeout_ms), N::connect(to)).await
                {
                    Ok(r) => r,
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                };
            let _ = events.send(Raw::Dialed(addr, result));
        });
    }

    /// The next event; dialled connections are registered here.
    pub async fn next_event(&mut self) -> LinkEvent {
        loop {
            match self.events_rx.recv().await.expect("the sender lives in self") {
                Raw::Dialed(addr, Ok(stream)) => {
                    let link = self.add(stream);
                    return LinkEvent::Opened { link, dialed: Some(addr) };
                }
                Raw::Dialed(addr, Err(e)) => {
                    tracing::debug!(%addr, error = %e, "dial failed");
                    return LinkEvent::DialFailed(addr);
                }
                // Events of links closed meanwhile are stale.
                Raw::Event(LinkEvent::Message(link, _) | LinkEvent::Closed(link, _))
                    if !self.open.contains_key(&link) => {}
                Raw::Event(LinkEvent::Closed(link, why)) => {
                    self.open.remove(&link);
                    return LinkEvent::Closed(link, why);
                }
                Raw::Event(e) => return e,
            }
        }
    }
}

async fn read_frames<R: tokio::io::AsyncRead + Unpin, S>(
    rd: &mut R,
    link: LinkId,
    events: &mpsc::UnboundedSender<Raw<S>>,
    stats: &TrafficStats,
) -> String {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match Message::decode(&buf) {
                Ok(Some((msg, used))) => {
                    buf.drain(..used);
                    if events.send(Raw::Event(LinkEvent::Message(link, msg))).is_err() {
                        return "driver gone".into();
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("malformed frame: {e}"),
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => return "closed by peer".into(),
            Ok(n) => {
                stats.link_received(n);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return format!("read failed: {e}"),
        }
    }
}
