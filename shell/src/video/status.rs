//! What each camera recorded here is doing, for the API and CLI.

use hive_core::ids::CameraId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A camera's recording state on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// A camera's status as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Statuses of the cameras this server records. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    cameras: Arc<Mutex<BTreeMap<CameraId, CameraStatus>>>,
}

impl StatusBoard {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<CameraId, CameraStatus>) -> T) -> T {
        f(&mut self.cameras.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets `camera`'s state.
    pub fn set(&self, camera: CameraId, state: CameraState) {
        self.with(|m| {
            m.entry(camera).or_insert_with(CameraStatus::new).state = state;
        })
    }

    /// Notes a frame of `camera` stored at `time_us`.
    pub fn set_recording(&self, camera: CameraId, time_us: i64) {
        self.with(|m| {
            let entry = m.entry(camera).or_insert_with(CameraStatus::new);
            entry.state = CameraState::Recording;
            entry.last_frame_us = Some(time_us);
            entry.frames += 1;
        })
    }

    /// `camera`'s status, if it was ever recorded here.
    pub fn get(&self, camera: CameraId) -> Option<CameraStatus> {
        self.with(|m| m.get(&camera).cloned())
    }
}
