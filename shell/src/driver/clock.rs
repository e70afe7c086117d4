//! Clock readings for the core: monotonic time from tokio (which turmoil controls in
//! simulation) and a wall clock that may be offset and drift, as real ones do.

use hive_core::node::Now;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Where the driver reads time.
pub trait Clock: 'static {
    /// The current reading.
    fn now(&self) -> Now;
    /// The tokio instant at which monotonic time reaches `mono_ms`.
    fn instant_at(&self, mono_ms: u64) -> Instant;
}

/// The machine's clocks.
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Starts the monotonic count now.
    pub fn new() -> Self {
        SystemClock { start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Now { mono_ms: self.start.elapsed().as_millis() as u64, wall_ms }
    }

    fn instant_at(&self, mono_ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(mono_ms)
    }
}

/// A simulated machine's clock: simulated time, with a wall clock `offset_ms` off true time
/// and drifting by `drift_ppm`.
pub struct SkewedClock {
    start: Instant,
    /// Wall time at `start`, ms since the epoch.
    pub epoch_ms: u64,
    /// Offset of the wall clock from true time.
    pub offset_ms: i64,
    /// Drift of the wall clock, parts per million.
    pub drift_ppm: i64,
}

impl SkewedClock {
    /// A clock starting now at wall time `epoch_ms`.
    pub fn new(epoch_ms: u64, offset_ms: i64, drift_ppm: i64) -> Self {
        SkewedClock { start: Instant::now(), epoch_ms, offset_ms, drift_ppm }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Now {
        let mono_ms = self.start.elapsed().as_millis() as u64;
        let skew = self.offset_ms + mono_ms as i64 * self.drift_ppm / 1_000_000;
        Now { mono_ms, wall_ms: (self.epoch_ms + mono_ms).saturating_add_signed(skew) }
    }

    fn instant_at(&self, mono_ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(mono_ms)
    }
}
