//! Simulation benchmarks: the figures of `docs/benchmarks.md`.

use crate::check::Violation;
use crate::counting_net::WireCount;
use crate::des::{ServerSpec, World, WorldConfig};
use crate::fixtures::{camera, user};
use crate::turmoil_world::{TurmoilOptions, TurmoilWorld};
use hive_core::ids::PeerAddr;
use hive_core::node::{Command, Keep, Reply};
use hive_core::resources::{Key, Role, Value};
use hive_core::store::{ReplicaId, Seq, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Speed of the discrete-event simulator: `servers` idle servers on one LAN for `sim_s`
/// simulated seconds; returns simulated seconds per wall second.
pub fn des_speed(servers: usize, sim_s: u64, beacon_ms: u64) -> f64 {
    let mut cfg = WorldConfig::default();
    cfg.timing.beacon_ms = beacon_ms;
    cfg.timing.link_silence_ms = beacon_ms * 7 / 2;
    let mut w = World::new(1, cfg);
    for _ in 0..servers {
        w.add_server(ServerSpec::new("bench", "secret"));
    }
    let began = Instant::now();
    w.run_for(sim_s * 1_000);
    sim_s as f64 / began.elapsed().as_secs_f64()
}

/// Speed of the turmoil world (the real driver): `servers` servers for `sim_s` simulated
/// seconds at a 10 ms tick; returns simulated seconds per wall second.
pub fn turmoil_speed(servers: usize, sim_s: u64) -> f64 {
    let mut w = TurmoilWorld::new(1, TurmoilOptions::default());
    for _ in 0..servers {
        w.add_server(ServerSpec::new("bench", "secret"));
    }
    let began = Instant::now();
    w.run_for(sim_s * 1_000);
    sim_s as f64 / began.elapsed().as_secs_f64()
}

/// Result of the merge benchmark.
#[derive(Debug)]
pub struct MergeFigures {
    /// Simulated ms from the merge command until every server holds identical state.
    pub converge_ms: u64,
    /// Bytes of transaction-carrying messages sent after the merge command.
    pub txn_bytes: u64,
    /// Bytes of all link messages sent after the merge command.
    pub all_bytes: u64,
    /// The minimum: each server receiving each transaction it lacked exactly once.
    pub min_bytes: u64,
    /// Bytes by message kind after the merge command.
    pub bytes_by_kind: BTreeMap<&'static str, u64>,
    /// Wall-clock seconds the simulation took.
    pub wall_s: f64,
}

/// Merge of two systems of `side` servers with `cameras` cameras each over links of
/// `latency_ms`, in the discrete-event simulator.
pub fn merge(side: usize, cameras: u128, latency_ms: u64) -> MergeFigures {
    let began = Instant::now();
    let cfg = WorldConfig { latency_ms, ..WorldConfig::default() };
    let mut w = World::new(7, cfg);
    let a: Vec<_> = (0..side).map(|_| w.add_server(ServerSpec::new("alpha", "secret-a"))).collect();
    let b: Vec<_> = (0..side).map(|_| w.add_server(ServerSpec::new("beta", "secret-b"))).collect();
    w.run_for(5_000);
    let sys_b = w.node(b[0]).expect("up").identity().system;
    w.command(b[0], user(1, "admin", "pw", Role::Owner, sys_b));
    // Cameras are added across each side's servers, as they would be.
    for i in 0..cameras {
        for (side_hosts, base) in [(&a, 0u128), (&b, 1_000_000u128)] {
            let h = side_hosts[i as usize % side_hosts.len()];
            let me = w.node(h).expect("up").identity().server;
            w.command(h, camera(base + i, me));
        }
        if i % 50 == 0 {
            w.run_for(10);
        }
    }
    w.run_until_pred(100, 60_000, |w| w.converged());
    let before: Vec<BTreeSet<(ReplicaId, Seq)>> = (0..w.len())
        .map(|h| {
            w.node(h).expect("up").store().entries().values().map(|e| (e.origin, e.seq)).collect()
        })
        .collect();
    let start_stats = w.stats.clone();
    w.set_measure_bytes(true);
    let addr = PeerAddr(format!("10.0.0.{}:7001", b[0] + 1));
    let id = w.command(
        a[0],
        Command::Merge { addr, user: "admin".into(), password: "pw".into(), keep: Keep::Remote },
    );
    let converge_ms = w
        .run_until_pred(10, 120_000, |w| {
            let one = (0..w.len()).all(|h| w.node(h).is_some_and(|n| n.identity().system == sys_b));
            one && w.stores_identical()
        })
        .expect("the merge converges within two minutes");
    assert!(matches!(w.reply(id), Some(Ok(Reply::Merged { .. }))));
    // The minimum: every server receives each entry it lacked, once.
    let last: BTreeMap<_, _> = w.node(0).expect("up").store().entries().clone();
    let mut min_bytes = 0u64;
    for had in &before {
        for (key, e) in &last {
            if !had.contains(&(e.origin, e.seq)) {
                let t = Transaction {
                    origin: e.origin,
                    seq: e.seq,
                    hlc: e.hlc,
                    key: key.clone(),
                    value: e.value.clone(),
                };
                let mut buf = Vec::new();
                ciborium::into_writer(&t, &mut buf).expect("encodes");
                min_bytes += buf.len() as u64;
            }
        }
    }
    MergeFigures {
        converge_ms,
        txn_bytes: w.stats.txn_bytes - start_stats.txn_bytes,
        all_bytes: w.stats.bytes - start_stats.bytes,
        bytes_by_kind: w.stats.bytes_by_kind.clone(),
        min_bytes,
        wall_s: began.elapsed().as_secs_f64(),
    }
}

/// Result of the merge benchmark in the turmoil world.
#[derive(Debug)]
pub struct TurmoilMergeFigures {
    /// Simulated ms from the merge command until every server is in the merged system and
    /// holds an identical replica.
    pub converge_ms: u64,
    /// What the sockets carried in that time: TCP bytes (link frames, handshakes, the merge
    /// login), connections made, beacon bytes.
    pub wire: WireCount,
    /// Wall-clock seconds of forming the two systems and adding their cameras.
    pub setup_wall_s: f64,
    /// Wall-clock seconds from the merge command until identical replicas.
    pub merge_wall_s: f64,
}

/// Merge of two systems of `side` servers with `cameras` cameras each over links of
/// `latency_ms`, in the turmoil world: the real driver, with whatever its links do on the
/// wire (the discrete-event level drives the core directly and has no link protocol).
pub fn merge_turmoil(
    side: usize,
    cameras: u128,
    latency_ms: u64,
) -> Result<TurmoilMergeFigures, Violation> {
    let began = Instant::now();
    let opts = TurmoilOptions {
        latency_ms_min: latency_ms,
        latency_ms_max: latency_ms,
        ..TurmoilOptions::default()
    };
    let mut w = TurmoilWorld::new(7, opts);
    let a: Vec<_> = (0..side).map(|_| w.add_server(ServerSpec::new("alpha", "secret-a"))).collect();
    let b: Vec<_> = (0..side).map(|_| w.add_server(ServerSpec::new("beta", "secret-b"))).collect();
    let everyone = 2 * side;
    let two_systems = |w: &TurmoilWorld| {
        let reports = w.reports();
        let systems: BTreeSet<_> = reports.iter().map(|r| r.system).collect();
        reports.len() == everyone && systems.len() == 2 && w.converged()
    };
    w.run_until(100, 120_000, two_systems)
        .ok_or_else(|| Violation("the two systems did not form".into()))?;
    let report = |w: &TurmoilWorld, h: usize| {
        w.report(h).ok_or_else(|| Violation(format!("server {h} is not running")))
    };
    let sys_b = report(&w, b[0])?.system;
    let owner = w.command(b[0], user(1, "admin", "pw", Role::Owner, sys_b));
    if !matches!(w.await_reply(owner, 10_000), Some(Ok(_))) {
        return Err(Violation("the owner of beta was not created".into()));
    }
    let servers =
        (0..everyone).map(|h| Ok(report(&w, h)?.server)).collect::<Result<Vec<_>, Violation>>()?;
    // Cameras are added across each side's servers, as they would be.
    for i in 0..cameras {
        for (side_hosts, base) in [(&a, 0u128), (&b, 1_000_000u128)] {
            let h = side_hosts[i as usize % side_hosts.len()];
            // Not waited for: convergence below shows every camera arrived.
            drop(w.command(h, camera(base + i, servers[h])));
        }
        if i % 50 == 49 {
            w.run_for(10);
        }
    }
    w.run_until(100, 120_000, two_systems)
        .ok_or_else(|| Violation("the cameras did not converge".into()))?;
    let target = report(&w, b[0])?;
    let addr = match target.entries.get(&Key::Server(target.server)).and_then(|e| e.value.as_ref())
    {
        Some(Value::Server(r)) => r.addresses.first().cloned(),
        _ => None,
    }
    .ok_or_else(|| Violation("beta's first server has no address".into()))?;
    let setup_wall_s = began.elapsed().as_secs_f64();
    let merging = Instant::now();
    let wire_before = WireCount::now();
    let mut reply = w.command(
        a[0],
        Command::Merge { addr, user: "admin".into(), password: "pw".into(), keep: Keep::Remote },
    );
    let mut replied = None;
    let converge_ms = w
        .run_until(10, 120_000, |w| {
            if replied.is_none() {
                replied = reply.try_recv().ok();
            }
            let reports = w.reports();
            reports.len() == everyone
                && reports.iter().all(|r| r.system == sys_b)
                && reports.windows(2).all(|p| p[0].entries == p[1].entries)
        })
        .ok_or_else(|| Violation("the merge did not converge within two minutes".into()))?;
    let wire = WireCount::now().since(wire_before);
    let merge_wall_s = merging.elapsed().as_secs_f64();
    let replied = match replied {
        Some(r) => Some(r),
        None => w.await_reply(reply, 10_000),
    };
    if !matches!(replied, Some(Ok(Reply::Merged { .. }))) {
        return Err(Violation(format!("the merge command answered {replied:?}")));
    }
    Ok(TurmoilMergeFigures { converge_ms, wire, setup_wall_s, merge_wall_s })
}

/// Result of the large-system run.
#[derive(Debug)]
pub struct LargeFigures {
    /// Simulated ms from the first camera until every server holds them all.
    pub converge_ms: u64,
    /// Wall-clock seconds of the whole run.
    pub wall_s: f64,
}

/// 100 servers on one LAN form one system; 10,000 cameras are added through all of them; the
/// system must converge and keep every invariant.
pub fn large_system(
    servers: usize,
    cameras: u128,
) -> Result<LargeFigures, crate::check::Violation> {
    let began = Instant::now();
    let mut w =
        World::new(5, WorldConfig { latency_ms: 2, jitter_ms: 2, ..WorldConfig::default() });
    let hosts: Vec<_> =
        (0..servers).map(|_| w.add_server(ServerSpec::new("large", "secret"))).collect();
    w.run_until_pred(100, 60_000, |w| w.stores_identical() && w.converged())
        .ok_or_else(|| crate::check::Violation("servers did not form one system".into()))?;
    w.check()?;
    let start = w.now_ms();
    for i in 0..cameras {
        let h = hosts[i as usize % hosts.len()];
        let me = w.node(h).expect("up").identity().server;
        w.command(h, camera(i, me));
        if i % 100 == 99 {
            w.run_for(5);
        }
    }
    w.run_until_pred(100, 120_000, |w| w.stores_identical() && w.converged())
        .ok_or_else(|| crate::check::Violation("cameras did not converge".into()))?;
    w.check()?;
    w.check_converged()?;
    let n = w.node(hosts[0]).expect("up");
    if n.cameras().count() as u128 != cameras || n.online_servers().len() != servers {
        return Err(crate::check::Violation("not every camera or server is there".into()));
    }
    Ok(LargeFigures { converge_ms: w.now_ms() - start, wall_s: began.elapsed().as_secs_f64() })
}
