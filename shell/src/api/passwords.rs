//! Password key derivations on a bounded pool: at most [`WORKERS`] argon2id derivations run at
//! once, each worker reusing its own working memory, so a burst of logins costs at most
//! `WORKERS ×` one derivation's memory and leaves nothing behind once it is over. Every
//! password the API checks or stores goes through here.

use hive_core::auth::{derive_password_key_in, mac_eq, KdfMemory, KdfParams};
use hive_core::login::LoginRecord;
use hive_core::resources::PasswordVerifier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Derivations that run at once.
pub const WORKERS: usize = 2;
/// Derivations waiting for a worker before callers wait to enqueue (they wait without cost).
const QUEUE_LEN: usize = 64;

/// The workers are gone (the server is stopping).
#[derive(Debug, Error)]
#[error("the password workers have stopped")]
pub struct PoolStopped;

/// Work for a worker.
enum Job {
    /// One derivation.
    Derive { password: String, salt: [u8; 16], params: KdfParams, reply: oneshot::Sender<[u8; 32]> },
    /// An OPAQUE registration (it stretches the password with argon2id too).
    Register {
        name: String,
        password: String,
        params: KdfParams,
        reply: oneshot::Sender<Option<LoginRecord>>,
    },
}

/// The pool; dropping it stops its workers once their queue is drained.
pub struct PasswordPool {
    jobs: mpsc::Sender<Job>,
    derivations: Arc<AtomicU64>,
    /// Cost of new verifiers.
    params: KdfParams,
    /// What an unknown user's password is checked against, so that checking it costs what
    /// checking a known user's does.
    dummy: PasswordVerifier,
}

impl PasswordPool {
    /// Starts [`WORKERS`] threads; new verifiers and the dummy cost `params`.
    pub fn start(params: KdfParams) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel(QUEUE_LEN);
        let queue = Arc::new(Mutex::new(queue));
        let derivations = Arc::new(AtomicU64::new(0));
        for i in 0..WORKERS {
            let (queue, derivations) = (Arc::clone(&queue), Arc::clone(&derivations));
            std::thread::Builder::new()
                .name(format!("hive-password-{i}"))
                .spawn(move || work(&queue, &derivations))?;
        }
        let dummy = PasswordVerifier { salt: rand::random(), key: rand::random(), params };
        Ok(PasswordPool { jobs, derivations, params, dummy })
    }

    /// Derivations run so far.
    pub fn derivations(&self) -> u64 {
        self.derivations.load(Ordering::Relaxed)
    }

    /// Derives the key of `password` with `salt`, waiting for a free worker.
    pub async fn derive(
        &self,
        password: &str,
        salt: [u8; 16],
        params: KdfParams,
    ) -> Result<[u8; 32], PoolStopped> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Derive { password: password.to_owned(), salt, params, reply };
        self.jobs.send(job).await.map_err(|_| PoolStopped)?;
        answer.await.map_err(|_| PoolStopped)
    }

    /// Whether `password` is the one behind `verifier`. Exactly one derivation runs whatever
    /// the case: an unknown user (`None`) or a verifier costing more than
    /// [`KdfParams::LIMIT`] is checked against the dummy and fails.
    pub async fn verify(
        &self,
        password: &str,
        verifier: Option<&PasswordVerifier>,
    ) -> Result<bool, PoolStopped> {
        let usable = verifier.filter(|v| v.params.within_limit());
        let against = usable.unwrap_or(&self.dummy);
        let key = self.derive(password, against.salt, against.params).await?;
        Ok(usable.is_some() && mac_eq(&key, &against.key))
    }

    /// The OPAQUE record that lets `name` log in to a merge from another system with
    /// `password` (`None` if registration failed, which leaves the account unable to merge).
    pub async fn login_record(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<LoginRecord>, PoolStopped> {
        let (reply, answer) = oneshot::channel();
        let (name, password) = (name.to_owned(), password.to_owned());
        let job = Job::Register { name, password, params: self.params, reply };
        self.jobs.send(job).await.map_err(|_| PoolStopped)?;
        answer.await.map_err(|_| PoolStopped)
    }

    /// A verifier of `password` with a fresh salt, to store.
    pub async fn new_verifier(&self, password: &str) -> Result<PasswordVerifier, PoolStopped> {
        let salt: [u8; 16] = rand::random();
        let key = self.derive(password, salt, self.params).await?;
        Ok(PasswordVerifier { salt, key, params: self.params })
    }
}

/// A worker: takes jobs until the pool is dropped, in working memory of its own.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, derivations: &AtomicU64) {
    let mut memory = KdfMemory::new();
    loop {
        // One worker waits on the queue at a time; the other waits for the lock.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).blocking_recv();
        match job {
            None => return,
            Some(Job::Derive { password, salt, params, reply }) => {
                let key = derive_password_key_in(&mut memory, &password, &salt, params);
                // A verifier dearer than ours (from a merged system) must not pin its memory.
                memory.shrink_to(KdfParams::STANDARD.memory_kib);
                derivations.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(key);
            }
            Some(Job::Register { name, password, params, reply }) => {
                let mut rng = rand::rngs::OsRng;
                let _ =
                    reply.send(hive_core::login::register(&name, &password, params, &mut rng).ok());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_core::auth::{derive_password_key, password_verifier};

    const PARAMS: KdfParams = KdfParams { memory_kib: 256, passes: 1 };

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pooled_derivations_equal_the_cores_even_when_many_run_at_once() {
        let pool = Arc::new(PasswordPool::start(PARAMS).expect("workers start"));
        let cases: Vec<(String, [u8; 16])> =
            (0..8u8).map(|i| (format!("password-{}", i % 3), [i; 16])).collect();
        let tasks: Vec<_> = cases
            .iter()
            .cloned()
            .map(|(password, salt)| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move { pool.derive(&password, salt, PARAMS).await })
            })
            .collect();
        for ((password, salt), task) in cases.iter().zip(tasks) {
            let key = task.await.expect("task runs").expect("pool runs");
            assert_eq!(key, derive_password_key(password, salt, PARAMS));
        }
        assert_eq!(pool.derivations(), cases.len() as u64);
    }

    #[tokio::test]
    async fn known_and_unknown_users_each_cost_one_derivation() {
        let pool = PasswordPool::start(PARAMS).expect("workers start");
        let known = password_verifier("the-password", [9; 16], PARAMS);
        assert!(pool.verify("the-password", Some(&known)).await.expect("runs"));
        assert_eq!(pool.derivations(), 1);
        assert!(!pool.verify("wrong", Some(&known)).await.expect("runs"));
        assert_eq!(pool.derivations(), 2);
        assert!(!pool.verify("the-password", None).await.expect("runs"));
        assert_eq!(pool.derivations(), 3);
        let too_dear = PasswordVerifier {
            params: KdfParams { memory_kib: u32::MAX, passes: 1 },
            ..known.clone()
        };
        assert!(!pool.verify("the-password", Some(&too_dear)).await.expect("runs"));
        assert_eq!(pool.derivations(), 4);
    }

    #[tokio::test]
    async fn a_new_verifier_verifies_its_password() {
        let pool = PasswordPool::start(PARAMS).expect("workers start");
        let v = pool.new_verifier("a-new-password").await.expect("runs");
        assert_eq!(v.params, PARAMS);
        assert_eq!(v.key, derive_password_key("a-new-password", &v.salt, PARAMS));
    }
}
