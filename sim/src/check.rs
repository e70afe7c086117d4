//! The invariant checker shared by both simulation levels.

use crate::report::NodeReport;
use hive_core::ids::{ServerId, SystemId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Violation {}

/// Invariants that hold at every step, whatever the faults.
pub fn always(reports: &[NodeReport], isolated: &BTreeSet<ServerId>) -> Result<(), Violation> {
    for r in reports {
        if r.license_total != r.license_total_expected {
            return Err(Violation(format!(
                "{:?}: license total {} but its keys of online servers sum to {}",
                r.server, r.license_total, r.license_total_expected
            )));
        }
        // A server that never proved the secret holds nobody else's data, and gives none.
        for e in r.entries.values() {
            let foreign = e.origin.server != r.server;
            if foreign && (isolated.contains(&r.server) || isolated.contains(&e.origin.server)) {
                return Err(Violation(format!(
                    "{:?} holds a write of {:?} across a system boundary",
                    r.server, e.origin.server
                )));
            }
        }
    }
    Ok(())
}

/// Invariants of a quiet, fully connected world: every system's servers hold identical state,
/// see each other online, and agree on the license total.
pub fn converged(reports: &[NodeReport]) -> Result<(), Violation> {
    let mut systems: BTreeMap<SystemId, Vec<&NodeReport>> = BTreeMap::new();
    for r in reports {
        systems.entry(r.system).or_default().push(r);
    }
    for (system, members) in systems {
        let first = members[0];
        let servers: BTreeSet<ServerId> = members.iter().map(|r| r.server).collect();
        for r in &members {
            if r.entries != first.entries {
                let diff = r.entries.iter().find(|(k, e)| first.entries.get(*k) != Some(*e));
                let missing = first.entries.iter().find(|(k, _)| !r.entries.contains_key(*k));
                return Err(Violation(format!(
                    "{system:?}: {:?} and {:?} differ ({} vs {} entries); first difference {:?}, missing {:?}",
                    r.server,
                    first.server,
                    r.entries.len(),
                    first.entries.len(),
                    diff.map(|(k, _)| k),
                    missing.map(|(k, _)| k)
                )));
            }
            if r.online != servers {
                return Err(Violation(format!(
                    "{system:?}: {:?} sees {:?} online, members are {:?}",
                    r.server, r.online, servers
                )));
            }
            if r.license_total != first.license_total {
                return Err(Violation(format!("{system:?}: license totals differ")));
            }
        }
    }
    Ok(())
}

/// Whether every server's sync is idle and every system has converged.
pub fn is_converged(reports: &[NodeReport]) -> bool {
    reports.iter().all(|r| r.sync_idle) && converged(reports).is_ok()
}
