//! `hive-bench`: wall-clock figures of real `hive` processes on loopback.
//!
//! ```sh
//! cargo build --release -p hive -p hive-tests
//! HIVE_BIN=target/release/hive target/release/hive-bench all
//! ```
//!
//! Four figures: how long three freshly started servers take to become one system
//! (`merge-time`), what an idle system of many servers costs per server in CPU, memory and
//! network (`idle`), how many API requests one server answers and how fast cameras created
//! through one server become visible through the others (`api`), and how fast a new server
//! copies a large replica from a peer (`sync`). Each prints a summary as it goes; at the end
//! the results are printed (and with `--markdown FILE` written) as a section for
//! `docs/benchmarks.md`.
//!
//! `HIVE_BENCH_LEGACY=1` runs it against a binary from before HTTPS (protocol 2), which has
//! no `--http-plain` and serves plain HTTP anyway: the before/after figures of issue 7.

use hive_tests::procfs::{clock_ticks, cpu_ticks, quantile};
use hive_tests::{merged, metrics_at, ApiTransport, Hive, Spec, OWNER_PASSWORD};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The usage text; it names every option and its default.
const USAGE: &str = "\
usage: hive-bench [COMMAND] [OPTIONS]

commands:
  all          every figure below (the default)
  merge-time   time from starting three servers to one merged system, over --runs runs
  idle         CPU, memory and bytes per second of each server of an idle system
  api          GET /api/system per second; cameras per second replicated to two servers
  sync         a new server copying --settings settings from a peer: seconds and bytes/s
  help         this text

options:
  --runs N            merge-time runs                         [10]
  --servers N         servers of the idle system              [20]
  --settle S          idle: seconds to wait after merging     [40]
  --seconds S         idle: seconds measured                  [30]
  --threads N         api: client threads of GET /api/system  [8]
  --get-seconds S     api: seconds of GET /api/system         [5]
  --cameras N         api: cameras to create                  [1000]
  --camera-threads N  api: client threads creating cameras    [4]
  --settings N        sync: settings written to the first server [20000]
  --value-bytes N     sync: bytes of each setting's value     [512]
  --write-threads N   sync: client threads writing settings   [4]
  --sync-runs N       sync: new servers joining, one at a time [3]
  --log FILTER        HIVE_LOG of the servers                 [info]
  --markdown FILE     also write the results as markdown to FILE

The servers are $HIVE_BIN (relative to the workspace root), else the newest
target/{release,debug}/hive. With HIVE_BENCH_LEGACY=1 they are started without
--http-plain, for binaries from before HTTPS, which serve plain HTTP without it.";

/// Longest wait for servers to merge; generous for a loaded two-core machine.
const MERGE_LIMIT: Duration = Duration::from_secs(180);
/// Longest wait for cameras to replicate.
const REPLICATE_LIMIT: Duration = Duration::from_secs(300);
/// Period of polling servers while waiting for something.
const POLL: Duration = Duration::from_millis(20);

/// Parses the command line, runs the figures asked for and prints (and writes) the report.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("hive-bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!("hive binary: {}", hive_tests::hive_bin().display());
    let machine = Machine::read();
    println!("machine: {}\n", machine.describe());
    let mut results = Results::default();
    if options.command.runs_merge_time() {
        results.merge = Some(bench_merge_time(&options));
    }
    if options.command.runs_idle() {
        results.idle = Some(bench_idle(&options));
    }
    if options.command.runs_api() {
        results.api = Some(bench_api(&options));
    }
    if options.command.runs_sync() {
        results.sync = Some(bench_sync(&options));
    }
    let markdown = results.markdown(&options, &machine, &invocation(&args));
    println!("\n---- markdown ----\n{markdown}");
    if let Some(path) = &options.markdown {
        if let Err(e) = std::fs::write(path, &markdown) {
            eprintln!("hive-bench: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("written to {}", path.display());
    }
}

/// The command line as a user would type it again, `HIVE_BIN` and `HIVE_BENCH_LEGACY`
/// included.
fn invocation(args: &[String]) -> String {
    let bin = std::env::var("HIVE_BIN").map(|b| format!("HIVE_BIN={b} ")).unwrap_or_default();
    let legacy = if legacy() { "HIVE_BENCH_LEGACY=1 " } else { "" };
    let mut line = format!("{legacy}{bin}target/release/hive-bench");
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Command line

/// Which figures to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bench {
    /// Every figure.
    All,
    /// Figure 1.
    MergeTime,
    /// Figure 2.
    Idle,
    /// Figure 3.
    Api,
    /// Figure 4.
    Sync,
}

impl Bench {
    fn runs_merge_time(self) -> bool {
        matches!(self, Bench::All | Bench::MergeTime)
    }

    fn runs_idle(self) -> bool {
        matches!(self, Bench::All | Bench::Idle)
    }

    fn runs_api(self) -> bool {
        matches!(self, Bench::All | Bench::Api)
    }

    fn runs_sync(self) -> bool {
        matches!(self, Bench::All | Bench::Sync)
    }
}

/// Everything the command line sets (see [`USAGE`]).
#[derive(Clone, Debug)]
struct Options {
    command: Bench,
    runs: usize,
    servers: usize,
    settle: Duration,
    window: Duration,
    threads: usize,
    get_time: Duration,
    cameras: usize,
    camera_threads: usize,
    settings: usize,
    value_bytes: usize,
    write_threads: usize,
    sync_runs: usize,
    log: String,
    markdown: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            command: Bench::All,
            runs: 10,
            servers: 20,
            settle: Duration::from_secs(40),
            window: Duration::from_secs(30),
            threads: 8,
            get_time: Duration::from_secs(5),
            cameras: 1000,
            camera_threads: 4,
            settings: 20_000,
            value_bytes: 512,
            write_threads: 4,
            sync_runs: 3,
            log: "info".into(),
            markdown: None,
        }
    }
}

