//! Failover in the discrete-event simulator: who records each camera when servers die, come
//! back, bounce or lose links.

use hive_core::ids::{CameraId, ServerId};
use hive_sim::des::{HostId, ServerSpec, World, WorldConfig};
use hive_sim::fixtures::camera as put_camera;
use std::collections::BTreeMap;

fn sid(w: &World, h: HostId) -> ServerId {
    w.node(h).unwrap().identity().server
}

/// Who records each camera, by host.
fn recorders(w: &World) -> BTreeMap<CameraId, Vec<HostId>> {
    let mut by: BTreeMap<CameraId, Vec<HostId>> = BTreeMap::new();
    for h in 0..w.len() {
        if w.is_up(h) {
            for c in w.recording(h).keys() {
                by.entry(*c).or_default().push(h);
            }
        }
    }
    by
}

fn formed(seed: u64, n: usize) -> (World, Vec<HostId>) {
    let mut w = World::new(seed, WorldConfig::default());
    let hosts: Vec<_> = (0..n).map(|_| w.add_server(ServerSpec::new("lab", "s3cret"))).collect();
    w.run_until_pred(100, 30_000, |w| w.converged()).expect("formed");
    (w, hosts)
}

#[test]
fn a_dead_servers_cameras_move_and_come_back() {
    let (mut w, hosts) = formed(7, 3);
    let a = hosts[0];
    for i in 0..12 {
        w.command(a, put_camera(100 + i, sid(&w, a)));
    }
    w.run_for(20_000);
    let before = recorders(&w);
    assert_eq!(before.len(), 12, "{before:?}");
    assert!(before.values().all(|r| r == &vec![a]));
    w.crash(a);
    let took = w.run_until_pred(50, 20_000, |w| {
        w.check_single_recorder().unwrap();
        let r = recorders(w);
        r.len() == 12 && r.values().all(|v| v.len() == 1 && v[0] != a)
    });
    let took = took.expect("cameras moved");
    println!("failover took {took} ms");
    assert!(took <= 5_000, "failover took {took} ms");
    w.restart(a);
    for _ in 0..200 {
        w.run_for(100);
        w.check_single_recorder().unwrap();
    }
    assert!(recorders(&w).values().all(|v| v.len() == 1 && v[0] != a), "back too early");
    w.run_until_pred(100, 40_000, |w| {
        w.check_single_recorder().unwrap();
        recorders(w).values().all(|v| v == &vec![a])
    })
    .expect("cameras returned");
    w.check().unwrap();
}

#[test]
fn servers_with_clocks_minutes_apart_agree_on_system_time() {
    let mut w = World::new(3, WorldConfig::default());
    let hosts: Vec<_> = [-7_000i64, 0, 333_000]
        .iter()
        .map(|&skew| {
            let mut spec = ServerSpec::new("lab", "s3cret");
            spec.clock_offset_ms = skew;
            spec.drift_ppm = 150;
            w.add_server(spec)
        })
        .collect();
    w.run_until_pred(100, 30_000, |w| w.converged()).expect("formed");
    w.run_for(30_000);
    let times: Vec<_> = hosts.iter().map(|h| w.node(*h).unwrap().time_status()).collect();
    for t in &times {
        println!("{t:?}");
    }
    let (lo, hi) = (
        times.iter().map(|t| t.system_ms).min().unwrap(),
        times.iter().map(|t| t.system_ms).max().unwrap(),
    );
    assert!(hi - lo <= 1, "system times {lo}..{hi}");
}
