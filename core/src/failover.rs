//! Failover assignment: which server records each camera.
//!
//! A pure function of what a server knows, so every server of a connected part that holds the same
//! view computes the same answer without talking to the others:
//! 1. A camera whose preferred server is online is recorded there, even beyond that server's
//!    `max_cameras` (an administrator's choice is never overruled); it counts toward its load.
//! 2. Any other camera, and one held elsewhere (see [`CameraDemand::held_by`]), is
//!    *displaced*; it never goes to its own preferred server. Displaced Never-priority cameras
//!    are not recorded. The rest are served High, Medium, Low, ties by camera id; each stays
//!    with the taker holding it while that taker has room (load below `max_cameras`), else goes
//!    to the taker with room that has the highest [`rendezvous_score`] for it, or is left
//!    unrecorded when no taker has room. Staying with the holder means a camera moves only
//!    when it must: a server that sees the holder's span never starts it beside the holder.
//! 3. The order of the input does not matter.
//!
//! Rendezvous (highest-random-weight) hashing spreads displaced cameras evenly over the takers
//! and, while takers have room, moves the fewest cameras when a taker comes or goes: a camera only
//! changes taker if its own best taker changed.

use crate::ids::{CameraId, ServerId};
use crate::mix::{absorb_u128, GOLDEN_GAMMA};
use crate::resources::FailoverPriority;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// What the assignment needs to know of one server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServerState {
    /// Reachable now and its cameras are not failed over: it records its own cameras.
    pub online: bool,
    /// Online, failover enabled and up at least the minimum time: it may take others' cameras.
    /// Taken as given: the assignment does not check it against `online`.
    pub takes_failover: bool,
    /// Most cameras it records, its own included; limits only what it takes over.
    pub max_cameras: u32,
}

/// What the assignment needs to know of one camera that should be recorded (licensed, recording on).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct CameraDemand {
    /// The camera.
    pub camera: CameraId,
    /// The server that records it whenever that server is online.
    pub preferred: ServerId,
    /// How eagerly it moves when its preferred server is not online.
    pub priority: FailoverPriority,
    /// The taker that took it over and holds it until its preferred server has been back for
    /// the stability time: while that server is online, the camera is displaced although its
    /// preferred server is online too, and kept by that server while it takes failover and
    /// has room.
    pub held_by: Option<ServerId>,
}

/// Who records each camera; every camera asked about is in exactly one of the two.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct Assignment {
    /// The server that records each recorded camera.
    pub recorder: BTreeMap<CameraId, ServerId>,
    /// Cameras nobody records: Never-priority cameras away from home, or no taker had room.
    pub unrecorded: BTreeSet<CameraId>,
}

/// A server that may take displaced cameras, with the number it may still take.
struct Taker {
    server: ServerId,
    room: u64,
}

/// Decides which server records each camera (see the module doc for the rules).
///
/// O(cameras × takers): each displaced camera scores each taker that still has room once.
/// A camera listed more than once counts once, by its smallest entry, so the answer stays
/// independent of the input order even then.
pub fn assign(servers: &BTreeMap<ServerId, ServerState>, cameras: &[CameraDemand]) -> Assignment {
    let mut demands = cameras.to_vec();
    demands.sort_unstable();
    demands.dedup_by_key(|d| d.camera);

    let mut assignment = Assignment::default();
    let mut home_load: BTreeMap<ServerId, u64> = BTreeMap::new();
    let mut displaced = Vec::new();
    for demand in &demands {
        if held_by_online(servers, demand).is_none()
            && servers.get(&demand.preferred).is_some_and(|s| s.online)
        {
            assignment.recorder.insert(demand.camera, demand.preferred);
            *home_load.entry(demand.preferred).or_default() += 1;
        } else if demand.priority == FailoverPriority::Never {
            assignment.unrecorded.insert(demand.camera);
        } else {
            displaced.push(demand);
        }
    }
    displaced.sort_unstable_by_key(|d| (Reverse(d.priority), d.camera));

    let mut takers: Vec<Taker> = servers
        .iter()
        .filter(|(_, state)| state.takes_failover)
        .map(|(&server, state)| {
            let home = home_load.get(&server).copied().unwrap_or(0);
            Taker { server, room: u64::from(state.max_cameras).saturating_sub(home) }
        })
        .filter(|taker| taker.room > 0)
        .collect();

    for demand in displaced {
        let camera_state = camera_hash_state(demand.camera);
        // A displaced camera never goes to its own preferred server.
        let holder =
            held_by_online(servers, demand).and_then(|h| takers.iter().position(|t| t.server == h));
        // Ties in score (astronomically rare) go to the smaller server id.
        let best = holder.or_else(|| {
            takers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.server != demand.preferred)
                .max_by_key(|(_, t)| (score_from(camera_state, t.server), Reverse(t.server)))
                .map(|(index, _)| index)
        });
        let Some(index) = best else {
            assignment.unrecorded.insert(demand.camera);
            continue;
        };
        let taker = &mut takers[index];
        debug_assert!(taker.room > 0, "a full taker was still offered cameras");
        taker.room -= 1;
        assignment.recorder.insert(demand.camera, taker.server);
        if taker.room == 0 {
            // Order of `takers` does not matter: the choice above breaks every tie by server id.
            takers.swap_remove(index);
        }
    }

    debug_assert_eq!(assignment.recorder.len() + assignment.unrecorded.len(), demands.len());
    debug_assert!(assignment.unrecorded.iter().all(|c| !assignment.recorder.contains_key(c)));
    assignment
}

