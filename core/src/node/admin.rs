//! Administrators' commands: writes to the replicated store, explicit merge of two systems,
//! split of a server into its own system, and rename (merge-all).

use super::{LinkId, Node, Output};
use crate::auth::{credential_proof, derive_password_key, mac_eq, Nonce, Secret};
use crate::identity::Identity;
use crate::ids::{PeerAddr, ServerId, SystemId, SystemName};
use crate::licenses::LicenseError;
use crate::resources::{Key, PasswordVerifier, Role, Value};
use crate::store::Store;
use crate::wire::{Hello, MergeMsg, MergeRefusal, Message, Purpose};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

struct OutgoingMerge {
    id: CommandId,
    user: String,
    password: String,
    keep: Keep,
    link: Option<LinkId>,
    /// The password key and the remote's challenge, once it came.
    answered: Option<([u8; 32], Nonce)>,
}

struct IncomingMerge {
    nonce: Nonce,
    verifier: Option<PasswordVerifier>,
}

#[derive(Default)]
pub(super) struct AdminState {
    outgoing: BTreeMap<PeerAddr, OutgoingMerge>,
    incoming: BTreeMap<LinkId, IncomingMerge>,
}

impl AdminState {
    /// A dialled link opened: if a merge waits for this address, the link is its.
    pub fn claim_merge_link(&mut self, addr: &PeerAddr, link: LinkId) -> Purpose {
        match self.outgoing.get_mut(addr) {
            Some(m) if m.link.is_none() => {
                m.link = Some(link);
                Purpose::Merge { user: m.user.clone() }
            }
            _ => Purpose::Peer,
        }
    }

    /// Whether `link` carries a merge this server asked for.
    pub fn is_outgoing_merge(&self, link: LinkId) -> bool {
        self.outgoing.values().any(|m| m.link == Some(link))
    }

