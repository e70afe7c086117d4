//! The archive against real files: reopen, seek, crash damage, retention, a full disk.

use super::*;
use bytes::Bytes;
use hive_core::ids::CameraId;
use hive_media::frame::{Codec, Frame};

const CAM: CameraId = CameraId(0xabc);

fn frame(n: i64) -> Frame {
    Frame {
        time_us: 1_000_000_000 + n * 40_000,
        keyframe: n % 25 == 0,
        codec: Codec::H264,
        data: Bytes::from(vec![n as u8; 3_000 + (n as usize % 7) * 100]),
    }
}

fn config(segment_bytes: u64, max_bytes: u64) -> ArchiveConfig {
    ArchiveConfig { segment_bytes, max_bytes, max_days: 0 }
}

fn read_all(archive: &Archive) -> Vec<Frame> {
    let mut cursor = archive.seek(CAM, 0, i64::MIN).unwrap();
    let mut out = Vec::new();
    loop {
        let (frames, next) = archive.read(CAM, 0, cursor, 1 << 20);
        if frames.is_empty() {
            return out;
        }
        out.extend(frames);
        cursor = next;
    }
}

#[test]
fn frames_read_back_after_reopening_across_segments_and_a_seek_lands_on_a_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Frame> = (0..300).map(frame).collect();
    {
        let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
        for f in &written {
            archive.append(CAM, 0, f).unwrap();
        }
        archive.flush().unwrap();
        assert_eq!(read_all(&archive), written);
    }
    let archive = Archive::open(dir.path(), config(256 << 10, 1 << 30)).unwrap();
    assert_eq!(read_all(&archive), written);
    let at = frame(137).time_us;
    let cursor = archive.seek(CAM, 0, at).unwrap();
    let (frames, _) = archive.read(CAM, 0, cursor, 1);
    assert_eq!(frames[0], frame(125));
    let ranges = archive.ranges(CAM, 0, 0, i64::MAX);
    assert_eq!(ranges, vec![(frame(0).time_us, frame(299).time_us)]);
}

fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(CAM.to_string()).join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_flipped_byte_loses_one_frame_and_everything_else_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Frame> = (0..50).map(frame).collect();
    {
        let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
        for f in &written {
            archive.append(CAM, 0, f).unwrap();
        }
        archive.flush().unwrap();
    }
    let file = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(file).unwrap();
    // Inside frame 10's payload.
    let offset = 64
        + (0..10).map(|n| hive_media::archive::record_len(frame(n).data.len())).sum::<usize>()
        + 100;
    bytes[offset] ^= 0x40;
    std::fs::write(file, &bytes).unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    let read = read_all(&archive);
    let expect: Vec<Frame> =
        written.iter().filter(|f| f.time_us != frame(10).time_us).cloned().collect();
    assert_eq!(read, expect);
}

#[test]
fn a_power_cut_loses_only_what_was_not_flushed_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    for n in 0..40 {
        archive.append(CAM, 0, &frame(n)).unwrap();
    }
    archive.flush().unwrap();
    for n in 40..60 {
        archive.append(CAM, 0, &frame(n)).unwrap();
    }
    let unflushed = archive.unflushed_bytes();
    assert!(unflushed > 0);
    drop(archive);
    // The power cut: pages after the flushed point never reached the disk, except a torn
    // half of one: keep 1,500 bytes past the flush, zero the rest.
    let file = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(file).unwrap();
    let flushed =
        64 + (0..40).map(|n| hive_media::archive::record_len(frame(n).data.len())).sum::<usize>();
    bytes[flushed + 1_500..].fill(0);
    std::fs::write(file, &bytes).unwrap();
    let archive = Archive::open(dir.path(), config(1 << 20, 1 << 30)).unwrap();
    assert_eq!(read_all(&archive), (0..40).map(frame).collect::<Vec<_>>());
    // Appending goes on after the cut.
    archive.append(CAM, 0, &frame(100)).unwrap();
    assert_eq!(read_all(&archive).last(), Some(&frame(100)));
}

#[test]
fn retention_by_bytes_deletes_the_oldest_segments_first() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), config(64 << 10, 256 << 10)).unwrap();
    for n in 0..400 {
        archive.append(CAM, 0, &frame(n)).unwrap();
    }
    assert!(archive.bytes_used() <= 256 << 10);
    let read = read_all(&archive);
    assert_eq!(read.last(), Some(&frame(399)));
    assert!(read[0].time_us > frame(0).time_us);
    assert!(read[0].keyframe || read[0].time_us > frame(0).time_us);
}

#[test]
fn retention_by_days_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ArchiveConfig { segment_bytes: 64 << 10, max_bytes: 1 << 30, max_days: 1 };
    let archive = Archive::open(dir.path(), cfg).unwrap();
    for n in 0..100 {
        archive.append(CAM, 0, &frame(n)).unwrap();
    }
    let before = segment_files(dir.path()).len();
    archive.enforce_retention(frame(99).time_us + 2 * 86_400 * 1_000_000);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "all but the segment being written ({before} before)"
    );
}

#[test]
fn a_full_disk_is_an_error_and_retention_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    // The byte budget is larger than the disk: only the disk stops it.
    let archive = Archive::open(&mount, config(300 << 10, 1 << 30)).unwrap();
    for n in 0..2_000 {
        archive.append(CAM, 0, &frame(n)).unwrap();
    }
    let read = read_all(&archive);
    assert_eq!(read.last(), Some(&frame(1_999)));
    // A segment larger than the disk cannot be made at all: a clear error, no crash.
    let big = Archive::open(&mount.join("big"), config(4 << 20, 1 << 30)).unwrap();
    assert!(matches!(big.append(CameraId(1), 0, &frame(0)), Err(ArchiveError::DiskFull)));
}
