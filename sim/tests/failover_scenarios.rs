//! Failover in the discrete-event simulator: who records each camera when servers die, come
//! back, bounce or lose links.
//!
//! Every scenario steps simulated time by [`STEP_MS`] and checks, after each step, the node
//! invariants ([`World::check`]), the single-recorder rule inside a connected part
//! ([`World::check_single_recorder`]) and every taker's `max_cameras`.

use hive_core::ids::{CameraId, ServerId};
use hive_core::node::{Command, Timing};
use hive_core::resources::{FailoverPriority, Key, Value};
use hive_sim::des::{HostId, ServerSpec, World, WorldConfig};
use hive_sim::fixtures::camera_with;
use std::collections::{BTreeMap, BTreeSet};
use FailoverPriority::{High, Low, Medium, Never};

/// Simulated time between two checks.
const STEP_MS: u64 = 100;

/// Longest a failover-eligible camera may stay unrecorded after its server's death:
/// hold time (3 s) plus detection.
const FAILOVER_MS_MAX: u64 = 5_000;

/// How a server dies.
#[derive(Clone, Copy, Debug)]
enum Death {
    /// The machine is gone: nothing arrives from it ([`World::crash`]).
    Silent,
    /// The process is killed: its links are reset ([`World::kill_with_reset`]).
    Reset,
}

fn kill(w: &mut World, host: HostId, death: Death) {
    match death {
        Death::Silent => w.crash(host),
        Death::Reset => w.kill_with_reset(host),
    }
}

/// A world under watch: who each camera's recorders were over time.
struct Watched {
    w: World,
    /// Preferred host of every camera put.
    preferred: BTreeMap<CameraId, HostId>,
    /// Priority of every camera put.
    priority: BTreeMap<CameraId, FailoverPriority>,
    /// Per camera, the successive non-empty sets of hosts recording it (a gap with no
    /// recorder is not a change of recorder).
    history: BTreeMap<CameraId, Vec<Vec<HostId>>>,
}

impl Watched {
    /// `n` servers of one system, formed and converged.
    fn formed(seed: u64, n: usize) -> Watched {
        let mut w = World::new(seed, WorldConfig::default());
        for _ in 0..n {
            w.add_server(ServerSpec::new("lab", "s3cret"));
        }
        w.run_until_pred(100, 30_000, |w| w.converged()).expect("formed");
        Watched {
            w,
            preferred: BTreeMap::new(),
            priority: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    fn sid(&self, h: HostId) -> ServerId {
        self.w.node(h).expect("up").identity().server
    }

    /// Adds camera `id` preferring `host`, through `host`.
    fn camera(&mut self, id: u128, host: HostId, priority: FailoverPriority) {
        let cmd = camera_with(id, self.sid(host), priority);
        self.w.command(host, cmd);
        self.preferred.insert(CameraId(id), host);
        self.priority.insert(CameraId(id), priority);
    }

    /// Sets `host`'s `max_cameras` in its replicated server record, as the API does.
    fn set_max_cameras(&mut self, host: HostId, max_cameras: u32) {
        let key = Key::Server(self.sid(host));
        let node = self.w.node(host).expect("up");
        let Some(Value::Server(mut record)) = node.store().get(&key).cloned() else {
            panic!("host {host} has no server record");
        };
        record.max_cameras = max_cameras;
        self.w.command(host, Command::Put { key, value: Value::Server(record) });
    }

    /// Runs `ms` of simulated time, checking after every step.
    fn run(&mut self, ms: u64) {
        let end = self.w.now_ms() + ms;
        while self.w.now_ms() < end {
            self.step();
        }
    }

    /// Runs until `done` holds or `limit_ms` passed, checking after every step; the simulated
    /// time it took, or `None` on timeout.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Watched) -> bool) -> Option<u64> {
        let start = self.w.now_ms();
        while self.w.now_ms() < start + limit_ms {
            if done(self) {
                return Some(self.w.now_ms() - start);
            }
            self.step();
        }
        done(self).then(|| self.w.now_ms() - start)
    }

    fn step(&mut self) {
        self.w.run_for(STEP_MS);
        let at = self.w.now_ms();
        self.w.check().unwrap_or_else(|v| panic!("@{at}: {v}"));
        self.w.check_single_recorder().unwrap_or_else(|v| panic!("@{at}: {v}"));
        self.check_capacity();
        for (camera, hosts) in self.w.recorders() {
            let seen = self.history.entry(camera).or_default();
            if seen.last() != Some(&hosts) {
                seen.push(hosts);
            }
        }
    }

    /// A server that took cameras over records no more than its `max_cameras`.
    fn check_capacity(&self) {
        for h in (0..self.w.len()).filter(|h| self.w.is_up(*h)) {
            let recording = self.w.recording(h);
            if recording.keys().all(|c| self.preferred.get(c) == Some(&h)) {
                continue;
            }
            let node = self.w.node(h).expect("up");
            let Some(Value::Server(record)) = node.store().get(&Key::Server(self.sid(h))) else {
                panic!("host {h} has no server record");
            };
            assert!(
                recording.len() <= record.max_cameras as usize,
                "@{}: host {h} records {} cameras, max {}",
                self.w.now_ms(),
                recording.len(),
                record.max_cameras
            );
        }
    }

    /// Hosts recording each camera now.
    fn recorders(&self) -> BTreeMap<CameraId, Vec<HostId>> {
        self.w.recorders()
    }

    /// Cameras of `host` with a priority other than Never.
    fn eligible_of(&self, host: HostId) -> Vec<CameraId> {
        self.cameras_of(host).filter(|c| self.priority[c] != Never).collect()
    }

    fn cameras_of(&self, host: HostId) -> impl Iterator<Item = CameraId> + '_ {
        self.preferred.iter().filter(move |(_, h)| **h == host).map(|(c, _)| *c)
    }

