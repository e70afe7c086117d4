//! Fixed-seed scenarios in the discrete-event simulator.

use hive_sim::des::{ServerSpec, World, WorldConfig};
use std::collections::BTreeSet;

fn world(seed: u64) -> World {
    World::new(seed, WorldConfig::default())
}

fn systems(w: &World) -> BTreeSet<hive_core::ids::SystemId> {
    (0..w.len()).filter_map(|h| w.node(h)).map(|n| n.identity().system).collect()
}

#[test]
fn twenty_servers_with_one_name_and_secret_become_one_system() {
    let mut w = world(1);
    let hosts: Vec<_> = (0..20).map(|_| w.add_server(ServerSpec::new("lab", "s3cret"))).collect();
    let took = w.run_until_pred(100, 30_000, |w| systems(w).len() == 1 && w.converged());
    w.check().unwrap();
    w.check_converged().unwrap();
    assert!(took.is_some(), "not one converged system after 30 s: {:?}", systems(&w));
    let n = w.node(hosts[0]).unwrap();
    assert_eq!(n.online_servers().len(), 20);
    assert_eq!(n.servers().count(), 20);
}

use hive_core::ids::{CameraId, SystemName};
use hive_core::node::{Command, Keep, Reply};
use hive_core::resources::{Key, Role, Value};
use hive_sim::fixtures::{camera as put_camera, camera_with, setting as put_setting, user};

fn sid(w: &World, h: usize) -> hive_core::ids::ServerId {
    w.node(h).unwrap().identity().server
}

fn system_of(w: &World, h: usize) -> hive_core::ids::SystemId {
    w.node(h).unwrap().identity().system
}

#[test]
fn a_server_with_the_name_but_a_wrong_secret_stays_another_system_and_receives_nothing() {
    let mut w = world(2);
    let members: Vec<_> = (0..5).map(|_| w.add_server(ServerSpec::new("lab", "right"))).collect();
    let intruder = w.add_server(ServerSpec::new("lab", "wrong"));
    w.isolate(intruder);
    w.run_for(10_000);
    w.command(members[0], put_camera(1, sid(&w, members[0])));
    w.run_for(5_000);
    w.check().unwrap();
    let node = w.node(intruder).unwrap();
    assert_eq!(node.cameras().count(), 0);
    assert_eq!(node.servers().count(), 1, "it knows only itself");
    assert_eq!(node.online_servers().len(), 1);
    let others = w.node(members[0]).unwrap().other_systems();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].servers, vec![sid(&w, intruder)]);
    assert_eq!(w.node(members[1]).unwrap().online_servers().len(), 5);
}

#[test]
fn explicit_merge_of_two_ten_server_systems_unions_data_keeps_the_winner_and_sums_licenses() {
    let mut w = world(3);
    let a: Vec<_> = (0..10).map(|_| w.add_server(ServerSpec::new("north", "alpha"))).collect();
    let b: Vec<_> = (0..10).map(|_| w.add_server(ServerSpec::new("south", "beta"))).collect();
    w.run_for(5_000);
    let (sys_a, sys_b) = (system_of(&w, a[0]), system_of(&w, b[0]));
    w.command(a[0], user(1, "admin", "pa", Role::Owner, sys_a));
    w.command(b[0], user(2, "admin", "pb", Role::Owner, sys_b));
    w.command(b[0], user(3, "bob", "pbob", Role::Viewer, sys_b));
    w.command(a[0], put_setting(sys_a, "retention_days", "30"));
    w.command(b[0], put_setting(sys_b, "retention_days", "7"));
    w.command(a[1], put_camera(10, sid(&w, a[1])));
    w.command(b[1], put_camera(20, sid(&w, b[1])));
    w.add_license(a[2], 100, 4);
    w.add_license(b[2], 200, 10);
    w.run_for(3_000);
    w.check().unwrap();
    let addr = hive_core::ids::PeerAddr(format!("10.0.0.{}:7001", b[0] + 1));
    // A wrong password is refused and changes nothing.
    let bad = w.command(
        a[0],
        Command::Merge {
            addr: addr.clone(),
            user: "admin".into(),
            password: "nope".into(),
            keep: Keep::Remote,
        },
    );
    w.run_for(2_000);
    assert!(matches!(w.reply(bad), Some(Err(_))), "{:?}", w.reply(bad));
    assert_eq!(system_of(&w, a[5]), sys_a);
    // The right password, keeping the remote side (south).
    let ok = w.command(
        a[0],
        Command::Merge { addr, user: "admin".into(), password: "pb".into(), keep: Keep::Remote },
    );
    let took = w.run_until_pred(100, 20_000, |w| {
        (0..20).all(|h| system_of(w, h) == sys_b) && w.converged()
    });
    assert_eq!(w.reply(ok), Some(&Ok(Reply::Merged { system: sys_b })));
    w.check().unwrap();
    w.check_converged().unwrap();
    assert!(took.is_some(), "did not converge");
    let n = w.node(a[7]).unwrap();
    assert_eq!(n.identity().name, SystemName::new("south").unwrap());
    assert_eq!(n.servers().count(), 20);
    assert_eq!(n.online_servers().len(), 20);
    assert!(
        n.store().get(&Key::Camera(CameraId(10))).is_some()
            && n.store().get(&Key::Camera(CameraId(20))).is_some()
    );
    assert_eq!(n.setting("retention_days"), Some("7"), "the kept side's settings win");
    let admin = n.user("admin").unwrap().1;
    assert_eq!(admin.home_system, sys_b, "the kept side's administrator wins");
    assert!(n.user("bob").is_some());
    assert_eq!(n.license_status().total, 14, "4 + 10 = 14");
}

