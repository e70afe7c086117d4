//! The time-sync benchmark: how far each server's system time is from the primary's once
//! synced, over many random systems, in a LAN and a WAN profile.
//!
//! The primary's clock *is* system time (no external source here), so the error of a server
//! is the distance of its system time from the primary's at the same true instant. Every
//! host's oscillator drifts (±200 ppm) and its wall clock is off (±10 s).

use crate::des::{HostId, ServerSpec, World, WorldConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A network profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// 1 ms one way, up to 1 ms jitter, symmetric.
    Lan,
    /// 20–80 ms one way with up to 60 ms of asymmetry per server and 5 ms jitter.
    Wan,
}

/// Errors of one profile, µs, over every sample of every follower.
#[derive(Clone, Debug, Default)]
pub struct TimeFigures {
    /// Seeds run.
    pub seeds: u64,
    /// Samples taken (one per follower per second).
    pub samples: usize,
    /// Median error, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// Wall time the run took, s.
    pub wall_s: f64,
}

/// Simulated ms given to a system to form and sync before sampling starts.
const SETTLE_MS: u64 = 120_000;
/// Simulated ms of sampling, one sample a second.
const SAMPLE_MS: u64 = 60_000;

/// Runs `seeds` random systems in `profile` and gathers the followers' errors.
pub fn run(profile: Profile, seeds: u64) -> TimeFigures {
    let began = std::time::Instant::now();
    let mut errors_us: Vec<u64> = Vec::new();
    for seed in 0..seeds {
        errors_us.extend(one(profile, seed));
    }
    let (p50_us, p99_us, max_us) =
        crate::bench_failover::percentiles(&errors_us).unwrap_or_default();
    TimeFigures {
        seeds,
        samples: errors_us.len(),
        p50_us,
        p99_us,
        max_us,
        wall_s: began.elapsed().as_secs_f64(),
    }
}

/// One seed: the followers' errors, µs, sampled each second after settling.
fn one(profile: Profile, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7153_7153);
    let (latency_ms, jitter_ms, asymmetry_ms) = match profile {
        Profile::Lan => (1, rng.gen_range(0..=1), 0),
        Profile::Wan => (rng.gen_range(20..=80), 5, 60),
    };
    let cfg = WorldConfig { latency_ms, jitter_ms, ..WorldConfig::default() };
    let mut w = World::new(seed, cfg);
    let n = rng.gen_range(3..=8);
    let hosts: Vec<HostId> = (0..n)
        .map(|_| {
            let mut spec = ServerSpec::new("bench", "s3cret");
            spec.clock_offset_ms = rng.gen_range(-10_000..=10_000);
            spec.drift_ppm = rng.gen_range(-200..=200);
            spec.uplink_delay_ms = rng.gen_range(0..=asymmetry_ms);
            w.add_server(spec)
        })
        .collect();
    w.run_for(SETTLE_MS);
    let mut errors_us = Vec::new();
    for _ in 0..SAMPLE_MS / 1000 {
        w.run_for(1000);
        let primary_id = w.node(hosts[0]).map(|n| n.primary_time_server());
        let Some(primary) =
            hosts.iter().copied().find(|h| w.node(*h).map(|n| n.identity().server) == primary_id)
        else {
            continue;
        };
        let Some(reference_us) = w.system_time_us(primary) else { continue };
        for &h in &hosts {
            if h != primary {
                if let Some(t) = w.system_time_us(h) {
                    errors_us.push(t.abs_diff(reference_us));
                }
            }
        }
    }
    errors_us
}
