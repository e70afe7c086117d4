//! Failover benchmark: the failover figures of `docs/benchmarks.md`.
//!
//! Two loops over random systems (3–12 servers, 8–64 cameras, 1–20 ms links with 0–5 ms
//! jitter, default timing), each formed and settled with every camera recorded at home:
//! - **Deaths**, one per seed: a recorder dies (even seeds silently, [`World::crash`]; odd
//!   seeds with its links reset, [`World::kill_with_reset`]); per camera, the simulated ms from
//!   the death to its start on a taker; then it restarts, and the ms until its last camera is
//!   back; double recording inside one connected part is sampled throughout.
//! - **Hours**, one per seed: 1 % link loss and, every 2–5 minutes, one open link cut for a
//!   minute, chosen among those whose loss leaves the links connected, for one simulated
//!   hour; every
//!   start of a camera anywhere but where it was is a false failover, since every server stays
//!   alive and reachable. Each cut also gives a route repair time.

use crate::des::{HostId, ServerSpec, World, WorldConfig};
use crate::fixtures::camera;
use hive_core::ids::CameraId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Failover time the issue aims at for p99, ms.
const FAILOVER_TARGET_MS: u64 = 5_000;

/// Target of double recording per failover and return, ms: one heartbeat interval.
const DOUBLE_TARGET_MS: u64 = 1_000;

/// Sampling period of recorders during a failover and a return, ms.
const SAMPLE_MS: u64 = 50;

/// Sampling period of recorders during an hour of loss, ms.
const HOUR_SAMPLE_MS: u64 = 100;

/// Sampling period of routes while a cut is being repaired, ms.
const ROUTE_SAMPLE_MS: u64 = 10;

/// Samples between two checks of the world's invariants ([`World::check`] costs more than a
/// sample; node invariants are checked after every event whatever this says).
const CHECK_EVERY: u64 = 20;

/// Longest wait for anything the benchmark waits for (forming, a failover, a return), ms.
const WAIT_MS_MAX: u64 = 120_000;

/// How long a link stays cut, ms: long enough for routes around it to settle, short enough
/// that the mesh has relinked it before the next cut.
const CUT_MS: u64 = 60_000;

/// Simulated time of one hour-loop seed, ms.
const HOUR_MS: u64 = 3_600_000;

/// What one death and return measured.
#[derive(Clone, Debug, Default)]
pub struct DeathRun {
    /// The recorder's links were reset (else it died silently).
    pub reset: bool,
    /// Per displaced camera, ms from the death to its start on a taker.
    pub failover_ms: Vec<u64>,
    /// Displaced cameras that no taker started within the wait.
    pub never_taken: usize,
    /// Ms from the restart until the last camera was back, if all came back.
    pub return_ms: Option<u64>,
    /// Sum over cameras of the ms they were recorded by two servers that reach each other.
    pub double_ms: u64,
    /// The first invariant broken, if any.
    pub violation: Option<String>,
}

/// What one hour of loss and cuts measured.
#[derive(Clone, Debug, Default)]
pub struct HourRun {
    /// Starts of a camera anywhere but where it was recorded when the hour began.
    pub false_failovers: u64,
    /// Per link cut, ms until every server had a route to every other not through the cut.
    pub route_repair_ms: Vec<u64>,
    /// Cuts after which routes were not repaired within the wait.
    pub unrepaired: usize,
    /// The first invariant broken, if any.
    pub violation: Option<String>,
}

/// All figures of a benchmark run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Per death seed, or `None` if the system did not form and settle.
    pub deaths: Vec<Option<DeathRun>>,
    /// Per hour seed, or `None` if the system did not form and settle.
    pub hours: Vec<Option<HourRun>>,
    /// Wall time of the death loop, s.
    pub deaths_wall_s: f64,
    /// Wall time of the hour loop, s.
    pub hours_wall_s: f64,
}