    pub fn link_closed(&mut self, link: LinkId, outputs: &mut VecDeque<Output>) {
        self.incoming.remove(&link);
        let gone: Vec<_> = self
            .outgoing
            .iter()
            .filter(|(_, m)| m.link == Some(link))
            .map(|(a, _)| a.clone())
            .collect();
        for addr in gone {
            let m = self.outgoing.remove(&addr).expect("just found");
            outputs.push_back(Output::Reply {
                id: m.id,
                result: Err(CommandError::Unreachable(addr)),
            });
        }
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
                if self.admin.outgoing.contains_key(&addr) {
                    Err(CommandError::MergeInProgress(addr))
                } else {
                    let m = OutgoingMerge { id, user, password, keep, link: None, answered: None };
                    self.admin.outgoing.insert(addr.clone(), m);
                    self.outputs.push_back(Output::Dial(addr));
                    return; // answered when the other side has spoken
                }
            }
            Command::Split { name } => self.split(name),
            Command::Rename { name } => {
                if name == self.identity.name {
                    Err(CommandError::NameUnchanged(name))
                } else {
                    let stamp = self.clock.tick(self.now.wall_ms);
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

    pub(super) fn admin_dial_failed(&mut self, addr: &PeerAddr) {
        if let Some(m) = self.admin.outgoing.get(addr).filter(|m| m.link.is_none()) {
            let id = m.id;
            self.admin.outgoing.remove(addr);
            self.outputs.push_back(Output::Reply {
                id,
                result: Err(CommandError::Unreachable(addr.clone())),
            });
        }
    }

    fn own_servers(&self) -> Vec<ServerId> {
        self.servers().map(|(s, _)| s).collect()
    }

    /// The remote side of a merge: challenge the initiator for the named administrator's password.
    pub(super) fn on_merge_request(&mut self, link: LinkId, hello: &Hello, user: String) {
        if hello.system == self.identity.system {
            return self.refuse(link, MergeRefusal::SameSystem);
        }
        let verifier = self
            .user(&user)
            .filter(|(_, u)| matches!(u.role, Role::Owner | Role::Admin))
            .map(|(_, u)| u.password.clone());
        // An unknown user gets a challenge like any other, so names cannot be probed.
        let salt = match &verifier {
            Some(v) => v.salt,
            None => Sha256::digest(user.as_bytes())[..16].try_into().expect("16 bytes"),
        };
        let params = verifier.as_ref().map_or(self.config.kdf, |v| v.params);
        let nonce = self.nonce();
        self.admin.incoming.insert(link, IncomingMerge { nonce, verifier });
        let servers = self.own_servers();
        self.send(link, Message::Merge(MergeMsg::Challenge { salt, params, nonce, servers }));
    }

    fn refuse(&mut self, link: LinkId, why: MergeRefusal) {
        self.send(link, Message::Merge(MergeMsg::Refused(why)));
        self.close(link);
    }

    pub(super) fn on_merge_message(&mut self, link: LinkId, hello: &Hello, msg: MergeMsg) {
        match msg {
            MergeMsg::Challenge { salt, params, nonce, servers } => {
                self.answer_challenge(link, salt, params, nonce, servers)
            }
            MergeMsg::Proof { proof, keep_initiator, servers, sealed_secret } => {
                let Some(incoming) = self.admin.incoming.remove(&link) else {
                    return self.violation(link, "merge proof without a challenge");
                };
                let Some(v) = incoming
                    .verifier
                    .filter(|v| mac_eq(&proof, &credential_proof(&v.key, &incoming.nonce)))
                else {
                    return self.refuse(link, MergeRefusal::BadCredentials);
                };
                if overlap(&servers, &self.own_servers()) {
                    return self.refuse(link, MergeRefusal::ServerOnBothSides);
                }
                let key = Secret::from_key(v.key);
                let stamp = self.clock.tick(self.now.wall_ms);
                let accepted = if keep_initiator {
                    let Some(sealed) = sealed_secret else {
                        return self
                            .violation(link, "merge keeping the initiator without its secret");
                    };
                    let secret = key.unseal(&sealed, &incoming.nonce);
                    self.adopt(hello.system, hello.name.clone(), stamp, Some(secret));
                    MergeMsg::Accepted {
                        system: hello.system,
                        name: hello.name.clone(),
                        sealed_secret: None,
                    }
                } else {
                    MergeMsg::Accepted {
                        system: self.identity.system,
                        name: self.identity.name.clone(),
                        sealed_secret: Some(key.seal(&self.identity.secret, &incoming.nonce)),
                    }
                };
                self.send(link, Message::Merge(accepted));
            }
            MergeMsg::Accepted { system, name, sealed_secret } => {
                let Some((addr, m)) = self.take_outgoing(link) else { return };
                let secret = match (m.keep, sealed_secret, m.answered) {
                    (Keep::Remote, Some(sealed), Some((key, nonce))) => {
                        Some(Secret::from_key(key).unseal(&sealed, &nonce))
                    }
                    (Keep::Remote, _, _) => {
                        self.outputs.push_back(Output::Reply {
                            id: m.id,
                            result: Err(CommandError::Unreachable(addr)),
                        });
                        return self.violation(link, "merge accepted without the kept secret");
                    }
                    (Keep::Local, _, _) => None,
                };
                if secret.is_some() {
                    let stamp = self.clock.tick(self.now.wall_ms);
                    self.adopt(system, name, stamp, secret);
                }
                // Remember the address so every server of the merged system can reach the other side.
                self.write(vec![(Key::ManualAddress(addr), Some(Value::ManualAddress))]);
                self.outputs
                    .push_back(Output::Reply { id: m.id, result: Ok(Reply::Merged { system }) });
                self.close(link);
            }
            MergeMsg::Refused(why) => {
                if let Some((_, m)) = self.take_outgoing(link) {
                    self.outputs.push_back(Output::Reply {
                        id: m.id,
                        result: Err(CommandError::MergeRefused(why)),
                    });
                }
                self.close(link);
            }
        }
    }

    fn answer_challenge(
        &mut self,
        link: LinkId,
        salt: [u8; 16],
        params: crate::auth::KdfParams,
        nonce: Nonce,
        servers: Vec<ServerId>,
    ) {
        let own = self.own_servers();
        let secret = self.identity.secret.clone();
        let Some(m) = self.admin.outgoing.values_mut().find(|m| m.link == Some(link)) else {
            return self.violation(link, "merge challenge on a link that asked for none");
        };
        let refusal = if !params.within_limit() {
            Some(MergeRefusal::UnreasonableChallenge)
        } else if overlap(&servers, &own) {
            Some(MergeRefusal::ServerOnBothSides)
        } else {
            None
        };
        if let Some(why) = refusal {
            let id = m.id;
            self.take_outgoing(link);
            self.outputs
                .push_back(Output::Reply { id, result: Err(CommandError::MergeRefused(why)) });
            return self.close(link);
        }
        let key = derive_password_key(&m.password, &salt, params);
        m.answered = Some((key, nonce));
        let keep_initiator = m.keep == Keep::Local;
        let sealed_secret = keep_initiator.then(|| Secret::from_key(key).seal(&secret, &nonce));
        let proof = credential_proof(&key, &nonce);
        self.send(
            link,
            Message::Merge(MergeMsg::Proof { proof, keep_initiator, servers: own, sealed_secret }),
        );
    }

    fn take_outgoing(&mut self, link: LinkId) -> Option<(PeerAddr, OutgoingMerge)> {
        let addr = self
            .admin
            .outgoing
            .iter()
            .find(|(_, m)| m.link == Some(link))
            .map(|(a, _)| a.clone())?;
        self.admin.outgoing.remove(&addr).map(|m| (addr, m))
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
                _ => false,
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Tell the others first, while the links are still up.
        self.write(leaving.iter().map(|(k, _)| (k.clone(), None)).collect());
        let current = self.identity.system;
        let system = SystemId::new(self.now.wall_ms, self.rng.gen());
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
            epoch: self.identity.epoch.max(self.now.wall_ms).saturating_add(1),
            system,
            name,
            name_stamp: self.clock.tick(self.now.wall_ms),
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

fn overlap(a: &[ServerId], b: &[ServerId]) -> bool {
    let a: BTreeSet<_> = a.iter().collect();
    b.iter().any(|s| a.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KdfParams;
    use crate::hlc::Hlc;
    use crate::ids::{HardwareId, SystemName};
    use crate::node::{Config, Input, Now, Timing};
    use crate::persist::Restored;
    use crate::wire::PROTOCOL_VERSION;

    fn node() -> Node {
        let config = Config {
            server_name: "a".into(),
            system_name: SystemName::new("north").unwrap(),
            secret: Secret::from_text("s"),
            hardware_id: HardwareId("hw".into()),
            listen: vec![PeerAddr("10.0.0.1:7001".into())],
            manual_peers: vec![],
            vendor_key: crate::licenses::LicenseIssuer::from_seed([1; 32]).verifying_key(),
            kdf: KdfParams::CHEAP,
            failover_enabled: true,
            max_cameras: 8,
            timing: Timing::default(),
        };
        Node::new(config, Restored::default(), 1, Now { mono_ms: 0, wall_ms: 1_700_000_000_000 })
    }

    fn replies(n: &mut Node) -> Vec<Result<Reply, CommandError>> {
        std::iter::from_fn(|| n.poll_output())
            .filter_map(|o| match o {
                Output::Reply { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_merge_challenge_asking_for_an_unbounded_derivation_is_refused() {
        let mut n = node();
        let now = Now { mono_ms: 10, wall_ms: 1_700_000_000_010 };
        let addr = PeerAddr("10.0.0.2:7001".into());
        let cmd = Command::Merge {
            addr: addr.clone(),
            user: "admin".into(),
            password: "pw".into(),
            keep: Keep::Remote,
        };
        n.handle(now, Input::Command { id: CommandId(1), cmd });
        n.handle(now, Input::LinkOpened { link: LinkId(7), dialed: Some(addr) });
        let hello = Hello {
            version: PROTOCOL_VERSION,
            server: ServerId(99),
            system: SystemId(5),
            name: SystemName::new("south").unwrap(),
            name_stamp: Hlc::default(),
            boot: 1,
            nonce: [0; 16],
            hlc: Hlc::default(),
            purpose: Purpose::Peer,
            listen: vec![],
        };
        n.handle(now, Input::Message { link: LinkId(7), msg: Message::Hello(hello) });
        let huge = KdfParams { memory_kib: u32::MAX, passes: u32::MAX };
        let challenge =
            MergeMsg::Challenge { salt: [0; 16], params: huge, nonce: [1; 16], servers: vec![] };
        n.handle(now, Input::Message { link: LinkId(7), msg: Message::Merge(challenge) });
        assert_eq!(
            replies(&mut n),
            vec![Err(CommandError::MergeRefused(MergeRefusal::UnreasonableChallenge))]
        );
    }
}