#[test]
fn merge_is_refused_when_a_server_is_on_both_sides() {
    let mut w = world(4);
    let a = w.add_server(ServerSpec::new("north", "alpha"));
    let b = w.add_server(ServerSpec::new("south", "beta"));
    w.run_for(2_000);
    let sys_b = system_of(&w, b);
    w.command(b, user(2, "admin", "pb", Role::Owner, sys_b));
    // Make b's system claim a's server too, as a restored copy of a's data would.
    let record = w.node(a).unwrap().store().get(&Key::Server(sid(&w, a))).cloned().unwrap();
    w.command(b, Command::Put { key: Key::Server(sid(&w, a)), value: record });
    let addr = hive_core::ids::PeerAddr(format!("10.0.0.{}:7001", b + 1));
    let id = w.command(
        a,
        Command::Merge { addr, user: "admin".into(), password: "pb".into(), keep: Keep::Local },
    );
    w.run_for(3_000);
    assert!(
        matches!(w.reply(id), Some(Err(hive_core::node::CommandError::MergeRefused(_)))),
        "{:?}",
        w.reply(id)
    );
    assert_ne!(system_of(&w, a), system_of(&w, b));
}

#[test]
fn split_takes_the_servers_cameras_and_licenses_and_rename_merges_all_back() {
    let mut w = world(5);
    let hosts: Vec<_> = (0..4).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_for(3_000);
    let sys = system_of(&w, hosts[0]);
    w.command(hosts[0], user(1, "admin", "p", Role::Owner, sys));
    w.command(hosts[3], put_camera(30, sid(&w, hosts[3])));
    w.command(hosts[1], put_camera(10, sid(&w, hosts[1])));
    w.add_license(hosts[3], 300, 8);
    w.add_license(hosts[1], 100, 2);
    w.run_for(2_000);
    let leaver = hosts[3];
    let id = w.command(leaver, Command::Split { name: SystemName::new("annex").unwrap() });
    w.run_for(5_000);
    assert!(matches!(w.reply(id), Some(Ok(Reply::Split { .. }))));
    w.check().unwrap();
    w.check_converged().unwrap();
    let gone = w.node(leaver).unwrap();
    assert_ne!(gone.identity().system, sys);
    assert_eq!(gone.servers().count(), 1);
    assert_eq!(gone.cameras().map(|(c, _)| c).collect::<Vec<_>>(), vec![CameraId(30)]);
    assert_eq!(gone.license_status().total, 8);
    assert!(gone.user("admin").is_some(), "users are copied");
    let rest = w.node(hosts[0]).unwrap();
    assert_eq!(rest.servers().count(), 3);
    assert_eq!(rest.cameras().map(|(c, _)| c).collect::<Vec<_>>(), vec![CameraId(10)]);
    assert_eq!(rest.license_status().total, 2);
    assert_eq!(rest.other_systems().len(), 1);
    // Merge-all: renaming the annex back into "lab" (same secret) merges it again.
    w.command(leaver, Command::Rename { name: SystemName::new("lab").unwrap() });
    let took = w.run_until_pred(100, 10_000, |w| systems(w).len() == 1 && w.converged());
    assert!(took.is_some(), "rename did not merge");
    let n = w.node(hosts[2]).unwrap();
    assert_eq!(n.servers().count(), 4);
    assert_eq!(n.license_status().total, 10);
}

