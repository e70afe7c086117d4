//! Simulation benchmarks: the figures of `docs/benchmarks.md`.

use crate::des::{ServerSpec, World, WorldConfig};
use std::time::Instant;

/// Speed of the discrete-event simulator: `servers` servers for `sim_s` simulated seconds.
pub fn des_speed(servers: usize, sim_s: u64) -> (f64, crate::des::world::NetStats) {
    let mut w = World::new(1, WorldConfig::default());
    for _ in 0..servers {
        w.add_server(ServerSpec::new("bench", "secret"));
    }
    let began = Instant::now();
    w.run_for(sim_s * 1_000);
    let wall = began.elapsed().as_secs_f64();
    if std::env::var("HIVE_BENCH_DEBUG").is_ok() {
        let n = w.node(0).expect("up");
        eprintln!(
            "host 0: store {} entries, vector {:?}, idle {}",
            n.store().len(),
            n.store().vector().len(),
            n.sync_idle()
        );
    }
    (sim_s as f64 / wall, w.stats)
}
