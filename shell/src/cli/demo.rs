//! `hive demo`: three servers on loopback, one system name and secret, a temporary data
//! directory, found by multicast discovery, with licenses and cameras; prints the system and
//! runs until Ctrl-C.

use super::commands::system_text;
use super::error::CliError;
use crate::config::{ApiTls, FailoverMs, ServeSettings, DISCOVERY_GROUP};
use crate::server::{self, Server};
use crate::video::status::CameraState;
use clap::Args;
use hive_core::ids::{CameraId, HardwareId, PeerAddr, SystemName};
use hive_core::licenses::{LicenseId, LicenseIssuer};
use hive_core::node::Command;
use hive_core::resources::{CameraRecord, FailoverPriority, Key, Value};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Seed of the demo's own license vendor: its keys are valid only in demo systems.
const DEMO_VENDOR_SEED: [u8; 32] = *b"hive-demo-vendor-not-for-sale!!!";
/// The demo's owner login.
pub const DEMO_USER: &str = "admin";
/// The demo's owner password (the demo listens on loopback only).
pub const DEMO_PASSWORD: &str = "hive-demo";

/// Options of `hive demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of servers.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// Cameras per server.
    #[arg(long, default_value_t = 2)]
    cameras: usize,
    /// Exit after showing the system instead of waiting for Ctrl-C.
    #[arg(long)]
    once: bool,
}

/// The hardware id the demo gives its server number `i` (from 1), and binds its license to.
fn demo_hardware_id(i: usize) -> HardwareId {
    HardwareId(format!("demo-hw-{i}"))
}

fn free_port() -> Result<u16, CliError> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::Demo(format!("no free port on loopback: {e}")))
}

/// Runs the demo until Ctrl-C (or once, with `--once`).
pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    super::serve::init_logging_quiet();
    let dir = tempfile::Builder::new()
        .prefix("hive-demo-")
        .tempdir()
        .map_err(|e| CliError::Demo(format!("no temporary directory: {e}")))?;
    let issuer = LicenseIssuer::from_seed(DEMO_VENDOR_SEED);
    // A fresh secret per run: two demos on one machine stay two systems.
    let secret = Some(hive_core::auth::Secret::from_bytes(rand::random()));
    println!("Starting {} servers on loopback in {} ...", args.servers, dir.path().display());
    let mut servers: Vec<Server> = Vec::new();
    let mut all_settings: Vec<ServeSettings> = Vec::new();
    for i in 1..=args.servers {
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let settings = ServeSettings {
            data_dir: dir.path().join(format!("server-{i}")),
            system_name: SystemName::new("Hive Demo").expect("a valid name"),
            secret: secret.clone(),
            server_name: format!("demo-{i}"),
            listen: peer,
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise: vec![PeerAddr(peer.to_string())],
            discovery_group: DISCOVERY_GROUP,
            discovery_interface: Ipv4Addr::LOCALHOST,
            peers: Vec::new(),
            hardware_id: demo_hardware_id(i),
            failover: true,
            max_cameras: 16,
            clock_offset_ms_max: crate::config::CLOCK_OFFSET_MAX_HOURS * 3_600_000,
            vendor_key: issuer.verifying_key(),
            init_owner: Some((DEMO_USER.into(), DEMO_PASSWORD.into())),
            // Loopback only, which browsers treat as a secure context.
            api_tls: ApiTls::Plain,
            ntp: None,
            failover_ms: DEMO_FAILOVER_MS,
            rtsp: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            // Loopback only: players such as ffplay and VLC speak plain RTSP.
            rtsp_plain: true,
            archive: crate::archive::ArchiveConfig {
                segment_bytes: 8 << 20,
                max_bytes: 1 << 30,
                max_days: 0,
            },
        };
        servers.push(server::start(settings.clone()).await?);
        all_settings.push(settings);
    }
    let merged = wait_merged(&servers, Duration::from_secs(20)).await;
    let camera_port = start_test_cameras(servers.len() * args.cameras).await?;
    println!(
        "Test cameras: rtsp://127.0.0.1:{camera_port}/cam1 .. cam{}",
        servers.len() * args.cameras
    );
    add_licenses_and_cameras(&servers, &issuer, args.cameras, camera_port).await?;
    // Let the additions reach every server before showing one of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let system = show(&servers[0]).await?;
    print!("\n{}", system_text(&system));
    match merged {
        Some(t) => println!("\nAll {} servers formed one system in {} ms.", servers.len(), t.as_millis()),
        None => println!("\nWARNING: the servers did not form one system within 20 s (is multicast on loopback blocked?)."),
    }
    println!(
        "\nOpen the web UI of any server in a browser (user {DEMO_USER}, password {DEMO_PASSWORD}):"
    );
    for s in &servers {
        println!("  http://{}/", s.http_addr);
    }
    println!("\nAPI of each server (same user; its OpenAPI document at /api/openapi.json):");
    for s in &servers {
        println!("  http://{}/api/system", s.http_addr);
    }
    println!(
        "\nTry:  HIVE_URL=http://{} HIVE_PASSWORD={DEMO_PASSWORD} cargo run --release -p hive -- camera list",
        servers[servers.len() - 1].http_addr
    );
    // Show where to watch once every camera records (or after 15 s, with what it is doing).
    let cameras = servers.len() * args.cameras;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut watch = watch_urls(&servers).await;
    while (watch.len() < cameras || watch.iter().any(|(_, _, recording)| !recording))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        watch = watch_urls(&servers).await;
    }
    println!("\nWatch each camera, live, from the server recording it:");
    for (line, _, _) in &watch {
        println!("{line}");
    }
    println!("\nEvery camera through each other server too (it relays from the recorder):");
    for (i, s) in servers.iter().enumerate() {
        let here = format!("@{}/", s.rtsp_addr);
        for (line, url, _) in watch.iter().filter(|(_, url, _)| !url.contains(&here)) {
            let name = line.trim_start().split(':').next().unwrap_or_default();
            let id = url.rsplit('/').next().unwrap_or_default();
            println!(
                "    {name} via server {}: rtsp://{DEMO_USER}:{DEMO_PASSWORD}@{}/{id}",
                i + 1,
                s.rtsp_addr
            );
        }
    }
    if let Some((_, url, _)) = watch.first() {
        let minute_ago_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis().saturating_sub(60_000));
        println!(
            "\nLive:     ffplay -rtsp_transport tcp '{url}'\n\
             Archive:  ffplay -rtsp_transport tcp '{url}?pos={minute_ago_ms}'   \
             (pos: ms since the epoch or ISO 8601; ?stream=1 for the secondary stream)"
        );
    }
    let mut servers: Vec<Option<Server>> = servers.into_iter().map(Some).collect();
    let recorders = recorders(&servers).await;
    println!("\nCameras and the servers recording them:");
    print!("{}", recorders_text(&recorders));
    if !args.once {
        println!(
            "\nTo watch a failover, type `stop 1` and Enter: server demo-1 stops and, {} s after \
             it was last heard, its cameras are recorded by the others; `start 1` brings it back, \
             and {} s after that they return to it. (All servers run in this process, pid {}.)",
            DEMO_FAILOVER_MS.hold / 1000,
            DEMO_FAILOVER_MS.stability / 1000,
            std::process::id()
        );
        println!("\nPress Ctrl-C to stop.");
        interact(&mut servers, &all_settings, recorders).await?;
    }
    println!("Stopping ...");
    for s in servers.into_iter().flatten() {
        s.stop().await?;
    }
    println!("Stopped; removed {}.", dir.path().display());
    Ok(())
}

