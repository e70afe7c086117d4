//! Administrators' commands: writes to the replicated store, explicit merge of two systems,
//! split of a server into its own system, and rename (merge-all).

use super::merge::OutgoingMerge;
use super::{ChannelKind, Node, Output};
use crate::identity::Identity;
use crate::ids::{PeerAddr, SystemId, SystemName};
use crate::licenses::LicenseError;
use crate::resources::{Key, Value};
use crate::store::Store;
use crate::wire::MergeRefusal;
use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Handle that pairs a command with its reply.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct CommandId(pub u64);

/// Which side's identity, settings and administrator survive a merge.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Keep {
    /// This server's system.
    Local,
    /// The remote system.
    Remote,
}

/// A request from an administrator or API client.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    /// Create or replace a resource.
    Put {
        /// Where.
        key: Key,
        /// What.
        value: Value,
    },
    /// Delete a resource.
    Delete {
        /// Where.
        key: Key,
    },
    /// Merge this system with the one at `addr`, proving the remote administrator's password.
    Merge {
        /// Address of a server of the other system.
        addr: PeerAddr,
        /// Remote administrator's login.
        user: String,
        /// Remote administrator's password.
        password: String,
        /// Whose identity, settings and administrator win.
        keep: Keep,
    },
    /// Leave the system with this server's cameras and licenses and a copy of the users.
    Split {
        /// Name of the new system.
        name: SystemName,
    },
    /// Rename the whole system; with another system's name and secret, the two merge.
    Rename {
        /// New name.
        name: SystemName,
    },
    /// Replace the system secret (an owner's act: a weak secret from before protocol 3, or a
    /// leaked one). The new secret floods to every member over the current, encrypted links; a
    /// member offline meanwhile must be rejoined with the new join token.
    ReplaceSecret {
        /// The new secret.
        secret: crate::auth::Secret,
    },
    /// Replace this server's link key (an owner's act, e.g. after a suspected leak): the new
    /// public key is pinned system-wide over the current links, then every link is made again
    /// with the new key.
    ReplaceLinkKey {
        /// The new pair, made by the shell from the operating system's randomness.
        pair: crate::keys::StaticKeypair,
    },
}

/// A command's successful outcome.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Reply {
    /// Done and durable.
    Done,
    /// Now one system with the other.
    Merged {
        /// The surviving system.
        system: SystemId,
    },
    /// Now alone in a new system.
    Split {
        /// The new system.
        system: SystemId,
    },
    /// This server's link key is now this one.
    LinkKey(crate::keys::PublicKey),
}

/// Why a command failed.
#[derive(Clone, PartialEq, Eq, Debug, Error, Serialize, Deserialize)]
pub enum CommandError {
    /// A value of one kind under a key of another.
    #[error("the value does not fit the key")]
    ValueDoesNotFitKey,
    /// Nothing to delete.
    #[error("no such resource")]
    NotFound,
    /// A license key that does not verify or does not match its key.
    #[error("invalid license: {0}")]
    InvalidLicense(String),
    /// The other side refused the merge.
    #[error("merge refused: {0}")]
    MergeRefused(MergeRefusal),
    /// The other server could not be reached or hung up.
    #[error("could not reach {0}")]
    Unreachable(PeerAddr),
    /// A merge with that address is already running.
    #[error("a merge with {0} is already in progress")]
    MergeInProgress(PeerAddr),
    /// The new name is the current one.
    #[error("the system is already named {0}")]
    NameUnchanged(SystemName),
}

impl From<LicenseError> for CommandError {
    fn from(e: LicenseError) -> Self {
        CommandError::InvalidLicense(e.to_string())
    }
}

