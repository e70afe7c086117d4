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

/// Probes `url` over RTSP/TCP for `seconds`.
pub fn probe(url: &str, seconds: u32) -> Probe {
    let out = Command::new("timeout")
        .args(["30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames"])
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
        .args(["40", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url])
        .args(["-t", &seconds.to_string(), "-f", "null", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `url` with the API's owner credentials in it.
pub fn with_owner(url: &str) -> String {
    url.replacen("rtsp://", &format!("rtsp://admin:{OWNER_PASSWORD}@"), 1)
}
