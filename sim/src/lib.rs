//! `hive-sim`: simulations of many Hive servers at two levels.
//!
//! - [`des`]: a discrete-event simulator that drives pure core nodes directly (100+ servers,
//!   long seed sweeps).
//! - [`check`]: the invariant checker both levels share, over [`report::NodeReport`]s.

pub mod bench;
pub mod bench_failover;
pub mod bench_time;
pub mod check;
pub mod counting_net;
pub mod demo;
pub mod des;
pub mod fixtures;
pub mod report;
pub mod scenario;
pub mod turmoil_world;
pub mod vopr;
