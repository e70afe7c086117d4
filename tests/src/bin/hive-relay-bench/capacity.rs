//! The most streams our relay carries on one core, measured at saturation on a share of one:
//! two cores cannot feed a relay a whole core's worth (the cameras and the recorder would need
//! far more), so the relay runs on core 1 in a cgroup whose CFS quota holds it to
//! [`SHARE_PERCENT`] % of a core, while the recorder, the cameras and the clients run on core
//! 0. Cameras are added [`STEP`] at a time, one client each at the relay, until the clients
//! fall behind (lose frames, or get fewer than the camera sends); the most carried at full
//! rate, scaled to the whole core, is the figure.

use crate::Options;
use hive_tests::bench::{clip, pid, RecorderAndRelay, Viewer};
use hive_tests::procfs::{clock_ticks, cpu_ticks};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The relay's share of one core, percent.
const SHARE_PERCENT: u64 = 5;
/// A step whose slowest client gets fewer frames a second than this has fallen behind (the
/// camera sends 25; a frame or two late at the ends of the window is jitter, not falling
/// behind).
const SLOWEST_FPS_MIN: f64 = 23.0;
/// Cameras recorded; the steps go up to this many relayed at once.
const CAMERAS: usize = 100;
/// Relayed streams added at each step.
const STEP: usize = 10;
/// Seconds before a step's frames count: relays start, GOP bursts pass.
const WARM_UP: Duration = Duration::from_secs(4);
/// RTP ticks between two frames of the test clip (90 kHz at 25 frames/s).
const FRAME_TICKS: u32 = 3_600;

/// One step: streams relayed, the clients' frame rates (slowest first), frames lost by all
/// clients, the relay's CPU.
struct Step {
    streams: usize,
    fps: Vec<f64>,
    lost: u64,
    cpu: f64,
}

/// The figure.
pub fn run(o: &Options) -> String {
    let clip2 = clip(10, "1280x720", 2000);
    let camera_args = ["--clip", clip2.to_str().unwrap()];
    let pair = RecorderAndRelay::start("capacity", CAMERAS, &camera_args, |_| {});
    let relay_pid = pid(&pair.relay);
    for (pid, core) in [
        (relay_pid, 1),
        (pid(&pair.recorder), 0),
        (pair.cameras.0.id(), 0),
        (std::process::id(), 0),
    ] {
        pin(pid, core);
    }
    let Some(_cgroup) = Cgroup::hold(relay_pid, SHARE_PERCENT) else {
        return "### Streams per core\n\nSkipped: no cgroup v1 `cpu` controller (needs root).\n\n"
            .into();
    };
    let time = Duration::from_secs(o.seconds.min(10));
    let mut steps: Vec<Step> = Vec::new();
    for streams in (STEP..=CAMERAS).step_by(STEP) {
        let urls: Vec<String> = pair.ids[..streams]
            .iter()
            .map(|id| format!("rtsp://{}/{id}", pair.relay.rtsp))
            .collect();
        let step = measure(relay_pid, &urls, time);
        eprintln!(
            "capacity: {streams} streams, slowest {:.1} fps, median {:.1}, {} frames lost, relay {:.1} % of a core",
            step.fps[0],
            step.fps[step.fps.len() / 2],
            step.lost,
            step.cpu * 100.0
        );
        let behind = !step.kept_up();
        steps.push(step);
        if behind {
            break;
        }
    }
    let share = SHARE_PERCENT as f64;
    let carried = steps.iter().filter(|s| s.kept_up()).map(|s| s.streams).max();
    let mut md = format!(
        "### Streams per core: the relay held to {share:.0} % of one core\n\n\
         The relay pinned to core 1 in a cgroup with a CFS quota of {share:.0} % of a core; the \
         recorder, the cameras and the clients pinned to core 0. Cameras of 2.08 Mbit/s added {STEP} at a \
         time, one client each at the relay, {} s counted per step; the relay keeps up while no client \
         loses a frame (a gap in the RTP timestamps, which the relay keeps) and the slowest \
         client gets {SLOWEST_FPS_MIN} frames/s or more (the camera sends 25).\n\n",
        time.as_secs()
    );
    writeln!(
        md,
        "| streams relayed | clients' frames/s, slowest / median | frames lost | relay CPU |\n|---|---|---|---|"
    )
    .unwrap();
    for s in &steps {
        writeln!(
            md,
            "| {} | {:.1} / {:.1} | {} | {:.1} % of one core |",
            s.streams,
            s.fps[0],
            s.fps[s.fps.len() / 2],
            s.lost,
            s.cpu * 100.0
        )
        .unwrap();
    }
    match carried {
        Some(n) => writeln!(
            md,
            "\n**{n} streams at full rate on {share:.0} % of a core: about {:.0} on a whole core.**{}\n",
            n as f64 * 100.0 / share,
            if steps.last().is_some_and(|s| s.streams == n) {
                " Every step kept up: a lower bound."
            } else {
                ""
            }
        )
        .unwrap(),
        None => writeln!(md, "\nNot even {STEP} streams kept up.\n").unwrap(),
    }
    md
}

