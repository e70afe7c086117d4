//! The archive against real files: reopening, seeking, reading while writing, damage, power
//! cuts, retention and a full disk.

use super::*;
use bytes::Bytes;
use hive_media::archive::record;
use hive_media::archive::DamageKind;
use hive_media::frame::{Codec, Frame};
use std::path::Path;

const CAM: CameraId = CameraId(0xabc);
const T0_US: i64 = 1_700_000_000_000_000;
/// 25 frames a second.
const FRAME_US: i64 = 40_000;

/// Frame `n` of a test stream: a keyframe every 25, payload bytes that say which frame it is.
fn frame(n: i64) -> Frame {
    let len = 3_000 + (n as usize % 7) * 100;
    let data: Vec<u8> = (0..len).map(|i| (n as usize * 31 + i) as u8).collect();
    Frame {
        time_us: T0_US + n * FRAME_US,
        keyframe: n % 25 == 0,
        codec: Codec::H264,
        data: Bytes::from(data),
    }
}

fn frames(range: std::ops::Range<i64>) -> Vec<Frame> {
    range.map(frame).collect()
}

/// The numbers of test frames (payloads are too long to print).
fn numbers(frames: &[Frame]) -> Vec<i64> {
    frames.iter().map(|f| (f.time_us - T0_US) / FRAME_US).collect()
}

/// Asserts that `got` are exactly the frames `want`, printing frame numbers if not.
#[track_caller]
fn assert_frames(got: &[Frame], want: &[Frame]) {
    assert_eq!(numbers(got), numbers(want));
    assert!(got == want, "same times, different frames");
}

fn config(segment_bytes: u64, max_bytes: u64) -> ArchiveConfig {
    ArchiveConfig { segment_bytes, max_bytes, max_days: 0 }
}

fn store(archive: &Arc<Archive>, camera: CameraId, frames: &[Frame]) {
    let writer = archive.writer(camera, 0);
    for f in frames {
        writer.append(f).unwrap();
    }
}

/// Every frame of `camera`'s primary stream, from its first keyframe on.
fn read_all(archive: &Archive, camera: CameraId) -> Vec<Frame> {
    let Some(reader) = archive.reader(camera, 0) else { return Vec::new() };
    let Some(first) = reader.seek(i64::MIN) else { return Vec::new() };
    let mut at = first.position;
    let mut out = Vec::new();
    loop {
        let batch = reader.read_batch(at, 64 << 10).unwrap();
        if batch.frames.is_empty() {
            return out;
        }
        out.extend(batch.frames);
        at = batch.next;
    }
}

fn segment_files(root: &Path, camera: CameraId) -> Vec<PathBuf> {
    let dir = files::stream_dir(root, camera, 0);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// Offset of frame `n`'s record in the first segment, when every frame from 0 is in it.
fn offset_of(n: i64) -> usize {
    SEGMENT_HEADER_LEN + (0..n).map(|i| record::record_len(frame(i).data.len())).sum::<usize>()
}

#[test]
fn frames_read_back_after_reopening_across_segments_and_a_seek_lands_on_a_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let written = frames(0..300);
    {
        let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
        store(&archive, CAM, &written);
        archive.flush().unwrap();
        assert_frames(&read_all(&archive, CAM), &written);
    }
    assert!(segment_files(dir.path(), CAM).len() > 3, "the frames span several segments");
    let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
    assert_eq!(archive.recovery(), &RecoveryReport::default());
    assert_frames(&read_all(&archive, CAM), &written);
    let reader = archive.reader(CAM, 0).unwrap();
    for (at, keyframe) in [(137, 125), (125, 125), (124, 100), (-5, 0), (10_000, 275)] {
        let found = reader.seek(frame(0).time_us + at * FRAME_US).unwrap();
        assert_eq!(found.time_us, frame(keyframe).time_us, "seek to frame {at}");
        let batch = reader.read_batch(found.position, 1).unwrap();
        assert_frames(&batch.frames, &[frame(keyframe)]);
    }
    let ranges = archive.ranges(CAM, 0, 0, i64::MAX);
    assert_eq!(ranges, vec![Range { from_us: frame(0).time_us, to_us: frame(299).time_us }]);
    // Appending goes on after the frames of the last run, in a new segment.
    store(&archive, CAM, &frames(300..310));
    assert_frames(&read_all(&archive, CAM), &frames(0..310));
}