/// Failover timings of the demo: the defaults, with a shorter uptime and stability so that a
/// failover and the return can be watched within a minute.
const DEMO_FAILOVER_MS: FailoverMs =
    FailoverMs { hold: 3_000, min_uptime: 5_000, stability: 10_000 };

/// Each camera's name and the name of the server recording it (`None`: nobody), as the first
/// running server sees it.
async fn recorders(servers: &[Option<Server>]) -> Vec<(String, Option<String>)> {
    let Some(server) = servers.iter().flatten().next() else { return Vec::new() };
    let read = server.handle.read(|n| {
        n.cameras()
            .map(|(id, c)| {
                let recorder = n.recorder_of(id).map(|s| {
                    n.servers()
                        .find(|(i, _)| *i == s)
                        .map_or(s.to_string(), |(_, r)| r.name.clone())
                });
                (c.name.clone(), recorder)
            })
            .collect::<Vec<_>>()
    });
    let mut cams = read.await.unwrap_or_default();
    cams.sort();
    cams
}

fn recorders_text(recorders: &[(String, Option<String>)]) -> String {
    recorders
        .iter()
        .map(|(camera, server)| {
            format!("  {camera}: {}\n", server.as_deref().unwrap_or("not recorded"))
        })
        .collect()
}

/// Reads `stop N` / `start N` from stdin until Ctrl-C, printing each camera whose recording
/// server changes.
async fn interact(
    servers: &mut [Option<Server>],
    settings: &[ServeSettings],
    mut shown: Vec<(String, Option<String>)>,
) -> Result<(), CliError> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => command(servers, settings, line.trim()).await?,
                _ => stdin_open = false,
            },
            _ = tick.tick() => {
                let now = recorders(servers).await;
                for (camera, server) in &now {
                    if shown.iter().all(|(c, s)| c != camera || s != server) {
                        let server = server.as_deref().unwrap_or("nobody");
                        println!("{camera} is now recorded by {server}");
                    }
                }
                if !now.is_empty() {
                    shown = now;
                }
            }
        }
    }
}

