//! `GET /api/cameras/{id}/video.mp4`: a camera's video as fragmented MP4 over HTTP, for the
//! browser's Media Source Extensions (and for ffmpeg), live or from an archive position, from
//! whichever server records it — the same flows the RTSP server plays, muxed on the way out.
//!
//! Why HTTP and fMP4 rather than WebRTC: it is the API's own authentication (cookie or Basic)
//! and transport (TLS, one port), TCP's back-pressure feeds the flow's keyframe skipping,
//! frames pass through untouched (no transcoding, no RTP re-timing, no ICE/DTLS), and the
//! archive plays at any speed the same way live does.

use super::error::ErrorBody;
use super::openapi::CallerRejections;
use super::stream_slots::{Slot, StreamSlots};
use super::{parse_id, ApiError, AppState, Caller};
use crate::rtsp::{ArchiveStart, Flow, Media};
use crate::video::relay::HiveMedia;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hive_core::ids::CameraId;
use hive_media::fmp4::{Fragmenter, Track};
use hive_media::frame::Frame;
use hive_media::nal::ParameterSets;
use hive_media::rtsp::clock::position_to_us;
use hive_media::rtsp::target::{Target, SPEED_MAX};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;

/// How long to wait for the first keyframe before answering 504.
pub const FIRST_KEYFRAME_WAIT: Duration = Duration::from_secs(10);
/// Frames looked at for the first keyframe before giving up (a stream without keyframes).
const FRAMES_BEFORE_KEYFRAME_MAX: usize = 1_000;
/// Video streams (`video.mp4` and `video.ws`) a server serves at once.
pub const STREAMS_MAX: usize = 256;
/// Video streams one user may hold open on a server (a few pages of grids).
pub const STREAMS_PER_USER_MAX: usize = 64;

/// The slots of video streams.
pub fn slots() -> Arc<StreamSlots> {
    StreamSlots::new("video streams", STREAMS_MAX, STREAMS_PER_USER_MAX)
}

/// The response header naming the track's codec for `MediaSource.addSourceBuffer`.
pub const CODEC_HEADER: &str = "x-hive-codec";
/// The response header with the system time (µs since the epoch) media time 0 stands for.
pub const START_HEADER: &str = "x-hive-start-us";

/// `?pos=&speed=&stream=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VideoQuery {
    /// Archive position: ms since the epoch or ISO 8601; none for live.
    pos: Option<String>,
    /// Playback speed of the archive, 1 for real time.
    speed: Option<f64>,
    /// 0 for the primary stream, 1 for the secondary (low-resolution) one.
    stream: Option<u8>,
}

fn target(id: CameraId, q: &VideoQuery) -> Result<Target, ApiError> {
    let stream = q.stream.unwrap_or(0);
    if stream > 1 {
        return Err(ApiError::bad_request("stream must be 0 (primary) or 1 (secondary)"));
    }
    let speed = q.speed.unwrap_or(1.0);
    if !(speed > 0.0 && speed <= SPEED_MAX) {
        return Err(ApiError::bad_request(format!(
            "speed must be above 0 and at most {SPEED_MAX}"
        )));
    }
    let pos_us = match &q.pos {
        None => None,
        Some(text) => Some(position_to_us(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "pos {text:?} is neither ms since the epoch nor an ISO 8601 time"
            ))
        })?),
    };
    Ok(Target { camera: id.to_string(), stream, pos_us, speed })
}

fn unavailable(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError::new(status, code, message)
}

/// Skips to the first keyframe of `flow`.
async fn first_keyframe(flow: &mut Flow) -> Result<Frame, ApiError> {
    let wait = async {
        for _ in 0..FRAMES_BEFORE_KEYFRAME_MAX {
            match flow.recv().await {
                Some(frame) if frame.keyframe => return Ok(frame),
                Some(_) => continue,
                None => break,
            }
        }
        Err(unavailable(
            StatusCode::BAD_GATEWAY,
            "stream_ended",
            "the stream ended before its first keyframe".to_owned(),
        ))
    };
    tokio::time::timeout(FIRST_KEYFRAME_WAIT, wait).await.unwrap_or_else(|_| {
        Err(unavailable(
            StatusCode::GATEWAY_TIMEOUT,
            "no_video",
            format!("no keyframe from the camera within {} s", FIRST_KEYFRAME_WAIT.as_secs()),
        ))
    })
}