impl Options {
    /// Parses the arguments after the program name; `Ok(None)` asks for the usage text.
    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut o = Options::default();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "all" => o.command = Bench::All,
                "merge-time" => o.command = Bench::MergeTime,
                "idle" => o.command = Bench::Idle,
                "api" => o.command = Bench::Api,
                "sync" => o.command = Bench::Sync,
                "help" | "--help" | "-h" => return Ok(None),
                "--runs" => o.runs = positive(arg, value()?)?,
                "--servers" => o.servers = positive(arg, value()?)?,
                "--settle" => o.settle = seconds(arg, value()?, true)?,
                "--seconds" => o.window = seconds(arg, value()?, false)?,
                "--threads" => o.threads = positive(arg, value()?)?,
                "--get-seconds" => o.get_time = seconds(arg, value()?, false)?,
                "--cameras" => o.cameras = positive(arg, value()?)?,
                "--camera-threads" => o.camera_threads = positive(arg, value()?)?,
                "--settings" => o.settings = positive(arg, value()?)?,
                "--value-bytes" => o.value_bytes = positive(arg, value()?)?,
                "--write-threads" => o.write_threads = positive(arg, value()?)?,
                "--sync-runs" => o.sync_runs = positive(arg, value()?)?,
                "--log" => o.log = value()?.clone(),
                "--markdown" => o.markdown = Some(PathBuf::from(value()?)),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.servers < 2 {
            return Err("--servers must be at least 2".into());
        }
        Ok(Some(o))
    }
}

/// A whole number of at least one.
fn positive(flag: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} takes a whole number of at least 1, not {text:?}")),
    }
}

/// Seconds, possibly fractional; zero only where `zero_ok`.
fn seconds(flag: &str, text: &str, zero_ok: bool) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) && s < 86_400.0 => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(format!("{flag} takes a number of seconds, not {text:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The machine

/// What the figures were measured on.
struct Machine {
    cores: usize,
    cpu: String,
    ram_gib: f64,
}

impl Machine {
    fn read() -> Machine {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_owned();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_kib = field_kib(&meminfo, "MemTotal:").unwrap_or(0);
        Machine { cores, cpu, ram_gib: ram_kib as f64 / (1024.0 * 1024.0) }
    }

    fn describe(&self) -> String {
        format!("{} cores (nproc), {}, {:.1} GiB RAM", self.cores, self.cpu, self.ram_gib)
    }
}

/// The value of a `Name:   123 kB` line of a /proc file.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.split_whitespace().next()?.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A discovery port and system name of their own for each system this run starts, so that
/// systems of one run, and of other runs or tests on the machine, never merge.
fn fresh_system() -> (u16, String) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (hive_tests::discovery_port(), format!("bench-{}-{n}", std::process::id()))
}

/// Whether the servers are binaries from before HTTPS (`HIVE_BENCH_LEGACY=1`).
fn legacy() -> bool {
    std::env::var_os("HIVE_BENCH_LEGACY").is_some_and(|v| v != "0" && !v.is_empty())
}

/// How to start server `name` of `system` for a benchmark: plain HTTP, asked for in the way
/// the binary understands, and `HIVE_LOG=log`.
fn bench_spec(name: &str, system: &str, secret: &str, port: u16, log: &str) -> Spec {
    let mut spec = Spec::new(name, system, secret, port);
    spec.env.push(("HIVE_LOG".into(), log.into()));
    if legacy() {
        spec.api = ApiTransport::PlainUnflagged;
    }
    spec
}

/// Starts `n` servers of one new system at once, each on fresh data; returns when every API
/// answers.
fn start_system(n: usize, log: &str) -> Vec<Hive> {
    let (port, system) = fresh_system();
    let secret = format!("{system}-secret");
    std::thread::scope(|s| {
        let starting: Vec<_> = (0..n)
            .map(|i| {
                let spec = bench_spec(&format!("s{i:02}"), &system, &secret, port, log);
                s.spawn(move || Hive::start(spec))
            })
            .collect();
        starting.into_iter().map(|t| t.join().expect("a server started")).collect()
    })
}

/// The metrics of a running server.
fn metrics(hive: &Hive) -> HashMap<String, f64> {
    metrics_at(hive.http)
        .unwrap_or_else(|| panic!("{} does not answer GET /metrics", hive.spec.name))
}

/// One metric of a server; 0 when absent.
fn metric(hive: &Hive, name: &str) -> f64 {
    metrics(hive).get(name).copied().unwrap_or(0.0)
}

/// Polls until every server sees all of them online in one system; returns when that was
/// first seen. Polls the cheap `/metrics` and confirms with `/api/system` (which checks a
/// password the first time, a deliberately slow key derivation).
fn wait_merged(hives: &[Hive], limit: Duration) -> Instant {
    let start = Instant::now();
    let refs: Vec<&Hive> = hives.iter().collect();
    let want = hives.len() as f64;
    loop {
        let online: Vec<f64> = hives.iter().map(|h| metric(h, "hive_servers_online")).collect();
        let seen = Instant::now();
        if online.iter().all(|&o| o == want) && merged(&refs).0 {
            return seen;
        }
        if start.elapsed() > limit {
            panic!("{} servers did not merge within {limit:?}; online: {online:?}", hives.len());
        }
        std::thread::sleep(POLL);
    }
}

/// The process id of a running server.
fn pid_of(hive: &Hive) -> u32 {
    hive.pid().unwrap_or_else(|| panic!("{} is not running", hive.spec.name))
}

// ---------------------------------------------------------------------------------------------
// /proc readings

/// A memory field of a process's /proc status (`VmRSS:`, `RssAnon:`), KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    field_kib(&status, field).unwrap_or(0)
}

