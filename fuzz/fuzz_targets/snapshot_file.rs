//! Snapshot files. The file reader (`decode` in `shell/src/storage/snapshot.rs`) is
//! crate-private, so the input is the `snapshot` file of an in-memory data directory, read by the
//! public `Persistence::load`. A snapshot that loads must survive being written again and
//! reloaded.
#![no_main]

use hive::storage::Persistence;
use hive_fuzz::frames::frames;
use hive_fuzz::mem_fs::{block_on, MemFs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Frames with checksums made right, so mutated headers and chunks get past the crc32.
    check(&frames(data).flatten().collect::<Vec<u8>>());
});

fn check(file: &[u8]) {
    let fs = MemFs::with_file("snapshot", file);
    let Ok((mut store, loaded)) = block_on(Persistence::load(fs.clone(), hive::driver::is_record))
    else {
        return;
    };
    let body = loaded.snapshot.expect("a snapshot file that loads has a body");
    let generation = loaded.report.generation;
    assert_eq!(store.generation(), generation);

    block_on(store.write_snapshot(&body)).expect("an in-memory snapshot write succeeds");
    assert_eq!(store.generation(), generation.next());
    let (_, reloaded) =
        block_on(Persistence::load(fs, hive::driver::is_record)).unwrap_or_else(|e| {
            panic!("the snapshot written after loading {generation} does not load: {e}")
        });
    assert_eq!(reloaded.snapshot, Some(body));
    assert_eq!(reloaded.report.generation, generation.next());
}
