//! A server's video plane: which cameras it records (orders from the core), their live feeds,
//! the archive they go into, and what its RTSP server serves.

use super::clock::FrameClock;
use super::feed::LiveFeed;
use super::playback::Playback;
use super::recorder::{record, FrameSink};
use super::status::{StatusBoard, StreamKey};
use crate::api::AppState;
use crate::archive::{Archive, ArchiveError, StreamWriter, FLUSH_INTERVAL};
use crate::driver::RecordingOrder;
use crate::rtsp::{Access, ArchiveStart, AuthRequest, Flow, Media};
use hive_core::ids::CameraId;
use hive_media::frame::{Codec, Frame};
use hive_media::nal::ParameterSets;
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, watch};

/// Flushes between two runs of retention.
const RETENTION_EVERY_FLUSHES: u64 = 120;

/// The video plane of one server.
pub struct VideoPlane {
    feeds: Mutex<BTreeMap<StreamKey, LiveFeed>>,
    recorders: Mutex<BTreeMap<CameraId, Recording>>,
    /// Statuses of cameras recorded here.
    pub board: StatusBoard,
    /// System time for frames.
    pub clock: FrameClock,
    /// Where frames are stored.
    pub archive: Arc<Archive>,
    /// What serves the whole hive's video from this server (set once at start), for the API's
    /// views that span servers.
    pub hive: std::sync::OnceLock<std::sync::Weak<super::relay::HiveMedia>>,
    /// Users and their passwords, for RTSP's Basic authentication; `None` lets anyone watch
    /// (tests of the plane alone).
    auth: Option<AppState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A camera this server records: what it pulls, and the switch that stops its recorders.
struct Recording {
    urls: (String, Option<String>),
    stop: watch::Sender<bool>,
}

/// Stores frames of one stream in the archive.
struct ArchiveSink {
    writer: StreamWriter,
    /// Why the last append failed: the status while frames wait for a keyframe.
    failed: Mutex<String>,
}

impl FrameSink for ArchiveSink {
    fn store(&self, _camera: CameraId, frame: &Frame) -> Result<(), String> {
        let reason = match self.writer.append(frame) {
            Ok(()) => return Ok(()),
            Err(ArchiveError::AwaitingKeyframe) => return Err(lock(&self.failed).clone()),
            Err(ArchiveError::DiskFull { .. }) => "disk full".to_owned(),
            Err(other) => other.to_string(),
        };
        lock(&self.failed).clone_from(&reason);
        Err(reason)
    }
}

impl VideoPlane {
    /// A plane over `archive`; `auth` makes the API state that checks RTSP users (it may
    /// refer back to the plane weakly). Starts the flusher thread.
    pub fn new(
        archive: Arc<Archive>,
        clock: FrameClock,
        auth: impl FnOnce(std::sync::Weak<VideoPlane>) -> Option<AppState>,
    ) -> Arc<VideoPlane> {
        let plane = Arc::new_cyclic(|weak| VideoPlane {
            feeds: Mutex::default(),
            recorders: Mutex::default(),
            board: StatusBoard::default(),
            clock,
            archive,
            hive: std::sync::OnceLock::new(),
            auth: auth(weak.clone()),
        });
        let weak = Arc::downgrade(&plane);
        std::thread::Builder::new()
            .name("archive-flush".into())
            .spawn(move || {
                let mut ticks = 0u64;
                while let Some(plane) = weak.upgrade() {
                    if let Err(e) = plane.archive.flush() {
                        tracing::error!(error = %e, "archive flush failed");
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(RETENTION_EVERY_FLUSHES) {
                        plane.archive.enforce_retention(plane.clock.now_us());
                    }
                    drop(plane);
                    std::thread::sleep(FLUSH_INTERVAL);
                }
            })
            .expect("a thread can start");
        plane
    }

    fn feed(&self, stream: StreamKey) -> LiveFeed {
        lock(&self.feeds).entry(stream).or_default().clone()
    }

    /// Starts a recorder of one stream, stopped by `stop`.
    fn start_recorder(&self, stream: StreamKey, url: String, stop: watch::Receiver<bool>) {
        tokio::spawn(record(
            stream,
            url,
            self.feed(stream),
            Arc::new(ArchiveSink {
                writer: self.archive.writer(stream.0, stream.1),
                failed: Mutex::default(),
            }),
            self.clock.clone(),
            self.board.clone(),
            stop,
        ));
    }

    /// Carries out one order of the core. A start for a camera recorded already with other
    /// URLs (its record changed) restarts its recorders.
    pub fn order(self: &Arc<Self>, order: RecordingOrder) {
        match order {
            RecordingOrder::Start { camera, url, secondary_url } => {
                let mut recorders = lock(&self.recorders);
                let urls = (url, secondary_url);
                if recorders.get(&camera).is_some_and(|r| r.urls == urls) {
                    return;
                }
                if let Some(old) = recorders.remove(&camera) {
                    let _ = old.stop.send(true);
                }
                let (stop, stopped) = watch::channel(false);
                self.start_recorder((camera, 0), urls.0.clone(), stopped.clone());
                match &urls.1 {
                    Some(secondary) => self.start_recorder((camera, 1), secondary.clone(), stopped),
                    None => {
                        lock(&self.feeds).remove(&(camera, 1));
                        self.board.forget_secondary(camera);
                    }
                }
                recorders.insert(camera, Recording { urls, stop });
            }
            RecordingOrder::Stop { camera } => {
                if let Some(old) = lock(&self.recorders).remove(&camera) {
                    let _ = old.stop.send(true);
                }
                lock(&self.feeds).retain(|(c, _), _| *c != camera);
            }
        }
    }

    /// Stops every recorder and makes the archive durable (the server is stopping).
    pub fn stop_all(&self) {
        for (_, recording) in std::mem::take(&mut *lock(&self.recorders)) {
            let _ = recording.stop.send(true);
        }
        if let Err(e) = self.archive.flush() {
            tracing::error!(error = %e, "archive flush failed at stop");
        }
    }

    /// Carries out orders until the sender goes away.
    pub async fn run(self: Arc<Self>, mut orders: mpsc::UnboundedReceiver<RecordingOrder>) {
        while let Some(order) = orders.recv().await {
            self.order(order);
        }
    }

    /// Whether this server records `camera` now.
    pub fn records(&self, camera: CameraId) -> bool {
        lock(&self.recorders).contains_key(&camera)
    }

    /// Whether this server records this stream of a camera now.
    fn records_stream(&self, (camera, stream): StreamKey) -> bool {
        lock(&self.recorders).get(&camera).is_some_and(|r| stream == 0 || r.urls.1.is_some())
    }

    fn camera_of(target: &Target) -> Option<CameraId> {
        target.camera.parse().ok()
    }
}

impl Media for VideoPlane {
    async fn info(&self, target: &Target) -> Option<StreamInfo> {
        let camera = Self::camera_of(target)?;
        let title = target.camera.clone();
        let live = lock(&self.feeds).get(&(camera, target.stream)).and_then(|f| f.stream_params());
        if let Some((codec, parameter_sets)) = live {
            return Some(StreamInfo { codec, parameter_sets, title });
        }
        // Not live here (yet): describe it from the archive's keyframe nearest the position.
        let at = target.pos_us.unwrap_or(i64::MAX);
        if let Some(reader) = self.archive.reader(camera, target.stream) {
            if let Some(keyframe) = reader.seek(at) {
                let read = reader.read(keyframe.position, 1).await;
                if let Some(f) = read.ok().and_then(|batch| batch.frames.into_iter().next()) {
                    let parameter_sets = ParameterSets::of_unit(f.codec, &f.data);
                    return Some(StreamInfo { codec: f.codec, parameter_sets, title });
                }
            }
        }
        // Recorded here but no frame yet: the parameter sets come in-band.
        self.records_stream((camera, target.stream)).then(|| StreamInfo {
            codec: Codec::H264,
            parameter_sets: ParameterSets::default(),
            title,
        })
    }

