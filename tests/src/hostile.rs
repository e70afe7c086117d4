//! A hostile peer: an attacker's client that speaks Hive's peer protocol (preamble, Noise
//! handshake, chunked transport messages carrying CBOR frames) and a man in the middle (a TCP
//! proxy that records, replays, flips bytes or terminates the Noise sessions itself), so that
//! `tests/hostile_peer.rs` can perform each attack of issue 7 against real `hive` processes.
//!
//! Honest handshakes reuse the server's own code (`hive::driver::channel::handshake`), so the
//! attacker differs from a server only in what it knows (keys, secret) and what it does with
//! the bytes. Everything here is async (tokio); tests drive it from a runtime of their own
//! beside the blocking harness.

use hive::driver::channel::{self, ChannelError, Entropy, Keys, Role, Transport, CHUNK_PLAIN_MAX};
use hive_core::auth::Secret;
use hive_core::node::{ChannelInfo, ChannelKind};
use hive_core::wire::{Message, MESSAGE_LEN_MAX, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The system secret a test's secret text stands for (see [`crate::join_token`]): an insider
/// holds it.
pub fn secret_of(text: &str) -> Secret {
    use sha2::Digest;
    Secret::from_bytes(sha2::Sha256::digest(text.as_bytes()).into())
}

/// Keys of a holder of the secret `text`, with a fresh static key pair of its own.
pub fn insider_keys(text: &str) -> Keys {
    Keys { pair: Entropy::Os.generate_keypair(), psk: secret_of(text).noise_psk() }
}

/// Keys of a stranger: a fresh static key pair and a pre-shared key that is not the system's.
pub fn stranger_keys() -> Keys {
    insider_keys("a guess that is not the secret")
}

/// The 8-byte preamble a channel of `kind` opens with, of protocol `version`.
pub fn preamble(kind: ChannelKind, version: u16) -> [u8; 8] {
    let v = version.to_be_bytes();
    let k = match kind {
        ChannelKind::Member => b'P',
        ChannelKind::Merge => b'M',
        ChannelKind::Media => b'V',
    };
    [b'H', b'I', b'V', b'E', v[0], v[1], k, 0]
}

/// The preamble of this build's protocol.
pub fn our_preamble(kind: ChannelKind) -> [u8; 8] {
    preamble(kind, PROTOCOL_VERSION as u16)
}

/// Writes one `u16 BE length | bytes` message.
pub async fn write_message<W: AsyncWrite + Unpin>(wr: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).expect("a Noise message is at most 65,535 bytes");
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    wr.write_all(&out).await
}

/// Reads one `u16 BE length | bytes` message, whatever its length; `None` at a clean end
/// of the stream or an error.
pub async fn read_message<R: AsyncRead + Unpin>(rd: &mut R) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    channel::read_message(rd, usize::from(u16::MAX), &mut buf).await.ok()?;
    Some(buf)
}

/// Reads until the peer closes (or `limit` passes): every byte it sent, and whether it
/// closed the connection within `limit`.
pub async fn read_to_close<R: AsyncRead + Unpin>(rd: &mut R, limit: Duration) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read).await.is_ok();
    (all, closed)
}

/// An established channel, as seen by the attacker's end.
pub struct Channel {
    /// The receiving half.
    pub rx: ChannelReader,
    /// The sending half.
    pub tx: ChannelWriter,
    /// What the handshake established.
    pub info: ChannelInfo,
}

/// The receiving half of a [`Channel`].
pub struct ChannelReader {
    rd: OwnedReadHalf,
    transport: Arc<Transport>,
    nonce: u64,
    plain: Vec<u8>,
    /// Every plaintext byte received so far, for tests that look for leaks.
    pub received_plain: Vec<u8>,
}

/// The sending half of a [`Channel`].
pub struct ChannelWriter {
    wr: OwnedWriteHalf,
    transport: Arc<Transport>,
    nonce: u64,
}

/// Why reading from a [`Channel`] ended.
#[derive(Debug)]
pub enum ChannelEnd {
    /// The peer closed the connection.
    Closed,
    /// Nothing arrived within the limit.
    Silent,
    /// The bytes did not open or decode.
    Broken(String),
}

