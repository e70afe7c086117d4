//! Seeking in the archive as players do, checked where players cannot show it: the RTP
//! timestamps of the first frame against the position asked for (through RTP-Info), the
//! PLAY/PAUSE/PLAY pattern of ffmpeg's seek in one session, and PAUSE then PLAY resuming where
//! it paused rather than jumping to live. ffmpeg's own `-ss` decodes from the archive cleanly.

use hive_tests::video::{decode, now_ms, require_ffmpeg, rtp_ms, test_cameras, RawRtsp};
use hive_tests::{free_port, wait_for, Hive, Spec, OWNER_PASSWORD};
use serde_json::json;
use std::time::Duration;

/// The bundled clip has a keyframe every second: the first frame of a seek may come this much
/// before the position asked for, never after it.
const GOP_MS: i64 = 1_000;

#[test]
fn seeks_start_at_the_keyframe_before_the_position_and_pause_resumes_where_it_paused() {
    require_ffmpeg();
    let camera_port = free_port();
    let _cameras = test_cameras(1, camera_port, None, &[]);
    let hive = Hive::start(Spec::new("seek", "Seek", "secret-seek", hive_tests::discovery_port()));
    let url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let (status, cam) = hive.api().post("/api/cameras", &json!({ "name": "door", "url": url }));
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    wait_for("the camera to record", Duration::from_secs(20), || {
        let (_, s) = hive.api().get(&format!("/api/cameras/{id}/status"));
        (s["status"]["state"] == "recording", s)
    });
    let started_ms = now_ms();
    std::thread::sleep(Duration::from_secs(8));
    let live = format!("rtsp://{}/{id}", hive.rtsp);

    // `Range: clock=` on the live URL: the first frame is the keyframe at or before it.
    let at_ms = started_ms + 2_300;
    let mut client = RawRtsp::connect(hive.rtsp, "admin", OWNER_PASSWORD);
    client.setup(&live);
    let clock = format!("Range: clock={}-", iso(at_ms));
    let r = client.request("PLAY", &live, &[&clock]);
    assert_eq!(r.status, 200, "{r:?}");
    let start_rtp = r.rtptime().expect("RTP-Info with rtptime");
    let first_ms = rtp_ms(start_rtp, client.next_frame_ts());
    assert!((-GOP_MS..=0).contains(&first_ms), "first frame {first_ms} ms from the position");

    // ffmpeg's seek on an archive URL: PLAY npt=0, PAUSE, PLAY npt=T in one session; npt
    // counts from the URL's position.
    let pos_ms = started_ms + 1_000;
    let archive = format!("{live}?pos={pos_ms}");
    let mut client = RawRtsp::connect(hive.rtsp, "admin", OWNER_PASSWORD);
    client.setup(&archive);
    let r = client.request("PLAY", &archive, &["Range: npt=0.000-"]);
    let start_rtp = r.rtptime().unwrap();
    let first_ms = rtp_ms(start_rtp, client.next_frame_ts());
    assert!((-GOP_MS..=0).contains(&first_ms), "npt=0: first frame {first_ms} ms from pos");
    assert_eq!(client.request("PAUSE", &archive, &[]).status, 200);
    let r = client.request("PLAY", &archive, &["Range: npt=4.500-"]);
    assert_eq!(r.header("range"), Some("npt=4.500-"), "{r:?}");
    client.drop_pending();
    let start_rtp = r.rtptime().unwrap();
    // Frames sent before the PAUSE took effect were read with the response; the new flow's
    // first frame is the keyframe at or before pos + 4.5 s.
    let first_ms = rtp_ms(start_rtp, client.next_frame_ts());
    assert!((-GOP_MS..=0).contains(&first_ms), "npt=4.5: first frame {first_ms} ms from it");

    // PAUSE, then PLAY without a Range: on from the frame after the last one received, in the
    // archive (live would be seconds later).
    for _ in 0..10 {
        client.next_frame_ts();
    }
    let r = client.request("PAUSE", &archive, &[]);
    assert_eq!(r.status, 200);
    // The server sends nothing after its answer to PAUSE: the last frame before it is the
    // last one the client has.
    client.drop_pending();
    let last_ts = client.last_frame_ts().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    let r = client.request("PLAY", &archive, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let resumed_ms = rtp_ms(last_ts, client.next_frame_ts());
    assert!((1..=100).contains(&resumed_ms), "resumed {resumed_ms} ms after the last frame");

    // ffmpeg itself seeking with -ss into the archive decodes without an error.
    let out = std::process::Command::new("timeout")
        .args(["40", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-ss", "3"])
        .args(["-i", &format!("rtsp://admin:{OWNER_PASSWORD}@{}/{id}?pos={pos_ms}", hive.rtsp)])
        .args(["-t", "2", "-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.is_empty(), "ffmpeg -ss: {errors}");
    let (ok, errors) =
        decode(&format!("rtsp://admin:{OWNER_PASSWORD}@{}/{id}?pos={pos_ms}", hive.rtsp), 2);
    assert!(ok && errors.is_empty(), "{errors}");
}

/// `YYYYMMDDThhmmss.sssZ` of ms since the epoch, as `Range: clock=` takes it.
fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}
