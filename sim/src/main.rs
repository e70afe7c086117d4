//! `hive-sim`: seed sweeps and replays of randomised scenarios, and simulation benchmarks.

use clap::{Parser, Subcommand};
use hive_sim::scenario;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Parser)]
#[command(about = "Simulate Hive systems")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the scenarios of N seeds (or as many as fit in `--seconds`) and prints every
    /// failing seed with its replay command.
    Sweep {
        /// Number of seeds (without `--seconds`: required).
        seeds: Option<u64>,
        /// Budget mode: run seeds from `--start` until this much wall time has passed.
        #[arg(long)]
        seconds: Option<u64>,
        /// Budget mode: run at least this many seeds, however long they take.
        #[arg(long, default_value_t = 0)]
        min_seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        jobs: u64,
    },
    /// Measures the discrete-event simulator's speed.
    BenchDes {
        /// Servers.
        #[arg(long, default_value_t = 100)]
        servers: usize,
        /// Simulated seconds.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// Beacon period (the design's default is 1 s; Nx Witness uses 5 s).
        #[arg(long, default_value_t = 1000)]
        beacon_ms: u64,
    },
    /// Measures time sync: followers' distance from the primary's system time over random
    /// systems, in a LAN and a WAN profile.
    BenchTime {
        /// Seeds per profile.
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
    },
    /// Measures the turmoil world's speed.
    BenchTurmoil {
        /// Servers.
        #[arg(long, default_value_t = 20)]
        servers: usize,
        /// Simulated seconds.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
    },
    /// Measures a merge of two systems.
    BenchMerge {
        /// Servers per system.
        #[arg(long, default_value_t = 50)]
        side: usize,
        /// Cameras per system.
        #[arg(long, default_value_t = 1000)]
        cameras: u128,
        /// One-way link latency.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
    },
    /// Measures a merge of two systems in the turmoil world (the real driver and link protocol).
    BenchMergeTurmoil {
        /// Servers per system.
        #[arg(long, default_value_t = 50)]
        side: usize,
        /// Cameras per system.
        #[arg(long, default_value_t = 1000)]
        cameras: u128,
        /// One-way link latency.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
    },
    /// Measures failover: deaths of a recorder and its return over random systems, and false
    /// failovers under link loss and link cuts.
    BenchFailover {
        /// Seeds of the death loop (one death and return each).
        #[arg(long, default_value_t = 1000)]
        seeds: u64,
        /// Seeds of the hour loop (one simulated hour of 1 % loss and link cuts each).
        #[arg(long, default_value_t = 100)]
        hour_seeds: u64,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        jobs: u64,
    },
    /// A large system: servers on one LAN, cameras added through all of them.
    Large {
        /// Servers.
        #[arg(long, default_value_t = 100)]
        servers: usize,
        /// Cameras.
        #[arg(long, default_value_t = 10_000)]
        cameras: u128,
    },
    /// Runs a small narrated hive in the turmoil world.
    Demo,
    /// Runs one seed and prints its steps.
    Replay {
        /// The seed.
        seed: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Sweep { seeds, seconds, min_seeds, start, jobs } => {
            let budget = match (seeds, seconds) {
                (Some(n), None) => Budget::Seeds(n),
                (None, Some(s)) => Budget::Seconds(s),
                _ => {
                    eprintln!("sweep takes a number of seeds or --seconds S, not both");
                    return ExitCode::FAILURE;
                }
            };
            sweep(start, budget, min_seeds, jobs)
        }
        Cmd::BenchDes { servers, seconds, beacon_ms } => {
            let speed = hive_sim::bench::des_speed(servers, seconds, beacon_ms);
            println!(
                "discrete-event simulator, {servers} servers, {seconds} s, beacons every {beacon_ms} ms: {speed:.0} simulated s per wall s"
            );
            ExitCode::SUCCESS
        }
        Cmd::BenchTime { seeds } => {
            use hive_sim::bench_time::{run, Profile};
            println!("| profile | seeds | samples | p50 | p99 | max | wall |");
            println!("|---|---|---|---|---|---|---|");
            for profile in [Profile::Lan, Profile::Wan] {
                let f = run(profile, seeds);
                println!(
                    "| {profile:?} | {} | {} | {} µs | {} µs | {} µs | {:.1} s |",
                    f.seeds, f.samples, f.p50_us, f.p99_us, f.max_us, f.wall_s
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::BenchTurmoil { servers, seconds } => {
            let speed = hive_sim::bench::turmoil_speed(servers, seconds);
            println!("turmoil world (real driver), {servers} servers, {seconds} s: {speed:.1} simulated s per wall s");
            ExitCode::SUCCESS
        }
        Cmd::BenchMerge { side, cameras, latency_ms } => {
            let f = hive_sim::bench::merge(side, cameras, latency_ms);
            println!(
                "merge of 2 x {side} servers, {cameras} cameras each, {latency_ms} ms links: identical everywhere {} ms after the command; \
                 transaction bytes {} = {:.2} x minimum {}; all link bytes {}; {:.1} s wall",
                f.converge_ms,
                f.txn_bytes,
                f.txn_bytes as f64 / f.min_bytes.max(1) as f64,
                f.min_bytes,
                f.all_bytes,
                f.wall_s
            );
            println!("bytes by message kind: {:?}", f.bytes_by_kind);
            ExitCode::SUCCESS
        }
        Cmd::BenchMergeTurmoil { side, cameras, latency_ms } => {
            match hive_sim::bench::merge_turmoil(side, cameras, latency_ms) {
                Ok(f) => {
                    println!(
                        "turmoil merge of 2 x {side} servers, {cameras} cameras each, {latency_ms} ms links: \
                         identical everywhere {} ms (simulated) after the command; TCP bytes {} in {} new \
                         connections; beacon bytes {}; wall {:.1} s setup + {:.1} s merge",
                        f.converge_ms,
                        f.wire.tcp_bytes,
                        f.wire.tcp_connections,
                        f.wire.udp_bytes,
                        f.setup_wall_s,
                        f.merge_wall_s
                    );
                    ExitCode::SUCCESS
                }
                Err(v) => {
                    println!("turmoil merge FAILED: {v}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::BenchFailover { seeds, hour_seeds, jobs } => {
            let figures = hive_sim::bench_failover::run(seeds, hour_seeds, jobs);
            print!("{}", figures.table());
            ExitCode::SUCCESS
        }
        Cmd::Large { servers, cameras } => match hive_sim::bench::large_system(servers, cameras) {
            Ok(f) => {
                println!(
                    "{servers} servers, {cameras} cameras: identical everywhere {} ms (simulated) after the first camera; {:.1} s wall",
                    f.converge_ms, f.wall_s
                );
                ExitCode::SUCCESS
            }
            Err(v) => {
                println!("large system FAILED: {v}");
                ExitCode::FAILURE
            }
        },
        Cmd::Demo => {
            hive_sim::demo::run();
            ExitCode::SUCCESS
        }
        Cmd::Replay { seed } => {
            let o = scenario::run(seed);
            for s in &o.steps {
                println!("{s}");
            }
            println!("trace {:016x}", o.trace);
            match o.result {
                Ok(()) => {
                    println!("seed {seed}: ok");
                    ExitCode::SUCCESS
                }
                Err(v) => {
                    println!("seed {seed}: FAILED: {v}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// How long a sweep runs.
#[derive(Clone, Copy)]
enum Budget {
    /// This many seeds.
    Seeds(u64),
    /// Seeds until this much wall time has passed.
    Seconds(u64),
}

fn sweep(start: u64, budget: Budget, min_seeds: u64, jobs: u64) -> ExitCode {
    let next = AtomicU64::new(start);
    let ran = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let slowest = Mutex::new((0.0f64, start));
    let began = std::time::Instant::now();
    let more = |seed: u64| match budget {
        Budget::Seeds(n) => seed < start + n,
        // The time budget is a floor on exploration, never a cut below the minimum:
        // a slow machine runs longer rather than checking fewer seeds.
        Budget::Seconds(s) => seed < start + min_seeds || began.elapsed().as_secs() < s,
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if !more(seed) {
                    break;
                }
                // A panic (an assertion in the core) fails the seed, not the sweep.
                let seed_began = std::time::Instant::now();
                let result = std::panic::catch_unwind(|| scenario::run(seed).result)
                    .unwrap_or_else(|panic| Err(panic_violation(panic.as_ref())));
                ran.fetch_add(1, Ordering::Relaxed);
                let took_s = seed_began.elapsed().as_secs_f64();
                let mut slow = slowest.lock().expect("no panics hold this lock");
                if took_s > slow.0 {
                    *slow = (took_s, seed);
                }
                drop(slow);
                if let Err(v) = result {
                    println!(
                        "seed {seed} FAILED: {v}\n  replay: {}",
                        scenario::replay_command(seed)
                    );
                    failures.lock().expect("no panics hold this lock").push(seed);
                }
            });
        }
    });
    let failed = failures.into_inner().expect("no panics hold this lock");
    let ran = ran.into_inner();
    let (slowest_s, slowest_seed) = slowest.into_inner().expect("no panics hold this lock");
    println!(
        "{ran} seeds from {start}: {} failed, {:.1} s (slowest: seed {slowest_seed}, {slowest_s:.2} s)",
        failed.len(),
        began.elapsed().as_secs_f64()
    );
    if ran < min_seeds {
        println!("only {ran} seeds ran, fewer than the {min_seeds} required");
        return ExitCode::FAILURE;
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A panic's message as a violation.
fn panic_violation(panic: &(dyn std::any::Any + Send)) -> hive_sim::check::Violation {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    hive_sim::check::Violation(format!("panicked: {what}"))
}