impl Channel {
    /// Dials `addr` and runs the handshake of `kind` as initiator with `keys`.
    pub async fn open(
        addr: SocketAddr,
        kind: ChannelKind,
        keys: &Keys,
    ) -> Result<Channel, ChannelError> {
        let stream = TcpStream::connect(addr).await?;
        Channel::initiate(stream, kind, keys).await
    }

    /// Runs the handshake of `kind` as initiator on a connection.
    pub async fn initiate(
        mut stream: TcpStream,
        kind: ChannelKind,
        keys: &Keys,
    ) -> Result<Channel, ChannelError> {
        let (transport, info) =
            channel::handshake(&mut stream, Role::Initiator(kind), keys, &Entropy::Os, 0).await?;
        Ok(Channel::established(stream, transport, info))
    }

    /// Runs the handshake as responder on an accepted connection.
    pub async fn accept(mut stream: TcpStream, keys: &Keys) -> Result<Channel, ChannelError> {
        let (transport, info) =
            channel::handshake(&mut stream, Role::Responder, keys, &Entropy::Os, 0).await?;
        Ok(Channel::established(stream, transport, info))
    }

    fn established(stream: TcpStream, transport: Transport, info: ChannelInfo) -> Channel {
        let (send, recv) = (transport.send_nonce, transport.recv_nonce);
        let transport = Arc::new(transport);
        let (rd, wr) = stream.into_split();
        Channel {
            rx: ChannelReader {
                rd,
                transport: Arc::clone(&transport),
                nonce: recv,
                plain: Vec::new(),
                received_plain: Vec::new(),
            },
            tx: ChannelWriter { wr, transport, nonce: send },
            info,
        }
    }

    /// Sends one message, chunked like a server does.
    pub async fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        self.tx.send(msg).await
    }

    /// The next message, waiting at most `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<Message, ChannelEnd> {
        self.rx.recv(limit).await
    }

    /// Messages until the peer closes the channel or is silent for `limit`; how it ended.
    pub async fn drain(&mut self, limit: Duration) -> (Vec<Message>, ChannelEnd) {
        let mut got = Vec::new();
        loop {
            match self.recv(limit).await {
                Ok(m) => got.push(m),
                Err(end) => return (got, end),
            }
        }
    }
}

impl ChannelWriter {
    /// Sends one message, chunked like a server does.
    pub async fn send(&mut self, msg: &Message) -> std::io::Result<()> {
        self.send_frame(&msg.encode()).await
    }

    /// Sends raw frame bytes (any bytes: the peer decides whether they are a frame).
    pub async fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let sealed = self
            .transport
            .seal_frame(&mut self.nonce, frame)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.wr.write_all(&sealed).await
    }
}

impl ChannelReader {
    /// The next message, waiting at most `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<Message, ChannelEnd> {
        match tokio::time::timeout(limit, self.recv_any()).await {
            Ok(r) => r,
            Err(_) => Err(ChannelEnd::Silent),
        }
    }

    async fn recv_any(&mut self) -> Result<Message, ChannelEnd> {
        loop {
            match Message::decode_within(&self.plain, MESSAGE_LEN_MAX) {
                Ok(Some((msg, used))) => {
                    self.plain.drain(..used);
                    return Ok(msg);
                }
                Ok(None) => {}
                Err(e) => return Err(ChannelEnd::Broken(e.to_string())),
            }
            let Some(sealed) = read_message(&mut self.rd).await else {
                return Err(ChannelEnd::Closed);
            };
            let at = self.plain.len();
            self.transport
                .open_into(self.nonce, &sealed, &mut self.plain)
                .map_err(|e| ChannelEnd::Broken(e.to_string()))?;
            self.nonce += 1;
            self.received_plain.extend_from_slice(&self.plain[at..]);
        }
    }
}

/// Largest plaintext of one transport message.
pub const CHUNK: usize = CHUNK_PLAIN_MAX;

/// What a [`Proxy`] does to the connections it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Relays every message unchanged, recording them.
    Relay,
    /// Flips one byte of the first transport message from initiator to responder on the
    /// first connection only; later connections are relayed unchanged.
    FlipFirstTransport,
    /// Terminates both Noise sessions itself with keys of its own (and the pre-shared key of
    /// `Keys`, for member channels), relaying the decrypted messages between them.
    Terminate,
    /// Terminates the first connection like [`ProxyMode::Terminate`], relays later ones
    /// unchanged like [`ProxyMode::Relay`].
    TerminateFirst,
}