/// Streams the camera's video as fragmented MP4: the init segment, then one fragment per frame;
/// a keyframe whose parameter sets changed (a new resolution) brings a new init segment.
///
/// Live without `pos`; with `pos`, the archive from the keyframe before it, at `speed`, on into
/// live. Any server answers for any camera: it relays from the recorder. The stream ends when
/// the caller no longer holds (logged out, password or role changed, user removed). `X-Hive-Codec` names
/// the track for `MediaSource.addSourceBuffer`; `X-Hive-Start-Us` is the system time (µs) that
/// media time 0 stands for.
#[utoipa::path(
    get,
    path = "/api/cameras/{id}/video.mp4",
    tag = "video",
    operation_id = "get_camera_video_mp4",
    params(("id" = String, Path, description = "The camera's id."), VideoQuery),
    security(("basic" = []), ("session" = [])),
    responses(
        (status = 200, description = "A fragmented MP4 stream that lasts as long as the video does.",
         content_type = "video/mp4", body = Vec<u8>,
         headers(("X-Hive-Codec" = String, description = "RFC 6381 codec, e.g. `avc1.64001f`."),
                 ("X-Hive-Start-Us" = i64, description = "System time of media time 0, µs since the epoch."))),
        (status = 400, description = "A bad id, `pos`, `speed` or `stream`.", body = ErrorBody),
        (status = 404, description = "No such camera or stream.", body = ErrorBody),
        (status = 502, description = "The stream ended or was unusable before its first keyframe.", body = ErrorBody),
        (status = 503, description = "The camera's recorder cannot be reached now (`no_stream`), too many video streams on this server or of this user (`too_many_streams`), or the server is stopping.", body = ErrorBody),
        (status = 504, description = "No keyframe from the camera within 10 s (`no_video`).", body = ErrorBody),
        CallerRejections,
    ),
)]
pub async fn video_mp4(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VideoQuery>,
) -> Result<Response, ApiError> {
    let opened = open_stream(&state, caller, &id, &q).await?;
    let codec = HeaderValue::from_str(&opened.track.codec_string())
        .unwrap_or_else(|_| HeaderValue::from_static("avc1"));
    let start_us = HeaderValue::from(opened.first.time_us);
    let body = Body::from_stream(opened.fragments());
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::HeaderName::from_static(CODEC_HEADER), codec),
        (header::HeaderName::from_static(START_HEADER), start_us),
    ];
    Ok((headers, body).into_response())
}

/// A stream found and started: its track, from its first keyframe on.
pub(super) struct Opened {
    track: Track,
    sets: ParameterSets,
    first: Frame,
    flow: Flow,
    /// Held while the stream plays.
    slot: Slot,
    /// Completes when the caller no longer holds.
    revoked: BoxFuture<'static, ()>,
}

impl Opened {
    /// The codec string for `MediaSource.addSourceBuffer`.
    pub(super) fn codec(&self) -> String {
        self.track.codec_string()
    }

    /// The system time media time 0 stands for, µs since the epoch.
    pub(super) fn start_us(&self) -> i64 {
        self.first.time_us
    }

    /// The init segment, then a fragment per frame, until the video or the caller's right to
    /// it ends.
    pub(super) fn fragments(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
        let slot = self.slot;
        fragments(self.track, self.sets, self.first, self.flow).take_until(self.revoked).map(
            move |chunk| {
                let _held = &slot;
                chunk
            },
        )
    }
}

