//! Password guessing against a real server: bursts of wrong logins stay within a memory bound,
//! are counted before any password is checked (per address and per user name, even in
//! parallel and from rotating addresses), cost one key derivation whether the user exists or
//! not, and never keep the owner out for longer than the back-off cap.

use hive_tests::*;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Failed logins an address or a user gets before waiting (the server's `FAILURES_MAX`).
const FAILURES_MAX: usize = 5;
/// The longest a user's back-off grows (the server's `BACKOFF_MAX`), in seconds.
const BACKOFF_MAX_S: u64 = 30;
/// Peak resident memory allowed through a burst.
const PEAK_RSS_KIB_MAX: u64 = 200 * 1024;
/// Resident memory allowed once a burst is over.
const RSS_AFTER_KIB_MAX: u64 = 120 * 1024;

fn derivations(h: &Hive) -> u64 {
    let metrics = metrics_at(h.http).expect("metrics answer");
    metrics["hive_password_derivations_total"] as u64
}

/// 127.0.0.`n`.
fn loopback(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(n).expect("a loopback host number"))
}

/// A different wrong password for each guess (identical requests in flight share one check).
fn guess(i: usize) -> String {
    format!("wrong-password-{i}")
}

/// Runs `n` logins at once, the `i`-th as `user(i)` with `password(i)` from `from(i)`; their
/// answers.
fn parallel_logins(
    h: &Hive,
    n: usize,
    from: impl Fn(usize) -> Ipv4Addr,
    user: impl Fn(usize) -> String,
    password: impl Fn(usize) -> String,
) -> Vec<RawResponse> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, from, user, password) = (&barrier, from(i), user(i), password(i));
                s.spawn(move || {
                    barrier.wait();
                    get_as_from(h.http, from, "/api/system", &user, &password)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("login thread")).collect()
    })
}

fn count(answers: &[RawResponse], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

#[test]
fn two_hundred_fifty_parallel_wrong_logins_stay_under_200_mb() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let pid = h.pid().expect("running");
    let before = derivations(&h);
    // Distinct addresses and names: no limit stops any of them, so every one derives a key.
    let answers = parallel_logins(&h, 250, |i| loopback(2 + i), |i| format!("guess-{i}"), guess);
    assert_eq!(count(&answers, 401), 250, "{:?}", answers.iter().find(|a| a.status != 401));
    assert_eq!(derivations(&h) - before, 250, "each login derived one key");
    let peak_kib = proc_status_kib(pid, "VmHWM");
    assert!(peak_kib < PEAK_RSS_KIB_MAX, "peak RSS {peak_kib} KiB through the burst");
    let after_kib = proc_status_kib(pid, "VmRSS");
    assert!(after_kib < RSS_AFTER_KIB_MAX, "RSS {after_kib} KiB after the burst");
}

#[test]
fn fifty_parallel_wrong_guesses_from_one_address_check_at_most_failures_max() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let before = derivations(&h);
    let answers = parallel_logins(&h, 50, |_| loopback(7), |_| "admin".to_owned(), guess);
    let checked = derivations(&h) - before;
    assert!(checked <= FAILURES_MAX as u64, "{checked} passwords checked");
    assert_eq!(count(&answers, 401) as u64, checked, "every check failed, nothing else did");
    assert_eq!(count(&answers, 429), 50 - checked as usize);
    for refused in answers.iter().filter(|a| a.status == 429) {
        let wait_s: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(wait_s >= 1, "{refused:?}");
        assert_eq!(refused.body["error"], "too_many_failures", "{refused:?}");
    }
}

#[test]
fn guesses_rotating_over_fifty_addresses_are_capped_by_the_users_back_off() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let before = derivations(&h);
    let answers = parallel_logins(&h, 50, |i| loopback(10 + i), |_| "admin".to_owned(), guess);
    let checked = derivations(&h) - before;
    // FAILURES_MAX at once, then one per back-off (1, 2, 4, 8, 16 s): at most five more even
    // on a machine slow enough to need half a minute for this burst.
    assert!(checked <= FAILURES_MAX as u64 + 5, "{checked} of 50 guesses checked");
    assert!(count(&answers, 429) >= 50 - FAILURES_MAX - 5);
    for refused in answers.iter().filter(|a| a.status == 429) {
        let wait_s: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(wait_s <= BACKOFF_MAX_S + 1, "{refused:?}");
    }
}

#[test]
fn a_known_and_an_unknown_user_each_cost_exactly_one_derivation() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let mut costs = Vec::new();
    for (n, user) in [(2, "admin"), (3, "nobody-by-this-name"), (4, "admin"), (5, "nobody-2")] {
        let before = derivations(&h);
        let answer = get_as_from(h.http, loopback(n), "/api/system", user, "wrong-password");
        assert_eq!((answer.status, &answer.body["error"]), (401, &"unauthorized".into()));
        costs.push(derivations(&h) - before);
    }
    assert_eq!(costs, [1, 1, 1, 1], "known, unknown, known, unknown");
    // A right password is checked once, then remembered.
    let before = derivations(&h);
    assert_eq!(h.api().get("/api/system").0, 200);
    assert_eq!(h.api().get("/api/system").0, 200);
    assert_eq!(derivations(&h) - before, 1);
}

#[test]
fn a_clients_parallel_first_requests_share_one_check_and_all_get_in() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let before = derivations(&h);
    let answers = parallel_logins(
        &h,
        20,
        |_| loopback(1),
        |_| "admin".to_owned(),
        |_| OWNER_PASSWORD.to_owned(),
    );
    assert_eq!(count(&answers, 200), 20, "{:?}", answers.iter().find(|a| a.status != 200));
    assert_eq!(derivations(&h) - before, 1);
}

#[test]
fn after_a_guessing_storm_the_owner_gets_in_within_the_back_off_cap() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    // The owner's usual client logs in before the storm.
    let usual = loopback(1);
    assert_eq!(get_as_from(h.http, usual, "/api/system", "admin", OWNER_PASSWORD).status, 200);
    let storm = parallel_logins(&h, 60, |i| loopback(100 + i), |_| "admin".to_owned(), guess);
    assert!(count(&storm, 429) > 0, "the storm met the back-off");
    // The usual client is not kept out at all.
    assert_eq!(get_as_from(h.http, usual, "/api/system", "admin", OWNER_PASSWORD).status, 200);
    // A new client is told to wait at most the cap, and gets in once it has.
    let fresh = loopback(250);
    let first = get_as_from(h.http, fresh, "/api/system", "admin", OWNER_PASSWORD);
    if first.status == 429 {
        let wait_s: u64 = first.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(wait_s <= BACKOFF_MAX_S + 1, "{first:?}");
    }
    let limit = Duration::from_secs(BACKOFF_MAX_S + 30);
    wait_for("the owner to get in from a new address", limit, || {
        let answer = get_as_from(h.http, fresh, "/api/system", "admin", OWNER_PASSWORD);
        (answer.status == 200, answer.status)
    });
}