    /// Every camera recorded by its preferred host alone.
    fn all_home(&self) -> bool {
        let r = self.recorders();
        self.preferred.iter().all(|(c, h)| r.get(c) == Some(&vec![*h]))
    }

    /// Number of times a camera's recorders changed since the watch began.
    fn changes(&self, camera: CameraId) -> usize {
        self.history.get(&camera).map_or(0, |h| h.len().saturating_sub(1))
    }
}

/// One recorder of 64 cameras of every priority, three takers whose room (64 in all) holds
/// the 56 that may move.
fn recorder_of_64(seed: u64) -> Watched {
    let mut s = Watched::formed(seed, 4);
    for (taker, max_cameras) in [(1, 22), (2, 20), (3, 22)] {
        s.set_max_cameras(taker, max_cameras);
    }
    for i in 0..64u128 {
        let priority = match i % 8 {
            0 => Never,
            1 | 2 => High,
            3..=5 => Medium,
            _ => Low,
        };
        s.camera(1_000 + i, 0, priority);
    }
    for i in 0..4 {
        s.camera(2_000 + i, 1, Medium);
    }
    s.run(20_000);
    assert!(s.all_home(), "{:?}", s.recorders());
    s
}

/// A recorder of 64 cameras dies: its 56 eligible cameras start on takers within the bound,
/// Never ones stay unrecorded, capacities hold; back, it gets them after the stability time
/// and the takers stop them.
fn recorder_of_64_dies_and_returns(seed: u64, death: Death) {
    let mut s = recorder_of_64(seed);
    let eligible = s.eligible_of(0);
    assert_eq!(eligible.len(), 56);
    let died_ms = s.w.now_ms();
    kill(&mut s.w, 0, death);
    let took = s.run_until(10_000, |s| {
        let r = s.recorders();
        eligible.iter().all(|c| r.get(c).is_some_and(|v| v.len() == 1))
    });
    let took = took.unwrap_or_else(|| panic!("{death:?}: not all moved: {:?}", s.recorders()));
    let r = s.recorders();
    let slowest_ms = eligible
        .iter()
        .map(|c| s.w.recording(r[c][0])[c] - died_ms)
        .max()
        .expect("eligible cameras");
    println!("{death:?} death: 56 cameras moved, slowest {slowest_ms} ms (seen after {took} ms)");
    assert!(
        slowest_ms <= FAILOVER_MS_MAX,
        "{death:?}: slowest camera started after {slowest_ms} ms"
    );
    s.run(10_000);
    let r = s.recorders();
    for c in s.cameras_of(0).collect::<Vec<_>>() {
        match s.priority[&c] {
            Never => assert!(!r.contains_key(&c), "Never camera {c:?} recorded by {:?}", r[&c]),
            _ => assert!(r[&c].len() == 1 && r[&c][0] != 0, "{c:?}: {:?}", r.get(&c)),
        }
    }

    let restarted_ms = s.w.now_ms();
    s.w.restart(0);
    let stability_ms = Timing::default().failover_stability_ms;
    s.run(stability_ms);
    let r = s.recorders();
    assert!(
        eligible.iter().all(|c| r[c] != vec![0]),
        "a camera returned before the stability time"
    );
    let back = s.run_until(15_000, Watched::all_home);
    back.unwrap_or_else(|| panic!("{death:?}: cameras did not return: {:?}", s.recorders()));
    let returned_ms = eligible.iter().map(|c| s.w.recording(0)[c]).min().expect("eligible");
    println!("{death:?}: first camera back {} ms after the restart", returned_ms - restarted_ms);
    assert!(returned_ms >= restarted_ms + stability_ms);
    for taker in 1..4 {
        assert!(
            s.w.recording(taker).keys().all(|c| s.preferred[c] == taker),
            "taker {taker} kept cameras"
        );
    }
    for c in eligible {
        assert_eq!(s.changes(c), 2, "{c:?}: {:?}", s.history[&c]);
    }
}

