//! What a server persists: records appended to its transaction log and snapshots of the whole
//! replica. The shell frames and stores them; the core only says what they are.

use crate::identity::Identity;
use crate::store::{ReplicaId, Seq, Store, Transaction};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// One entry of the transaction log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Record {
    /// The server's identity changed (first start, merge, rename).
    Identity(Identity),
    /// A transaction was applied.
    Txn(Transaction),
    /// The replica now reflects every write of `origin` up to `upto`.
    Cover {
        /// Origin.
        origin: ReplicaId,
        /// Covered prefix.
        upto: Seq,
    },
}

/// The whole persisted state of a server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Snapshot {
    /// Identity.
    pub identity: Identity,
    /// Replica.
    pub store: Store,
}

/// Why persisted bytes could not be read.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[error("undecodable persisted {what}: {reason}")]
pub struct DecodeError {
    /// Record or snapshot.
    pub what: &'static str,
    /// Decoder's explanation.
    pub reason: String,
}

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory");
    out
}

impl Record {
    /// CBOR body of the record (the shell frames it).
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Reads a record body.
    pub fn decode(body: &[u8]) -> Result<Record, DecodeError> {
        ciborium::from_reader(body)
            .map_err(|e| DecodeError { what: "record", reason: e.to_string() })
    }

    /// Whether this record may be applied when it follows damage in the log.
    ///
    /// Damage loses records, and a record that means something only together with the ones
    /// written before it must then be dropped:
    /// - `Txn` is self-describing and idempotent ([`Store::apply`]): applying it is right
    ///   whatever came before. A lost transaction leaves a gap in its origin's sequence, which
    ///   the vector keeps open (the ones after it are marked ahead), so the replica still asks
    ///   its peers for it.
    /// - `Identity` carries the whole identity; the last one read is the latest.
    /// - `Cover { origin, upto }` claims that every write of `origin` up to `upto` is
    ///   reflected. That holds only given the transactions written before it (its own batch
    ///   and earlier pulls), any of which the damage may have taken. Applied, it would mark a
    ///   lost write as known: it would never be pulled again, and peers would be told this
    ///   replica has it. Dropped, the vector stays behind and the origin is pulled again;
    ///   the writes it skipped were overwritten, so nothing else is missing.
    ///
    /// Records before the first damage depend only on intact records and are all trusted.
    pub fn trusted_after_damage(&self) -> bool {
        match self {
            Record::Identity(_) | Record::Txn(_) => true,
            Record::Cover { .. } => false,
        }
    }
}

impl Snapshot {
    /// CBOR body of the snapshot.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Reads a snapshot body.
    pub fn decode(body: &[u8]) -> Result<Snapshot, DecodeError> {
        let mut snap: Snapshot = ciborium::from_reader(body)
            .map_err(|e| DecodeError { what: "snapshot", reason: e.to_string() })?;
        snap.store.reindex();
        Ok(snap)
    }
}

/// What a server found on disk at start.
#[derive(Clone, Debug, Default)]
pub struct Restored {
    /// Latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Log records written after it, in order: the intact ones, less those not trusted after
    /// damage ([`Record::trusted_after_damage`]).
    pub records: Vec<Record>,
    /// Why writes this server acknowledged may be missing, if they may: it must not reuse its
    /// sequence numbers, and gets back from peers what they hold.
    pub loss: Option<Loss>,
}

/// Why a server's acknowledged writes may be missing from its disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The log was damaged.
    DamagedLog(LogDamage),
    /// The data directory was restored from a backup, older than the server's last writes.
    RestoredFromBackup,
}

/// What reading a damaged log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogDamage {
    /// Damaged byte ranges of the log, in order.
    pub ranges: Vec<ByteRange>,
    /// Intact records applied.
    pub records_kept: u64,
    /// Intact records dropped because their meaning depends on what was lost.
    pub records_skipped: u64,
}

/// A range of bytes in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub offset: u64,
    /// Length.
    pub len_bytes: u64,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::RestoredFromBackup => f.write_str("the data was restored from a backup"),
            Loss::DamagedLog(d) => {
                f.write_str("the log was damaged")?;
                for (i, r) in d.ranges.iter().enumerate() {
                    let sep = if i == 0 { " at bytes " } else { ", " };
                    write!(f, "{sep}{}..{}", r.offset, r.offset.saturating_add(r.len_bytes))?;
                }
                write!(
                    f,
                    "; kept {} intact records, skipped {} that depended on lost ones",
                    d.records_kept, d.records_skipped
                )
            }
        }
    }
}