#[test]
fn a_reader_sees_frames_as_they_are_appended_to_the_segment_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
    let writer = archive.writer(CAM, 0);
    writer.append(&frame(0)).unwrap();
    let reader = archive.reader(CAM, 0).unwrap();
    let mut at = reader.seek(0).unwrap().position;
    let mut read = Vec::new();
    for n in 1..200 {
        writer.append(&frame(n)).unwrap();
        if n % 7 == 0 {
            let batch = reader.read_batch(at, 1 << 20).unwrap();
            read.extend(batch.frames);
            at = batch.next;
        }
    }
    let batch = reader.read_batch(at, 1 << 20).unwrap();
    read.extend(batch.frames);
    assert_frames(&read, &frames(0..200));

    // And from another thread while the writer goes on.
    let appender = std::thread::spawn(move || {
        for n in 200..600 {
            writer.append(&frame(n)).unwrap();
        }
    });
    let mut at = batch.next;
    let mut read = Vec::new();
    while read.last() != Some(&frame(599)) {
        let batch = reader.read_batch(at, 32 << 10).unwrap();
        read.extend(batch.frames);
        at = batch.next;
        std::thread::yield_now();
    }
    appender.join().unwrap();
    assert_frames(&read, &frames(200..600));
}

#[tokio::test]
async fn reads_run_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
    store(&archive, CAM, &frames(0..30));
    let reader = archive.reader(CAM, 0).unwrap();
    let batch = reader.read(reader.seek(0).unwrap().position, 1 << 20).await.unwrap();
    assert_frames(&batch.frames, &frames(0..30));
}

#[test]
fn a_flipped_byte_loses_one_frame_is_reported_where_it_is_and_everything_else_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let written = frames(0..50);
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        store(&archive, CAM, &written);
        archive.flush().unwrap();
    }
    let file = &segment_files(dir.path(), CAM)[0];
    let mut bytes = std::fs::read(file).unwrap();
    // Inside frame 10's payload, and in frame 30's header.
    bytes[offset_of(10) + 100] ^= 0x40;
    bytes[offset_of(30) + 5] ^= 0x01;
    std::fs::write(file, &bytes).unwrap();

    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    let damage: Vec<(usize, usize, DamageKind)> =
        archive.recovery().damage.iter().map(|(_, d)| (d.offset, d.len, d.kind)).collect();
    let len = |n| record::record_len(frame(n).data.len());
    assert_eq!(
        damage,
        vec![
            (
                offset_of(10),
                len(10),
                DamageKind::Frame { time_us: frame(10).time_us, keyframe: false }
            ),
            (
                offset_of(30),
                len(30),
                DamageKind::Unreadable { error: record::RecordError::HeaderChecksum }
            ),
        ]
    );
    let expect: Vec<Frame> =
        written.iter().filter(|f| f != &&frame(10) && f != &&frame(30)).cloned().collect();
    assert_frames(&read_all(&archive, CAM), &expect);
    // The damage stays where it is; it is reported again on the next start.
    drop(archive);
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_eq!(archive.recovery().damage.len(), 2);
}

#[test]
fn a_damaged_segment_header_still_serves_the_frames_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        store(&archive, CAM, &frames(0..20));
        archive.flush().unwrap();
    }
    let file = &segment_files(dir.path(), CAM)[0];
    let mut bytes = std::fs::read(file).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(file, &bytes).unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_eq!(archive.recovery().damaged_headers.len(), 1);
    assert_frames(&read_all(&archive, CAM), &frames(0..20));
}

#[test]
fn a_truncated_segment_keeps_every_whole_frame_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        store(&archive, CAM, &frames(0..40));
        archive.flush().unwrap();
    }
    let file = &segment_files(dir.path(), CAM)[0];
    // Cut in the middle of frame 25.
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len((offset_of(25) + 1_000) as u64)
        .unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_frames(&read_all(&archive, CAM), &frames(0..25));
    assert!(archive.recovery().damage.is_empty());
    let torn = &archive.recovery().torn_tails;
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].1.offset, offset_of(25));
    // Recording goes on in a new segment.
    store(&archive, CAM, &frames(40..45));
    let mut expect = frames(0..25);
    expect.extend(frames(40..45));
    assert_frames(&read_all(&archive, CAM), &expect);
}

