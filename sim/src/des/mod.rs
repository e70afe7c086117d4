//! The discrete-event simulator: pure core [`Node`](hive_core::node::Node)s over a virtual network, jumping from one
//! event to the next. Same faults as the turmoil world (partitions, one-way links, NAT, loss,
//! latency, crashes with restart from durable state, full disks, damaged logs, skewed and
//! drifting clocks), orders of magnitude faster, so it carries 100+ servers and long sweeps.

mod disk;
pub mod world;

pub use disk::Disk;
pub use world::{HostId, ServerSpec, World, WorldConfig};
