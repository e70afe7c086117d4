//! Properties of whole simulated systems over generated fault schedules.
//!
//! Every case builds a discrete-event world whose seed is part of the generated input, so a
//! failing case printed by proptest replays exactly.

use hive_core::ids::{CameraId, ServerId, SystemId};
use hive_core::node::Command;
use hive_core::resources::{Key, Value};
use hive_sim::des::{HostId, ServerSpec, World, WorldConfig};
use hive_sim::fixtures::camera as put_camera;
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;

/// One step of a fault schedule; hosts are indices into the world's servers.
#[derive(Clone, Debug)]
enum Action {
    /// Put a new camera through a server.
    Camera(HostId),
    /// Put a system setting through a server.
    Setting(HostId, u8),
    /// Split the hosts into this side and the rest.
    Partition(Vec<HostId>),
    /// Cut traffic from the first host to the second.
    OneWay(HostId, HostId),
    /// Remove every cut.
    Heal,
    /// Crash a server.
    Crash(HostId),
    /// Restart a server from its disk.
    Restart(HostId),
}

/// An action together with the simulated time that passes after it.
#[derive(Clone, Debug)]
struct Step {
    action: Action,
    then_ms: u64,
}

fn action(n: usize) -> impl Strategy<Value = Action> {
    let host = 0..n;
    let writes = prop_oneof![
        3 => host.clone().prop_map(Action::Camera),
        1 => (host.clone(), 0u8..5).prop_map(|(h, v)| Action::Setting(h, v)),
    ];
    let cuts = prop_oneof![
        2 => subsequence((0..n).collect::<Vec<_>>(), 1..n).prop_map(Action::Partition),
        1 => (host.clone(), host.clone()).prop_map(|(a, b)| Action::OneWay(a, b)),
        2 => Just(Action::Heal),
    ];
    let crashes = prop_oneof![host.clone().prop_map(Action::Crash), host.prop_map(Action::Restart)];
    prop_oneof![4 => writes, 3 => cuts, 2 => crashes]
}

/// 5 to 25 actions on `n` hosts, each followed by up to 3 s of simulated time.
fn schedule(n: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (action(n), 0u64..3_000).prop_map(|(action, then_ms)| Step { action, then_ms }),
        5..=25,
    )
}

fn put_setting(system: SystemId, value: u8) -> Command {
    Command::Put {
        key: Key::Setting { system, name: "motion_sensitivity".into() },
        value: Value::Setting(value.to_string()),
    }
}

/// The world under test and what the test knows about it.
struct Run {
    w: World,
    hosts: Vec<HostId>,
    /// Server id of each host; stable across restarts.
    servers: Vec<ServerId>,
    next_camera: u128,
    /// Cameras whose put a server answered with `Ok`.
    acked_cameras: Vec<CameraId>,
}

impl Run {
    fn new(seed: u64, cfg: WorldConfig, specs: Vec<ServerSpec>) -> Run {
        let mut w = World::new(seed, cfg);
        let hosts: Vec<_> = specs.into_iter().map(|s| w.add_server(s)).collect();
        let servers = hosts.iter().map(|h| w.node(*h).expect("just started").identity().server);
        let servers = servers.collect();
        Run { w, hosts, servers, next_camera: 1, acked_cameras: Vec::new() }
    }

    fn apply(&mut self, action: &Action) {
        let w = &mut self.w;
        match action {
            Action::Camera(h) => {
                let id = self.next_camera;
                self.next_camera += 1;
                // Sent to a crashed server too: that one just never answers.
                let cmd = w.command(*h, put_camera(id, self.servers[*h]));
                if let Some(Ok(_)) = w.reply(cmd) {
                    self.acked_cameras.push(CameraId(id));
                }
            }
            Action::Setting(h, v) => {
                if let Some(system) = w.node(*h).map(|n| n.identity().system) {
                    w.command(*h, put_setting(system, *v));
                }
            }
            Action::Partition(side) => w.partition_sides(side),
            Action::OneWay(from, to) => w.partition_oneway(*from, *to),
            Action::Heal => w.heal(),
            Action::Crash(h) => w.crash(*h),
            Action::Restart(h) => w.restart(*h),
        }
    }