/// Busy and total ticks of all CPUs of the machine (first line of /proc/stat).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// CPU used by some processes from a starting point on.
struct CpuMeter {
    pids: Vec<u32>,
    ticks: Vec<u64>,
    at: Instant,
}

impl CpuMeter {
    fn start(pids: &[u32]) -> CpuMeter {
        let ticks = pids.iter().map(|&p| cpu_ticks(p)).collect();
        CpuMeter { pids: pids.to_vec(), ticks, at: Instant::now() }
    }

    /// Each process's CPU since the start, percent of one core.
    fn percent(&self) -> Vec<f64> {
        let secs = self.at.elapsed().as_secs_f64();
        let per_tick = 100.0 / clock_ticks() / secs;
        self.pids
            .iter()
            .zip(&self.ticks)
            .map(|(&p, &t)| (cpu_ticks(p) - t) as f64 * per_tick)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Smallest, median, mean and largest of some values.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    min: f64,
    median: f64,
    mean: f64,
    max: f64,
}

impl Summary {
    fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Summary { min: v[0], median, mean, max: v[v.len() - 1] }
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 1: merge time

/// Times of the merge-time runs, seconds.
struct MergeResult {
    /// From spawning the first process until every API answered.
    apis_up: Vec<f64>,
    /// From spawning the first process until one system with all servers online everywhere.
    merged: Vec<f64>,
}

/// Figure 1: `o.runs` runs of three fresh servers merging.
fn bench_merge_time(o: &Options) -> MergeResult {
    println!("== merge time: 3 servers, {} runs ==", o.runs);
    let mut result = MergeResult { apis_up: Vec::new(), merged: Vec::new() };
    for run in 1..=o.runs {
        let (up, merged) = merge_run(&o.log);
        println!("run {run:2}: APIs up {up:6.3} s, one system {merged:6.3} s");
        result.apis_up.push(up);
        result.merged.push(merged);
    }
    let s = Summary::of(&result.merged);
    println!("one system after: median {:.2} s (min {:.2}, max {:.2})\n", s.median, s.min, s.max);
    result
}

/// One run of three fresh servers: seconds from spawning the first until every API answered,
/// and until they formed one system.
///
/// `Hive::start` picks the ports and polls its server's API only every 50 ms, too coarse to
/// time a merge of a few tens of ms. So the servers are started once to learn their ports,
/// killed, their data wiped, and spawned again as a new system on a new discovery port while
/// this thread polls their `/metrics` every few ms.
fn merge_run(log: &str) -> (f64, f64) {
    let mut hives = start_system(3, log);
    let (port, system) = fresh_system();
    for h in &mut hives {
        h.kill9();
        if let Err(e) = std::fs::remove_dir_all(&h.data_dir) {
            panic!("cannot wipe {}: {e}", h.data_dir.display());
        }
        h.spec.discovery_port = port;
        h.spec.secret = format!("{system}-secret");
        h.spec.system = system.clone();
    }
    let addresses: Vec<SocketAddr> = hives.iter().map(|h| h.http).collect();
    let start = Instant::now();
    let (up, online) = std::thread::scope(|s| {
        for h in &mut hives {
            s.spawn(move || h.spawn());
        }
        poll_until_online(&addresses, start)
    });
    // Confirm with what a client sees: one system id, every server online.
    let refs: Vec<&Hive> = hives.iter().collect();
    let merged_secs = if merged(&refs).0 {
        online
    } else {
        wait_merged(&hives, MERGE_LIMIT).duration_since(start).as_secs_f64()
    };
    if merged_secs > up + SLOW_MERGE_SECS {
        keep_logs(&hives, &system);
    }
    (up, merged_secs)
}

/// A merge that takes this much longer than the servers take to answer keeps its logs.
const SLOW_MERGE_SECS: f64 = 0.5;

/// Copies the servers' logs next to their temporary directories, which are deleted on drop
/// (each log holds the discarded first start too).
fn keep_logs(hives: &[Hive], system: &str) {
    for h in hives {
        let path = std::env::temp_dir().join(format!("{system}-{}.log", h.spec.name));
        match std::fs::write(&path, h.log_text()) {
            Ok(()) => println!("        slow merge: log kept in {}", path.display()),
            Err(e) => eprintln!("        slow merge: cannot keep {}: {e}", path.display()),
        }
    }
}

/// Polls the servers at `addresses` until each answers and counts all of them online; the
/// seconds from `start` until every one answered and until all were online.
fn poll_until_online(addresses: &[SocketAddr], start: Instant) -> (f64, f64) {
    let want = addresses.len() as f64;
    let mut answered: Vec<Option<f64>> = vec![None; addresses.len()];
    loop {
        let mut all_online = true;
        for (addr, first) in addresses.iter().zip(&mut answered) {
            let online = metrics_at(*addr).map(|m| {
                first.get_or_insert(start.elapsed().as_secs_f64());
                m.get("hive_servers_online").copied().unwrap_or(0.0)
            });
            all_online &= online == Some(want);
        }
        if all_online {
            let up = answered.iter().flatten().fold(0.0, |a: f64, &b| a.max(b));
            return (up, start.elapsed().as_secs_f64());
        }
        if start.elapsed() > MERGE_LIMIT {
            panic!("{} servers did not merge within {MERGE_LIMIT:?}", addresses.len());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 2: cost of an idle system

/// A reading of one server at one instant.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    cpu_ticks: u64,
    beacon_bytes: f64,
    beacons: f64,
    link_sent: f64,
    link_received: f64,
    peers: f64,
    online: f64,
}

/// Reads the counters and CPU time of one server (process `pid`).
fn read_server(hive: &Hive, pid: u32) -> Reading {
    let m = metrics(hive);
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    Reading {
        at: Instant::now(),
        cpu_ticks: cpu_ticks(pid),
        beacon_bytes: get("hive_beacon_bytes_sent_total"),
        beacons: get("hive_beacons_sent_total"),
        link_sent: get("hive_link_bytes_sent_total"),
        link_received: get("hive_link_bytes_received_total"),
        peers: get("hive_peers_linked"),
        online: get("hive_servers_online"),
    }
}

/// Per-server rates over the window.
struct IdleResult {
    servers: usize,
    merge_secs: f64,
    settle_secs: f64,
    window_secs: f64,
    /// CPU, percent of one core.
    cpu: Summary,
    /// Resident memory at the end of the window, MiB.
    rss: Summary,
    /// Of it, anonymous memory (heap, stacks), MiB.
    rss_anon: Summary,
    beacon_bytes: Summary,
    beacons: Summary,
    link_sent: Summary,
    link_received: Summary,
    peers: Summary,
    /// Servers every server saw online at the end of the window.
    online_min: f64,
    /// Busy share of the whole machine during the window, percent of all cores.
    machine_busy: f64,
    /// The servers' share of the machine during the window, percent of all cores.
    servers_busy: f64,
}

/// Figure 2: starts `o.servers` servers, lets them merge and settle, then measures them
/// over `o.window`.
fn bench_idle(o: &Options) -> IdleResult {
    println!("== idle system: {} servers ==", o.servers);
    let start = Instant::now();
    let hives = start_system(o.servers, &o.log);
    println!("APIs up after {:.1} s", start.elapsed().as_secs_f64());
    let merge_secs = wait_merged(&hives, MERGE_LIMIT).duration_since(start).as_secs_f64();
    println!("one system after {merge_secs:.1} s; settling {:?}", o.settle);
    std::thread::sleep(o.settle);

    let pids: Vec<u32> = hives.iter().map(pid_of).collect();
    let machine_before = machine_ticks();
    let before: Vec<Reading> = hives.iter().zip(&pids).map(|(h, &p)| read_server(h, p)).collect();
    println!("measuring {:?}", o.window);
    std::thread::sleep(o.window);
    let after: Vec<Reading> = hives.iter().zip(&pids).map(|(h, &p)| read_server(h, p)).collect();
    let machine_after = machine_ticks();
    let rss: Vec<f64> = pids.iter().map(|&p| status_kib(p, "VmRSS:") as f64 / 1024.0).collect();
    let anon: Vec<f64> = pids.iter().map(|&p| status_kib(p, "RssAnon:") as f64 / 1024.0).collect();

    let ticks = clock_ticks();
    let rate = |f: fn(&Reading) -> f64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| (f(a) - f(b)) / a.at.duration_since(b.at).as_secs_f64())
            .collect()
    };
    let cpu = rate(|r| r.cpu_ticks as f64);
    let cpu_pct: Vec<f64> = cpu.iter().map(|t| t / ticks * 100.0).collect();
    let machine_busy_ticks = (machine_after.0 - machine_before.0) as f64;
    let machine_total_ticks = ((machine_after.1 - machine_before.1) as f64).max(1.0);
    let window_secs = after[0].at.duration_since(before[0].at).as_secs_f64();
    let servers_ticks: f64 = cpu.iter().sum::<f64>() * window_secs;
    let result = IdleResult {
        servers: o.servers,
        merge_secs,
        settle_secs: o.settle.as_secs_f64(),
        window_secs,
        cpu: Summary::of(&cpu_pct),
        rss: Summary::of(&rss),
        rss_anon: Summary::of(&anon),
        beacon_bytes: Summary::of(&rate(|r| r.beacon_bytes)),
        beacons: Summary::of(&rate(|r| r.beacons)),
        link_sent: Summary::of(&rate(|r| r.link_sent)),
        link_received: Summary::of(&rate(|r| r.link_received)),
        peers: Summary::of(&after.iter().map(|r| r.peers).collect::<Vec<_>>()),
        online_min: after.iter().map(|r| r.online).fold(f64::INFINITY, f64::min),
        machine_busy: machine_busy_ticks / machine_total_ticks * 100.0,
        servers_busy: servers_ticks / machine_total_ticks * 100.0,
    };
    print_idle(&result);
    result
}

/// Prints the idle figures, one line each.
fn print_idle(r: &IdleResult) {
    let row = |what: &str, s: &Summary, unit: &str| {
        println!("{what:<28} mean {:10.2} max {:10.2} {unit}", s.mean, s.max);
    };
    println!("per server over {:.1} s:", r.window_secs);
    row("CPU", &r.cpu, "% of one core");
    row("resident memory", &r.rss, "MiB");
    row("of which anonymous", &r.rss_anon, "MiB");
    row("beacon bytes sent", &r.beacon_bytes, "B/s");
    row("beacons sent", &r.beacons, "/s");
    row("link bytes sent", &r.link_sent, "B/s");
    row("link bytes received", &r.link_received, "B/s");
    row("peers linked", &r.peers, "");
    println!(
        "all servers {:.1} % of the machine ({:.1} % busy in all); fewest online seen {}\n",
        r.servers_busy, r.machine_busy, r.online_min
    );
}

// ---------------------------------------------------------------------------------------------
// Figure 3: API throughput

/// A keep-alive client of one server's API as the owner.
struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn new(hive: &Hive) -> Client {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{OWNER_PASSWORD}"));
        Client {
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build(),
            base: format!("http://{}", hive.http),
            auth: format!("Basic {token}"),
        }
    }

