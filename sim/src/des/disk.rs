//! A simulated disk: what a server persisted, as the driver would have written it.

use hive_core::persist::{LogDamage, Loss, Record, Restored, Snapshot};

/// Durable state of one simulated server.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// Latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Records after it.
    pub records: Vec<Record>,
    /// Appends fail while set.
    pub full: bool,
    /// What the last damage to the log cost; reported at the next start.
    pub damage: Option<LogDamage>,
}

impl Disk {
    /// What a restarting server loads.
    pub fn restore(&mut self) -> Restored {
        Restored {
            snapshot: self.snapshot.clone(),
            records: self.records.clone(),
            loss: self.damage.take().map(Loss::DamagedLog),
        }
    }

    /// Loses record `at`, as a corrupted middle record does, and leaves what the driver reads
    /// back around it: every other record, less those after the damage whose meaning depends
    /// on what was lost ([`Record::trusted_after_damage`]). The simulated disk has no bytes,
    /// so no byte ranges are reported.
    pub fn damage(&mut self, at: usize) {
        if at >= self.records.len() {
            return;
        }
        self.records.remove(at);
        let after = self.records.split_off(at);
        let (kept, skipped): (Vec<_>, Vec<_>) =
            after.into_iter().partition(Record::trusted_after_damage);
        self.records.extend(kept);
        self.damage = Some(LogDamage {
            ranges: Vec::new(),
            records_kept: self.records.len() as u64,
            records_skipped: skipped.len() as u64,
        });
    }

    /// Folds the log into the snapshot, as the driver does periodically.
    pub fn compact(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
        self.records.clear();
    }
}
