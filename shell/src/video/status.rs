//! What each camera recorded here is doing, for the API and CLI.

use hive_core::ids::CameraId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A camera's recording state on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum CameraState {
    /// Connecting to the camera.
    Connecting,
    /// Frames arrive and are stored.
    Recording,
    /// Failing, with the reason ("401 from camera", "connection refused", "disk full").
    Error(String),
    /// Not recorded here.
    Stopped,
}

impl std::fmt::Display for CameraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CameraState::Connecting => f.write_str("connecting"),
            CameraState::Recording => f.write_str("recording"),
            CameraState::Error(reason) => write!(f, "error: {reason}"),
            CameraState::Stopped => f.write_str("stopped"),
        }
    }
}

/// A camera's status as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CameraStatus {
    /// State and reason.
    #[serde(flatten)]
    pub state: CameraState,
    /// System time of the last frame stored, µs since the epoch.
    pub last_frame_us: Option<i64>,
    /// Frames stored since recording began here.
    pub frames: u64,
}

impl CameraStatus {
    fn new() -> CameraStatus {
        CameraStatus { state: CameraState::Connecting, last_frame_us: None, frames: 0 }
    }
}

/// One stream of a camera: 0 is the primary stream, 1 the secondary (low-resolution) one.
pub type StreamKey = (CameraId, u8);

/// Statuses of the camera streams this server records. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    streams: Arc<Mutex<BTreeMap<StreamKey, CameraStatus>>>,
}

impl StatusBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<StreamKey, CameraStatus>) -> T) -> T {
        f(&mut self.streams.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets a stream's state.
    pub fn set(&self, stream: StreamKey, state: CameraState) {
        self.with(|m| {
            m.entry(stream).or_insert_with(CameraStatus::new).state = state;
        })
    }

    /// Notes a frame of a stream stored at `time_us`.
    pub fn set_recording(&self, stream: StreamKey, time_us: i64) {
        self.with(|m| {
            let entry = m.entry(stream).or_insert_with(CameraStatus::new);
            entry.state = CameraState::Recording;
            entry.last_frame_us = Some(time_us);
            entry.frames += 1;
        })
    }

    /// `camera`'s primary stream's status, if it was ever recorded here.
    pub fn get(&self, camera: CameraId) -> Option<CameraStatus> {
        self.get_stream((camera, 0))
    }

    /// A stream's status, if it was ever recorded here.
    pub fn get_stream(&self, stream: StreamKey) -> Option<CameraStatus> {
        self.with(|m| m.get(&stream).cloned())
    }

    /// Forgets `camera`'s secondary stream (its record no longer names one).
    pub fn forget_secondary(&self, camera: CameraId) {
        self.with(|m| m.remove(&(camera, 1)));
    }
}
