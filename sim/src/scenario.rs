//! Randomised scenarios: a seed picks the number of servers, the protocol timing, the
//! network, the fault mix and a fault schedule (see [`crate::vopr`]); every node's invariants
//! are checked after every event, the shared checker after every step, and at the end the
//! healed world must have converged.

use crate::check::Violation;
use crate::des::{HostId, ServerSpec, World, WorldConfig};
use crate::fixtures::camera;
use crate::vopr::{self, FaultMix};
use hive_core::ids::SystemId;
use hive_core::node::Command;
use hive_core::resources::{Key, Value};
use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// The result of one seeded scenario.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Hash of the whole run: equal for equal seeds.
    pub trace: u64,
    /// Steps taken.
    pub steps: Vec<String>,
    /// `Ok`, or the first broken invariant with the step it broke at.
    pub result: Result<(), Violation>,
}

/// The command that replays a seed.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run --release -p hive-sim -- replay {seed}")
}

/// Runs the scenario of `seed`.
pub fn run(seed: u64) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let timing = vopr::random_timing(&mut rng);
    let mix = FaultMix::random(&mut rng);
    let pick = WeightedIndex::new(mix.weights()).expect("the camera weight is never 0");
    let skew_ms_max: i64 = [0, 1_000, 60_000, 3_600_000][rng.gen_range(0..4)];
    let drift_ppm_max: i64 = rng.gen_range(0..=200);
    let cfg = WorldConfig {
        latency_ms: rng.gen_range(1..=20),
        jitter_ms: rng.gen_range(0..=5),
        beacon_loss: [0.0, 0.05, 0.2][rng.gen_range(0..3)],
        timing: timing.clone(),
        check_single_recorder: true,
        ..WorldConfig::default()
    };
    let mut w = World::new(seed, cfg.clone());
    let mut steps = vec![
        format!("timing {timing:?}"),
        format!(
            "network: latency {} ms + up to {} ms, beacon loss {}; clocks within ±{skew_ms_max} ms, \
             drift up to ±{drift_ppm_max} ppm",
            cfg.latency_ms, cfg.jitter_ms, cfg.beacon_loss
        ),
        format!("fault mix {mix:?}"),
    ];
    let n = rng.gen_range(vopr::SERVERS);
    let mut hosts = Vec::new();
    for i in 0..n {
        let mut spec = ServerSpec::new("hive", "secret");
        spec.clock_offset_ms = rng.gen_range(-skew_ms_max..=skew_ms_max);
        spec.drift_ppm = rng.gen_range(-drift_ppm_max..=drift_ppm_max);
        // Some servers sit in another subnet, some behind NAT, joined by address.
        if i > 0 && rng.gen_bool(0.2) {
            spec.segment = 1 + rng.gen_range(0..2);
            spec.nat = rng.gen_bool(0.5);
            spec.manual_peers = vec![0];
        }
        hosts.push(w.add_server(spec));
    }
    let intruder = rng.gen_bool(0.3).then(|| {
        let h = w.add_server(ServerSpec::new("hive", "not-the-secret"));
        w.isolate(h);
        h
    });
    steps.push(format!("{n} servers{}", if intruder.is_some() { " + intruder" } else { "" }));
    let mut next_camera = 1u128;
    let mut full: BTreeSet<HostId> = BTreeSet::new();
    let result = (|| {
        for step in 0..40 {
            let h = *hosts.choose(&mut rng).expect("hosts");
            let what = match pick.sample(&mut rng) {
                0 => {
                    next_camera += 1;
                    match w.node(h) {
                        Some(node) => {
                            let me = node.identity().server;
                            w.command(h, camera(next_camera, me));
                            format!("camera {next_camera} on {h}")
                        }
                        None => format!("{h} is down"),
                    }
                }
                1 => {
                    let system = w.node(h).map(|n| n.identity().system).unwrap_or(SystemId(0));
                    let v = rng.gen_range(0..5).to_string();
                    w.command(
                        h,
                        Command::Put { key: setting_key(system), value: Value::Setting(v.clone()) },
                    );
                    format!("setting = {v} on {h}")
                }
                2 => {
                    let mut side = hosts.clone();
                    side.shuffle(&mut rng);
                    side.truncate(rng.gen_range(1..n));
                    w.partition_sides(&side);
                    format!("partition {side:?}")
                }
                3 => {
                    let other = *hosts.choose(&mut rng).expect("hosts");
                    w.partition_oneway(h, other);
                    format!("one-way cut {h} -> {other}")
                }
                4 => {
                    w.heal();
                    "heal".into()
                }
                5 => {
                    w.crash(h);
                    format!("crash {h}")
                }
                6 => {
                    w.set_disk_full(h, false);
                    full.remove(&h);
                    w.restart(h);
                    format!("restart {h}")
                }
                7 => {
                    w.set_disk_full(h, true);
                    full.insert(h);
                    format!("disk full on {h}")
                }
                _ => {
                    // Damage a log only once its writes reached peers: the server keeps every
                    // other record, but the damaged one, if it was the lone copy, is lost in
                    // any system.
                    w.heal();
                    w.set_disk_full(h, false);
                    full.remove(&h);
                    w.restart(h);
                    let replicated =
                        w.run_until_pred(200, 30_000, |w| settled(w, &hosts)).is_some();
                    let at = rng.gen_range(0.0..1.0);
                    if replicated {
                        w.crash(h);
                        w.damage_log(h, at);
                        w.restart(h);
                    }
                    format!(
                        "damaged log of {h} (a record {at:.2} of the way in, replicated first: \
                         {replicated})"
                    )
                }
            };
            steps.push(format!("step {step} @{}: {what}", w.now_ms()));
            w.run_for(rng.gen_range(100..3_000));
            w.check().map_err(|v| Violation(format!("after step {step} ({what}): {v}")))?;
        }
        w.heal();
        for &h in &full {
            w.set_disk_full(h, false);
        }
        for &h in &hosts {
            w.restart(h);
        }
        steps.push(format!("heal and restart all @{}", w.now_ms()));
        // A connection that broke silently while its peer's beacons still arrive is found dead
        // only after three keepalive periods; writes pushed into it wait for that.
        let settle_ms_max = 120_000 + 3 * timing.keepalive_ms;
        let settled = w.run_until_pred(500, settle_ms_max, |w| settled(w, &hosts));
        w.check_converged()?;
        w.check_acknowledged(true)?;
        w.check()?;
        if settled.is_none() {
            return Err(Violation(format!("no convergence within {settle_ms_max} ms of healing")));
        }
        let systems: BTreeSet<_> =
            hosts.iter().filter_map(|h| w.node(*h)).map(|n| n.identity().system).collect();
        if systems.len() != 1 {
            return Err(Violation(format!(
                "{} systems after healing, expected one",
                systems.len()
            )));
        }
        if let Some(i) = intruder {
            let node = w.node(i).expect("intruder runs");
            if node.store().entries().values().any(|e| e.origin.server != node.identity().server) {
                return Err(Violation("the intruder received data".into()));
            }
        }
        Ok(())
    })();
    if result.is_err() {
        steps.extend(w.describe());
    }
    Outcome { seed, trace: w.trace(), steps, result }
}

/// One system of all `hosts`, all running, converged.
fn settled(w: &World, hosts: &[HostId]) -> bool {
    let systems: BTreeSet<_> =
        hosts.iter().map(|h| w.node(*h).map(|n| n.identity().system)).collect();
    systems.len() == 1 && !systems.contains(&None) && w.converged()
}

fn setting_key(system: SystemId) -> Key {
    Key::Setting { system, name: "motion_sensitivity".into() }
}
