//! Secure channels between servers: a Noise handshake (`snow`) on every TCP connection before
//! the core hears of it, then every byte encrypted and authenticated.
//!
//! On the wire, each side first sends a plain 8-byte preamble — `HIVE`, the protocol version
//! (u16 BE), the channel kind, 0 — which both bind into the handshake as its prologue, so a
//! changed byte fails the handshake. Then three handshake messages and, after them, transport
//! messages, each as `u16 BE length | bytes` (Noise's 65,535-byte limit): a frame of the core's
//! wire format larger than one Noise message is cut into chunks and joined on the other side.
//!
//! - **Member** channels run `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` with a pre-shared key
//!   derived from the system secret. The responder sends its second message with an empty
//!   payload and learns the initiator knows the key from the third; the initiator learns it
//!   from the first transport message. A reflected, replayed or spliced handshake fails,
//!   because every message depends on both sides' fresh ephemeral keys.
//! - **Merge** channels run `Noise_XX_25519_ChaChaPoly_BLAKE2s`: encrypted, not yet
//!   authenticated; the core's OPAQUE login inside is bound to the handshake hash.
//! - **Media** channels run the member handshake on a connection of their own and carry
//!   video (`hive_media::relay`), so that it never queues ahead of the core's messages.
//!
//! Before the handshake completes a peer can make this server hold at most
//! [`HANDSHAKE_MESSAGE_LEN_MAX`] bytes, for at most [`HANDSHAKE_TIMEOUT_MS`]; the number of
//! such connections is capped by the caller (the driver's `links`).

use hive_core::keys::{PublicKey, StaticKeypair};
use hive_core::node::{ChannelInfo, ChannelKind};
use hive_core::wire::PROTOCOL_VERSION;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Pattern of member channels.
pub const NOISE_MEMBER: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// Pattern of merge channels.
pub const NOISE_MERGE: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Largest handshake message accepted (ours are under 100 bytes): what an unauthenticated
/// peer can make us buffer.
pub const HANDSHAKE_MESSAGE_LEN_MAX: usize = 1_024;
/// A handshake not finished within this is abandoned.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Largest Noise message.
const NOISE_LEN_MAX: usize = 65_535;
/// Authentication tag of each transport message.
const TAG_LEN: usize = 16;
/// Most plaintext in one transport message.
pub const CHUNK_PLAIN_MAX: usize = NOISE_LEN_MAX - TAG_LEN;
const MAGIC: &[u8; 4] = b"HIVE";

/// Why a channel could not be set up or broke.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer is not speaking Hive.
    #[error("the peer does not speak the Hive protocol")]
    NotHive,
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol {theirs}, this server {PROTOCOL_VERSION}")]
    Version {
        /// The peer's version.
        theirs: u16,
    },
    /// An unknown channel kind.
    #[error("unknown channel kind {0}")]
    Kind(u8),
    /// A message longer than the phase allows.
    #[error("message of {len} bytes exceeds {max}")]
    TooLarge {
        /// Length announced.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The handshake failed: the peer does not hold the system secret, or bytes were changed
    /// on the way.
    #[error("handshake failed (wrong system secret, or tampered with): {0}")]
    Handshake(snow::Error),
    /// A transport message failed authentication: changed on the way.
    #[error("a message failed authentication: {0}")]
    Decrypt(snow::Error),
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
}

/// Where a handshake's randomness (ephemeral keys) comes from.
#[derive(Clone, Debug)]
pub enum Entropy {
    /// The operating system's.
    Os,
    /// A generator seeded per simulated host, so a seed replays a run.
    Seeded(u64),
}

/// snow's default primitives with a seeded generator.
struct SeededResolver(ChaCha20Rng);

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(self.0.clone())))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