/// One connection a proxy relayed: the messages each way (preamble excluded) and how it
/// ended.
#[derive(Clone, Debug, Default)]
pub struct Relayed {
    /// The initiator's preamble.
    pub preamble: Vec<u8>,
    /// Initiator to responder: handshake messages 1 and 3, then transport messages.
    pub to_responder: Vec<Vec<u8>>,
    /// Responder to initiator: handshake message 2, the key confirmation, then transport.
    pub to_initiator: Vec<Vec<u8>>,
    /// Whether a byte was flipped on this connection.
    pub flipped: bool,
    /// Whether the responder closed its side.
    pub responder_closed: bool,
    /// For [`ProxyMode::Terminate`]: the error of the handshake with the initiator, if any.
    pub initiator_handshake: Option<String>,
    /// For [`ProxyMode::Terminate`]: the error of the handshake with the responder, if any.
    pub responder_handshake: Option<String>,
    /// For [`ProxyMode::Terminate`]: messages relayed in plaintext, `(to_responder, kind)`.
    pub plaintext: Vec<(bool, Message)>,
}

/// A TCP proxy on loopback in front of one server's peer port: the man in the middle.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The connections relayed so far, in order of arrival.
    pub log: Arc<Mutex<Vec<Relayed>>>,
}

impl Proxy {
    /// Starts a proxy to `target` on the runtime `rt`; `keys` are its own for
    /// [`ProxyMode::Terminate`].
    pub fn start(
        rt: &tokio::runtime::Runtime,
        target: SocketAddr,
        mode: ProxyMode,
        keys: Keys,
    ) -> Proxy {
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let log: Arc<Mutex<Vec<Relayed>>> = Arc::default();
        let shared = Arc::clone(&log);
        rt.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let index = {
                    let mut log = shared.lock().unwrap();
                    log.push(Relayed::default());
                    log.len() - 1
                };
                let (log, keys) = (Arc::clone(&shared), keys.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    let first = index == 0;
                    match mode {
                        ProxyMode::Terminate => {
                            terminate(inbound, outbound, keys, log, index).await
                        }
                        ProxyMode::TerminateFirst if first => {
                            terminate(inbound, outbound, keys, log, index).await
                        }
                        _ => {
                            let flip = mode == ProxyMode::FlipFirstTransport && index == 0;
                            relay(inbound, outbound, flip, log, index).await
                        }
                    }
                });
            }
        });
        Proxy { addr, log }
    }

    /// A copy of what was relayed so far.
    pub fn relayed(&self) -> Vec<Relayed> {
        self.log.lock().unwrap().clone()
    }
}

