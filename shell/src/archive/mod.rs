//! The archive: per camera stream, segment files preallocated with `fallocate`, written through
//! a memory map, flushed at least twice a second, rebuilt from a scan on start. See
//! `docs/archive.md` for the format and the crash rules.

mod mapped;
mod segment;
mod store;

pub use segment::Cursor;
pub use store::{Archive, ArchiveConfig, ArchiveError};

#[cfg(test)]
mod tests;
