//! The wire format between servers: beacons (UDP datagrams) and link messages (TCP), each one
//! CBOR body in a [`frame`](mod@crate::frame).

use crate::auth::{BeaconKey, KdfParams, Mac, Secret};
use crate::frame::{self, FrameError};
use crate::hlc::Hlc;
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::store::{ReplicaId, Seq, Transaction};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version of the protocol spoken in beacons and on links; servers of another version are
/// listed with the reason and never linked. 3: Noise links, OPAQUE merges, beacons MACed over
/// every field with a sequence number. 4: routes carry each server's status (up since, time
/// source) and how long ago a withdrawn server was last heard; routed messages (time samples).
pub const PROTOCOL_VERSION: u32 = 5;

/// Largest beacon datagram, in bytes.
pub const BEACON_LEN_MAX: usize = 1400;

/// Largest frame a member link accepts (smaller than the storage limit: a peer cannot make us
/// buffer more than this). Only a peer that proved the system secret gets this far.
pub const MESSAGE_LEN_MAX: usize = 8 * 1024 * 1024;

/// Largest frame on a merge link, whose peer has proven nothing until the login completes.
pub const MERGE_MESSAGE_LEN_MAX: usize = 16 * 1024;

/// Announcement of a server on the LAN, sent by multicast and to manual addresses: every
/// second while its membership changes, every twenty seconds once it has settled.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Beacon {
    /// Protocol version.
    pub version: u32,
    /// Sender.
    pub server: ServerId,
    /// Sender's system.
    pub system: SystemId,
    /// Sender's system name.
    pub name: SystemName,
    /// Random per start of the sender: its beacons vouch only for links to that run.
    pub boot: u64,
    /// Counts the sender's beacons within one run: a receiver refuses one it has seen, so a
    /// replayed beacon keeps nothing alive.
    #[serde(default)]
    pub seq: u64,
    /// Where the sender accepts links.
    pub listen: Vec<PeerAddr>,
    /// The sender's beacon period now, ms: a receiver forgets it after three and a half.
    pub interval_ms: u32,
    /// HMAC under the system secret over every field above.
    pub proof: Mac,
}

impl Beacon {
    /// The proof this beacon should carry under `key` (see [`Secret::beacon_key`]).
    pub fn expected_proof(&self, key: &BeaconKey) -> Mac {
        let listen: Vec<&[u8]> = self.listen.iter().map(|a| a.0.as_bytes()).collect();
        let mut fields: Vec<&[u8]> = Vec::with_capacity(8 + listen.len());
        let (version, server, system, boot, seq, interval) = (
            self.version.to_le_bytes(),
            self.server.0.to_le_bytes(),
            self.system.0.to_le_bytes(),
            self.boot.to_le_bytes(),
            self.seq.to_le_bytes(),
            self.interval_ms.to_le_bytes(),
        );
        fields.extend([&version[..], &server, &system, self.name.as_str().as_bytes(), &boot, &seq]);
        fields.extend([&interval[..]]);
        fields.extend(listen);
        key.proof(&fields)
    }
}

/// First message on a member link, sent by both ends once the channel has proven the system
/// secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// Sender.
    pub server: ServerId,
    /// Sender's system.
    pub system: SystemId,
    /// Sender's system name.
    pub name: SystemName,
    /// When the name was last set, so a renamed system wins over a stale name.
    pub name_stamp: Hlc,
    /// Random per start of the sender: tells a restarted peer from a stale link to it.
    pub boot: u64,
    /// Sender's clock, absorbed by the receiver within the allowed offset.
    pub hlc: Hlc,
    /// Where the sender accepts links.
    pub listen: Vec<PeerAddr>,
}

