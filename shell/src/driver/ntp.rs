//! Time from an NTP server for the node: a task polls the configured server and hands each
//! window's best reply to the driver loop as an [`Input::ExternalTime`] sample.
//!
//! [`Input::ExternalTime`]: hive_core::node::Input::ExternalTime

use super::MonoClock;
use crate::time::{NtpReply, SntpError, SntpPoller};
use hive_core::instant::MonoUs;
use hive_core::timesync::{SystemUs, TimeSample};
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Period of NTP queries.
pub const POLL_MS: u64 = 4_000;
/// How long one query may take.
pub const QUERY_TIMEOUT_MS: u64 = 1_000;
/// Shortest time between two warnings about a failing NTP server; other failures go to debug.
pub const WARN_EVERY_MS: u64 = 60_000;
/// Samples waiting for the loop; a busy loop drops newer ones rather than queue stale time.
const SAMPLES_QUEUED_MAX: usize = 4;

/// Why one poll of the NTP server gave no sample.
#[derive(Debug, Error)]
pub enum NtpPollError {
    /// The name did not resolve.
    #[error("cannot resolve {server}: {source}")]
    Resolve {
        /// `host:port` as configured.
        server: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The name resolved to no address.
    #[error("{server} resolves to no address")]
    NoAddress {
        /// `host:port` as configured.
        server: String,
    },
    /// The query failed or the reply was refused.
    #[error("{server}: {source}")]
    Query {
        /// The address asked.
        server: SocketAddr,
        /// Why.
        source: SntpError,
    },
}

/// The polling task and the samples it produces; the task stops when this is dropped.
pub struct NtpFeed {
    samples: mpsc::Receiver<TimeSample>,
    task: JoinHandle<()>,
}

impl NtpFeed {
    /// Starts polling `server` (`host:port`, resolved at each poll), stamping with `mono`,
    /// the clock the driver's `Now.mono_us` is read from.
    pub fn start(server: String, mono: MonoClock) -> NtpFeed {
        let (tx, samples) = mpsc::channel(SAMPLES_QUEUED_MAX);
        let task = tokio::spawn(poll_forever(server, mono, tx));
        NtpFeed { samples, task }
    }

    /// The next sample; pends forever once the task has ended.
    pub async fn next(&mut self) -> TimeSample {
        match self.samples.recv().await {
            Some(sample) => sample,
            None => std::future::pending().await,
        }
    }
}

impl Drop for NtpFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next sample of `feed`, or never when there is none.
pub async fn next_sample(feed: &mut Option<NtpFeed>) -> TimeSample {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

/// The node's view of a reply: the server's own error is half its root delay plus its
/// dispersion.
pub fn sample_of(reply: &NtpReply) -> TimeSample {
    TimeSample {
        sent: MonoUs(reply.sent_mono_us),
        peer_received: SystemUs(reply.server_received_unix_us),
        peer_sent: SystemUs(reply.server_sent_unix_us),
        received: MonoUs(reply.received_mono_us),
        peer_error_us: reply.root_delay_us / 2 + reply.root_dispersion_us,
    }
}

async fn poll_forever(server: String, mono: MonoClock, tx: mpsc::Sender<TimeSample>) {
    let mut poller = SntpPoller::new();
    let mut interval = tokio::time::interval(Duration::from_millis(POLL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        interval.tick().await;
        match poll_once(&server, &mut poller, mono).await {
            Ok(reply) => {
                warned_at = None;
                match tx.try_send(sample_of(&reply)) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(error) => {
                tracing::debug!(%error, "NTP poll failed");
                let now = tokio::time::Instant::now();
                let quiet = warned_at.is_some_and(|at| {
                    now.duration_since(at) < Duration::from_millis(WARN_EVERY_MS)
                });
                if !quiet {
                    tracing::warn!(%error, "no time from the NTP server");
                    warned_at = Some(now);
                }
            }
        }
    }
}

async fn poll_once(
    server: &str,
    poller: &mut SntpPoller,
    mono: MonoClock,
) -> Result<NtpReply, NtpPollError> {
    let addr = tokio::net::lookup_host(server)
        .await
        .map_err(|source| NtpPollError::Resolve { server: server.to_owned(), source })?
        .next()
        .ok_or_else(|| NtpPollError::NoAddress { server: server.to_owned() })?;
    let now_us = move || mono.now_us();
    poller
        .poll(addr, &now_us, Duration::from_millis(QUERY_TIMEOUT_MS))
        .await
        .map_err(|source| NtpPollError::Query { server: addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_carries_the_four_stamps_and_the_servers_own_error() {
        let reply = NtpReply {
            sent_mono_us: 10,
            server_received_unix_us: 1_000,
            server_sent_unix_us: 1_005,
            received_mono_us: 30,
            stratum: 2,
            root_delay_us: 800,
            root_dispersion_us: 50,
        };
        let s = sample_of(&reply);
        assert_eq!((s.sent, s.received), (MonoUs(10), MonoUs(30)));
        assert_eq!((s.peer_received, s.peer_sent), (SystemUs(1_000), SystemUs(1_005)));
        assert_eq!(s.peer_error_us, 450);
    }
}
