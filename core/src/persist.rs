//! What a server persists: records appended to its transaction log and snapshots of the whole
//! replica. The shell frames and stores them; the core only says what they are.

use crate::identity::Identity;
use crate::store::{ReplicaId, Seq, Store, Transaction};
use serde::{Deserialize, Serialize};
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
    /// Log records written after it, in order.
    pub records: Vec<Record>,
    /// The log was damaged before its tail: writes may be missing, so the server must not reuse
    /// its sequence numbers and recovers the rest from peers.
    pub damaged: bool,
}