/// The steps of an administrator's merge on a merge link: an OPAQUE login of the remote
/// administrator, then each side's part sealed under the login's session key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum MergeMsg {
    /// Initiator to remote: who logs in, and OPAQUE's credential request (KE1).
    Login {
        /// Remote administrator's login name.
        user: String,
        /// KE1.
        #[serde(with = "serde_bytes")]
        ke1: Vec<u8>,
    },
    /// Remote to initiator: OPAQUE's credential response (KE2) and the key-stretching cost.
    Challenge {
        /// KE2.
        #[serde(with = "serde_bytes")]
        ke2: Vec<u8>,
        /// Cost of the stretching the initiator runs.
        params: KdfParams,
    },
    /// Initiator to remote: OPAQUE's finalization (KE3) and a sealed [`MergeOffer`].
    Finish {
        /// KE3.
        #[serde(with = "serde_bytes")]
        ke3: Vec<u8>,
        /// The offer, sealed under the session key.
        #[serde(with = "serde_bytes")]
        offer: Vec<u8>,
    },
    /// Remote to initiator: merge done; a sealed [`MergeOutcome`].
    Accepted {
        /// The outcome, sealed under the session key.
        #[serde(with = "serde_bytes")]
        outcome: Vec<u8>,
    },
    /// Remote to initiator: refused.
    Refused(MergeRefusal),
}

/// What the initiator of a merge tells the remote once the login succeeded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct MergeOffer {
    /// Initiator's system.
    pub system: SystemId,
    /// Initiator's system name.
    pub name: SystemName,
    /// Whether the initiator's system (true) or the remote's (false) is kept.
    pub keep_initiator: bool,
    /// Initiator's servers, to refuse a merge with a server on both sides.
    pub servers: Vec<ServerId>,
    /// Initiator's secret, when the initiator's side is kept.
    pub secret: Option<Secret>,
}

/// What the remote of a merge answers once it merged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct MergeOutcome {
    /// Kept system.
    pub system: SystemId,
    /// Kept name.
    pub name: SystemName,
    /// Remote secret, when the remote side is kept.
    pub secret: Option<Secret>,
}

/// Why a merge was refused.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug, Error)]
pub enum MergeRefusal {
    /// Unknown user, wrong password or a user who is not an administrator.
    #[error("wrong credentials or not an administrator")]
    BadCredentials,
    /// A server id is in both systems.
    #[error("a server is in both systems")]
    ServerOnBothSides,
    /// The two servers are already in one system.
    #[error("already one system")]
    SameSystem,
    /// The other side asked for a password derivation beyond this server's limit.
    #[error("the other side's challenge asks for an unreasonable password derivation")]
    UnreasonableChallenge,
    /// Too many failed merge logins for this user name; try again later.
    #[error("too many failed attempts for this user; try again in {retry_after_ms} ms")]
    TooManyAttempts {
        /// How long to wait.
        retry_after_ms: u64,
    },
    /// The other side is answering as many merge logins as it will at once.
    #[error("the other side is busy with other merges; try again")]
    Busy,
    /// The other side answered something that does not verify (a relayed or forged channel).
    #[error("the other side's answer did not verify")]
    NotVerified,
}

/// A change of a system's identity, relayed to every member: a rename, or a move into another
/// system after a merge.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct IdentityChange {
    /// System whose members must change.
    pub from: SystemId,
    /// System they become.
    pub to: SystemId,
    /// Name they take.
    pub name: SystemName,
    /// When the change was decided.
    pub stamp: Hlc,
    /// The new secret, when it changes; member links are encrypted and authenticated, so it
    /// reaches only members.
    pub new_secret: Option<Secret>,
}

/// A message on a link.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Message {
    /// Opening of a member link.
    Hello(Hello),
    /// Sync: the sender reflects these origins up to these sequence numbers.
    Have {
        /// Covered prefixes.
        covered: Vec<(ReplicaId, Seq)>,
    },
    /// Sync: send the writes of `origin` after `after`, at most `limit`.
    Pull {
        /// Origin asked for.
        origin: ReplicaId,
        /// Receiver already reflects up to here.
        after: Seq,
        /// Batch bound.
        limit: u32,
    },
    /// Sync: answer to a pull.
    Writes {
        /// Origin.
        origin: ReplicaId,
        /// After applying `txns`, the receiver reflects `origin` up to here.
        upto: Seq,
        /// Surviving writes.
        txns: Vec<Transaction>,
    },
    /// Sync: new local writes pushed as they happen.
    Push {
        /// The writes, of the sender's own origin.
        txns: Vec<Transaction>,
    },
    /// Routing: changes to the servers the sender reaches and in how many hops (the first one
    /// on a link is the whole table, the sender itself included at 0 hops).
    Reach {
        /// The changed entries; hops of 8 or more withdraw the route.
        routes: Vec<RouteAd>,
    },
    /// A message for a server that may be several hops away, forwarded along the routes.
    Routed(Routed),
    /// Keeps an idle link alive.
    Ping,
    /// A rename or merge that every member applies.
    Identity(IdentityChange),
    /// A step of an administrator's merge.
    Merge(MergeMsg),
    /// The sender cannot dial the receiver (the receiver opened this link, perhaps from behind
    /// NAT): dial a media channel back where this link was dialled and open it with `token`.
    /// Since protocol 5.
    DialMedia {
        /// What the channel opens with.
        token: u128,
    },
}

