//! Fixed-seed scenarios in the turmoil world: the real driver over simulated sockets, multicast
//! and disk.

use hive_sim::des::ServerSpec;
use hive_sim::turmoil_world::{TurmoilOptions, TurmoilWorld};
use std::collections::BTreeSet;

fn systems(w: &TurmoilWorld) -> BTreeSet<hive_core::ids::SystemId> {
    w.reports().iter().map(|r| r.system).collect()
}

#[test]
fn twenty_servers_over_the_real_driver_become_one_system() {
    let mut w = TurmoilWorld::new(1, TurmoilOptions::default());
    for _ in 0..20 {
        w.add_server(ServerSpec::new("lab", "s3cret"));
    }
    let took = w.run_until(100, 30_000, |w| {
        w.reports().len() == 20 && systems(w).len() == 1 && w.converged()
    });
    w.check().unwrap();
    w.check_converged().unwrap();
    assert!(took.is_some(), "not one system: {:?}", systems(&w));
    assert_eq!(w.report(0).unwrap().online.len(), 20);
}

use hive_sim::fixtures::{camera as put_camera, cameras_in as cameras};

#[test]
fn a_wrong_secret_server_is_listed_as_another_system_and_gets_nothing() {
    let mut w = TurmoilWorld::new(2, TurmoilOptions::default());
    for _ in 0..4 {
        w.add_server(ServerSpec::new("lab", "right"));
    }
    let intruder = w.add_server(ServerSpec::new("lab", "wrong"));
    w.isolate(intruder);
    w.run_until(100, 20_000, |w| w.reports().len() == 5 && w.converged());
    let me = w.report(0).unwrap().server;
    let rx = w.command(0, put_camera(1, me));
    assert!(matches!(w.await_reply(rx, 5_000), Some(Ok(_))));
    w.run_for(3_000);
    w.check().unwrap();
    let r = w.report(intruder).unwrap();
    assert!(r.entries.values().all(|e| e.origin.server == r.server), "the intruder got data");
    assert_eq!(w.report(1).unwrap().other_systems.len(), 1);
    assert_eq!(w.report(1).unwrap().online.len(), 4);
}

#[test]
fn acknowledged_changes_survive_crashes_with_torn_writes_and_a_full_disk() {
    let opts = TurmoilOptions {
        torn_block_bytes: Some(8),
        io_latency_ms_max: Some(8),
        tick_ms: 1,
        ..TurmoilOptions::default()
    };
    let _ = tracing_subscriber::fmt().with_env_filter("hive=warn").with_test_writer().try_init();
    let mut w = TurmoilWorld::new(3, opts);
    for _ in 0..3 {
        w.add_server(ServerSpec::new("lab", "s"));
    }
    w.run_until(100, 20_000, |w| w.reports().len() == 3 && w.converged());
    let victim = 1;
    let me = w.report(victim).unwrap().server;
    let mut acked = Vec::new();
    for round in 0..8u128 {
        // Cut the victim off so its writes live only on its own disk, then crash it mid-stream.
        w.partition(victim, 0);
        w.partition(victim, 2);
        let mut pending = Vec::new();
        for i in 0..4 {
            pending.push((round * 10 + i, w.command(victim, put_camera(round * 10 + i, me))));
        }
        // Crash at a different moment each round: before, during and after the syncs.
        w.run_for(1 + round as u64 * 3);
        w.crash(victim);
        for (id, mut rx) in pending {
            if let Ok(Ok(_)) = rx.try_recv() {
                acked.push(hive_core::ids::CameraId(id));
            }
        }
        w.restart(victim);
        w.run_until(50, 10_000, |w| w.report(victim).is_some());
        let have = cameras(&w.report(victim).unwrap().entries);
        for c in &acked {
            assert!(
                have.contains(c),
                "round {round}: acknowledged {c:?} lost after a crash; have {have:?}"
            );
        }
        w.repair(victim, 0);
        w.repair(victim, 2);
    }
    assert!(!acked.is_empty(), "no write was acknowledged before the crashes");
    // A full disk: the write is refused (no acknowledgement), nothing acknowledged is lost.
    w.set_disk_space(victim, Some(0));
    let rx = w.command(victim, put_camera(999, me));
    let reply = w.await_reply(rx, 3_000);
    assert!(!matches!(reply, Some(Ok(_))), "acknowledged without durability: {reply:?}");
    w.set_disk_space(victim, None);
    let took = w.run_until(100, 30_000, |w| w.reports().len() == 3 && w.converged());
    assert!(took.is_some());
    w.check().unwrap();
    let have = cameras(&w.report(0).unwrap().entries);
    for c in &acked {
        assert!(have.contains(c), "acknowledged {c:?} missing after recovery");
    }
}

