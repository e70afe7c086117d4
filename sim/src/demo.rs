//! `hive-sim demo`: a small hive in the turmoil world, narrated. The real driver runs every
//! server; this is what the README's first command shows until `hive demo` exists.

use crate::des::ServerSpec;
use crate::fixtures::{camera, license};
use crate::report::NodeReport;
use crate::turmoil_world::{TurmoilOptions, TurmoilWorld};
use hive_core::resources::Key;
use std::collections::BTreeSet;

fn table(w: &TurmoilWorld, hosts: usize, title: &str) {
    println!("\n== {title}");
    println!(
        "{:<10} {:<34} {:<10} {:>7} {:>8} {:>9}  other systems",
        "host", "server", "system", "online", "cameras", "licenses"
    );
    for h in 0..hosts {
        match w.report(h) {
            None => println!("{:<10} (down)", format!("server-{h}")),
            Some(r) => println!(
                "{:<10} {:<34} {:<10} {:>7} {:>8} {:>9}  {:?}",
                format!("server-{h}"),
                r.server.to_string(),
                format!("{:?}", r.system).trim_start_matches("sys-").to_owned(),
                r.online.len(),
                cameras(&r),
                r.license_total,
                r.other_systems.iter().map(|n| n.as_str()).collect::<Vec<_>>()
            ),
        }
    }
}

fn cameras(r: &NodeReport) -> usize {
    r.entries.iter().filter(|(k, e)| matches!(k, Key::Camera(_)) && e.value.is_some()).count()
}

fn systems(w: &TurmoilWorld) -> usize {
    w.reports().iter().map(|r| r.system).collect::<BTreeSet<_>>().len()
}

/// Runs the narrated demo.
pub fn run() {
    let mut w = TurmoilWorld::new(
        2026,
        TurmoilOptions { latency_ms_min: 1, latency_ms_max: 5, ..TurmoilOptions::default() },
    );
    let members = 5;
    for _ in 0..members {
        w.add_server(ServerSpec::new("Main office", "correct horse"));
    }
    let stranger = w.add_server(ServerSpec::new("Main office", "guessed"));
    println!("Starting {members} servers named \"Main office\" with one secret, and one with the name but a wrong secret.");
    let took = w.run_until(50, 30_000, |w| {
        w.reports().len() == members + 1 && systems(w) == 2 && w.converged()
    });
    match took {
        Some(ms) => println!("Merged into one system in {ms} ms of simulated time."),
        None => println!("Not merged after 30 s of simulated time."),
    }
    table(&w, members + 1, "after discovery");

    for (h, channels) in [(0usize, 4u32), (1, 10)] {
        let rx = w.command(h, license(h as u128 + 1, h, channels));
        w.await_reply(rx, 2_000);
    }
    for i in 0..8u128 {
        let h = (i % members as u128) as usize;
        let Some(me) = w.report(h).map(|r| r.server) else { continue };
        let rx = w.command(h, camera(i + 1, me));
        w.await_reply(rx, 2_000);
    }
    w.run_for(2_000);
    table(&w, members + 1, "8 cameras added through different servers; licenses of 4 and 10 channels added (4 + 10 = 14)");

    println!("\nCutting server-4 off the network and crashing server-3...");
    for h in 0..members - 1 {
        w.partition(4, h);
    }
    w.crash(3);
    w.run_for(8_000);
    table(&w, members + 1, "partitioned and crashed");

    println!("\nHealing the network and restarting server-3...");
    for h in 0..members - 1 {
        w.repair(4, h);
    }
    w.restart(3);
    let took = w.run_until(50, 30_000, |w| {
        w.reports().len() == members + 1 && systems(w) == 2 && w.converged()
    });
    match took {
        Some(ms) => println!("Converged again {ms} ms after healing."),
        None => println!("Not converged 30 s after healing."),
    }
    table(&w, members + 1, "healed");
    match w.check() {
        Ok(()) => println!("\nInvariants hold: one converged system, license sum, the stranger (server-{stranger}) holds nobody's data."),
        Err(v) => println!("\nInvariant broken: {v}"),
    }
}