#[test]
fn a_torn_tail_is_cut_and_not_reported_as_damage_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        store(&archive, CAM, &frames(0..10));
        archive.flush().unwrap();
    }
    let file = &segment_files(dir.path(), CAM)[0];
    let mut bytes = std::fs::read(file).unwrap();
    // Half of frame 9 reached the disk.
    let torn_from = offset_of(9) + 1_500;
    bytes[torn_from..offset_of(10)].fill(0);
    std::fs::write(file, &bytes).unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_frames(&read_all(&archive, CAM), &frames(0..9));
    assert_eq!(archive.recovery().torn_tails.len(), 1);
    drop(archive);
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes[offset_of(9)..].iter().all(|&b| b == 0), "the tail was zeroed");
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_eq!(archive.recovery(), &RecoveryReport::default());
}

#[test]
fn a_page_lost_in_the_middle_is_reported_and_the_frames_after_it_are_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        store(&archive, CAM, &frames(0..60));
        archive.flush().unwrap();
    }
    // The filesystem lost a page's blocks: it reads as a hole, zeros.
    let file =
        std::fs::OpenOptions::new().write(true).open(&segment_files(dir.path(), CAM)[0]).unwrap();
    let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    rustix::fs::fallocate(&file, flags, 32 << 10, 4 << 10).unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    let hit: Vec<i64> = (0..60)
        .filter(|&n| {
            let (from, to) = (offset_of(n), offset_of(n + 1));
            from < (36 << 10) && to > (32 << 10)
        })
        .collect();
    let expect: Vec<Frame> = (0..60).filter(|n| !hit.contains(n)).map(frame).collect();
    assert_frames(&read_all(&archive, CAM), &expect);
    // Reported from the first record hit on, covering every record hit.
    let damage = &archive.recovery().damage;
    assert_eq!(damage[0].1.offset, offset_of(hit[0]));
    for n in hit {
        let covered =
            damage.iter().any(|(_, d)| (d.offset..d.offset + d.len).contains(&offset_of(n)));
        assert!(covered, "frame {n} not reported: {damage:?}");
    }
}

#[test]
fn a_power_cut_loses_only_unflushed_frames_and_never_serves_a_corrupt_one() {
    let (mut lost, mut kept_unflushed, mut reports) = (0, 0, 0);
    for seed in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path(), config(96 << 10, 1 << 30)).unwrap();
        let flushed_through = 20 + seed * 3;
        let stored = flushed_through + 2 + (seed * 7) % 60;
        store(&archive, CAM, &frames(0..flushed_through + 1));
        archive.flush().unwrap();
        store(&archive, CAM, &frames(flushed_through + 1..stored));
        let unflushed = power_cut(archive, seed as u64);
        assert!(!unflushed.is_empty(), "seed {seed}: something was unflushed");

        let archive = Archive::open(dir.path(), config(96 << 10, 1 << 30)).unwrap();
        let read = read_all(&archive, CAM);
        // Every flushed frame, then some of the unflushed ones, each intact.
        assert_frames(&read[..=flushed_through as usize], &frames(0..flushed_through + 1));
        let mut later = frames(flushed_through + 1..stored).into_iter();
        for f in &read[flushed_through as usize + 1..] {
            assert!(
                later.any(|w| &w == f),
                "seed {seed}: a frame that was never stored, or out of order"
            );
        }
        let unflushed_frames = (stored - flushed_through - 1) as usize;
        kept_unflushed += read.len() - flushed_through as usize - 1;
        lost += unflushed_frames - (read.len() - flushed_through as usize - 1);
        let report = archive.recovery();
        reports += report.damage.len() + report.torn_tails.len();
        // Recording goes on.
        store(&archive, CAM, &frames(stored..stored + 5));
        assert_eq!(read_all(&archive, CAM).last(), Some(&frame(stored + 4)));
    }
    // The cuts did lose, keep and tear unflushed frames.
    assert!(lost > 0 && kept_unflushed > 0 && reports > 0, "{lost} {kept_unflushed} {reports}");
}

