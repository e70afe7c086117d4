//! `hive-video-bench`: the video figures of `docs/benchmarks.md`, measured on real processes
//! over loopback.
//!
//! ```sh
//! cargo build --release -p hive -p hive-tests
//! HIVE_BIN=target/release/hive target/release/hive-video-bench all --markdown /tmp/video.md
//! ```
//!
//! - `record`: one server records `--cameras` test cameras of a 2 Mbit/s clip; CPU per
//!   stream, bytes written per second, frames lost (frames the camera sent that the archive
//!   did not store).
//! - `live-start`: a new client's time from connecting to its first whole frame, from the
//!   recorder's GOP cache; and, for comparison, to the first keyframe that starts after it
//!   connected, which is what a server without the cache would make it wait for.
//! - `seek`: a synthetic archive of `--days` days (small frames, one a second) is written with
//!   the server's own archive code; the rescan on start, then the time from connecting to the
//!   first frame at random positions.
//! - `fanout`: `--clients` clients of one recorded camera (CPU, what each received), then
//!   one fast client of a high-rate camera against the loopback ceiling measured by `iperf3`
//!   in the same run.
//!
//! Clips are made once into `target/bench-clips` with `shell/assets/make-clip.sh` (ffmpeg).

use hive::archive::{Archive, ArchiveConfig};
use hive::video::testcamera::Clip;
use hive_media::frame::Codec;
use hive_tests::bench::*;
use hive_tests::procfs::{clock_ticks, cpu_ticks, quantile, write_bytes};
use hive_tests::video::{test_cameras, Killed};
use hive_tests::{free_port, Hive};
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: hive-video-bench [COMMAND] [OPTIONS]

commands:
  all          every figure below (the default)
  record       one server recording --cameras cameras of 2 Mbit/s
  live-start   time to first frame of a new live client, --trials times
  seek         time to first frame at random positions of a --days archive
  fanout       --clients clients of one camera; one fast client against iperf3
  help         this text

options:
  --cameras N    record: cameras                          [256]
  --seconds S    record, fanout: seconds measured         [30]
  --trials N     live-start, seek: clients timed           [100]
  --days D       seek: days of synthetic archive           [30]
  --clients N    fanout: clients of one camera             [64]
  --markdown F   also write the results as markdown to F

The servers are $HIVE_BIN (relative to the workspace root), else the newest
target/{release,debug}/hive.";

