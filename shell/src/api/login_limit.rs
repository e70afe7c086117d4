//! Limits on password guessing that hold under parallel requests.
//!
//! An attempt that needs a password check is *reserved* before the check runs: under one
//! lock, the limits of its source address and of its user name are checked and the attempt is
//! counted as a failure in both. A success gives the reservation back. So 50 parallel guesses
//! from one address get at most [`FAILURES_MAX`] checks, whatever the timing.
//!
//! - Per address: [`FAILURES_MAX`] failures in [`FAILURE_WINDOW`], then it waits out the window.
//! - Per user name (known or not, so the limit reveals nothing about who exists): after
//!   [`FAILURES_MAX`] failures each further attempt must wait a back-off that starts at
//!   [`BACKOFF_FIRST`] and doubles up to [`BACKOFF_MAX`]. This slows guessing spread over many
//!   addresses, and never shuts the user out for longer than [`BACKOFF_MAX`]. An address that
//!   logged in as the user recently skips that user's back-off, so an attacker elsewhere
//!   cannot keep the owner's own client out.
//!
//! Every table is bounded: expired entries are forgotten once a table is full.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures from one address in `FAILURE_WINDOW`, and of one user before back-off starts.
pub const FAILURES_MAX: u32 = 5;
/// Window in which an address's failures are counted, and its wait once over the limit.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A user's first back-off, after [`FAILURES_MAX`] failures.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest a user's back-off grows.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A user's failures are forgotten this long after the last one.
const USER_MEMORY: Duration = Duration::from_secs(15 * 60);
/// How long an address that logged in as a user skips that user's back-off.
const TRUST_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Entries per table before expired ones are dropped.
const TABLE_LEN_MAX: usize = 10_000;

type Digest32 = [u8; 32];

/// Why an attempt may not be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures from this address.
    Address {
        /// Until the window is over.
        wait: Duration,
    },
    /// This user name is in back-off.
    User {
        /// Until the back-off is over.
        wait: Duration,
    },
}

impl Refusal {
    /// How long to wait before trying again.
    pub fn wait(self) -> Duration {
        match self {
            Refusal::Address { wait } | Refusal::User { wait } => wait,
        }
    }
}

/// A reserved attempt, already counted as a failure; pass it to
/// [`LoginLimiter::succeeded`] if the password was right, else drop it.
#[must_use]
#[derive(Debug)]
pub struct Attempt {
    ip: IpAddr,
    user: Digest32,
    pair: Digest32,
    user_counted: bool,
}

struct AddressFailures {
    count: u32,
    since: Instant,
}

struct UserFailures {
    count: u32,
    last: Instant,
    wait_until: Instant,
}

#[derive(Default)]
struct Tables {
    addresses: HashMap<IpAddr, AddressFailures>,
    /// By a peppered digest of the name: names from the network can be long.
    users: HashMap<Digest32, UserFailures>,
    /// `(user, address)` digests that logged in, and when.
    trusted: HashMap<Digest32, Instant>,
}

/// Failure counts per address and per user name.
pub struct LoginLimiter {
    tables: Mutex<Tables>,
    pepper: [u8; 32],
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter { tables: Mutex::default(), pepper: rand::random() }
    }
}

impl LoginLimiter {
    /// Whether an attempt of `name` from `ip` may proceed without a password check (its
    /// credentials were checked before): the same limits apply, nothing is counted.
    pub fn admit(&self, name: &str, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let (user, pair) = (self.digest(name, None), self.digest(name, Some(ip)));
        let mut tables = self.lock();
        tables.forget_expired(now, user, ip);
        tables.refusal(ip, user, pair, now).map_or(Ok(()), Err)
    }