/// Runs `seeds` deaths and `hour_seeds` hours on `jobs` threads.
pub fn run(seeds: u64, hour_seeds: u64, jobs: u64) -> Figures {
    let began = Instant::now();
    let deaths = parallel(seeds, jobs, death_run);
    let deaths_wall_s = began.elapsed().as_secs_f64();
    let began = Instant::now();
    let hours = parallel(hour_seeds, jobs, hour_run);
    Figures { deaths, hours, deaths_wall_s, hours_wall_s: began.elapsed().as_secs_f64() }
}

/// `f` of seeds `0..seeds` on `jobs` threads, in seed order.
fn parallel<T: Send>(seeds: u64, jobs: u64, f: fn(u64) -> T) -> Vec<T> {
    let next = AtomicU64::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds {
                    break;
                }
                let out = f(seed);
                done.lock().expect("no panics hold this lock").push((seed, out));
            });
        }
    });
    let mut done = done.into_inner().expect("no panics hold this lock");
    done.sort_by_key(|(seed, _)| *seed);
    done.into_iter().map(|(_, out)| out).collect()
}

/// A random system of `seed`, formed, with every camera recorded at home and every server
/// ready to take failover; the preferred host of each camera.
fn settled_system(seed: u64) -> Option<(World, BTreeMap<CameraId, HostId>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa11_0fe2);
    let servers = rng.gen_range(3..=12);
    let cameras = rng.gen_range(8..=64u128);
    let cfg = WorldConfig {
        latency_ms: rng.gen_range(1..=20),
        jitter_ms: rng.gen_range(0..=5),
        ..WorldConfig::default()
    };
    let ready_ms = cfg.timing.failover_min_uptime_ms;
    let mut w = World::new(seed, cfg);
    for _ in 0..servers {
        w.add_server(ServerSpec::new("bench", "s3cret"));
    }
    let started_ms = w.now_ms();
    w.run_until_pred(100, WAIT_MS_MAX, |w| w.converged())?;
    let mut preferred = BTreeMap::new();
    for i in 0..cameras {
        let host = rng.gen_range(0..servers);
        let server = w.node(host)?.identity().server;
        w.command(host, camera(1_000 + i, server));
        preferred.insert(CameraId(1_000 + i), host);
    }
    w.run_until_pred(100, WAIT_MS_MAX, |w| all_home(w, &preferred))?;
    // Takers announce readiness after their minimum uptime; then the system is settled.
    w.run_until(started_ms + ready_ms + 5_000);
    w.run_for(5_000);
    let settled = w.check().is_ok() && all_home(&w, &preferred);
    settled.then_some((w, preferred))
}

/// Every camera recorded by its preferred host alone.
fn all_home(w: &World, preferred: &BTreeMap<CameraId, HostId>) -> bool {
    let r = w.recorders();
    preferred.iter().all(|(c, h)| r.get(c).is_some_and(|v| v == &[*h]))
}

/// Cameras recorded now by two servers that reach each other (the rule of
/// [`World::check_single_recorder`], without its grace).
fn double_recorded(w: &World) -> usize {
    let reach = |a: HostId, b: HostId| {
        let (na, nb) = (w.node(a).expect("up"), w.node(b).expect("up"));
        na.connected_since(nb.identity().server).is_some()
            && nb.connected_since(na.identity().server).is_some()
    };
    w.recorders()
        .values()
        .filter(|hosts| {
            hosts.iter().enumerate().any(|(i, &a)| hosts[i + 1..].iter().any(|&b| reach(a, b)))
        })
        .count()
}

