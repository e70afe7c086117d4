//! The one place with `unsafe`: memory maps of archive segment files.
//!
//! Mapping a file is unsafe because another process could truncate or change it under the map
//! (a truncation turns reads of the lost pages into SIGBUS). Segment files are created by this
//! process, preallocated with `fallocate` before they are mapped (so every mapped page has
//! disk blocks: a full disk is an error at `fallocate`, never a SIGBUS at a write), never
//! truncated while mapped, and live in the server's own data directory.
#![allow(unsafe_code)]

use memmap2::{Mmap, MmapMut};
use std::fs::File;

/// A writable shared map of a whole preallocated segment file.
pub fn map_for_writing(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: the file is a segment this process created and preallocated to its full length
    // with fallocate before this call; the archive never truncates a segment while any map of
    // it exists (segments are only deleted, which keeps the pages of open maps alive), and no
    // other process is meant to write the data directory.
    unsafe { MmapMut::map_mut(file) }
}

/// A read-only shared map of a whole segment file; it sees what the writer's map writes.
pub fn map_for_reading(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: as for `map_for_writing`: the segment's length is fixed while it exists and
    // deletion keeps mapped pages valid. Readers only look at bytes the index says hold
    // records whose crc was checked when the index learnt of them, and check it again.
    unsafe { Mmap::map(file) }
}