#[test]
fn concurrent_edits_on_both_sides_of_a_partition_converge_after_healing() {
    let mut w = world(6);
    let hosts: Vec<_> = (0..6).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_for(3_000);
    let sys = system_of(&w, hosts[0]);
    w.partition_sides(&hosts[..3]);
    w.run_for(5_000);
    for (i, &h) in hosts.iter().enumerate() {
        w.command(h, put_setting(sys, "shared", &format!("from-{i}")));
        w.command(h, put_camera(100 + i as u128, sid(&w, h)));
    }
    w.run_for(5_000);
    w.check().unwrap();
    assert_eq!(w.node(hosts[0]).unwrap().online_servers().len(), 3);
    w.heal();
    let took = w.run_until_pred(100, 15_000, |w| w.converged());
    w.check_converged().unwrap();
    assert!(took.is_some());
    let n = w.node(hosts[4]).unwrap();
    assert_eq!(n.cameras().count(), 6);
    assert_eq!(n.online_servers().len(), 6);
}

#[test]
fn crash_and_restart_lose_no_acknowledged_change_also_with_a_full_disk_and_damaged_log() {
    let mut w = world(7);
    let hosts: Vec<_> = (0..3).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_for(3_000);
    let victim = hosts[1];
    for i in 0..20 {
        w.command(victim, put_camera(i, sid(&w, victim)));
        w.run_for(50);
    }
    w.crash(victim);
    w.restart(victim);
    w.check().unwrap();
    assert_eq!(
        w.node(victim).unwrap().cameras().count(),
        20,
        "all acknowledged cameras are back from disk alone"
    );
    // A full disk: the write is not acknowledged, the server stops and restarts with what it had.
    w.set_disk_full(victim, true);
    let id = w.command(victim, put_camera(99, sid(&w, victim)));
    assert!(w.reply(id).is_none(), "no acknowledgement without durability");
    assert!(!w.is_up(victim));
    w.set_disk_full(victim, false);
    w.restart(victim);
    w.run_for(3_000);
    w.check().unwrap();
    // A damaged log: the server loses one record, keeps the others, starts a new epoch and
    // recovers the lost one from peers.
    w.crash(victim);
    w.damage_log(victim, 0.3);
    w.restart(victim);
    w.command(victim, put_camera(500, sid(&w, victim)));
    let took = w.run_until_pred(100, 10_000, |w| w.converged());
    w.check_converged().unwrap();
    assert!(took.is_some());
    w.check_acknowledged(true).unwrap();
    assert_eq!(w.node(victim).unwrap().cameras().count(), 21);
}

#[test]
fn a_peerless_server_with_a_damaged_log_record_keeps_every_other_setting() {
    let mut w = world(17);
    let h = w.add_server(ServerSpec::new("alone", "s"));
    w.run_for(1_000);
    let sys = system_of(&w, h);
    for i in 0..30 {
        w.command(h, put_setting(sys, &format!("s{i:02}"), "v"));
        w.run_for(20);
    }
    assert_eq!(w.node(h).unwrap().settings().len(), 30);
    let epoch = w.node(h).unwrap().identity().epoch;
    w.crash(h);
    w.damage_log(h, 0.5);
    w.restart(h);
    w.check().unwrap();
    let n = w.node(h).unwrap();
    assert_eq!(n.settings().len(), 29, "only the damaged record is lost: {:?}", n.settings());
    assert!(n.identity().epoch > epoch, "a new write epoch");
    assert_eq!(n.identity().system, sys);
}

#[test]
fn a_server_behind_nat_is_joined_by_address_and_keeps_its_outgoing_link() {
    let mut w = world(8);
    let office: Vec<_> = (0..3).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    let mut remote = ServerSpec::new("lab", "s");
    remote.segment = 7;
    remote.nat = true;
    remote.manual_peers = vec![office[0]];
    let remote = w.add_server(remote);
    let took = w.run_until_pred(100, 20_000, |w| systems(w).len() == 1 && w.converged());
    assert!(took.is_some(), "NAT'd server did not join");
    w.check().unwrap();
    let n = w.node(office[2]).unwrap();
    assert!(
        n.online_servers().contains(&sid(&w, remote)),
        "reached through the office server it dialled"
    );
    assert_eq!(n.route_to(sid(&w, remote)).unwrap().hops, 2);
    w.command(office[2], put_camera(5, sid(&w, office[2])));
    w.run_for(2_000);
    assert!(w.node(remote).unwrap().store().get(&Key::Camera(CameraId(5))).is_some());
}

