//! Helpers shared by Hive's fuzz targets (`fuzz_targets/`) and their seed generator
//! (`examples/seeds.rs`).
//!
//! - [`archive`]: archive segments of intact records with damage laid between and into them.
//! - [`frames`]: cut fuzz input into frames with checksums made right, so mutated bodies get past
//!   the crc32 check to the decoder behind it.
//! - [`peer`]: a node under test and the peer that talks to it over one link.
//! - [`merge`]: merge logins played against a node by another system, honest or not.
//! - [`opaque`]: one OPAQUE login whose messages fuzz input may change.
//! - [`channel`]: the channel handshake answering fuzz input as its initiator.
//! - [`reader`]: the byte layout of structured inputs.
//! - [`mem_fs`]: an in-memory [`Fs`](hive::storage::Fs), to read snapshot files through the public
//!   persistence API.

pub mod archive;
pub mod channel;
pub mod frames;
pub mod mem_fs;
pub mod merge;
pub mod opaque;
pub mod peer;
pub mod reader;
