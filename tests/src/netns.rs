//! Network namespaces for process tests: each server in a namespace of its own, all cabled to
//! one Linux bridge, so that discovery crosses real network stacks and a test can take one
//! server's cable out (`ip link set ... down`: nothing, not even a reset, reaches anyone).
//!
//! Topology (all of it inside namespaces this module creates; the host's own interfaces,
//! addresses and routes are never touched):
//!
//! ```text
//!   hive-<pid>-br:  br0 (bridge, multicast snooping off)
//!                   ├── v<name> ══ eth0 in hive-<pid>-<name>  10.231.0.<n>/24
//!                   ├── vr<name> ══ eth0 in hive-<pid>-r<name> 10.231.0.<100+k>/24   (a NAT router)
//!                   │                 in0 10.232.<k>.1/24 ══ eth0 in hive-<pid>-<name> 10.232.<k>.2/24
//!                   └── ...
//! ```
//!
//! A server behind NAT ([`Lab::start_behind_nat`]) sits in a subnet of its own behind a router
//! that masquerades what it sends out (nftables): it reaches everyone, nobody can dial it, and
//! its multicast stays in its subnet, as behind a home or site router.
//!
//! Needs root. [`lab_or_skip`] fails when it cannot build the namespaces, unless
//! `HIVE_SKIP_NETNS=1` is set, in which case it warns and the test passes.

use crate::video::Killed;
use crate::{hive_bin, join_token, vendor_key_hex, wait_for, CONVERGE, OWNER_PASSWORD};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Each server has a network stack of its own, so the ports can be fixed.
pub const PEER_PORT: u16 = 7001;
/// The API port of every server.
pub const HTTP_PORT: u16 = 7080;
/// The RTSP port of the servers [`Lab::chain`] starts.
pub const RTSP_PORT: u16 = 7554;
/// The port of the test cameras [`Lab::test_cameras`] starts.
pub const CAMERA_PORT: u16 = 8554;
const DISCOVERY_GROUP: &str = "239.255.11.11:5007";
/// The private subnet the namespaces share; it exists only inside them.
const SUBNET: &str = "10.231.0";
/// The first octets of the subnet behind the `k`-th NAT router.
const NAT_SUBNET: &str = "10.232";

/// The lab, or `None` (with a warning) when it cannot be built and `HIVE_SKIP_NETNS=1`.
pub fn lab_or_skip() -> Option<Lab> {
    match Lab::new() {
        Ok(lab) => Some(lab),
        Err(why) if std::env::var("HIVE_SKIP_NETNS").as_deref() == Ok("1") => {
            eprintln!("WARNING: netns test SKIPPED (HIVE_SKIP_NETNS=1): {why}");
            None
        }
        Err(why) => panic!(
            "cannot build the network namespaces: {why}\n\
             This test needs root and `ip netns` (iproute2). \
             Set HIVE_SKIP_NETNS=1 to skip it on a machine without them."
        ),
    }
}

/// Namespaces joined by a bridge, and the servers running in them. Dropping it (also when the
/// test panics) kills the servers and deletes every namespace, which takes the links with it.
pub struct Lab {
    /// `hive-<pid>`: the prefix of every namespace, unique per test process.
    tag: String,
    /// Namespaces created so far, the bridge's first.
    namespaces: Vec<String>,
    /// The servers started, by index.
    pub servers: Vec<Server>,
    /// NAT routers made so far.
    routers: u8,
    dir: tempfile::TempDir,
}

/// One `hive serve` in a namespace of its own.
pub struct Server {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its address on the bridge.
    pub address: String,
    child: Child,
    log: PathBuf,
}

