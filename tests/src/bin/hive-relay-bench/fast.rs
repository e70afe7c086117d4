//! One fast stream through one hop against the loopback ceiling: a test camera sends huge
//! frames as fast as its pacing allows, a recorder (archive on tmpfs, so the disk is not what
//! limits it) records it, a second server relays it to one client. What that client receives
//! is set against a client of the recorder itself and against `iperf3` in the same run.

use crate::Options;
use hive_tests::bench::{fast_clip, iperf3_loopback, pid, watch, RecorderAndRelay};
use hive_tests::procfs::{clock_ticks, cpu_ticks};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Archive bytes the recorder keeps: the fast camera fills tmpfs at gigabytes a second.
const ARCHIVE_MAX_BYTES: u64 = 3 << 30;

/// The figure.
pub fn run(o: &Options) -> String {
    let big = fast_clip();
    let camera_args = ["--clip", big.to_str().unwrap(), "--fps", "1000"];
    let pair = RecorderAndRelay::start("fast", 1, &camera_args, |spec| {
        spec.data_parent = Some("/dev/shm".into());
        spec.extra.extend(["--archive-max-bytes".into(), ARCHIVE_MAX_BYTES.to_string()]);
    });
    let (a, b, id) = (&pair.recorder, &pair.relay, &pair.ids[0]);
    let time = Duration::from_secs(o.seconds.min(10));
    let direct = watch(a.rtsp, id, time);
    let (ticks0, t0) = (cpu_ticks(pid(b)), Instant::now());
    let relayed = watch(b.rtsp, id, time);
    let relay_cpu =
        (cpu_ticks(pid(b)) - ticks0) as f64 / clock_ticks() / t0.elapsed().as_secs_f64();
    let secs = time.as_secs_f64();
    let gbit = |bytes: u64| bytes as f64 * 8.0 / secs / 1e9;
    let ceiling = iperf3_loopback() / 1e9;
    eprintln!(
        "fast: direct {:.2}, relayed {:.2}, iperf3 {ceiling:.2} Gbit/s",
        gbit(direct.bytes),
        gbit(relayed.bytes)
    );
    let mut md = String::from("### One fast stream through one hop\n\n");
    writeln!(md, "| figure | result |\n|---|---|").unwrap();
    writeln!(
        md,
        "| one client of the recorder (~4 MB frames; the camera, retina's pull and the archive on tmpfs share the machine) | {:.2} Gbit/s |",
        gbit(direct.bytes)
    )
    .unwrap();
    writeln!(
        md,
        "| one client through one relaying server | **{:.2} Gbit/s** (relay CPU {:.0} % of one core) |",
        gbit(relayed.bytes),
        relay_cpu * 100.0
    )
    .unwrap();
    writeln!(md, "| loopback ceiling, `iperf3` one TCP stream, same run | {ceiling:.2} Gbit/s |\n")
        .unwrap();
    md
}