impl Entropy {
    /// A builder for `pattern` drawing from this source; `n` tells seeded builders apart.
    fn builder(&self, pattern: &str, n: u64) -> snow::Builder<'static> {
        let params: NoiseParams = pattern.parse().expect("a valid Noise pattern name");
        match self {
            Entropy::Os => snow::Builder::new(params),
            Entropy::Seeded(seed) => {
                let mut rng = ChaCha20Rng::seed_from_u64(*seed);
                rng.set_stream(n);
                snow::Builder::with_resolver(params, Box::new(SeededResolver(rng)))
            }
        }
    }

    /// A fresh link key pair.
    pub fn generate_keypair(&self) -> StaticKeypair {
        let pair = self.builder(NOISE_MEMBER, u64::MAX).generate_keypair().expect("X25519 keys");
        let (private, public) = (pair.private.try_into(), pair.public.try_into());
        match (private, public) {
            (Ok(private), Ok(public)) => StaticKeypair { private, public: PublicKey(public) },
            _ => unreachable!("X25519 keys are 32 bytes"),
        }
    }
}

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// We dialled, for a channel of this kind.
    Initiator(ChannelKind),
    /// We accepted; the initiator's preamble says the kind.
    Responder,
}

/// What a handshake needs from the node: its link key pair and the member pre-shared key.
#[derive(Clone)]
pub struct Keys {
    /// This server's static key pair.
    pub pair: StaticKeypair,
    /// Pre-shared key of member channels.
    pub psk: [u8; 32],
}

/// An established channel's transport keys, shared by the link's reader and writer.
pub struct Transport {
    state: snow::StatelessTransportState,
    /// Number of the next message this side sends.
    pub send_nonce: u64,
    /// Number of the next message this side receives.
    pub recv_nonce: u64,
}

impl Transport {
    /// Encrypts one chunk (at most [`CHUNK_PLAIN_MAX`] bytes) as message number `nonce`,
    /// appending `u16 length | ciphertext` to `out`.
    pub fn seal_into(
        &self,
        nonce: u64,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ChannelError> {
        debug_assert!(chunk.len() <= CHUNK_PLAIN_MAX);
        let at = out.len();
        out.resize(at + 2 + chunk.len() + TAG_LEN, 0);
        let n = self
            .state
            .write_message(nonce, chunk, &mut out[at + 2..])
            .map_err(ChannelError::Decrypt)?;
        out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        out.truncate(at + 2 + n);
        Ok(())
    }

    /// Decrypts message number `nonce`, appending its plaintext to `plain`.
    pub fn open_into(
        &self,
        nonce: u64,
        message: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), ChannelError> {
        let at = plain.len();
        plain.resize(at + message.len(), 0);
        let n = self
            .state
            .read_message(nonce, message, &mut plain[at..])
            .map_err(ChannelError::Decrypt)?;
        plain.truncate(at + n);
        Ok(())
    }

    /// Encrypts a whole frame of the core's wire format, chunked, starting at message
    /// number `*nonce`.
    pub fn seal_frame(&self, nonce: &mut u64, frame: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let chunks = frame.len().div_ceil(CHUNK_PLAIN_MAX).max(1);
        let mut out = Vec::with_capacity(frame.len() + chunks * (2 + TAG_LEN));
        for chunk in frame.chunks(CHUNK_PLAIN_MAX) {
            self.seal_into(*nonce, chunk, &mut out)?;
            *nonce += 1;
        }
        Ok(out)
    }
}

fn preamble(kind: ChannelKind) -> [u8; 8] {
    let v = (PROTOCOL_VERSION as u16).to_be_bytes();
    let k = match kind {
        ChannelKind::Member => b'P',
        ChannelKind::Merge => b'M',
        ChannelKind::Media => b'V',
    };
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v[0], v[1], k, 0]
}

