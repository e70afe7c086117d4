//! Video through another server: a camera recorded by one server plays, live and from the
//! archive, from a server that does not record it, which relays it over an encrypted media
//! channel; 32 clients of one relay make the recorder send the relay one stream.

use hive_tests::video::{
    camera_on_two_servers, decode, fast_failover_system, frames, require_ffmpeg, test_cameras,
    wait_for_recorder, with_owner,
};
use hive_tests::{free_port, metrics_at, Hive};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Duration;

fn metric(h: &Hive, name: &str) -> u64 {
    let metrics = metrics_at(h.http).expect("the server answers /metrics");
    *metrics.get(name).unwrap_or_else(|| panic!("no metric {name} in {metrics:?}")) as u64
}

#[test]
fn a_camera_plays_live_and_recorded_through_a_server_that_does_not_record_it() {
    require_ffmpeg();
    let hive = camera_on_two_servers("Relay", "secret-relay");
    let (id, started_ms) = (&hive.id, hive.added_ms);
    // Whichever server records it, the other one relays.
    let (recorder, relay) = hive.recorder_and_relay();

    let through = with_owner(&format!("rtsp://{}/{id}", relay.rtsp));
    let n = frames(&through, 3);
    assert!(n >= 50, "{n} frames in 3 s of live through the relay");
    let (ok, errors) = decode(&through, 3);
    assert!(ok && errors.is_empty(), "live through the relay: {errors}");
    assert!(metric(recorder, "hive_media_flows_to_servers_total") >= 1);

    // The archive through the relay: from a position seconds ago, decoding cleanly.
    std::thread::sleep(Duration::from_secs(1));
    let archive = format!("{through}?pos={}", started_ms + 2_000);
    let (ok, errors) = decode(&archive, 3);
    assert!(ok && errors.is_empty(), "archive through the relay: {errors}");

    // A camera nobody has: 404 through the relay as from the recorder.
    let unknown = with_owner(&format!("rtsp://{}/0123456789abcdef0123456789abcdef", relay.rtsp));
    let out = Command::new("timeout")
        .args(["20", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", &unknown])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{out:?}");

    // 32 clients of the camera through the relay: the recorder sends the relay one live
    // stream (a new one if the relay of the earlier clients has ended since).
    let before = metric(recorder, "hive_media_flows_to_servers_total");
    let clients: Vec<_> = (0..32)
        .map(|_| {
            Command::new("timeout")
                .args(["30", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", &through])
                .args(["-t", "8", "-c", "copy", "-f", "null", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(metric(relay, "hive_media_relays_open"), 1);
    assert_eq!(
        metric(recorder, "hive_media_flows_to_servers"),
        1,
        "the recorder sends the relay one stream for all 32 clients"
    );
    for mut c in clients {
        assert!(c.wait().unwrap().success(), "a client through the relay failed");
    }
    let after = metric(recorder, "hive_media_flows_to_servers_total");
    assert!(after - before <= 1, "{} flows from the recorder for 32 clients", after - before);
}

#[test]
fn a_client_watching_through_a_relay_goes_on_from_the_new_recorder_when_the_recorder_dies() {
    use std::io::Read;
    use std::time::Instant;
    require_ffmpeg();
    let camera_port = free_port();
    let _cameras = test_cameras(1, camera_port, None, &[]);
    let mut servers = fast_failover_system(&["a", "b", "c"], "Relay", "secret-relay-failover");
    let url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let (status, cam) =
        servers[0].api().post("/api/cameras", &json!({ "name": "dock", "url": url }));
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    let recorder = wait_for_recorder(&servers.iter().collect::<Vec<_>>(), &id);
    let relay = (recorder + 1) % 3;

    // A client of the relay, reading what comes after PLAY and noting when it came.
    let mut client = hive_tests::video::RawRtsp::connect(
        servers[relay].rtsp,
        "admin",
        hive_tests::OWNER_PASSWORD,
    );
    let live = format!("rtsp://{}/{id}", servers[relay].rtsp);
    client.setup(&live);
    assert_eq!(client.request("PLAY", &live, &["Range: npt=0-"]).status, 200);
    let mut stream = client.into_stream();
    stream.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let (arrivals_tx, arrivals) = std::sync::mpsc::channel::<Option<Instant>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if arrivals_tx.send(Some(Instant::now())).is_err() {
                        return;
                    }
                }
                // The end of the stream, or no byte for 90 s.
                _ => {
                    let _ = arrivals_tx.send(None);
                    return;
                }
            }
        }
    });
    let first = arrivals.recv_timeout(Duration::from_secs(20)).expect("video through the relay");
    assert!(first.is_some(), "the relayed stream ended at once");
    std::thread::sleep(Duration::from_secs(2));
    while arrivals.try_recv().is_ok() {}

    servers[recorder].kill9();
    let killed = Instant::now();
    // Video goes on from the camera's next recorder on the same session, or the session ends;
    // the client never waits forever.
    let mut resumed = None;
    let outcome = loop {
        match arrivals.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(at)) if at.duration_since(killed) > Duration::from_millis(500) => {
                // Bytes well after the kill: from the new recorder (the old one's last
                // frames were on their way at the kill).
                match resumed {
                    None => resumed = Some(at),
                    Some(first) if at.duration_since(first) > Duration::from_secs(2) => {
                        break format!("resumed {:?} after the kill", first.duration_since(killed))
                    }
                    Some(_) => {}
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break format!("ended {:?} after the kill", killed.elapsed()),
            Err(_) => panic!("the client hung: nothing and no end for 120 s after the kill"),
        }
    };
    eprintln!("through the relay, the stream {outcome}");
    assert!(outcome.starts_with("resumed"), "the stream {outcome}, rather than go on");
    let resumed_after = resumed.unwrap().duration_since(killed);
    assert!(resumed_after < Duration::from_secs(30), "resumed only after {resumed_after:?}");
}
