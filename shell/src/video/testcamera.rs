//! `hive testcamera`: N RTSP cameras served from looping clips, for the demo, tests and
//! benchmarks. Each camera has a primary stream (`/camN`, H.264 or H.265) and a low-resolution
//! secondary one (`/camN?stream=1`, H.264), as real cameras do. Every camera sends the same
//! pre-encoded frames (nothing is encoded at run time), with timestamps that keep counting
//! across loops.

use super::feed::LiveFeed;
use crate::rtsp::{Access, ArchiveStart, AuthRequest, Flow, Media};
use base64::Engine;
use hive_media::frame::{Codec, Frame};
use hive_media::nal::{access_units, AccessUnit, ParameterSets};
use hive_media::rtsp::digest::DigestChallenge;
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The bundled clip: 10 s of 640x360 at 25 fps, a keyframe every second, frame number burned in
/// (made by `shell/assets/make-clip.sh`, like the other bundled clips).
pub const BUNDLED_CLIP: &[u8] = include_bytes!("../../assets/testclip.h264");

/// The bundled clip in H.265.
pub const BUNDLED_CLIP_H265: &[u8] = include_bytes!("../../assets/testclip.h265");

/// The bundled secondary stream: the same 10 s at 320x180, H.264.
pub const BUNDLED_SUB_CLIP: &[u8] = include_bytes!("../../assets/testclip-sub.h264");

/// Frames a stalled test camera still sends late, in a burst; a longer stall skips them.
const STALL_BURST_FRAMES_MAX: i64 = 50;

/// A clip the test camera cannot serve.
#[derive(Debug, Error)]
pub enum ClipError {
    /// It could not be read.
    #[error("reading the clip: {0}")]
    Read(#[from] std::io::Error),
    /// The RTSP port could not be opened.
    #[error("listening for RTSP: {0}")]
    Listen(std::io::Error),
    /// It has no access units, or does not start with a keyframe that carries its parameter
    /// sets.
    #[error(
        "the clip must be an {0:?} Annex B stream starting with its parameter sets and a keyframe"
    )]
    NotAnnexB(Codec),
}

/// A clip split into access units.
#[derive(Debug, Clone)]
pub struct Clip {
    codec: Codec,
    units: Vec<AccessUnit>,
    parameter_sets: ParameterSets,
}

impl Clip {
    /// Parses an Annex B stream of `codec`.
    pub fn parse(codec: Codec, stream: &[u8]) -> Result<Clip, ClipError> {
        let units = access_units(codec, stream);
        let first = units.first().filter(|u| u.keyframe).ok_or(ClipError::NotAnnexB(codec))?;
        let parameter_sets = ParameterSets::of_unit(codec, &first.data);
        if !parameter_sets.complete(codec) {
            return Err(ClipError::NotAnnexB(codec));
        }
        Ok(Clip { codec, units, parameter_sets })
    }

    /// The bundled primary clip in `codec`.
    pub fn bundled(codec: Codec) -> Clip {
        let bytes = match codec {
            Codec::H264 => BUNDLED_CLIP,
            Codec::H265 => BUNDLED_CLIP_H265,
        };
        Clip::parse(codec, bytes).expect("the bundled clips parse (unit test)")
    }

    /// The bundled secondary clip.
    pub fn bundled_sub() -> Clip {
        Clip::parse(Codec::H264, BUNDLED_SUB_CLIP).expect("the bundled clips parse (unit test)")
    }

