//! Video with real clients: a `hive testcamera` (with Basic or Digest credentials), a server recording it, and
//! ffprobe/ffmpeg from Debian watching live and from the archive; wrong credentials get 401;
//! after `kill -9` the archive still decodes.

use hive_tests::video::{decode, frames, now_ms, require_ffmpeg, test_cameras};
use hive_tests::{free_port, wait_for, Hive, Spec, OWNER_PASSWORD};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_recorded_test_camera_plays_live_and_from_the_archive_and_survives_kill_9() {
    require_ffmpeg();
    let camera_port = free_port();
    // The test camera itself: ffprobe reads it with its credentials.
    let _cameras = test_cameras(2, camera_port, Some("viewer:cam-pass"), &[]);
    let camera_url = format!("rtsp://viewer:cam-pass@127.0.0.1:{camera_port}/cam1");

    let spec = Spec::new("rec", "Video", "secret-video", hive_tests::discovery_port());
    let mut hive = Hive::start(spec);
    let (status, cam) =
        hive.api().post("/api/cameras", &json!({ "name": "front door", "url": camera_url }));
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    let (status, bad) = hive.api().post(
        "/api/cameras",
        &json!({ "name": "wrong password", "url": format!("rtsp://viewer:nope@127.0.0.1:{camera_port}/cam2") }),
    );
    assert_eq!(status, 201, "{bad}");
    let bad_id = bad["id"].as_str().unwrap().to_owned();

    let started_ms = now_ms();
    wait_for("the camera to record", Duration::from_secs(20), || {
        let (_, s) = hive.api().get(&format!("/api/cameras/{id}/status"));
        (s["status"]["state"] == "recording", s)
    });
    // Most cameras ask for Digest: a camera that does records too, and with a wrong password
    // shows the same 401 reason.
    let digest_port = free_port();
    let _digest_cameras = test_cameras(2, digest_port, Some("viewer:cam-pass"), &["--digest"]);
    let digest_ids: Vec<String> = ["cam-pass", "nope"]
        .iter()
        .map(|password| {
            let url = format!("rtsp://viewer:{password}@127.0.0.1:{digest_port}/cam1");
            let (status, cam) = hive
                .api()
                .post("/api/cameras", &json!({ "name": format!("digest {password}"), "url": url }));
            assert_eq!(status, 201, "{cam}");
            cam["id"].as_str().unwrap().to_owned()
        })
        .collect();
    wait_for("the Digest camera to record", Duration::from_secs(20), || {
        let (_, s) = hive.api().get(&format!("/api/cameras/{}/status", digest_ids[0]));
        (s["status"]["state"] == "recording", s)
    });
    wait_for(
        "the Digest camera with a wrong password to show why",
        Duration::from_secs(20),
        || {
            let (_, s) = hive.api().get(&format!("/api/cameras/{}/status", digest_ids[1]));
            let reason = s["status"]["reason"].as_str().unwrap_or("").to_owned();
            (reason.contains("401"), s)
        },
    );
    wait_for("the camera with wrong credentials to show why", Duration::from_secs(20), || {
        let (_, s) = hive.api().get(&format!("/api/cameras/{bad_id}/status"));
        let reason = s["status"]["reason"].as_str().unwrap_or("").to_owned();
        (reason.contains("401"), s)
    });

    let user = format!("admin:{OWNER_PASSWORD}");
    let live = format!("rtsp://{user}@{}/{id}", hive.rtsp);
    // Live: frames come at the camera's pace (25 fps) and decode cleanly.
    let n = frames(&live, 3);
    assert!(n >= 50, "{n} frames in 3 s of live");
    let (ok, errors) = decode(&live, 3);
    assert!(ok && errors.is_empty(), "live decode: {errors}");
    // No user, or a wrong password: 401, no video.
    for url in
        [format!("rtsp://{}/{id}", hive.rtsp), format!("rtsp://admin:wrong@{}/{id}", hive.rtsp)]
    {
        let out = Command::new("timeout")
            .args(["20", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", &url])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{url}");
    }

    // The archive from a position seconds ago: decodes with no error.
    std::thread::sleep(Duration::from_secs(2));
    let pos = started_ms + 2_000;
    let archive = format!("{live}?pos={pos}");
    let (ok, errors) = decode(&archive, 3);
    assert!(ok && errors.is_empty(), "archive decode: {errors}");
    let (_, ranges) = hive.api().get(&format!("/api/cameras/{id}/archive"));
    let first = &ranges["ranges"][0];
    assert!(first["from_ms"].as_i64().unwrap() <= pos, "{ranges}");

    // kill -9 while recording, restart: what was recorded before still decodes, and at most
    // about a second before the kill is missing.
    std::thread::sleep(Duration::from_secs(2));
    let killed_ms = now_ms();
    hive.kill9();
    hive.spawn();
    let (_, ranges) = hive.api().get(&format!("/api/cameras/{id}/archive"));
    let last = ranges["ranges"][0]["to_ms"].as_i64().unwrap();
    assert!(killed_ms - last < 1_500, "{} ms lost before the kill: {ranges}", killed_ms - last);
    let (ok, errors) = decode(&format!("{live}?pos={}", started_ms + 1_000), 3);
    assert!(ok && errors.is_empty(), "archive after kill -9: {errors}");
}
