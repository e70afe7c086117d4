//! What the checker sees of one server, taken the same way at both simulation levels.

use hive_core::ids::{HardwareId, ServerId, SystemId, SystemName};
use hive_core::node::Node;
use hive_core::resources::{Key, Value};
use hive_core::store::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// A server as observed by the invariant checker.
#[derive(Clone, Debug)]
pub struct NodeReport {
    /// The server.
    pub server: ServerId,
    /// Its system.
    pub system: SystemId,
    /// Its system name.
    pub name: SystemName,
    /// Servers it reaches.
    pub online: BTreeSet<ServerId>,
    /// Every entry of its replica.
    pub entries: BTreeMap<Key, Entry>,
    /// License total it reports.
    pub license_total: u64,
    /// License total recomputed independently from its replica and online set.
    pub license_total_expected: u64,
    /// Names of other systems it lists.
    pub other_systems: BTreeSet<SystemName>,
    /// Whether it has no sync work outstanding.
    pub sync_idle: bool,
}

impl NodeReport {
    /// Observes a node.
    pub fn of(node: &Node, vendor: &ed25519_dalek::VerifyingKey) -> NodeReport {
        let online = node.online_servers();
        let online_hw: BTreeSet<HardwareId> = online
            .iter()
            .filter_map(|s| match node.store().get(&Key::Server(*s)) {
                Some(Value::Server(r)) => Some(r.hardware_id.clone()),
                _ => None,
            })
            .collect();
        // The plain definition: each distinct valid key bound to present hardware, summed.
        let mut counted = BTreeSet::new();
        let mut expected = 0u64;
        for (_, v) in node.store().iter() {
            if let Value::License(k) = v {
                if online_hw.contains(&k.hardware_id)
                    && k.verify(vendor).is_ok()
                    && counted.insert(k.id)
                {
                    expected += u64::from(k.channels);
                }
            }
        }
        NodeReport {
            server: node.identity().server,
            system: node.identity().system,
            name: node.identity().name.clone(),
            online,
            entries: node.store().entries().clone(),
            license_total: node.license_status().total,
            license_total_expected: expected,
            other_systems: node.other_systems().into_iter().map(|o| o.name).collect(),
            sync_idle: node.sync_idle(),
        }
    }
}