impl Step {
    /// No frame lost, and even the slowest client at about the camera's rate.
    fn kept_up(&self) -> bool {
        self.lost == 0 && self.fps[0] >= SLOWEST_FPS_MIN
    }
}

/// Every URL watched by one client for the warm-up and `time`: the clients' frame rates over
/// `time` and the relay's CPU then.
fn measure(relay_pid: u32, urls: &[String], time: Duration) -> Step {
    std::thread::scope(|s| {
        let clients: Vec<_> =
            urls.iter().map(|url| s.spawn(move || fps_after(url, time))).collect();
        std::thread::sleep(WARM_UP);
        let (ticks0, t0) = (cpu_ticks(relay_pid), Instant::now());
        std::thread::sleep(time);
        let cpu =
            (cpu_ticks(relay_pid) - ticks0) as f64 / clock_ticks() / t0.elapsed().as_secs_f64();
        let counted: Vec<(f64, u64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let mut fps: Vec<f64> = counted.iter().map(|(fps, _)| *fps).collect();
        fps.sort_by(f64::total_cmp);
        let lost = counted.iter().map(|(_, lost)| lost).sum();
        Step { streams: urls.len(), fps, lost, cpu }
    })
}

/// Frames per second a client of `url` gets over `time` after the warm-up, and the frames
/// missing between the first and the last it got then.
fn fps_after(url: &str, time: Duration) -> (f64, u64) {
    let mut v = Viewer::play_url(url);
    let start = Instant::now();
    while start.elapsed() < WARM_UP {
        v.packet();
    }
    let (mut frames, counted) = (0u64, Instant::now());
    let (mut first, mut last) = (None, 0u32);
    while counted.elapsed() < time {
        let p = v.packet();
        if p.marker {
            frames += 1;
            first.get_or_insert(p.timestamp);
            last = p.timestamp;
        }
    }
    let spanned = first.map_or(0, |f| u64::from(last.wrapping_sub(f) / FRAME_TICKS) + 1);
    (frames as f64 / counted.elapsed().as_secs_f64(), spanned.saturating_sub(frames))
}

/// Pins every thread of process `pid` to `core`.
fn pin(pid: u32, core: usize) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset runs (util-linux)");
    assert!(status.success(), "taskset of {pid}");
}

/// A cgroup (v1 `cpu`) that holds a process to a share of one core; removed on drop, once
/// the process is moved back out.
struct Cgroup {
    dir: std::path::PathBuf,
    pid: u32,
}

impl Cgroup {
    fn hold(pid: u32, percent: u64) -> Option<Cgroup> {
        let name = format!("hive-relay-bench-{}", std::process::id());
        let dir = std::path::Path::new("/sys/fs/cgroup/cpu").join(name);
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Cgroup { dir, pid };
        let period_us = 100_000;
        let quota_us = period_us * percent / 100;
        std::fs::write(cgroup.dir.join("cpu.cfs_period_us"), period_us.to_string()).ok()?;
        std::fs::write(cgroup.dir.join("cpu.cfs_quota_us"), quota_us.to_string()).ok()?;
        std::fs::write(cgroup.dir.join("cgroup.procs"), pid.to_string()).ok()?;
        Some(cgroup)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write("/sys/fs/cgroup/cpu/cgroup.procs", self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}
