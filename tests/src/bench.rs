//! What the benchmark binaries share: clips, servers and cameras, a lean RTSP client that
//! reads RTP in bulk, the loopback ceiling, and percentiles.

use crate::procfs::quantile;
use crate::video::Killed;
use crate::{discovery_port, free_port, wait_for, Hive, Spec, OWNER_PASSWORD};
use hive::video::testcamera::Clip;
use hive_media::frame::Codec;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test clip's frame rate (`make-clip.sh`).
pub const FPS: f64 = 25.0;
/// The workspace root (clips and `make-clip.sh` are found from it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A clip made by `make-clip.sh` (once; kept in `target/bench-clips`).
pub fn clip(seconds: u32, size: &str, kbit: u32) -> PathBuf {
    let dir = workspace().join("target/bench-clips");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{size}-{kbit}k-{seconds}s.h264"));
    if !path.exists() {
        let status = Command::new(workspace().join("shell/assets/make-clip.sh"))
            .arg(&path)
            .args([&seconds.to_string(), size, &kbit.to_string(), "h264"])
            .status()
            .expect("make-clip.sh runs (ffmpeg installed)");
        assert!(status.success(), "make-clip.sh {}", path.display());
    }
    path
}

/// A clip of huge frames (lossless 1080p noise, ~4 MB a frame) for the fast client: at the
/// test camera's top rate it offers far more than loopback carries, so the server is what
/// limits the client.
pub fn fast_clip() -> PathBuf {
    let path = workspace().join("target/bench-clips/1920x1080-lossless-1s.h264");
    if !path.exists() {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=1920x1080:rate=25", "-t", "1"])
            .args(["-vf", "noise=alls=60:allf=t", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
            .args(["-preset", "ultrafast", "-qp", "0"])
            .args(["-x264-params", "keyint=25:min-keyint=25:scenecut=0:bframes=0"])
            .args(["-bsf:v", "dump_extra=freq=keyframe", "-f", "h264"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg making {}", path.display());
    }
    path
}

/// Bits per second of a clip looped at [`FPS`].
pub fn clip_bits_per_second(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let frames = Clip::parse(Codec::H264, &bytes).expect("the clip parses").len();
    bytes.len() as f64 * 8.0 * FPS / frames as f64
}

/// A server of its own one-server system, logging warnings only.
pub fn server(name: &str) -> Hive {
    Hive::start(bench_spec(name, discovery_port()))
}

/// The spec of a benchmark server: system "VideoBench", discovery on `port`, warnings only.
pub fn bench_spec(name: &str, port: u16) -> Spec {
    let mut spec = Spec::new(name, "VideoBench", "secret-video-bench", port);
    spec.env.push(("HIVE_LOG".into(), "warn".into()));
    spec
}

/// Adds a camera; its id.
pub fn add_camera(hive: &Hive, name: &str, url: &str) -> String {
    let (status, cam) = hive.api().post("/api/cameras", &json!({ "name": name, "url": url }));
    assert_eq!(status, 201, "{cam}");
    cam["id"].as_str().unwrap().to_owned()
}

/// The camera's recording status on `hive`.
pub fn status(hive: &Hive, id: &str) -> Value {
    hive.api().get(&format!("/api/cameras/{id}/status")).1["status"].clone()
}

/// Waits until every camera of `ids` records.
pub fn wait_recording(hive: &Hive, ids: &[String]) {
    wait_for("every camera to record", Duration::from_secs(180), || {
        let recording = ids.iter().filter(|id| status(hive, id)["state"] == "recording").count();
        (recording == ids.len(), recording)
    });
}

/// The server's process id.
pub fn pid(hive: &Hive) -> u32 {
    hive.pid().expect("the server runs")
}

/// The CPU's model name, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().into()))
        .unwrap_or_else(|| "unknown CPU".into())
}

/// p50 / p99 / max of samples, ms.
pub fn percentiles(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "{:.1} / {:.1} / {:.1}",
        quantile(&ms, 0.5),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0)
    )
}

// ---------------------------------------------------------------------------------------------
// A lean RTSP/TCP client: what a player does up to PLAY, then RTP packets read in bulk

/// One RTP packet's header fields the figures need.
pub struct Packet {
    /// RTP timestamp.
    pub timestamp: u32,
    /// Last packet of a frame.
    pub marker: bool,
    /// First packet of an H.264 keyframe (SPS, IDR, or the start of a fragmented IDR).
    pub keyframe_start: bool,
    /// Bytes on the wire, interleaving header included.
    pub bytes: usize,
    /// The last bytes of the payload: of a frame's last packet, the end of its last NAL unit,
    /// whatever the packetization, so it names a frame across relays that repacketize.
    pub tail: [u8; 16],
}

/// An RTSP response's parts the viewer needs.
struct Response {
    code: u16,
    session: Option<String>,
    content_base: Option<String>,
    body: Vec<u8>,
}

/// A playing RTSP session over TCP.
pub struct Viewer {
    reader: BufReader<TcpStream>,
    buf: Vec<u8>,
}

impl Viewer {
    /// DESCRIBE, SETUP and PLAY of `path` (with its query) at `addr` as the owner.
    pub fn play(addr: SocketAddr, path: &str) -> Viewer {
        Viewer::play_url(&format!("rtsp://{addr}/{path}"))
    }

    /// DESCRIBE, SETUP (the track the SDP names) and PLAY of an `rtsp://host:port/path?query`
    /// URL, with the owner's credentials (a server that asks none ignores them).
    pub fn play_url(url: &str) -> Viewer {
        use base64::Engine;
        let authority = url.strip_prefix("rtsp://").and_then(|r| r.split('/').next()).unwrap();
        let stream = TcpStream::connect(authority).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{OWNER_PASSWORD}"));
        let mut v = Viewer {
            reader: BufReader::with_capacity(256 << 10, stream),
            buf: Vec::with_capacity(64 << 10),
        };
        let mut session = String::new();
        let mut request = |v: &mut Viewer, cseq: u32, method: &str, target: &str, extra: &str| {
            let session_line =
                if session.is_empty() { String::new() } else { format!("Session: {session}\r\n") };
            let request = format!(
                "{method} {target} RTSP/1.0\r\nCSeq: {cseq}\r\nAuthorization: Basic {token}\r\n\
                 {session_line}{extra}\r\n"
            );
            v.reader.get_mut().write_all(request.as_bytes()).unwrap();
            let response = v.response();
            assert_eq!(response.code, 200, "{method} {target}");
            if let Some(id) = &response.session {
                session.clone_from(id);
            }
            response
        };
        let described = request(&mut v, 1, "DESCRIBE", url, "Accept: application/sdp\r\n");
        let control = String::from_utf8_lossy(&described.body)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a=control:").map(str::to_owned))
            .find(|c| c != "*")
            .unwrap_or_else(|| "trackID=0".into());
        let track = if control.starts_with("rtsp://") {
            control
        } else {
            let base = described.content_base.unwrap_or_else(|| {
                let (base, query) = url.split_once('?').unwrap_or((url, ""));
                // Our server's base keeps the query after the track.
                if query.is_empty() {
                    format!("{base}/")
                } else {
                    format!("{base}/?{query}")
                }
            });
            match base.split_once('?') {
                Some((b, q)) => format!("{}/{control}?{q}", b.trim_end_matches('/')),
                None => format!("{}/{control}", base.trim_end_matches('/')),
            }
        };
        request(&mut v, 2, "SETUP", &track, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n");
        request(&mut v, 3, "PLAY", url, "");
        v
    }

    /// Reads one response (skipping interleaved packets before it).
    fn response(&mut self) -> Response {
        loop {
            if self.reader.fill_buf().unwrap().first() == Some(&b'$') {
                self.packet();
                continue;
            }
            let mut r = Response { code: 0, session: None, content_base: None, body: Vec::new() };
            let mut length = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(rest) = l.strip_prefix("RTSP/1.0 ") {
                    r.code = rest.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(0);
                } else if let Some((name, value)) = l.split_once(':') {
                    let value = value.trim();
                    match name.to_ascii_lowercase().as_str() {
                        "session" => r.session = value.split(';').next().map(str::to_owned),
                        "content-length" => length = value.parse().unwrap_or(0),
                        "content-base" => r.content_base = Some(value.to_owned()),
                        _ => {}
                    }
                }
            }
            r.body = vec![0; length];
            self.reader.read_exact(&mut r.body).unwrap();
            return r;
        }
    }

    /// The next interleaved packet (RTP on channel 0; RTCP on 1 is skipped).
    pub fn packet(&mut self) -> Packet {
        loop {
            let mut head = [0u8; 4];
            self.reader.read_exact(&mut head).unwrap();
            assert_eq!(head[0], b'$', "an interleaved packet");
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            self.buf.resize(len, 0);
            self.reader.read_exact(&mut self.buf).unwrap();
            if head[1] != 0 || len < 14 {
                continue;
            }
            let p = &self.buf;
            let nal = p[12] & 0x1f;
            let keyframe_start = match nal {
                5 | 7 => true,
                24 => p.get(15).is_some_and(|b| matches!(b & 0x1f, 5 | 7)),
                28 => p[13] & 0x80 != 0 && p[13] & 0x1f == 5,
                _ => false,
            };
            let mut tail = [0; 16];
            let n = (len - 12).min(16);
            tail[16 - n..].copy_from_slice(&p[len - n..]);
            return Packet {
                timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                marker: p[1] & 0x80 != 0,
                keyframe_start,
                bytes: len + 4,
                tail,
            };
        }
    }

    /// Reads until the end of the first whole frame; its RTP timestamp.
    pub fn first_frame(&mut self) -> u32 {
        loop {
            let p = self.packet();
            if p.marker {
                return p.timestamp;
            }
        }
    }
}

/// What one client of the fan-out received.
#[derive(Default)]
pub struct Received {
    /// Whole frames.
    pub frames: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Plays `path` at `addr` for `time` counting frames and bytes.
pub fn watch(addr: SocketAddr, path: &str, time: Duration) -> Received {
    let mut v = Viewer::play(addr, path);
    let start = Instant::now();
    let mut r = Received::default();
    while start.elapsed() < time {
        let p = v.packet();
        r.bytes += p.bytes as u64;
        r.frames += u64::from(p.marker);
    }
    r
}

/// Bits per second of one TCP stream over loopback, by `iperf3` for 5 s.
pub fn iperf3_loopback() -> f64 {
    let port = free_port().to_string();
    let server = Command::new("iperf3")
        .args(["-s", "-1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 installed");
    let _server = Killed(server);
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port, "-t", "5", "-J"])
        .output()
        .expect("iperf3 runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
}

/// A frame's name across relays: the last bytes of its last packet (the end of its last NAL
/// unit, whatever the packetization), which the test clips' burned-in counter makes unique
/// within a loop of the clip.
pub type FrameTail = [u8; 16];

/// When each frame arrived at a client of `url`, for `time`.
pub fn frame_arrivals(url: &str, time: Duration) -> Vec<(FrameTail, Instant)> {
    let mut v = Viewer::play_url(url);
    let start = Instant::now();
    let mut arrivals = Vec::new();
    while start.elapsed() < time {
        let p = v.packet();
        if p.marker {
            arrivals.push((p.tail, Instant::now()));
        }
    }
    arrivals
}

/// The latency a relay added to each frame, ms: its arrival at a relayed client against the
/// same frame's arrival at a direct client (the nearest one with the same bytes, within 2 s:
/// the clips loop every 10 s).
pub fn added_latency_ms(
    direct: &[(FrameTail, Instant)],
    relayed: &[(FrameTail, Instant)],
) -> Vec<f64> {
    let mut by_tail: std::collections::HashMap<FrameTail, Vec<Instant>> = Default::default();
    for (tail, at) in direct {
        by_tail.entry(*tail).or_default().push(*at);
    }
    let signed_ms = |at: Instant, from: Instant| {
        if at >= from {
            at.duration_since(from).as_secs_f64() * 1e3
        } else {
            -from.duration_since(at).as_secs_f64() * 1e3
        }
    };
    relayed
        .iter()
        .filter_map(|(tail, at)| {
            let nearest = by_tail
                .get(tail)?
                .iter()
                .map(|d| signed_ms(*at, *d))
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))?;
            (nearest.abs() < 2_000.0).then_some(nearest)
        })
        .collect()
}

