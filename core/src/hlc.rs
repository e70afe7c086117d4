//! Hybrid logical clock: wall time in ms plus a logical counter, so that a change made after
//! seeing another always orders after it, whatever the two servers' wall clocks say.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A hybrid logical timestamp; ordered by wall time, then counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Hlc {
    /// Wall-clock component, ms since the Unix epoch.
    pub wall_ms: u64,
    /// Logical counter that breaks ties within one ms and carries causality past skewed clocks.
    pub logical: u32,
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// The clock of one server: never goes backwards, absorbs timestamps it observes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that continues after `last` (for example the newest timestamp restored from disk).
    pub fn starting_after(last: Hlc) -> Self {
        HlcClock { last }
    }

    /// The newest timestamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A fresh timestamp for a local event at wall time `wall_ms`; strictly greater than any
    /// timestamp issued or observed before.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        self.last = if wall_ms > self.last.wall_ms {
            Hlc { wall_ms, logical: 0 }
        } else {
            self.bump(self.last)
        };
        self.last
    }

    /// Absorbs a timestamp seen in a message, so later local events order after it.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }

    fn bump(&self, at: Hlc) -> Hlc {
        match at.logical.checked_add(1) {
            Some(logical) => Hlc { wall_ms: at.wall_ms, logical },
            // Counter exhausted: borrow one ms from the future rather than reuse a stamp.
            None => Hlc { wall_ms: at.wall_ms + 1, logical: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_change_after_seeing_a_fast_clock_orders_after_it() {
        let hour_ms = 3_600_000;
        let mut fast = HlcClock::default();
        let mut slow = HlcClock::default();
        let seen = fast.tick(10 * hour_ms + hour_ms);
        slow.observe(seen);
        assert!(slow.tick(10 * hour_ms) > seen);
    }

    proptest! {
        #[test]
        fn ticks_strictly_increase(walls in proptest::collection::vec(0u64..1_000, 1..200)) {
            let mut clock = HlcClock::default();
            let mut prev = None;
            for w in walls {
                let t = clock.tick(w);
                if let Some(p) = prev { prop_assert!(t > p); }
                prev = Some(t);
            }
        }
    }
}
