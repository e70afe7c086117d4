//! `hive testcamera`: N RTSP H.264 cameras served from one looping clip, for the demo, tests
//! and benchmarks. Every camera sends the same pre-encoded frames (nothing is encoded at run
//! time), with timestamps that keep counting across loops.

use super::feed::LiveFeed;
use crate::rtsp::{Access, Flow, Media};
use base64::Engine;
use hive_media::frame::{Codec, Frame};
use hive_media::nal::{access_units, AccessUnit, ParameterSets};
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The bundled clip: 10 s of 640x360 at 25 fps, a keyframe every second, frame number burned in
/// (made by `shell/assets/make-clip.sh`).
pub const BUNDLED_CLIP: &[u8] = include_bytes!("../../assets/testclip.h264");

/// A clip the test camera cannot serve.
#[derive(Debug, Error)]
pub enum ClipError {
    /// It could not be read.
    #[error("reading the clip: {0}")]
    Read(#[from] std::io::Error),
    /// The RTSP port could not be opened.
    #[error("listening for RTSP: {0}")]
    Listen(std::io::Error),
    /// It has no access units, or does not start with a keyframe that carries SPS and PPS.
    #[error("the clip must be an H.264 Annex B stream starting with SPS, PPS and a keyframe")]
    NotH264,
}

/// A clip split into access units.
#[derive(Debug, Clone)]
pub struct Clip {
    units: Vec<AccessUnit>,
    parameter_sets: ParameterSets,
}

impl Clip {
    /// Parses an H.264 Annex B stream.
    pub fn parse(stream: &[u8]) -> Result<Clip, ClipError> {
        let units = access_units(Codec::H264, stream);
        let first = units.first().filter(|u| u.keyframe).ok_or(ClipError::NotH264)?;
        let parameter_sets = ParameterSets::of_unit(Codec::H264, &first.data);
        if !parameter_sets.complete(Codec::H264) {
            return Err(ClipError::NotH264);
        }
        Ok(Clip { units, parameter_sets })
    }

    /// Frames in one loop.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether it holds no frames (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// Cameras `cam1..camN`, each a live feed of the clip.
pub struct TestCameras {
    feeds: BTreeMap<String, LiveFeed>,
    parameter_sets: ParameterSets,
    /// `Authorization` header value required, if credentials were asked for.
    required_authorization: Option<String>,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl TestCameras {
    /// `count` cameras of `clip`; with `credentials` (`user:password`) clients must send them
    /// (Basic).
    pub fn new(count: usize, clip: &Clip, credentials: Option<&str>) -> TestCameras {
        let feeds = (1..=count).map(|n| (format!("cam{n}"), LiveFeed::new())).collect();
        let required_authorization = credentials
            .map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
        TestCameras { feeds, parameter_sets: clip.parameter_sets.clone(), required_authorization }
    }

    /// Publishes the clip's frames to every camera at `fps`, looping, until the task is dropped.
    pub async fn run(self: Arc<Self>, clip: Clip, fps: f64) {
        let frame_us = (1_000_000.0 / fps.clamp(0.1, 1000.0)) as i64;
        let start_us = now_us();
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_micros(frame_us as u64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n: i64 = 0;
        loop {
            tick.tick().await;
            // Frames follow the clock: after a stall, jump ahead rather than burst.
            let due = start.elapsed().as_micros() as i64 / frame_us;
            n = n.max(due);
            let unit = &clip.units[(n as usize) % clip.units.len()];
            let frame = Frame {
                time_us: start_us + n * frame_us,
                keyframe: unit.keyframe,
                codec: Codec::H264,
                data: unit.data.clone(),
            };
            for feed in self.feeds.values() {
                feed.publish(frame.clone());
            }
            n += 1;
        }
    }
}

impl Media for TestCameras {
    async fn info(&self, target: &Target) -> Option<StreamInfo> {
        self.feeds.get(&target.camera)?;
        Some(StreamInfo {
            codec: Codec::H264,
            parameter_sets: self.parameter_sets.clone(),
            title: target.camera.clone(),
        })
    }

    fn live(&self, target: &Target) -> Option<Flow> {
        Some(self.feeds.get(&target.camera)?.subscribe())
    }

    fn archive(&self, _: &Target, _: i64, _: f64, _: Option<i64>) -> Option<Flow> {
        None
    }

    async fn authorize(&self, authorization: Option<String>, _: std::net::IpAddr) -> Access {
        match &self.required_authorization {
            None => Access::Granted,
            Some(required) if authorization.as_deref() == Some(required.as_str()) => {
                Access::Granted
            }
            Some(_) => Access::Denied,
        }
    }

    fn now_us(&self) -> i64 {
        now_us()
    }
}

/// Runs `hive testcamera` until interrupted.
pub async fn run(
    count: usize,
    bind: std::net::SocketAddr,
    clip_path: Option<&std::path::Path>,
    fps: f64,
    credentials: Option<&str>,
) -> Result<(), ClipError> {
    let bytes = match clip_path {
        Some(path) => std::fs::read(path)?,
        None => BUNDLED_CLIP.to_vec(),
    };
    let clip = Clip::parse(&bytes)?;
    let cameras = Arc::new(TestCameras::new(count, &clip, credentials));
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(ClipError::Listen)?;
    let port = listener.local_addr().map_err(ClipError::Listen)?.port();
    tracing::info!(count, port, frames = clip.len(), fps, "test cameras serving");
    println!("test cameras: rtsp://{}:{port}/cam1 .. cam{count}", bind.ip());
    tokio::spawn(cameras.clone().run(clip, fps));
    crate::rtsp::serve(listener, cameras, None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_clip_is_ten_seconds_with_a_keyframe_every_second() {
        let clip = Clip::parse(BUNDLED_CLIP).unwrap();
        assert_eq!(clip.len(), 250);
        let keys: Vec<usize> =
            clip.units.iter().enumerate().filter(|(_, u)| u.keyframe).map(|(i, _)| i).collect();
        assert_eq!(keys, (0..10).map(|s| s * 25).collect::<Vec<_>>());
    }
}