#[test]
fn silently_dead_recorders_cameras_move_within_bound_and_return_after_stability() {
    recorder_of_64_dies_and_returns(7, Death::Silent);
}

#[test]
fn killed_recorders_cameras_move_within_bound_and_return_after_stability() {
    recorder_of_64_dies_and_returns(8, Death::Reset);
}

/// `n` servers with eight Medium cameras each, all recorded at home.
fn servers_with_eight_cameras_each(seed: u64, n: usize) -> Watched {
    let mut s = Watched::formed(seed, n);
    for h in 0..n {
        for i in 0..8 {
            s.camera((h as u128 + 1) * 100 + i, h, Medium);
        }
    }
    s.run(20_000);
    assert!(s.all_home(), "{:?}", s.recorders());
    s
}

#[test]
fn one_cut_link_between_servers_that_reach_each_other_moves_no_camera() {
    let mut s = servers_with_eight_cameras_each(11, 3);
    s.w.partition(0, 1);
    s.run(60_000);
    let (a, b) = (s.sid(0), s.sid(1));
    let route = s.w.node(0).expect("up").route_to(b);
    assert_eq!(route.map(|r| r.hops), Some(2), "0 reaches 1 through 2: {route:?}");
    assert!(s.w.node(1).expect("up").route_to(a).is_some());
    s.w.repair(0, 1);
    // Back within an idle beacon period: the next cut must not find a server hanging by one link.
    let relinked =
        s.run_until(30_000, |s| s.w.node(0).expect("up").linked_peers().any(|(p, _)| p == b));
    relinked.expect("0 and 1 linked again after the repair");
    s.run(30_000);
    assert!(s.all_home());
    assert!(s.preferred.keys().all(|c| s.changes(*c) == 0), "{:?}", s.history);
}

#[test]
fn an_hour_of_one_percent_link_loss_moves_no_camera() {
    let mut s = servers_with_eight_cameras_each(12, 5);
    s.w.set_link_loss(0.01);
    s.run(3_600_000);
    assert!(s.all_home());
    let moved: Vec<_> = s.preferred.keys().filter(|c| s.changes(**c) > 0).collect();
    assert!(moved.is_empty(), "false failovers: {moved:?} {:?}", s.history);
}

#[test]
fn minority_and_majority_each_record_what_they_reach_and_agree_after_healing() {
    let mut s = servers_with_eight_cameras_each(13, 5);
    let minority = [0, 1];
    let side_of = |h: HostId| minority.contains(&h);
    s.w.partition_sides(&minority);
    // Each side records every camera once, on one of its own servers.
    let each_side_records_all = |s: &Watched| {
        let r = s.recorders();
        s.preferred.keys().all(|c| {
            let hosts = r.get(c).map_or(&[][..], |v| &v[..]);
            let minority_count = hosts.iter().filter(|h| side_of(**h)).count();
            minority_count == 1 && hosts.len() - minority_count == 1
        })
    };
    let took = s.run_until(10_000, each_side_records_all);
    let took = took.unwrap_or_else(|| panic!("sides did not take over: {:?}", s.recorders()));
    println!("both sides record every camera after {took} ms");
    assert!(took <= FAILOVER_MS_MAX, "took {took} ms");
    s.run(30_000);
    assert!(each_side_records_all(&s), "{:?}", s.recorders());
    s.w.heal();
    // The single-recorder check of every step bounds the double recording after healing.
    let back = s.run_until(60_000, Watched::all_home);
    back.unwrap_or_else(|| panic!("not home after healing: {:?}", s.recorders()));
}

