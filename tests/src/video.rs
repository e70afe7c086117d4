//! What the video process tests share: a `hive testcamera` process, and ffprobe/ffmpeg from
//! Debian as the real clients (`scripts/test-all` installs them; a test fails without them
//! rather than skipping).

use crate::{hive_bin, wait_for, OWNER_PASSWORD};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A child process killed when dropped (a test camera, an ffmpeg client).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Panics with the install hint when ffprobe is missing: a video test never passes by skipping.
pub fn require_ffmpeg() {
    let ok = Command::new("ffprobe").arg("-version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "ffprobe/ffmpeg not installed (scripts/test-all installs them: apt-get install ffmpeg)"
    );
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Starts `hive testcamera --count N --port P` with `extra` arguments and waits until its
/// first camera serves frames (`creds` is `user:password` when the cameras need them).
pub fn test_cameras(count: u32, port: u16, creds: Option<&str>, extra: &[&str]) -> Killed {
    let mut command = Command::new(hive_bin());
    command.args(["testcamera", "--count", &count.to_string(), "--port", &port.to_string()]);
    if let Some(creds) = creds {
        command.args(["--credentials", creds]);
    }
    let child = command.args(extra).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let cameras = Killed(child);
    let user = creds.map(|c| format!("{c}@")).unwrap_or_default();
    let url = format!("rtsp://{user}127.0.0.1:{port}/cam1");
    wait_for("the test camera to serve", Duration::from_secs(10), || {
        let n = frames(&url, 1);
        (n > 0, n)
    });
    cameras
}

/// What ffprobe reads of the first stream of `url` in `seconds` of stream.
#[derive(Debug, Default)]
pub struct Probe {
    /// `h264`, `hevc`, … (empty when nothing was read).
    pub codec: String,
    /// Width in pixels.
    pub width: u64,
    /// Frames read.
    pub frames: u64,
}

/// The input options that make ffmpeg/ffprobe read `url`: RTSP over TCP (interleaved), or
/// nothing for other URLs (HTTP's fragmented MP4).
fn input_args(url: &str) -> &'static [&'static str] {
    if url.starts_with("rtsp") {
        &["-rtsp_transport", "tcp"]
    } else {
        &[]
    }
}

/// Probes `url` (RTSP over TCP, or HTTP) for `seconds`.
pub fn probe(url: &str, seconds: u32) -> Probe {
    let out = Command::new("timeout")
        .args(["30", "ffprobe", "-v", "error"])
        .args(input_args(url))
        .arg("-count_frames")
        .args(["-read_intervals", &format!("%+{seconds}")])
        .args(["-show_entries", "stream=codec_name,width,nb_read_frames", "-of", "json", url])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &v["streams"][0];
    let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap_or(0);
    Probe {
        codec: s["codec_name"].as_str().unwrap_or("").to_owned(),
        width: number(&s["width"]),
        frames: number(&s["nb_read_frames"]),
    }
}

/// Frames ffprobe reads from `url` in `seconds` of stream.
pub fn frames(url: &str, seconds: u32) -> u64 {
    probe(url, seconds).frames
}

