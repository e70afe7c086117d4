//! Recording follows failover, and playback stitches it: a camera recorded by one server, then
//! by the server that took it over when the first died, then by the first again once it came
//! back, plays from a third server as one stream across both boundaries — decoding with no
//! error, its timestamps only going forward (no span played twice), covering what was
//! recorded; and every server lists the recorded ranges of both recorders.

use hive_tests::video::{
    fast_failover_system, now_ms, recorded_ranges, records_now, require_ffmpeg, rtp_ms,
    test_cameras, with_owner, RawRtsp,
};
use hive_tests::{free_port, wait_for, Hive, OWNER_PASSWORD};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// Which of `servers` records `id` now (by its own status).
fn recorder(servers: &[Hive], alive: &[bool], id: &str) -> Option<usize> {
    (0..servers.len()).find(|&i| alive[i] && records_now(&servers[i], id))
}

/// Packet times (s, from the stream's start) ffprobe reads of `url`, `seconds` of stream time.
fn packet_times(url: &str, seconds: u32) -> Vec<f64> {
    let out = Command::new("timeout")
        .args(["60", "ffprobe", "-v", "error", "-rtsp_transport", "tcp"])
        .args(["-read_intervals", &format!("%+{seconds}")])
        .args(["-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "json", url])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["packets"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["pts_time"].as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn a_camera_recorded_across_a_failover_and_back_plays_from_another_server_as_one_stream() {
    require_ffmpeg();
    let camera_port = free_port();
    let _cameras = test_cameras(1, camera_port, None, &[]);
    let mut servers = fast_failover_system(&["a", "b", "c"], "Stitch", "secret-stitch");
    let mut alive = [true; 3];
    let url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let (status, cam) =
        servers[0].api().post("/api/cameras", &json!({ "name": "yard", "url": url }));
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    let first = wait_for("the camera to record", Duration::from_secs(30), || {
        let r = recorder(&servers, &alive, &id);
        (r.is_some(), r)
    })
    .unwrap();
    let started_ms = now_ms();
    // Longer than the slack stitched playback gives a span's end (10 s), so the end the
    // history keeps is what a seek near it relies on.
    std::thread::sleep(Duration::from_secs(14));

    // The recorder dies: another server takes the camera over and records it.
    let killed_ms = now_ms();
    servers[first].kill9();
    alive[first] = false;
    let taker = wait_for("the camera to fail over", Duration::from_secs(40), || {
        let r = recorder(&servers, &alive, &id);
        (r.is_some(), r)
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(5));

    // It comes back: once stable, the camera returns to it.
    servers[first].spawn();
    alive[first] = true;
    wait_for("the camera to return", Duration::from_secs(60), || {
        let r = recorder(&servers, &alive, &id);
        (r == Some(first), r)
    });
    std::thread::sleep(Duration::from_secs(4));
    let recorded_s = (now_ms() - started_ms) as f64 / 1000.0;

    // The recorded ranges, asked of any server, are those of both recorders merged: from the
    // start to now, with at most the failover's gap between.
    let now = now_ms();
    for (i, server) in servers.iter().enumerate() {
        let ranges = recorded_ranges(server, &id);
        assert!(!ranges.is_empty() && ranges.len() <= 3, "server {i}: {ranges:?}");
        let covered: i64 = ranges.iter().map(|(f, t)| t - f).sum();
        assert!(ranges[0].0 <= started_ms + 1_000, "server {i} misses the start: {ranges:?}");
        assert!(ranges.last().unwrap().1 >= now - 3_000, "server {i} misses the end: {ranges:?}");
        assert!(
            covered as f64 > (now - started_ms) as f64 - 8_000.0,
            "server {i}: {covered} ms of {} ms: {ranges:?}",
            now - started_ms
        );
        // Per server: the timeline tells the first recorder's ranges from the taker's.
        let (_, archive) = server.api().get(&format!("/api/cameras/{id}/archive"));
        let mut holders: Vec<&str> = archive["by_server"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["server"].as_str())
            .collect();
        holders.sort();
        holders.dedup();
        assert_eq!(holders.len(), 2, "server {i}: both recorders named: {archive}");
    }

    // The whole stretch from the server that recorded none of it (or the taker, if that is
    // the only other one), at 4× so it takes a few seconds.
    let viewer = (0..3).find(|&i| i != first && i != taker).unwrap_or(taker);

    // A seek into the last seconds the first recorder recorded before it died plays its
    // archive: its span still ends where the taker last heard of it, not where the restarted
    // server's own cruder close put it (which once cut the span to nothing).
    let pos_ms = killed_ms - 2_500;
    let at_pos = format!("rtsp://{}/{id}?pos={pos_ms}", servers[viewer].rtsp);
    let mut client = RawRtsp::connect(servers[viewer].rtsp, "admin", OWNER_PASSWORD);
    client.setup(&at_pos);
    let r = client.request("PLAY", &at_pos, &["Range: npt=0.000-"]);
    let first_ms = rtp_ms(r.rtptime().expect("RTP-Info with rtptime"), client.next_frame_ts());
    assert!(
        (-1_500..=0).contains(&first_ms),
        "a seek 2.5 s before the recorder died starts {first_ms} ms from the position"
    );
    drop(client);
    let archive = with_owner(&format!(
        "rtsp://{}/{id}?pos={}&speed=4",
        servers[viewer].rtsp,
        started_ms + 500
    ));
    // ffprobe counts stream time: the recorded stretch, read in a quarter of it.
    let times = packet_times(&archive, recorded_s.ceil() as u32);
    assert!(times.len() > 100, "{} packets of {recorded_s:.0} s recorded", times.len());
    let backwards = times.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(backwards, 0, "timestamps went back {backwards} times: a span played twice");
    let covered = times.last().unwrap() - times.first().unwrap();
    // The failover gap (about the hold time, 3 s) and the last seconds may be missing.
    assert!(
        covered > recorded_s - 8.0,
        "{covered:.1} s played of {recorded_s:.1} s recorded across both boundaries"
    );
    let out = Command::new("timeout")
        .args(["60", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", &archive])
        .args(["-t", &format!("{}", (covered as u32).saturating_sub(2)), "-f", "null", "-"])
        .output()
        .unwrap();
    // The null muxer's complaint of two frames in one of its 1/25 s ticks is about output
    // timestamps, not decoding; it is seen now and then across a hand-over and is left to
    // find (the packet times above only go forward). Any decoder error fails.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("non monotonically increasing dts to muxer"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(out.status.success() && errors.is_empty(), "decode across both boundaries: {stderr}");
}
