//! A camera as most current ones are: an H.265 primary stream and a low-resolution H.264
//! secondary one. A server records both; the camera view tells a client where each plays;
//! ffprobe and ffmpeg from Debian play both live and from the archive; taking the secondary
//! stream out of the record stops its recorder. Skips (with a message) when ffmpeg is missing.

use hive_tests::{free_port, hive_bin, wait_for, Hive, Spec, OWNER_PASSWORD};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ffmpeg_or_skip() -> bool {
    let ok = Command::new("ffprobe").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: ffprobe/ffmpeg not installed (scripts/test-all installs them)");
    }
    ok
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Codec, width and frames ffprobe reads from `url` in `seconds` of stream.
fn probe(url: &str, seconds: u32) -> (String, u64, u64) {
    let out = Command::new("timeout")
        .args(["30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames"])
        .args(["-read_intervals", &format!("%+{seconds}")])
        .args(["-show_entries", "stream=codec_name,width,nb_read_frames", "-of", "json", url])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &v["streams"][0];
    let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(0);
    (
        s["codec_name"].as_str().unwrap_or("").to_owned(),
        number(&s["width"]),
        number(&s["nb_read_frames"]),
    )
}

/// Decodes `seconds` of `url` with ffmpeg; whether it ended well, and its error output.
fn decode(url: &str, seconds: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["40", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url])
        .args(["-t", &seconds.to_string(), "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `url` with the API's owner credentials in it.
fn with_user(url: &str) -> String {
    url.replacen("rtsp://", &format!("rtsp://admin:{OWNER_PASSWORD}@"), 1)
}

#[test]
fn an_h265_camera_with_a_secondary_stream_records_both_and_plays_both_live_and_recorded() {
    if !ffmpeg_or_skip() {
        return;
    }
    let camera_port = free_port();
    let _cameras = Killed(
        Command::new(hive_bin())
            .args(["testcamera", "--count", "1", "--h265", "--port", &camera_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let main_url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let sub_url = format!("{main_url}?stream=1");
    // The test camera itself sends H.265 as its primary stream, H.264 at 320 wide as its
    // secondary.
    let (codec, width, _) = wait_for("the test camera to serve", Duration::from_secs(10), || {
        let p = probe(&main_url, 1);
        (p.2 > 0, p)
    });
    assert_eq!((codec.as_str(), width), ("hevc", 640));
    let (codec, width, _) = probe(&sub_url, 1);
    assert_eq!((codec.as_str(), width), ("h264", 320));

    let spec = Spec::new("streams", "Streams", "secret-streams", hive_tests::discovery_port());
    let hive = Hive::start(spec);
    let (status, cam) = hive.api().post(
        "/api/cameras",
        &json!({ "name": "yard", "url": main_url, "secondary_url": sub_url }),
    );
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    let started_ms = now_ms();

    // Both streams record, and the camera view says where the camera plays: on this server's
    // RTSP port (the harness serves plain RTSP on loopback).
    let view = wait_for("both streams to record", Duration::from_secs(20), || {
        let (_, v) = hive.api().get(&format!("/api/cameras/{id}"));
        (v["status"]["state"] == "recording" && v["secondary_status"]["state"] == "recording", v)
    });
    assert_eq!(view["secondary_url"], sub_url, "{view}");
    let play = view["rtsp_urls"][0].as_str().unwrap_or_default().to_owned();
    assert_eq!(play, format!("rtsp://{}/{id}", hive.rtsp), "{view}");

    // Live: the primary in H.265, the secondary in H.264, both at the camera's pace.
    let live = with_user(&play);
    let (codec, width, n) = probe(&live, 3);
    assert_eq!((codec.as_str(), width), ("hevc", 640), "primary live");
    assert!(n >= 50, "{n} H.265 frames in 3 s of live");
    let (codec, width, n) = probe(&format!("{live}?stream=1"), 3);
    assert_eq!((codec.as_str(), width), ("h264", 320), "secondary live");
    assert!(n >= 50, "{n} secondary frames in 3 s of live");
    let (ok, errors) = decode(&live, 2);
    assert!(ok && errors.is_empty(), "H.265 live decode: {errors}");

    // The archive of each stream decodes from a position seconds ago.
    std::thread::sleep(Duration::from_secs(3));
    let pos = started_ms + 1_500;
    for (url, what) in [
        (format!("{live}?pos={pos}"), "primary"),
        (format!("{live}?pos={pos}&stream=1"), "secondary"),
    ] {
        let (ok, errors) = decode(&url, 2);
        assert!(ok && errors.is_empty(), "{what} archive decode: {errors}");
    }
    let (_, ranges) = hive.api().get(&format!("/api/cameras/{id}/archive?stream=1"));
    assert!(ranges["ranges"][0]["from_ms"].as_i64().is_some(), "secondary ranges: {ranges}");

    // Taking the secondary stream out of the record stops its recorder; the primary goes on.
    let (status, changed) =
        hive.api().patch(&format!("/api/cameras/{id}"), &json!({ "secondary_url": "" }));
    assert_eq!(status, 200, "{changed}");
    let view = wait_for("the secondary recorder to stop", Duration::from_secs(20), || {
        let (_, v) = hive.api().get(&format!("/api/cameras/{id}"));
        (v["secondary_status"].is_null() && v["status"]["state"] == "recording", v)
    });
    assert!(view["secondary_url"].is_null(), "{view}");

    // The CLI's camera list shows the recording status.
    let out = hive_tests::hive(&hive, &["camera", "list"]);
    let text = hive_tests::ok(out);
    assert!(text.contains("recording"), "{text}");
}