fn read_preamble(bytes: &[u8; 8]) -> Result<ChannelKind, ChannelError> {
    if &bytes[..4] != MAGIC {
        return Err(ChannelError::NotHive);
    }
    if bytes[7] != 0 {
        return Err(ChannelError::NotHive);
    }
    let theirs = u16::from_be_bytes([bytes[4], bytes[5]]);
    if u32::from(theirs) != PROTOCOL_VERSION {
        return Err(ChannelError::Version { theirs });
    }
    match bytes[6] {
        b'P' => Ok(ChannelKind::Member),
        b'M' => Ok(ChannelKind::Merge),
        b'V' => Ok(ChannelKind::Media),
        other => Err(ChannelError::Kind(other)),
    }
}

/// Reads one `u16 length | bytes` message of at most `max` bytes.
pub async fn read_message<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<(), ChannelError> {
    let mut len = [0u8; 2];
    rd.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > max {
        return Err(ChannelError::TooLarge { len, max });
    }
    buf.resize(len, 0);
    rd.read_exact(buf).await?;
    Ok(())
}

async fn write_message<W: AsyncWrite + Unpin>(wr: &mut W, msg: &[u8]) -> Result<(), ChannelError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    wr.write_all(&out).await?;
    Ok(())
}

/// Runs the handshake on a fresh connection; `n` numbers this handshake for seeded entropy.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    role: Role,
    keys: &Keys,
    entropy: &Entropy,
    n: u64,
) -> Result<(Transport, ChannelInfo), ChannelError> {
    // The prologue is the preamble as sent and as received, byte for byte: a change on the
    // way fails the handshake.
    let (kind, prologue) = match role {
        Role::Initiator(kind) => {
            let p = preamble(kind);
            stream.write_all(&p).await?;
            (kind, p)
        }
        Role::Responder => {
            let mut p = [0u8; 8];
            stream.read_exact(&mut p).await?;
            (read_preamble(&p)?, p)
        }
    };
    let pattern = match kind {
        ChannelKind::Member | ChannelKind::Media => NOISE_MEMBER,
        ChannelKind::Merge => NOISE_MERGE,
    };
    let mut builder = entropy
        .builder(pattern, n)
        .local_private_key(&keys.pair.private)
        .and_then(|b| b.prologue(&prologue))
        .map_err(ChannelError::Handshake)?;
    if kind != ChannelKind::Merge {
        builder = builder.psk(3, &keys.psk).map_err(ChannelError::Handshake)?;
    }
    let mut hs = match role {
        Role::Initiator(_) => builder.build_initiator(),
        Role::Responder => builder.build_responder(),
    }
    .map_err(ChannelError::Handshake)?;
    let mut msg = vec![0u8; HANDSHAKE_MESSAGE_LEN_MAX];
    let mut incoming = Vec::with_capacity(HANDSHAKE_MESSAGE_LEN_MAX);
    let mut payload = vec![0u8; HANDSHAKE_MESSAGE_LEN_MAX];
    while !hs.is_handshake_finished() {
        if hs.is_my_turn() {
            // Payloads stay empty: nothing is said before both sides have proven themselves.
            let n = hs.write_message(&[], &mut msg).map_err(ChannelError::Handshake)?;
            write_message(stream, &msg[..n]).await?;
        } else {
            read_message(stream, HANDSHAKE_MESSAGE_LEN_MAX, &mut incoming).await?;
            let n = hs.read_message(&incoming, &mut payload).map_err(ChannelError::Handshake)?;
            if n != 0 {
                return Err(ChannelError::TooLarge { len: n, max: 0 });
            }
        }
    }
    let peer_key = hs
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or(ChannelError::NotHive)?;
    let handshake_hash =
        <[u8; 32]>::try_from(hs.get_handshake_hash()).map_err(|_| ChannelError::NotHive)?;
    let state = hs.into_stateless_transport_mode().map_err(ChannelError::Handshake)?;
    let mut transport = Transport { state, send_nonce: 0, recv_nonce: 0 };
    // Key confirmation: the responder has verified the initiator (third message); the
    // initiator verifies the responder by its first transport message, an empty one, before
    // anything is said.
    match role {
        Role::Responder => {
            let mut confirm = Vec::new();
            transport.seal_into(0, &[], &mut confirm)?;
            stream.write_all(&confirm).await?;
            transport.send_nonce = 1;
        }
        Role::Initiator(_) => {
            read_message(stream, TAG_LEN, &mut incoming).await?;
            transport.open_into(0, &incoming, &mut Vec::new())?;
            transport.recv_nonce = 1;
        }
    }
    let info = ChannelInfo { kind, peer_key: PublicKey(peer_key), handshake_hash };
    Ok((transport, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entropy: &Entropy, psk: u8) -> Keys {
        Keys { pair: entropy.generate_keypair(), psk: [psk; 32] }
    }

    async fn pair(
        kind: ChannelKind,
        psk_a: u8,
        psk_b: u8,
    ) -> (
        Result<(Transport, ChannelInfo), ChannelError>,
        Result<(Transport, ChannelInfo), ChannelError>,
        Keys,
        Keys,
    ) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (ka, kb) = (keys(&Entropy::Seeded(1), psk_a), keys(&Entropy::Seeded(2), psk_b));
        let (ka2, kb2) = (ka.clone(), kb.clone());
        let ta = tokio::spawn(async move {
            handshake(&mut a, Role::Initiator(kind), &ka2, &Entropy::Seeded(3), 0).await
        });
        let tb = tokio::spawn(async move {
            handshake(&mut b, Role::Responder, &kb2, &Entropy::Seeded(4), 0).await
        });
        (ta.await.unwrap(), tb.await.unwrap(), ka, kb)
    }

    #[tokio::test]
    async fn members_agree_on_keys_and_learn_each_others_static_key() {
        let (a, b, ka, kb) = pair(ChannelKind::Member, 7, 7).await;
        let ((ta, ia), (tb, ib)) = (a.unwrap(), b.unwrap());
        assert_eq!(ia.peer_key, kb.pair.public);
        assert_eq!(ib.peer_key, ka.pair.public);
        assert_eq!(ia.handshake_hash, ib.handshake_hash);
        let frame = vec![0x5a; 200_000];
        let sealed = ta.seal_frame(&mut ta.send_nonce.clone(), &frame).unwrap();
        let (mut plain, mut rest, mut nonce) = (Vec::new(), &sealed[..], tb.recv_nonce);
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            tb.open_into(nonce, &rest[2..2 + len], &mut plain).unwrap();
            (rest, nonce) = (&rest[2 + len..], nonce + 1);
        }
        assert_eq!(plain, frame);
    }

    #[tokio::test]
    async fn a_peer_without_the_secret_fails_the_handshake() {
        let (a, b, _, _) = pair(ChannelKind::Member, 7, 8).await;
        assert!(matches!(b, Err(ChannelError::Handshake(_))), "{:?}", b.err());
        // The initiator never got the responder's confirmation either.
        assert!(a.is_err());
    }

    #[test]
    fn a_preamble_with_any_byte_changed_is_refused_or_fails_the_handshake() {
        let good = preamble(ChannelKind::Member);
        assert!(read_preamble(&good).is_ok());
        let mut reserved = good;
        reserved[7] = 1;
        assert!(read_preamble(&reserved).is_err());
        let mut version = good;
        version[5] ^= 1;
        assert!(matches!(read_preamble(&version), Err(ChannelError::Version { .. })));
    }

    #[tokio::test]
    async fn a_merge_channel_needs_no_secret() {
        let (a, b, _, _) = pair(ChannelKind::Merge, 7, 8).await;
        assert_eq!(a.unwrap().1.handshake_hash, b.unwrap().1.handshake_hash);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_a_transport_message_is_refused() {
        let (a, b, _, _) = pair(ChannelKind::Member, 7, 7).await;
        let (ta, tb) = (a.unwrap().0, b.unwrap().0);
        let mut sealed = ta.seal_frame(&mut 0, b"hello").unwrap();
        sealed[5] ^= 1;
        assert!(tb.open_into(0, &sealed[2..], &mut Vec::new()).is_err());
    }
}
