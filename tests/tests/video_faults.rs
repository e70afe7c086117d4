//! Cameras and disks that fail, against a real server: a camera URL to a closed port or a wrong
//! path shows why in the camera's status; an archive on a small tmpfs reports "disk full" when
//! something else took the disk before it stored anything, records once space comes back, and
//! then keeps recording by deleting its oldest segments however full the disk gets — never a
//! crash, and what it records decodes.

use hive_tests::video::{decode, now_ms, require_ffmpeg, test_cameras};
use hive_tests::{free_port, wait_for, Hive, Spec, OWNER_PASSWORD};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` at `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs as the full disk needs root");
        Tmpfs(at.to_owned())
    }

    /// Bytes free on it.
    fn free_bytes(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df prints free bytes")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file of `bytes` zeros at `path`, or as much as fits; returns what was written.
fn fill(path: &Path, bytes: u64) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    let mut written = 0;
    while written < bytes {
        let n = block.len().min((bytes - written) as usize);
        if file.write_all(&block[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    let _ = file.sync_all();
    written
}

fn status(hive: &Hive, id: &str) -> Value {
    hive.api().get(&format!("/api/cameras/{id}/status")).1
}

fn reason_of(s: &Value) -> String {
    s["status"]["reason"].as_str().unwrap_or("").to_owned()
}

fn add_camera(hive: &Hive, name: &str, url: &str) -> String {
    let (code, cam) = hive.api().post("/api/cameras", &json!({ "name": name, "url": url }));
    assert_eq!(code, 201, "{cam}");
    cam["id"].as_str().unwrap().to_owned()
}

#[test]
fn camera_faults_show_their_reason_and_a_full_disk_is_a_status_never_a_crash() {
    require_ffmpeg();
    let camera_port = free_port();
    let _cameras = test_cameras(2, camera_port, None, &[]);

    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("hive.toml");
    std::fs::write(&config, "archive_segment_bytes = 1048576\n").unwrap();
    let mut spec = Spec::new("rec", "Faults", "secret-faults", hive_tests::discovery_port());
    spec.extra = vec!["--config".into(), config.display().to_string()];
    let mut hive = Hive::start(spec);
    // The archive on a disk of 8 MiB: stop the server, mount it, start again.
    hive.kill9();
    let disk = Tmpfs::mount(&hive.data_dir.join("archive"), "8m");
    hive.spawn();

    // The disk is full before the cameras come: with nothing of its own to delete, the archive
    // says so in the cameras' status.
    let hog = disk.0.join("hog");
    fill(&hog, u64::MAX);
    // A camera nobody listens for, and a path the camera does not serve.
    let refused_url = format!("rtsp://127.0.0.1:{}/cam1", free_port());
    let refused = add_camera(&hive, "refused", &refused_url);
    let missing =
        add_camera(&hive, "wrong path", &format!("rtsp://127.0.0.1:{camera_port}/no-such-camera"));
    let ids: Vec<String> = (1..=2)
        .map(|n| {
            add_camera(&hive, &format!("cam{n}"), &format!("rtsp://127.0.0.1:{camera_port}/cam{n}"))
        })
        .collect();
    wait_for("the refused camera to say why", Duration::from_secs(20), || {
        let s = status(&hive, &refused);
        (s["status"]["state"] == "error" && reason_of(&s) == "connection refused", s)
    });
    wait_for("the camera with a wrong path to say why", Duration::from_secs(20), || {
        let s = status(&hive, &missing);
        (reason_of(&s).starts_with("404 from camera"), s)
    });
    for id in &ids {
        wait_for("the cameras to report the full disk", Duration::from_secs(20), || {
            let s = status(&hive, id);
            (s["status"]["state"] == "error" && reason_of(&s) == "disk full", s)
        });
    }
    assert!(hive.is_running(), "the server must survive a full disk");

    // Space comes back: both record.
    std::fs::remove_file(&hog).unwrap();
    let resumed_ms = now_ms();
    for id in &ids {
        wait_for("recording to start once there is room", Duration::from_secs(20), || {
            let s = status(&hive, id);
            (s["status"]["state"] == "recording", s)
        });
    }

    // Leave room for three segments besides the two being written: retention deletes the
    // oldest to go on, and the cameras keep recording.
    let first_from_ms = |id: &str| {
        let (_, ranges) = hive.api().get(&format!("/api/cameras/{id}/archive"));
        ranges["ranges"][0]["from_ms"].as_i64().unwrap_or(i64::MAX)
    };
    let started_from = first_from_ms(&ids[0]).min(first_from_ms(&ids[1]));
    assert!(started_from >= resumed_ms - 1_000, "nothing was recorded while the disk was full");
    fill(&disk.0.join("filler"), disk.free_bytes().saturating_sub(3 << 20));
    wait_for("retention to delete the oldest segments", Duration::from_secs(60), || {
        let from = first_from_ms(&ids[0]).min(first_from_ms(&ids[1]));
        (from > started_from, json!({ "from": from, "started": started_from }))
    });

    // The rest of the disk taken too: the archive goes on in the space of its own oldest
    // segments, through at least one more segment of each camera.
    fill(&disk.0.join("filler-2"), u64::MAX);
    let filled_ms = now_ms();
    let deletions = || hive.log_text().matches("retention deletes a segment").count();
    let deleted = deletions();
    wait_for("two more segments to take the place of the oldest", Duration::from_secs(60), || {
        (deletions() >= deleted + 2, json!({ "deleted": deletions() }))
    });
    for id in &ids {
        let s = status(&hive, id);
        assert_eq!(s["status"]["state"], "recording", "{s}");
    }
    assert!(hive.is_running(), "the server must survive a full disk");

    // What was recorded on the full disk decodes cleanly.
    let url = format!("rtsp://admin:{OWNER_PASSWORD}@{}/{}", hive.rtsp, ids[0]);
    let (ok, errors) = decode(&format!("{url}?pos={filled_ms}"), 3);
    assert!(ok && errors.is_empty(), "archive recorded on a full disk: {errors}");
    drop(hive);
    drop(disk);
}