/// A recorder and a relay on loopback, one system: the recorder records test cameras, the
/// relay records none and serves them through the hive.
pub struct RecorderAndRelay {
    /// The test cameras.
    pub cameras: Killed,
    /// The server that records them.
    pub recorder: Hive,
    /// The server that relays them.
    pub relay: Hive,
    /// The cameras' ids, `cam1` first.
    pub ids: Vec<String>,
}

impl RecorderAndRelay {
    /// `count` test cameras started with `camera_args` (a clip), recorded by a server made from
    /// `recorder` (a spec to adjust) once it records every one and its GOP caches are full.
    pub fn start(
        name: &str,
        count: usize,
        camera_args: &[&str],
        recorder: impl FnOnce(&mut Spec),
    ) -> RecorderAndRelay {
        let port = free_port();
        let cameras = crate::video::test_cameras(count as u32, port, None, camera_args);
        let discovery = discovery_port();
        let mut spec_a = bench_spec(&format!("{name}-recorder"), discovery);
        spec_a.extra.extend(["--max-cameras".into(), (count + 1).to_string()]);
        recorder(&mut spec_a);
        let mut spec_b = bench_spec(&format!("{name}-relay"), discovery);
        spec_b.extra.extend(["--max-cameras".into(), "0".into()]);
        let a = Hive::start(spec_a);
        let b = Hive::start(spec_b);
        wait_for("the two servers to merge", Duration::from_secs(60), || crate::merged(&[&a, &b]));
        let ids: Vec<String> = (1..=count)
            .map(|i| {
                add_camera(&a, &format!("cam {i}"), &format!("rtsp://127.0.0.1:{port}/cam{i}"))
            })
            .collect();
        wait_recording(&a, &ids);
        std::thread::sleep(Duration::from_secs(3));
        RecorderAndRelay { cameras, recorder: a, relay: b, ids }
    }
}

/// The value after option `name` on a benchmark's command line, a positive number.
pub fn positive_arg<'a>(
    name: &str,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<u64, String> {
    let text = rest.next().ok_or(format!("{name} needs a value"))?;
    text.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(format!("{name}: {text:?} is not a positive number"))
}

/// One figure of a benchmark binary: runs it with the options and returns its markdown.
pub type Figure<O> = fn(&O) -> String;

/// Runs the figures `command` names (`all`: every one) of a benchmark binary `program` run
/// with `args`, printing their markdown at the end and writing it to `markdown` after each
/// figure, so a later one that fails keeps the earlier ones.
pub fn run_figures<O>(
    program: &str,
    args: &[String],
    command: &str,
    markdown: Option<&Path>,
    options: &O,
    figures: &[(&str, Figure<O>)],
) {
    let mut report = format!(
        "Machine: {} × {}; `{program} {}`.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        args.join(" ")
    );
    for (name, figure) in figures {
        if command == "all" || command == *name {
            report += &figure(options);
            if let Some(path) = markdown {
                std::fs::write(path, &report).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
    println!("\n{report}");
}