/// One death of a recorder and its return.
fn death_run(seed: u64) -> Option<DeathRun> {
    let (mut w, preferred) = settled_system(seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead);
    let recorders: BTreeSet<HostId> = preferred.values().copied().collect();
    let victim = *recorders.iter().nth(rng.gen_range(0..recorders.len()))?;
    let displaced: Vec<CameraId> =
        preferred.iter().filter(|(_, h)| **h == victim).map(|(c, _)| *c).collect();
    let mut run = DeathRun { reset: seed % 2 == 1, ..DeathRun::default() };

    let died_ms = w.now_ms();
    if run.reset {
        w.kill_with_reset(victim);
    } else {
        w.crash(victim);
    }
    let mut taken: BTreeMap<CameraId, u64> = BTreeMap::new();
    let mut samples = 0u64;
    while taken.len() < displaced.len() && w.now_ms() < died_ms + WAIT_MS_MAX {
        w.run_for(SAMPLE_MS);
        sample(&w, &mut run, &mut samples);
        let r = w.recorders();
        for c in &displaced {
            if let Some(&taker) = r.get(c).and_then(|v| v.first()) {
                taken.entry(*c).or_insert_with(|| w.recording(taker)[c] - died_ms);
            }
        }
    }
    run.never_taken = displaced.len() - taken.len();
    run.failover_ms = taken.into_values().collect();
    // Double recording may follow a takeover by a moment: watch a little longer.
    for _ in 0..100 {
        w.run_for(SAMPLE_MS);
        sample(&w, &mut run, &mut samples);
    }

    w.restart(victim);
    let restarted_ms = w.now_ms();
    while !all_home(&w, &preferred) && w.now_ms() < restarted_ms + WAIT_MS_MAX {
        w.run_for(SAMPLE_MS);
        sample(&w, &mut run, &mut samples);
    }
    if all_home(&w, &preferred) {
        let back_ms = displaced.iter().map(|c| w.recording(victim)[c]).max();
        run.return_ms = back_ms.map(|at| at - restarted_ms);
    }
    for _ in 0..100 {
        w.run_for(SAMPLE_MS);
        sample(&w, &mut run, &mut samples);
    }
    Some(run)
}

/// Adds one sample's double recording to `run`, and every [`CHECK_EVERY`] samples the first
/// invariant broken.
fn sample(w: &World, run: &mut DeathRun, samples: &mut u64) {
    run.double_ms += SAMPLE_MS * double_recorded(w) as u64;
    *samples += 1;
    if run.violation.is_none() && samples.is_multiple_of(CHECK_EVERY) {
        run.violation = w.check().err().map(|v| v.0);
    }
}

/// One hour of 1 % link loss and single link cuts.
fn hour_run(seed: u64) -> Option<HourRun> {
    let (mut w, _) = settled_system(seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1055);
    let mut run = HourRun::default();
    w.set_link_loss(0.01);
    let began_ms = w.now_ms();
    let mut starts = starts_of(&w);
    // The link cut now, and the cut whose routes are still being repaired, with its time.
    let mut cut: Option<(HostId, HostId, u64)> = None;
    let mut repairing: Option<(HostId, HostId, u64)> = None;
    let mut next_cut_ms = began_ms + rng.gen_range(120_000..=300_000);
    let mut steps = 0u64;
    while w.now_ms() < began_ms + HOUR_MS {
        if let Some((a, b, _)) = cut.filter(|&(_, _, at)| w.now_ms() >= at + CUT_MS) {
            w.repair(a, b);
            cut = None;
        }
        if w.now_ms() >= next_cut_ms && cut.is_none() {
            let pairs = linked_pairs(&w);
            let keeps_connected: Vec<_> =
                pairs.iter().filter(|&&p| connected_without(&w, &pairs, p)).collect();
            if !keeps_connected.is_empty() {
                let (a, b) = *keeps_connected[rng.gen_range(0..keeps_connected.len())];
                w.partition(a, b);
                cut = Some((a, b, w.now_ms()));
                repairing = Some((a, b, w.now_ms()));
            }
            next_cut_ms = w.now_ms() + rng.gen_range(120_000..=300_000);
        }
        w.run_for(if repairing.is_some() { ROUTE_SAMPLE_MS } else { HOUR_SAMPLE_MS });
        if let Some((a, b, at)) = repairing {
            if routes_around(&w, a, b) {
                run.route_repair_ms.push(w.now_ms() - at);
                repairing = None;
            } else if w.now_ms() > at + WAIT_MS_MAX {
                run.unrepaired += 1;
                repairing = None;
            }
        }
        let now = starts_of(&w);
        run.false_failovers += now.difference(&starts).count() as u64;
        starts = now;
        steps += 1;
        if run.violation.is_none() && steps.is_multiple_of(CHECK_EVERY) {
            run.violation = w.check().err().map(|v| v.0);
        }
    }
    Some(run)
}

