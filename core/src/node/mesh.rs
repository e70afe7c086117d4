//! The shape of the mesh: which members link directly, how often beacons go out, and which
//! surplus links are closed.
//!
//! A full mesh costs every server a link, and a heartbeat a second, per other server: n² for
//! the system. Instead each pair of members is a *mesh pair* with probability `d / (n - 1)`
//! (a hash of the two ids, so both ends agree), which gives each server about `d` links and a
//! connected graph with high probability; systems of up to `d + 1` servers stay a full mesh.
//! Routing reaches everyone else through neighbours. Two rules keep the graph connected
//! whatever the hash says: a member heard by beacon but unreachable for three beacon periods
//! is dialled regardless, and a link is only closed when another neighbour is linked directly
//! to the same peer.
//!
//! Beacons go out every `beacon_ms` while membership changes (links up or down, servers
//! appearing) and every `beacon_idle_ms` once nothing changed for `settle_ms`: a settled system
//! needs them only to notice newcomers, whose own beacons are fast.

use super::Node;
use crate::ids::ServerId;
use crate::mix::{absorb_u128, GOLDEN_GAMMA};
use crate::resources::Key;

/// A well-mixed 64-bit hash of an unordered pair of servers.
fn pair_hash(a: ServerId, b: ServerId) -> u64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    absorb_u128(absorb_u128(GOLDEN_GAMMA, lo.0), hi.0)
}

/// Whether `a` and `b` should link directly in a system of `n` servers with mesh degree `d`.
pub fn is_mesh_pair(a: ServerId, b: ServerId, n: u64, d: u64) -> bool {
    if n <= d + 1 {
        return true;
    }
    // hash / 2^64 < d / (n - 1)
    u128::from(pair_hash(a, b)) * u128::from(n - 1) < u128::from(d) << 64
}

impl Node {
    /// Servers of the system as far as this one knows: recorded, or heard by beacon.
    pub(super) fn system_size(&self) -> u64 {
        self.mesh_n.max(1)
    }

    /// Recounts the servers of the system if records or beacons changed.
    pub(super) fn recount_system(&mut self) {
        if !std::mem::take(&mut self.mesh_dirty) {
            return;
        }
        let recorded = self
            .store
            .range(Key::Server(ServerId(0))..Key::Camera(crate::ids::CameraId(0)))
            .count();
        self.mesh_n = recorded.max(self.discovery.members_heard()) as u64;
    }

    /// Whether this server should link directly with member `peer`.
    pub(super) fn wants_link(&self, peer: ServerId) -> bool {
        let d = u64::from(self.config.timing.mesh_degree);
        is_mesh_pair(self.identity.server, peer, self.system_size(), d)
    }

    /// Whether it is too early to choose links: in its first beacon period a server that
    /// already knows of more than a full mesh's worth of servers waits to hear them all, so
    /// a system starting cold does not link everyone with everyone first.
    pub(super) fn mesh_undecided(&self) -> bool {
        let t = &self.config.timing;
        self.now.mono < self.started.plus_ms(t.beacon_ms)
            && self.system_size() > u64::from(t.mesh_degree) + 1
    }

    /// Membership changed: beacons go fast again until things settle.
    pub(super) fn membership_changed(&mut self) {
        let now = self.now.mono;
        if self.settled() {
            // Let newcomers hear of us soon rather than at the next idle beacon.
            self.next_beacon = self.next_beacon.min(now.plus_ms(self.config.timing.beacon_ms));
        }
        self.changed_at = now;
        self.mesh_dirty = true;
    }

    /// Whether nothing changed for `settle_ms`.
    pub(super) fn settled(&self) -> bool {
        self.now.mono >= self.changed_at.plus_ms(self.config.timing.settle_ms)
    }

    /// How long a server learned of without a beacon period is remembered.
    pub(super) fn idle_ttl_ms(&self) -> u64 {
        self.config.timing.beacon_idle_ms.max(self.config.timing.beacon_ms) * 7 / 2
    }

    /// The beacon period now.
    pub(super) fn beacon_interval_ms(&self) -> u64 {
        let t = &self.config.timing;
        if self.settled() {
            t.beacon_idle_ms.max(t.beacon_ms)
        } else {
            t.beacon_ms
        }
    }

    /// Closes surplus links: ones this server dialled (so it alone decides), up for
    /// `settle_ms`, to a peer that is neither a mesh pair nor a manual address, while a
    /// neighbour with a lower id than ours is linked directly to that peer. Relying only on
    /// lower ids means the peer's lowest neighbour keeps its link; should a rare race cut a
    /// server off anyway, the unreachable rule of discovery dials it again.
    pub(super) fn prune_surplus_links(&mut self) {
        let t = &self.config.timing;
        let now = self.now.mono;
        let me = self.identity.server;
        let manual = self.manual_addresses();
        let direct_to = |peer: ServerId| {
            self.peers.iter().any(|(&other, other_link)| {
                other < me
                    && other != peer
                    && self.links[other_link].reach.get(&peer).map(|o| o.0) == Some(1)
            })
        };
        let surplus: Vec<_> = self
            .peers
            .iter()
            .filter(|(&peer, link)| {
                let l = &self.links[link];
                l.dialed.as_ref().is_some_and(|a| !manual.contains(a))
                    && now >= l.up_since.plus_ms(t.settle_ms)
                    && !self.wants_link(peer)
                    && direct_to(peer)
            })
            .map(|(_, link)| *link)
            .collect();
        for link in surplus {
            self.close(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_systems_are_a_full_mesh() {
        for n in 1..=9 {
            assert!(is_mesh_pair(ServerId(1), ServerId(2), n, 8));
        }
    }

    #[test]
    fn both_ends_agree_and_the_degree_is_about_d() {
        let n = 100u64;
        let ids: Vec<ServerId> =
            (0..n).map(|i| ServerId(u128::from(i) * 0x1234_5678_9abc_def1 + 7)).collect();
        let mut total = 0;
        for a in &ids {
            for b in &ids {
                if a != b {
                    assert_eq!(is_mesh_pair(*a, *b, n, 8), is_mesh_pair(*b, *a, n, 8));
                    total += u64::from(is_mesh_pair(*a, *b, n, 8));
                }
            }
        }
        let mean_degree = total as f64 / n as f64;
        assert!((6.0..10.0).contains(&mean_degree), "mean degree {mean_degree}");
    }
}
