//! System time in the discrete-event simulator: every server follows one primary's clock
//! within a millisecond on a LAN, whatever its own oscillator does, and never steps back.
//!
//! Each host's monotonic clock drifts by its `drift_ppm` against true (simulated) time, so a
//! server that stopped sampling would visibly walk away from the primary.

use hive_core::node::TIME_PRIMARY_SETTING;
use hive_sim::des::{HostId, ServerSpec, World, WorldConfig};
use hive_sim::fixtures::setting;
use std::collections::BTreeMap;

/// `n` servers with the given wall-clock offsets (ms) and drifts (ppm), formed.
fn world(seed: u64, cfg: WorldConfig, clocks: &[(i64, i64)]) -> (World, Vec<HostId>) {
    let mut w = World::new(seed, cfg);
    let hosts = clocks
        .iter()
        .map(|&(offset_ms, drift_ppm)| {
            let mut spec = ServerSpec::new("lab", "s3cret");
            spec.clock_offset_ms = offset_ms;
            spec.drift_ppm = drift_ppm;
            w.add_server(spec)
        })
        .collect();
    w.run_until_pred(100, 30_000, |w| w.converged()).expect("formed");
    (w, hosts)
}

/// The host every running server names as primary, once they agree.
fn primary(w: &World, hosts: &[HostId]) -> Option<HostId> {
    let named: Vec<_> =
        hosts.iter().filter_map(|h| w.node(*h)).map(|n| n.primary_time_server()).collect();
    let first = *named.first()?;
    if named.iter().any(|p| *p != first) {
        return None;
    }
    hosts.iter().copied().find(|h| w.node(*h).is_some_and(|n| n.identity().server == first))
}

/// Largest distance, µs, of a running server's system time from the primary's, now.
fn worst_error_us(w: &World, hosts: &[HostId], primary: HostId) -> u64 {
    let reference = w.system_time_us(primary).expect("primary runs");
    hosts
        .iter()
        .filter_map(|h| w.system_time_us(*h))
        .map(|t| t.abs_diff(reference))
        .max()
        .unwrap_or(0)
}

/// Watches system time on every running server and fails on a backward step.
#[derive(Default)]
struct Monotonic {
    last_us: BTreeMap<HostId, u64>,
}

impl Monotonic {
    fn observe(&mut self, w: &World, hosts: &[HostId]) {
        for &h in hosts {
            let Some(now_us) = w.system_time_us(h) else {
                // A crashed server starts a new run; only steps within a run count.
                self.last_us.remove(&h);
                continue;
            };
            if let Some(&before) = self.last_us.get(&h) {
                assert!(
                    now_us >= before,
                    "host {h}: system time stepped back by {} µs at {} ms",
                    before - now_us,
                    w.now_ms()
                );
            }
            self.last_us.insert(h, now_us);
        }
    }
}

/// Runs `ms` of simulated time in `step_ms` steps, checking monotonic system time and the
/// invariants at each, and returns the worst error against the primary seen after `warm_ms`.
fn watch(w: &mut World, hosts: &[HostId], ms: u64, step_ms: u64, warm_ms: u64) -> u64 {
    let mut mono = Monotonic::default();
    let start = w.now_ms();
    let mut worst_us = 0;
    while w.now_ms() < start + ms {
        w.run_for(step_ms);
        w.check().unwrap();
        mono.observe(w, hosts);
        if w.now_ms() >= start + warm_ms {
            let p = primary(w, hosts).expect("one primary");
            worst_us = worst_us.max(worst_error_us(w, hosts, p));
        }
    }
    worst_us
}

#[test]
fn on_a_lan_every_server_keeps_within_a_millisecond_of_the_primary_despite_drift() {
    // Clocks ±10 s apart, oscillators ±200 ppm: left alone they would part by 24 ms a minute.
    let clocks = [(-10_000, 200), (0, -200), (10_000, 150), (4_000, -120), (-6_000, 80)];
    let (mut w, hosts) = world(11, WorldConfig::default(), &clocks);
    let worst_us = watch(&mut w, &hosts, 600_000, 100, 60_000);
    println!("worst error after convergence over 9 simulated minutes: {worst_us} µs");
    assert!(worst_us <= 1_000, "{worst_us} µs from the primary");
}

#[test]
fn an_asymmetric_path_costs_at_most_half_its_asymmetry() {
    // Messages from the second server take 20 ms longer than those to it.
    let mut w = World::new(12, WorldConfig::default());
    let a = w.add_server(ServerSpec::new("lab", "s3cret"));
    let mut slow = ServerSpec::new("lab", "s3cret");
    slow.uplink_delay_ms = 20;
    slow.clock_offset_ms = 5_000;
    slow.drift_ppm = 100;
    let b = w.add_server(slow);
    let hosts = [a, b];
    w.run_until_pred(100, 30_000, |w| w.converged()).expect("formed");
    let worst_us = watch(&mut w, &hosts, 300_000, 100, 60_000);
    println!("asymmetry 20 ms: worst error {worst_us} µs");
    assert!(worst_us <= 10_000 + 1_000, "{worst_us} µs from the primary");
}

#[test]
fn when_the_primary_dies_another_takes_over_and_no_clock_steps_back() {
    let clocks = [(-3_000, 150), (2_000, -150), (7_000, 50), (0, -80)];
    let (mut w, hosts) = world(13, WorldConfig::default(), &clocks);
    watch(&mut w, &hosts, 60_000, 100, 30_000);
    let old = primary(&w, &hosts).expect("one primary");
    w.crash(old);
    let rest: Vec<_> = hosts.iter().copied().filter(|h| *h != old).collect();
    // Through the change (10 ms steps): nobody steps back; then the new primary holds.
    watch(&mut w, &hosts, 20_000, 10, 20_000);
    let new = primary(&w, &rest).expect("a new primary");
    assert_ne!(new, old);
    let worst_us = watch(&mut w, &rest, 120_000, 100, 60_000);
    println!("after the primary died: worst error {worst_us} µs");
    assert!(worst_us <= 1_000, "{worst_us} µs from the new primary");
    // The old primary comes back as a follower or primary again, without a backward step.
    w.restart(old);
    watch(&mut w, &hosts, 120_000, 10, 120_000);
}

#[test]
fn a_server_that_cannot_reach_the_primary_syncs_through_a_neighbour() {
    let clocks = [(-8_000, 120), (3_000, -60), (9_000, 90)];
    let (mut w, hosts) = world(14, WorldConfig::default(), &clocks);
    let (a, b, c) = (hosts[0], hosts[1], hosts[2]);
    let system = w.node(c).unwrap().identity().system;
    let c_id = w.node(c).unwrap().identity().server;
    w.command(c, setting(system, TIME_PRIMARY_SETTING, &c_id.to_string()));
    // A line A–B–C: A and C cannot reach each other.
    w.partition(a, c);
    w.run_for(30_000);
    let route = w.node(a).unwrap().route_to(c_id).expect("A reaches C through B");
    assert_eq!(route.via, w.node(b).unwrap().identity().server);
    assert_eq!(primary(&w, &hosts), Some(c));
    let worst_us = watch(&mut w, &hosts, 300_000, 100, 60_000);
    println!("A two hops from the primary: worst error {worst_us} µs");
    assert!(worst_us <= 1_000, "{worst_us} µs from the primary");
}
