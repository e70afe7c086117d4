//! One encoded video frame (an access unit) as it flows from a camera to the archive and to
//! viewers. Frames are never decoded.

use bytes::Bytes;

/// The video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
}

impl Codec {
    /// The code stored in an archive record's flags.
    pub fn code(self) -> u8 {
        match self {
            Codec::H264 => 0,
            Codec::H265 => 1,
        }
    }

    /// The codec of an archive code, `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Codec> {
        match code {
            0 => Some(Codec::H264),
            1 => Some(Codec::H265),
            _ => None,
        }
    }
}

/// One access unit: NAL units each prefixed by its 4-byte big-endian length (AVCC/HVCC form, as
/// retina delivers them). A keyframe carries its parameter sets (SPS/PPS, and VPS for H.265)
/// in-band, so any keyframe in the archive starts a decodable stream on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// System time of the frame (the hive's synchronized clock), µs since the Unix epoch.
    pub time_us: i64,
    /// Whether a decoder can start here (IDR / IRAP with parameter sets).
    pub keyframe: bool,
    /// The codec of `data`.
    pub codec: Codec,
    /// Length-prefixed NAL units.
    pub data: Bytes,
}
