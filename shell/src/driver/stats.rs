//! Traffic counters of one server, shared between the link tasks and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bytes on peer links and beacons sent, since start.
#[derive(Debug, Default)]
pub struct TrafficStats {
    link_bytes_sent: AtomicU64,
    link_bytes_received: AtomicU64,
    beacons_sent: AtomicU64,
    beacon_bytes_sent: AtomicU64,
    handshakes_failed: AtomicU64,
    half_open_refused: AtomicU64,
    links_too_slow: AtomicU64,
}

/// A reading of [`TrafficStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frame bytes written to peer links.
    pub link_bytes_sent: u64,
    /// Bytes read from peer links.
    pub link_bytes_received: u64,
    /// Beacon datagrams sent (multicast and unicast).
    pub beacons_sent: u64,
    /// Bytes of those datagrams.
    pub beacon_bytes_sent: u64,
    /// Accepted connections whose handshake failed (wrong secret, tampering, timeout).
    pub handshakes_failed: u64,
    /// Accepted connections closed at once because too many were in their handshake.
    pub half_open_refused: u64,
    /// Links closed because a lane of frames to send was full.
    pub links_too_slow: u64,
}

impl TrafficStats {
    pub(super) fn link_sent(&self, bytes: usize) {
        self.link_bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    pub(super) fn link_received(&self, bytes: usize) {
        self.link_bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    pub(super) fn beacon_sent(&self, bytes: usize, copies: usize) {
        self.beacons_sent.fetch_add(copies as u64, Relaxed);
        self.beacon_bytes_sent.fetch_add((bytes * copies) as u64, Relaxed);
    }

    pub(super) fn handshake_failed(&self) {
        self.handshakes_failed.fetch_add(1, Relaxed);
    }

    pub(super) fn half_open_refused(&self) {
        self.half_open_refused.fetch_add(1, Relaxed);
    }

    pub(super) fn link_too_slow(&self) {
        self.links_too_slow.fetch_add(1, Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> Traffic {
        Traffic {
            link_bytes_sent: self.link_bytes_sent.load(Relaxed),
            link_bytes_received: self.link_bytes_received.load(Relaxed),
            beacons_sent: self.beacons_sent.load(Relaxed),
            beacon_bytes_sent: self.beacon_bytes_sent.load(Relaxed),
            handshakes_failed: self.handshakes_failed.load(Relaxed),
            half_open_refused: self.half_open_refused.load(Relaxed),
            links_too_slow: self.links_too_slow.load(Relaxed),
        }
    }
}
