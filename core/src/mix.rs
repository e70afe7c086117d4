//! A well-mixed, platform-independent 64-bit hash step (splitmix64), for choices every server
//! must make alike: which pairs of servers link (`node::mesh`), which taker gets a camera
//! (`failover`). Unlike `std::hash`, its output never changes between platforms or releases.

/// splitmix64's increment, the golden ratio in 64 bits; also the starting state.
pub const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Mixes `word` into `state` with one splitmix64 step and its finaliser.
pub fn absorb(state: u64, word: u64) -> u64 {
    let mut x = (state ^ word).wrapping_add(GOLDEN_GAMMA);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Mixes both 64-bit halves of a 128-bit id into `state`.
pub fn absorb_u128(state: u64, id: u128) -> u64 {
    absorb(absorb(state, id as u64), (id >> 64) as u64)
}