/// Decodes `seconds` of `url` with ffmpeg; whether it ended well, and its error output.
pub fn decode(url: &str, seconds: u32) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["40", "ffmpeg", "-v", "error"])
        .args(input_args(url))
        .args(["-i", url])
        .args(["-t", &seconds.to_string(), "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Camera `id`'s recorded ranges as `hive` lists them (merged across the hive): (first, last
/// frame) in ms since the epoch, oldest first.
pub fn recorded_ranges(hive: &crate::Hive, id: &str) -> Vec<(i64, i64)> {
    let (code, view) = hive.api().get(&format!("/api/cameras/{id}/archive"));
    assert_eq!(code, 200, "{view}");
    let ranges = view["ranges"].as_array().into_iter().flatten();
    ranges.filter_map(|r| Some((r["from_ms"].as_i64()?, r["to_ms"].as_i64()?))).collect()
}

/// Whether `hive` records camera `id` now, by its own status.
pub fn records_now(hive: &crate::Hive, id: &str) -> bool {
    let (_, s) = hive.api().get(&format!("/api/cameras/{id}/status"));
    s["recording_here"] == true && s["status"]["state"] == "recording"
}

/// Waits until one of `servers` records camera `id`; its index.
pub fn wait_for_recorder(servers: &[&crate::Hive], id: &str) -> usize {
    let at = wait_for("the camera to record", Duration::from_secs(30), || {
        let at = servers.iter().position(|h| records_now(h, id));
        (at.is_some(), at)
    });
    at.expect("checked above")
}

/// Two merged servers and one test camera, added through the first and recorded by
/// whichever of them the hive chose.
pub struct CameraOnTwo {
    /// Servers `a` and `b`.
    pub servers: [crate::Hive; 2],
    /// The camera's id.
    pub id: String,
    /// When the camera was added, ms since the epoch (the archive starts after it).
    pub added_ms: i64,
    /// The index in `servers` of the one that records it.
    pub recorder: usize,
    _camera: Killed,
}

impl CameraOnTwo {
    /// The server that records the camera and the one that does not.
    pub fn recorder_and_relay(&self) -> (&crate::Hive, &crate::Hive) {
        (&self.servers[self.recorder], &self.servers[1 - self.recorder])
    }
}

/// Starts a test camera and two servers of `system`, merges them, adds the camera as `gate`
/// and waits until one of them records it.
pub fn camera_on_two_servers(system: &str, secret: &str) -> CameraOnTwo {
    let camera_port = crate::free_port();
    let camera = test_cameras(1, camera_port, None, &[]);
    let port = crate::discovery_port();
    let a = crate::Hive::start(crate::Spec::new("a", system, secret, port));
    let b = crate::Hive::start(crate::Spec::new("b", system, secret, port));
    wait_for("two servers to merge", Duration::from_secs(60), || crate::merged(&[&a, &b]));
    let url = format!("rtsp://127.0.0.1:{camera_port}/cam1");
    let (status, cam) =
        a.api().post("/api/cameras", &serde_json::json!({ "name": "gate", "url": url }));
    assert_eq!(status, 201, "{cam}");
    let id = cam["id"].as_str().unwrap().to_owned();
    let added_ms = now_ms();
    let recorder = wait_for_recorder(&[&a, &b], &id);
    CameraOnTwo { servers: [a, b], id, added_ms, recorder, _camera: camera }
}

/// Starts servers `names` of one system with [`crate::FAST_FAILOVER`] timings and waits until
/// they are merged.
pub fn fast_failover_system(names: &[&str], system: &str, secret: &str) -> Vec<crate::Hive> {
    fast_failover_servers(names, |name, port| crate::Spec::new(name, system, secret, port))
}

/// [`fast_failover_system`] of servers made by `spec` (from a name and the discovery port).
pub fn fast_failover_servers(
    names: &[&str],
    spec: impl Fn(&str, u16) -> crate::Spec,
) -> Vec<crate::Hive> {
    let port = crate::discovery_port();
    let servers: Vec<crate::Hive> = names
        .iter()
        .map(|name| {
            let mut spec = spec(name, port);
            spec.extra.extend(crate::FAST_FAILOVER.iter().map(|s| s.to_string()));
            crate::Hive::start(spec)
        })
        .collect();
    wait_for("the servers to merge", Duration::from_secs(60), || {
        crate::merged(&servers.iter().collect::<Vec<_>>())
    });
    servers
}

/// `url` with the API's owner credentials in it.
pub fn with_owner(url: &str) -> String {
    url.replacen("rtsp://", &format!("rtsp://admin:{OWNER_PASSWORD}@"), 1)
}

/// A minimal RTSP/TCP client for what ffmpeg cannot show: the RTP timestamps and headers of a
/// session, request by request (plain `rtsp://`, Basic credentials).
pub struct RawRtsp {
    stream: std::net::TcpStream,
    authorization: String,
    cseq: u32,
    session: Option<String>,
    /// RTP packets read while waiting for a response: (timestamp, marker).
    pending: std::collections::VecDeque<(u32, bool)>,
    /// Timestamp of the last packet read that ended a frame.
    last_frame_ts: Option<u32>,
}

/// An RTSP response: status and headers (names lowercased).
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl RawResponse {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `rtptime=` of the RTP-Info header.
    pub fn rtptime(&self) -> Option<u32> {
        let info = self.header("rtp-info")?;
        info.split(';').find_map(|p| p.trim().strip_prefix("rtptime="))?.parse().ok()
    }
}

enum RawItem {
    Rtp(u32, bool),
    Response(RawResponse),
}

impl RawRtsp {
    /// Connects to `addr` as `user:password`.
    pub fn connect(addr: std::net::SocketAddr, user: &str, password: &str) -> RawRtsp {
        use base64::Engine;
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        RawRtsp {
            stream,
            authorization: format!("Basic {token}"),
            cseq: 0,
            session: None,
            pending: Default::default(),
            last_frame_ts: None,
        }
    }

    /// Sends `method url` with `extra` header lines and waits for its response (RTP packets
    /// arriving meanwhile are kept for [`RawRtsp::next_rtp`]). Remembers the session id.
    pub fn request(&mut self, method: &str, url: &str, extra: &[&str]) -> RawResponse {
        use std::io::Write;
        self.cseq += 1;
        let mut text = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        text += &format!("Authorization: {}\r\n", self.authorization);
        if let Some(session) = &self.session {
            text += &format!("Session: {session}\r\n");
        }
        for line in extra {
            text += &format!("{line}\r\n");
        }
        text += "\r\n";
        self.stream.write_all(text.as_bytes()).unwrap();
        loop {
            match self.read_item() {
                RawItem::Rtp(ts, marker) => self.pending.push_back((ts, marker)),
                RawItem::Response(r) => {
                    if let Some(id) = r.header("session") {
                        self.session = Some(id.split(';').next().unwrap_or(id).to_owned());
                    }
                    return r;
                }
            }
        }
    }

    /// DESCRIBE, SETUP of track 0 on interleaved channels 0-1.
    pub fn setup(&mut self, url: &str) {
        let r = self.request("DESCRIBE", url, &[]);
        assert_eq!(r.status, 200, "DESCRIBE {url}: {r:?}");
        let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
        let track = if query.is_empty() {
            format!("{base}/trackID=0")
        } else {
            format!("{base}/trackID=0?{query}")
        };
        let r = self.request("SETUP", &track, &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"]);
        assert_eq!(r.status, 200, "SETUP {track}: {r:?}");
    }

    /// The next RTP packet's (timestamp, marker).
    pub fn next_rtp(&mut self) -> (u32, bool) {
        if let Some(p) = self.pending.pop_front() {
            return p;
        }
        match self.read_item() {
            RawItem::Rtp(ts, marker) => (ts, marker),
            RawItem::Response(r) => panic!("unexpected response {r:?}"),
        }
    }

    /// The timestamp of the last whole frame received, whether read by the caller or kept
    /// while waiting for a response.
    pub fn last_frame_ts(&self) -> Option<u32> {
        self.last_frame_ts
    }

    /// The connection itself, to read what follows PLAY as raw bytes.
    pub fn into_stream(self) -> std::net::TcpStream {
        self.stream
    }

    /// Forgets RTP packets kept while waiting for responses.
    pub fn drop_pending(&mut self) {
        self.pending.clear();
    }

    /// The timestamp of the next frame completed (its last packet carries the marker).
    pub fn next_frame_ts(&mut self) -> u32 {
        loop {
            let (ts, marker) = self.next_rtp();
            if marker {
                return ts;
            }
        }
    }

    fn read_item(&mut self) -> RawItem {
        use std::io::Read;
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first).unwrap();
        if first[0] == b'$' {
            let mut head = [0u8; 3];
            self.stream.read_exact(&mut head).unwrap();
            let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
            let mut packet = vec![0u8; len];
            self.stream.read_exact(&mut packet).unwrap();
            let marker = packet[1] & 0x80 != 0;
            let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
            if marker {
                self.last_frame_ts = Some(ts);
            }
            return RawItem::Rtp(ts, marker);
        }
        let mut head = vec![first[0]];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut first).unwrap();
            head.push(first[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.lines();
        let status = lines.next().and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).unwrap();
        RawItem::Response(RawResponse { status, headers })
    }
}

/// Milliseconds from RTP timestamp `from` to `to` at 90 kHz (wrapping, signed).
pub fn rtp_ms(from: u32, to: u32) -> i64 {
    i64::from(to.wrapping_sub(from) as i32) / 90
}
