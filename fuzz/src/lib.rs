//! Helpers shared by Hive's fuzz targets (`fuzz_targets/`) and their seed generator
//! (`examples/seeds.rs`).
//!
//! - [`frames`]: cut fuzz input into frames with checksums made right, so mutated bodies get past
//!   the crc32 check to the decoder behind it.
//! - [`peer`]: a node under test and the peer that talks to it over one link.
//! - [`mem_fs`]: an in-memory [`Fs`](hive::storage::Fs), to read snapshot files through the public
//!   persistence API.

pub mod frames;
pub mod mem_fs;
pub mod peer;
