//! A camera as fragmented MP4 over the API (what the web UI plays): ffprobe and ffmpeg read
//! it live and from the archive through a server that does not record it; bad queries get
//! 400 in words, an unknown camera 404, and no credentials 401.

use base64::Engine;
use hive_tests::video::{camera_on_two_servers, decode, probe, require_ffmpeg};
use hive_tests::OWNER_PASSWORD;
use serde_json::json;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

/// `url` with the owner's credentials.
fn authed(url: &str) -> String {
    url.replacen("http://", &format!("http://admin:{OWNER_PASSWORD}@"), 1)
}

#[test]
fn a_camera_plays_as_fragmented_mp4_live_and_recorded_through_any_server() {
    require_ffmpeg();
    let hive = camera_on_two_servers("Mp4", "secret-mp4");
    let (id, started_ms) = (&hive.id, hive.added_ms);
    let (_, relay) = hive.recorder_and_relay();

    let live = authed(&format!("{}/api/cameras/{id}/video.mp4", relay.url()));
    let p = probe(&live, 3);
    assert_eq!((p.width, p.codec.as_str()), (640, "h264"), "live through the relay");
    assert!(p.frames >= 50, "{} frames in 3 s of live through the relay", p.frames);
    let (ok, errors) = decode(&live, 3);
    assert!(ok && errors.is_empty(), "live decodes cleanly: {errors}");

    std::thread::sleep(Duration::from_secs(1));
    let archive = format!("{live}?pos={}&speed=4", started_ms + 1_000);
    let (ok, errors) = decode(&archive, 3);
    assert!(ok && errors.is_empty(), "the archive decodes cleanly: {errors}");

    // Bad input: words, never a stream.
    let api = relay.api();
    for (query, says) in [("pos=yesterday", "pos"), ("speed=0", "speed"), ("stream=7", "stream")] {
        let (status, body) = api.get(&format!("/api/cameras/{id}/video.mp4?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap_or("").contains(says), "{query}: {body}");
    }
    let (status, _) = api.get("/api/cameras/0123456789abcdef0123456789abcdef/video.mp4");
    assert_eq!(status, 404);
    let anonymous = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/cameras/{id}/video.mp4", relay.url()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401", "no video without a user");

    // A viewer removed while watching stops getting video: the stream ends, it does not go
    // on for as long as the camera sends.
    let (status, user) = api.post(
        "/api/users",
        &json!({ "name": "guard", "password": "guard-password-1", "role": "viewer" }),
    );
    assert_eq!(status, 201, "{user}");
    let guard = base64::engine::general_purpose::STANDARD.encode("guard:guard-password-1");
    let mut watching = ureq::get(&format!("{}/api/cameras/{id}/video.mp4", relay.url()))
        .set("Authorization", &format!("Basic {guard}"))
        .timeout(Duration::from_secs(60))
        .call()
        .expect("the viewer's stream")
        .into_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let n = watching.read(&mut buf).expect("video arrives");
    assert!(n > 0, "the viewer gets video");
    let (status, _) = api.delete(&format!("/api/users/{}", user["id"].as_str().unwrap()));
    assert_eq!(status, 204);
    let ended = loop {
        match watching.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            // A chunked body cut short is an end too; a timeout is not.
            Err(e) => {
                break e.kind() != std::io::ErrorKind::TimedOut
                    && e.kind() != std::io::ErrorKind::WouldBlock
            }
        }
    };
    assert!(ended, "the removed viewer's stream ended");
}