/// Carries out one line typed at the demo.
async fn command(
    servers: &mut [Option<Server>],
    settings: &[ServeSettings],
    line: &str,
) -> Result<(), CliError> {
    let parsed = line.split_once(' ').and_then(|(verb, n)| {
        let i = n.trim().parse::<usize>().ok().filter(|i| (1..=servers.len()).contains(i))?;
        Some((verb, i - 1))
    });
    match parsed {
        Some(("stop", i)) => match servers[i].take() {
            Some(s) => {
                s.stop().await?;
                println!("Stopped demo-{}.", i + 1);
            }
            None => println!("demo-{} is not running.", i + 1),
        },
        Some(("start", i)) if servers[i].is_none() => {
            servers[i] = Some(server::start(settings[i].clone()).await?);
            println!("Started demo-{}.", i + 1);
        }
        Some(("start", i)) => println!("demo-{} is running.", i + 1),
        _ => println!("Type `stop N` or `start N`, N from 1 to {}.", servers.len()),
    }
    Ok(())
}

/// Waits until every server sees all the others online in one system.
async fn wait_merged(servers: &[Server], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut systems = std::collections::BTreeSet::new();
        let mut all_online = true;
        for s in servers {
            match s.handle.read(|n| (n.identity().system, n.online_servers().len())).await {
                Ok((system, online)) => {
                    systems.insert(system);
                    all_online &= online == servers.len();
                }
                Err(_) => return None,
            }
        }
        if systems.len() == 1 && all_online {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Serves `count` test cameras on a free loopback port; returns the port.
async fn start_test_cameras(count: usize) -> Result<u16, CliError> {
    use crate::video::testcamera::{Clip, TestCameras};
    let main = Clip::bundled(hive_media::frame::Codec::H264);
    let cameras =
        std::sync::Arc::new(TestCameras::new(count, main, Clip::bundled_sub(), None, false));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| CliError::Demo(format!("no port for the test cameras: {e}")))?;
    let port = listener.local_addr().map_err(|e| CliError::Demo(e.to_string()))?.port();
    tokio::spawn(cameras.clone().run(25.0));
    tokio::spawn(crate::rtsp::serve(listener, cameras, None));
    Ok(port)
}

/// Per camera recorded now, sorted: a line with its name, URL and status, the RTSP URL on the
/// server recording it, and whether it records.
async fn watch_urls(servers: &[Server]) -> Vec<(String, String, bool)> {
    let mut lines = Vec::new();
    for s in servers {
        let video = s.video.clone();
        let rtsp = s.rtsp_addr;
        let read = s.handle.read(move |n| {
            let me = n.identity().server;
            n.cameras()
                .filter(|(id, _)| n.recorder_of(*id) == Some(me))
                .map(|(id, c)| {
                    let status = video.board.get(id);
                    let recording =
                        status.as_ref().is_some_and(|st| st.state == CameraState::Recording);
                    let state = status.map_or("starting".to_owned(), |st| st.state.to_string());
                    let url = format!("rtsp://{DEMO_USER}:{DEMO_PASSWORD}@{rtsp}/{id}");
                    (format!("  {}: {url}  ({state})", c.name), url, recording)
                })
                .collect::<Vec<_>>()
        });
        lines.extend(read.await.unwrap_or_default());
    }
    lines.sort();
    lines
}

async fn add_licenses_and_cameras(
    servers: &[Server],
    issuer: &LicenseIssuer,
    per_server: usize,
    camera_port: u16,
) -> Result<(), CliError> {
    use crate::driver::Clock;
    let channels = [4, 10, 2];
    let now_ms = crate::driver::SystemClock::new().now().wall.0;
    for (i, s) in servers.iter().enumerate() {
        let me = s
            .handle
            .read(|n| n.identity().server)
            .await
            .map_err(|e| CliError::Demo(e.to_string()))?;
        let hardware = demo_hardware_id(i + 1);
        let key =
            issuer.issue(LicenseId(rand::random()), channels[i % channels.len()], hardware, 0);
        s.handle
            .command(Command::Put { key: Key::License(key.id), value: Value::License(key) })
            .await
            .map_err(|e| CliError::Demo(e.to_string()))?;
        for c in 0..per_server {
            let record = CameraRecord {
                name: format!("Demo camera {}.{}", i + 1, c + 1),
                url: format!("rtsp://127.0.0.1:{camera_port}/cam{}", i * per_server + c + 1),
                secondary_url: Some(format!(
                    "rtsp://127.0.0.1:{camera_port}/cam{}?stream=1",
                    i * per_server + c + 1
                )),
                preferred: me,
                failover_priority: FailoverPriority::Medium,
                recording: true,
                created_ms: now_ms,
            };
            s.handle
                .command(Command::Put {
                    key: Key::Camera(CameraId(rand::random())),
                    value: Value::Camera(record),
                })
                .await
                .map_err(|e| CliError::Demo(e.to_string()))?;
        }
    }
    Ok(())
}

async fn show(server: &Server) -> Result<serde_json::Value, CliError> {
    // The demo serves plain HTTP on loopback: no certificate to trust.
    let client = super::client::Client::new(
        &format!("http://{}", server.http_addr),
        DEMO_USER,
        DEMO_PASSWORD,
        &super::client::Trust::Pin(None),
    )?;
    Ok(client.get("/api/system").await?)
}