    /// Runs the schedule, checking the step invariants after every action and `extra` too.
    fn run_schedule(
        &mut self,
        schedule: &[Step],
        mut extra: impl FnMut(&World) -> Result<(), String>,
    ) -> Result<(), TestCaseError> {
        for (i, step) in schedule.iter().enumerate() {
            self.apply(&step.action);
            self.w.run_for(step.then_ms);
            let checked = self.w.check().map_err(|v| v.to_string()).and_then(|()| extra(&self.w));
            if let Err(v) = checked {
                return Err(TestCaseError::fail(format!(
                    "after step {i} ({:?}) @{} ms: {v}\n{}",
                    step.action,
                    self.w.now_ms(),
                    self.w.describe().join("\n")
                )));
            }
        }
        Ok(())
    }

    /// Heals, restarts every host and waits up to `limit_ms` for one converged system.
    fn settle(&mut self, limit_ms: u64) -> Result<(), TestCaseError> {
        self.w.heal();
        for &h in &self.hosts {
            self.w.restart(h);
        }
        let hosts = &self.hosts;
        let took = self.w.run_until_pred(200, limit_ms, |w| settled(w, hosts));
        prop_assert!(
            took.is_some(),
            "not one converged system {limit_ms} ms after healing: {:?} (invariants: {:?})\n{}",
            self.w.check_converged(),
            self.w.check(),
            self.w.describe().join("\n")
        );
        Ok(())
    }
}

/// Whether every host runs and all of them form one converged system.
fn settled(w: &World, hosts: &[HostId]) -> bool {
    let systems: BTreeSet<_> =
        hosts.iter().map(|h| w.node(*h).map(|n| n.identity().system)).collect();
    systems.len() == 1 && !systems.contains(&None) && w.converged()
}

fn ok_or_fail<E: std::fmt::Display>(r: Result<(), E>, what: &str) -> Result<(), TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

/// Channels of keys bound to hosts in `up`; keys are `(host, channels)`.
fn channels_on(keys: &[Vec<u32>], up: impl Fn(HostId) -> bool) -> u64 {
    keys.iter()
        .enumerate()
        .filter(|(h, _)| up(*h))
        .flat_map(|(_, ks)| ks.iter().map(|c| u64::from(*c)))
        .sum()
}

fn license_totals(w: &World, hosts: &[HostId], expected: u64) -> Result<(), TestCaseError> {
    for &h in hosts {
        if let Some(n) = w.node(h) {
            let total = n.license_status().total;
            prop_assert_eq!(
                total,
                expected,
                "license total on host {}\n{}",
                h,
                w.describe().join("\n")
            );
        }
    }
    Ok(())
}

