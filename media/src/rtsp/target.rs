//! What an RTSP URL asks for: a camera, its stream, and optionally an archive position and
//! speed — `rtsp://server:port/<camera>?pos=<ms since epoch | ISO 8601>&speed=<x>&stream=0|1`.

use super::clock::position_to_us;
use thiserror::Error;

/// The fastest playback speed a URL or `Scale` may ask for.
pub const SPEED_MAX: f64 = 64.0;

/// A request URL the server cannot take.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// No camera in the path.
    #[error("no camera in the URL path")]
    NoCamera,
    /// A query parameter with a bad value.
    #[error("bad value for {name}: {value:?}")]
    BadValue {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
    },
}

/// The stream an RTSP URL names.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The camera, as named in the path (a camera id, or `camN` on a test camera server).
    pub camera: String,
    /// 0 for the primary stream, 1 for the secondary (low-resolution) one.
    pub stream: u8,
    /// The archive position asked for, µs since the epoch; `None` is live.
    pub pos_us: Option<i64>,
    /// Playback speed, 1.0 for real time.
    pub speed: f64,
}

impl Target {
    /// Parses a URL's path and query. The camera is the last non-empty path segment, so a
    /// track control URL (`…/cam1/trackID=0`) names the same camera.
    pub fn parse(url: &url::Url) -> Result<Target, TargetError> {
        let segments: Vec<&str> =
            url.path_segments().into_iter().flatten().filter(|s| !s.is_empty()).collect();
        let camera = match segments.as_slice() {
            [.., camera, track] if *track == crate::sdp::TRACK => camera,
            [.., camera] => camera,
            [] => return Err(TargetError::NoCamera),
        };
        let mut target =
            Target { camera: (*camera).to_owned(), stream: 0, pos_us: None, speed: 1.0 };
        // ffmpeg appends a relative track URL to a base with a query: `…?pos=1/trackID=0`.
        let mut url = url.clone();
        if let Some(query) = url.query().and_then(|q| q.strip_suffix(crate::sdp::TRACK)) {
            let query = query.trim_end_matches('/').to_owned();
            url.set_query(Some(&query));
        }
        for (name, value) in url.query_pairs() {
            let bad = |name| TargetError::BadValue { name, value: value.to_string() };
            match name.as_ref() {
                "pos" => target.pos_us = Some(position_to_us(&value).ok_or_else(|| bad("pos"))?),
                "speed" => {
                    let speed: f64 = value.parse().map_err(|_| bad("speed"))?;
                    if !(speed > 0.0 && speed <= SPEED_MAX) {
                        return Err(bad("speed"));
                    }
                    target.speed = speed;
                }
                "stream" => {
                    target.stream = match value.as_ref() {
                        "0" => 0,
                        "1" => 1,
                        _ => return Err(bad("stream")),
                    }
                }
                _ => {}
            }
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Target, TargetError> {
        Target::parse(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn a_url_names_camera_stream_position_and_speed() {
        let t = parse("rtsp://h:8554/cam3?pos=1000&speed=4&stream=1").unwrap();
        assert_eq!(
            (t.camera.as_str(), t.stream, t.pos_us, t.speed),
            ("cam3", 1, Some(1_000_000), 4.0)
        );
        let t = parse("rtsp://h/cam3?pos=1000/trackID=0").unwrap();
        assert_eq!((t.camera.as_str(), t.pos_us), ("cam3", Some(1_000_000)));
        let t = parse("rtsp://h/cam3/trackID=0").unwrap();
        assert_eq!((t.camera.as_str(), t.pos_us), ("cam3", None));
        assert_eq!(parse("rtsp://h/"), Err(TargetError::NoCamera));
        assert!(matches!(
            parse("rtsp://h/c?speed=0"),
            Err(TargetError::BadValue { name: "speed", .. })
        ));
        assert!(matches!(
            parse("rtsp://h/c?pos=soon"),
            Err(TargetError::BadValue { name: "pos", .. })
        ));
    }
}