    /// A request's status and body; the body is read whole so the connection is reused.
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                let status = r.status();
                (status, r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{method} {}{path} failed: {e}", self.base),
        }
    }
}

/// Requests answered by one client thread and their latencies, seconds.
#[derive(Default)]
struct Tally {
    ok: usize,
    failed: usize,
    latencies: Vec<f64>,
}

impl Tally {
    fn record(&mut self, started: Instant, ok: bool) {
        self.latencies.push(started.elapsed().as_secs_f64());
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }

    fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.ok += t.ok;
            all.failed += t.failed;
            all.latencies.extend(t.latencies);
        }
        all.latencies.sort_by(f64::total_cmp);
        all
    }
}

/// Figures of the API benchmark.
struct ApiResult {
    threads: usize,
    get_secs: f64,
    get: Tally,
    cameras: usize,
    camera_threads: usize,
    create: Tally,
    /// Until every create was answered by A, seconds.
    accepted_secs: f64,
    /// Until B and C each counted all cameras, seconds.
    visible_secs: [f64; 2],
    /// CPU of the server and of this benchmark (the clients) during the reads, % of a core.
    get_cpu: Vec<f64>,
    /// CPU of servers A, B, C and of this benchmark during the creates, % of a core.
    create_cpu: Vec<f64>,
}