    /// Its frame `n` of a loop that never ends, stamped `time_us`.
    pub fn frame(&self, n: i64, time_us: i64) -> Frame {
        let unit = &self.units[n.rem_euclid(self.units.len() as i64) as usize];
        Frame { time_us, keyframe: unit.keyframe, codec: self.codec, data: unit.data.clone() }
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

/// Cameras `cam1..camN`, each with a live feed of the primary clip and one of the secondary.
pub struct TestCameras {
    /// Feeds by camera name and stream (0 primary, 1 secondary).
    feeds: BTreeMap<(String, u8), LiveFeed>,
    /// The clips of stream 0 and 1.
    clips: [Clip; 2],
    /// What clients must prove, if credentials were asked for.
    auth: Option<CameraAuth>,
}

/// How a test camera checks its clients, as real cameras do: Basic, or Digest (most cameras).
#[derive(Debug, Clone)]
enum CameraAuth {
    /// The `Authorization` value required.
    Basic(String),
    /// The challenge sent, and the user and password its answers must prove.
    Digest { challenge: DigestChallenge, user: String, password: String },
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl TestCameras {
    /// `count` cameras sending `main` as their primary stream and `sub` as their secondary;
    /// with `credentials` (`user:password`) clients must send them (Basic, or Digest with
    /// `digest`).
    pub fn new(
        count: usize,
        main: Clip,
        sub: Clip,
        credentials: Option<&str>,
        digest: bool,
    ) -> TestCameras {
        let feeds = (1..=count)
            .flat_map(|n| [0, 1].map(|stream| ((format!("cam{n}"), stream), LiveFeed::new())))
            .collect();
        let auth = credentials.map(|c| {
            if !digest {
                return CameraAuth::Basic(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(c)
                ));
            }
            let (user, password) = c.split_once(':').unwrap_or((c, ""));
            let nonce: [u8; 16] = rand::random();
            CameraAuth::Digest {
                challenge: DigestChallenge {
                    realm: "hive testcamera".to_owned(),
                    nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
                },
                user: user.to_owned(),
                password: password.to_owned(),
            }
        });
        TestCameras { feeds, clips: [main, sub], auth }
    }

    /// Frames in one loop of the primary clip.
    pub fn clip_len(&self) -> usize {
        self.clips[0].len()
    }

    fn feed(&self, target: &Target) -> Option<&LiveFeed> {
        self.feeds.get(&(target.camera.clone(), target.stream))
    }

    /// Publishes the clips' frames to every camera at `fps`, looping, until the task is
    /// dropped.
    pub async fn run(self: Arc<Self>, fps: f64) {
        let frame_us = (1_000_000.0 / fps.clamp(0.1, 1000.0)) as i64;
        let start_us = now_us();
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_micros(frame_us as u64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n: i64 = 0;
        loop {
            tick.tick().await;
            // Like a real camera, every frame is sent, late ones in a burst after a short
            // stall (a loaded machine); after a long one (a suspended process) the frames
            // jump ahead to the clock rather than burst a whole backlog.
            let due = start.elapsed().as_micros() as i64 / frame_us;
            if due - n > STALL_BURST_FRAMES_MAX {
                tracing::warn!(frames = due - n, "test camera stalled; frames skipped");
                n = due;
            }
            let time_us = start_us + n * frame_us;
            let frames = [self.clips[0].frame(n, time_us), self.clips[1].frame(n, time_us)];
            for ((_, stream), feed) in &self.feeds {
                feed.publish(frames[usize::from(*stream)].clone());
            }
            n += 1;
        }
    }
}

impl Media for TestCameras {
    async fn info(&self, target: &Target) -> Option<StreamInfo> {
        self.feed(target)?;
        let clip = &self.clips[usize::from(target.stream.min(1))];
        Some(StreamInfo {
            codec: clip.codec,
            parameter_sets: clip.parameter_sets.clone(),
            title: target.camera.clone(),
        })
    }

    fn live(&self, target: &Target) -> Option<Flow> {
        Some(self.feed(target)?.subscribe())
    }

    fn archive(&self, _: &Target, _: ArchiveStart, _: f64, _: Option<i64>) -> Option<Flow> {
        None
    }

    async fn authorize(&self, proof: AuthRequest, _: std::net::IpAddr) -> Access {
        let granted = match (&self.auth, proof.authorization.as_deref()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(CameraAuth::Basic(required)), Some(given)) => given == required,
            (Some(CameraAuth::Digest { challenge, user, password }), Some(given)) => {
                challenge.verify(given, &proof.method, &proof.uri, user, password)
            }
        };
        if granted {
            Access::Granted
        } else {
            Access::Denied
        }
    }

    fn challenge(&self) -> String {
        match &self.auth {
            Some(CameraAuth::Digest { challenge, .. }) => challenge.header(),
            _ => "Basic realm=\"hive testcamera\"".to_owned(),
        }
    }

    fn now_us(&self) -> i64 {
        now_us()
    }
}

/// What `hive testcamera` serves.
#[derive(Debug, Clone)]
pub struct TestCameraSpec {
    /// How many cameras.
    pub count: usize,
    /// Where to listen.
    pub bind: std::net::SocketAddr,
    /// A clip to loop as the primary stream instead of the bundled one.
    pub clip: Option<std::path::PathBuf>,
    /// The primary stream's codec (and the clip's).
    pub codec: Codec,
    /// Frames per second.
    pub fps: f64,
    /// `user:password` that clients must send.
    pub credentials: Option<String>,
    /// Ask for the credentials with Digest rather than Basic.
    pub digest: bool,
}

/// Runs `hive testcamera` until interrupted.
pub async fn run(spec: TestCameraSpec) -> Result<(), ClipError> {
    let main = match &spec.clip {
        Some(path) => Clip::parse(spec.codec, &std::fs::read(path)?)?,
        None => Clip::bundled(spec.codec),
    };
    let (count, bind, fps) = (spec.count, spec.bind, spec.fps);
    let cameras = Arc::new(TestCameras::new(
        count,
        main,
        Clip::bundled_sub(),
        spec.credentials.as_deref(),
        spec.digest,
    ));
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(ClipError::Listen)?;
    let port = listener.local_addr().map_err(ClipError::Listen)?.port();
    let frames = cameras.clip_len();
    tracing::info!(count, port, frames, fps, codec = ?spec.codec, "test cameras serving");
    println!(
        "test cameras: rtsp://{}:{port}/cam1 .. cam{count} (secondary streams: ?stream=1)",
        bind.ip()
    );
    tokio::spawn(cameras.clone().run(fps));
    crate::rtsp::serve(listener, cameras, None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_clips_are_ten_seconds_with_a_keyframe_every_second() {
        for clip in [Clip::bundled(Codec::H264), Clip::bundled(Codec::H265), Clip::bundled_sub()] {
            assert_eq!(clip.len(), 250, "{:?}", clip.codec);
            let keys: Vec<usize> =
                clip.units.iter().enumerate().filter(|(_, u)| u.keyframe).map(|(i, _)| i).collect();
            assert_eq!(keys, (0..10).map(|s| s * 25).collect::<Vec<_>>(), "{:?}", clip.codec);
            assert!(clip.parameter_sets.complete(clip.codec));
        }
    }

    #[test]
    fn a_clip_of_another_codec_or_garbage_is_refused() {
        assert!(matches!(
            Clip::parse(Codec::H264, b"not a video"),
            Err(ClipError::NotAnnexB(Codec::H264))
        ));
        assert!(Clip::parse(Codec::H265, BUNDLED_CLIP).is_err());
    }
}
