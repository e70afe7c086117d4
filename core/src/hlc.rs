//! Hybrid logical clock: wall time in ms plus a logical counter, so that a change made after
//! seeing another always orders after it, whatever the two servers' wall clocks say.

use crate::instant::WallMs;
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

    /// A fresh timestamp for a local event at wall time `wall`; strictly greater than any
    /// timestamp issued or observed before.
    pub fn tick(&mut self, wall: WallMs) -> Hlc {
        self.last = if wall.0 > self.last.wall_ms {
            Hlc { wall_ms: wall.0, logical: 0 }
        } else {
            self.bump(self.last)
        };
        self.last
    }

    /// Absorbs a timestamp this server wrote itself or already accepted (its own persisted
    /// state), so later local events order after it.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// Absorbs a peer's timestamp only if it is at most `max_offset_ms` ahead of the local wall
    /// clock `wall` (CockroachDB's max-offset rule): one stamp from a broken or hostile clock
    /// must not drag this server's clock to the end of time, where every later write would
    /// lose to older ones.
    pub fn observe_bounded(
        &mut self,
        remote: Hlc,
        wall: WallMs,
        max_offset_ms: u64,
    ) -> Result<(), ClockViolation> {
        let limit_ms = wall.saturating_plus_ms(max_offset_ms).0;
        if remote.wall_ms > limit_ms {
            return Err(ClockViolation { stamp: remote, limit_ms });
        }
        self.observe(remote);
        Ok(())
    }

    /// Brings a clock restored from disk back within `max_offset_ms` of the wall clock: a
    /// poisoned maximum persisted before the bound existed must not outlive a restart.
    pub fn clamp(&mut self, wall: WallMs, max_offset_ms: u64) -> bool {
        let limit_ms = wall.saturating_plus_ms(max_offset_ms).0;
        if self.last.wall_ms > limit_ms {
            self.last = Hlc { wall_ms: limit_ms, logical: 0 };
            return true;
        }
        false
    }

    fn bump(&self, at: Hlc) -> Hlc {
        match at.logical.checked_add(1) {
            Some(logical) => Hlc { wall_ms: at.wall_ms, logical },
            // Counter exhausted: borrow one ms from the future rather than reuse a stamp; at
            // the very end of time the clock saturates instead of wrapping.
            None => Hlc { wall_ms: at.wall_ms.saturating_add(1), logical: 0 },
        }
    }
}

/// A peer's timestamp further ahead of the local wall clock than the system allows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("timestamp {stamp:?} is beyond the allowed clock offset (limit {limit_ms} ms)")]
pub struct ClockViolation {
    /// The stamp refused.
    pub stamp: Hlc,
    /// The latest wall time accepted when it arrived.
    pub limit_ms: u64,
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
        let seen = fast.tick(WallMs(10 * hour_ms + hour_ms));
        slow.observe(seen);
        assert!(slow.tick(WallMs(10 * hour_ms)) > seen);
    }

    #[test]
    fn a_stamp_beyond_the_offset_is_refused_and_leaves_the_clock_alone() {
        let mut clock = HlcClock::default();
        let now = WallMs(1_700_000_000_000);
        clock.tick(now);
        let before = clock.last();
        let poison = Hlc { wall_ms: u64::MAX, logical: u32::MAX };
        assert!(clock.observe_bounded(poison, now, 86_400_000).is_err());
        assert_eq!(clock.last(), before);
        let ahead = Hlc { wall_ms: now.0 + 3_600_000, logical: 0 };
        assert!(clock.observe_bounded(ahead, now, 86_400_000).is_ok());
        assert!(clock.tick(now) > ahead);
    }

    #[test]
    fn a_poisoned_clock_from_disk_is_clamped_and_ticks_stay_ordered_after() {
        let mut clock = HlcClock::starting_after(Hlc { wall_ms: u64::MAX, logical: u32::MAX });
        assert!(clock.clamp(WallMs(1_000), 10));
        assert_eq!(clock.last().wall_ms, 1_010);
        // Even unclamped, the clock saturates at the end of time instead of wrapping to 0.
        let mut end = HlcClock::starting_after(Hlc { wall_ms: u64::MAX, logical: u32::MAX });
        assert_eq!(end.tick(WallMs(5)).wall_ms, u64::MAX);
    }

    proptest! {
        #[test]
        fn ticks_strictly_increase(walls in proptest::collection::vec(0u64..1_000, 1..200)) {
            let mut clock = HlcClock::default();
            let mut prev = None;
            for w in walls {
                let t = clock.tick(WallMs(w));
                if let Some(p) = prev { prop_assert!(t > p); }
                prev = Some(t);
            }
        }
    }
}