impl Lab {
    /// The bridge namespace with `br0` up and forwarding multicast to every port.
    fn new() -> Result<Lab, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        let tag = format!("hive-{}", std::process::id());
        let dir = tempfile::Builder::new().prefix("hive-netns-").tempdir().unwrap();
        let mut lab = Lab { tag, namespaces: Vec::new(), servers: Vec::new(), routers: 0, dir };
        let bridge = lab.add_namespace("br")?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        // Without snooping the bridge floods multicast to every port, querier or not.
        ip(&["-n", &bridge, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        Ok(lab)
    }

    fn bridge(&self) -> &str {
        &self.namespaces[0]
    }

    /// Creates `hive-<pid>-<suffix>` and records it for cleanup.
    fn add_namespace(&mut self, suffix: &str) -> Result<String, String> {
        let name = format!("{}-{suffix}", self.tag);
        try_ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        Ok(name)
    }

    /// A namespace `hive-<pid>-<name>` cabled to the bridge, with `eth0` at `address`/24 and a
    /// multicast route (there is no default route).
    fn add_host(&mut self, name: &str, address: &str) -> String {
        let ns = self.add_namespace(name).unwrap_or_else(|e| panic!("{e}"));
        let port = format!("v{name}");
        let bridge = self.bridge().to_owned();
        // Created in the bridge namespace with its peer moved straight into `ns`: no link ever
        // appears in the host's namespace.
        ip(&[
            "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        ns
    }

    /// Starts server `name` with `secret` in a new namespace; returns its index.
    pub fn start(&mut self, name: &str, system: &str, secret: &str, extra: &[&str]) -> usize {
        let address = format!("{SUBNET}.{}", self.servers.len() + 1);
        let namespace = self.add_host(name, &address);
        self.spawn(name, namespace, address, system, secret, extra)
    }

    /// Starts server `name` behind a NAT router of its own: it can dial every server on the
    /// bridge, none can dial it (so give it a `--peer`). Returns its index.
    pub fn start_behind_nat(
        &mut self,
        name: &str,
        system: &str,
        secret: &str,
        extra: &[&str],
    ) -> usize {
        self.routers += 1;
        let k = self.routers;
        let router = self.add_host(&format!("r{name}"), &format!("{SUBNET}.{}", 100 + k));
        let namespace = self.add_namespace(name).unwrap_or_else(|e| panic!("{e}"));
        let (inside, gateway) = (format!("{NAT_SUBNET}.{k}.2"), format!("{NAT_SUBNET}.{k}.1"));
        ip(&[
            "-n", &router, "link", "add", "in0", "type", "veth", "peer", "name", "eth0", "netns",
            &namespace,
        ]);
        ip(&["-n", &router, "addr", "add", &format!("{gateway}/24"), "dev", "in0"]);
        ip(&["-n", &router, "link", "set", "in0", "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        ip(&["-n", &namespace, "addr", "add", &format!("{inside}/24"), "dev", "eth0"]);
        ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
        ip(&["-n", &namespace, "route", "add", "default", "via", &gateway]);
        ip(&["-n", &namespace, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        let in_router = |program: &str, args: &[&str]| {
            let out = Command::new(ip_bin())
                .args(["netns", "exec", &router, program])
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
            assert!(out.status.success(), "{program} {}: {}", args.join(" "), failure(&out));
        };
        in_router("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        in_router("nft", &["add", "table", "ip", "nat"]);
        let chain = "{ type nat hook postrouting priority 100 ; }";
        in_router("nft", &["add", "chain", "ip", "nat", "out", chain]);
        in_router("nft", &["add", "rule", "ip", "nat", "out", "oifname", "eth0", "masquerade"]);
        self.spawn(name, namespace, inside, system, secret, extra)
    }

    /// Runs `hive serve` in `namespace` at `address`.
    fn spawn(
        &mut self,
        name: &str,
        namespace: String,
        address: String,
        system: &str,
        secret: &str,
        extra: &[&str],
    ) -> usize {
        let index = self.servers.len();
        let data_dir = self.dir.path().join(name).join("data");
        let log = self.dir.path().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(ip_bin())
            .args(["netns", "exec", &namespace])
            .arg(hive_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--system-name", system])
            .args(["--server-name", name])
            .args(["--listen", &format!("{address}:{PEER_PORT}")])
            .args(["--http", &format!("{address}:{HTTP_PORT}")])
            .args(["--discovery-group", DISCOVERY_GROUP])
            .args(["--discovery-interface", &address])
            .args(["--hardware-id", &format!("hw-{name}")])
            .args(["--license-vendor-key", &vendor_key_hex()])
            .arg("--http-plain")
            .args(extra)
            .env("HIVE_SECRET", join_token(secret))
            .env("HIVE_INIT_OWNER", format!("admin:{OWNER_PASSWORD}"))
            .env("HIVE_LOG", "info,hive=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("ip netns exec hive serve starts");
        self.servers.push(Server { name: name.into(), namespace, address, child, log });
        index
    }

    /// Waits until server `i` answers `hive status`; panics with its log if it exits.
    pub fn wait_until_answering(&mut self, i: usize) {
        let what = format!("{} to answer", self.servers[i].name);
        wait_for(&what, CONVERGE, || {
            let server = &mut self.servers[i];
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", server.name, server.log_text());
            }
            match self.status(i) {
                Ok(_) => (true, String::new()),
                Err(e) => (false, e),
            }
        });
    }

    /// `hive status --json`, run in server `i`'s namespace against its API.
    pub fn status(&self, i: usize) -> Result<Value, String> {
        self.hive_json(i, &["status"])
    }

    /// `hive ARGS --json`, run as the owner in server `i`'s namespace against its API.
    pub fn hive_json(&self, i: usize, args: &[&str]) -> Result<Value, String> {
        let s = &self.servers[i];
        let out = Command::new(ip_bin())
            .args(["netns", "exec", &s.namespace])
            .arg(hive_bin())
            .args(args)
            .arg("--json")
            .args(["--url", &format!("http://{}:{HTTP_PORT}", s.address)])
            .args(["--user", "admin", "--password", OWNER_PASSWORD])
            .output()
            .expect("ip netns exec hive runs");
        if !out.status.success() {
            return Err(format!("hive {} on {}: {}", args.join(" "), s.name, failure(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON: {e}", s.name))
    }

    /// Takes server `i`'s cable out (its port on the bridge down): its packets go nowhere and
    /// no reset reaches anyone. `up` puts it back.
    pub fn set_link(&self, i: usize, up: bool) {
        let port = format!("v{}", self.servers[i].name);
        ip(&["-n", self.bridge(), "link", "set", &port, if up { "up" } else { "down" }]);
    }

    /// Cuts servers `i` and `j` off from each other (a blackhole route each way in their
    /// namespaces): neither reaches the other, both still reach everyone else, like two sites
    /// that can each reach a third but not one another.
    pub fn cut(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            let to = format!("{}/32", self.servers[to].address);
            ip(&["-n", &self.servers[from].namespace, "route", "add", "blackhole", &to]);
        }
    }

    /// A command run in server `i`'s namespace.
    pub fn command_in(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(ip_bin());
        command.args(["netns", "exec", &self.servers[i].namespace]).arg(program);
        command
    }

    /// `GET path` of server `i`'s API as the owner, from the namespace of server `from`
    /// (empty when it does not answer).
    pub fn curl_from(&self, from: usize, i: usize, path: &str) -> String {
        let url = format!("http://{}:{HTTP_PORT}{path}", self.servers[i].address);
        let out = self
            .command_in(from, "curl")
            .args(["-s", "--max-time", "5", "-u", &format!("admin:{OWNER_PASSWORD}"), &url])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET path` of server `i`'s API as the owner, from its own namespace.
    pub fn curl(&self, i: usize, path: &str) -> String {
        self.curl_from(i, i, path)
    }

    /// `GET path` of server `i`'s API as JSON (`null` when it does not answer).
    pub fn api_get(&self, i: usize, path: &str) -> Value {
        serde_json::from_str(&self.curl(i, path)).unwrap_or(Value::Null)
    }

    /// A counter or gauge of server `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Option<u64> {
        let metrics = self.curl(i, "/metrics");
        let prefix = format!("{name} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
    }

    /// Servers a, b and c of `system` in a chain: a and c cut off from each other, each
    /// reaching b, like two sites that reach a third but not one another. Only a records (at
    /// most `cameras`); RTSP in clear on [`RTSP_PORT`]. Returns once they are one system.
    pub fn chain(&mut self, system: &str, secret: &str, cameras: usize) -> [usize; 3] {
        let rtsp = format!("0.0.0.0:{RTSP_PORT}");
        let max_a = cameras.to_string();
        let servers = [("a", max_a.as_str()), ("b", "0"), ("c", "0")].map(|(name, max)| {
            let extra = ["--rtsp", rtsp.as_str(), "--rtsp-plain", "--max-cameras", max];
            self.start(name, system, secret, &extra)
        });
        self.cut(servers[0], servers[2]);
        for i in servers {
            self.wait_until_answering(i);
        }
        wait_for("three servers to form one system", std::time::Duration::from_secs(90), || {
            self.merged(&servers)
        });
        servers
    }

    /// `hive testcamera` with `count` cameras on [`CAMERA_PORT`] in server `i`'s namespace;
    /// `extra` arguments (a clip) added. Declare it after the lab: it must be killed before
    /// the namespace goes.
    pub fn test_cameras(&self, i: usize, count: usize, extra: &[&str]) -> Killed {
        let camera = self
            .command_in(i, hive_bin())
            .args(["testcamera", "--count", &count.to_string()])
            .args(["--port", &CAMERA_PORT.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test cameras start in the namespace");
        Killed(camera)
    }

    /// Adds the test cameras `cam1..=count` of [`Lab::test_cameras`] through server `i` and
    /// waits until it records every one; their ids.
    pub fn add_recorded_cameras(&self, i: usize, count: usize) -> Vec<String> {
        let ids: Vec<String> = (1..=count)
            .map(|n| {
                let url = format!("rtsp://127.0.0.1:{CAMERA_PORT}/cam{n}");
                let name = format!("cam {n}");
                let added =
                    self.hive_json(i, &["camera", "add", "--name", &name, "--stream", &url]);
                added.map(|v| v["id"].as_str().unwrap_or_default().to_owned()).unwrap()
            })
            .collect();
        let what = format!("{} to record every camera", self.servers[i].name);
        wait_for(&what, std::time::Duration::from_secs(60), || {
            let recording = ids
                .iter()
                .filter(|id| {
                    let status = self.api_get(i, &format!("/api/cameras/{id}/status"));
                    status["status"]["state"] == "recording"
                })
                .count();
            (recording == ids.len(), recording)
        });
        ids
    }

    /// Frames of `url` that ffprobe reads in `seconds` from server `from`'s namespace, and
    /// what it printed on stderr.
    pub fn probe_frames(&self, from: usize, url: &str, seconds: u32) -> (u64, String) {
        let out = self
            .command_in(from, "timeout")
            .args(["30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-count_frames"])
            .args(["-read_intervals", &format!("%+{seconds}")])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url])
            .output()
            .expect("ffprobe runs");
        let frames = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        (frames, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Whether ffmpeg decodes `seconds` of `url` from server `from`'s namespace with no
    /// error, and what it printed.
    pub fn decode(&self, from: usize, url: &str, seconds: u32) -> (bool, String) {
        let out = self
            .command_in(from, "timeout")
            .args(["40", "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url])
            .args(["-t", &seconds.to_string(), "-f", "null", "-"])
            .stdin(Stdio::null())
            .output()
            .expect("ffmpeg runs");
        let errors = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        (out.status.success() && errors.is_empty(), errors)
    }

    /// Polls server `i`'s `hive status` until `check` holds; returns that view.
    pub fn wait_for_view(&self, i: usize, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let last = wait_for(what, CONVERGE, || match self.status(i) {
            Ok(v) => (check(&v), Ok(v)),
            Err(e) => (false, Err(e)),
        });
        last.unwrap()
    }

    /// Whether the servers `indexes` are one system and each sees all of them online.
    pub fn merged(&self, indexes: &[usize]) -> (bool, Vec<Value>) {
        let views: Vec<Value> =
            indexes.iter().map(|&i| self.status(i).unwrap_or_else(Value::String)).collect();
        let ids: BTreeSet<String> = views.iter().map(|v| text(&v["id"])).collect();
        let all_online = views.iter().all(|v| {
            let servers = v["servers"].as_array().cloned().unwrap_or_default();
            servers.len() == indexes.len() && servers.iter().all(|s| s["status"] == "online")
        });
        (ids.len() == 1 && all_online, views)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        if std::thread::panicking() {
            for s in &self.servers {
                eprintln!("----- log of {} ({}) -----\n{}", s.name, s.namespace, s.log_text());
            }
        }
        // Deleting a namespace destroys its veth end, and with it the peer on the bridge.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = try_ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

impl Server {
    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// iproute2's `ip`, which may be missing from a non-root user's `PATH`.
fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}

/// Runs `ip args`; the error says what failed and why.
fn try_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new(ip_bin())
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ip_bin()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), failure(&out)))
    }
}

/// Runs `ip args`; panics if it fails.
fn ip(args: &[&str]) {
    try_ip(args).unwrap_or_else(|e| panic!("{e}"));
}

fn failure(out: &Output) -> String {
    format!("{} {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
}
