//! Readings of a server's own clocks: the monotonic clock (timers and deadlines, in ms; receive
//! stamps and time samples, in µs) and the wall clock (timestamps, in ms since the Unix epoch).
//!
//! Each is its own type, so a wall reading can never arm a timer nor a monotonic one stamp a
//! change. Durations stay plain `u64` with their unit in their name (`hold_ms`): an instant
//! moves by a duration, two instants differ by a duration, and an instant is never added to
//! an instant. System time ([`crate::timesync::SystemUs`]) and hybrid logical timestamps
//! ([`crate::hlc::Hlc`]) are other clocks with types of their own.

use serde::{Deserialize, Serialize};

/// A reading of this server's monotonic clock, ms: what timers and deadlines are kept in.
/// It never goes back within a run and means nothing to another server or another run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct MonoMs(pub u64);

impl MonoMs {
    /// The instant `ms` later.
    pub fn plus_ms(self, ms: u64) -> MonoMs {
        MonoMs(self.0 + ms)
    }

    /// The instant `ms` earlier, or the clock's zero if that is earlier still.
    pub fn saturating_minus_ms(self, ms: u64) -> MonoMs {
        MonoMs(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this instant is, ms; 0 if `earlier` is not earlier.
    pub fn saturating_since(self, earlier: MonoMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The same instant in µs.
    pub fn to_us(self) -> MonoUs {
        MonoUs(self.0 * 1000)
    }
}

/// A reading of this server's monotonic clock, µs: receive stamps and time samples.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct MonoUs(pub u64);

impl MonoUs {
    /// The same reading in whole ms, rounded down.
    pub fn to_ms(self) -> MonoMs {
        MonoMs(self.0 / 1000)
    }
}

/// A reading of this machine's wall clock, ms since the Unix epoch: timestamps. It may jump
/// and may be skewed against other servers' wall clocks. Encoded as the bare number.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WallMs(pub u64);

impl WallMs {
    /// The instant `ms` later, or the end of time if that is later still.
    pub fn saturating_plus_ms(self, ms: u64) -> WallMs {
        WallMs(self.0.saturating_add(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory");
        out
    }

    #[test]
    fn a_wall_reading_is_encoded_as_the_bare_number() {
        for ms in [0, 1_700_000_000_000, u64::MAX] {
            assert_eq!(cbor(&WallMs(ms)), cbor(&ms));
            let back: WallMs = ciborium::from_reader(&cbor(&ms)[..]).expect("decodes");
            assert_eq!(back, WallMs(ms));
        }
    }

    #[test]
    fn monotonic_ms_and_us_convert_by_whole_ms() {
        assert_eq!(MonoUs(1_999).to_ms(), MonoMs(1));
        assert_eq!(MonoMs(2).to_us(), MonoUs(2_000));
        assert_eq!(MonoMs(5).plus_ms(3).saturating_since(MonoMs(5)), 3);
        assert_eq!(MonoMs(5).saturating_since(MonoMs(8)), 0);
        assert_eq!(MonoMs(5).saturating_minus_ms(8), MonoMs(0));
        assert_eq!(WallMs(u64::MAX - 1).saturating_plus_ms(5), WallMs(u64::MAX));
    }
}
