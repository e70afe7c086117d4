//! Pulls one camera with retina (RTSP over TCP, never decoded) and hands its frames to the
//! archive and the live feed, reconnecting with backoff until told to stop.

use super::clock::FrameClock;
use super::feed::LiveFeed;
use super::status::{CameraState, StatusBoard, StreamKey};
use bytes::Bytes;
use futures::StreamExt;
use hive_core::ids::CameraId;
use hive_media::frame::{Codec, Frame};
use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions,
};
use retina::codec::CodecItem;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How long a camera may take to connect and answer DESCRIBE.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How far a camera's own clock may run from system time before its frames are re-based, µs.
const REBASE_AFTER_US: i64 = 2_000_000;

/// Where frames go.
pub trait FrameSink: Send + Sync + 'static {
    /// Stores one frame; an error becomes the camera's status (e.g. a full disk).
    fn store(&self, camera: CameraId, frame: &Frame) -> Result<(), String>;
}

/// Pulls `url` for one stream of a camera until `stop` turns true.
pub async fn record(
    key: StreamKey,
    url: String,
    feed: LiveFeed,
    sink: Arc<dyn FrameSink>,
    clock: FrameClock,
    board: StatusBoard,
    mut stop: watch::Receiver<bool>,
) {
    let camera = key.0;
    let group = Arc::new(SessionGroup::default());
    let mut backoff = Duration::from_millis(500);
    loop {
        board.set(key, CameraState::Connecting);
        let pulled = tokio::select! {
            r = pull(key, &url, &group, &feed, &*sink, &clock, &board) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let reason = match pulled {
            Ok(()) => "the camera ended the stream".to_owned(),
            Err(reason) => reason,
        };
        tracing::warn!(%camera, stream = key.1, %reason, "camera stream lost; reconnecting");
        board.set(key, CameraState::Error(reason));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        // A camera that keeps sending on a stale session confuses a new one; wait it out.
        let stale = group.stale_sessions();
        if stale.num_sessions > 0 {
            tokio::select! {
                _ = group.await_stale_sessions(&stale) => {}
                _ = tokio::time::sleep(BACKOFF_MAX) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    board.set(key, CameraState::Stopped);
}

/// Splits `user:password@` out of a URL, as retina takes credentials apart.
fn split_credentials(url: &str) -> Result<(url::Url, Option<Credentials>), String> {
    let mut url = url::Url::parse(url).map_err(|e| format!("bad camera URL: {e}"))?;
    let creds = (!url.username().is_empty()).then(|| Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, creds))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
}

/// A human reason for a retina error: "401 from camera: …", "connection refused", ….
fn reason(e: &retina::Error) -> String {
    match e.status_code() {
        Some(401) => return "401 from camera: wrong or missing credentials".to_owned(),
        Some(404) => return "404 from camera: no such stream, check the URL's path".to_owned(),
        Some(status) => return format!("{status} from camera"),
        None => {}
    }
    let text = e.to_string();
    let known = ["Connection refused", "No route to host", "Network is unreachable", "Timeout"];
    for known in known {
        if text.contains(known) {
            return known.to_lowercase();
        }
    }
    // retina's first line says what failed; the lines after it are connection context.
    text.lines().next().unwrap_or("error").to_owned()
}

async fn pull(
    key: StreamKey,
    url: &str,
    group: &Arc<SessionGroup>,
    feed: &LiveFeed,
    sink: &dyn FrameSink,
    clock: &FrameClock,
    board: &StatusBoard,
) -> Result<(), String> {
    let (url, creds) = split_credentials(url)?;
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(group.clone())
        .user_agent("hive".to_owned());
    // A host that drops packets would hold the connect for minutes: bound it.
    let mut session = tokio::time::timeout(ANSWER_WITHIN, Session::describe(url, options))
        .await
        .map_err(|_| format!("no answer from camera within {} s", ANSWER_WITHIN.as_secs()))?
        .map_err(|e| reason(&e))?;
    let (index, codec) = session
        .streams()
        .iter()
        .enumerate()
        .find_map(|(i, s)| match (s.media(), s.encoding_name()) {
            ("video", "h264") => Some((i, Codec::H264)),
            ("video", "h265") => Some((i, Codec::H265)),
            _ => None,
        })
        .ok_or("the camera offers no H.264 or H.265 video")?;
    session.setup(index, SetupOptions::default()).await.map_err(|e| reason(&e))?;
    let playing = session.play(PlayOptions::default()).await.map_err(|e| reason(&e))?;
    let mut demuxed = playing.demuxed().map_err(|e| reason(&e))?;
    let mut base: Option<(i64, i64)> = None; // (camera µs, system µs) of the first frame
    let mut keyframe_seen = false;
    let mut last_us = i64::MIN;
    while let Some(item) = demuxed.next().await {
        let item = item.map_err(|e| reason(&e))?;
        let CodecItem::VideoFrame(v) = item else { continue };
        if v.stream_id() != index {
            continue;
        }
        let keyframe = v.is_random_access_point();
        keyframe_seen |= keyframe;
        if !keyframe_seen {
            continue;
        }
        let ts = v.timestamp();
        let camera_us = ts.elapsed() * 1_000_000 / i64::from(ts.clock_rate().get());
        let now = clock.now_us();
        let (cam0, sys0) = *base.get_or_insert((camera_us, now));
        let mut time_us = sys0 + (camera_us - cam0);
        if (time_us - now).abs() > REBASE_AFTER_US {
            base = Some((camera_us, now));
            time_us = now;
        }
        // Frame times only go forward, whatever the camera does.
        time_us = time_us.max(last_us + 1);
        last_us = time_us;
        let frame = Frame { time_us, keyframe, codec, data: Bytes::from(v.into_data()) };
        match sink.store(key.0, &frame) {
            Ok(()) => board.set_recording(key, time_us),
            Err(reason) => board.set(key, CameraState::Error(reason)),
        }
        feed.publish(frame);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_taken_out_and_decoded() {
        let (url, creds) = split_credentials("rtsp://u%40x:p%3Aw@127.0.0.1:554/cam1").unwrap();
        assert_eq!(url.as_str(), "rtsp://127.0.0.1:554/cam1");
        let creds = creds.unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("u@x", "p:w"));
        assert!(split_credentials("not a url").is_err());
    }
}
