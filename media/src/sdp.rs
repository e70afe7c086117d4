//! The SDP a DESCRIBE answers with: one video track, its codec and its parameter sets, so a
//! client can set up its decoder before the first keyframe arrives.

use crate::frame::Codec;
use crate::nal::ParameterSets;
use crate::rtp::PAYLOAD_TYPE;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt::Write;

/// The control URL suffix of the one video track.
pub const TRACK: &str = "trackID=0";

/// What a DESCRIBE needs to know about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The codec.
    pub codec: Codec,
    /// Its parameter sets, when known (a live camera before its first keyframe has none).
    pub parameter_sets: ParameterSets,
    /// A name for the session line.
    pub title: String,
}

/// The SDP of `info`. `session_id` fills the origin line; `track_url` is the track's control
/// URL, absolute so that clients which join URLs by appending (ffmpeg) and those that resolve
/// them (retina) agree even when the URL has a query.
pub fn describe(info: &StreamInfo, session_id: u64, track_url: &str) -> String {
    let mut sdp = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns={}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         a=control:*\r\na=range:npt=0-\r\nm=video 0 RTP/AVP {PAYLOAD_TYPE}\r\n",
        info.title.replace(['\r', '\n'], " ")
    );
    let sets = &info.parameter_sets;
    let b64 = |b: &Option<bytes::Bytes>| b.as_ref().map(|b| STANDARD.encode(b));
    match info.codec {
        Codec::H264 => {
            let _ = write!(sdp, "a=rtpmap:{PAYLOAD_TYPE} H264/90000\r\n");
            let mut fmtp = String::from("packetization-mode=1");
            if let Some(sps) = sets.sps.as_ref().filter(|s| s.len() >= 4) {
                let _ =
                    write!(fmtp, ";profile-level-id={:02X}{:02X}{:02X}", sps[1], sps[2], sps[3]);
            }
            if let (Some(sps), Some(pps)) = (b64(&sets.sps), b64(&sets.pps)) {
                let _ = write!(fmtp, ";sprop-parameter-sets={sps},{pps}");
            }
            let _ = write!(sdp, "a=fmtp:{PAYLOAD_TYPE} {fmtp}\r\n");
        }
        Codec::H265 => {
            let _ = write!(sdp, "a=rtpmap:{PAYLOAD_TYPE} H265/90000\r\n");
            let mut fmtp = Vec::new();
            for (name, set) in [("vps", &sets.vps), ("sps", &sets.sps), ("pps", &sets.pps)] {
                if let Some(v) = b64(set) {
                    fmtp.push(format!("sprop-{name}={v}"));
                }
            }
            if !fmtp.is_empty() {
                let _ = write!(sdp, "a=fmtp:{PAYLOAD_TYPE} {}\r\n", fmtp.join(";"));
            }
        }
    }
    let _ = write!(sdp, "a=control:{track_url}\r\n");
    sdp
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn an_h264_description_carries_profile_and_parameter_sets() {
        let info = StreamInfo {
            codec: Codec::H264,
            parameter_sets: ParameterSets {
                vps: None,
                sps: Some(Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e, 0xd9])),
                pps: Some(Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80])),
            },
            title: "cam1".into(),
        };
        let sdp = describe(&info, 1, "rtsp://h/cam1/trackID=0");
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"), "{sdp}");
        assert!(sdp.contains("profile-level-id=42C01E;sprop-parameter-sets=Z0LAHtk=,aM48gA=="));
        assert!(sdp.ends_with("a=control:rtsp://h/cam1/trackID=0\r\n"));
    }
}
