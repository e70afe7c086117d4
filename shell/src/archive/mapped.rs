//! The one place with `unsafe`: memory maps of archive segment files.
//!
//! Mapping a file is unsafe because the program must guarantee what the compiler cannot: that
//! nothing changes or truncates the mapped bytes while Rust code holds references to them (a
//! truncation turns accesses to the lost pages into SIGBUS). The archive keeps these rules:
//!
//! - A segment file is created by this process (`create_new`) in the archive's own directory,
//!   and preallocated to its full length with `fallocate` before it is mapped for writing, so
//!   every mapped page has disk blocks: a full disk fails `fallocate` and is an error, never a
//!   SIGBUS at a write.
//! - A segment is never truncated or resized, by this process or (by the rules of the data
//!   directory, 0700) anyone else. It is only deleted, which keeps the pages of existing maps.
//! - The writer's map writes only at or past the end of the last indexed record; readers only
//!   read below it (the end is handed over under the stream's lock). So no byte a reader looks
//!   at changes while it looks, and every record is checked against its crc32 again when read.
//! - At start, segments are read with `pread` (not mapped) and their torn tails cut before
//!   any map of them exists.
#![allow(unsafe_code)]

use memmap2::{Mmap, MmapMut};
use std::fs::File;

/// A writable shared map of a whole segment file, which `fallocate` gave all its blocks.
pub fn map_for_writing(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: `file` is a segment this process just created and preallocated to its full
    // length with fallocate (the caller maps it only after fallocate succeeded), so writes
    // through the map never hit a hole; the archive never truncates a segment; this map is
    // the only writer, and it writes only past the bytes readers are told they may read.
    unsafe { MmapMut::map_mut(file) }
}

/// A read-only shared map of a whole segment file; it sees what the writer's map writes.
/// Only a prefix whose bytes no longer change is ever borrowed from it.
pub struct ReadMap(Mmap);

impl ReadMap {
    /// Maps all of `file` for reading.
    pub fn new(file: &File) -> std::io::Result<ReadMap> {
        // SAFETY: segment files keep their length while they exist and deletion keeps the
        // pages of maps alive, so the mapping stays valid. No reference to the whole map is
        // made: `stable_prefix` borrows only bytes its caller knows no one writes any more.
        unsafe { Mmap::map(file) }.map(ReadMap)
    }

    /// The first `end` bytes of the file (fewer if it is shorter). The caller promises that no
    /// one writes them while they are borrowed: they end at or before the end of the records
    /// the index knows.
    pub fn stable_prefix(&self, end: usize) -> &[u8] {
        let len = end.min(self.0.len());
        // SAFETY: `as_ptr` points at `self.0.len()` mapped, initialized bytes that stay
        // mapped while `self` lives (the borrow keeps it alive), and `len` is within them. By
        // the caller's promise above, no byte of the returned slice changes while it is
        // borrowed: the writer's map writes only past the end of the indexed records.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), len) }
    }
}
