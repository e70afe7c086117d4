//! Fragmented MP4 (ISO BMFF) of one video track, as Media Source Extensions in a browser play
//! it: an init segment (`ftyp` + `moov`) that describes the track, then one fragment
//! (`moof` + `mdat`) per frame, made the moment the frame arrives.
//!
//! Sans-IO: [`Track`] turns a stream's parameter sets into the init segment and [`Fragmenter`]
//! turns frames into fragments; the shell streams the bytes. Times run on a 90 kHz timescale
//! from the first frame, whose system time [`Fragmenter::start_us`] gives back so a player can
//! map its position to the hive's clock.
//!
//! Samples are the frames' data as they are: length-prefixed NAL units, a keyframe's parameter
//! sets in-band as well as in the sample entry. Cameras send no B-frames, so presentation time
//! is decode time (no composition offsets, no `ctts`).

use crate::frame::{Codec, Frame};
use crate::nal::{kind, NalKind, ParameterSets};
use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use thiserror::Error;

/// Ticks per second of the track's timescale (the RTP video clock).
pub const TIMESCALE: u32 = 90_000;
/// The largest frame a fragment holds: the `mdat` header and the data fit a 32-bit box size.
pub const SAMPLE_MAX_BYTES: usize = u32::MAX as usize - 8;

const TRACK_ID: u32 = 1;
const US_PER_S: i128 = 1_000_000;
/// Sample duration until two frames have shown the frame interval: 25 frames per second.
const DURATION_TICKS_DEFAULT: u32 = TIMESCALE / 25;
const DURATION_TICKS_MIN: u32 = TIMESCALE / 1_000;
const DURATION_TICKS_MAX: u32 = TIMESCALE;

