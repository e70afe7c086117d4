//! `hive serve`: flags over a TOML file; runs until Ctrl-C or SIGTERM.

use super::error::CliError;
use crate::config::{FileConfig, Overrides, ServeSettings};
use clap::Args;
use std::path::PathBuf;

/// Flags of `hive serve`; each overrides the config file's field of the same name.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (replica, log, snapshots).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// System name used at first start.
    #[arg(long)]
    system_name: Option<String>,
    /// System secret used at first start (prefer HIVE_SECRET).
    #[arg(long, env = "HIVE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// This server's name.
    #[arg(long)]
    server_name: Option<String>,
    /// Peer link address, IP:PORT (default 0.0.0.0:7001).
    #[arg(long)]
    listen: Option<String>,
    /// API address, IP:PORT (default 0.0.0.0:7080), HTTPS unless --http-plain.
    #[arg(long)]
    http: Option<String>,
    /// Address peers should dial (repeatable; default the listen address).
    #[arg(long)]
    advertise: Vec<String>,
    /// Discovery multicast group, IP:PORT (default 239.255.11.11:5007).
    #[arg(long)]
    discovery_group: Option<String>,
    /// Interface address to discover on (default all).
    #[arg(long)]
    discovery_interface: Option<String>,
    /// A server to join by address, IP:PORT of its peer port (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Hardware id override (tests; default from machine id and MACs).
    #[arg(long)]
    hardware_id: Option<String>,
    /// Take cameras of failed servers.
    #[arg(long)]
    failover: Option<bool>,
    /// Most cameras this server records.
    #[arg(long)]
    max_cameras: Option<u32>,
    /// How far ahead of this server's clock a peer's timestamps may be, in hours (24).
    #[arg(long)]
    clock_offset_max_hours: Option<u64>,
    /// License vendor public key, hex (tests).
    #[arg(long)]
    license_vendor_key: Option<String>,
    /// First owner, NAME:PASSWORD, created when no user has that name (or HIVE_INIT_OWNER).
    #[arg(long, env = "HIVE_INIT_OWNER", hide_env_values = true)]
    init_owner: Option<String>,
    /// The API's certificate chain, PEM (default: a self-signed one made at first start).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve the API as plain HTTP instead of HTTPS (passwords cross the network in clear).
    #[arg(long)]
    http_plain: bool,
    /// NTP server, HOST:PORT, this server takes its time from when it is the primary.
    #[arg(long)]
    ntp: Option<String>,
    /// Silence after which a server's cameras move to others, ms (3000).
    #[arg(long)]
    failover_hold_ms: Option<u64>,
    /// Uptime a server needs before it takes cameras of failed servers, ms (10000).
    #[arg(long)]
    failover_min_uptime_ms: Option<u64>,
    /// Time a failed server must stay reachable before its cameras return, ms (30000).
    #[arg(long)]
    failover_stability_ms: Option<u64>,
    /// RTSP address of the video server (0.0.0.0:7554).
    #[arg(long)]
    rtsp: Option<String>,
    /// Serve RTSP in clear (rtsp://) instead of rtsps:// (passwords and video readable).
    #[arg(long)]
    rtsp_plain: bool,
    /// Most bytes the archive keeps (64 GiB).
    #[arg(long)]
    archive_max_bytes: Option<u64>,
    /// Most days the archive keeps (0: no limit).
    #[arg(long)]
    archive_max_days: Option<u32>,
}

impl ServeArgs {
    fn overrides(self) -> (Option<PathBuf>, Overrides) {
        let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
        (
            self.config,
            Overrides {
                data_dir: self.data_dir,
                system_name: self.system_name,
                secret: self.secret,
                server_name: self.server_name,
                listen: self.listen,
                http: self.http,
                advertise: non_empty(self.advertise),
                discovery_group: self.discovery_group,
                discovery_interface: self.discovery_interface,
                peers: non_empty(self.peers),
                hardware_id: self.hardware_id,
                failover: self.failover,
                max_cameras: self.max_cameras,
                clock_offset_max_hours: self.clock_offset_max_hours,
                license_vendor_key: self.license_vendor_key,
                init_owner: self.init_owner,
                tls_cert: self.tls_cert,
                tls_key: self.tls_key,
                http_plain: self.http_plain.then_some(true),
                ntp: self.ntp,
                failover_hold_ms: self.failover_hold_ms,
                failover_min_uptime_ms: self.failover_min_uptime_ms,
                failover_stability_ms: self.failover_stability_ms,
                rtsp: self.rtsp,
                rtsp_plain: self.rtsp_plain.then_some(true),
                archive_max_bytes: self.archive_max_bytes,
                archive_max_days: self.archive_max_days,
                archive_segment_bytes: None,
            },
        )
    }
}

/// Logs to stderr; `HIVE_LOG` (or `RUST_LOG`) filters, `info` by default.
pub fn init_logging() {
    let filter = std::env::var("HIVE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a server until Ctrl-C, SIGTERM or a disk failure.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    init_logging();
    let (file, flags) = args.overrides();
    let file_config = match &file {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let settings = ServeSettings::resolve(flags, file_config, file.as_deref())?;
    tracing::info!(settings = ?settings, "starting");
    let mut server = crate::server::start(settings).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::Signal)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        e = server.stopped() => return Err(e.into()),
    }
    tracing::info!("stopping");
    server.stop().await?;
    Ok(())
}

/// Logging for the demo: warnings only, unless `HIVE_LOG` asks for more.
pub fn init_logging_quiet() {
    if std::env::var("HIVE_LOG").is_err() && std::env::var("RUST_LOG").is_err() {
        std::env::set_var("HIVE_LOG", "warn");
    }
    init_logging();
}
