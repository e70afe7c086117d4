//! Read-only views of the node for the API, the simulator and tests.

use super::{LinkId, Node};
use crate::identity::Identity;
use crate::ids::{CameraId, ServerId, SystemId, UserId};
use crate::licenses::LicenseId;
use crate::resources::{CameraRecord, Key, ServerRecord, UserRecord, Value};
use crate::store::Store;

/// One server's span of recording a camera, in system ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySpan {
    /// The server that recorded.
    pub server: ServerId,
    /// When it began.
    pub start_ms: u64,
    /// When it ended; `None` while it records.
    pub end_ms: Option<u64>,
}

impl Node {
    /// This server's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The replica.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Servers with a live, authenticated link to this one.
    pub fn linked_peers(&self) -> impl Iterator<Item = (ServerId, LinkId)> + '_ {
        self.peers.iter().map(|(s, l)| (*s, *l))
    }

    /// Servers of the system as recorded.
    pub fn servers(&self) -> impl Iterator<Item = (ServerId, &ServerRecord)> {
        self.store.range(Key::Server(ServerId(0))..Key::Camera(CameraId(0))).filter_map(|(k, v)| {
            match (k, v) {
                (Key::Server(id), Value::Server(r)) => Some((*id, r)),
                _ => None,
            }
        })
    }

    /// Cameras of the system.
    pub fn cameras(&self) -> impl Iterator<Item = (CameraId, &CameraRecord)> {
        self.store.range(Key::Camera(CameraId(0))..Key::User(UserId(0))).filter_map(
            |(k, v)| match (k, v) {
                (Key::Camera(id), Value::Camera(r)) => Some((*id, r)),
                _ => None,
            },
        )
    }

    /// Who recorded `camera` when: its history spans, oldest start first (ties by server).
    /// A span still open (`end_ms: None`) is being recorded; one left open by a server that
    /// died is closed by the server that takes the camera over.
    pub fn camera_history(&self, camera: CameraId) -> Vec<HistorySpan> {
        let from = Key::CameraHistory { camera, server: ServerId(0), start_ms: 0 };
        let mut spans: Vec<HistorySpan> = self
            .store
            .range(from..)
            .map_while(|(k, v)| match (k, v) {
                (Key::CameraHistory { camera: c, server, start_ms }, Value::CameraHistory(h))
                    if *c == camera =>
                {
                    Some(HistorySpan { server: *server, start_ms: *start_ms, end_ms: h.end_ms })
                }
                _ => None,
            })
            .collect();
        spans.sort_by_key(|s| (s.start_ms, s.server));
        spans
    }

    /// User accounts; when two share a name, the one created in the current system wins
    /// (after a merge, the kept side's administrator).
    pub fn users(&self) -> Vec<(UserId, &UserRecord)> {
        let mut by_name: std::collections::BTreeMap<&str, (UserId, &UserRecord)> =
            Default::default();
        let all = self.store.range(Key::User(UserId(0))..).map_while(|(k, v)| match (k, v) {
            (Key::User(id), Value::User(r)) => Some((*id, r)),
            _ => None,
        });
        let current = self.identity.system;
        for (id, u) in all {
            let better = |(_, old): &(UserId, &UserRecord)| {
                old.home_system != current && u.home_system == current
            };
            match by_name.get(u.name.as_str()) {
                Some(existing) if !better(existing) => {}
                _ => {
                    by_name.insert(&u.name, (id, u));
                }
            }
        }
        by_name.into_values().collect()
    }

    /// A user by login name.
    pub fn user(&self, name: &str) -> Option<(UserId, &UserRecord)> {
        self.users().into_iter().find(|(_, u)| u.name == name)
    }

    /// A system setting: the current system's value, else the newest value written under a
    /// system that merged into this one.
    pub fn setting(&self, name: &str) -> Option<&str> {
        let key = Key::Setting { system: self.identity.system, name: name.to_owned() };
        if let Some(Value::Setting(v)) = self.store.get(&key) {
            return Some(v);
        }
        self.all_settings()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, e)| match &e.value {
                Some(Value::Setting(v)) => Some((e.hlc, v.as_str())),
                _ => None,
            })
            .max()
            .map(|(_, v)| v)
    }

    /// Setting entries of every system, tombstones included, as `(name, entry)`.
    fn all_settings(&self) -> impl Iterator<Item = (&str, &crate::store::Entry)> {
        let first = Key::Setting { system: SystemId(0), name: String::new() };
        self.store.entries().range(first..Key::License(LicenseId(0))).filter_map(|(k, e)| match k {
            Key::Setting { name, .. } => Some((name.as_str(), e)),
            _ => None,
        })
    }

    /// All settings names with their effective values.
    pub fn settings(&self) -> std::collections::BTreeMap<String, String> {
        let names: std::collections::BTreeSet<&str> =
            self.all_settings().filter(|(_, e)| e.value.is_some()).map(|(n, _)| n).collect();
        names
            .into_iter()
            .filter_map(|n| self.setting(n).map(|v| (n.to_owned(), v.to_owned())))
            .collect()
    }
}