/// Relays message by message, recording each; optionally flips a byte of the first transport
/// message (the third message from the initiator).
async fn relay(
    inbound: TcpStream,
    outbound: TcpStream,
    flip: bool,
    log: Arc<Mutex<Vec<Relayed>>>,
    index: usize,
) {
    let (mut in_rd, mut in_wr) = inbound.into_split();
    let (mut out_rd, mut out_wr) = outbound.into_split();
    let mut pre = [0u8; 8];
    if in_rd.read_exact(&mut pre).await.is_err() || out_wr.write_all(&pre).await.is_err() {
        return;
    }
    log.lock().unwrap()[index].preamble = pre.to_vec();
    let up_log = Arc::clone(&log);
    let up = async move {
        let mut n = 0usize;
        while let Some(mut msg) = read_message(&mut in_rd).await {
            let mut flipped = false;
            if flip && n == 2 && !msg.is_empty() {
                let last = msg.len() / 2;
                msg[last] ^= 0x01;
                flipped = true;
            }
            {
                let mut log = up_log.lock().unwrap();
                log[index].to_responder.push(msg.clone());
                log[index].flipped |= flipped;
            }
            if write_message(&mut out_wr, &msg).await.is_err() {
                break;
            }
            n += 1;
        }
        let _ = out_wr.shutdown().await;
    };
    let down_log = Arc::clone(&log);
    let down = async move {
        while let Some(msg) = read_message(&mut out_rd).await {
            down_log.lock().unwrap()[index].to_initiator.push(msg.clone());
            if write_message(&mut in_wr, &msg).await.is_err() {
                break;
            }
        }
        down_log.lock().unwrap()[index].responder_closed = true;
        let _ = in_wr.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Terminates the initiator's channel and opens one of its own to the responder, of the
/// kind the initiator's preamble names, then relays decrypted messages both ways.
async fn terminate(
    inbound: TcpStream,
    outbound: TcpStream,
    keys: Keys,
    log: Arc<Mutex<Vec<Relayed>>>,
    index: usize,
) {
    let mut pre = [0u8; 8];
    if inbound.peek(&mut pre).await.is_err() {
        return;
    }
    log.lock().unwrap()[index].preamble = pre.to_vec();
    let kind = if pre[6] == b'M' { ChannelKind::Merge } else { ChannelKind::Member };
    let (from_initiator, to_responder) =
        tokio::join!(Channel::accept(inbound, &keys), Channel::initiate(outbound, kind, &keys));
    {
        let mut l = log.lock().unwrap();
        l[index].initiator_handshake = from_initiator.as_ref().err().map(|e| e.to_string());
        l[index].responder_handshake = to_responder.as_ref().err().map(|e| e.to_string());
    }
    let (Ok(a), Ok(b)) = (from_initiator, to_responder) else { return };
    let (a_rx, a_tx, b_rx, b_tx) = (a.rx, a.tx, b.rx, b.tx);
    let up = pump(a_rx, b_tx, true, Arc::clone(&log), index);
    let down = pump(b_rx, a_tx, false, Arc::clone(&log), index);
    let ((), ()) = tokio::join!(up, down);
}

/// Relays decrypted messages from `rx` to `tx`, recording each, until either side ends.
async fn pump(
    mut rx: ChannelReader,
    mut tx: ChannelWriter,
    to_responder: bool,
    log: Arc<Mutex<Vec<Relayed>>>,
    index: usize,
) {
    while let Ok(m) = rx.recv(Duration::from_secs(60)).await {
        log.lock().unwrap()[index].plaintext.push((to_responder, m.clone()));
        if tx.send(&m).await.is_err() {
            break;
        }
    }
    if !to_responder {
        log.lock().unwrap()[index].responder_closed = true;
    }
    let _ = tx.wr.shutdown().await;
}

/// A tokio runtime for a test's attacker, beside the blocking harness.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A raw Noise handshake state of a channel of `kind` with `keys`, bound to this protocol's
/// preamble: for attacks that handle handshake messages one by one.
pub fn noise(kind: ChannelKind, keys: &Keys, initiator: bool) -> snow::HandshakeState {
    let pattern = match kind {
        ChannelKind::Member | ChannelKind::Media => channel::NOISE_MEMBER,
        ChannelKind::Merge => channel::NOISE_MERGE,
    };
    let prologue = our_preamble(kind);
    let mut builder = snow::Builder::new(pattern.parse().expect("a Noise pattern"))
        .local_private_key(&keys.pair.private)
        .and_then(|b| b.prologue(&prologue))
        .expect("a Noise builder");
    if kind != ChannelKind::Merge {
        builder = builder.psk(3, &keys.psk).expect("a pre-shared key");
    }
    let built = if initiator { builder.build_initiator() } else { builder.build_responder() };
    built.expect("a Noise handshake state")
}

/// Opens a member connection to `addr` with `keys` by hand up to the responder's second
/// handshake message: the stream, the state, and that message.
pub async fn start_member_handshake(
    addr: SocketAddr,
    keys: &Keys,
) -> (TcpStream, snow::HandshakeState, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hs = noise(ChannelKind::Member, keys, true);
    let mut msg = vec![0u8; 1024];
    let n = hs.write_message(&[], &mut msg).expect("message 1");
    stream.write_all(&our_preamble(ChannelKind::Member)).await.expect("preamble");
    write_message(&mut stream, &msg[..n]).await.expect("message 1 sent");
    let second = read_message(&mut stream).await.expect("the responder's second message");
    (stream, hs, second)
}
