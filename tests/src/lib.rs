//! Process-level tests of Hive: a harness that runs real `hive` processes on loopback (or in
//! network namespaces) and talks to them over HTTP like any client.
//!
//! The binary is `$HIVE_BIN`, else the newest of `target/{release,debug}/hive`;
//! `scripts/test-all` builds it first.

use hive_core::ids::HardwareId;
use hive_core::licenses::{LicenseId, LicenseIssuer};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub mod bench;
pub mod browser;
pub mod chrony;
pub mod hostile;
pub mod netns;
pub mod procfs;
pub mod tls;
pub mod video;

/// Seed of the tests' license vendor.
pub const VENDOR_SEED: [u8; 32] = [7; 32];
/// Password of every test owner.
pub const OWNER_PASSWORD: &str = "owner-password-1";

/// The `hive` binary under test.
pub fn hive_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(p) = std::env::var_os("HIVE_BIN") {
        // Relative to the workspace root, where the README's commands run.
        return root.join(p);
    }
    let target = root.join("target");
    let newest = ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("hive"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max();
    match newest {
        Some((_, p)) => p,
        None => panic!("no hive binary: run `cargo build --release -p hive` or set HIVE_BIN"),
    }
}

/// The tests' license vendor.
pub fn issuer() -> LicenseIssuer {
    LicenseIssuer::from_seed(VENDOR_SEED)
}

/// A license key (text) of `channels` bound to `hardware`.
pub fn license_text(channels: u32, hardware: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = LicenseId(u128::from(nanos) << 64 | u128::from(NEXT.fetch_add(1, Ordering::Relaxed)));
    issuer().issue(id, channels, HardwareId(hardware.into()), 0).to_text()
}

/// Where [`free_port`] hands out ports: below the kernel's ephemeral range
/// (32768–60999), so no outgoing connection of a test running alongside can
/// take a port between our check and the server's bind (CI once lost a test to
/// exactly that), and below the discovery ports.
const LISTEN_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A free TCP port: each one handed out once per test process, from a start of
/// its own per process, and checked free on every address.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    static START: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let span = LISTEN_PORTS.end - LISTEN_PORTS.start;
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        ((std::process::id() ^ nanos) % u32::from(span)) as u16
    });
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LISTEN_PORTS.start + (start.wrapping_add(offset)) % span;
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LISTEN_PORTS:?}");
}

/// A discovery port of its own for each test, so parallel tests never hear each other.
pub fn discovery_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 1000) as u16 * 20;
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How to start one server.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Server name.
    pub name: String,
    /// System name.
    pub system: String,
    /// System secret.
    pub secret: String,
    /// Discovery group port.
    pub discovery_port: u16,
    /// Loopback address to bind (127.0.0.1 unless a test needs another).
    pub ip: Ipv4Addr,
    /// Manual peers.
    pub peers: Vec<String>,
    /// First owner `name`; password [`OWNER_PASSWORD`].
    pub owner: Option<String>,
    /// Extra arguments.
    pub extra: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Plain HTTP (most tests are not about TLS) or HTTPS.
    pub api: ApiTransport,
    /// Where its data directory is made (the system's temporary directory if `None`): a
    /// benchmark puts a fast archive on tmpfs.
    pub data_parent: Option<PathBuf>,
}

/// How a test server serves its API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTransport {
    /// `--http-plain`.
    Plain,
    /// Plain HTTP without asking for it: binaries from before HTTPS (protocol 2) have no
    /// `--http-plain` and serve plain HTTP anyway. For benchmarks that compare with them.
    PlainUnflagged,
    /// HTTPS with the self-signed certificate the server makes in its data directory: the
    /// default of `hive serve`.
    SelfSigned,
    /// HTTPS with this certificate chain and key (PEM files).
    Supplied {
        /// `--tls-cert`.
        cert: PathBuf,
        /// `--tls-key`.
        key: PathBuf,
    },
}

impl ApiTransport {
    /// Whether the API is plain HTTP.
    pub fn is_plain(&self) -> bool {
        matches!(self, ApiTransport::Plain | ApiTransport::PlainUnflagged)
    }
}

impl Spec {
    /// A server `name` of `system` with `secret`, discovering on `discovery_port`.
    pub fn new(name: &str, system: &str, secret: &str, discovery_port: u16) -> Spec {
        Spec {
            name: name.into(),
            system: system.into(),
            secret: secret.into(),
            discovery_port,
            ip: Ipv4Addr::LOCALHOST,
            peers: Vec::new(),
            owner: Some("admin".into()),
            extra: Vec::new(),
            env: Vec::new(),
            api: ApiTransport::Plain,
            data_parent: None,
        }
    }
}

