//! `hive-core`: the pure, deterministic state machine of a Hive server.
//!
//! Inputs go in through [`node::Node::handle`] with the time passed in; outputs (messages to send,
//! records to persist, links to open) come out of [`node::Node::poll_output`]. Nothing here reads
//! a clock, touches a socket or the filesystem, or draws unseeded randomness.

pub mod auth;
pub mod failover;
pub mod frame;
pub mod hlc;
pub mod identity;
pub mod ids;
pub mod instant;
pub mod keys;
pub mod licenses;
pub mod login;
pub mod mix;
pub mod node;
pub mod persist;
pub mod resources;
pub mod store;
pub mod timesync;
pub mod wire;