#[test]
fn a_server_behind_nat_joins_by_address() {
    let mut w = TurmoilWorld::new(4, TurmoilOptions::default());
    for _ in 0..3 {
        w.add_server(ServerSpec::new("lab", "s"));
    }
    let mut remote = ServerSpec::new("lab", "s");
    remote.segment = 1;
    remote.nat = true;
    remote.manual_peers = vec![0];
    let remote = w.add_server(remote);
    let took = w.run_until(100, 30_000, |w| {
        w.reports().len() == 4 && systems(w).len() == 1 && w.converged()
    });
    assert!(took.is_some(), "NAT'd server did not join");
    w.check_converged().unwrap();
    assert!(w.report(2).unwrap().online.contains(&w.report(remote).unwrap().server));
}

#[test]
fn disk_errors_and_corruption_stop_a_server_but_lose_nothing_acknowledged() {
    let _ = tracing_subscriber::fmt().with_env_filter("hive=warn").with_test_writer().try_init();
    let opts = TurmoilOptions {
        io_error_probability: 0.02,
        corruption_probability: 0.05,
        ..TurmoilOptions::default()
    };
    let mut w = TurmoilWorld::new(5, opts);
    for _ in 0..3 {
        w.add_server(ServerSpec::new("lab", "s"));
    }
    w.run_until(100, 30_000, |w| w.reports().len() == 3 && w.converged());
    let mut acked = Vec::new();
    for i in 0..60u128 {
        let h = (i % 3) as usize;
        let Some(me) = w.report(h).map(|r| r.server) else {
            w.run_for(200);
            continue;
        };
        let rx = w.command(h, put_camera(i, me));
        if let Some(Ok(_)) = w.await_reply(rx, 2_000) {
            acked.push(hive_core::ids::CameraId(i));
        }
        if i % 10 == 9 {
            w.crash(h);
            w.run_for(500);
            w.restart(h);
        }
        w.check().unwrap();
    }
    let took = w.run_until(200, 60_000, |w| w.reports().len() == 3 && w.converged());
    assert!(took.is_some(), "no convergence after disk faults");
    assert!(acked.len() >= 30, "too few writes got through: {}", acked.len());
    for h in 0..3 {
        let have = cameras(&w.report(h).unwrap().entries);
        for c in &acked {
            assert!(have.contains(c), "server {h} lacks acknowledged {c:?}");
        }
    }
}

#[test]
fn a_slow_lossy_link_still_converges_through_the_rest_of_the_mesh() {
    let mut w = TurmoilWorld::new(6, TurmoilOptions::default());
    for _ in 0..4 {
        w.add_server(ServerSpec::new("lab", "s"));
    }
    w.set_link_latency(0, 3, 150);
    w.set_link_loss(0, 3, 0.3);
    let took = w.run_until(100, 30_000, |w| {
        w.reports().len() == 4 && systems(w).len() == 1 && w.converged()
    });
    assert!(took.is_some(), "no single system");
    let me = w.report(0).unwrap().server;
    for i in 0..10 {
        let rx = w.command(0, put_camera(i, me));
        w.await_reply(rx, 2_000);
    }
    let took = w.run_until(100, 30_000, |w| {
        w.converged() && cameras(&w.report(3).unwrap().entries).len() == 10
    });
    w.check().unwrap();
    assert!(took.is_some(), "server 3 did not get every camera");
}
