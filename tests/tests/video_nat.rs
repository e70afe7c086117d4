//! Video from a server behind NAT: a records a camera from behind a router that masquerades
//! what it sends (nobody can dial a); c, on the other side, joined only by a's own outgoing
//! link, serves the camera live and recorded. c asks a over that link to dial a media channel
//! back, as the reference product's reverse connections do.

use hive_tests::netns::{lab_or_skip, PEER_PORT, RTSP_PORT};
use hive_tests::video::{now_ms, require_ffmpeg};
use hive_tests::{wait_for, OWNER_PASSWORD};
use std::time::Duration;

const SYSTEM: &str = "Nat";
const SECRET: &str = "secret-nat";

#[test]
fn a_camera_recorded_behind_nat_plays_live_and_recorded_from_a_server_that_cannot_dial_it() {
    require_ffmpeg();
    let Some(mut lab) = lab_or_skip() else { return };
    let rtsp = format!("0.0.0.0:{RTSP_PORT}");
    let public = ["--rtsp", rtsp.as_str(), "--rtsp-plain", "--max-cameras", "0"];
    let c = lab.start("c", SYSTEM, SECRET, &public);
    let peer = format!("{}:{PEER_PORT}", lab.servers[c].address);
    let behind = ["--rtsp", rtsp.as_str(), "--rtsp-plain", "--max-cameras", "4", "--peer", &peer];
    let a = lab.start_behind_nat("a", SYSTEM, SECRET, &behind);
    lab.wait_until_answering(c);
    lab.wait_until_answering(a);
    wait_for("a to join c through NAT", Duration::from_secs(60), || lab.merged(&[a, c]));
    // The NAT is real: c cannot reach a at all.
    assert_eq!(lab.curl_from(c, a, "/api/hello"), "", "c reached a through the NAT");

    let _camera = lab.test_cameras(a, 1, &[]);
    let started_ms = now_ms();
    let id = lab.add_recorded_cameras(a, 1).remove(0);

    // Live from c.
    let from_c =
        format!("rtsp://admin:{OWNER_PASSWORD}@{}:{RTSP_PORT}/{id}", lab.servers[c].address);
    let (frames, errors) = lab.probe_frames(c, &from_c, 3);
    assert!(frames >= 50, "{frames} frames in 3 s from behind NAT: {errors}");
    let (clean, errors) = lab.decode(c, &from_c, 3);
    assert!(clean, "decode from c: {errors}");
    let back = lab.metric(a, "hive_media_channels_dialled_back_total");
    assert!(back.is_some_and(|n| n >= 1), "a dialled no media channel back: {back:?}");

    // Recorded: c lists a's ranges and plays a stretch of them.
    let archive = lab.api_get(c, &format!("/api/cameras/{id}/archive"));
    let ranges = archive["ranges"].as_array().cloned().unwrap_or_default();
    assert!(
        ranges.first().and_then(|r| r["from_ms"].as_i64()).is_some_and(|f| f <= started_ms + 5_000),
        "c lists none of a's archive: {archive}"
    );
    let from_ms = ranges[0]["from_ms"].as_i64().unwrap() + 500;
    let (clean, errors) = lab.decode(c, &format!("{from_c}?pos={from_ms}"), 2);
    assert!(clean, "archive from c: {errors}");
}
