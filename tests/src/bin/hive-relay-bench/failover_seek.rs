//! Seeks across a failover boundary: the time to the first frame of archive positions around
//! where a camera changed hands, asked of a server that recorded none of it, against plain
//! seeks within one recorder's span. One camera is recorded by A, then by B once A is killed,
//! then by A again once it is back and stable (fast failover timings); C stitches the spans
//! of both from their archives, through the hive.

use crate::Options;
use hive_tests::bench::{add_camera, bench_spec, clip, percentiles, status, Viewer, FPS};
use hive_tests::procfs::quantile;
use hive_tests::video::{
    fast_failover_servers, now_ms, recorded_ranges, records_now, rtp_ms, test_cameras,
};
use hive_tests::{free_port, wait_for, Hive};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How long A records before it is killed.
const FIRST_SPAN: Duration = Duration::from_secs(15);
/// How long B records after it took the camera over.
const TAKEN_SPAN: Duration = Duration::from_secs(15);
/// How long A records after it took the camera back.
const BACK_SPAN: Duration = Duration::from_secs(10);
/// Width of the windows of positions at a boundary (and margin of the plain ones), ms.
const EDGE_MS: i64 = 3_000;
/// The clip's keyframe interval, ms: a seek's first frame is at most this before the position.
const GOP_MS: f64 = 1_000.0;
/// Seed of the positions drawn.
const SEED: u64 = 9;

/// Where the camera changed hands: frame times, ms since the epoch.
#[derive(Debug)]
struct Boundaries {
    /// A's first span, first and last frame.
    a_from_ms: i64,
    a_to_ms: i64,
    /// B's span, first and last frame.
    b_from_ms: i64,
    b_to_ms: i64,
    /// A's first frame after it took the camera back.
    back_from_ms: i64,
    /// The last frame recorded before the seeks.
    end_ms: i64,
}

/// The seeks of one window: time to first frame, and the first frame's time against the
/// position asked, ms.
struct Window {
    name: String,
    from_ms: i64,
    to_ms: i64,
    ttff_ms: Vec<f64>,
    offset_ms: Vec<f64>,
}

/// The figure.
pub fn run(o: &Options) -> String {
    let clip2 = clip(10, "1280x720", 2000);
    let port = free_port();
    let _camera = test_cameras(1, port, None, &["--clip", clip2.to_str().unwrap()]);
    let mut servers = fast_failover_servers(&["seek-a", "seek-b", "seek-c"], bench_spec);
    let id = add_camera(&servers[0], "seek", &format!("rtsp://127.0.0.1:{port}/cam1"));

    // A records, dies; B takes the camera over; A comes back and, once stable, takes it back.
    let mut alive = [true; 3];
    let first = wait_recorder(&servers, &alive, &id, Duration::from_secs(30));
    std::thread::sleep(FIRST_SPAN);
    let a_last_ms = status(&servers[first], &id)["last_frame_us"].as_i64().unwrap_or(0) / 1000;
    let killed_ms = now_ms();
    servers[first].kill9();
    alive[first] = false;
    let taker = wait_recorder(&servers, &alive, &id, Duration::from_secs(40));
    let taken_ms = now_ms();
    std::thread::sleep(TAKEN_SPAN);
    let restarted_ms = now_ms();
    servers[first].spawn();
    wait_for("the camera to return", Duration::from_secs(60), || {
        let back = records_now(&servers[first], &id);
        (back, back)
    });
    let returned_ms = now_ms();
    // Frames stored since A began recording again: its first one, counted back from the last.
    let back_from_ms = first_frame_ms(&status(&servers[first], &id));
    std::thread::sleep(BACK_SPAN);

    let viewer = (0..3).find(|&i| i != first && i != taker).expect("three servers");
    let ranges = recorded_ranges(&servers[viewer], &id);
    assert!(!ranges.is_empty(), "no recorded range");
    let b_status = status(&servers[taker], &id);
    let b_last_ms = b_status["last_frame_us"].as_i64().unwrap_or(0) / 1000;
    // The failover's gap splits the ranges; without one, A's last frame is the one it had
    // just before it was killed, and B's own count says where it began.
    let split = ranges.len() > 1;
    let b = Boundaries {
        a_from_ms: ranges[0].0,
        a_to_ms: if split { ranges[0].1 } else { a_last_ms },
        b_from_ms: if split { ranges[1].0 } else { first_frame_ms(&b_status) },
        b_to_ms: b_last_ms,
        back_from_ms,
        end_ms: ranges.last().map_or(0, |r| r.1),
    };
    eprintln!(
        "failover-seek: ranges {ranges:?}, {b:?}; B's first frame by its count {}; B now {}",
        first_frame_ms(&b_status),
        b_status["state"]
    );

    let mut windows: Vec<Window> = [
        ("within A's first span (plain seek)", b.a_from_ms + EDGE_MS, b.a_to_ms - EDGE_MS),
        ("within B's span (plain seek)", b.b_from_ms + EDGE_MS, b.back_from_ms - EDGE_MS),
        ("within A's second span (plain seek)", b.back_from_ms + EDGE_MS, b.end_ms - EDGE_MS),
        ("last 3 s of A's first span", b.a_to_ms - EDGE_MS, b.a_to_ms),
        ("in the failover's gap (A's last frame to B's first)", b.a_to_ms, b.b_from_ms),
        ("first 3 s of B's span", b.b_from_ms, b.b_from_ms + EDGE_MS),
        (
            "last 3 s before A took the camera back (B's span)",
            b.back_from_ms - EDGE_MS,
            b.back_from_ms,
        ),
        ("first 3 s of A's second span", b.back_from_ms, b.back_from_ms + EDGE_MS),
    ]
    .into_iter()
    .filter(|&(_, from_ms, to_ms)| from_ms < to_ms)
    .map(|(name, from_ms, to_ms)| Window {
        name: name.into(),
        from_ms,
        to_ms,
        ttff_ms: Vec::new(),
        offset_ms: Vec::new(),
    })
    .collect();
    // Trial by trial through every window, so that whatever drifts over the run (caches, the
    // recording going on) falls on all alike.
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let rtsp = servers[viewer].rtsp;
    for _ in 0..o.trials {
        for w in &mut windows {
            let pos_ms = rng.gen_range(w.from_ms..w.to_ms);
            let t = Instant::now();
            let mut v = Viewer::play(rtsp, &format!("{id}?pos={pos_ms}"));
            let timestamp = v.first_frame();
            w.ttff_ms.push(t.elapsed().as_secs_f64() * 1e3);
            // Every server stamps RTP with the 90 kHz clock since the epoch.
            w.offset_ms.push(rtp_ms((pos_ms * 90) as u32, timestamp) as f64);
        }
    }
    for w in &windows {
        eprintln!(
            "failover-seek: {}: {} ms, first frame − position {}",
            w.name,
            percentiles(w.ttff_ms.clone()),
            spread(w.offset_ms.clone())
        );
    }
    markdown(o, &b, &windows, [killed_ms, taken_ms, restarted_ms, returned_ms])
}

