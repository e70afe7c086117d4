//! System time for frames: the wall clock plus the offset the hive's time sync applies, read
//! without a round trip to the node loop per frame.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The hive's system time, shared by recorders and the RTSP server. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FrameClock {
    /// System time minus this machine's wall clock (fake skew included), µs.
    offset_us: Arc<AtomicI64>,
    /// The test aid skew of the wall clock ([`crate::driver::clock::WALL_SKEW_ENV`]), ms.
    wall_skew_ms: i64,
}

impl FrameClock {
    /// A clock that runs `wall_skew_ms` off the machine's wall clock until an offset is set.
    pub fn new(wall_skew_ms: i64) -> FrameClock {
        FrameClock { offset_us: Arc::default(), wall_skew_ms }
    }

    fn wall_us(&self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        wall + self.wall_skew_ms * 1_000
    }

    /// System time now, µs since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        self.wall_us() + self.offset_us.load(Ordering::Relaxed)
    }

    /// Takes the node's system time (`system_ms`, read just now) as the reference.
    pub fn set_system_ms(&self, system_ms: u64) {
        let offset = system_ms as i64 * 1_000 - self.wall_us();
        self.offset_us.store(offset, Ordering::Relaxed);
    }
}
