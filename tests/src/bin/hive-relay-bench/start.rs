//! Live start through one and two hops: how long a player waits, from connecting to the end of
//! its first whole frame, for a camera another server records. Cold: the first viewer of a
//! camera at the server asked, which starts a relay there (and, two hops away, one at the
//! middle server too); warm: a viewer while another keeps the relays open, served from the
//! asked server's GOP cache. One hop on loopback; two hops in network namespaces (a–b–c, a and
//! c cut off from each other), timed by this binary run again inside c's namespace ([`probe`]).

use crate::Options;
use hive_tests::bench::{clip, clip_bits_per_second, percentiles, RecorderAndRelay, Viewer};
use hive_tests::netns::{lab_or_skip, Lab, RTSP_PORT};
use hive_tests::{metrics_at, wait_for};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The argument that makes the binary a probe run inside a namespace.
pub const PROBE: &str = "probe-start";

/// Cameras whose first viewers are timed cold, one round after another: a relay ends only
/// `RELAY_IDLE` (10 s) after its last viewer left, so each round waits for every relay to end.
const COLD_CAMERAS: usize = 10;
/// Longest wait for the relays of a round to end: `RELAY_IDLE` at each hop, and slack.
const RELAYS_END: Duration = Duration::from_secs(60);
/// Gauge of the relays a server runs now.
const RELAYS_OPEN: &str = "hive_media_relays_open";
/// Counter of the upstream flows a server asked for: one per relay started.
const UPSTREAMS_OPENED: &str = "hive_media_upstreams_opened_total";

