//! Log generations: each snapshot starts a new log, named by its generation.

use std::fmt;

/// The generation of a snapshot and of the log that continues it: log file `log.<generation>`
/// holds the records written after the snapshot of the same generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation before any snapshot was written.
    pub const FIRST: Generation = Generation(0);

    /// A bound no snapshot reaches: one read from disk must be below it, so that the snapshot
    /// after it is still readable.
    pub const MAX: Generation = Generation(u64::MAX - 1);

    /// The generation after this one.
    ///
    /// Generations count snapshots from [`Generation::FIRST`] and those read from disk are
    /// checked against [`Generation::MAX`], so this never overflows in practice.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }

    /// The generation before this one, if any.
    pub fn prev(self) -> Option<Generation> {
        self.0.checked_sub(1).map(Generation)
    }

    /// Name of this generation's log file.
    pub fn log_name(self) -> String {
        format!("log.{}", self.0)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen {}", self.0)
    }
}
