//! Multicast discovery works across real network stacks, not just on loopback: three servers,
//! each in a network namespace of its own and joined only by a Linux bridge, find each other by
//! multicast beacons on the wire and merge into one system; a fourth server on the same bridge
//! with the same system name but a wrong secret is listed under `other_systems`, never among
//! the servers. Every server is queried through the `hive status --json` CLI run in its own
//! namespace.
//!
//! Topology (all of it inside namespaces this test creates; the host's own interfaces, addresses
//! and routes are never touched):
//!
//! ```text
//!   hive-<pid>-br:  br0 (bridge, multicast snooping off)
//!                   ├── va ══ eth0 in hive-<pid>-a  10.231.0.1/24   member
//!                   ├── vb ══ eth0 in hive-<pid>-b  10.231.0.2/24   member
//!                   ├── vc ══ eth0 in hive-<pid>-c  10.231.0.3/24   member
//!                   └── vx ══ eth0 in hive-<pid>-x  10.231.0.4/24   wrong secret
//! ```
//!
//! Needs root. It fails when it cannot build the namespaces, unless `HIVE_SKIP_NETNS=1` is set,
//! in which case it warns and passes (for developers without root).

use hive_tests::{hive_bin, join_token, vendor_key_hex, wait_for, CONVERGE, OWNER_PASSWORD};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

const SYSTEM: &str = "Depot";
const SECRET: &str = "secret-depot";
const WRONG_SECRET: &str = "a-wrong-guess";
/// Each server has a network stack of its own, so the ports can be fixed.
const PEER_PORT: u16 = 7001;
const HTTP_PORT: u16 = 7080;
const DISCOVERY_GROUP: &str = "239.255.11.11:5007";
/// The private subnet the namespaces share; it exists only inside them.
const SUBNET: &str = "10.231.0";

#[test]
fn servers_in_separate_network_namespaces_find_each_other_by_multicast() {
    let Some(mut lab) = lab_or_skip() else { return };
    let started = Instant::now();
    let members: Vec<usize> = ["a", "b", "c"].iter().map(|n| lab.start(n, SECRET)).collect();
    let intruder = lab.start("x", WRONG_SECRET);
    for i in 0..lab.servers.len() {
        lab.wait_until_answering(i);
    }
    eprintln!("netns: 4 servers answering after {:?}", started.elapsed());

    let views = wait_for("the three members to form one system", CONVERGE, || lab.merged(&members));
    eprintln!("netns: members merged after {:?}", started.elapsed());
    let system_id = views[0]["id"].clone();
    let intruder_id = lab.status(intruder).expect("the intruder answers")["server_id"].clone();

    for &m in &members {
        let what = format!("{} to list the intruder under other systems", lab.servers[m].name);
        let view = lab.wait_for_view(m, &what, |v| lists_other_server(v, &intruder_id));
        assert_eq!(view["id"], system_id, "{view:#}");
        assert!(!server_ids(&view).contains(&text(&intruder_id)), "intruder merged: {view:#}");
        assert_eq!(server_ids(&view).len(), 3, "{view:#}");
    }

    let member_id = views[0]["server_id"].clone();
    let what = "the intruder to list the members as another system";
    let view = lab.wait_for_view(intruder, what, |v| lists_other_server(v, &member_id));
    assert_ne!(view["id"], system_id, "{view:#}");
    assert_eq!(server_ids(&view), BTreeSet::from([text(&intruder_id)]), "{view:#}");
    eprintln!("netns: done after {:?}", started.elapsed());
}

/// The lab, or `None` (with a warning) when it cannot be built and `HIVE_SKIP_NETNS=1`.
fn lab_or_skip() -> Option<Lab> {
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
struct Lab {
    /// `hive-<pid>`: the prefix of every namespace, unique per test process.
    tag: String,
    /// Namespaces created so far, the bridge's first.
    namespaces: Vec<String>,
    servers: Vec<Server>,
    dir: tempfile::TempDir,
}

/// One `hive serve` in a namespace of its own.
struct Server {
    name: String,
    namespace: String,
    address: String,
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
        let mut lab = Lab { tag, namespaces: Vec::new(), servers: Vec::new(), dir };
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
    fn start(&mut self, name: &str, secret: &str) -> usize {
        let index = self.servers.len();
        let address = format!("{SUBNET}.{}", index + 1);
        let namespace = self.add_host(name, &address);
        let data_dir = self.dir.path().join(name).join("data");
        let log = self.dir.path().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(ip_bin())
            .args(["netns", "exec", &namespace])
            .arg(hive_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--system-name", SYSTEM])
            .args(["--server-name", name])
            .args(["--listen", &format!("{address}:{PEER_PORT}")])
            .args(["--http", &format!("{address}:{HTTP_PORT}")])
            .args(["--discovery-group", DISCOVERY_GROUP])
            .args(["--discovery-interface", &address])
            .args(["--hardware-id", &format!("hw-{name}")])
            .args(["--license-vendor-key", &vendor_key_hex()])
            .arg("--http-plain")
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
    fn wait_until_answering(&mut self, i: usize) {
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
    fn status(&self, i: usize) -> Result<Value, String> {
        let s = &self.servers[i];
        let out = Command::new(ip_bin())
            .args(["netns", "exec", &s.namespace])
            .arg(hive_bin())
            .args(["status", "--json"])
            .args(["--url", &format!("http://{}:{HTTP_PORT}", s.address)])
            .args(["--user", "admin", "--password", OWNER_PASSWORD])
            .output()
            .expect("ip netns exec hive status runs");
        if !out.status.success() {
            return Err(format!("hive status on {}: {}", s.name, failure(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: bad JSON: {e}", s.name))
    }

    /// Polls server `i`'s `hive status` until `check` holds; returns that view.
    fn wait_for_view(&self, i: usize, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let last = wait_for(what, CONVERGE, || match self.status(i) {
            Ok(v) => (check(&v), Ok(v)),
            Err(e) => (false, Err(e)),
        });
        last.unwrap()
    }

    /// Whether the servers `indexes` are one system and each sees all of them online.
    fn merged(&self, indexes: &[usize]) -> (bool, Vec<Value>) {
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
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether `view` lists server `id` under one of its other systems named like ours.
fn lists_other_server(view: &Value, id: &Value) -> bool {
    view["other_systems"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["name"] == SYSTEM && o["servers"].as_array().is_some_and(|s| s.contains(id)))
}

/// The ids of the servers of `view`'s system.
fn server_ids(view: &Value) -> BTreeSet<String> {
    view["servers"].as_array().into_iter().flatten().map(|s| text(&s["id"])).collect()
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