/// Finds the stream `q` names of camera `id` (through the hive) and waits for its first
/// keyframe; every failure is an answer in words.
pub(super) async fn open_stream(
    state: &AppState,
    caller: Caller,
    id: &str,
    q: &VideoQuery,
) -> Result<Opened, ApiError> {
    let id: CameraId = parse_id(id, "camera")?;
    let target = target(id, q)?;
    let slot = state.streams.video.take(&caller.name)?;
    let hive: Arc<HiveMedia> = state
        .video
        .upgrade()
        .and_then(|plane| plane.hive.get().and_then(std::sync::Weak::upgrade))
        .ok_or_else(|| ApiError::from(crate::server::handle::Stopped))?;
    let info = hive.info(&target).await.ok_or_else(|| {
        ApiError::not_found(format!("no stream {} of camera {id}", target.stream))
    })?;
    let flow = match target.pos_us {
        Some(pos_us) => hive.archive(&target, ArchiveStart::Keyframe(pos_us), target.speed, None),
        None => hive.live(&target),
    };
    let mut flow = flow.ok_or_else(|| {
        unavailable(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_stream",
            format!("camera {id} cannot be played now (its recorder is unreachable)"),
        )
    })?;
    let first = first_keyframe(&mut flow).await?;
    let mut sets = info.parameter_sets.clone();
    sets.update(first.codec, &first.data);
    let track = Track::new(first.codec, &sets).map_err(|e| {
        unavailable(StatusCode::BAD_GATEWAY, "bad_stream", format!("camera {id}: {e}"))
    })?;
    let revoked = caller.revoked(state.clone()).boxed();
    Ok(Opened { track, sets, first, flow, slot, revoked })
}

/// What the body stream holds between chunks.
struct Muxing {
    fragmenter: Fragmenter,
    sets: ParameterSets,
    /// A chunk ready to go before the next frame is asked for (the first frame's fragment).
    ready: Vec<Bytes>,
    flow: Flow,
}

fn fragments(
    track: Track,
    sets: ParameterSets,
    first: Frame,
    flow: Flow,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let mut fragmenter = Fragmenter::new();
    let first_fragment = fragmenter.fragment(&first);
    // Popped from the end: the init segment goes first.
    let ready = vec![first_fragment, track.init_segment()];
    let muxing = Muxing { fragmenter, sets, ready, flow };
    futures::stream::unfold(muxing, |mut m| async move {
        if let Some(chunk) = m.ready.pop() {
            return Some((Ok(chunk), m));
        }
        let frame = m.flow.recv().await?;
        if frame.keyframe {
            let now = ParameterSets::of_unit(frame.codec, &frame.data);
            let changed =
                [(&now.vps, &m.sets.vps), (&now.sps, &m.sets.sps), (&now.pps, &m.sets.pps)]
                    .iter()
                    .any(|(new, old)| new.is_some() && new != old);
            if changed {
                m.sets.update(frame.codec, &frame.data);
                match Track::new(frame.codec, &m.sets) {
                    Ok(track) => m.ready.push(track.init_segment()),
                    Err(e) => {
                        tracing::debug!(error = %e, "stream's new parameter sets unusable; ending");
                        return None;
                    }
                }
            }
        }
        let fragment = m.fragmenter.fragment(&frame);
        match m.ready.pop() {
            Some(init) => {
                m.ready.push(fragment);
                Some((Ok(init), m))
            }
            None => Some((Ok(fragment), m)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pos: Option<&str>, speed: Option<f64>, stream: Option<u8>) -> VideoQuery {
        VideoQuery { pos: pos.map(str::to_owned), speed, stream }
    }

    #[test]
    fn live_is_the_default_and_positions_take_ms_or_iso_8601() {
        let id = CameraId(7);
        let live = target(id, &query(None, None, None)).unwrap();
        assert_eq!((live.pos_us, live.speed, live.stream), (None, 1.0, 0));
        let at = target(id, &query(Some("1700000000000"), Some(4.0), Some(1))).unwrap();
        assert_eq!((at.pos_us, at.speed, at.stream), (Some(1_700_000_000_000_000), 4.0, 1));
        let iso = target(id, &query(Some("2023-11-14T22:13:20Z"), None, None)).unwrap();
        assert_eq!(iso.pos_us, Some(1_700_000_000_000_000));
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let id = CameraId(7);
        for (q, says) in [
            (query(Some("yesterday"), None, None), "pos"),
            (query(None, Some(0.0), None), "speed"),
            (query(None, Some(f64::NAN), None), "speed"),
            (query(None, Some(1000.0), None), "speed"),
            (query(None, None, Some(2)), "stream"),
        ] {
            let e = target(id, &q).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
