//! Power cuts, for tests. A process crash (`kill -9`) keeps the page cache, so every frame
//! stored before it is on disk in the end; a power cut keeps only what was flushed. This
//! rewrites segment files as a power cut can leave them: in each segment with unflushed
//! records, every 4 KiB page past the last flushed offset holds, at random, what it held at
//! the last flush (zeros past the flushed offset), what was written since, a torn mix of both
//! (whole 512-byte sectors of each), or garbage.

use super::{lock, Archive};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

const PAGE_BYTES: usize = 4096;
const SECTOR_BYTES: usize = 512;

/// A segment with records that were not flushed when the power went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unflushed {
    /// The file.
    pub path: PathBuf,
    /// Records before this offset were flushed: they survive.
    pub flushed: usize,
    /// Where the records ended.
    pub written: usize,
}

impl Archive {
    /// Segments with records not flushed yet.
    pub(super) fn unflushed(&self) -> Vec<Unflushed> {
        let mut out = Vec::new();
        for stream in self.all_streams() {
            let mut s = lock(&stream);
            let mut segments: Vec<_> =
                s.unsynced.iter().map(|u| (u.id, u.flushed, u.written)).collect();
            segments.extend(s.open.as_ref().map(|o| (o.id, o.flushed, o.written)));
            for (id, flushed, written) in segments {
                if written > flushed {
                    let path = s.file(id).expect("indexed").path.clone();
                    out.push(Unflushed { path, flushed, written });
                }
            }
        }
        out
    }
}

/// Cuts the power under `archive` (its last handle): its maps go without a flush and the
/// unflushed part of every segment is lost, kept, torn or garbled page by page, as `seed`
/// draws. Returns what was unflushed.
pub fn power_cut(archive: Arc<Archive>, seed: u64) -> Vec<Unflushed> {
    let unflushed = archive.unflushed();
    assert_eq!(Arc::strong_count(&archive), 1, "no other handle outlives the power cut");
    drop(archive);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for u in &unflushed {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&u.path).unwrap();
        let first_page = u.flushed / PAGE_BYTES * PAGE_BYTES;
        let mut page = first_page;
        while page < u.written {
            let mut bytes = vec![0u8; PAGE_BYTES];
            file.read_exact_at(&mut bytes, page as u64).unwrap();
            // What the disk held at the last flush: the records before `flushed`, zeros after.
            let mut old = bytes.clone();
            let keep = u.flushed.saturating_sub(page).min(PAGE_BYTES);
            old[keep..].fill(0);
            let after = match rng.gen_range(0..4) {
                0 => old,
                1 => bytes,
                2 => {
                    let mut torn = old;
                    for sector in (0..PAGE_BYTES).step_by(SECTOR_BYTES) {
                        if rng.gen_bool(0.5) {
                            torn[sector..sector + SECTOR_BYTES]
                                .copy_from_slice(&bytes[sector..sector + SECTOR_BYTES]);
                        }
                    }
                    torn
                }
                _ => {
                    let mut garbled = old;
                    rng.fill(&mut garbled[keep..]);
                    garbled
                }
            };
            file.write_all_at(&after, page as u64).unwrap();
            page += PAGE_BYTES;
        }
    }
    unflushed
}