impl ApiResult {
    fn get_rate(&self) -> f64 {
        self.get.ok as f64 / self.get_secs
    }

    fn accepted_rate(&self) -> f64 {
        self.cameras as f64 / self.accepted_secs
    }

    fn end_to_end_secs(&self) -> f64 {
        self.visible_secs[0].max(self.visible_secs[1])
    }

    fn end_to_end_rate(&self) -> f64 {
        self.cameras as f64 / self.end_to_end_secs()
    }
}

/// Figure 3: reads per second of one server, then cameras created through one server until
/// the two others count them.
fn bench_api(o: &Options) -> ApiResult {
    println!("== API: 3 servers ==");
    let hives = start_system(3, &o.log);
    wait_merged(&hives, MERGE_LIMIT);
    // The first login derives a key (slow on purpose); later ones hit the cache.
    for h in &hives {
        Client::new(h).send("GET", "/api/system", None);
    }
    let mut pids: Vec<u32> = hives.iter().map(pid_of).collect();
    pids.push(std::process::id());
    let meter = CpuMeter::start(&[pids[0], pids[3]]);
    let (get, get_secs) = get_system_load(&hives[0], o.threads, o.get_time);
    let get_cpu = meter.percent();
    let get_rate = get.ok as f64 / get_secs;
    println!(
        "GET /api/system, {} threads: {get_rate:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} failed; \
         CPU: server {:.0} %, clients {:.0} % of a core",
        o.threads,
        quantile(&get.latencies, 0.5) * 1e3,
        quantile(&get.latencies, 0.99) * 1e3,
        get.failed,
        get_cpu[0],
        get_cpu[1]
    );
    let meter = CpuMeter::start(&pids);
    let (create, accepted_secs, visible_secs) = create_cameras(&hives, o);
    let create_cpu = meter.percent();
    let result = ApiResult {
        threads: o.threads,
        get_secs,
        get,
        cameras: o.cameras,
        camera_threads: o.camera_threads,
        create,
        accepted_secs,
        visible_secs,
        get_cpu,
        create_cpu,
    };
    println!(
        "{} cameras through A, {} threads: accepted in {:.2} s ({:.0}/s, p50 {:.1} ms, p99 {:.1} ms); \
         all visible through B after {:.2} s, C after {:.2} s: {:.0} cameras/s end to end; \
         CPU: A {:.0} %, B {:.0} %, C {:.0} %, clients {:.0} % of a core\n",
        result.cameras,
        result.camera_threads,
        result.accepted_secs,
        result.accepted_rate(),
        quantile(&result.create.latencies, 0.5) * 1e3,
        quantile(&result.create.latencies, 0.99) * 1e3,
        result.visible_secs[0],
        result.visible_secs[1],
        result.end_to_end_rate(),
        result.create_cpu[0],
        result.create_cpu[1],
        result.create_cpu[2],
        result.create_cpu[3]
    );
    result
}

/// `threads` keep-alive clients asking `GET /api/system` for `time`; the tally and the seconds
/// it took.
fn get_system_load(hive: &Hive, threads: usize, time: Duration) -> (Tally, f64) {
    let start = Instant::now();
    let tallies = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let client = Client::new(hive);
                    let mut tally = Tally::default();
                    while start.elapsed() < time {
                        let t = Instant::now();
                        let (status, _) = client.send("GET", "/api/system", None);
                        tally.record(t, status == 200);
                    }
                    tally
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a client thread")).collect()
    });
    (Tally::merge(tallies), start.elapsed().as_secs_f64())
}

