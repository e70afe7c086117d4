//! Video two hops away: servers a, b, c in network namespaces of their own, a and c cut off
//! from each other (each reaches only b). A camera recorded by a plays live, decoding cleanly,
//! from c, which fetches it through b.

use hive_tests::netns::lab_or_skip;
use hive_tests::video::{require_ffmpeg, Killed};
use hive_tests::{wait_for, OWNER_PASSWORD};
use std::process::Stdio;
use std::time::Duration;

const SYSTEM: &str = "Hops";
const SECRET: &str = "secret-hops";
const RTSP_PORT: u16 = 7554;
const CAMERA_PORT: u16 = 8554;

#[test]
fn a_camera_plays_live_through_a_server_two_hops_from_its_recorder() {
    require_ffmpeg();
    let Some(mut lab) = lab_or_skip() else { return };
    // Only a may record: the camera's recorder is at one end of the chain.
    let servers: Vec<usize> = [("a", "4"), ("b", "0"), ("c", "0")]
        .iter()
        .map(|&(name, max)| {
            let rtsp = format!("0.0.0.0:{RTSP_PORT}");
            let extra = ["--rtsp", rtsp.as_str(), "--rtsp-plain", "--max-cameras", max];
            lab.start(name, SYSTEM, SECRET, &extra)
        })
        .collect();
    let (a, b, c) = (servers[0], servers[1], servers[2]);
    lab.cut(a, c);
    for &i in &servers {
        lab.wait_until_answering(i);
    }
    wait_for("three servers to form one system", Duration::from_secs(90), || lab.merged(&servers));

    // The test camera runs beside a, in its namespace.
    let camera = lab
        .command_in(a, hive_tests::hive_bin())
        .args(["testcamera", "--count", "1", "--port", &CAMERA_PORT.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _camera = Killed(camera);
    let url = format!("rtsp://127.0.0.1:{CAMERA_PORT}/cam1");
    let added = lab.hive_json(a, &["camera", "add", "--name", "far", "--stream", &url]);
    let id = added.map(|v| v["id"].as_str().unwrap_or_default().to_owned()).unwrap();
    wait_for("a to record the camera", Duration::from_secs(30), || {
        let s = lab.api_get(a, &format!("/api/cameras/{id}/status"));
        (s["status"]["state"] == "recording", s)
    });

    // From c, which reaches a only through b.
    let from_c =
        format!("rtsp://admin:{OWNER_PASSWORD}@{}:{RTSP_PORT}/{id}", lab.servers[c].address);
    let probe = |seconds: u32| {
        lab.command_in(c, "timeout")
            .args(["30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames"])
            .args(["-read_intervals", &format!("%+{seconds}")])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", &from_c])
            .output()
            .unwrap()
    };
    let out = probe(3);
    let frames: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    assert!(
        frames >= 50,
        "{frames} frames in 3 s two hops away: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded = lab
        .command_in(c, "timeout")
        .args(["40", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", &from_c])
        .args(["-t", "3", "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&decoded.stderr);
    assert!(decoded.status.success() && errors.trim().is_empty(), "decode two hops away: {errors}");

    // b relayed it: its metrics count a relay.
    let opened = lab.metric(b, "hive_media_upstreams_opened_total");
    assert!(opened.is_some_and(|n| n >= 1), "b opened no upstream: {opened:?}");
}
