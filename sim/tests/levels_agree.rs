//! Both simulation levels run the same small scenario and must reach the same outcome.

use hive_core::ids::CameraId;
use hive_sim::des::{ServerSpec, World, WorldConfig};
use hive_sim::fixtures::{camera, cameras_in, license};
use hive_sim::report::NodeReport;
use hive_sim::turmoil_world::{TurmoilOptions, TurmoilWorld};
use std::collections::BTreeSet;

const SERVERS: usize = 6;

fn spec(i: usize) -> ServerSpec {
    let mut s = ServerSpec::new("lab", "s");
    // Clocks an hour apart either way.
    s.clock_offset_ms = if i.is_multiple_of(2) { 3_600_000 } else { -3_600_000 };
    s
}

/// What a user would see: systems, servers online, cameras, licensed channels.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    systems: usize,
    online: Vec<usize>,
    cameras: BTreeSet<CameraId>,
    license_totals: BTreeSet<u64>,
}

fn outcome(reports: &[NodeReport]) -> Outcome {
    let cameras = cameras_in(&reports[0].entries).into_iter().collect();
    Outcome {
        systems: reports.iter().map(|r| r.system).collect::<BTreeSet<_>>().len(),
        online: reports.iter().map(|r| r.online.len()).collect(),
        cameras,
        license_totals: reports.iter().map(|r| r.license_total).collect(),
    }
}

fn des_outcome() -> Outcome {
    let mut w = World::new(11, WorldConfig { latency_ms: 2, ..WorldConfig::default() });
    let hosts: Vec<_> = (0..SERVERS).map(|i| w.add_server(spec(i))).collect();
    w.partition_sides(&hosts[..3]);
    w.run_for(5_000);
    for &h in &hosts {
        let me = w.node(h).unwrap().identity().server;
        w.command(h, camera(h as u128 + 1, me));
        w.command(h, license(h as u128 + 1, h, 4));
    }
    w.run_for(2_000);
    w.heal();
    w.run_until_pred(100, 30_000, |w| w.converged() && outcome(&w.reports()).systems == 1);
    w.check().unwrap();
    outcome(&w.reports())
}

fn turmoil_outcome() -> Outcome {
    let mut w = TurmoilWorld::new(
        11,
        TurmoilOptions { latency_ms_min: 1, latency_ms_max: 3, ..TurmoilOptions::default() },
    );
    let hosts: Vec<_> = (0..SERVERS).map(|i| w.add_server(spec(i))).collect();
    for &a in &hosts[..3] {
        for &b in &hosts[3..] {
            w.partition(a, b);
        }
    }
    w.run_for(5_000);
    for &h in &hosts {
        let me = w.report(h).unwrap().server;
        let rx = w.command(h, camera(h as u128 + 1, me));
        w.await_reply(rx, 2_000);
        let rx = w.command(h, license(h as u128 + 1, h, 4));
        w.await_reply(rx, 2_000);
    }
    w.run_for(2_000);
    for &a in &hosts[..3] {
        for &b in &hosts[3..] {
            w.repair(a, b);
        }
    }
    w.run_until(100, 30_000, |w| {
        w.reports().len() == SERVERS && w.converged() && outcome(&w.reports()).systems == 1
    });
    w.check().unwrap();
    outcome(&w.reports())
}

#[test]
fn both_levels_agree_on_a_partition_heal_scenario() {
    let des = des_outcome();
    let turmoil = turmoil_outcome();
    let expected = Outcome {
        systems: 1,
        online: vec![SERVERS; SERVERS],
        cameras: (1..=SERVERS as u128).map(CameraId).collect(),
        license_totals: [4 * SERVERS as u64].into(),
    };
    assert_eq!(des, expected, "discrete-event simulator");
    assert_eq!(turmoil, expected, "turmoil world");
}