/// One entry of a routing table as a neighbour offers it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct RouteAd {
    /// The server reached.
    pub server: ServerId,
    /// Links on the way from the sender; [`crate::node::HOPS_MAX`] or more withdraws it.
    pub hops: u8,
    /// What the server announces of itself (meaningless in a withdrawal).
    pub status: ServerStatus,
    /// In a withdrawal: how long ago, in ms, the sender last heard of the server, so that
    /// every server dates its silence alike however late the withdrawal reaches it.
    pub heard_ago_ms: u32,
}

/// What a server announces of itself with its routes: every server judges failover and elects
/// the primary time server from the same facts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Debug, Default)]
pub struct ServerStatus {
    /// System time at which this run of the server started, ms.
    pub up_since_ms: u64,
    /// Whether it takes its time from an external (NTP) source.
    pub external_time: bool,
    /// Whether it has run for its `failover_min_uptime_ms` (by its own monotonic clock) and so
    /// may take other servers' cameras. Announced rather than derived from `up_since_ms`, so
    /// servers whose system times still disagree judge every taker alike.
    pub failover_ready: bool,
    /// When the server announced this status, by its HLC: of the statuses of a server that
    /// different neighbours relay, the newest counts, so a relay that died (its link not yet
    /// found silent) cannot keep an old one alive.
    #[serde(default)]
    pub stamp: Hlc,
}

/// A message addressed to one server, forwarded hop by hop along the routes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Routed {
    /// Sender.
    pub from: ServerId,
    /// Addressee.
    pub to: ServerId,
    /// Hops it may still take; a message whose ttl runs out is dropped.
    pub ttl: u8,
    /// What it carries.
    pub body: RoutedBody,
}

/// Hops a routed message may take: the longest route.
pub const ROUTED_TTL: u8 = crate::node::HOPS_MAX;

/// What a routed message carries.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum RoutedBody {
    /// A time sample's request to the primary time server.
    TimeRequest {
        /// Matches the reply to the request.
        id: u64,
    },
    /// The primary's answer: its system time when the request arrived and when it answered.
    TimeReply {
        /// The request's id.
        id: u64,
        /// System time at which the request was read from the socket, µs.
        received_us: u64,
        /// System time at which the answer was sent, µs.
        sent_us: u64,
        /// The primary's own error bound against its source, µs.
        error_us: u64,
    },
}

/// Why bytes could not be read as a beacon or message.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WireError {
    /// Bad framing.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// Larger than the protocol allows.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length announced or given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Valid frame, but the body is not a valid message.
    #[error("bad message body: {0}")]
    Body(String),
    /// Bytes after the frame of a datagram.
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut body = Vec::new();
    // Writing into a Vec cannot fail and every type here serialises.
    ciborium::into_writer(value, &mut body).expect("CBOR encoding into memory");
    frame::encode(&body)
}

fn decode_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WireError> {
    ciborium::from_reader(body).map_err(|e| WireError::Body(e.to_string()))
}

impl Beacon {
    /// The datagram carrying this beacon.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Reads a datagram; the whole datagram must be one frame.
    pub fn decode(datagram: &[u8]) -> Result<Beacon, WireError> {
        if datagram.len() > BEACON_LEN_MAX {
            return Err(WireError::TooLarge { len: datagram.len(), max: BEACON_LEN_MAX });
        }
        let (body, used) = frame::decode(datagram)?;
        if used != datagram.len() {
            return Err(WireError::Trailing(datagram.len() - used));
        }
        decode_body(body)
    }
}