/// Live starts through one route, ms.
struct Starts {
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    /// Upstream flows opened during the cold starts at each relaying server (nearest the
    /// client first): one per cold start at each, if every start was cold.
    upstreams: Vec<(&'static str, u64)>,
}

/// The figure.
pub fn run(o: &Options) -> String {
    let clip2 = clip(10, "1280x720", 2000);
    let cameras = COLD_CAMERAS.min(o.trials);
    let one = one_hop(o, &clip2, cameras);
    let two = two_hops(o, &clip2, cameras);
    let mut md = format!(
        "### Live start through one and two hops (target < 100 ms with a warm cache)\n\n\
         {cameras} cameras of {:.2} Mbit/s (1280x720, a keyframe a second) recorded by a; time \
         from connecting to the end of the first whole frame, {} clients each. Cold: the first \
         viewer of a camera at the server asked (rounds over the cameras, each once every relay \
         had ended); warm: viewers of one camera while another viewer keeps its relays open.\n\n",
        clip_bits_per_second(&clip2) / 1e6,
        o.trials
    );
    writeln!(md, "| live start | p50 / p99 / max |\n|---|---|").unwrap();
    let mut rows = |route: &str, s: &Starts| {
        let relays: Vec<&str> = s.upstreams.iter().map(|(at, _)| *at).collect();
        let opened: Vec<String> =
            s.upstreams.iter().map(|(at, n)| format!("{n} at {at}")).collect();
        writeln!(
            md,
            "| {route}, cold: the viewer starts the relay at {} (upstreams opened: {} for {} starts) | {} ms |",
            relays.join(" and "),
            opened.join(", "),
            s.cold_ms.len(),
            percentiles(s.cold_ms.clone())
        )
        .unwrap();
        writeln!(
            md,
            "| {route}, warm: from the GOP cache | **{} ms** |",
            percentiles(s.warm_ms.clone())
        )
        .unwrap();
    };
    rows("one hop, a → b on loopback", &one);
    match &two {
        Some(two) => rows("two hops, a → b → c in network namespaces", two),
        None => writeln!(md, "| two hops | skipped: no network namespaces (needs root) |").unwrap(),
    }
    md.push('\n');
    md
}

/// Recorder a and relay b on loopback: live starts at b.
fn one_hop(o: &Options, clip: &Path, cameras: usize) -> Starts {
    let pair =
        RecorderAndRelay::start("start", cameras, &["--clip", clip.to_str().unwrap()], |_| {});
    let (b, ids) = (&pair.relay, &pair.ids);
    let urls: Vec<String> = ids.iter().map(|id| format!("rtsp://{}/{id}", b.rtsp)).collect();
    let metric = |name: &str| metrics_at(b.http).and_then(|m| m.get(name).copied());
    let opened_before = metric(UPSTREAMS_OPENED).unwrap_or(0.0);
    let cold_ms = cold_rounds(
        o.trials,
        &urls,
        || metric(RELAYS_OPEN).map_or(u64::MAX, |n| n as u64),
        |round| time_starts(round, round.len(), false),
    );
    let opened = metric(UPSTREAMS_OPENED).unwrap_or(0.0) - opened_before;
    let warm_ms = time_starts(&urls[..1], o.trials, true);
    eprintln!(
        "start, one hop: cold {} ms, warm {} ms",
        percentiles(cold_ms.clone()),
        percentiles(warm_ms.clone())
    );
    Starts { cold_ms, warm_ms, upstreams: vec![("b", opened as u64)] }
}

/// a–b–c in network namespaces, a and c cut off from each other, the cameras beside a: live
/// starts at c, timed from inside c's namespace. `None` without namespaces.
fn two_hops(o: &Options, clip: &Path, cameras: usize) -> Option<Starts> {
    let mut lab = lab_or_skip()?;
    let [a, b, c] = lab.chain("RelayStart", "secret-relay-start", cameras + 1);
    // Declared after the lab: dropped (killed) before it deletes the namespaces.
    let _cameras = lab.test_cameras(a, cameras, &["--clip", clip.to_str().unwrap()]);
    let ids = lab.add_recorded_cameras(a, cameras);
    std::thread::sleep(Duration::from_secs(3));

    let address = &lab.servers[c].address;
    let urls: Vec<String> =
        ids.iter().map(|id| format!("rtsp://{address}:{RTSP_PORT}/{id}")).collect();
    let opened = || [c, b].map(|i| lab.metric(i, UPSTREAMS_OPENED).unwrap_or(0));
    let opened_before = opened();
    let cold_ms = cold_rounds(
        o.trials,
        &urls,
        || [b, c].map(|i| lab.metric(i, RELAYS_OPEN).unwrap_or(u64::MAX / 2)).iter().sum(),
        |round| probe_in(&lab, c, round, round.len(), false),
    );
    let opened_after = opened();
    let warm_ms = probe_in(&lab, c, &urls[..1], o.trials, true);
    eprintln!(
        "start, two hops: cold {} ms, warm {} ms",
        percentiles(cold_ms.clone()),
        percentiles(warm_ms.clone())
    );
    let upstreams =
        vec![("c", opened_after[0] - opened_before[0]), ("b", opened_after[1] - opened_before[1])];
    Some(Starts { cold_ms, warm_ms, upstreams })
}

/// `trials` cold starts in rounds of one per URL, each round once `relays_open()` is zero.
fn cold_rounds(
    trials: usize,
    urls: &[String],
    relays_open: impl Fn() -> u64,
    time: impl Fn(&[String]) -> Vec<f64>,
) -> Vec<f64> {
    let mut ms = Vec::with_capacity(trials);
    while ms.len() < trials {
        wait_for("every relay to end", RELAYS_END, || {
            let open = relays_open();
            (open == 0, open)
        });
        ms.extend(time(&urls[..urls.len().min(trials - ms.len())]));
    }
    ms
}

/// Times `trials` live starts, cycling through `urls`: ms from connecting to the end of the
/// first whole frame. With `keep`, a viewer of the first URL stays connected meanwhile
/// (without reading: it only keeps the relays open).
fn time_starts(urls: &[String], trials: usize, keep: bool) -> Vec<f64> {
    let keeper = keep.then(|| {
        let mut v = Viewer::play_url(&urls[0]);
        v.first_frame();
        v
    });
    let ms = urls
        .iter()
        .cycle()
        .take(trials)
        .map(|url| {
            let t = Instant::now();
            let mut v = Viewer::play_url(url);
            v.first_frame();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop(keeper);
    ms
}

/// [`probe`] run in server `i`'s namespace: its times.
fn probe_in(lab: &Lab, i: usize, urls: &[String], trials: usize, keep: bool) -> Vec<f64> {
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    let mut command = lab.command_in(i, exe);
    command.args([PROBE, "--trials", &trials.to_string()]);
    if keep {
        command.arg("--keep");
    }
    for url in urls {
        command.args(["--url", url]);
    }
    let out = command.output().expect("the probe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the probe in {}: {}\n{stderr}", lab.servers[i].name, out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("the probe's output: {e}: {}", String::from_utf8_lossy(&out.stdout))
    })
}

/// Times live starts from inside a namespace; prints them (ms, a JSON array).
///
/// `probe-start --url URL [--url URL…] [--trials N] [--keep]`: `N` starts (one per URL by
/// default), cycling through the URLs; with `--keep`, a viewer of the first URL stays meanwhile.
pub fn probe(args: &[String]) {
    let (mut urls, mut trials, mut keep) = (Vec::new(), None, false);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--url" => urls.push(rest.next().expect("--url needs a URL").clone()),
            "--trials" => trials = rest.next().and_then(|n| n.parse().ok()),
            "--keep" => keep = true,
            other => panic!("{PROBE}: unknown argument {other:?}"),
        }
    }
    assert!(!urls.is_empty(), "{PROBE}: no --url");
    let ms = time_starts(&urls, trials.unwrap_or(urls.len()), keep);
    println!("{}", serde_json::to_string(&ms).unwrap());
}