/// `sample_depends_on` = 2: the sample decodes on its own.
const SAMPLE_FLAGS_SYNC: u32 = 2 << 24;
/// `sample_depends_on` = 1 and `sample_is_non_sync_sample`.
const SAMPLE_FLAGS_NON_SYNC: u32 = 1 << 24 | 1 << 16;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` carries a data offset and each sample's duration, size and flags.
const TRUN_FLAGS: u32 = 0x000001 | 0x000100 | 0x000200 | 0x000400;
/// The identity transformation of `mvhd` and `tkhd`.
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// H.264 profiles whose `avcC` carries chroma format and bit depths.
const AVC_HIGH_PROFILES: [u8; 4] = [100, 110, 122, 144];

/// Why parameter sets cannot describe a track.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fmp4Error {
    /// No sequence parameter set.
    #[error("no sequence parameter set")]
    MissingSps,
    /// No picture parameter set.
    #[error("no picture parameter set")]
    MissingPps,
    /// No video parameter set, which H.265 needs.
    #[error("no video parameter set (H.265 needs one)")]
    MissingVps,
    /// A parameter set is another kind of NAL unit.
    #[error("the NAL unit given as {expected:?} is another kind")]
    WrongKind {
        /// The kind it should be.
        expected: NalKind,
    },
    /// A parameter set longer than a decoder configuration record holds.
    #[error("{kind:?} of {len} bytes, over the 65535 a decoder configuration holds")]
    TooLong {
        /// Its kind.
        kind: NalKind,
        /// Its length, bytes.
        len: usize,
    },
    /// The sequence parameter set does not parse.
    #[error("bad sequence parameter set: {0}")]
    BadSps(#[from] SpsError),
}

/// What is wrong with a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpsError {
    /// It ends before the fields the track needs.
    #[error("cut short")]
    Truncated,
    /// A field holds a value out of its range.
    #[error("{field} out of range")]
    Invalid {
        /// The field, as the standard names it.
        field: &'static str,
    },
    /// A picture over 65535 pixels on a side, which a sample entry cannot describe.
    #[error("picture of {width}x{height} pixels, over 65535 on a side")]
    TooLarge {
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
    },
}

/// What the init segment describes: one video track, its codec, size and parameter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    width: u16,
    height: u16,
    config: Config,
}

/// The decoder configuration of the sample entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Config {
    Avc { sps: Bytes, pps: Bytes, info: AvcInfo },
    Hevc { vps: Bytes, sps: Bytes, pps: Bytes, info: HevcInfo },
}

/// What `avcC` and the codec string take from an H.264 SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AvcInfo {
    /// `profile_idc`, the constraint flags and `level_idc`.
    profile: [u8; 3],
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    width: u32,
    height: u32,
}

/// What `hvcC` and the codec string take from an H.265 SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HevcInfo {
    /// The general part of `profile_tier_level`: profile space, tier and profile, the
    /// compatibility flags, the constraint flags and the level.
    general: [u8; 12],
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    temporal_layers: u8,
    temporal_id_nested: bool,
    width: u32,
    height: u32,
}

impl Track {
    /// The track of a stream with these parameter sets; never panics, whatever their bytes.
    pub fn new(codec: Codec, sets: &ParameterSets) -> Result<Track, Fmp4Error> {
        let sps = parameter_set(codec, &sets.sps, NalKind::Sps, Fmp4Error::MissingSps)?;
        let pps = parameter_set(codec, &sets.pps, NalKind::Pps, Fmp4Error::MissingPps)?;
        let (config, width, height) = match codec {
            Codec::H264 => {
                let info = avc_sps(&sps)?;
                (Config::Avc { sps, pps, info }, info.width, info.height)
            }
            Codec::H265 => {
                let vps = parameter_set(codec, &sets.vps, NalKind::Vps, Fmp4Error::MissingVps)?;
                let info = hevc_sps(&sps)?;
                (Config::Hevc { vps, sps, pps, info }, info.width, info.height)
            }
        };
        let too_large = SpsError::TooLarge { width, height };
        let width = u16::try_from(width).map_err(|_| too_large.clone())?;
        let height = u16::try_from(height).map_err(|_| too_large)?;
        Ok(Track { width, height, config })
    }

    /// The codec of the track.
    pub fn codec(&self) -> Codec {
        match self.config {
            Config::Avc { .. } => Codec::H264,
            Config::Hevc { .. } => Codec::H265,
        }
    }

    /// The RFC 6381 codec string for `MediaSource.isTypeSupported` and `addSourceBuffer`:
    /// `avc1.PPCCLL`, or `hvc1.…` as ISO/IEC 14496-15 annex E spells it.
    pub fn codec_string(&self) -> String {
        match &self.config {
            Config::Avc { info, .. } => {
                let [profile, constraints, level] = info.profile;
                format!("avc1.{profile:02x}{constraints:02x}{level:02x}")
            }
            Config::Hevc { info, .. } => {
                let [head, c0, c1, c2, c3, flags @ .., level] = info.general;
                let space = ["", "A", "B", "C"].get(usize::from(head >> 6)).copied().unwrap_or("");
                let tier = if head & 0x20 == 0 { 'L' } else { 'H' };
                // The compatibility flags in reverse bit order, as hex without leading zeros.
                let compatibility = u32::from_be_bytes([c0, c1, c2, c3]).reverse_bits();
                let mut out =
                    format!("hvc1.{space}{}.{compatibility:X}.{tier}{level}", head & 0x1f);
                let used = flags.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
                for byte in flags.iter().take(used) {
                    out.push_str(&format!(".{byte:X}"));
                }
                out
            }
        }
    }

    /// Width of the picture, pixels (cropped as the SPS says).
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height of the picture, pixels (cropped as the SPS says).
    pub fn height(&self) -> u16 {
        self.height
    }

    /// The init segment: `ftyp` with the brands browsers expect of fragmented MP4, and a `moov`
    /// with one video track, its sample tables empty and `mvex` announcing fragments.
    pub fn init_segment(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(1_024);
        put_box(&mut out, b"ftyp", |out| {
            out.put_slice(b"iso5");
            out.put_u32(512);
            out.put_slice(b"iso5iso6mp41");
        });
        put_box(&mut out, b"moov", |out| {
            put_full_box(out, b"mvhd", 0, 0, |out| {
                out.put_u64(0); // creation and modification time
                out.put_u32(TIMESCALE);
                out.put_u32(0); // duration: unknown, fragments follow
                out.put_u32(0x0001_0000); // rate 1.0
                out.put_u16(0x0100); // volume 1.0
                out.put_bytes(0, 10);
                MATRIX.iter().for_each(|&m| out.put_u32(m));
                out.put_bytes(0, 24);
                out.put_u32(TRACK_ID + 1); // next_track_ID
            });
            put_box(out, b"trak", |out| self.put_trak(out));
            put_box(out, b"mvex", |out| {
                put_full_box(out, b"trex", 0, 0, |out| {
                    out.put_u32(TRACK_ID);
                    out.put_u32(1); // default_sample_description_index
                    out.put_bytes(0, 12); // default duration, size and flags: each trun has its own
                });
            });
        });
        out.freeze()
    }

    fn put_trak(&self, out: &mut BytesMut) {
        // Flags: track enabled, in movie.
        put_full_box(out, b"tkhd", 0, 0x000003, |out| {
            out.put_u64(0); // creation and modification time
            out.put_u32(TRACK_ID);
            out.put_u32(0);
            out.put_u32(0); // duration
            out.put_bytes(0, 8);
            out.put_u16(0); // layer
            out.put_u16(0); // alternate_group
            out.put_u16(0); // volume: not audio
            out.put_u16(0);
            MATRIX.iter().for_each(|&m| out.put_u32(m));
            out.put_u32(u32::from(self.width) << 16); // 16.16 fixed point
            out.put_u32(u32::from(self.height) << 16);
        });
        put_box(out, b"mdia", |out| {
            put_full_box(out, b"mdhd", 0, 0, |out| {
                out.put_u64(0); // creation and modification time
                out.put_u32(TIMESCALE);
                out.put_u32(0); // duration
                out.put_u16(0x55c4); // language "und"
                out.put_u16(0);
            });
            put_full_box(out, b"hdlr", 0, 0, |out| {
                out.put_u32(0);
                out.put_slice(b"vide");
                out.put_bytes(0, 12);
                out.put_slice(b"Hive\0");
            });
            put_box(out, b"minf", |out| {
                // Flags: 1, as the standard asks of vmhd.
                put_full_box(out, b"vmhd", 0, 1, |out| out.put_bytes(0, 8));
                put_box(out, b"dinf", |out| {
                    put_full_box(out, b"dref", 0, 0, |out| {
                        out.put_u32(1);
                        // Flags: 1, the media is in this file.
                        put_full_box(out, b"url ", 0, 1, |_| {});
                    });
                });
                put_box(out, b"stbl", |out| {
                    put_full_box(out, b"stsd", 0, 0, |out| {
                        out.put_u32(1);
                        self.put_sample_entry(out);
                    });
                    put_full_box(out, b"stts", 0, 0, |out| out.put_u32(0));
                    put_full_box(out, b"stsc", 0, 0, |out| out.put_u32(0));
                    put_full_box(out, b"stsz", 0, 0, |out| out.put_u64(0));
                    put_full_box(out, b"stco", 0, 0, |out| out.put_u32(0));
                });
            });
        });
    }

    fn put_sample_entry(&self, out: &mut BytesMut) {
        let entry = match self.config {
            Config::Avc { .. } => b"avc1",
            Config::Hevc { .. } => b"hvc1",
        };
        put_box(out, entry, |out| {
            out.put_bytes(0, 6);
            out.put_u16(1); // data_reference_index
            out.put_bytes(0, 16);
            out.put_u16(self.width);
            out.put_u16(self.height);
            out.put_u32(0x0048_0000); // 72 dpi
            out.put_u32(0x0048_0000);
            out.put_u32(0);
            out.put_u16(1); // frame_count
            out.put_bytes(0, 32); // compressorname
            out.put_u16(0x0018); // depth
            out.put_i16(-1);
            match &self.config {
                Config::Avc { sps, pps, info } => put_avcc(out, sps, pps, info),
                Config::Hevc { vps, sps, pps, info } => put_hvcc(out, [vps, sps, pps], info),
            }
        });
    }
}

/// The AVC decoder configuration record (ISO/IEC 14496-15 5.3.3).
fn put_avcc(out: &mut BytesMut, sps: &Bytes, pps: &Bytes, info: &AvcInfo) {
    put_box(out, b"avcC", |out| {
        out.put_u8(1); // configurationVersion
        out.put_slice(&info.profile);
        out.put_u8(0xfc | 3); // lengthSizeMinusOne: 4-byte prefixes
        out.put_u8(0xe0 | 1);
        put_nal(out, sps);
        out.put_u8(1);
        put_nal(out, pps);
        if AVC_HIGH_PROFILES.contains(&info.profile[0]) {
            out.put_u8(0xfc | info.chroma_format_idc);
            out.put_u8(0xf8 | info.bit_depth_luma_minus8);
            out.put_u8(0xf8 | info.bit_depth_chroma_minus8);
            out.put_u8(0); // numOfSequenceParameterSetExt
        }
    });
}

/// The HEVC decoder configuration record (ISO/IEC 14496-15 8.3.3).
fn put_hvcc(out: &mut BytesMut, sets: [&Bytes; 3], info: &HevcInfo) {
    put_box(out, b"hvcC", |out| {
        out.put_u8(1); // configurationVersion
        out.put_slice(&info.general);
        out.put_u16(0xf000); // min_spatial_segmentation_idc: none stated
        out.put_u8(0xfc); // parallelismType: unknown
        out.put_u8(0xfc | info.chroma_format_idc);
        out.put_u8(0xf8 | info.bit_depth_luma_minus8);
        out.put_u8(0xf8 | info.bit_depth_chroma_minus8);
        out.put_u16(0); // avgFrameRate: unknown
                        // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3.
        out.put_u8(info.temporal_layers << 3 | u8::from(info.temporal_id_nested) << 2 | 3);
        out.put_u8(3); // numOfArrays
        for (set, nal_type) in sets.into_iter().zip([32u8, 33, 34]) {
            // array_completeness: 1, as hvc1 requires; every set is here.
            out.put_u8(0x80 | nal_type);
            out.put_u16(1);
            put_nal(out, set);
        }
    });
}

/// A parameter set with its 16-bit length; [`Track::new`] bounds the length.
fn put_nal(out: &mut BytesMut, nal: &Bytes) {
    debug_assert!(nal.len() <= usize::from(u16::MAX));
    out.put_u16(nal.len() as u16);
    out.put_slice(nal);
}

/// One parameter set of `sets`, checked to be of `expected` kind and short enough for `avcC`.
fn parameter_set(
    codec: Codec,
    set: &Option<Bytes>,
    expected: NalKind,
    missing: Fmp4Error,
) -> Result<Bytes, Fmp4Error> {
    let set = set.as_ref().ok_or(missing)?;
    if kind(codec, set) != expected {
        return Err(Fmp4Error::WrongKind { expected });
    }
    if set.len() > usize::from(u16::MAX) {
        return Err(Fmp4Error::TooLong { kind: expected, len: set.len() });
    }
    Ok(set.clone())
}

/// Turns frames into fragments: one per stream played, since decode times count from the
/// stream's first frame.
#[derive(Debug, Clone)]
pub struct Fragmenter {
    timeline: Option<Timeline>,
    /// Duration of the next sample: the last interval between frames.
    duration_ticks: u32,
    /// Sequence number of the last fragment.
    sequence: u32,
}

/// Where the fragments so far put the stream on the track's timescale.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// The system time of decode time 0: the first frame's.
    start_us: i64,
    /// The system time of the last frame.
    last_us: i64,
    /// The decode time of the last frame.
    last_decode_ticks: u64,
}

impl Default for Fragmenter {
    fn default() -> Self {
        Fragmenter::new()
    }
}

impl Fragmenter {
    /// A fragmenter before the first frame.
    pub fn new() -> Self {
        Fragmenter { timeline: None, duration_ticks: DURATION_TICKS_DEFAULT, sequence: 0 }
    }

    /// The fragment of one frame: `moof` and an `mdat` holding the frame.
    ///
    /// Its decode time is the frame's time since the first frame; a frame whose time repeats
    /// or goes backwards comes one tick after the last instead, since decode times must grow.
    /// Its duration is the last interval between frames: the next frame is not waited for, so
    /// a viewer sees each frame one frame interval sooner. A frame over [`SAMPLE_MAX_BYTES`]
    /// (no camera sends one: RTP caps access units far lower) has no fragment: the result is
    /// empty.
    pub fn fragment(&mut self, frame: &Frame) -> Bytes {
        if frame.data.len() > SAMPLE_MAX_BYTES {
            return Bytes::new();
        }
        let decode_ticks = self.advance(frame.time_us);
        self.sequence = self.sequence.wrapping_add(1);
        let (sequence, duration_ticks) = (self.sequence, self.duration_ticks);
        let sample_flags = if frame.keyframe { SAMPLE_FLAGS_SYNC } else { SAMPLE_FLAGS_NON_SYNC };
        let mut out = BytesMut::with_capacity(128 + frame.data.len());
        let mut data_offset_at = 0;
        put_box(&mut out, b"moof", |out| {
            put_full_box(out, b"mfhd", 0, 0, |out| out.put_u32(sequence));
            put_box(out, b"traf", |out| {
                put_full_box(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |out| {
                    out.put_u32(TRACK_ID)
                });
                put_full_box(out, b"tfdt", 1, 0, |out| out.put_u64(decode_ticks));
                put_full_box(out, b"trun", 0, TRUN_FLAGS, |out| {
                    out.put_u32(1); // sample_count
                    data_offset_at = out.len();
                    out.put_u32(0); // data_offset, patched once the moof's size is known
                    out.put_u32(duration_ticks);
                    out.put_u32(frame.data.len() as u32); // bounded by SAMPLE_MAX_BYTES
                    out.put_u32(sample_flags);
                });
            });
        });
        // The sample starts after the moof and the mdat's 8-byte header.
        let data_offset = out.len() + 8;
        patch_size(&mut out, data_offset_at, data_offset);
        put_box(&mut out, b"mdat", |out| out.put_slice(&frame.data));
        out.freeze()
    }

    /// The system time (µs since the epoch) that decode time 0 stands for: the first frame's,
    /// once there was a fragment.
    pub fn start_us(&self) -> Option<i64> {
        self.timeline.map(|t| t.start_us)
    }

    /// The decode time of a frame at `time_us`; updates the sample duration from the interval
    /// since the last frame.
    fn advance(&mut self, time_us: i64) -> u64 {
        let Some(last) = self.timeline else {
            self.timeline =
                Some(Timeline { start_us: time_us, last_us: time_us, last_decode_ticks: 0 });
            return 0;
        };
        let since_start_ticks = ticks_of_us(i128::from(time_us) - i128::from(last.start_us));
        let decode_ticks = if since_start_ticks > i128::from(last.last_decode_ticks) {
            // Positive and at most 9/100 of the span of i64: it fits.
            u64::try_from(since_start_ticks).unwrap_or(u64::MAX)
        } else {
            last.last_decode_ticks.saturating_add(1)
        };
        debug_assert!(decode_ticks > last.last_decode_ticks);
        let interval_us = i128::from(time_us) - i128::from(last.last_us);
        if interval_us > 0 {
            let ticks = ticks_of_us(interval_us)
                .clamp(i128::from(DURATION_TICKS_MIN), i128::from(DURATION_TICKS_MAX));
            self.duration_ticks = ticks as u32; // clamped into u32 above
        }
        self.timeline = Some(Timeline {
            start_us: last.start_us,
            last_us: time_us,
            last_decode_ticks: decode_ticks,
        });
        decode_ticks
    }
}

/// `us` microseconds on the track's timescale, rounded toward zero.
fn ticks_of_us(us: i128) -> i128 {
    us * i128::from(TIMESCALE) / US_PER_S
}

/// Appends one box: a size placeholder, the type, what `body` writes, then the size patched in.
fn put_box(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    let size = out.len() - start;
    patch_size(out, start, size);
}

/// Appends a full box: a box whose body starts with a version and 24 bits of flags.
fn put_full_box(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    debug_assert!(flags >> 24 == 0);
    put_box(out, kind, |out| {
        out.put_u32(u32::from(version) << 24 | flags);
        body(out);
    });
}

/// Writes `value` as a 32-bit size or offset at `at`, which a `put_u32(0)` reserved.
fn patch_size(out: &mut BytesMut, at: usize, value: usize) {
    // Every box is bounded: parameter sets by 16-bit lengths, samples by SAMPLE_MAX_BYTES.
    let value = u32::try_from(value).expect("an MP4 box of over 4 GiB");
    out[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// `nal` without its emulation prevention bytes (the 3 of each `00 00 03`).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros == 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { (zeros + 1).min(2) } else { 0 };
        out.push(byte);
    }
    out
}

/// The fields of an H.264 SPS (NAL header included) that a track needs.
fn avc_sps(nal: &[u8]) -> Result<AvcInfo, SpsError> {
    use h264_reader::nal::sps::ChromaFormat;
    use h264_reader::rbsp::BitReader;
    let rbsp = rbsp(nal);
    let body = rbsp.get(1..).ok_or(SpsError::Truncated)?;
    let profile: [u8; 3] =
        body.get(..3).and_then(|p| p.try_into().ok()).ok_or(SpsError::Truncated)?;
    let sps = SeqParameterSet::from_bits(BitReader::new(body)).map_err(avc_sps_error)?;
    let (width, height) = sps.pixel_dimensions().map_err(avc_sps_error)?;
    let chroma = &sps.chroma_info;
    let chroma_format_idc = match chroma.chroma_format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(_) => return Err(SpsError::Invalid { field: "chroma_format_idc" }),
    };
    let bit_depth =
        |minus8: u8, field| if minus8 <= 7 { Ok(minus8) } else { Err(SpsError::Invalid { field }) };
    Ok(AvcInfo {
        profile,
        chroma_format_idc,
        bit_depth_luma_minus8: bit_depth(chroma.bit_depth_luma_minus8, "bit_depth_luma_minus8")?,
        bit_depth_chroma_minus8: bit_depth(
            chroma.bit_depth_chroma_minus8,
            "bit_depth_chroma_minus8",
        )?,
        width,
        height,
    })
}

/// An `h264-reader` SPS error as ours: running out of bits, or the field that is wrong.
fn avc_sps_error(error: h264_reader::nal::sps::SpsError) -> SpsError {
    use h264_reader::nal::sps::{PicOrderCntError, ScalingMatrixError, SpsError as E};
    use h264_reader::rbsp::BitReaderError as R;
    let field = match error {
        E::RbspReaderError(R::ReaderErrorFor(..))
        | E::PicOrderCnt(PicOrderCntError::ReaderError(R::ReaderErrorFor(..)))
        | E::ScalingMatrix(ScalingMatrixError::ReaderError(R::ReaderErrorFor(..))) => {
            return SpsError::Truncated
        }
        E::RbspReaderError(R::ExpGolombTooLarge(field)) => field,
        E::RbspReaderError(R::RemainingData | R::Unaligned) => "rbsp_trailing_bits",
        E::FieldValueTooLarge { name, .. } | E::FieldValueTooSmall { name, .. } => name,
        E::BitDepthOutOfRange(_) => "bit_depth_luma_minus8",
        E::PicOrderCnt(_) => "pic_order_cnt_type",
        E::ScalingMatrix(_) => "seq_scaling_matrix",
        E::Log2MaxFrameNumMinus4OutOfRange(_) => "log2_max_frame_num_minus4",
        E::BadSeqParamSetId(_) | E::UnknownSeqParamSetId(_) => "seq_parameter_set_id",
        E::CroppingError(_) => "frame_cropping",
        E::CpbCountOutOfRange(_) => "cpb_cnt_minus1",
    };
    SpsError::Invalid { field }
}

/// The fields of an H.265 SPS (NAL header included) that a track needs: the start of
/// `seq_parameter_set_rbsp` (H.265 7.3.2.2) up to the bit depths.
fn hevc_sps(nal: &[u8]) -> Result<HevcInfo, SpsError> {
    let rbsp = rbsp(nal);
    // The 2-byte NAL header, a byte of VPS id, sub-layer count and nesting flag, then the
    // general profile_tier_level, byte-aligned.
    let general: [u8; 12] =
        rbsp.get(3..15).and_then(|g| g.try_into().ok()).ok_or(SpsError::Truncated)?;
    let mut bits = Bits { rbsp: &rbsp, at_bit: 16 };
    bits.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = bits.read(3)?;
    if max_sub_layers_minus1 > 6 {
        return Err(SpsError::Invalid { field: "sps_max_sub_layers_minus1" });
    }
    let temporal_id_nested = bits.read(1)? == 1;
    bits.skip(96)?; // the general profile_tier_level, taken above
    let sub_layers = max_sub_layers_minus1 as usize;
    let mut present = [(false, false); 6];
    for (profile, level) in present.iter_mut().take(sub_layers) {
        *profile = bits.read(1)? == 1;
        *level = bits.read(1)? == 1;
    }
    if sub_layers > 0 {
        bits.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for &(profile, level) in present.iter().take(sub_layers) {
        bits.skip(if profile { 88 } else { 0 } + if level { 8 } else { 0 })?;
    }
    if bits.ue("sps_seq_parameter_set_id")? > 15 {
        return Err(SpsError::Invalid { field: "sps_seq_parameter_set_id" });
    }
    let chroma_format_idc = bits.ue("chroma_format_idc")?;
    if chroma_format_idc > 3 {
        return Err(SpsError::Invalid { field: "chroma_format_idc" });
    }
    let separate_colour_plane = chroma_format_idc == 3 && bits.read(1)? == 1;
    let coded_width = bits.ue("pic_width_in_luma_samples")?;
    let coded_height = bits.ue("pic_height_in_luma_samples")?;
    let [left, right, top, bottom] = if bits.read(1)? == 1 {
        [
            bits.ue("conf_win_left_offset")?,
            bits.ue("conf_win_right_offset")?,
            bits.ue("conf_win_top_offset")?,
            bits.ue("conf_win_bottom_offset")?,
        ]
    } else {
        [0; 4]
    };
    let bit_depth_luma_minus8 = bits.ue("bit_depth_luma_minus8")?;
    let bit_depth_chroma_minus8 = bits.ue("bit_depth_chroma_minus8")?;
    // Conformance window offsets count chroma samples (H.265 table 6-1).
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
        (1, false) => (2, 2),
        (2, false) => (2, 1),
        _ => (1, 1),
    };
    let cropped = |coded: u32, a: u32, b: u32, sub: u64, field| {
        let crop = sub * (u64::from(a) + u64::from(b));
        u64::from(coded)
            .checked_sub(crop)
            .filter(|&size| size > 0)
            .and_then(|size| u32::try_from(size).ok())
            .ok_or(SpsError::Invalid { field })
    };
    let small = |value: u32, max: u32, field| {
        u8::try_from(value).ok().filter(|&v| u32::from(v) <= max).ok_or(SpsError::Invalid { field })
    };
    Ok(HevcInfo {
        general,
        chroma_format_idc: small(chroma_format_idc, 3, "chroma_format_idc")?,
        bit_depth_luma_minus8: small(bit_depth_luma_minus8, 7, "bit_depth_luma_minus8")?,
        bit_depth_chroma_minus8: small(bit_depth_chroma_minus8, 7, "bit_depth_chroma_minus8")?,
        temporal_layers: small(max_sub_layers_minus1 + 1, 7, "sps_max_sub_layers_minus1")?,
        temporal_id_nested,
        width: cropped(coded_width, left, right, sub_width, "pic_width_in_luma_samples")?,
        height: cropped(coded_height, top, bottom, sub_height, "pic_height_in_luma_samples")?,
    })
}

/// Reads an RBSP bit by bit, most significant first.
struct Bits<'a> {
    rbsp: &'a [u8],
    at_bit: usize,
}

impl Bits<'_> {
    /// The next `count` bits (at most 32) as a number.
    fn read(&mut self, count: u32) -> Result<u32, SpsError> {
        debug_assert!(count <= 32);
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.rbsp.get(self.at_bit / 8).ok_or(SpsError::Truncated)?;
            let bit = byte >> (7 - self.at_bit % 8) & 1;
            value = value << 1 | u32::from(bit);
            self.at_bit += 1;
        }
        Ok(value)
    }

    fn skip(&mut self, count: u32) -> Result<(), SpsError> {
        let at_bit = self.at_bit.saturating_add(count as usize);
        if at_bit > self.rbsp.len().saturating_mul(8) {
            return Err(SpsError::Truncated);
        }
        self.at_bit = at_bit;
        Ok(())
    }

    /// An unsigned Exp-Golomb number, `ue(v)`; one of over 32 bits is out of range.
    fn ue(&mut self, field: &'static str) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::Invalid { field });
            }
        }
        let value = (1u64 << zeros) - 1 + u64::from(self.read(zeros)?);
        u32::try_from(value).map_err(|_| SpsError::Invalid { field })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nal::join_length_prefixed;
    use proptest::prelude::*;

    /// The parameter sets of `shell/assets/testclip.h264` (640x360 Constrained Baseline).
    const AVC_SPS: &str = "6742c01eda0280bfe5c044000003000400000300ca3c58ba80";
    const AVC_PPS: &str = "68ce3c80";
    /// The parameter sets of `shell/assets/testclip.h265` (640x360 Main).
    const HEVC_VPS: &str = "40010c01ffff01600000030090000003000003003fba0240";
    const HEVC_SPS: &str =
        "42010101600000030090000003000003003fa00502016965ba924caf016808000003000800000300c840";
    const HEVC_PPS: &str = "4401c172b46240";

    fn hex(s: &str) -> Bytes {
        let byte = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
        (0..s.len()).step_by(2).map(byte).collect()
    }

    fn avc_track() -> Track {
        let sets = ParameterSets { vps: None, sps: Some(hex(AVC_SPS)), pps: Some(hex(AVC_PPS)) };
        Track::new(Codec::H264, &sets).unwrap()
    }

    fn hevc_track() -> Track {
        let sets = ParameterSets {
            vps: Some(hex(HEVC_VPS)),
            sps: Some(hex(HEVC_SPS)),
            pps: Some(hex(HEVC_PPS)),
        };
        Track::new(Codec::H265, &sets).unwrap()
    }

    fn frame(time_us: i64, keyframe: bool) -> Frame {
        let data = join_length_prefixed([&[0x65u8, 0x88, 0x84][..]]);
        Frame { time_us, keyframe, codec: Codec::H264, data }
    }

    /// The boxes of `buf` by path ("moov/trak/tkhd") with their bodies, in order. Panics unless
    /// every box's size adds up: children fill their parent exactly, boxes fill `buf` exactly.
    fn walk(buf: &[u8]) -> Vec<(String, &[u8])> {
        fn go<'a>(buf: &'a [u8], parent: &str, out: &mut Vec<(String, &'a [u8])>) {
            let mut rest = buf;
            while !rest.is_empty() {
                assert!(rest.len() >= 8, "{} bytes left in {parent:?}", rest.len());
                let size = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                let kind = std::str::from_utf8(&rest[4..8]).unwrap();
                assert!((8..=rest.len()).contains(&size), "{kind} of {size} in {}", rest.len());
                let body = &rest[8..size];
                let path =
                    if parent.is_empty() { kind.to_owned() } else { format!("{parent}/{kind}") };
                out.push((path.clone(), body));
                let children_at = match kind {
                    "moov" | "trak" | "mdia" | "minf" | "dinf" | "stbl" | "mvex" | "moof"
                    | "traf" => Some(0),
                    "dref" | "stsd" => Some(8),
                    "avc1" | "hvc1" => Some(78),
                    _ => None,
                };
                if let Some(at) = children_at {
                    go(&body[at..], &path, out);
                }
                rest = &rest[size..];
            }
        }
        let mut out = Vec::new();
        go(buf, "", &mut out);
        out
    }

    fn body<'a>(boxes: &[(String, &'a [u8])], path: &str) -> &'a [u8] {
        boxes.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("no {path}")).1
    }

    fn u32_at(body: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(body[at..at + 4].try_into().unwrap())
    }

    /// The trun's one sample: data offset, duration, size and flags.
    fn sample(boxes: &[(String, &[u8])]) -> [u32; 4] {
        let trun = body(boxes, "moof/traf/trun");
        assert_eq!(u32_at(trun, 4), 1, "one sample");
        [u32_at(trun, 8), u32_at(trun, 12), u32_at(trun, 16), u32_at(trun, 20)]
    }

    fn decode_ticks(boxes: &[(String, &[u8])]) -> u64 {
        let tfdt = body(boxes, "moof/traf/tfdt");
        assert_eq!(tfdt[0], 1, "version 1: 64-bit time");
        u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
    }

    #[test]
    fn init_segments_are_boxes_that_add_up_to_the_buffer() {
        for (track, entry) in [(avc_track(), "avc1/avcC"), (hevc_track(), "hvc1/hvcC")] {
            let init = track.init_segment();
            let boxes = walk(&init);
            let paths: Vec<&str> = boxes.iter().map(|(p, _)| p.as_str()).collect();
            let stbl = "moov/trak/mdia/minf/stbl";
            let config = format!("{stbl}/stsd/{entry}");
            for path in ["ftyp", "moov/mvhd", "moov/trak/tkhd", "moov/trak/mdia/mdhd"]
                .into_iter()
                .chain(["moov/trak/mdia/hdlr", "moov/trak/mdia/minf/vmhd"])
                .chain(["moov/trak/mdia/minf/dinf/dref/url ", &config, "moov/mvex/trex"])
            {
                assert!(paths.contains(&path), "{path} missing from {paths:?}");
            }
            assert_eq!(&body(&boxes, "ftyp")[..4], b"iso5");
            assert_eq!(u32_at(body(&boxes, "moov/trak/mdia/mdhd"), 12), TIMESCALE);
            assert_eq!(&body(&boxes, "moov/trak/mdia/hdlr")[8..12], b"vide");
            let tkhd = body(&boxes, "moov/trak/tkhd");
            assert_eq!([u32_at(tkhd, 76), u32_at(tkhd, 80)], [640 << 16, 360 << 16]);
        }
    }

    #[test]
    fn avcc_holds_the_profile_and_both_parameter_sets() {
        let init = avc_track().init_segment();
        let boxes = walk(&init);
        let avcc = body(&boxes, "moov/trak/mdia/minf/stbl/stsd/avc1/avcC");
        let (sps, pps) = (hex(AVC_SPS), hex(AVC_PPS));
        let mut expected = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.len() as u8];
        expected.extend_from_slice(&sps);
        expected.extend_from_slice(&[1, 0, pps.len() as u8]);
        expected.extend_from_slice(&pps);
        assert_eq!(avcc, expected);
    }

    #[test]
    fn hvcc_copies_the_general_profile_without_emulation_prevention() {
        let init = hevc_track().init_segment();
        let boxes = walk(&init);
        let hvcc = body(&boxes, "moov/trak/mdia/minf/stbl/stsd/hvc1/hvcC");
        // Main profile, compatible with Main and Main 10, progressive frames, level 2.1.
        let general = [0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x3f];
        assert_eq!(hvcc[1..13], general);
        assert_eq!(hvcc[16], 0xfc | 1, "4:2:0");
        assert_eq!(hvcc[21] & 0x3b, 1 << 3 | 3, "one temporal layer, 4-byte lengths");
        assert_eq!(hvcc[22], 3, "VPS, SPS and PPS arrays");
        let vps = hex(HEVC_VPS);
        assert_eq!(hvcc[23..26], [0x80 | 32, 0, 1]);
        assert_eq!(hvcc[28..28 + vps.len()], vps[..]);
    }

    #[test]
    fn codec_strings_come_from_the_sps() {
        assert_eq!(avc_track().codec_string(), "avc1.42c01e");
        assert_eq!(hevc_track().codec_string(), "hvc1.1.6.L63.90");
    }

    #[test]
    fn width_and_height_come_from_the_clips_sps() {
        for track in [avc_track(), hevc_track()] {
            assert_eq!((track.width(), track.height()), (640, 360), "{:?}", track.codec());
        }
    }

    #[test]
    fn a_missing_or_misplaced_parameter_set_is_a_typed_error() {
        let sets = ParameterSets { vps: None, sps: Some(hex(AVC_SPS)), pps: Some(hex(AVC_PPS)) };
        let without = |change: fn(&mut ParameterSets)| {
            let mut sets = sets.clone();
            change(&mut sets);
            sets
        };
        let no_sps = without(|s| s.sps = None);
        assert_eq!(Track::new(Codec::H264, &no_sps), Err(Fmp4Error::MissingSps));
        let no_pps = without(|s| s.pps = None);
        assert_eq!(Track::new(Codec::H264, &no_pps), Err(Fmp4Error::MissingPps));
        assert_eq!(
            Track::new(Codec::H265, &sets),
            Err(Fmp4Error::WrongKind { expected: NalKind::Sps })
        );
        let swapped = without(|s| std::mem::swap(&mut s.sps, &mut s.pps));
        assert_eq!(
            Track::new(Codec::H264, &swapped),
            Err(Fmp4Error::WrongKind { expected: NalKind::Sps })
        );
        let hevc_without_vps = ParameterSets { vps: None, ..hevc_sets() };
        assert_eq!(Track::new(Codec::H265, &hevc_without_vps), Err(Fmp4Error::MissingVps));
        let cut = without(|s| s.sps = Some(hex(&AVC_SPS[..12])));
        assert_eq!(Track::new(Codec::H264, &cut), Err(Fmp4Error::BadSps(SpsError::Truncated)));
    }

    fn hevc_sets() -> ParameterSets {
        ParameterSets {
            vps: Some(hex(HEVC_VPS)),
            sps: Some(hex(HEVC_SPS)),
            pps: Some(hex(HEVC_PPS)),
        }
    }

    #[test]
    fn a_fragment_is_boxes_whose_data_offset_points_at_the_frame() {
        let mut fragmenter = Fragmenter::new();
        let frame = frame(1_000, true);
        let fragment = fragmenter.fragment(&frame);
        let boxes = walk(&fragment);
        let paths: Vec<&str> = boxes.iter().map(|(p, _)| p.as_str()).collect();
        let expected = ["moof", "moof/mfhd", "moof/traf", "moof/traf/tfhd", "moof/traf/tfdt"];
        assert_eq!(paths, [&expected[..], &["moof/traf/trun", "mdat"]].concat());
        assert_eq!(u32_at(body(&boxes, "moof/traf/tfhd"), 0), TFHD_DEFAULT_BASE_IS_MOOF);
        let [data_offset, _, size, _] = sample(&boxes);
        assert_eq!(size as usize, frame.data.len());
        let at = data_offset as usize;
        assert_eq!(fragment[at..at + frame.data.len()], frame.data[..]);
        assert_eq!(at + frame.data.len(), fragment.len());
        assert_eq!(fragmenter.start_us(), Some(1_000));
    }

    #[test]
    fn sequence_numbers_count_fragments_from_one() {
        let mut fragmenter = Fragmenter::new();
        for n in 1..=3 {
            let fragment = fragmenter.fragment(&frame(n * 40_000, false));
            assert_eq!(u32_at(body(&walk(&fragment), "moof/mfhd"), 4), n as u32);
        }
    }

    #[test]
    fn keyframes_are_sync_samples_and_others_are_not() {
        let mut fragmenter = Fragmenter::new();
        let flags = |fragmenter: &mut Fragmenter, keyframe| {
            sample(&walk(&fragmenter.fragment(&frame(0, keyframe))))[3]
        };
        assert_eq!(flags(&mut fragmenter, true), 0x0200_0000);
        assert_eq!(flags(&mut fragmenter, false), 0x0101_0000);
    }

    #[test]
    fn decode_times_grow_even_when_frame_times_repeat_or_go_backwards() {
        let start_us = 1_700_000_000_000_000;
        let offsets_us = [0, 40_000, 80_000, 80_000, 60_000, 120_000, 160_000];
        let mut fragmenter = Fragmenter::new();
        let ticks: Vec<u64> = offsets_us
            .iter()
            .map(|offset_us| {
                decode_ticks(&walk(&fragmenter.fragment(&frame(start_us + offset_us, false))))
            })
            .collect();
        assert_eq!(ticks, [0, 3_600, 7_200, 7_201, 7_202, 10_800, 14_400]);
        assert_eq!(fragmenter.start_us(), Some(start_us));
    }

    #[test]
    fn sample_duration_is_the_last_interval_clamped_and_one_25th_of_a_second_at_first() {
        let mut fragmenter = Fragmenter::new();
        let mut duration = |time_us| sample(&walk(&fragmenter.fragment(&frame(time_us, false))))[1];
        assert_eq!(duration(0), 3_600, "1/25 s before an interval");
        assert_eq!(duration(33_333), 2_999);
        assert_eq!(duration(33_333), 2_999, "a repeated time keeps the last interval");
        assert_eq!(duration(33_433), 90, "at least 1 ms");
        assert_eq!(duration(10_000_000), 90_000, "at most 1 s");
    }

    proptest! {
        #[test]
        fn any_parameter_set_bytes_give_a_track_or_an_error(
            codec_h265 in any::<bool>(),
            headed in any::<bool>(),
            vps in proptest::collection::vec(any::<u8>(), 0..64),
            sps in proptest::collection::vec(any::<u8>(), 0..96),
            pps in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let codec = if codec_h265 { Codec::H265 } else { Codec::H264 };
            // With right NAL headers the bytes reach the SPS parsers.
            let head = |h265: &[u8], h264: &[u8], rest: Vec<u8>| -> Bytes {
                let header = if !headed { &[][..] } else if codec_h265 { h265 } else { h264 };
                [header, &rest].concat().into()
            };
            let sets = ParameterSets {
                vps: Some(head(&[0x40, 0x01], &[], vps)),
                sps: Some(head(&[0x42, 0x01], &[0x67], sps)),
                pps: Some(head(&[0x44, 0x01], &[0x68], pps)),
            };
            if let Ok(track) = Track::new(codec, &sets) {
                walk(&track.init_segment());
                prop_assert!(track.codec_string().starts_with(["avc1.", "hvc1."][usize::from(codec_h265)]));
            }
        }

        #[test]
        fn a_damaged_real_sps_gives_a_track_or_an_error(
            codec_h265 in any::<bool>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            keep in any::<prop::sample::Index>(),
        ) {
            let (codec, mut sets) = if codec_h265 {
                (Codec::H265, hevc_sets())
            } else {
                (Codec::H264, ParameterSets { vps: None, sps: Some(hex(AVC_SPS)), pps: Some(hex(AVC_PPS)) })
            };
            let mut sps = sets.sps.take().unwrap().to_vec();
            // Keep the NAL header so the damage reaches the parser.
            let at = 1 + at.index(sps.len() - 1);
            sps[at] = byte;
            sps.truncate(1 + keep.index(sps.len()));
            sets.sps = Some(sps.into());
            if let Ok(track) = Track::new(codec, &sets) {
                walk(&track.init_segment());
            }
        }

        #[test]
        fn decode_times_strictly_grow_for_any_frame_times(
            times_us in proptest::collection::vec(any::<i64>(), 1..32),
        ) {
            let mut fragmenter = Fragmenter::new();
            let mut last = None;
            for time_us in times_us {
                let boxes_of = fragmenter.fragment(&frame(time_us, false));
                let ticks = decode_ticks(&walk(&boxes_of));
                prop_assert!(last.is_none_or(|last| ticks > last));
                last = Some(ticks);
            }
        }
    }
}
