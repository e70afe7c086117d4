//! `hive-relay-bench`: the figures of video through the hive (`docs/benchmarks.md`), measured
//! on real processes over loopback and in network namespaces.
//!
//! ```sh
//! cargo build --release -p hive -p hive-tests
//! HIVE_BIN=target/release/hive target/release/hive-relay-bench all --markdown /tmp/relay.md
//! ```
//!
//! - `compare`: `--streams` cameras relayed through a second server, then the same cameras
//!   through a GStreamer RTSP relay (gst-rtsp-server with `rtspsrc`, `tests/bench/gst_relay.py`)
//!   with the same clients, one after the other: CPU per stream of each relay and the latency
//!   each adds per frame (arrival at a relayed client against a direct client of the recorder,
//!   frames matched by their bytes, since GStreamer rewrites RTP timestamps); then what one
//!   core carries of ours.
//! - `capacity`: the most streams our relay carries on one core, at saturation on a share of
//!   one (busy loops beside it), since two cores cannot feed it a whole core's worth.
//! - `fast`: one fast stream through one hop against the loopback ceiling (`iperf3`).
//! - `start`: live start through one hop (loopback) and two hops (namespaces), cold and warm.
//! - `failover-seek`: time to first frame of archive positions around a failover boundary,
//!   asked of a server that recorded none of it.

mod capacity;
mod compare;
mod failover_seek;
mod fast;
mod start;

use hive_tests::bench::{positive_arg, run_figures, Figure};

const USAGE: &str = "\
usage: hive-relay-bench [COMMAND] [OPTIONS]

commands:
  all            every figure below (the default)
  compare        --streams cameras through our relay, then through GStreamer's
  capacity       the most streams our relay carries on one core
  fast           one fast stream through one hop against iperf3
  start          live start through one and two hops, cold and warm
  failover-seek  time to first frame around a failover boundary
  help           this text

options:
  --streams N    compare: cameras relayed                  [64]
  --seconds S    compare, capacity, fast: seconds measured [20]
  --trials N     start, failover-seek: clients timed       [50]
  --markdown F   also write the results as markdown to F

The servers are $HIVE_BIN (relative to the workspace root), else the newest
target/{release,debug}/hive.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(start::PROBE) {
        // Run inside a network namespace by `start`: time live starts there.
        return start::probe(&args[1..]);
    }
    let o = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return println!("{USAGE}"),
        Err(message) => {
            eprintln!("hive-relay-bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let figures: [(&str, Figure<Options>); 5] = [
        ("compare", compare::run),
        ("capacity", capacity::run),
        ("fast", fast::run),
        ("start", start::run),
        ("failover-seek", failover_seek::run),
    ];
    run_figures("hive-relay-bench", &args, &o.command, o.markdown.as_deref(), &o, &figures);
}

/// The command line.
pub struct Options {
    command: String,
    /// Cameras relayed at once.
    pub streams: usize,
    /// Seconds measured.
    pub seconds: u64,
    /// Clients timed.
    pub trials: usize,
    markdown: Option<std::path::PathBuf>,
}

impl Options {
    /// `None` for `help`.
    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let mut o =
            Options { command: "all".into(), streams: 64, seconds: 20, trials: 50, markdown: None };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut value = |name: &str| positive_arg(name, &mut rest);
            match arg.as_str() {
                "help" | "--help" | "-h" => return Ok(None),
                "all" | "compare" | "capacity" | "fast" | "start" | "failover-seek" => {
                    o.command = arg.clone()
                }
                "--streams" => o.streams = value(arg)? as usize,
                "--seconds" => o.seconds = value(arg)?,
                "--trials" => o.trials = value(arg)? as usize,
                "--markdown" => {
                    o.markdown = Some(rest.next().ok_or("--markdown needs a file")?.into())
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(o))
    }
}