#[test]
fn clocks_an_hour_apart_still_order_causal_changes() {
    let mut w = world(9);
    let mut fast = ServerSpec::new("lab", "s");
    fast.clock_offset_ms = 3_600_000;
    let mut slow = ServerSpec::new("lab", "s");
    slow.clock_offset_ms = -3_600_000;
    let fast = w.add_server(fast);
    let slow = w.add_server(slow);
    w.run_for(3_000);
    let sys = system_of(&w, fast);
    w.command(fast, put_setting(sys, "mode", "first"));
    w.run_for(1_000);
    // The slow server saw the change; its later edit wins though its clock is 2 h behind.
    w.command(slow, put_setting(sys, "mode", "second"));
    w.run_for(1_000);
    w.check_converged().unwrap();
    for h in [fast, slow] {
        assert_eq!(w.node(h).unwrap().setting("mode"), Some("second"));
    }
    let v = w
        .node(fast)
        .unwrap()
        .store()
        .get(&Key::Setting { system: sys, name: "mode".into() })
        .cloned();
    assert_eq!(v, Some(Value::Setting("second".into())));
}

#[test]
fn a_crashed_server_goes_offline_everywhere_within_seconds() {
    let mut w = world(10);
    let hosts: Vec<_> = (0..6).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_for(3_000);
    w.crash(hosts[2]);
    w.run_for(6_000);
    for &h in hosts.iter().filter(|h| **h != hosts[2]) {
        assert_eq!(w.node(h).unwrap().online_servers().len(), 5, "{:?}", w.describe());
    }
}

#[test]
fn a_license_shortfall_is_recorded_and_after_the_grace_period_the_lowest_priority_newest_cameras_stop(
) {
    use hive_core::licenses::ShortfallState;
    use hive_core::resources::FailoverPriority;
    let mut w = world(12);
    let hosts: Vec<_> = (0..3).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_for(3_000);
    let sys = system_of(&w, hosts[0]);
    w.command(hosts[0], put_setting(sys, "license_grace_ms", "60000"));
    w.add_license(hosts[1], 1, 2);
    let me = sid(&w, hosts[2]);
    for (id, priority) in [
        (1, FailoverPriority::High),
        (2, FailoverPriority::Low),
        (3, FailoverPriority::Low),
        (4, FailoverPriority::Medium),
    ] {
        w.command(hosts[2], camera_with(id, me, priority));
    }
    w.run_for(3_000);
    w.check_converged().unwrap();
    let status = w.node(hosts[0]).unwrap().license_status();
    assert_eq!((status.total, status.used), (2, 4));
    let ShortfallState::InGrace { since_ms, ends_ms } = status.state else { panic!("{status:?}") };
    assert_eq!(ends_ms, since_ms.saturating_plus_ms(60_000));
    assert!(status.stopped.is_empty(), "nothing stops during the grace period");
    // Every server agrees on when it started: it is one replicated fact.
    for &h in &hosts {
        assert!(
            matches!(w.node(h).unwrap().license_status().state, ShortfallState::InGrace { since_ms: s, .. } if s == since_ms)
        );
    }
    w.run_for(60_000);
    for &h in &hosts {
        let status = w.node(h).unwrap().license_status();
        assert!(matches!(status.state, ShortfallState::Expired { excess: 2, .. }), "{status:?}");
        assert_eq!(
            status.stopped,
            vec![CameraId(2), CameraId(3)],
            "the two low-priority cameras stop"
        );
    }
    // A second key ends the shortfall everywhere.
    w.add_license(hosts[0], 2, 2);
    w.run_for(3_000);
    for &h in &hosts {
        let status = w.node(h).unwrap().license_status();
        assert_eq!(status.state, ShortfallState::Within);
        assert!(status.stopped.is_empty());
    }
    w.check_converged().unwrap();
}