/// Seed of the random positions and pauses: runs are comparable.
const SEED: u64 = 9;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return println!("{USAGE}"),
        Err(message) => {
            eprintln!("hive-video-bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let figures: [(&str, Figure<Options>); 4] =
        [("record", record), ("live-start", live_start), ("seek", seek), ("fanout", fanout)];
    run_figures("hive-video-bench", &args, &o.command, o.markdown.as_deref(), &o, &figures);
}

/// The command line.
struct Options {
    command: String,
    cameras: usize,
    seconds: u64,
    trials: usize,
    days: u64,
    clients: usize,
    markdown: Option<PathBuf>,
}

impl Options {
    /// `None` for `help`.
    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut o = Options {
            command: "all".into(),
            cameras: 256,
            seconds: 30,
            trials: 100,
            days: 30,
            clients: 64,
            markdown: None,
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = |name: &str| positive_arg(name, &mut rest);
            match arg.as_str() {
                "help" | "--help" | "-h" => return Ok(None),
                "all" | "record" | "live-start" | "seek" | "fanout" => o.command = arg.clone(),
                "--cameras" => o.cameras = value(arg)? as usize,
                "--seconds" => o.seconds = value(arg)?,
                "--trials" => o.trials = value(arg)? as usize,
                "--days" => o.days = value(arg)?,
                "--clients" => o.clients = value(arg)? as usize,
                "--markdown" => {
                    o.markdown = Some(rest.next().ok_or("--markdown needs a file")?.into())
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(o))
    }
}

// ---------------------------------------------------------------------------------------------
// Recording

/// Readings of the recording server and its cameras at one moment.
struct RecordSample {
    at: Instant,
    server_ticks: u64,
    camera_ticks: u64,
    written: u64,
    /// (frames stored, when read) of each camera.
    cameras: Vec<(u64, Instant)>,
}

fn record_sample(hive: &Hive, cameras: &Killed, ids: &[String]) -> RecordSample {
    let at = Instant::now();
    let server_ticks = cpu_ticks(pid(hive));
    let camera_ticks = cpu_ticks(cameras.0.id());
    let written = write_bytes(pid(hive));
    let cameras = ids
        .iter()
        .map(|id| {
            let s = status(hive, id);
            (s["frames"].as_u64().unwrap_or(0), Instant::now())
        })
        .collect();
    RecordSample { at, server_ticks, camera_ticks, written, cameras }
}

fn record(o: &Options) -> String {
    let clip = clip(10, "1280x720", 2000);
    let bits = clip_bits_per_second(&clip);
    let port = free_port();
    let cameras = test_cameras(o.cameras as u32, port, None, &["--clip", clip.to_str().unwrap()]);
    let hive = server("recorder");
    let ids: Vec<String> = (1..=o.cameras)
        .map(|i| add_camera(&hive, &format!("cam {i}"), &format!("rtsp://127.0.0.1:{port}/cam{i}")))
        .collect();
    eprintln!("record: {} cameras of {:.2} Mbit/s added", o.cameras, bits / 1e6);
    wait_recording(&hive, &ids);
    std::thread::sleep(Duration::from_secs(5));
    let before = record_sample(&hive, &cameras, &ids);
    std::thread::sleep(Duration::from_secs(o.seconds));
    let after = record_sample(&hive, &cameras, &ids);
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let ticks = clock_ticks();
    let server_cpu = (after.server_ticks - before.server_ticks) as f64 / ticks / wall;
    let camera_cpu = (after.camera_ticks - before.camera_ticks) as f64 / ticks / wall;
    let written = (after.written - before.written) as f64 / wall;
    // A camera's frames lost: the frames it sent between the two readings of its status (a
    // test camera sends every frame, at 25 fps) less the frames stored. Frames on their way
    // at either reading make each camera's count uncertain by a frame or two.
    let (mut stored, mut sent, mut stalled) = (0u64, 0f64, 0usize);
    for ((f0, t0), (f1, t1)) in before.cameras.iter().zip(&after.cameras) {
        sent += t1.duration_since(*t0).as_secs_f64() * FPS;
        stored += f1 - f0;
        stalled += usize::from(f1 == f0);
    }
    let lost = sent.round() as i64 - stored as i64;
    let n = o.cameras as f64;
    eprintln!("record: server {server_cpu:.2} cores, lost {lost}");
    let mut md = String::new();
    writeln!(md, "### Recording {} cameras × {:.2} Mbit/s on one server\n", o.cameras, bits / 1e6)
        .unwrap();
    writeln!(md, "| figure | result |\n|---|---|").unwrap();
    writeln!(md, "| stream rate in (all cameras) | {:.0} Mbit/s |", bits * n / 1e6).unwrap();
    writeln!(
        md,
        "| recording server CPU | {:.1} % of one core = **{:.2} % per stream** |",
        server_cpu * 100.0,
        server_cpu * 100.0 / n
    )
    .unwrap();
    writeln!(
        md,
        "| test camera process CPU (same machine) | {:.1} % of one core |",
        camera_cpu * 100.0
    )
    .unwrap();
    writeln!(md, "| written to storage | {:.1} MB/s |", written / 1e6).unwrap();
    writeln!(md, "| frames sent by the cameras while measured (25 fps each) | {sent:.0} |")
        .unwrap();
    writeln!(md, "| frames stored | {stored} |").unwrap();
    writeln!(
        md,
        "| **frames lost** (sent − stored; ± {} for frames on their way) | **{lost}** (cameras that stored nothing: {stalled}) |\n",
        2 * o.cameras
    )
    .unwrap();
    md
}

// ---------------------------------------------------------------------------------------------
// Live start

fn live_start(o: &Options) -> String {
    let port = free_port();
    let _cameras = test_cameras(1, port, None, &[]);
    let hive = server("live");
    let id = add_camera(&hive, "live", &format!("rtsp://127.0.0.1:{port}/cam1"));
    wait_recording(&hive, std::slice::from_ref(&id));
    std::thread::sleep(Duration::from_secs(3));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let (mut first, mut fresh) = (Vec::new(), Vec::new());
    for _ in 0..o.trials {
        // A random phase within the one-second GOP.
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1000)));
        let start = Instant::now();
        let mut v = Viewer::play(hive.rtsp, &id);
        let cached_ts = v.first_frame();
        first.push(start.elapsed().as_secs_f64() * 1e3);
        loop {
            let p = v.packet();
            if p.keyframe_start && (p.timestamp.wrapping_sub(cached_ts) as i32) > 0 {
                fresh.push(start.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    eprintln!("live-start: first frame {}", percentiles(first.clone()));
    let mut md = format!("### Live start ({} clients, one at a time)\n\n", o.trials);
    writeln!(md, "| from connecting (TCP, DESCRIBE, SETUP, PLAY) to … | p50 / p99 / max ms |")
        .unwrap();
    writeln!(md, "|---|---|").unwrap();
    writeln!(md, "| the first whole frame (from the GOP cache) | **{}** |", percentiles(first))
        .unwrap();
    writeln!(
        md,
        "| the first keyframe after connecting (what a server without the cache waits for; GOP 1 s) | {} |\n",
        percentiles(fresh)
    )
    .unwrap();
    md
}

// ---------------------------------------------------------------------------------------------
// Seek

fn seek(o: &Options) -> String {
    let tiny = clip(4, "96x96", 16);
    let clip = Clip::parse(Codec::H264, &std::fs::read(&tiny).unwrap()).unwrap();
    let mut hive = server("seek");
    // A camera nobody can reach: the server records nothing more of it.
    let id = add_camera(&hive, "archive", "rtsp://127.0.0.1:9/none");
    hive.stop();

    let root = hive.data_dir.join("archive");
    let _ = std::fs::remove_dir_all(&root);
    let config = ArchiveConfig { segment_bytes: 64 << 20, max_bytes: 1 << 40, max_days: 0 };
    let frames = o.days * 86_400;
    let end_us = hive_tests::video::now_ms() * 1000 - 60_000_000;
    let start_us = end_us - frames as i64 * 1_000_000;
    let written = Instant::now();
    let mut payload_bytes = 0u64;
    {
        let archive = Archive::open(&root, config).unwrap();
        let writer = archive.writer(id.parse().unwrap(), 0);
        for n in 0..frames as i64 {
            let frame = clip.frame(n, start_us + n * 1_000_000);
            payload_bytes += frame.data.len() as u64;
            writer.append(&frame).unwrap();
            if n % 100_000 == 0 {
                archive.flush().unwrap();
            }
        }
        archive.flush().unwrap();
    }
    let write_s = written.elapsed().as_secs_f64();
    let bytes: u64 = walk_bytes(&root);
    let gop = (1..clip.len() as i64).find(|&n| clip.frame(n, 0).keyframe).unwrap_or(1);
    // The rescan a start does, alone, with a cold page cache.
    let _ = Command::new("sh").args(["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]).status();
    let rescan = Instant::now();
    let damage = Archive::open(&root, config).unwrap().recovery().damage.len();
    assert_eq!(damage, 0, "the synthetic archive reads back whole");
    let rescan_s = rescan.elapsed().as_secs_f64();
    eprintln!(
        "seek: {frames} frames, {bytes} bytes written in {write_s:.1} s, rescan {rescan_s:.2} s"
    );
    let _ = Command::new("sh").args(["-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]).status();
    let started = Instant::now();
    hive.spawn();
    let start_s = started.elapsed().as_secs_f64();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let mut times = Vec::new();
    for _ in 0..o.trials {
        let pos_ms = rng.gen_range(start_us / 1000 + 60_000..end_us / 1000 - 60_000);
        let t = Instant::now();
        let mut v = Viewer::play(hive.rtsp, &format!("{id}?pos={pos_ms}"));
        v.first_frame();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("seek: {}", percentiles(times.clone()));
    let mut md = format!(
        "### Seek in a {}-day archive ({} frames of {} bytes on average, one a second, a keyframe every {} s)\n\n",
        o.days,
        frames,
        payload_bytes / frames.max(1),
        gop
    );
    writeln!(md, "| figure | result |\n|---|---|").unwrap();
    writeln!(
        md,
        "| archive on disk (segments of 64 MiB, preallocated) | {:.0} MB |",
        bytes as f64 / 1e6
    )
    .unwrap();
    writeln!(md, "| writing it with the archive's writer | {write_s:.2} s |").unwrap();
    writeln!(md, "| rescan on open (cold page cache): index rebuilt | {rescan_s:.2} s |").unwrap();
    writeln!(
        md,
        "| server start to API answering (rescan included, cold cache) | {start_s:.2} s |"
    )
    .unwrap();
    writeln!(
        md,
        "| connect → first frame at a random position, {} trials, p50 / p99 / max | **{} ms** |\n",
        o.trials,
        percentiles(times)
    )
    .unwrap();
    md
}

/// Bytes of the files under `dir`.
fn walk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Fan-out

fn fanout(o: &Options) -> String {
    let clip2 = clip(10, "1280x720", 2000);
    let bits = clip_bits_per_second(&clip2);
    let port = free_port();
    let _cameras = test_cameras(1, port, None, &["--clip", clip2.to_str().unwrap()]);
    let hive = server("fanout");
    let id = add_camera(&hive, "popular", &format!("rtsp://127.0.0.1:{port}/cam1"));
    wait_recording(&hive, std::slice::from_ref(&id));
    let time = Duration::from_secs(o.seconds);
    let (ticks0, t0) = (cpu_ticks(pid(&hive)), Instant::now());
    let received: Vec<Received> = std::thread::scope(|s| {
        let clients: Vec<_> =
            (0..o.clients).map(|_| s.spawn(|| watch(hive.rtsp, &id, time))).collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let cpu = (cpu_ticks(pid(&hive)) - ticks0) as f64 / clock_ticks() / t0.elapsed().as_secs_f64();
    let secs = time.as_secs_f64();
    let mut fps: Vec<f64> = received.iter().map(|r| r.frames as f64 / secs).collect();
    fps.sort_by(f64::total_cmp);
    let total_bits: f64 = received.iter().map(|r| r.bytes as f64 * 8.0 / secs).sum();

    // One fast client: a test camera sending a high-rate clip as fast as its pacing allows,
    // through the same RTSP server and fan-out code; one client reading it.
    let big = fast_clip();
    let fast_port = free_port();
    let _fast_camera =
        test_cameras(1, fast_port, None, &["--clip", big.to_str().unwrap(), "--fps", "1000"]);
    let fast =
        watch(format!("127.0.0.1:{fast_port}").parse().unwrap(), "cam1", Duration::from_secs(5));
    let fast_bits = fast.bytes as f64 * 8.0 / 5.0;
    let ceiling = iperf3_loopback();
    eprintln!(
        "fanout: {:.1} % CPU, fast {:.2} Gbit/s of {:.2}",
        cpu * 100.0,
        fast_bits / 1e9,
        ceiling / 1e9
    );
    let mut md =
        format!("### Fan-out: {} clients of one {:.2} Mbit/s camera\n\n", o.clients, bits / 1e6);
    writeln!(md, "| figure | result |\n|---|---|").unwrap();
    writeln!(
        md,
        "| server CPU (recording it and serving every client) | {:.1} % of one core |",
        cpu * 100.0
    )
    .unwrap();
    writeln!(md, "| delivered, all clients | {:.0} Mbit/s |", total_bits / 1e6).unwrap();
    writeln!(
        md,
        "| frames per second per client, min / median / max (camera sends {FPS}) | {:.1} / {:.1} / {:.1} |",
        fps.first().unwrap_or(&0.0),
        quantile(&fps, 0.5),
        fps.last().unwrap_or(&0.0)
    )
    .unwrap();
    writeln!(
        md,
        "| one fast client (~4 MB frames at up to 1,000 fps from a test camera: the same RTSP server and fan-out code) | **{:.2} Gbit/s** |",
        fast_bits / 1e9
    )
    .unwrap();
    writeln!(
        md,
        "| loopback ceiling, `iperf3` one TCP stream, same run | {:.2} Gbit/s |\n",
        ceiling / 1e9
    )
    .unwrap();
    md
}

// ---------------------------------------------------------------------------------------------
// Relay
