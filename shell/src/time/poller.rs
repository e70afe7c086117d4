//! A window of SNTP replies: the best one is the most recent shortest round trip whose offset
//! agrees with the others, so one delayed or bogus reply does not move the time.

use super::sntp::{query, NtpReply, SntpError};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Replies kept.
pub const WINDOW_LEN: usize = 8;
/// An offset further from the window's median than this many minimum round trips (plus
/// [`OUTLIER_SLACK_US`]) is an outlier: a symmetric path cannot err by more.
pub const OUTLIER_ROUND_TRIPS: u64 = 8;
/// Slack on top of the round-trip bound, for the server's own jitter.
pub const OUTLIER_SLACK_US: u64 = 1_000;

/// The last [`WINDOW_LEN`] replies of one NTP server.
#[derive(Clone, Debug, Default)]
pub struct SntpPoller {
    window: VecDeque<NtpReply>,
}

impl SntpPoller {
    /// An empty window.
    pub fn new() -> SntpPoller {
        SntpPoller::default()
    }

    /// Adds a reply, forgetting the oldest beyond [`WINDOW_LEN`].
    pub fn push(&mut self, reply: NtpReply) {
        if self.window.len() == WINDOW_LEN {
            self.window.pop_front();
        }
        self.window.push_back(reply);
        debug_assert!(self.window.len() <= WINDOW_LEN);
    }

    /// Replies held.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Whether no reply is held.
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// The reply with the smallest round trip among those whose offset is within
    /// `8 × min round trip + 1 ms` of the window's median offset; the newest on a tie.
    pub fn best(&self) -> Option<NtpReply> {
        let round_trip_us_min = self.window.iter().map(NtpReply::round_trip_us).min()?;
        let mut offsets_us: Vec<i64> = self.window.iter().map(NtpReply::offset_us).collect();
        offsets_us.sort_unstable();
        // The lower median is a reply's own offset, so at least that reply survives.
        let median_us = *offsets_us.get((offsets_us.len() - 1) / 2)?;
        let limit_us =
            OUTLIER_ROUND_TRIPS.saturating_mul(round_trip_us_min).saturating_add(OUTLIER_SLACK_US);
        let best = self
            .window
            .iter()
            .rev()
            .filter(|r| r.offset_us().abs_diff(median_us) <= limit_us)
            .min_by_key(|r| r.round_trip_us())
            .copied();
        debug_assert!(best.is_some(), "the median's reply is never an outlier");
        best
    }

    /// Queries `server` once ([`query`]), adds the reply and returns the window's best.
    pub async fn poll(
        &mut self,
        server: SocketAddr,
        mono_us: &(dyn Fn() -> u64 + Sync),
        timeout: Duration,
    ) -> Result<NtpReply, SntpError> {
        let reply = query(server, mono_us, timeout).await?;
        self.push(reply);
        Ok(self.best().unwrap_or(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply sent at `sent_mono_us` with round trip `round_trip_us` and offset `offset_us`.
    fn reply(sent_mono_us: u64, round_trip_us: u64, offset_us: i64) -> NtpReply {
        let midpoint_us = sent_mono_us + round_trip_us / 2;
        let server_us = midpoint_us.saturating_add_signed(offset_us);
        NtpReply {
            sent_mono_us,
            server_received_unix_us: server_us,
            server_sent_unix_us: server_us,
            received_mono_us: sent_mono_us + round_trip_us,
            stratum: 2,
            root_delay_us: 0,
            root_dispersion_us: 0,
        }
    }

    #[test]
    fn an_empty_window_has_no_best() {
        assert_eq!(SntpPoller::new().best(), None);
    }

    #[test]
    fn the_best_reply_has_the_smallest_round_trip() {
        let mut poller = SntpPoller::new();
        for (i, rtt) in [900, 300, 700, 500].into_iter().enumerate() {
            poller.push(reply(i as u64 * 1_000_000, rtt, 40_000 + i as i64 * 10));
        }
        assert_eq!(poller.best().map(|r| r.round_trip_us()), Some(300));
        assert_eq!(poller.best().map(|r| r.offset_us()), Some(40_010));
    }

    #[test]
    fn an_outlier_is_dropped_even_with_the_smallest_round_trip() {
        let mut poller = SntpPoller::new();
        for i in 0..5 {
            poller.push(reply(i * 1_000_000, 2_000, 10_000 + i as i64 * 100));
        }
        // A reply 0.5 s off whose round trip looks best: 8 × 100 µs + 1 ms from the median.
        poller.push(reply(6_000_000, 100, 510_000));
        let best = poller.best().unwrap();
        assert_eq!(best.round_trip_us(), 2_000);
        assert!((10_000..=10_400).contains(&best.offset_us()), "{best:?}");
    }

    #[test]
    fn offsets_within_the_round_trip_bound_are_kept() {
        let mut poller = SntpPoller::new();
        poller.push(reply(0, 5_000, 0));
        poller.push(reply(1_000_000, 5_000, 1_000));
        // Within 8 × 1 ms + 1 ms of the median (1 ms): 8 ms is no outlier.
        poller.push(reply(2_000_000, 1_000, 8_000));
        assert_eq!(poller.best().map(|r| r.round_trip_us()), Some(1_000));
    }

    #[test]
    fn the_window_keeps_only_the_last_eight_replies() {
        let mut poller = SntpPoller::new();
        poller.push(reply(0, 10, 0));
        for i in 1..=8 {
            poller.push(reply(i * 1_000_000, 1_000 + i, 0));
        }
        assert_eq!(poller.len(), WINDOW_LEN);
        assert_eq!(poller.best().map(|r| r.round_trip_us()), Some(1_001));
    }

    #[test]
    fn on_a_tie_the_newest_reply_wins() {
        let mut poller = SntpPoller::new();
        poller.push(reply(0, 1_000, 0));
        poller.push(reply(1_000_000, 1_000, 20));
        assert_eq!(poller.best().map(|r| r.sent_mono_us), Some(1_000_000));
    }
}