impl Node {
    pub(super) fn on_command(&mut self, id: CommandId, cmd: Command) {
        let result = match cmd {
            Command::Put { key, value } => self.put(key, value),
            Command::Delete { key } => match self.store.get(&key) {
                Some(_) => {
                    self.write(vec![(key, None)]);
                    Ok(Reply::Done)
                }
                None => Err(CommandError::NotFound),
            },
            Command::Merge { addr, user, password, keep } => {
                if self.merges.outgoing.contains_key(&addr) {
                    Err(CommandError::MergeInProgress(addr))
                } else {
                    let m = OutgoingMerge::new(id, user, password, keep);
                    self.merges.outgoing.insert(addr.clone(), m);
                    self.outputs.push_back(Output::Dial { addr, kind: ChannelKind::Merge });
                    return; // answered when the other side has spoken
                }
            }
            Command::Split { name } => self.split(name),
            Command::ReplaceLinkKey { pair } => Ok(self.replace_link_key(pair)),
            Command::ReplaceSecret { secret } => {
                let stamp = self.clock.tick(self.now.wall);
                let (system, name) = (self.identity.system, self.identity.name.clone());
                self.adopt(system, name, stamp, Some(secret));
                Ok(Reply::Done)
            }
            Command::Rename { name } => {
                if name == self.identity.name {
                    Err(CommandError::NameUnchanged(name))
                } else {
                    let stamp = self.clock.tick(self.now.wall);
                    self.adopt(self.identity.system, name, stamp, None);
                    Ok(Reply::Done)
                }
            }
        };
        self.outputs.push_back(Output::Reply { id, result });
    }

    fn put(&mut self, key: Key, value: Value) -> Result<Reply, CommandError> {
        if !value.fits(&key) {
            return Err(CommandError::ValueDoesNotFitKey);
        }
        if let (Key::License(id), Value::License(k)) = (&key, &value) {
            if *id != k.id {
                return Err(CommandError::InvalidLicense(
                    "key id differs from the license's id".into(),
                ));
            }
            k.verify(&self.config.vendor_key)?;
        }
        self.write(vec![(key, Some(value))]);
        Ok(Reply::Done)
    }

    fn replace_link_key(&mut self, pair: crate::keys::StaticKeypair) -> Reply {
        let public = pair.public;
        self.identity.link_key = Some(pair);
        // Durable before the new pin is pushed: a crash must not leave the system pinning a
        // key this server no longer has.
        self.outputs.push_back(Output::Persist(vec![crate::persist::Record::Identity(
            self.identity.clone(),
        )]));
        self.write(vec![(Key::ServerKey(self.identity.server), Some(Value::ServerKey(public)))]);
        // Pushed first on every link (the driver drains queued frames before closing); the
        // peers then see this server come back with the key they just pinned.
        for link in self.links.keys().copied().collect::<Vec<_>>() {
            self.close(link);
        }
        Reply::LinkKey(public)
    }

    /// Leaves the system: the others forget this server, its cameras and licenses; this server
    /// starts a new system holding those and a copy of the users.
    fn split(&mut self, name: SystemName) -> Result<Reply, CommandError> {
        if name == self.identity.name {
            return Err(CommandError::NameUnchanged(name));
        }
        let me = self.identity.server;
        let hardware = self.config.hardware_id.clone();
        let leaving: Vec<(Key, Value)> = self
            .store
            .iter()
            .filter(|(k, v)| match (k, v) {
                (Key::Server(s), _) => *s == me,
                (Key::Camera(_), Value::Camera(c)) => c.preferred == me,
                (Key::License(_), Value::License(l)) => l.hardware_id == hardware,
                (Key::CameraHistory { server, .. }, _) => *server == me,
                (Key::ServerKey(s), _) => *s == me,
                _ => false,
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Tell the others first, while the links are still up.
        self.write(leaving.iter().map(|(k, _)| (k.clone(), None)).collect());
        let current = self.identity.system;
        let system = SystemId::new(self.now.wall, self.rng.gen());
        let copied: Vec<(Key, Option<Value>)> = self
            .store
            .iter()
            .filter_map(|(k, v)| match k {
                Key::User(_) => Some((k.clone(), Some(v.clone()))),
                Key::Setting { system: s, name } if *s == current => {
                    Some((Key::Setting { system, name: name.clone() }, Some(v.clone())))
                }
                _ => None,
            })
            .chain(leaving.into_iter().map(|(k, v)| (k, Some(v))))
            .collect();
        for link in self.links.keys().copied().collect::<Vec<_>>() {
            self.close(link);
        }
        self.identity = Identity {
            epoch: self.identity.epoch.max(self.now.wall.0).saturating_add(1),
            system,
            name,
            name_stamp: self.clock.tick(self.now.wall),
            ..self.identity.clone()
        };
        self.store = Store::new();
        // The new replica is persisted whole, by the snapshot below.
        self.apply_local(copied);
        self.discovery.identity_changed();
        self.membership_changed();
        self.outputs.push_back(Output::Snapshot(Box::new(self.snapshot())));
        self.event(super::Event::IdentityChanged { system, name: self.identity.name.clone() });
        Ok(Reply::Split { system })
    }
}
