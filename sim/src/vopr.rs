//! What a seed randomises beyond the fault schedule, after TigerBeetle's VOPR: the protocol
//! [`Timing`] within the ranges the protocol supports, the number of servers and the fault
//! mix. The ranges live here, in one place; [`check_timing`] rejects combinations the
//! protocol does not support, and every drawn timing passes it.

use hive_core::node::Timing;
use rand::Rng;
use std::ops::RangeInclusive;
use thiserror::Error;

/// Servers in a system.
pub const SERVERS: RangeInclusive<usize> = 2..=30;
/// Period of beacons and housekeeping ticks.
pub const BEACON_MS: RangeInclusive<u64> = 200..=2_000;
/// Idle beacon period, at least the beacon period.
pub const BEACON_IDLE_MS_MAX: u64 = 30_000;
/// Quiet time before membership counts as settled, in beacon periods.
pub const SETTLE_BEACONS: RangeInclusive<u64> = 2..=20;
/// Links per server the mesh aims at (2 leans on the unreachable-member rule for connectivity).
pub const MESH_DEGREE: RangeInclusive<u32> = 2..=8;
/// Silence that kills a link, in beacon periods. A silent link is pinged every one and a half
/// periods, checked once a tick, so a ping may arrive up to two periods after the last: three
/// periods is the least that never kills a live link; above six, dead links linger.
pub const LINK_SILENCE_BEACONS: RangeInclusive<u64> = 3..=6;
/// Ping period of a link whose peer's beacons arrive, in beacon periods: at least the silence
/// (beacons carry liveness meanwhile), at most thirty periods.
pub const KEEPALIVE_BEACONS_MAX: u64 = 30;
/// Time a handshake may take.
pub const HANDSHAKE_MS: RangeInclusive<u64> = 1_000..=10_000;
/// Delay that gathers announcements.
pub const ANNOUNCE_MS: RangeInclusive<u64> = 5..=100;
/// First re-dial wait.
pub const DIAL_BACKOFF_MS: RangeInclusive<u64> = 100..=2_000;
/// Longest re-dial wait.
pub const DIAL_BACKOFF_MS_MAX: u64 = 10_000;
/// Wait for a pull's answer.
pub const PULL_TIMEOUT_MS: RangeInclusive<u64> = 1_000..=10_000;
/// Transactions per sync message.
pub const SYNC_BATCH: RangeInclusive<u32> = 1..=1_024;
/// Allowed clock offset between servers, hours; the scenarios skew clocks by up to an hour
/// either way, so two clocks differ by up to two.
pub const CLOCK_OFFSET_HOURS: RangeInclusive<u64> = 3..=48;

/// A timing the protocol does not support.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TimingError {
    /// A value outside its range.
    #[error("{what} = {value} outside {min}..={max}")]
    OutOfRange {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Least allowed.
        min: u64,
        /// Most allowed.
        max: u64,
    },
}

fn within(what: &'static str, value: u64, min: u64, max: u64) -> Result<(), TimingError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(TimingError::OutOfRange { what, value, min, max })
    }
}

/// Checks a timing against the supported ranges, including those relative to `beacon_ms`.
pub fn check_timing(t: &Timing) -> Result<(), TimingError> {
    let b = t.beacon_ms;
    within("beacon_ms", b, *BEACON_MS.start(), *BEACON_MS.end())?;
    within("beacon_idle_ms", t.beacon_idle_ms, b, BEACON_IDLE_MS_MAX)?;
    within("settle_ms", t.settle_ms, b * SETTLE_BEACONS.start(), b * SETTLE_BEACONS.end())?;
    let d = MESH_DEGREE;
    within("mesh_degree", t.mesh_degree.into(), (*d.start()).into(), (*d.end()).into())?;
    let silence = LINK_SILENCE_BEACONS;
    within("link_silence_ms", t.link_silence_ms, b * silence.start(), b * silence.end())?;
    within("keepalive_ms", t.keepalive_ms, t.link_silence_ms, b * KEEPALIVE_BEACONS_MAX)?;
    within("handshake_ms", t.handshake_ms, *HANDSHAKE_MS.start(), *HANDSHAKE_MS.end())?;
    within("announce_ms", t.announce_ms, *ANNOUNCE_MS.start(), *ANNOUNCE_MS.end())?;
    within("dial_backoff_ms", t.dial_backoff_ms, *DIAL_BACKOFF_MS.start(), *DIAL_BACKOFF_MS.end())?;
    within("dial_backoff_ms_max", t.dial_backoff_ms_max, t.dial_backoff_ms, DIAL_BACKOFF_MS_MAX)?;
    within("pull_timeout_ms", t.pull_timeout_ms, *PULL_TIMEOUT_MS.start(), *PULL_TIMEOUT_MS.end())?;
    within(
        "sync_batch",
        t.sync_batch.into(),
        (*SYNC_BATCH.start()).into(),
        (*SYNC_BATCH.end()).into(),
    )?;
    let hour_ms = 3_600_000;
    let (lo, hi) = (CLOCK_OFFSET_HOURS.start() * hour_ms, CLOCK_OFFSET_HOURS.end() * hour_ms);
    within("clock_offset_ms_max", t.clock_offset_ms_max, lo, hi)?;
    within("hold_ms", t.hold_ms, *HOLD_MS.start(), *HOLD_MS.end())?;
    let (lo, hi) = (*FAILOVER_MIN_UPTIME_MS.start(), *FAILOVER_MIN_UPTIME_MS.end());
    within("failover_min_uptime_ms", t.failover_min_uptime_ms, lo, hi)?;
    let (lo, hi) = (*FAILOVER_STABILITY_MS.start(), *FAILOVER_STABILITY_MS.end());
    within("failover_stability_ms", t.failover_stability_ms, lo, hi)?;
    within("time_poll_ms", t.time_poll_ms, *TIME_POLL_MS.start(), *TIME_POLL_MS.end())
}

