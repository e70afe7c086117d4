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
    /// The monotonic clock alone, for link tasks to stamp what they read.
    fn mono(&self) -> MonoClock;
}

/// The monotonic half of a [`Clock`]: cheap to copy into tasks, same base as
/// [`Now::mono_us`].
#[derive(Clone, Copy, Debug)]
pub struct MonoClock {
    start: Instant,
}

impl MonoClock {
    /// Counting from now.
    pub fn new() -> Self {
        MonoClock { start: Instant::now() }
    }

    /// Monotonic µs since the start.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// The tokio instant at which monotonic time reaches `mono_ms`.
    pub fn instant_at(&self, mono_ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(mono_ms)
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The machine's clocks.
pub struct SystemClock {
    mono: MonoClock,
}

impl SystemClock {
    /// Starts the monotonic count now.
    pub fn new() -> Self {
        SystemClock { mono: MonoClock::new() }
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
        let mono_us = self.mono.now_us();
        Now { mono_ms: mono_us / 1000, mono_us, wall_ms }
    }

    fn instant_at(&self, mono_ms: u64) -> Instant {
        self.mono.instant_at(mono_ms)
    }

    fn mono(&self) -> MonoClock {
        self.mono
    }
}

/// A simulated machine's clock: simulated time, with a wall clock `offset_ms` off true time
/// and drifting by `drift_ppm`.
pub struct SkewedClock {
    mono: MonoClock,
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
        SkewedClock { mono: MonoClock::new(), epoch_ms, offset_ms, drift_ppm }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Now {
        let mono_us = self.mono.now_us();
        let mono_ms = mono_us / 1000;
        let skew = self.offset_ms + mono_ms as i64 * self.drift_ppm / 1_000_000;
        Now { mono_ms, mono_us, wall_ms: (self.epoch_ms + mono_ms).saturating_add_signed(skew) }
    }

    fn instant_at(&self, mono_ms: u64) -> Instant {
        self.mono.instant_at(mono_ms)
    }

    fn mono(&self) -> MonoClock {
        self.mono
    }
}
