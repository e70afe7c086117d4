//! The channel handshake (`hive::driver::channel::handshake`) as a responder, fed whatever an
//! initiator sends, over an in-memory stream.
//!
//! [`respond`] writes the input into one end of a `tokio::io::duplex` (the whole input fits its
//! buffer, so nothing waits), closes it, and runs the responder on the other end on a
//! current-thread runtime. A [`Tap`] around the responder's end records every read, so the
//! caller can check how much an unauthenticated peer made it read.
//!
//! Every key and ephemeral key is seeded ([`Entropy::Seeded`]), so the responder answers the
//! same input the same way: [`genuine`] is the one initiator transcript (recorded from an honest
//! initiator) that must succeed.

use hive::driver::channel::{self, ChannelError, Entropy, Keys, Role, Transport};
use hive_core::node::{ChannelInfo, ChannelKind};
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Most input bytes fed to the responder: more than a complete handshake can use (an 8-byte
/// preamble and two messages of at most `HANDSHAKE_MESSAGE_LEN_MAX`, each after a 2-byte
/// length).
pub const INPUT_LEN_MAX: usize = 4 * 1024;
/// Pre-shared key of member channels on both sides.
pub const PSK: [u8; 32] = [7; 32];

static RESPONDER: LazyLock<Keys> =
    LazyLock::new(|| Keys { pair: Entropy::Seeded(1).generate_keypair(), psk: PSK });
static INITIATOR: LazyLock<Keys> =
    LazyLock::new(|| Keys { pair: Entropy::Seeded(3).generate_keypair(), psk: PSK });
static GENUINE_MEMBER: LazyLock<Vec<u8>> = LazyLock::new(|| record(ChannelKind::Member));
static GENUINE_MERGE: LazyLock<Vec<u8>> = LazyLock::new(|| record(ChannelKind::Merge));
static GENUINE_MEDIA: LazyLock<Vec<u8>> = LazyLock::new(|| record(ChannelKind::Media));

/// A stream that records what was read from it and the largest read asked of it.
pub struct Tap<S> {
    inner: S,
    /// Every byte read, in order.
    pub read: Vec<u8>,
    /// Every byte written, in order.
    pub written: Vec<u8>,
    /// The most bytes one read asked for (the free space of its buffer).
    pub read_request_max: usize,
}

impl<S> Tap<S> {
    /// `inner`, recorded.
    pub fn new(inner: S) -> Self {
        Tap { inner, read: vec![], written: vec![], read_request_max: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.read_request_max = this.read_request_max.max(buf.remaining());
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.read.extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled {
            this.written.extend_from_slice(&data[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime")
}

async fn responder(
    stream: &mut Tap<DuplexStream>,
) -> Result<(Transport, ChannelInfo), ChannelError> {
    channel::handshake(stream, Role::Responder, &RESPONDER, &Entropy::Seeded(2), 0).await
}

/// What the honest initiator (seeded 3 and 4) sends the responder for a channel of `kind`.
fn record(kind: ChannelKind) -> Vec<u8> {
    runtime().block_on(async {
        let (a, b) = tokio::io::duplex(INPUT_LEN_MAX);
        let (mut a, mut b) = (Tap::new(a), Tap::new(b));
        let initiator =
            channel::handshake(&mut a, Role::Initiator(kind), &INITIATOR, &Entropy::Seeded(4), 0);
        let (i, r) = tokio::join!(initiator, responder(&mut b));
        let (i, r) = (i.expect("the honest initiator connects"), r.expect("the responder agrees"));
        assert_eq!(i.1.handshake_hash, r.1.handshake_hash);
        a.written
    })
}

/// The honest initiator's bytes for a channel of `kind`: the one input that must succeed.
pub fn genuine(kind: ChannelKind) -> &'static [u8] {
    match kind {
        ChannelKind::Member => &GENUINE_MEMBER,
        ChannelKind::Merge => &GENUINE_MERGE,
        ChannelKind::Media => &GENUINE_MEDIA,
    }
}

/// What the responder made of an input.
pub struct Responded {
    /// The handshake's result.
    pub result: Result<ChannelInfo, ChannelError>,
    /// The bytes it read.
    pub read: Vec<u8>,
    /// The most bytes one read asked for.
    pub read_request_max: usize,
}

/// Runs the responder on `input` (at most [`INPUT_LEN_MAX`] bytes of it), then end of stream.
pub fn respond(input: &[u8]) -> Responded {
    let input = &input[..input.len().min(INPUT_LEN_MAX)];
    runtime().block_on(async {
        use tokio::io::AsyncWriteExt;
        // Room for the whole input one way and the responder's few hundred bytes the other.
        let (mut peer, ours) = tokio::io::duplex(INPUT_LEN_MAX);
        peer.write_all(input).await.expect("the input fits the buffer");
        peer.shutdown().await.expect("an in-memory stream closes");
        let mut ours = Tap::new(ours);
        let result = responder(&mut ours).await.map(|(_, info)| info);
        Responded { result, read: ours.read, read_request_max: ours.read_request_max }
    })
}

/// The honest initiator's static key, which a successful handshake reports as the peer's.
pub fn initiator_key() -> hive_core::keys::PublicKey {
    INITIATOR.pair.public
}
