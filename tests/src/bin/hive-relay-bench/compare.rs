//! Our relay against GStreamer's, one after the other with the same cameras and clients: a
//! recorder records `--streams` cameras; first a second hive server relays every camera to
//! one client each, then a GStreamer RTSP server (gst-rtsp-server, one shared `rtspsrc`
//! pipeline per camera, `tests/bench/gst_relay.py`) pulls the same cameras from the recorder
//! and serves the same clients. For each: the relay's CPU per stream after a warm-up, and the
//! latency it adds per frame against a direct client of the recorder watching the same camera.
//! Both at once would only measure the scheduler of a small machine.

use crate::Options;
use hive_tests::bench::{
    added_latency_ms, clip, clip_bits_per_second, frame_arrivals, percentiles, pid, watch,
    Received, RecorderAndRelay, FPS,
};
use hive_tests::procfs::{clock_ticks, cpu_ticks};
use hive_tests::video::Killed;
use hive_tests::{free_port, OWNER_PASSWORD};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds every relay runs before its CPU is counted: relays start, GOP caches fill.
const WARM_UP: Duration = Duration::from_secs(4);

/// What one relay did.
struct Run {
    /// CPU of the relay's process over the measured window, cores.
    cpu: f64,
    /// Latency added per frame, ms.
    added_ms: Vec<f64>,
    /// Frames per second of the slowest relayed client.
    min_fps: f64,
}

/// The figure.
pub fn run(o: &Options) -> String {
    let clip2 = clip(10, "1280x720", 2000);
    let bits = clip_bits_per_second(&clip2);
    let n = o.streams;
    let mut pair =
        RecorderAndRelay::start("compare", n, &["--clip", clip2.to_str().unwrap()], |_| {});
    let (a, b, ids) = (pair.recorder.rtsp, pair.relay.rtsp, pair.ids.clone());
    let time = Duration::from_secs(o.seconds);
    let direct_urls: Vec<String> = ids.iter().map(|id| format!("rtsp://{a}/{id}")).collect();
    let ours_urls: Vec<String> = ids.iter().map(|id| format!("rtsp://{b}/{id}")).collect();
    let ours = measure(pid(&pair.relay), &direct_urls[0], &ours_urls, time);
    pair.relay.kill9(); // its relays end: GStreamer's run has the machine to itself.

    let gst_port = free_port();
    let gst = GstRelay::start(gst_port, a, &ids);
    let gst_urls: Vec<String> =
        (1..=n).map(|i| format!("rtsp://127.0.0.1:{gst_port}/cam{i}")).collect();
    let theirs = measure(gst.0 .0.id(), &direct_urls[0], &gst_urls, time);
    drop(gst);

    let per_stream = |r: &Run| r.cpu * 100.0 / n as f64;
    eprintln!(
        "compare: ours {:.3} %/stream, added {}; gstreamer {:.3} %/stream, added {}",
        per_stream(&ours),
        percentiles(ours.added_ms.clone()),
        per_stream(&theirs),
        percentiles(theirs.added_ms.clone())
    );
    let mut md = format!(
        "### Relay: {n} cameras of {:.2} Mbit/s through one server, ours then GStreamer's\n\n",
        bits / 1e6
    );
    writeln!(md, "| figure | hive relay | GStreamer (gst-rtsp-server + rtspsrc) |\n|---|---|---|")
        .unwrap();
    writeln!(
        md,
        "| relay CPU, {n} streams, one client each | {:.1} % of one core = **{:.3} % per stream** | {:.1} % = {:.3} % per stream |",
        ours.cpu * 100.0,
        per_stream(&ours),
        theirs.cpu * 100.0,
        per_stream(&theirs)
    )
    .unwrap();
    writeln!(
        md,
        "| CPU per stream, ours against GStreamer's | **{:.2}×** | 1× |",
        per_stream(&ours) / per_stream(&theirs)
    )
    .unwrap();
    writeln!(
        md,
        "| latency added per frame, p50 / p99 / max ({} / {} frames matched) | **{} ms** | {} ms |",
        ours.added_ms.len(),
        theirs.added_ms.len(),
        percentiles(ours.added_ms.clone()),
        percentiles(theirs.added_ms.clone())
    )
    .unwrap();
    writeln!(
        md,
        "| slowest relayed client (camera sends {FPS}) | {:.1} frames/s | {:.1} frames/s |",
        ours.min_fps, theirs.min_fps
    )
    .unwrap();
    writeln!(
        md,
        "| streams one core carries at this cost (100 % ÷ CPU per stream; this machine cannot feed more) | **{:.0}** | {:.0} |\n",
        100.0 / per_stream(&ours),
        100.0 / per_stream(&theirs)
    )
    .unwrap();
    md
}

/// Every relayed URL watched by one client for warm-up + `time`; the first camera also by a
/// direct client, to match its frames. The relay process's CPU over `time` after the warm-up.
fn measure(relay_pid: u32, direct: &str, relayed: &[String], time: Duration) -> Run {
    let whole = WARM_UP + time;
    std::thread::scope(|s| {
        let viewers: Vec<_> =
            relayed.iter().skip(1).map(|url| s.spawn(move || watch_url(url, whole))).collect();
        let direct = s.spawn(|| frame_arrivals(direct, whole));
        let first = s.spawn(|| frame_arrivals(&relayed[0], whole));
        std::thread::sleep(WARM_UP);
        let (ticks0, t0) = (cpu_ticks(relay_pid), Instant::now());
        let warm = t0;
        std::thread::sleep(time);
        let cpu =
            (cpu_ticks(relay_pid) - ticks0) as f64 / clock_ticks() / t0.elapsed().as_secs_f64();
        let received: Vec<Received> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
        let (direct, mut first) = (direct.join().unwrap(), first.join().unwrap());
        // Latency once warm: not the burst of relays all starting at once.
        first.retain(|(_, at)| *at >= warm);
        let min_fps = received
            .iter()
            .map(|r| r.frames as f64 / whole.as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        Run { cpu, added_ms: added_latency_ms(&direct, &first), min_fps }
    })
}

/// [`watch`] of a whole URL.
fn watch_url(url: &str, time: Duration) -> Received {
    let (authority, path) = url.strip_prefix("rtsp://").unwrap().split_once('/').unwrap();
    watch(authority.parse().unwrap(), path, time)
}

/// `tests/bench/gst_relay.py` serving `/cam1..camN` from the recorder's cameras.
struct GstRelay(Killed);

impl GstRelay {
    fn start(port: u16, recorder: SocketAddr, ids: &[String]) -> GstRelay {
        let mounts = tempfile::NamedTempFile::new().unwrap();
        let lines: String = ids
            .iter()
            .enumerate()
            .map(|(i, id)| format!("cam{} rtsp://admin:{OWNER_PASSWORD}@{recorder}/{id}\n", i + 1))
            .collect();
        std::fs::write(mounts.path(), lines).unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/gst_relay.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .arg("--mounts-file")
            .arg(mounts.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the GStreamer relay");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the GStreamer relay did not start");
        GstRelay(Killed(child))
    }
}