    /// Checks the limits of `name` from `ip` and, if they allow it, counts the attempt as a
    /// failure before its password is checked.
    pub fn reserve(&self, name: &str, ip: IpAddr, now: Instant) -> Result<Attempt, Refusal> {
        let (user, pair) = (self.digest(name, None), self.digest(name, Some(ip)));
        let mut tables = self.lock();
        tables.forget_expired(now, user, ip);
        if let Some(refusal) = tables.refusal(ip, user, pair, now) {
            return Err(refusal);
        }
        tables.bound(now);
        let address =
            tables.addresses.entry(ip).or_insert(AddressFailures { count: 0, since: now });
        address.count += 1;
        let user_counted = !tables.is_trusted(pair, now);
        if user_counted {
            let u = tables.users.entry(user).or_insert(UserFailures {
                count: 0,
                last: now,
                wait_until: now,
            });
            u.count += 1;
            u.last = now;
            if u.count >= FAILURES_MAX {
                u.wait_until = now + backoff(u.count);
            }
        }
        Ok(Attempt { ip, user, pair, user_counted })
    }

    /// The password of `attempt` was right: gives its reservation back and trusts its address
    /// for its user.
    pub fn succeeded(&self, attempt: Attempt, now: Instant) {
        let mut tables = self.lock();
        if let Some(a) = tables.addresses.get_mut(&attempt.ip) {
            a.count = a.count.saturating_sub(1);
        }
        if attempt.user_counted {
            if let Some(u) = tables.users.get_mut(&attempt.user) {
                u.count = u.count.saturating_sub(1);
                if u.count < FAILURES_MAX {
                    u.wait_until = now;
                }
            }
        }
        tables.trusted.insert(attempt.pair, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A digest of `name` (and `ip`), useless outside this process.
    fn digest(&self, name: &str, ip: Option<IpAddr>) -> Digest32 {
        let mut d = Sha256::new_with_prefix(self.pepper)
            .chain_update((name.len() as u64).to_le_bytes())
            .chain_update(name);
        if let Some(ip) = ip {
            d.update(ip.to_string());
        }
        d.finalize().into()
    }
}

impl Tables {
    /// What refuses an attempt of `user` from `ip` now, if anything.
    fn refusal(&self, ip: IpAddr, user: Digest32, pair: Digest32, now: Instant) -> Option<Refusal> {
        if let Some(a) = self.addresses.get(&ip) {
            if a.count >= FAILURES_MAX {
                return Some(Refusal::Address { wait: (a.since + FAILURE_WINDOW) - now });
            }
        }
        if self.is_trusted(pair, now) {
            return None;
        }
        let u = self.users.get(&user)?;
        (now < u.wait_until).then(|| Refusal::User { wait: u.wait_until - now })
    }

    fn is_trusted(&self, pair: Digest32, now: Instant) -> bool {
        self.trusted.get(&pair).is_some_and(|at| now.duration_since(*at) < TRUST_TTL)
    }

    /// Resets the entries of `ip` and `user` whose time is over.
    fn forget_expired(&mut self, now: Instant, user: Digest32, ip: IpAddr) {
        if self.addresses.get(&ip).is_some_and(|a| address_expired(a, now)) {
            self.addresses.remove(&ip);
        }
        if self.users.get(&user).is_some_and(|u| user_expired(u, now)) {
            self.users.remove(&user);
        }
    }

    /// Keeps every table under [`TABLE_LEN_MAX`] by dropping expired entries once it is full.
    fn bound(&mut self, now: Instant) {
        if self.addresses.len() >= TABLE_LEN_MAX {
            self.addresses.retain(|_, a| !address_expired(a, now));
        }
        if self.users.len() >= TABLE_LEN_MAX {
            self.users.retain(|_, u| !user_expired(u, now));
        }
        if self.trusted.len() >= TABLE_LEN_MAX {
            self.trusted.retain(|_, at| now.duration_since(*at) < TRUST_TTL);
            if self.trusted.len() >= TABLE_LEN_MAX {
                // Only successful logins add here; losing trust only means back-off applies.
                self.trusted.clear();
            }
        }
    }
}

fn address_expired(a: &AddressFailures, now: Instant) -> bool {
    now.duration_since(a.since) >= FAILURE_WINDOW
}

fn user_expired(u: &UserFailures, now: Instant) -> bool {
    now >= u.wait_until && now.duration_since(u.last) >= USER_MEMORY
}

/// The wait after a user's `count`-th failure: doubling from [`BACKOFF_FIRST`], capped.
fn backoff(count: u32) -> Duration {
    let doublings = count.saturating_sub(FAILURES_MAX).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn an_address_gets_failures_max_attempts_then_waits_out_the_window() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        let held: Vec<Attempt> = (0..FAILURES_MAX)
            .map(|i| limiter.reserve(&format!("user{i}"), ip(1), t0).expect("allowed"))
            .collect();
        let refused = limiter.reserve("someone", ip(1), t0).expect_err("over the limit");
        assert_eq!(refused, Refusal::Address { wait: FAILURE_WINDOW });
        assert!(limiter.reserve("someone", ip(2), t0).is_ok(), "other addresses are not held");
        assert!(limiter.reserve("someone", ip(1), t0 + FAILURE_WINDOW).is_ok());
        drop(held);
    }

    #[test]
    fn reservations_in_flight_count_before_any_check_finishes() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        let outcomes: Vec<_> = (0..50).map(|_| limiter.reserve("admin", ip(1), t0)).collect();
        assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), FAILURES_MAX as usize);
    }

    #[test]
    fn a_success_gives_its_reservation_back() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        for _ in 0..3 * FAILURES_MAX {
            let attempt = limiter.reserve("admin", ip(1), t0).expect("allowed");
            limiter.succeeded(attempt, t0);
        }
        assert!(limiter.admit("admin", ip(1), t0).is_ok());
    }

    #[test]
    fn a_user_guessed_from_many_addresses_backs_off_doubling_up_to_the_cap() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        for n in 0..FAILURES_MAX as u8 {
            let _ = limiter.reserve("admin", ip(n + 1), t0).expect("allowed");
        }
        let refused = limiter.reserve("admin", ip(100), t0).expect_err("backing off");
        assert_eq!(refused, Refusal::User { wait: BACKOFF_FIRST });
        let mut now = t0;
        let mut waits = Vec::new();
        for n in 0..10u8 {
            now += limiter.admit("admin", ip(200), now).expect_err("backing off").wait();
            let _ = limiter.reserve("admin", ip(10 + n), now).expect("allowed after the wait");
            waits.push(limiter.admit("admin", ip(250), now).expect_err("backing off").wait());
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [2, 4, 8, 16, 30, 30, 30, 30, 30, 30]);
        assert!(limiter.reserve("other-user", ip(251), now).is_ok(), "back-off is per user");
    }

    #[test]
    fn an_address_that_logged_in_skips_its_users_back_off() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        let owner = limiter.reserve("admin", ip(1), t0).expect("allowed");
        limiter.succeeded(owner, t0);
        for n in 0..2 * FAILURES_MAX as u8 {
            let _ = limiter.reserve("admin", ip(10 + n), t0);
        }
        assert!(limiter.admit("admin", ip(99), t0).is_err(), "strangers back off");
        assert!(limiter.admit("admin", ip(1), t0).is_ok(), "the owner's address does not");
        assert!(limiter.reserve("admin", ip(1), t0).is_ok());
    }

    #[test]
    fn unknown_and_known_names_are_limited_alike() {
        // The limiter never learns whether a name exists: it is keyed by the name alone.
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        for name in ["admin", "no-such-user"] {
            for n in 0..FAILURES_MAX as u8 {
                let _ = limiter.reserve(name, ip(n + 1), t0).expect("allowed");
            }
            assert_eq!(
                limiter.admit(name, ip(200), t0),
                Err(Refusal::User { wait: BACKOFF_FIRST })
            );
        }
    }

    #[test]
    fn the_tables_stay_bounded_under_a_spray_of_names_and_addresses() {
        let (limiter, t0) = (LoginLimiter::default(), Instant::now());
        let later = t0 + USER_MEMORY + BACKOFF_MAX;
        for i in 0..TABLE_LEN_MAX as u32 {
            let _ = limiter.reserve(&format!("u{i}"), IpAddr::from(i.to_be_bytes()), t0);
        }
        for i in 0..TABLE_LEN_MAX as u32 {
            let _ = limiter.reserve(
                &format!("v{i}"),
                IpAddr::from(((i + 1) << 16).to_be_bytes()),
                later,
            );
        }
        let tables = limiter.lock();
        assert!(tables.addresses.len() <= TABLE_LEN_MAX, "{}", tables.addresses.len());
        assert!(tables.users.len() <= TABLE_LEN_MAX, "{}", tables.users.len());
    }
}