#[test]
fn flushing_every_interval_bounds_what_a_power_cut_loses_to_that_interval() {
    let interval_frames = (FLUSH_INTERVAL.as_micros() as i64) / FRAME_US;
    for seed in 0..10u64 {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path(), config(128 << 10, 1 << 30)).unwrap();
        let writer = archive.writer(CAM, 0);
        let stored = 100 + seed as i64 * 17;
        let mut flushed_at = None;
        for n in 0..stored {
            writer.append(&frame(n)).unwrap();
            // The flusher's clock is frame time here.
            if n % interval_frames == interval_frames - 1 {
                archive.flush().unwrap();
                flushed_at = Some(n);
            }
        }
        drop(writer);
        power_cut(archive, seed);
        let archive = Archive::open(dir.path(), config(128 << 10, 1 << 30)).unwrap();
        let read = read_all(&archive, CAM);
        let flushed_at = flushed_at.unwrap();
        assert_frames(&read[..=flushed_at as usize], &frames(0..flushed_at + 1));
        let lost_us = frame(stored - 1).time_us - frame(flushed_at).time_us;
        assert!(lost_us <= FLUSH_INTERVAL.as_micros() as i64, "seed {seed}: {lost_us} µs at risk");
    }
}

#[test]
fn retention_by_bytes_deletes_the_oldest_segments_of_the_storage_first() {
    let dir = tempfile::tempdir().unwrap();
    let other = CameraId(0xdef);
    let archive = Archive::open(dir.path(), config(64 << 10, 512 << 10)).unwrap();
    // The other camera's frames are older than this one's: its segments go first.
    let older: Vec<Frame> = frames(0..60)
        .into_iter()
        .map(|mut f| {
            f.time_us -= 3_600_000_000;
            f
        })
        .collect();
    store(&archive, other, &older);
    let before = segment_files(dir.path(), other).len();
    assert!(before >= 2);
    store(&archive, CAM, &frames(0..60));
    assert!(archive.bytes_used() <= 512 << 10);
    store(&archive, CAM, &frames(60..120));
    assert!(archive.bytes_used() <= 512 << 10, "{} used", archive.bytes_used());
    let left = segment_files(dir.path(), other).len();
    assert!(left < before, "the older camera lost segments first ({before} → {left})");
    assert_eq!(read_all(&archive, CAM).last(), Some(&frame(119)));
    // What is left of a stream is its newest frames, from a keyframe on.
    let read = read_all(&archive, CAM);
    assert!(read[0].keyframe);
    assert_frames(&read, &frames(120 - read.len() as i64..120));
    assert_eq!(archive.ranges(CAM, 0, 0, i64::MAX)[0].from_us, read[0].time_us);
}

#[test]
fn retention_by_days_deletes_segments_past_the_age_limit_but_not_the_one_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ArchiveConfig { segment_bytes: 64 << 10, max_bytes: 1 << 30, max_days: 1 };
    let archive = Archive::open(dir.path(), cfg).unwrap();
    store(&archive, CAM, &frames(0..100));
    let before = segment_files(dir.path(), CAM).len();
    assert!(before > 2);
    archive.enforce_retention(frame(0).time_us + 86_400_000_000 - 1);
    assert_eq!(segment_files(dir.path(), CAM).len(), before, "not a day old yet");
    archive.enforce_retention(frame(99).time_us + 2 * 86_400_000_000);
    assert_eq!(segment_files(dir.path(), CAM).len(), 1, "all but the segment being written");
    assert_eq!(archive.bytes_used(), 64 << 10);
}

#[test]
fn a_reader_in_a_deleted_segment_goes_on_at_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(64 << 10, 1 << 30)).unwrap();
    store(&archive, CAM, &frames(0..100));
    let reader = archive.reader(CAM, 0).unwrap();
    let start = reader.seek(0).unwrap().position;
    let first = reader.read_batch(start, 1).unwrap();
    assert_frames(&first.frames, &[frame(0)]);
    assert!(archive.delete_oldest("test"));
    let batch = reader.read_batch(first.next, 1).unwrap();
    assert!(batch.frames[0].time_us > frame(1).time_us, "went on in the next segment");
    assert_ne!(batch.next.segment, start.segment);
}

#[test]
fn a_frame_older_than_the_last_one_or_too_large_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(64 << 10, 1 << 30)).unwrap();
    let writer = archive.writer(CAM, 0);
    writer.append(&frame(0)).unwrap();
    writer.append(&frame(5)).unwrap();
    assert!(matches!(
        writer.append(&frame(4)),
        Err(ArchiveError::Index(hive_media::archive::IndexError::TimeWentBack { .. }))
    ));
    let mut big = frame(25);
    big.data = Bytes::from(vec![0; 64 << 10]);
    assert!(matches!(writer.append(&big), Err(ArchiveError::FrameTooLarge { .. })));
    assert_frames(&read_all(&archive, CAM), &[frame(0), frame(5)]);
}