/// The server holding `demand`'s camera, if it is online and not the camera's preferred
/// server. Such a hold counts even when the holder does not take failover in this view (a
/// server that has just started has not yet heard the holder's readiness): the preferred
/// server must not start the camera beside its holder.
fn held_by_online(
    servers: &BTreeMap<ServerId, ServerState>,
    demand: &CameraDemand,
) -> Option<ServerId> {
    demand.held_by.filter(|h| *h != demand.preferred && servers.get(h).is_some_and(|s| s.online))
}

/// How much `server` wants `camera` when it is displaced: the taker with the highest score wins.
///
/// splitmix64 rounds over the 64-bit halves of both ids: well mixed, the same on every platform
/// and release (unlike `std::hash`), so all servers agree.
pub fn rendezvous_score(camera: CameraId, server: ServerId) -> u64 {
    score_from(camera_hash_state(camera), server)
}

/// The hash state after absorbing `camera`, shared by all the servers it is scored against.
fn camera_hash_state(camera: CameraId) -> u64 {
    absorb_u128(GOLDEN_GAMMA, camera.0)
}

/// Finishes a score from a camera's hash state.
fn score_from(camera_state: u64, server: ServerId) -> u64 {
    absorb_u128(camera_state, server.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;
    use FailoverPriority::{High, Low, Medium, Never};

    const DEAD: ServerId = ServerId(0xdead);

    fn state(online: bool, takes_failover: bool, max_cameras: u32) -> ServerState {
        ServerState { online, takes_failover: online && takes_failover, max_cameras }
    }

    fn taker(max_cameras: u32) -> ServerState {
        state(true, true, max_cameras)
    }

    fn offline() -> ServerState {
        state(false, false, 0)
    }

    fn servers(list: &[(u128, ServerState)]) -> BTreeMap<ServerId, ServerState> {
        list.iter().map(|&(id, s)| (ServerId(id), s)).collect()
    }

    fn demand(camera: u128, preferred: u128, priority: FailoverPriority) -> CameraDemand {
        CameraDemand {
            camera: CameraId(camera),
            preferred: ServerId(preferred),
            priority,
            held_by: None,
        }
    }

    fn priority_from(n: u8) -> FailoverPriority {
        match n % 4 {
            0 => FailoverPriority::Never,
            1 => FailoverPriority::Low,
            2 => FailoverPriority::Medium,
            _ => FailoverPriority::High,
        }
    }

    /// The taker with the highest score for `camera` among `candidates`.
    fn best_of(camera: u128, candidates: &[u128]) -> ServerId {
        let best =
            candidates.iter().max_by_key(|&&s| rendezvous_score(CameraId(camera), ServerId(s)));
        ServerId(*best.unwrap())
    }

    #[test]
    fn camera_stays_on_its_online_preferred_server() {
        let view = servers(&[(1, state(true, false, 10)), (2, taker(10))]);
        let a = assign(&view, &[demand(7, 1, Medium)]);
        assert_eq!(a.recorder, BTreeMap::from([(CameraId(7), ServerId(1))]));
        assert!(a.unrecorded.is_empty());
    }

    #[test]
    fn home_cameras_stay_home_beyond_max_cameras_and_leave_no_room_to_take() {
        let view = servers(&[(1, taker(1)), (2, offline())]);
        let cameras =
            [demand(1, 1, Low), demand(2, 1, High), demand(3, 1, Never), demand(4, 2, High)];
        let a = assign(&view, &cameras);
        for home in 1..=3 {
            assert_eq!(a.recorder[&CameraId(home)], ServerId(1));
        }
        assert_eq!(a.unrecorded, BTreeSet::from([CameraId(4)]));
    }

    #[test]
    fn camera_of_an_offline_server_goes_to_the_taker_with_the_highest_score() {
        let view = servers(&[(1, taker(10)), (2, taker(10)), (3, taker(10)), (4, offline())]);
        let cameras: Vec<CameraDemand> = (100..120).map(|c| demand(c, 4, Medium)).collect();
        let a = assign(&view, &cameras);
        for c in 100..120 {
            assert_eq!(a.recorder[&CameraId(c)], best_of(c, &[1, 2, 3]), "camera {c}");
        }
    }

    #[test]
    fn camera_preferring_an_unknown_server_is_displaced() {
        let view = servers(&[(1, taker(10))]);
        let a = assign(&view, &[demand(7, 99, Low)]);
        assert_eq!(a.recorder[&CameraId(7)], ServerId(1));
    }

    #[test]
    fn never_camera_of_an_offline_server_is_unrecorded_even_with_room_elsewhere() {
        let view = servers(&[(1, taker(10)), (2, offline())]);
        let a = assign(&view, &[demand(7, 2, Never)]);
        assert!(a.recorder.is_empty());
        assert_eq!(a.unrecorded, BTreeSet::from([CameraId(7)]));
    }

    #[test]
    fn online_server_without_failover_takes_nothing() {
        let view = servers(&[(1, state(true, false, 10)), (2, offline())]);
        let a = assign(&view, &[demand(7, 2, High)]);
        assert_eq!(a.unrecorded, BTreeSet::from([CameraId(7)]));
    }

    #[test]
    fn high_priority_cameras_are_taken_before_low_when_capacity_is_short() {
        let view = servers(&[(1, taker(2)), (2, offline())]);
        let cameras =
            [demand(1, 2, Low), demand(2, 2, High), demand(3, 2, Medium), demand(4, 2, Low)];
        let a = assign(&view, &cameras);
        assert_eq!(a.recorder.keys().copied().collect::<Vec<_>>(), [CameraId(2), CameraId(3)]);
        assert_eq!(a.unrecorded, BTreeSet::from([CameraId(1), CameraId(4)]));
    }

    #[test]
    fn equal_priority_cameras_are_taken_by_id_when_capacity_is_short() {
        let view = servers(&[(1, taker(3)), (2, offline())]);
        let cameras: Vec<CameraDemand> = (1..=5).rev().map(|c| demand(c, 2, Medium)).collect();
        let a = assign(&view, &cameras);
        assert_eq!(a.recorder.keys().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn full_taker_passes_cameras_to_the_next_best() {
        let view = servers(&[(1, taker(1)), (2, taker(100)), (3, offline())]);
        let cameras: Vec<CameraDemand> = (10..30).map(|c| demand(c, 3, Medium)).collect();
        let a = assign(&view, &cameras);
        let on_1 = a.recorder.values().filter(|&&s| s == ServerId(1)).count();
        assert_eq!(on_1, 1);
        assert_eq!(a.recorder.len(), 20);
    }

    #[test]
    fn a_held_camera_stays_with_its_holder_not_the_best_taker() {
        let view = servers(&[(1, taker(10)), (2, taker(10)), (3, taker(10)), (4, offline())]);
        for c in 100..120 {
            let best = best_of(c, &[1, 2, 3]);
            let holder = [1, 2, 3].into_iter().map(ServerId).find(|s| *s != best).unwrap();
            let held = CameraDemand { held_by: Some(holder), ..demand(c, 4, Medium) };
            assert_eq!(assign(&view, &[held]).recorder[&CameraId(c)], holder, "camera {c}");
        }
        // A holder that does not take failover (here) passes the camera to the best taker,
        // never back to its online preferred server while the hold lasts.
        let view = servers(&[(1, taker(10)), (2, state(true, false, 10)), (4, taker(10))]);
        let held = CameraDemand { held_by: Some(ServerId(2)), ..demand(7, 4, Medium) };
        assert_eq!(assign(&view, &[held]).recorder[&CameraId(7)], ServerId(1));
        // A hold by a server that is not online ends.
        let view = servers(&[(1, taker(10)), (2, offline()), (4, taker(10))]);
        assert_eq!(assign(&view, &[held]).recorder[&CameraId(7)], ServerId(4));
    }

    #[test]
    fn camera_listed_twice_counts_once() {
        let view = servers(&[(1, taker(1)), (2, offline())]);
        let a = assign(&view, &[demand(7, 2, Low), demand(7, 2, Low), demand(8, 2, Low)]);
        assert_eq!(a.recorder.len(), 1);
        assert_eq!(a.unrecorded.len(), 1);
    }

    #[test]
    fn rendezvous_score_is_the_same_on_every_platform_and_release() {
        // Servers of different builds must agree. These values come from an independent
        // implementation of the same splitmix64 rounds (Python, arbitrary-precision ints masked
        // to 64 bits), so they pin the definition, not just this code's output.
        assert_eq!(rendezvous_score(CameraId(0), ServerId(0)), 14_355_775_681_544_232_323);
        assert_eq!(rendezvous_score(CameraId(1), ServerId(2)), 15_240_778_175_017_792_718);
        assert_eq!(
            rendezvous_score(CameraId(u128::MAX), ServerId(1 << 64)),
            11_398_443_668_726_298_004
        );
    }

    /// A random view: small id ranges make shared preferred servers, unknown servers (10, 11),
    /// full takers and capacity shortages common.
    fn views() -> impl Strategy<Value = (BTreeMap<ServerId, ServerState>, Vec<CameraDemand>)> {
        let servers =
            prop::collection::btree_map(0u128..10, (any::<bool>(), any::<bool>(), 0u32..12), 0..8)
                .prop_map(|m| {
                    m.into_iter()
                        .map(|(id, (online, takes, max))| (ServerId(id), state(online, takes, max)))
                        .collect::<BTreeMap<_, _>>()
                });
        // About one camera in four is held by a taker (any server, perhaps not one that takes).
        let holder = prop::option::weighted(0.25, 0u128..12);
        let cameras =
            prop::collection::btree_map(0u128..200, (0u128..12, any::<u8>(), holder), 0..60)
                .prop_map(|m| {
                    m.into_iter()
                        .map(|(c, (preferred, p, held_by))| CameraDemand {
                            held_by: held_by.map(ServerId),
                            ..demand(c, preferred, priority_from(p))
                        })
                        .collect::<Vec<_>>()
                });
        (servers, cameras)
    }

    fn is_home(view: &BTreeMap<ServerId, ServerState>, d: &CameraDemand) -> bool {
        held_by_online(view, d).is_none() && view.get(&d.preferred).is_some_and(|s| s.online)
    }

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            rng_seed: RngSeed::Fixed(0x8_fa11_0fe5),
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn same_view_gives_same_assignment((view, cameras) in views()) {
            prop_assert_eq!(assign(&view, &cameras), assign(&view, &cameras));
        }

        #[test]
        fn assignment_ignores_the_order_of_cameras(
            ((view, cameras), shuffled) in views()
                .prop_flat_map(|(v, c)| (Just((v, c.clone())), Just(c).prop_shuffle())),
        ) {
            prop_assert_eq!(assign(&view, &cameras), assign(&view, &shuffled));
        }

        #[test]
        fn every_camera_is_recorded_once_or_unrecorded((view, cameras) in views()) {
            let a = assign(&view, &cameras);
            prop_assert_eq!(a.recorder.len() + a.unrecorded.len(), cameras.len());
            for d in &cameras {
                prop_assert!(a.recorder.contains_key(&d.camera) != a.unrecorded.contains(&d.camera));
            }
        }

        #[test]
        fn home_cameras_stay_home((view, cameras) in views()) {
            let a = assign(&view, &cameras);
            for d in cameras.iter().filter(|d| is_home(&view, d)) {
                prop_assert_eq!(a.recorder.get(&d.camera), Some(&d.preferred));
            }
        }

        #[test]
        fn a_held_camera_stays_with_its_holder_while_it_takes_and_has_room(
            (mut view, cameras) in views(),
        ) {
            for s in view.values_mut() {
                s.max_cameras = 1_000;
            }
            let a = assign(&view, &cameras);
            for d in &cameras {
                let Some(holder) = d.held_by else { continue };
                let takes = view.get(&holder).is_some_and(|s| s.takes_failover);
                if takes && holder != d.preferred && d.priority != Never {
                    prop_assert_eq!(a.recorder.get(&d.camera), Some(&holder), "{:?}", d);
                }
            }
        }

        #[test]
        fn takers_never_exceed_max_cameras((view, cameras) in views()) {
            let a = assign(&view, &cameras);
            for (&server, s) in &view {
                let home = cameras.iter().filter(|d| d.preferred == server && is_home(&view, d)).count();
                let recorded = a.recorder.values().filter(|&&r| r == server).count();
                let taken = recorded - home;
                prop_assert!(taken <= (s.max_cameras as usize).saturating_sub(home), "{server:?}: home {home}, taken {taken}, {s:?}");
                prop_assert!(taken == 0 || s.takes_failover);
            }
        }

        #[test]
        fn never_cameras_never_move((view, cameras) in views()) {
            let a = assign(&view, &cameras);
            for d in cameras.iter().filter(|d| d.priority == Never) {
                if is_home(&view, d) {
                    prop_assert_eq!(a.recorder.get(&d.camera), Some(&d.preferred));
                } else {
                    prop_assert!(a.unrecorded.contains(&d.camera));
                }
            }
        }

        #[test]
        fn no_displaced_camera_is_left_while_one_served_later_is_taken((view, cameras) in views()) {
            // A held camera whose only taker with room is its own preferred server is left.
            let cameras: Vec<_> = cameras.into_iter().filter(|d| d.held_by.is_none()).collect();
            let a = assign(&view, &cameras);
            let displaced = || cameras.iter().filter(|d| !is_home(&view, d) && d.priority != Never);
            let served_order = |d: &CameraDemand| (Reverse(d.priority), d.camera);
            for left in displaced().filter(|d| a.unrecorded.contains(&d.camera)) {
                for taken in displaced().filter(|d| a.recorder.contains_key(&d.camera)) {
                    prop_assert!(served_order(taken) < served_order(left), "left {left:?} but took {taken:?}");
                }
            }
        }

        #[test]
        fn every_displaced_camera_is_recorded_when_spare_capacity_suffices((view, cameras) in views()) {
            // A held camera cannot use its own preferred server's room.
            let cameras: Vec<_> = cameras.into_iter().filter(|d| d.held_by.is_none()).collect();
            let a = assign(&view, &cameras);
            let spare: usize = view
                .iter()
                .filter(|(_, s)| s.takes_failover)
                .map(|(&server, s)| {
                    let home = cameras.iter().filter(|d| d.preferred == server && is_home(&view, d)).count();
                    (s.max_cameras as usize).saturating_sub(home)
                })
                .sum();
            let displaced: Vec<&CameraDemand> =
                cameras.iter().filter(|d| !is_home(&view, d) && d.priority != Never).collect();
            if spare >= displaced.len() {
                for d in displaced {
                    prop_assert!(a.recorder.contains_key(&d.camera), "{d:?} left with spare {spare}");
                }
            }
        }

        #[test]
        fn adding_a_taker_with_room_moves_cameras_only_onto_it(
            (mut view, cameras) in views(),
            newcomer in 100u128..110,
        ) {
            for s in view.values_mut() {
                s.max_cameras = 1_000;
            }
            let before = assign(&view, &cameras);
            view.insert(ServerId(newcomer), taker(1_000));
            let after = assign(&view, &cameras);
            for d in &cameras {
                let now = after.recorder.get(&d.camera);
                prop_assert!(now == before.recorder.get(&d.camera) || now == Some(&ServerId(newcomer)), "{d:?} moved");
            }
        }
    }

    proptest! {
        #![proptest_config(config(32))]

        #[test]
        fn displaced_cameras_spread_evenly_over_equal_takers(
            takers in prop::collection::btree_set(any::<u128>(), 10),
            cameras in prop::collection::btree_set(any::<u128>(), 1_000),
        ) {
            prop_assume!(!takers.contains(&DEAD.0));
            let mut view: BTreeMap<ServerId, ServerState> = takers.iter().map(|&s| (ServerId(s), taker(1_000))).collect();
            view.insert(DEAD, offline());
            let demands: Vec<CameraDemand> = cameras.iter().map(|&c| demand(c, DEAD.0, Medium)).collect();
            let a = assign(&view, &demands);
            for &s in &takers {
                let load = a.recorder.values().filter(|&&r| r == ServerId(s)).count();
                prop_assert!((60..=140).contains(&load), "taker {s:x} got {load} of 1000");
            }
        }
    }
}
