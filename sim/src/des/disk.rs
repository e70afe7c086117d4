//! A simulated disk: what a server persisted, as the driver would have written it.

use hive_core::persist::{Record, Restored, Snapshot};

/// Durable state of one simulated server.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// Latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Records after it.
    pub records: Vec<Record>,
    /// Appends fail while set.
    pub full: bool,
    /// Set when the log was damaged in the middle; cleared at the next start.
    pub damaged: bool,
}

impl Disk {
    /// What a restarting server loads.
    pub fn restore(&mut self) -> Restored {
        Restored {
            snapshot: self.snapshot.clone(),
            records: self.records.clone(),
            damaged: std::mem::take(&mut self.damaged),
        }
    }

    /// Loses the records from `keep` on, as a corrupted middle record does: the server finds
    /// the damage at start and recovers the rest from peers.
    pub fn damage(&mut self, keep: usize) {
        if keep < self.records.len() {
            self.records.truncate(keep);
            self.damaged = true;
        }
    }

    /// Folds the log into the snapshot, as the driver does periodically.
    pub fn compact(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
        self.records.clear();
    }
}