#[test]
fn after_a_failed_append_nothing_is_stored_until_the_next_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(64 << 10, 1 << 30)).unwrap();
    let writer = archive.writer(CAM, 0);
    store(&archive, CAM, &frames(0..10));
    let mut big = frame(10);
    big.data = Bytes::from(vec![0; 64 << 10]);
    assert!(matches!(writer.append(&big), Err(ArchiveError::FrameTooLarge { .. })));
    // Frames 11..25 depend on the lost frame 10: a decoder could not use them.
    for f in frames(11..25) {
        assert!(matches!(writer.append(&f), Err(ArchiveError::AwaitingKeyframe)));
    }
    store(&archive, CAM, &frames(25..30));
    let want: Vec<Frame> = frames(0..10).into_iter().chain(frames(25..30)).collect();
    assert_frames(&read_all(&archive, CAM), &want);
}

#[test]
fn files_that_are_not_segments_are_left_alone_and_empty_segments_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let archive = Archive::open(dir.path(), config(64 << 10, 1 << 30)).unwrap();
        store(&archive, CAM, &frames(0..5));
        archive.flush().unwrap();
    }
    let stream_dir = files::stream_dir(dir.path(), CAM, 0);
    std::fs::write(stream_dir.join("notes.txt"), b"hello").unwrap();
    std::fs::write(dir.path().join("README"), b"hello").unwrap();
    // A segment whose making was interrupted before its header was written.
    let interrupted = stream_dir.join(files::segment_name(SegmentId(2), T0_US));
    std::fs::write(&interrupted, vec![0u8; 64 << 10]).unwrap();
    let archive = Archive::open(dir.path(), config(64 << 10, 1 << 30)).unwrap();
    assert_eq!(archive.recovery().ignored.len(), 2);
    assert_eq!(archive.recovery().removed, vec![interrupted.clone()]);
    assert!(!interrupted.exists() && stream_dir.join("notes.txt").exists());
    assert_frames(&read_all(&archive, CAM), &frames(0..5));
    store(&archive, CAM, &frames(5..10));
    assert_frames(&read_all(&archive, CAM), &frames(0..10));
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&at).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_an_error_never_a_crash_and_retention_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(dir.path().join("small"), "1m")
        .expect("mounting a tmpfs as the full disk (needs root, as the test command runs)");
    // The byte budget is far above the disk: only the disk stops it.
    let archive = Archive::open(&disk.0.join("a"), config(192 << 10, 1 << 30)).unwrap();
    store(&archive, CAM, &frames(0..1_000));
    assert_eq!(read_all(&archive, CAM).last(), Some(&frame(999)));
    assert!(archive.bytes_used() <= 1 << 20);

    // Another archive on the same disk fills the rest: this one cannot make a segment, has
    // nothing of its own to delete, and says so.
    let other = Archive::open(&disk.0.join("b"), config(960 << 10, 1 << 30)).unwrap();
    let full = other.writer(CAM, 0).append(&frame(0));
    assert!(matches!(full, Err(ArchiveError::DiskFull { .. })), "{full:?}");
    // And again at once, without touching the disk.
    let keyframe = frame(25);
    assert!(matches!(other.writer(CAM, 0).append(&keyframe), Err(ArchiveError::DiskFull { .. })));
    drop(other);

    // The first archive goes on: retention deletes its oldest segments for room.
    store(&archive, CAM, &frames(1_000..1_500));
    assert_eq!(read_all(&archive, CAM).last(), Some(&frame(1_499)));
    drop(archive);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_runtime_task_appends_across_segments_making_each_off_its_worker() {
    // A recorder appends from a tokio task: segments it makes there go through
    // `block_in_place` (which would panic on a current-thread runtime, hence the check of the
    // flavor), and a ticker sharing the single worker still runs to its end.
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
    let ticker = tokio::spawn(async {
        for _ in 0..10 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    let written = frames(0..300);
    let appender = {
        let archive = archive.clone();
        let written = written.clone();
        tokio::spawn(async move { store(&archive, CAM, &written) })
    };
    appender.await.unwrap();
    ticker.await.unwrap();
    assert!(segment_files(dir.path(), CAM).len() > 3, "the frames span several segments");
    assert_frames(&read_all(&archive, CAM), &written);
}
