//! Time from outside the hive: an SNTP client a primary time server takes its time from.
//!
//! The OS clock is never changed; a reply only yields an offset between the caller's
//! monotonic clock and the NTP server's time, which the core's time sync consumes.

pub mod poller;
pub mod sntp;

pub use poller::SntpPoller;
pub use sntp::{query, NtpReply, SntpError};