    fn live(&self, target: &Target) -> Option<Flow> {
        let camera = Self::camera_of(target)?;
        Some(lock(&self.feeds).get(&(camera, target.stream))?.subscribe())
    }

    fn archive(
        &self,
        target: &Target,
        start: ArchiveStart,
        speed: f64,
        until_us: Option<i64>,
    ) -> Option<Flow> {
        let camera = Self::camera_of(target)?;
        Playback {
            archive: self.archive.clone(),
            live: lock(&self.feeds).get(&(camera, target.stream)).cloned(),
            camera,
            stream: target.stream,
            start,
            speed,
            until_us,
        }
        .start()
    }

    async fn authorize(&self, proof: AuthRequest, peer: std::net::IpAddr) -> Access {
        let Some(state) = &self.auth else { return Access::Granted };
        let mut request = axum::http::Request::builder();
        if let Some(value) = proof.authorization {
            request = request.header(axum::http::header::AUTHORIZATION, value);
        }
        let Ok(request) = request.body(()) else { return Access::Denied };
        let (mut parts, ()) = request.into_parts();
        parts.extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(peer, 0)));
        use axum::extract::FromRequestParts;
        // Every role may watch; the same limits on failures as the API apply.
        match crate::api::Caller::from_request_parts(&mut parts, state).await {
            Ok(_) => Access::Granted,
            Err(_) => Access::Denied,
        }
    }

    fn now_us(&self) -> i64 {
        self.clock.now_us()
    }
}
