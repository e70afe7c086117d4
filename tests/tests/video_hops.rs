//! Video two hops away: servers a, b, c in network namespaces of their own, a and c cut off
//! from each other (each reaches only b). A camera recorded by a plays live, decoding cleanly,
//! from c, which fetches it through b.

use hive_tests::netns::{lab_or_skip, RTSP_PORT};
use hive_tests::video::require_ffmpeg;
use hive_tests::OWNER_PASSWORD;

#[test]
fn a_camera_plays_live_through_a_server_two_hops_from_its_recorder() {
    require_ffmpeg();
    let Some(mut lab) = lab_or_skip() else { return };
    // Only a may record: the camera's recorder is at one end of the chain.
    let [a, b, c] = lab.chain("Hops", "secret-hops", 4);
    // The test camera runs beside a, in its namespace.
    let _camera = lab.test_cameras(a, 1, &[]);
    let id = lab.add_recorded_cameras(a, 1).remove(0);

    // From c, which reaches a only through b.
    let from_c =
        format!("rtsp://admin:{OWNER_PASSWORD}@{}:{RTSP_PORT}/{id}", lab.servers[c].address);
    let (frames, errors) = lab.probe_frames(c, &from_c, 3);
    assert!(frames >= 50, "{frames} frames in 3 s two hops away: {errors}");
    let (clean, errors) = lab.decode(c, &from_c, 3);
    assert!(clean, "decode two hops away: {errors}");

    // b relayed it: its metrics count a relay.
    let opened = lab.metric(b, "hive_media_upstreams_opened_total");
    assert!(opened.is_some_and(|n| n >= 1), "b opened no upstream: {opened:?}");
}