/// The figure's section; `moments` are when A was killed, B seen recording, A restarted and A
/// seen recording again (ms since the epoch).
fn markdown(o: &Options, b: &Boundaries, windows: &[Window], moments: [i64; 4]) -> String {
    let [killed_ms, taken_ms, restarted_ms, returned_ms] = moments;
    let s = |ms: i64| ms as f64 / 1000.0;
    let mut md = String::from("### Seek across a failover boundary: time to first frame\n\n");
    writeln!(
        md,
        "One camera (1280x720, 2 Mbit/s, a keyframe a second) recorded by A, then by B once A was \
         killed, then by A again once it was back and stable (hold 3 s, stability 5 s); every \
         position asked of C, which recorded none of it and stitches the spans from A's and B's \
         archives. {} positions per window, drawn at random (seed {SEED}), windows taken in turn. \
         Time to first frame: from connecting to the end of the first whole frame; the first \
         frame's time against the position (a seek starts at the keyframe at or before it).\n",
        o.trials
    )
    .unwrap();
    writeln!(md, "| recording | |\n|---|---|").unwrap();
    let rows = [
        ("A's first span, first to last frame", format!("{:.1} s", s(b.a_to_ms - b.a_from_ms))),
        (
            "A's last frame's time − the moment A was killed (frame times start at the first \
             frame's arrival; the camera sends its cached GOP first, so they run ahead)",
            format!("{:+} ms", b.a_to_ms - killed_ms),
        ),
        ("A killed → B records, as B's API shows", format!("{:.1} s", s(taken_ms - killed_ms))),
        (
            "**gap in the recording**: A's last frame → B's first",
            format!("**{:.2} s**", s(b.b_from_ms - b.a_to_ms)),
        ),
        ("B's span, first to last frame", format!("{:.1} s", s(b.b_to_ms - b.b_from_ms))),
        (
            "A restarted → A records again, as A's API shows",
            format!("{:.1} s", s(returned_ms - restarted_ms)),
        ),
        (
            "hand-back: B's last frame − A's first frame again",
            format!("{:.2} s of overlap", s(b.b_to_ms - b.back_from_ms)),
        ),
    ];
    for (what, value) in rows {
        writeln!(md, "| {what} | {value} |").unwrap();
    }
    writeln!(
        md,
        "\n| positions | window | time to first frame, p50 / p99 / max | first frame − position, min / p50 / max | first frame over a GOP (1 s) after the position |\n|---|---|---|---|---|"
    )
    .unwrap();
    for w in windows {
        writeln!(
            md,
            "| {} | {:.1} s | **{} ms** | {} ms | {} of {} |",
            w.name,
            s(w.to_ms - w.from_ms),
            percentiles(w.ttff_ms.clone()),
            spread(w.offset_ms.clone()),
            w.offset_ms.iter().filter(|&&ms| ms > GOP_MS).count(),
            w.offset_ms.len()
        )
        .unwrap();
    }
    md.push('\n');
    md
}

/// Which of `servers` records `id` now, by its own status, waiting up to `limit`.
fn wait_recorder(servers: &[Hive], alive: &[bool], id: &str, limit: Duration) -> usize {
    let recorder = wait_for("a server to record the camera", limit, || {
        let at = (0..servers.len()).find(|&i| alive[i] && records_now(&servers[i], id));
        (at.is_some(), at)
    });
    recorder.expect("checked above")
}

/// The first frame of a recording status's run, ms since the epoch: its last frame, less the
/// frames stored since recording began there, at the camera's rate.
fn first_frame_ms(status: &Value) -> i64 {
    let last_ms = status["last_frame_us"].as_i64().unwrap_or(0) / 1000;
    let frames = status["frames"].as_i64().unwrap_or(1).max(1);
    last_ms - ((frames - 1) as f64 * 1000.0 / FPS) as i64
}

/// min / p50 / max of samples, ms.
fn spread(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "{:.0} / {:.0} / {:.0}",
        ms.first().copied().unwrap_or(0.0),
        quantile(&ms, 0.5),
        ms.last().copied().unwrap_or(0.0)
    )
}