/// Creates `o.cameras` cameras through the first server with `o.camera_threads` clients while
/// the second and third are watched; the tally of creates, the seconds until every create was
/// answered, and the seconds until each watched server counted them all.
fn create_cameras(hives: &[Hive], o: &Options) -> (Tally, f64, [f64; 2]) {
    let (a, b, c) = (&hives[0], &hives[1], &hives[2]);
    let want = o.cameras as f64 + metric(a, "hive_cameras");
    let start = Instant::now();
    let (tallies, accepted, visible) = std::thread::scope(|s| {
        let watchers = [b, c].map(|h| s.spawn(move || watch_cameras(h, want, start)));
        let workers: Vec<_> = (0..o.camera_threads)
            .map(|t| s.spawn(move || create_share(a, t, o.camera_threads, o.cameras)))
            .collect();
        let tallies: Vec<Tally> =
            workers.into_iter().map(|w| w.join().expect("a client thread")).collect();
        let accepted = start.elapsed().as_secs_f64();
        let visible = watchers.map(|w| w.join().expect("a watcher thread"));
        (tallies, accepted, visible)
    });
    let tally = Tally::merge(tallies);
    if tally.failed > 0 {
        panic!("{} of {} camera creations failed", tally.failed, o.cameras);
    }
    for h in [b, c] {
        let (_, list) = Client::new(h).send("GET", "/api/cameras", None);
        let count = serde_json::from_str::<serde_json::Value>(&list)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        assert_eq!(count as f64, want, "GET /api/cameras of {} lists every camera", h.spec.name);
    }
    (tally, accepted, visible)
}

/// Client `t` of `threads` creates cameras `t, t + threads, ...` below `total`.
fn create_share(hive: &Hive, t: usize, threads: usize, total: usize) -> Tally {
    let client = Client::new(hive);
    let mut tally = Tally::default();
    for i in (t..total).step_by(threads) {
        let body = json!({
            "name": format!("bench-{i:05}"),
            "url": format!("rtsp://10.{}.{}.{}/stream", i / 65536 % 256, i / 256 % 256, i % 256),
        });
        let started = Instant::now();
        let (status, text) = client.send("POST", "/api/cameras", Some(&body.to_string()));
        if status != 201 {
            eprintln!("POST /api/cameras answered {status}: {text}");
        }
        tally.record(started, status == 201);
    }
    tally
}