#[test]
fn a_hundred_servers_link_sparsely_settle_and_still_see_a_crash_within_seconds() {
    let mut w = world(11);
    let hosts: Vec<_> = (0..100).map(|_| w.add_server(ServerSpec::new("big", "s3cret"))).collect();
    let took = w.run_until_pred(500, 60_000, |w| systems(w).len() == 1 && w.converged());
    assert!(took.is_some(), "100 servers did not form one system in 60 s");
    // Past the start-up burst: links pruned to the mesh, beacons slowed down.
    w.run_for(60_000);
    w.check().unwrap();
    let degrees: Vec<usize> =
        hosts.iter().map(|&h| w.node(h).unwrap().linked_peers().count()).collect();
    let mean = degrees.iter().sum::<usize>() as f64 / degrees.len() as f64;
    assert!(mean < 12.0, "mean links per server {mean}: not a sparse mesh ({degrees:?})");
    for &h in &hosts {
        assert_eq!(w.node(h).unwrap().online_servers().len(), 100, "host {h} misses servers");
    }
    let beacons = w.stats.beacons;
    w.run_for(60_000);
    let per_second = (w.stats.beacons - beacons) / 60;
    assert!(per_second < 100 * 99 / 5, "{per_second} beacons a second: the system never settled");

    let victim = sid(&w, hosts[42]);
    w.crash(hosts[42]);
    w.run_for(5_000);
    for &h in hosts.iter().filter(|&&h| h != hosts[42]) {
        let online = w.node(h).unwrap().online_servers();
        assert!(!online.contains(&victim), "host {h} still sees the crashed server after 5 s");
        assert_eq!(online.len(), 99, "host {h} lost more than the crashed server");
    }
}

#[test]
fn a_cut_shorter_than_link_silence_delays_messages_and_closes_no_link() {
    // TCP retransmits what a cut held back: a change made during a one-second cut arrives
    // after it heals, on the links that were open before.
    let mut w = world(8);
    let hosts: Vec<_> = (0..3).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_until_pred(100, 30_000, |w| formed(w, 3)).expect("formed");
    let links_of = |w: &World| -> Vec<Vec<_>> {
        hosts.iter().map(|&h| w.node(h).unwrap().linked_peers().collect()).collect()
    };
    let before = links_of(&w);
    let sys = system_of(&w, hosts[0]);
    w.partition_sides(&hosts[..1]);
    w.command(hosts[0], put_setting(sys, "during", "the cut"));
    w.run_for(1_000);
    assert!(w.node(hosts[1]).unwrap().setting("during").is_none(), "crossed the cut");
    w.heal();
    w.run_until_pred(100, 5_000, |w| w.converged()).expect("converged after the heal");
    assert_eq!(w.node(hosts[1]).unwrap().setting("during"), Some("the cut"));
    assert_eq!(links_of(&w), before, "a link closed over a short cut");
    w.check().unwrap();
}

#[test]
fn a_link_its_peer_closed_during_a_cut_closes_when_the_cut_heals() {
    // A server that gave up on a link during a long cut sent a FIN that the cut held; the other
    // end reads it after the heal, so it neither keeps nor routes over a half-closed link.
    let mut w = world(9);
    let hosts: Vec<_> = (0..2).map(|_| w.add_server(ServerSpec::new("lab", "s"))).collect();
    w.run_until_pred(100, 30_000, |w| formed(w, 2)).expect("formed");
    w.partition_oneway(hosts[1], hosts[0]);
    // Host 0 hears nothing on its link and closes it; host 1 still hears host 0.
    w.run_for(10_000);
    assert_eq!(w.node(hosts[0]).unwrap().linked_peers().count(), 0);
    w.heal();
    w.run_until_pred(100, 30_000, |w| formed(w, 2)).expect("linked again after the heal");
    let (n0, n1) = (w.node(hosts[0]).unwrap(), w.node(hosts[1]).unwrap());
    let (l0, l1): (Vec<_>, Vec<_>) = (n0.linked_peers().collect(), n1.linked_peers().collect());
    assert_eq!((l0.len(), l1.len()), (1, 1));
    assert_eq!(l0[0].1, l1[0].1, "both ends on the same, new link");
    w.check().unwrap();
}

/// Every one of `n` servers links to the others and holds the same data.
fn formed(w: &World, n: usize) -> bool {
    (0..w.len()).all(|h| w.node(h).is_some_and(|node| node.linked_peers().count() == n - 1))
        && w.converged()
}
