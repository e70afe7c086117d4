//! A camera as most current ones are: an H.265 primary stream and a low-resolution H.264
//! secondary one. A server records both; the camera view tells a client where each plays;
//! ffprobe and ffmpeg from Debian play both live and from the archive; taking the secondary
//! stream out of the record stops its recorder.

use hive_tests::video::{decode, now_ms, probe, require_ffmpeg, test_cameras, with_owner};
use hive_tests::{free_port, wait_for, Hive, Spec};
use serde_json::json;
use std::time::Duration;

#[test]
fn an_h265_camera_with_a_secondary_stream_records_both_and_plays_both_live_and_recorded() {
    require_ffmpeg();
    let camera_port = free_port();
    let _cameras = test_cameras(1, camera_port, None, &["--h265"]);
    let main_url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let sub_url = format!("{main_url}?stream=1");
    // The test camera itself sends H.265 as its primary stream, H.264 at 320 wide as its
    // secondary.
    let p = probe(&main_url, 1);
    assert_eq!((p.codec.as_str(), p.width), ("hevc", 640), "{p:?}");
    let p = probe(&sub_url, 1);
    assert_eq!((p.codec.as_str(), p.width), ("h264", 320), "{p:?}");

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
    let live = with_owner(&play);
    let p = probe(&live, 3);
    assert_eq!((p.codec.as_str(), p.width), ("hevc", 640), "primary live");
    assert!(p.frames >= 50, "{} H.265 frames in 3 s of live", p.frames);
    let p = probe(&format!("{live}?stream=1"), 3);
    assert_eq!((p.codec.as_str(), p.width), ("h264", 320), "secondary live");
    assert!(p.frames >= 50, "{} secondary frames in 3 s of live", p.frames);
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