/// Every start of a recording now: camera, host and the simulated ms it started.
fn starts_of(w: &World) -> BTreeSet<(CameraId, HostId, u64)> {
    (0..w.len())
        .filter(|h| w.is_up(*h))
        .flat_map(|h| w.recording(h).iter().map(move |(c, at)| (*c, h, *at)))
        .collect()
}

/// Pairs of hosts with an open link between them, each once.
fn linked_pairs(w: &World) -> Vec<(HostId, HostId)> {
    let host_of: BTreeMap<_, _> =
        (0..w.len()).filter_map(|h| Some((w.node(h)?.identity().server, h))).collect();
    let mut pairs = Vec::new();
    for (a, node) in (0..w.len()).filter_map(|h| Some((h, w.node(h)?))) {
        for (peer, _) in node.linked_peers() {
            if let Some(&b) = host_of.get(&peer).filter(|&&b| a < b) {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

/// Whether the hosts up stay connected over the links `pairs` without link `cut`.
fn connected_without(w: &World, pairs: &[(HostId, HostId)], cut: (HostId, HostId)) -> bool {
    let up: Vec<HostId> = (0..w.len()).filter(|h| w.is_up(*h)).collect();
    let Some(&first) = up.first() else { return true };
    let mut reached = BTreeSet::from([first]);
    let mut todo = vec![first];
    while let Some(h) = todo.pop() {
        for &(a, b) in pairs.iter().filter(|&&p| p != cut) {
            let next = if a == h {
                b
            } else if b == h {
                a
            } else {
                continue;
            };
            if reached.insert(next) {
                todo.push(next);
            }
        }
    }
    reached.len() == up.len()
}

/// Whether every server has a route to every other, and `a` and `b` no longer route to each
/// other over their cut link.
fn routes_around(w: &World, a: HostId, b: HostId) -> bool {
    let nodes: Vec<_> = (0..w.len()).filter_map(|h| w.node(h)).collect();
    let all = nodes.iter().all(|n| {
        nodes.iter().all(|m| {
            m.identity().server == n.identity().server || n.route_to(m.identity().server).is_some()
        })
    });
    let around = |x: HostId, y: HostId| {
        let (nx, ny) = (w.node(x).expect("up"), w.node(y).expect("up"));
        nx.route_to(ny.identity().server).is_some_and(|r| r.hops > 1)
    };
    all && around(a, b) && around(b, a)
}

/// p50, p99 and max of `values` (nearest rank), or `None` if empty.
pub fn percentiles(values: &[u64]) -> Option<(u64, u64, u64)> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (!v.is_empty()).then(|| (at(0.50), at(0.99), at(1.0)))
}

impl Figures {
    /// The figures as a Markdown table and a few lines.
    pub fn table(&self) -> String {
        let deaths: Vec<&DeathRun> = self.deaths.iter().flatten().collect();
        let hours: Vec<&HourRun> = self.hours.iter().flatten().collect();
        let failover = |reset: bool| -> Vec<u64> {
            deaths.iter().filter(|d| d.reset == reset).flat_map(|d| d.failover_ms.clone()).collect()
        };
        let returns: Vec<u64> = deaths.iter().filter_map(|d| d.return_ms).collect();
        let doubles: Vec<u64> = deaths.iter().map(|d| d.double_ms).collect();
        let repairs: Vec<u64> = hours.iter().flat_map(|h| h.route_repair_ms.clone()).collect();
        let row = |name: &str, values: &[u64]| match percentiles(values) {
            Some((p50, p99, max)) => {
                format!("| {name} | {p50} | {p99} | {max} | {} |\n", values.len())
            }
            None => format!("| {name} | – | – | – | 0 |\n"),
        };
        let mut out = String::from(
            "| figure (simulated ms) | p50 | p99 | max | samples |\n|---|---|---|---|---|\n",
        );
        out += &row("failover, silent death (per camera)", &failover(false));
        out += &row("failover, reset death (per camera)", &failover(true));
        out += &row("return after restart (last camera)", &returns);
        out += &row("double recording per failover and return", &doubles);
        out += &row("route repair after a link cut", &repairs);
        let false_failovers: u64 = hours.iter().map(|h| h.false_failovers).sum();
        let hours_n = hours.len().max(1) as f64;
        out += &format!(
            "\ndeaths: {} seeds, {} settled ({} silent, {} reset), cameras never taken over: {}, not returned: {}, invariant violations: {}; {:.1} s wall\n",
            self.deaths.len(),
            deaths.len(),
            deaths.iter().filter(|d| !d.reset).count(),
            deaths.iter().filter(|d| d.reset).count(),
            deaths.iter().map(|d| d.never_taken).sum::<usize>(),
            deaths.iter().filter(|d| d.return_ms.is_none()).count(),
            deaths.iter().filter(|d| d.violation.is_some()).count(),
            self.deaths_wall_s,
        );
        out += &format!(
            "hours: {} seeds, {} settled; false failovers {} in {} simulated hours ({:.2} per hour); cuts {}, unrepaired {}, invariant violations: {}; {:.1} s wall\n",
            self.hours.len(),
            hours.len(),
            false_failovers,
            hours.len(),
            false_failovers as f64 / hours_n,
            repairs.len() + hours.iter().map(|h| h.unrepaired).sum::<usize>(),
            hours.iter().map(|h| h.unrepaired).sum::<usize>(),
            hours.iter().filter(|h| h.violation.is_some()).count(),
            self.hours_wall_s,
        );
        let slow: Vec<String> = self
            .deaths
            .iter()
            .enumerate()
            .filter_map(|(seed, d)| Some((seed, d.as_ref()?.failover_ms.iter().max()?)))
            .filter(|(_, ms)| **ms > FAILOVER_TARGET_MS)
            .map(|(seed, ms)| format!("{seed} ({ms} ms)"))
            .collect();
        out += &format!(
            "death seeds with a camera started later than {FAILOVER_TARGET_MS} ms: {} {:?}\n",
            slow.len(),
            &slow[..slow.len().min(20)]
        );
        let doubled: Vec<String> = self
            .deaths
            .iter()
            .enumerate()
            .filter_map(|(seed, d)| Some((seed, d.as_ref()?.double_ms)))
            .filter(|(_, ms)| *ms > DOUBLE_TARGET_MS)
            .map(|(seed, ms)| format!("{seed} ({ms} ms)"))
            .collect();
        out += &format!(
            "death seeds with more than {DOUBLE_TARGET_MS} ms of double recording: {} {:?}\n",
            doubled.len(),
            &doubled[..doubled.len().min(20)]
        );
        let falsely: Vec<String> = self
            .hours
            .iter()
            .enumerate()
            .filter_map(|(seed, h)| Some((seed, h.as_ref()?.false_failovers)))
            .filter(|(_, n)| *n > 0)
            .map(|(seed, n)| format!("{seed} ({n})"))
            .collect();
        out += &format!("hour seeds with false failovers: {falsely:?}\n");
        for (seed, d) in self.deaths.iter().enumerate() {
            if let Some(v) = d.as_ref().and_then(|d| d.violation.as_ref()) {
                out += &format!("death seed {seed}: {v}\n");
            }
        }
        for (seed, h) in self.hours.iter().enumerate() {
            if let Some(v) = h.as_ref().and_then(|h| h.violation.as_ref()) {
                out += &format!("hour seed {seed}: {v}\n");
            }
        }
        out
    }
}
