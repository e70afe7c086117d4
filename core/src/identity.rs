//! Who a server is and which system it belongs to.

use crate::auth::Secret;
use crate::hlc::Hlc;
use crate::ids::{ServerId, SystemId, SystemName};
use crate::keys::StaticKeypair;
use crate::store::ReplicaId;
use serde::{Deserialize, Serialize};

/// A server's identity and membership, persisted beside its replica.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Identity {
    /// This server.
    pub server: ServerId,
    /// Incarnation of its write log; see [`ReplicaId`].
    pub epoch: u64,
    /// System it belongs to.
    pub system: SystemId,
    /// The system's name.
    pub name: SystemName,
    /// When the name (or the system) was last changed; the newer change wins.
    pub name_stamp: Hlc,
    /// The system's secret.
    pub secret: Secret,
    /// This server's link key pair; `None` only in state written by protocol 2, filled from
    /// the configuration at the next start.
    #[serde(default)]
    pub link_key: Option<StaticKeypair>,
}

impl Identity {
    /// The origin of this server's writes.
    pub fn replica(&self) -> ReplicaId {
        ReplicaId { server: self.server, epoch: self.epoch }
    }
}