/// Seconds from `start` until `hive` counts `want` cameras.
fn watch_cameras(hive: &Hive, want: f64, start: Instant) -> f64 {
    loop {
        if metric(hive, "hive_cameras") >= want {
            return start.elapsed().as_secs_f64();
        }
        if start.elapsed() > REPLICATE_LIMIT {
            panic!("{} did not count {want} cameras within {REPLICATE_LIMIT:?}", hive.spec.name);
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 4: bulk sync

/// One new server copying the first server's replica.
struct SyncRun {
    /// From spawning the new server until its API answered, seconds.
    api_secs: f64,
    /// From spawning the new server until it holds everything the first one holds, seconds.
    secs: f64,
    /// Link bytes the first server sent meanwhile (`hive_link_bytes_sent_total`).
    bytes_sent: f64,
    /// CPU of the first and of the new server meanwhile, % of a core.
    cpu: [f64; 2],
}

impl SyncRun {
    fn bytes_per_sec(&self) -> f64 {
        self.bytes_sent / self.secs
    }
}

/// Figures of the sync benchmark.
struct SyncResult {
    settings: usize,
    value_bytes: usize,
    write_threads: usize,
    /// Seconds the first server took to accept every setting while alone.
    write_secs: f64,
    /// Transactions the first server held before the first new server started.
    transactions: f64,
    runs: Vec<SyncRun>,
}

/// Figure 4: `o.settings` settings written to a server while it is alone; then, `o.sync_runs`
/// times, a new server of the same system (same secret, told the first one's address by
/// `--peer`, no owner of its own) starts on fresh data and is timed until it holds every
/// transaction the first one holds.
fn bench_sync(o: &Options) -> SyncResult {
    println!(
        "== bulk sync: {} settings of {} bytes, {} new servers ==",
        o.settings, o.value_bytes, o.sync_runs
    );
    let (port, system) = fresh_system();
    let secret = format!("{system}-secret");
    let a = Hive::start(bench_spec("sync-a", &system, &secret, port, &o.log));
    let started = Instant::now();
    let failed: usize = std::thread::scope(|s| {
        let a = &a;
        let writers: Vec<_> =
            (0..o.write_threads).map(|t| s.spawn(move || write_settings(a, t, o))).collect();
        writers.into_iter().map(|w| w.join().expect("a client thread")).sum()
    });
    let write_secs = started.elapsed().as_secs_f64();
    if failed > 0 {
        panic!("{failed} of {} settings were not written", o.settings);
    }
    let transactions = metric(&a, "hive_transactions");
    println!(
        "{} settings written in {write_secs:.1} s ({:.0}/s); the first server holds {transactions} transactions",
        o.settings,
        o.settings as f64 / write_secs
    );
    let pid_a = pid_of(&a);
    let mut runs = Vec::new();
    for run in 1..=o.sync_runs {
        let mut spec = bench_spec(&format!("sync-b{run}"), &system, &secret, port, &o.log);
        spec.owner = None;
        spec.peers = vec![a.peer.to_string()];
        let sent_before = metric(&a, "hive_link_bytes_sent_total");
        let held_before = metric(&a, "hive_transactions");
        let a_ticks = cpu_ticks(pid_a);
        let start = Instant::now();
        let b = Hive::start(spec);
        let api_secs = start.elapsed().as_secs_f64();
        let secs = wait_synced(&a, &b, held_before, start);
        let ticks = clock_ticks();
        // The new server's process is as old as the run: all its CPU time counts.
        let cpu = [
            (cpu_ticks(pid_a) - a_ticks) as f64 / ticks / secs * 100.0,
            cpu_ticks(pid_of(&b)) as f64 / ticks / secs * 100.0,
        ];
        let bytes_sent = metric(&a, "hive_link_bytes_sent_total") - sent_before;
        let settings = settings_of(&b);
        assert!(
            settings >= o.settings,
            "{} lists {settings} settings, not all {}",
            b.spec.name,
            o.settings
        );
        let r = SyncRun { api_secs, secs, bytes_sent, cpu };
        println!(
            "run {run}: API up after {api_secs:.2} s, all transactions after {secs:.2} s; first server sent {:.1} MB = {:.1} MB/s; \
             CPU: first {:.0} %, new {:.0} % of a core",
            bytes_sent / 1e6,
            r.bytes_per_sec() / 1e6,
            cpu[0],
            cpu[1]
        );
        runs.push(r);
    }
    println!();
    SyncResult {
        settings: o.settings,
        value_bytes: o.value_bytes,
        write_threads: o.write_threads,
        write_secs,
        transactions,
        runs,
    }
}

/// Client `t` of `o.write_threads` writes settings `t, t + threads, ...` below `o.settings`
/// through `hive`; how many were refused.
fn write_settings(hive: &Hive, t: usize, o: &Options) -> usize {
    let client = Client::new(hive);
    let filler: String = "x".repeat(o.value_bytes.saturating_sub(6));
    let mut failed = 0;
    for i in (t..o.settings).step_by(o.write_threads) {
        let body = json!({ "name": format!("bench.s{i:06}"), "value": format!("{i:06}{filler}") });
        let (status, text) = client.send("POST", "/api/settings", Some(&body.to_string()));
        if status != 201 {
            eprintln!("POST /api/settings answered {status}: {text}");
            failed += 1;
        }
    }
    failed
}

/// Seconds from `start` until `b` holds every transaction `a` held (`held`, read before `b`
/// started) and both hold the same number with nothing outstanding: `a` then has `b`'s own
/// records too, so equal counts mean equal replicas.
fn wait_synced(a: &Hive, b: &Hive, held: f64, start: Instant) -> f64 {
    loop {
        let (ma, mb) = (metrics(a), metrics(b));
        let get = |m: &HashMap<String, f64>, name: &str| m.get(name).copied().unwrap_or(0.0);
        let (ta, tb) = (get(&ma, "hive_transactions"), get(&mb, "hive_transactions"));
        let idle =
            get(&ma, "hive_sync_lag_origins") == 0.0 && get(&mb, "hive_sync_lag_origins") == 0.0;
        if tb >= held && ta > held && ta == tb && idle {
            return start.elapsed().as_secs_f64();
        }
        if start.elapsed() > REPLICATE_LIMIT {
            panic!("{} holds {tb} of {ta} transactions after {REPLICATE_LIMIT:?}", b.spec.name);
        }
        std::thread::sleep(POLL);
    }
}

/// How many settings a server lists (asked as the first server's owner, whose account it
/// copied).
fn settings_of(hive: &Hive) -> usize {
    let client = Client::new(hive);
    // Read as a stream: the list is larger than ureq's 10 MB limit of `into_string`.
    let response = client
        .agent
        .get(&format!("{}/api/settings", client.base))
        .set("Authorization", &client.auth)
        .call()
        .unwrap_or_else(|e| panic!("GET /api/settings of {}: {e}", hive.spec.name));
    let list: serde_json::Map<String, serde_json::Value> =
        response.into_json().unwrap_or_else(|e| {
            panic!("GET /api/settings of {} is no JSON object: {e}", hive.spec.name)
        });
    list.len()
}

// ---------------------------------------------------------------------------------------------
// Report

/// The figures measured in this run.
#[derive(Default)]
struct Results {
    merge: Option<MergeResult>,
    idle: Option<IdleResult>,
    api: Option<ApiResult>,
    sync: Option<SyncResult>,
}

impl Results {
    /// A section for `docs/benchmarks.md`.
    fn markdown(&self, o: &Options, machine: &Machine, command: &str) -> String {
        let mut md = String::new();
        let _ = write!(
            md,
            "## Real processes on loopback\n\n\
             ```sh\n\
             cargo build --release -p hive -p hive-tests\n\
             {command}\n\
             ```\n\n\
             Real `hive serve` processes on 127.0.0.1, each on fresh data in a temporary \
             directory, discovering each other by multicast on loopback (`HIVE_LOG={}`). \
             Machine: {}; shared with other builds and tests while measured.\n",
            o.log,
            machine.describe()
        );
        if let Some(m) = &self.merge {
            md.push_str(&merge_markdown(m));
        }
        if let Some(i) = &self.idle {
            md.push_str(&idle_markdown(i));
        }
        if let Some(a) = &self.api {
            md.push_str(&api_markdown(a));
        }
        if let Some(r) = &self.sync {
            md.push_str(&sync_markdown(r));
        }
        md
    }
}

/// Figure 1 as markdown.
fn merge_markdown(m: &MergeResult) -> String {
    let merged = Summary::of(&m.merged);
    let up = Summary::of(&m.apis_up);
    format!(
        "\n### Three servers to one system\n\n\
         Wall clock from spawning the first of three processes until every server's \
         `/api/system` shows one system id and 3 servers online; {} runs, each on its own \
         discovery port.\n\n\
         | figure | median | min | max |\n|---|---|---|---|\n\
         | one merged system | **{:.2} s** | {:.2} s | {:.2} s |\n\
         | of which until every API answered | {:.2} s | {:.2} s | {:.2} s |\n",
        m.merged.len(),
        merged.median,
        merged.min,
        merged.max,
        up.median,
        up.min,
        up.max
    )
}

/// Figure 2 as markdown.
fn idle_markdown(r: &IdleResult) -> String {
    let row = |what: &str, s: &Summary, unit: &str, digits: usize| {
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        format!("| {what} | **{:.digits$}**{unit} | {:.digits$}{unit} |\n", s.mean, s.max)
    };
    let mut md = format!(
        "\n### Cost of an idle system of {n} servers\n\n\
         {n} servers started at once formed one system after {:.1} s; after {:.0} s more to \
         settle, each was measured over {:.0} s: CPU from utime + stime of `/proc/PID/stat` (% \
         of one core), resident memory (`VmRSS`) at the end, bytes from the `/metrics` \
         counters.\n\n\
         | per server | mean | max |\n|---|---|---|\n",
        r.merge_secs,
        r.settle_secs,
        r.window_secs,
        n = r.servers,
    );
    md.push_str(&row("CPU", &r.cpu, "% of a core", 2));
    md.push_str(&row("resident memory (`VmRSS`)", &r.rss, "MiB", 1));
    md.push_str(&row("of which anonymous (`RssAnon`: heap, stacks)", &r.rss_anon, "MiB", 1));
    md.push_str(&row("beacons sent (`hive_beacon_bytes_sent_total`)", &r.beacon_bytes, "B/s", 0));
    md.push_str(&row(
        "heartbeats and other link traffic sent (`hive_link_bytes_sent_total`)",
        &r.link_sent,
        "B/s",
        0,
    ));
    md.push_str(&row("link bytes received", &r.link_received, "B/s", 0));
    md.push_str(&row("peers linked", &r.peers, "", 0));
    let _ = write!(
        md,
        "\nAll {} servers together used {:.1} % of the machine's CPU time ({:.1} % of it was \
         busy in all); at the end every server saw at least {} servers online.\n",
        r.servers, r.servers_busy, r.machine_busy, r.online_min
    );
    md
}

/// Figure 3 as markdown.
fn api_markdown(a: &ApiResult) -> String {
    let ms = |tally: &Tally, q: f64| quantile(&tally.latencies, q) * 1e3;
    let mut md = String::from(
        "\n### API throughput of a three-server system\n\n| figure | result |\n|---|---|\n",
    );
    let _ = writeln!(
        md,
        "| `GET /api/system` of one server, {} keep-alive client threads, {:.0} s | \
         **{:.0} requests/s** (p50 {:.2} ms, p99 {:.2} ms); CPU: server {:.0} %, clients {:.0} % \
         of a core |",
        a.threads,
        a.get_secs,
        a.get_rate(),
        ms(&a.get, 0.5),
        ms(&a.get, 0.99),
        a.get_cpu[0],
        a.get_cpu[1]
    );
    let _ = writeln!(
        md,
        "| {} cameras created through server A by {} keep-alive client threads | all answered \
         after {:.2} s: {:.0} cameras/s (p50 {:.1} ms, p99 {:.1} ms) |",
        a.cameras,
        a.camera_threads,
        a.accepted_secs,
        a.accepted_rate(),
        ms(&a.create, 0.5),
        ms(&a.create, 0.99)
    );
    let _ = writeln!(
        md,
        "| the same cameras counted by B and C (`hive_cameras`) | after {:.2} s and {:.2} s: \
         **{:.0} cameras/s** end to end; CPU: A {:.0} %, B {:.0} %, C {:.0} %, clients {:.0} % \
         of a core |",
        a.visible_secs[0],
        a.visible_secs[1],
        a.end_to_end_rate(),
        a.create_cpu[0],
        a.create_cpu[1],
        a.create_cpu[2],
        a.create_cpu[3]
    );
    md
}

/// Figure 4 as markdown.
fn sync_markdown(r: &SyncResult) -> String {
    let mut md = format!(
        "\n### Bulk sync to a new server\n\n\
         {} settings of {} bytes written to one server while alone ({} client threads, {:.1} s: \
         {:.0}/s; {} transactions held); then, one at a time, a new server of the same system \
         (same secret, `--peer` of the first, fresh data, no owner of its own) was timed from \
         its spawn until both held the same transactions with nothing outstanding.\n\n\
         | run | API up | all transactions | bytes sent by the first | rate | CPU first / new |\n\
         |---|---|---|---|---|---|\n",
        r.settings,
        r.value_bytes,
        r.write_threads,
        r.write_secs,
        r.settings as f64 / r.write_secs,
        r.transactions
    );
    for (i, run) in r.runs.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {:.2} s | **{:.2} s** | {:.1} MB | **{:.1} MB/s** | {:.0} % / {:.0} % |",
            i + 1,
            run.api_secs,
            run.secs,
            run.bytes_sent / 1e6,
            run.bytes_per_sec() / 1e6,
            run.cpu[0],
            run.cpu[1]
        );
    }
    md
}
