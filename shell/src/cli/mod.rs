//! The `hive` command: `serve` and `demo` run servers; the others talk to a running server's
//! API, human-readable by default and JSON with `--json`.

pub mod client;
mod commands;
pub mod demo;
mod error;
pub mod known_servers;
pub mod serve;
pub mod table;
pub mod trust;

pub use error::CliError;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Hive: servers that join into one video management system.
#[derive(Parser, Debug)]
#[command(name = "hive", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Where the API is and who is asking.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// API of any server of the system (http:// for a server started with --http-plain).
    #[arg(long, env = "HIVE_URL", default_value = "https://127.0.0.1:7080", global = true)]
    pub url: String,
    /// Trust HTTPS servers whose certificate this CA (PEM) issued, instead of pinning.
    #[arg(long, env = "HIVE_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Where server certificates are pinned on first use
    /// (default $HOME/.config/hive/known_servers).
    #[arg(long, env = "HIVE_KNOWN_SERVERS", global = true)]
    pub known_servers: Option<PathBuf>,
    /// User name.
    #[arg(long, env = "HIVE_USER", default_value = "admin", global = true)]
    pub user: String,
    /// Password (prefer the HIVE_PASSWORD environment variable).
    #[arg(long, env = "HIVE_PASSWORD", hide_env_values = true, default_value = "", global = true)]
    pub password: String,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a server.
    Serve(Box<serve::ServeArgs>),
    /// Run three servers on loopback as one system with cameras, and show it.
    Demo(demo::DemoArgs),
    /// Serve N RTSP test cameras (rtsp://BIND:PORT/cam1..camN) from a looping H.264 clip.
    Testcamera(TestcameraArgs),
    /// Show the system: servers, licenses, other systems.
    Status(Conn),
    /// Merge this system with another one, proving its administrator's password.
    Join {
        /// The other system's server: https://HOST:PORT (API) or IP:PORT (peer port).
        target: String,
        /// The other system's administrator.
        #[arg(long)]
        remote_user: String,
        /// Their password (or HIVE_REMOTE_PASSWORD).
        #[arg(long, env = "HIVE_REMOTE_PASSWORD", hide_env_values = true)]
        remote_password: String,
        /// Whose name, settings and administrator win.
        #[arg(long, value_parser = ["local", "remote"], default_value = "local")]
        keep: String,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Take the server at --url out of its system into a new one.
    Split {
        /// Name of the new system.
        #[arg(long)]
        name: String,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Rename the whole system (with another system's name and secret: merge all into it).
    RenameSystem {
        /// New name.
        name: String,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Print a new random system secret as a join token, for the first server of a system.
    Secret,
    /// Replace the system secret with a new random one and print its join token (owner).
    ReplaceSecret {
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Replace the link key of the server at --url and pin the new one system-wide (owner).
    ReplaceLinkKey {
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// License keys.
    License {
        /// What to do with them.
        #[command(subcommand)]
        cmd: LicenseCmd,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Cameras.
    Camera {
        /// What to do with them.
        #[command(subcommand)]
        cmd: CameraCmd,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Servers' failover settings.
    Server {
        /// What to do with them.
        #[command(subcommand)]
        cmd: ServerCmd,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// User accounts.
    User {
        /// What to do with them.
        #[command(subcommand)]
        cmd: UserCmd,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Save a consistent backup of the server at --url (holds the system secret: keep it safe).
    Backup {
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        /// Server and credentials.
        #[command(flatten)]
        conn: Conn,
    },
    /// Restore a backup into an empty data directory, then start `hive serve` on it.
    Restore {
        /// Backup file.
        file: PathBuf,
        /// Empty data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// `hive license ...`
#[derive(Subcommand, Debug)]
pub enum LicenseCmd {
    /// Add a key (HIVE1-...).
    Add {
        /// The key.
        key: String,
    },
    /// List keys and the total.
    List,
}

/// `hive camera ...`
#[derive(Subcommand, Debug)]
pub enum CameraCmd {
    /// Add a camera.
    Add {
        /// Name.
        #[arg(long)]
        name: String,
        /// Stream URL (rtsp://...).
        #[arg(long = "stream")]
        stream: String,
        /// The camera's secondary (low-resolution) stream URL, recorded too.
        #[arg(long = "secondary-stream")]
        secondary_stream: Option<String>,
        /// Server id to record it (default: the server at --url).
        #[arg(long)]
        server: Option<String>,
    },
    /// List cameras.
    List,
    /// Remove a camera.
    Rm {
        /// Camera id.
        id: String,
    },
}

/// `on` or `off`, as `--failover` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `hive server ...`
#[derive(Subcommand, Debug)]
pub enum ServerCmd {
    /// List servers with their failover settings and the cameras they record.
    List,
    /// Change a server's failover settings.
    Set {
        /// Server id.
        id: String,
        /// Whether it takes cameras of failed servers.
        #[arg(long)]
        failover: Option<OnOff>,
        /// Most cameras it records.
        #[arg(long)]
        max_cameras: Option<u32>,
        /// Preference as the primary time server (higher first).
        #[arg(long)]
        time_priority: Option<u32>,
    },
}

/// `hive user ...`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user.
    Add {
        /// Login name.
        name: String,
        /// Role: owner, admin or viewer.
        #[arg(long, value_parser = ["owner", "admin", "viewer"], default_value = "viewer")]
        role: String,
        /// Their password (or HIVE_NEW_PASSWORD).
        #[arg(long = "new-password", env = "HIVE_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// List users.
    List,
}

/// Options of `hive testcamera`.
#[derive(Args, Debug)]
pub struct TestcameraArgs {
    /// How many cameras.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// RTSP port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8554)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// An Annex B clip (H.264, or H.265 with --h265) to loop as the primary stream instead of
    /// the bundled one.
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Send the primary stream in H.265, as most current cameras do.
    #[arg(long)]
    pub h265: bool,
    /// Frames per second.
    #[arg(long, default_value_t = 25.0)]
    pub fps: f64,
    /// Require these credentials (`user:password`) from clients, with Basic authentication.
    #[arg(long)]
    pub credentials: Option<String>,
    /// Ask for the credentials with Digest authentication instead, as most cameras do.
    #[arg(long, requires = "credentials")]
    pub digest: bool,
}

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Cmd::Serve(args) => serve::run(*args).await,
        Cmd::Demo(args) => demo::run(args).await,
        Cmd::Testcamera(a) => {
            use hive_media::frame::Codec;
            crate::video::testcamera::run(crate::video::testcamera::TestCameraSpec {
                count: a.count,
                bind: std::net::SocketAddr::new(a.bind, a.port),
                clip: a.clip,
                codec: if a.h265 { Codec::H265 } else { Codec::H264 },
                fps: a.fps,
                credentials: a.credentials,
                digest: a.digest,
            })
            .await
            .map_err(CliError::from)
        }
        other => commands::run(other).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
