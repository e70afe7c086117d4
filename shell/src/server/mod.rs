//! One running server: the driver over real sockets and disk, and its HTTP API.

pub mod backup;
pub mod handle;
pub mod http;
pub mod tls;

use crate::api::{self, rules, AppState, AuthState, PasswordPool};
use crate::config::{ApiTls, ServeSettings};
use crate::driver::{self, DriverConfig, DriverError, SystemClock, TokioNet, TrafficStats};
use crate::storage::{StdFs, StorageError};
use handle::NodeHandle;
use hive_core::auth::{KdfParams, Secret};
use hive_core::ids::UserId;
use hive_core::node::{Command, Config, Timing};
use hive_core::resources::{Key, MediaService, Role, UserRecord, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a server could not start or stopped.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The data directory could not be opened.
    #[error("data directory: {0}")]
    Storage(#[from] StorageError),
    /// The archive could not be opened.
    #[error("archive: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
    /// The archive scan did not finish (it panicked).
    #[error("archive scan: {0}")]
    ArchiveScan(#[source] tokio::task::JoinError),
    /// A port is taken or an address is not local.
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The node loop stopped with an error.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The first owner could not be created.
    #[error("cannot create the first owner: {0}")]
    InitOwner(String),
    /// The first owner's name or password breaks the API's rules.
    #[error("--init-owner: {0}")]
    InitOwnerInvalid(#[from] rules::Invalid),
    /// The password workers could not be started.
    #[error("cannot start the password workers: {0}")]
    PasswordWorkers(std::io::Error),
    /// The restore marker could not be removed after the new epoch was made durable.
    #[error("cannot remove the restore marker {path}: {source}")]
    Marker {
        /// The marker file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP client for merges by URL could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The API's certificate could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The test aid `HIVE_TEST_WALL_SKEW_MS` has a bad value.
    #[error(transparent)]
    WallSkew(#[from] driver::WallSkewError),
    /// The node loop ended unexpectedly.
    #[error("the server's node loop ended unexpectedly")]
    Ended,
}

/// A started server.
pub struct Server {
    /// Where the HTTP API answers.
    pub http_addr: SocketAddr,
    /// Commands and reads.
    pub handle: NodeHandle,
    /// Link and beacon counters.
    pub stats: Arc<TrafficStats>,
    /// Where the RTSP server answers.
    pub rtsp_addr: SocketAddr,
    /// Recording, live feeds and the archive.
    pub video: Arc<crate::video::plane::VideoPlane>,
    driver: JoinHandle<Result<(), DriverError>>,
    rtsp: JoinHandle<()>,
    http: JoinHandle<()>,
    http_stop: watch::Sender<bool>,
}

/// Name of the marker a restore leaves in a data directory: start a new write epoch.
pub const RESTORED_MARKER: &str = "RESTORED";

/// Starts a server; returns once it listens and its replica is loaded.
pub async fn start(settings: ServeSettings) -> Result<Server, ServeError> {
    let clock = SystemClock::from_env()?;
    if clock.wall_skew_ms() != 0 {
        tracing::warn!(
            skew_ms = clock.wall_skew_ms(),
            "the wall clock is skewed for tests ({})",
            driver::WALL_SKEW_ENV
        );
    }
    let first_start =
        std::fs::read_dir(&settings.data_dir).map_or(true, |mut entries| entries.next().is_none());
    let init_owner = match &settings.init_owner {
        Some((name, password)) => {
            rules::check_password(password)?;
            Some((rules::user_name(name)?, password.clone()))
        }
        None => None,
    };
    let fs = StdFs::open(&settings.data_dir).await?;
    let archive_dir = settings.data_dir.join("archive");
    // Scanning every segment reads the whole archive: not on the runtime's threads.
    let archive_config = settings.archive;
    let archive = tokio::task::spawn_blocking(move || {
        crate::archive::Archive::open(&archive_dir, archive_config)
    })
    .await
    .map_err(ServeError::ArchiveScan)??;
    let frame_clock = crate::video::clock::FrameClock::new(clock.wall_skew_ms());
    let rtsp_listener = tokio::net::TcpListener::bind(settings.rtsp)
        .await
        .map_err(|source| ServeError::Bind { what: "RTSP", addr: settings.rtsp, source })?;
    let rtsp_addr = rtsp_listener.local_addr().map_err(|source| ServeError::Bind {
        what: "RTSP",
        addr: settings.rtsp,
        source,
    })?;
    let (recording_tx, recording_rx) = tokio::sync::mpsc::unbounded_channel();
    let api_tls = api_tls_config(&settings)?;
    let marker = settings.data_dir.join(RESTORED_MARKER);
    let restored_from_backup = marker.exists();
    let http_listener = tokio::net::TcpListener::bind(settings.http)
        .await
        .map_err(|source| ServeError::Bind { what: "HTTP API", addr: settings.http, source })?;
    let http_addr = http_listener.local_addr().map_err(|source| ServeError::Bind {
        what: "HTTP API",
        addr: settings.http,
        source,
    })?;
    let config = Config {
        server_name: settings.server_name.clone(),
        system_name: settings.system_name.clone(),
        secret: settings.secret.clone().unwrap_or_else(|| Secret::from_bytes(rand::random())),
        link_key: driver::channel::Entropy::Os.generate_keypair(),
        entropy: rand::random(),
        hardware_id: settings.hardware_id.clone(),
        listen: settings.advertise.clone(),
        manual_peers: settings.peers.clone(),
        vendor_key: settings.vendor_key,
        kdf: KdfParams::STANDARD,
        failover_enabled: settings.failover,
        max_cameras: settings.max_cameras,
        media: Some(MediaService { port: rtsp_addr.port(), tls: !settings.rtsp_plain }),
        timing: Timing {
            clock_offset_ms_max: settings.clock_offset_ms_max,
            hold_ms: settings.failover_ms.hold,
            failover_min_uptime_ms: settings.failover_ms.min_uptime,
            failover_stability_ms: settings.failover_ms.stability,
            ..Timing::default()
        },
    };
    let mut dc = DriverConfig::new(settings.listen);
    dc.discovery_group = settings.discovery_group;
    dc.discovery_interface = settings.discovery_interface;
    dc.new_epoch = restored_from_backup;
    dc.ntp = settings.ntp.clone();
    dc.recording = Some(recording_tx);
    let (media_tx, media_rx) = tokio::sync::mpsc::channel(driver::MEDIA_CHANNELS_QUEUED_MAX);
    dc.media = Some(media_tx);
    let stats = Arc::clone(&dc.stats);
    let (handle, requests) = NodeHandle::new();
    let seed: u64 = rand::random();
    let driver = tokio::spawn(async move {
        driver::run::<TokioNet, _, _, _>(dc, config, fs, clock, seed, requests, &mut ()).await
    });
    // The loop answers reads only once it listens and has persisted what loading produced.
    let identity = match handle.read(|n| n.identity().clone()).await {
        Ok(i) => i,
        Err(_) => {
            return Err(match driver.await {
                Ok(Err(e)) => ServeError::Driver(e),
                _ => ServeError::Ended,
            })
        }
    };
    if restored_from_backup {
        std::fs::remove_file(&marker)
            .map_err(|source| ServeError::Marker { path: marker.display().to_string(), source })?;
        tracing::warn!(
            "started from a restored backup: new write epoch, the rest comes from peers"
        );
    }
    tracing::info!(
        server = %identity.server,
        system = %identity.system,
        name = %identity.name,
        peer = %settings.listen,
        http = %http_addr,
        link_key = %identity.link_key.as_ref().map(|k| k.public.fingerprint()).unwrap_or_default(),
        "server started"
    );
    if first_start && settings.secret.is_none() {
        // Shown once: the only copy outside this server's data directory and backups.
        println!(
            "This server made a new system secret. To join another server to this system, \
             start it with this join token (HIVE_SECRET or --secret); it is not shown again:\n\n    {}\n",
            identity.secret.token()
        );
    }
    let passwords =
        Arc::new(PasswordPool::start(KdfParams::STANDARD).map_err(ServeError::PasswordWorkers)?);
    if let Some((name, password)) = &init_owner {
        create_init_owner(&handle, &passwords, name, password).await?;
    }
    // Merge by URL asks another server's /api/hello for its public peer address only,
    // so it accepts that server's self-signed certificate (see `api::admin`).
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .danger_accept_invalid_certs(true)
        .build()?;
    let auth = Arc::new(AuthState::new());
    let streams = api::Streams::default();
    let make_state = |video| AppState {
        streams: streams.clone(),
        handle: handle.clone(),
        stats: Arc::clone(&stats),
        auth: auth.clone(),
        passwords: passwords.clone(),
        client: client.clone(),
        video,
    };
    let video = crate::video::plane::VideoPlane::new(archive, frame_clock.clone(), |weak| {
        Some(make_state(weak))
    });
    let state = make_state(Arc::downgrade(&video));
    tokio::spawn(video.clone().run(recording_rx));
    tokio::spawn(follow_system_time(handle.clone(), frame_clock));
    let rtsp_tls = rtsp_tls_config(&settings, api_tls.as_ref())?;
    let media = crate::video::relay::HiveMedia::new(video.clone(), handle.clone(), identity.server);
    let _ = video.hive.set(Arc::downgrade(&media));
    tokio::spawn(crate::video::relay::accept_channels(media_rx, media.clone()));
    let rtsp = tokio::spawn(crate::rtsp::serve(rtsp_listener, media, rtsp_tls));
    tracing::info!(rtsp = %rtsp_addr, tls = !settings.rtsp_plain, "video served over RTSP");
    let router = api::router(state);
    let (http_stop, stop_rx) = watch::channel(false);
    let acceptor = api_tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let http = tokio::spawn(http::serve(http_listener, acceptor, router, stop_rx));
    Ok(Server { http_addr, rtsp_addr, video, handle, stats, driver, rtsp, http, http_stop })
}

/// Keeps the frame clock on the hive's system time.
async fn follow_system_time(handle: NodeHandle, clock: crate::video::clock::FrameClock) {
    while let Ok(time) = handle.time().await {
        clock.set_system_ms(time.system_ms);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// RTSP's TLS: the API's identity, or a self-signed one when the API is plain; `None` when
/// the operator chose plain RTSP (logged as a warning).
fn rtsp_tls_config(
    settings: &ServeSettings,
    api_tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ServeError> {
    if settings.rtsp_plain {
        tracing::warn!(rtsp = %settings.rtsp, "RTSP is served in clear: passwords and video are readable on the network");
        return Ok(None);
    }
    let config = match api_tls {
        Some(config) => config.clone(),
        None => tls::ApiIdentity::self_signed(
            &settings.data_dir,
            &tls::certificate_names(settings.http, &settings.advertise),
        )?
        .server_config()?,
    };
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// The API's TLS configuration, `None` for plain HTTP (logged as a warning).
fn api_tls_config(
    settings: &ServeSettings,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServeError> {
    let identity = match &settings.api_tls {
        ApiTls::Plain => {
            tracing::warn!(
                http = %settings.http,
                "the API serves plain HTTP: passwords and data cross the network in clear"
            );
            return Ok(None);
        }
        ApiTls::Supplied { cert, key } => tls::ApiIdentity::supplied(cert, key)?,
        ApiTls::SelfSigned => tls::ApiIdentity::self_signed(
            &settings.data_dir,
            &tls::certificate_names(settings.http, &settings.advertise),
        )?,
    };
    // Clients compare this with what they pinned.
    tracing::info!(sha256 = %identity.fingerprint(), "the API serves HTTPS");
    Ok(Some(identity.server_config()?))
}

/// Creates the owner named in the settings unless a user of that name exists.
async fn create_init_owner(
    handle: &NodeHandle,
    passwords: &PasswordPool,
    name: &str,
    password: &str,
) -> Result<(), ServeError> {
    let lookup = name.to_owned();
    let (exists, system) = handle
        .read(move |n| (n.user(&lookup).is_some(), n.identity().system))
        .await
        .map_err(|e| ServeError::InitOwner(e.to_string()))?;
    if exists {
        return Ok(());
    }
    let verifier =
        passwords.new_verifier(password).await.map_err(|e| ServeError::InitOwner(e.to_string()))?;
    let login = passwords
        .login_record(name, password)
        .await
        .map_err(|e| ServeError::InitOwner(e.to_string()))?;
    let record = UserRecord {
        name: name.to_owned(),
        role: Role::Owner,
        password: verifier,
        home_system: system,
        login,
    };
    handle
        .command(Command::Put {
            key: Key::User(UserId(rand::random())),
            value: Value::User(record),
        })
        .await
        .map_err(|e| ServeError::InitOwner(e.to_string()))?;
    tracing::info!(user = ?name, "created the first owner");
    Ok(())
}

impl Server {
    /// Stops the API and the node loop; everything acknowledged is already on disk.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.http_stop.send(true);
        let _ = self.http.await;
        self.rtsp.abort();
        self.video.stop_all();
        self.handle.stop();
        match self.driver.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ServeError::Ended),
        }
    }

    /// Waits until the node loop ends by itself (a disk failure), returning why.
    pub async fn stopped(&mut self) -> ServeError {
        match (&mut self.driver).await {
            Ok(Err(e)) => ServeError::Driver(e),
            _ => ServeError::Ended,
        }
    }
}