impl Message {
    /// The message's kind, for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Have { .. } => "Have",
            Message::Pull { .. } => "Pull",
            Message::Writes { .. } => "Writes",
            Message::Push { .. } => "Push",
            Message::Reach { .. } => "Reach",
            Message::Routed(_) => "Routed",
            Message::Ping => "Ping",
            Message::Identity(_) => "Identity",
            Message::Merge(_) => "Merge",
            Message::DialMedia { .. } => "DialMedia",
        }
    }

    /// The frame carrying this message.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Reads the message at the start of a stream buffer. `Ok(None)` means more bytes are
    /// needed; otherwise returns the message and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
        Self::decode_within(buf, MESSAGE_LEN_MAX)
    }

    /// [`Message::decode`] with a smaller limit `len_max` (merge links).
    pub fn decode_within(
        buf: &[u8],
        len_max: usize,
    ) -> Result<Option<(Message, usize)>, WireError> {
        if buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len > len_max {
                return Err(WireError::TooLarge { len, max: len_max });
            }
        }
        match frame::decode(buf) {
            Ok((body, used)) => Ok(Some((decode_body(body)?, used))),
            Err(FrameError::Incomplete { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon() -> Beacon {
        Beacon {
            version: PROTOCOL_VERSION,
            server: ServerId(1),
            system: SystemId(2),
            name: SystemName::new("lab").unwrap(),
            boot: 5,
            seq: 3,
            listen: vec![PeerAddr("10.0.0.1:7001".into())],
            interval_ms: 1_000,
            proof: [9; 32],
        }
    }

    #[test]
    fn a_beacon_round_trips_and_fits_a_datagram() {
        let bytes = beacon().encode();
        assert!(bytes.len() < BEACON_LEN_MAX);
        assert_eq!(Beacon::decode(&bytes), Ok(beacon()));
    }

    #[test]
    fn a_beacon_proof_covers_every_field() {
        let key = Secret::from_text("s").beacon_key();
        let b = beacon();
        let proof = b.expected_proof(&key);
        let changed = [
            Beacon { boot: 6, ..b.clone() },
            Beacon { seq: 4, ..b.clone() },
            Beacon { interval_ms: 20_000, ..b.clone() },
            Beacon { listen: vec![PeerAddr("10.6.6.6:7001".into())], ..b.clone() },
            Beacon { version: 2, ..b.clone() },
        ];
        for c in changed {
            assert_ne!(c.expected_proof(&key), proof, "{c:?}");
        }
    }

    #[test]
    fn a_message_split_across_reads_waits_for_the_rest() {
        let bytes = Message::Ping.encode();
        assert_eq!(Message::decode(&bytes[..3]), Ok(None));
        assert_eq!(Message::decode(&bytes), Ok(Some((Message::Ping, bytes.len()))));
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let bytes = frame::encode(b"\xff\x00garbage");
        assert!(matches!(Message::decode(&bytes), Err(WireError::Body(_))));
        let mut huge = Message::Ping.encode();
        huge[..4].copy_from_slice(&(MESSAGE_LEN_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(Message::decode(&huge), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn an_invalid_system_name_in_a_beacon_is_refused() {
        // The same beacon as a CBOR map, with a name `SystemName` must refuse.
        let valid = ciborium::Value::serialized(&beacon()).unwrap();
        let ciborium::Value::Map(mut fields) = valid.clone() else { panic!("a beacon is a map") };
        for (k, v) in &mut fields {
            if k.as_text() == Some("name") {
                *v = ciborium::Value::Text("line\nbreak".into());
            }
        }
        let encode = |v: &ciborium::Value| {
            let mut body = Vec::new();
            ciborium::into_writer(v, &mut body).unwrap();
            frame::encode(&body)
        };
        assert_eq!(Beacon::decode(&encode(&valid)), Ok(beacon()));
        let err = Beacon::decode(&encode(&ciborium::Value::Map(fields))).unwrap_err();
        assert!(matches!(&err, WireError::Body(m) if m.contains("control characters")), "{err:?}");
    }
}