fn network() -> impl Strategy<Value = (u64, u64, f64)> {
    (1u64..=30, 0u64..=10, prop_oneof![Just(0.0), 0.0..0.3])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Writes, cuts and crashes in any order never lose an acknowledged camera, and healing
    /// always ends in one converged system.
    #[test]
    fn any_delivery_schedule_followed_by_full_connectivity_converges(
        (n, schedule) in (3usize..=7).prop_flat_map(|n| (Just(n), schedule(n))),
        (latency_ms, jitter_ms, beacon_loss) in network(),
        seed in any::<u64>(),
    ) {
        let cfg = WorldConfig { latency_ms, jitter_ms, beacon_loss, ..WorldConfig::default() };
        let specs = (0..n).map(|_| ServerSpec::new("hive", "secret")).collect();
        let mut run = Run::new(seed, cfg, specs);
        run.run_schedule(&schedule, |_| Ok(()))?;
        run.settle(120_000)?;
        let w = &run.w;
        ok_or_fail(w.check_converged(), "converged")?;
        ok_or_fail(w.check_acknowledged(true), "acknowledged")?;
        ok_or_fail(w.check(), "invariants")?;
        for &h in &run.hosts {
            let store = w.node(h).expect("restarted").store();
            for c in &run.acked_cameras {
                prop_assert!(
                    store.get(&Key::Camera(*c)).is_some(),
                    "host {} lacks acknowledged camera {:?}", h, c
                );
            }
        }
    }

    /// A server counts exactly the keys of servers it sees, through crashes and restarts.
    #[test]
    fn license_total_is_the_sum_of_keys_whose_servers_are_present(
        (keys, crashed) in (2usize..=6).prop_flat_map(|n| (
            proptest::collection::vec(proptest::collection::vec(1u32..=64, 0..=3), n),
            // Any subset but all: some server must survive to report a total.
            subsequence((0..n).collect::<Vec<HostId>>(), 0..n),
        )),
        latency_ms in 1u64..=30,
        jitter_ms in 0u64..=10,
        seed in any::<u64>(),
    ) {
        let n = keys.len();
        let cfg = WorldConfig { latency_ms, jitter_ms, ..WorldConfig::default() };
        let specs = (0..n).map(|_| ServerSpec::new("hive", "secret")).collect();
        let mut run = Run::new(seed, cfg, specs);
        run.settle(30_000)?;
        let mut license = 1u128;
        for (h, channels) in keys.iter().enumerate() {
            for &c in channels {
                let id = run.w.add_license(h, license, c);
                license += 1;
                let reply = run.w.reply(id);
                prop_assert!(matches!(reply, Some(Ok(_))), "license put on {}: {:?}", h, reply);
            }
        }
        run.settle(30_000)?;
        let full = channels_on(&keys, |_| true);
        license_totals(&run.w, &run.hosts, full)?;

        for &h in &crashed {
            run.w.crash(h);
        }
        run.w.run_for(10_000);
        ok_or_fail(run.w.check(), "invariants after crashes")?;
        license_totals(&run.w, &run.hosts, channels_on(&keys, |h| !crashed.contains(&h)))?;

        run.settle(30_000)?;
        ok_or_fail(run.w.check(), "invariants after restarts")?;
        license_totals(&run.w, &run.hosts, full)?;
    }

    /// A server with the system's name but not its secret neither receives nor gives data.
    #[test]
    fn a_wrong_secret_server_never_receives_data(
        (members, schedule) in (2usize..=5).prop_flat_map(|m| (Just(m), schedule(m + 1))),
        secret in "[a-z0-9]{1,12}".prop_filter("not the members' secret", |s| s != "right"),
        (latency_ms, jitter_ms, beacon_loss) in network(),
        seed in any::<u64>(),
    ) {
        let cfg = WorldConfig { latency_ms, jitter_ms, beacon_loss, ..WorldConfig::default() };
        let mut specs: Vec<_> = (0..members).map(|_| ServerSpec::new("hive", "right")).collect();
        specs.push(ServerSpec::new("hive", &secret));
        let mut run = Run::new(seed, cfg, specs);
        let intruder = members;
        run.w.isolate(intruder);
        let own = run.servers[intruder];
        // `check` enforces this too, but skips the intruder's writes while the intruder is down.
        let apart = |w: &World| -> Result<(), String> {
            for h in 0..=members {
                let Some(node) = w.node(h) else { continue };
                // The intruder holds only its own writes; members hold none of them.
                let crossed = node
                    .store()
                    .entries()
                    .iter()
                    .find(|(_, e)| (h == intruder) != (e.origin.server == own));
                if let Some((key, e)) = crossed {
                    return Err(format!("host {h} holds {key:?} written by {:?}", e.origin.server));
                }
            }
            Ok(())
        };
        run.run_schedule(&schedule, apart)?;
        run.w.heal();
        for h in 0..=members {
            run.w.restart(h);
        }
        run.w.run_for(10_000);
        ok_or_fail(run.w.check(), "invariants after healing")?;
        ok_or_fail(apart(&run.w), "after healing")?;
        let intruder_system = run.w.node(intruder).expect("restarted").identity().system;
        for h in 0..members {
            prop_assert_ne!(run.w.node(h).expect("restarted").identity().system, intruder_system);
        }
    }
}
