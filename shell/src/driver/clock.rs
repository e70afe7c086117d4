//! Clock readings for the core: monotonic time from tokio (which turmoil controls in
//! simulation) and a wall clock that may be offset and drift, as real ones do.

use hive_core::instant::{MonoMs, MonoUs, WallMs};
use hive_core::node::Now;
use std::ffi::OsStr;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::time::Instant;

/// Environment variable of a fake wall-clock skew in signed ms, so that process tests can run
/// servers on one machine that disagree about the time. A test aid: never set in production.
pub const WALL_SKEW_ENV: &str = "HIVE_TEST_WALL_SKEW_MS";

/// [`WALL_SKEW_ENV`] is set to something other than a signed integer.
#[derive(Debug, Error)]
#[error("{WALL_SKEW_ENV}={value:?} is not a signed integer number of milliseconds")]
pub struct WallSkewError {
    /// The value found.
    pub value: String,
}

/// The skew [`WALL_SKEW_ENV`] asks for: 0 when unset.
pub fn parse_wall_skew_ms(value: Option<&OsStr>) -> Result<i64, WallSkewError> {
    let Some(value) = value else { return Ok(0) };
    value
        .to_str()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| WallSkewError { value: value.to_string_lossy().into_owned() })
}

/// Where the driver reads time.
pub trait Clock: 'static {
    /// The current reading.
    fn now(&self) -> Now;
    /// The tokio instant at which monotonic time reaches `mono`.
    fn instant_at(&self, mono: MonoMs) -> Instant;
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

    /// The tokio instant at which monotonic time reaches `mono`.
    pub fn instant_at(&self, mono: MonoMs) -> Instant {
        self.start + std::time::Duration::from_millis(mono.0)
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
    /// Added to every wall reading (a test aid, see [`WALL_SKEW_ENV`]).
    wall_skew_ms: i64,
}

impl SystemClock {
    /// Starts the monotonic count now; the wall clock is the machine's.
    pub fn new() -> Self {
        SystemClock { mono: MonoClock::new(), wall_skew_ms: 0 }
    }

    /// Like [`SystemClock::new`], with the wall clock skewed as [`WALL_SKEW_ENV`] says; read
    /// once, here.
    pub fn from_env() -> Result<Self, WallSkewError> {
        let wall_skew_ms = parse_wall_skew_ms(std::env::var_os(WALL_SKEW_ENV).as_deref())?;
        Ok(SystemClock { wall_skew_ms, ..SystemClock::new() })
    }

    /// The skew added to wall readings.
    pub fn wall_skew_ms(&self) -> i64 {
        self.wall_skew_ms
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_add_signed(self.wall_skew_ms);
        let mono_us = MonoUs(self.mono.now_us());
        Now { mono: mono_us.to_ms(), mono_us, wall: WallMs(wall_ms) }
    }

    fn instant_at(&self, mono: MonoMs) -> Instant {
        self.mono.instant_at(mono)
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
        let mono_us = MonoUs(self.mono.now_us());
        let mono = mono_us.to_ms();
        let skew = self.offset_ms + mono.0 as i64 * self.drift_ppm / 1_000_000;
        let wall = WallMs((self.epoch_ms + mono.0).saturating_add_signed(skew));
        Now { mono, mono_us, wall }
    }

    fn instant_at(&self, mono: MonoMs) -> Instant {
        self.mono.instant_at(mono)
    }

    fn mono(&self) -> MonoClock {
        self.mono
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_wall_skew_is_zero() {
        assert_eq!(parse_wall_skew_ms(None).unwrap(), 0);
    }

    #[test]
    fn a_wall_skew_is_signed_milliseconds() {
        assert_eq!(parse_wall_skew_ms(Some(OsStr::new("-7000"))).unwrap(), -7_000);
        assert_eq!(parse_wall_skew_ms(Some(OsStr::new("11000"))).unwrap(), 11_000);
        assert_eq!(parse_wall_skew_ms(Some(OsStr::new("+250"))).unwrap(), 250);
    }

    #[test]
    fn a_bad_wall_skew_is_refused_naming_the_variable() {
        for bad in ["", "7s", "1.5", "ten", "99999999999999999999"] {
            let err = parse_wall_skew_ms(Some(OsStr::new(bad))).unwrap_err();
            assert!(err.to_string().contains(WALL_SKEW_ENV), "{err}");
        }
    }

    #[test]
    fn a_skewed_wall_clock_reads_ahead_by_the_skew() {
        let plain = SystemClock::new();
        let skewed = SystemClock { wall_skew_ms: 3_600_000, ..SystemClock::new() };
        let before_ms = plain.now().wall.0;
        let unskewed_ms = skewed.now().wall.0 - 3_600_000;
        let after_ms = plain.now().wall.0;
        assert!((before_ms..=after_ms).contains(&unskewed_ms), "{before_ms} {unskewed_ms}");
    }
}