/// A running `hive serve` process.
pub struct Hive {
    /// How it was started.
    pub spec: Spec,
    /// Its data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// Peer address.
    pub peer: SocketAddr,
    /// API address.
    pub http: SocketAddr,
    /// RTSP address.
    pub rtsp: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hive {
    /// Starts a server and waits until its API answers.
    pub fn start(spec: Spec) -> Hive {
        let parent = spec.data_parent.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new().prefix("hive-test-").tempdir_in(parent).unwrap();
        let data_dir = dir.path().join("data");
        let peer = SocketAddr::from((spec.ip, free_port()));
        let http = SocketAddr::from((spec.ip, free_port()));
        let rtsp = SocketAddr::from((spec.ip, free_port()));
        let log = dir.path().join("hive.log");
        let mut hive = Hive { spec, data_dir, peer, http, rtsp, child: None, log, _dir: dir };
        hive.spawn();
        hive
    }

    /// The command line that starts this server.
    pub fn command(&self) -> Command {
        let s = &self.spec;
        let mut cmd = Command::new(hive_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--system-name", &s.system])
            .args(["--server-name", &s.name])
            .args(["--listen", &self.peer.to_string()])
            .args(["--http", &self.http.to_string()])
            .args(["--discovery-group", &format!("239.255.11.11:{}", s.discovery_port)])
            .args(["--discovery-interface", &s.ip.to_string()])
            .args(["--hardware-id", &format!("hw-{}", s.name)])
            .args(["--license-vendor-key", &vendor_key_hex()])
            .env("HIVE_SECRET", join_token(&s.secret))
            .env("HIVE_LOG", "info,hive=debug");
        for p in &s.peers {
            cmd.args(["--peer", p]);
        }
        if let Some(o) = &s.owner {
            cmd.env("HIVE_INIT_OWNER", format!("{o}:{OWNER_PASSWORD}"));
        }
        match &s.api {
            ApiTransport::Plain => {
                // Tests not about TLS run video in clear too.
                cmd.args(["--http-plain", "--rtsp-plain"]);
            }
            // Binaries from before video have no RTSP server and no --rtsp.
            ApiTransport::PlainUnflagged => {}
            ApiTransport::SelfSigned => {}
            ApiTransport::Supplied { cert, key } => {
                cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            }
        }
        if s.api != ApiTransport::PlainUnflagged {
            cmd.args(["--rtsp", &self.rtsp.to_string()]);
        }
        cmd.args(&s.extra);
        for (k, v) in &s.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// (Re)starts the process on the same data directory and ports.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("hive starts");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", self.spec.name, self.log_text());
            }
            if self.api().agent().get(&format!("{}/api/hello", self.url())).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not answer within 30 s:\n{}", self.spec.name, self.log_text());
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().is_ok_and(|exited| exited.is_none()))
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The API's URL: `https://IP:PORT`, or `http://` for a plain server.
    pub fn url(&self) -> String {
        let scheme = if self.spec.api.is_plain() { "http" } else { "https" };
        format!("{scheme}://{}", self.http)
    }

    /// The certificate (DER) the server should present: the one it made in its data
    /// directory, or the one supplied; `None` for a plain server or before it made one.
    pub fn certificate(&self) -> Option<Vec<u8>> {
        match &self.spec.api {
            ApiTransport::Plain | ApiTransport::PlainUnflagged => None,
            ApiTransport::SelfSigned => tls::certificate_in(&self.data_dir.join("api-cert.pem")),
            ApiTransport::Supplied { cert, .. } => tls::certificate_in(cert),
        }
    }

    /// The API as the owner, trusting only the certificate the server should present when
    /// it serves HTTPS (none, until that exists).
    pub fn api(&self) -> Api {
        let trusted = match self.spec.api {
            ApiTransport::Plain | ApiTransport::PlainUnflagged => None,
            _ => Some(self.certificate().unwrap_or_default()),
        };
        Api::at(&self.url(), "admin", OWNER_PASSWORD, trusted)
    }

    /// `GET /api/system` as the owner.
    pub fn system(&self) -> Value {
        self.api().get("/api/system").1
    }
}

impl Drop for Hive {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The tests' vendor public key in hex.
pub fn vendor_key_hex() -> String {
    issuer().verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A client of one server's API.
pub struct Api {
    base: String,
    auth: String,
    /// The one certificate (DER) trusted over HTTPS.
    trusted: Option<Vec<u8>>,
}

impl Api {
    /// As `user` with `password`.
    pub fn new(http: SocketAddr, user: &str, password: &str) -> Api {
        Api::at(&format!("http://{http}"), user, password, None)
    }

    /// As `user` with `password` at `base` (`https://IP:PORT` or `http://`), trusting only
    /// the certificate `trusted` (DER) over HTTPS.
    pub fn at(base: &str, user: &str, password: &str, trusted: Option<Vec<u8>>) -> Api {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Api { base: base.to_owned(), auth: format!("Basic {token}"), trusted }
    }

    /// A client for one request: a fresh connection each time, as the tests always had.
    fn agent(&self) -> ureq::Agent {
        match &self.trusted {
            Some(der) => tls::agent_trusting(der.clone()),
            None => ureq::agent(),
        }
    }

    fn call(&self, req: ureq::Request, body: Option<&str>) -> (u16, Value) {
        let req = req.set("Authorization", &self.auth).timeout(Duration::from_secs(60));
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        let status = response.status();
        let text = response.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET path`: status and JSON.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.agent().get(&format!("{}{path}", self.base)), None)
    }

    /// `POST path` with a JSON value.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    /// `POST path` with any body text.
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        self.call(self.agent().post(&format!("{}{path}", self.base)), Some(body))
    }

    /// `PATCH path` with a JSON value.
    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(
            self.agent().request("PATCH", &format!("{}{path}", self.base)),
            Some(&body.to_string()),
        )
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call(self.agent().delete(&format!("{}{path}", self.base)), None)
    }
}

/// The `/metrics` of the server at `http`, name to value; `None` if it does not answer.
pub fn metrics_at(http: SocketAddr) -> Option<std::collections::HashMap<String, f64>> {
    let url = format!("http://{http}/metrics");
    let text = ureq::get(&url).timeout(Duration::from_secs(30)).call().ok()?.into_string().ok()?;
    let values = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    Some(values)
}

/// Short failover timings for tests (`hive serve` flags): hold 3 s, minimum uptime 2 s,
/// stability 5 s.
pub const FAST_FAILOVER: [&str; 6] = [
    "--failover-hold-ms",
    "3000",
    "--failover-min-uptime-ms",
    "2000",
    "--failover-stability-ms",
    "5000",
];

/// Polls `check` until it holds or `limit` passes; panics with `what` and the last value.
pub fn wait_for<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> (bool, T),
) -> T {
    let start = Instant::now();
    loop {
        let (ok, last) = check();
        if ok {
            return last;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last: {last:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every server sees every other online in one system of `n` servers.
pub fn merged(hives: &[&Hive]) -> (bool, Vec<Value>) {
    let systems: Vec<Value> = hives.iter().map(|h| h.system()).collect();
    let ids: std::collections::BTreeSet<String> =
        systems.iter().map(|s| s["id"].to_string()).collect();
    let all_online = systems.iter().all(|s| {
        let servers = s["servers"].as_array().cloned().unwrap_or_default();
        servers.iter().filter(|x| x["status"] == "online").count() == hives.len()
    });
    (ids.len() == 1 && all_online, systems)
}

/// Names of the cameras a server lists.
pub fn camera_names(hive: &Hive) -> Vec<String> {
    let (_, cams) = hive.api().get("/api/cameras");
    let mut names: Vec<String> = cams
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// A generous limit for convergence on a loaded CI machine.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// The join token a test's secret text stands for: the same text gives the same token, so
/// tests keep naming their secrets in words while servers get a secret worth the name.
pub fn join_token(text: &str) -> String {
    use sha2::Digest;
    let bytes: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
    hive_core::auth::Secret::from_bytes(bytes).token()
}

/// An HTTP answer read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, or as a JSON string if it is not JSON.
    pub body: Value,
}

impl RawResponse {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (a whole plain-HTTP/1.1 request; it should say `Connection: close`) to
/// `http` from the local address `from`, which may be any 127.0.0.N, and reads the answer.
/// For tests that need a source address of their own or bytes a client library refuses to send.
pub fn http_raw(http: SocketAddr, from: Ipv4Addr, request: &[u8]) -> RawResponse {
    use std::io::{Read, Write};
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&http.into()).unwrap();
    let mut stream = std::net::TcpStream::from(socket);
    stream.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut bytes = Vec::new();
    std::thread::scope(|s| {
        // Written beside the reading: the server may answer (and close) before it has read
        // all of a body it refuses.
        s.spawn(move || writer.write_all(request));
        let _ = stream.read_to_end(&mut bytes);
    });
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no answer: {text}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status: status.unwrap_or_else(|| panic!("no status line: {head}")),
        headers,
        body: serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())),
    }
}

/// `GET path` as `user` with `password` from the local address `from`.
pub fn get_as_from(
    http: SocketAddr,
    from: Ipv4Addr,
    path: &str,
    user: &str,
    password: &str,
) -> RawResponse {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
    );
    http_raw(http, from, request.as_bytes())
}

/// A line `Name: value kB` of `/proc/PID/status`, in KiB (`VmRSS`, `VmHWM`: peak RSS).
pub fn proc_status_kib(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Runs the `hive` command against `h`'s API as the owner.
pub fn hive(h: &Hive, args: &[&str]) -> Output {
    Command::new(hive_bin())
        .args(args)
        .args(["--url", &format!("http://{}", h.http), "--user", "admin"])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .output()
        .expect("the hive binary runs")
}

/// The standard output of a `hive` command that must succeed.
pub fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}