/// Hold time before a silent server's cameras move.
pub const HOLD_MS: std::ops::RangeInclusive<u64> = 1_000..=10_000;
/// Uptime before a server takes others' cameras.
pub const FAILOVER_MIN_UPTIME_MS: std::ops::RangeInclusive<u64> = 0..=60_000;
/// Reachable time before a failed server gets its cameras back.
pub const FAILOVER_STABILITY_MS: std::ops::RangeInclusive<u64> = 5_000..=60_000;
/// Period of time samples.
pub const TIME_POLL_MS: std::ops::RangeInclusive<u64> = 250..=4_000;

/// A timing drawn uniformly from the supported ranges.
pub fn random_timing(rng: &mut impl Rng) -> Timing {
    let b = rng.gen_range(BEACON_MS);
    let link_silence_ms = b * rng.gen_range(LINK_SILENCE_BEACONS);
    let dial_backoff_ms = rng.gen_range(DIAL_BACKOFF_MS);
    Timing {
        beacon_ms: b,
        beacon_idle_ms: rng.gen_range(b..=BEACON_IDLE_MS_MAX),
        settle_ms: b * rng.gen_range(SETTLE_BEACONS),
        mesh_degree: rng.gen_range(MESH_DEGREE),
        link_silence_ms,
        keepalive_ms: rng.gen_range(link_silence_ms..=b * KEEPALIVE_BEACONS_MAX),
        handshake_ms: rng.gen_range(HANDSHAKE_MS),
        announce_ms: rng.gen_range(ANNOUNCE_MS),
        dial_backoff_ms,
        dial_backoff_ms_max: rng.gen_range(dial_backoff_ms..=DIAL_BACKOFF_MS_MAX),
        pull_timeout_ms: rng.gen_range(PULL_TIMEOUT_MS),
        sync_batch: rng.gen_range(SYNC_BATCH),
        clock_offset_ms_max: rng.gen_range(CLOCK_OFFSET_HOURS) * 3_600_000,
        hold_ms: rng.gen_range(HOLD_MS),
        failover_min_uptime_ms: rng.gen_range(FAILOVER_MIN_UPTIME_MS),
        failover_stability_ms: rng.gen_range(FAILOVER_STABILITY_MS),
        time_poll_ms: rng.gen_range(TIME_POLL_MS),
    }
}

/// Relative weights of a scenario's step kinds; a weight of 0 leaves that kind out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    /// Add a camera (a replicated write).
    pub camera: u32,
    /// Change a setting (a write many servers contend on).
    pub setting: u32,
    /// Split the servers into two sides.
    pub partition: u32,
    /// Cut one direction between two servers.
    pub oneway_cut: u32,
    /// Remove every partition.
    pub heal: u32,
    /// Crash a server.
    pub crash: u32,
    /// Restart a server (and free its disk).
    pub restart: u32,
    /// Fill a server's disk.
    pub disk_full: u32,
    /// Damage a record of a server's log.
    pub damage_log: u32,
}

impl FaultMix {
    /// The weights before randomisation (the sweep's historical mix).
    pub const BASE: FaultMix = FaultMix {
        camera: 40,
        setting: 10,
        partition: 10,
        oneway_cut: 5,
        heal: 10,
        crash: 8,
        restart: 8,
        disk_full: 5,
        damage_log: 4,
    };

    /// Each weight drawn from 0 to twice its base; writes never drop out entirely, so every
    /// scenario has data to converge on.
    pub fn random(rng: &mut impl Rng) -> FaultMix {
        let mut w = |base: u32| if rng.gen_bool(0.2) { 0 } else { rng.gen_range(1..=2 * base) };
        let mut mix = FaultMix {
            camera: w(Self::BASE.camera),
            setting: w(Self::BASE.setting),
            partition: w(Self::BASE.partition),
            oneway_cut: w(Self::BASE.oneway_cut),
            heal: w(Self::BASE.heal),
            crash: w(Self::BASE.crash),
            restart: w(Self::BASE.restart),
            disk_full: w(Self::BASE.disk_full),
            damage_log: w(Self::BASE.damage_log),
        };
        mix.camera = mix.camera.max(1);
        mix
    }

    /// The weights in step-kind order, for a weighted draw.
    pub fn weights(&self) -> [u32; 9] {
        [
            self.camera,
            self.setting,
            self.partition,
            self.oneway_cut,
            self.heal,
            self.crash,
            self.restart,
            self.disk_full,
            self.damage_log,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_default_timing_is_supported() {
        assert_eq!(check_timing(&Timing::default()), Ok(()));
    }

    #[test]
    fn every_drawn_timing_is_supported() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..10_000 {
            let t = random_timing(&mut rng);
            assert_eq!(check_timing(&t), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn a_silence_shorter_than_the_ping_period_allows_is_rejected() {
        let t = Timing { beacon_ms: 1_000, link_silence_ms: 2_000, ..Timing::default() };
        assert!(matches!(
            check_timing(&t),
            Err(TimingError::OutOfRange { what: "link_silence_ms", .. })
        ));
    }

    #[test]
    fn a_keepalive_shorter_than_the_silence_is_rejected() {
        let t = Timing { keepalive_ms: 1_000, ..Timing::default() };
        assert!(matches!(
            check_timing(&t),
            Err(TimingError::OutOfRange { what: "keepalive_ms", .. })
        ));
    }
}