#[test]
fn never_cameras_stay_unrecorded_while_their_server_is_dead_and_return_with_it() {
    let mut s = Watched::formed(14, 3);
    for i in 0..4 {
        s.camera(100 + i, 0, Never);
        s.camera(200 + i, 0, Medium);
    }
    s.run(20_000);
    assert!(s.all_home());
    s.w.crash(0);
    let never: Vec<_> = s.cameras_of(0).filter(|c| s.priority[c] == Never).collect();
    for _ in 0..200 {
        s.run(STEP_MS);
        let r = s.recorders();
        assert!(never.iter().all(|c| !r.contains_key(c)), "a Never camera moved: {r:?}");
    }
    assert!(s.eligible_of(0).iter().all(|c| s.recorders().contains_key(c)));
    s.w.restart(0);
    let took = s.run_until(10_000, |s| {
        let r = s.recorders();
        never.iter().all(|c| r.get(c) == Some(&vec![0]))
    });
    let took = took.unwrap_or_else(|| panic!("Never cameras not back: {:?}", s.recorders()));
    println!("Never cameras recorded again {took} ms after the restart");
    s.run_until(45_000, Watched::all_home).expect("all home");
}

#[test]
fn takers_short_of_room_record_every_high_camera_before_any_low_one() {
    let mut s = Watched::formed(15, 3);
    s.set_max_cameras(1, 5);
    s.set_max_cameras(2, 5);
    // Low cameras have the smaller ids, so an order by id alone would pick them first.
    for i in 0..8 {
        s.camera(100 + i, 0, Low);
        s.camera(200 + i, 0, High);
    }
    s.run(20_000);
    assert!(s.all_home());
    s.w.crash(0);
    let high: Vec<_> = s.cameras_of(0).filter(|c| s.priority[c] == High).collect();
    let low: Vec<_> = s.cameras_of(0).filter(|c| s.priority[c] == Low).collect();
    for _ in 0..300 {
        s.run(STEP_MS);
        let r = s.recorders();
        if low.iter().any(|c| r.contains_key(c)) {
            assert!(high.iter().all(|c| r.contains_key(c)), "Low recorded before High: {r:?}");
        }
    }
    let r = s.recorders();
    assert!(high.iter().all(|c| r.contains_key(c)), "{r:?}");
    assert_eq!(low.iter().filter(|c| r.contains_key(c)).count(), 2, "{r:?}");
}

#[test]
fn a_bouncing_server_gets_its_cameras_back_once_it_stays_up() {
    let mut s = Watched::formed(16, 3);
    for i in 0..12 {
        s.camera(100 + i, 0, Medium);
    }
    s.run(20_000);
    assert!(s.all_home());
    let mut restarted_ms = 0;
    for bounce in 0..8 {
        let death = if bounce % 2 == 0 { Death::Silent } else { Death::Reset };
        kill(&mut s.w, 0, death);
        s.run(4_000);
        s.w.restart(0);
        restarted_ms = s.w.now_ms();
        s.run(4_000);
    }
    let stability_ms = Timing::default().failover_stability_ms;
    s.run_until(stability_ms + 15_000, Watched::all_home).expect("cameras back");
    let cameras: BTreeSet<_> = s.cameras_of(0).collect();
    let moved = cameras.iter().filter(|c| s.changes(**c) == 2).count();
    println!("{moved} of {} cameras went away once and came back once", cameras.len());
    assert!(moved > 0, "the bounces moved no camera: {:?}", s.history);
    for c in &cameras {
        assert!(s.changes(*c) <= 2, "{c:?} flapped: {:?}", s.history[c]);
        assert!(s.w.recording(0)[c] >= restarted_ms + stability_ms, "{c:?} back too early");
    }
}

#[test]
fn in_a_sparse_mesh_a_silent_death_moves_cameras_within_the_bound() {
    // Twelve servers link sparsely (about three links each): the dead server's neighbours
    // notice its silence, and everyone else must date its death by their word, not by when
    // its last route went through a loop.
    for seed in 20..24 {
        let mut s = servers_with_eight_cameras_each(seed, 12);
        let degree = s.w.node(0).expect("up").linked_peers().count();
        assert!(degree < 11, "seed {seed}: the mesh is sparse ({degree} links)");
        let victim = (seed % 12) as HostId;
        let eligible = s.eligible_of(victim);
        kill(&mut s.w, victim, Death::Silent);
        let moved = s.run_until(2 * FAILOVER_MS_MAX, |s| {
            let r = s.recorders();
            eligible.iter().all(|c| r.get(c).is_some_and(|v| !v.contains(&victim)))
        });
        let moved = moved.unwrap_or_else(|| panic!("seed {seed}: cameras not taken over"));
        println!("seed {seed}: cameras of host {victim} moved in {moved} ms");
        assert!(moved <= FAILOVER_MS_MAX, "seed {seed}: took {moved} ms");
    }
}
