//! One archive record: a frame with its time, flags and checksums, laid out so that a scanner
//! can find the next record after damage and tell a damaged frame from garbage.
//!
//! Layout, little-endian, [`RECORD_HEADER_LEN`] bytes then the payload, padded with zeros to a
//! multiple of [`RECORD_ALIGN`]:
//!
//! | offset | field         | type | meaning                                                   |
//! |-------:|---------------|------|-----------------------------------------------------------|
//! | 0      | marker        | u32  | [`RECORD_MARKER`], where the scanner resynchronizes        |
//! | 4      | `payload_len` | u32  | payload bytes, at most [`PAYLOAD_MAX_BYTES`]               |
//! | 8      | `time_us`     | i64  | system time of the frame, µs since the Unix epoch          |
//! | 16     | flags         | u32  | bit 0 keyframe, bits 8..16 [`Codec::code`], others zero    |
//! | 20     | crc32         | u32  | of `payload_len`, `time_us`, flags and the payload         |
//! | 24     | reserved      | u32  | zero                                                       |
//! | 28     | `header_crc`  | u32  | of bytes 0..28                                             |
//!
//! The header has its own checksum so that a scanner can trust `payload_len` before it reads
//! the payload: a record whose header checks out but whose payload does not is exactly one
//! damaged frame, skipped whole, and a scan checksums every byte at most once.

use crate::frame::{Codec, Frame};
use bytes::Bytes;
use thiserror::Error;

/// Marks the start of a record ("HVRC").
pub const RECORD_MARKER: u32 = u32::from_le_bytes(*b"HVRC");
/// Bytes of a record before its payload.
pub const RECORD_HEADER_LEN: usize = 32;
/// Records start and end at multiples of this many bytes (of the segment).
pub const RECORD_ALIGN: usize = 8;
/// The largest payload a record holds: a damaged length never sends a reader far.
pub const PAYLOAD_MAX_BYTES: usize = 16 << 20;

const FLAG_KEYFRAME: u32 = 1;
const FLAGS_KNOWN: u32 = FLAG_KEYFRAME | 0xff00;

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    /// Fewer bytes than the record needs (a header, or a header and its payload).
    #[error("{have_bytes} bytes left where the record needs {need_bytes}")]
    Truncated {
        /// Bytes the record needs.
        need_bytes: usize,
        /// Bytes there are.
        have_bytes: usize,
    },
    /// No record marker: not the start of a record (zeros, garbage, the middle of a payload).
    #[error("no record marker")]
    NoMarker,
    /// The header's own checksum does not match: its fields cannot be trusted.
    #[error("record header checksum mismatch")]
    HeaderChecksum,
    /// A payload length over [`PAYLOAD_MAX_BYTES`].
    #[error("payload of {payload_len} bytes over the bound")]
    PayloadTooLong {
        /// The length the header states.
        payload_len: u32,
    },
    /// Flags this version does not know (or a reserved field that is not zero).
    #[error("unknown record flags {flags:#x}")]
    UnknownFlags {
        /// The flags.
        flags: u32,
    },
    /// A codec code this version does not know.
    #[error("unknown codec code {code}")]
    UnknownCodec {
        /// The code.
        code: u8,
    },
    /// The header is intact but the payload (or the fields the record checksum covers) is not.
    #[error("record checksum mismatch")]
    Checksum,
}

/// Why a frame cannot be written as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The frame is larger than a record may hold.
    #[error("frame of {payload_len} bytes over the record bound of {PAYLOAD_MAX_BYTES}")]
    FrameTooLarge {
        /// Bytes of the frame.
        payload_len: usize,
    },
    /// The output is shorter than [`record_len`] of the frame.
    #[error("{have_bytes} bytes of room for a record of {need_bytes}")]
    NoRoom {
        /// Bytes the record takes.
        need_bytes: usize,
        /// Bytes of room.
        have_bytes: usize,
    },
}

/// What a record's header says, once its checksum held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Frame time, µs since the Unix epoch.
    pub time_us: i64,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
    /// The frame's codec.
    pub codec: Codec,
    /// Payload bytes.
    pub payload_len: usize,
    crc: u32,
    flags: u32,
}

impl RecordHeader {
    /// Bytes the whole record takes, padding included.
    pub fn record_len(&self) -> usize {
        record_len(self.payload_len)
    }

    /// Checks `payload` (exactly [`RecordHeader::payload_len`] bytes) against the record
    /// checksum.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), RecordError> {
        if payload.len() != self.payload_len {
            return Err(RecordError::Truncated {
                need_bytes: self.payload_len,
                have_bytes: payload.len(),
            });
        }
        if record_crc(self.payload_len as u32, self.time_us, self.flags, payload) != self.crc {
            return Err(RecordError::Checksum);
        }
        Ok(())
    }
}

/// Rounds `len` up to the record alignment.
pub fn aligned(len: usize) -> usize {
    len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Bytes a record of `payload_len` payload bytes takes, padding included.
pub fn record_len(payload_len: usize) -> usize {
    aligned(RECORD_HEADER_LEN + payload_len)
}

fn record_crc(payload_len: u32, time_us: i64, flags: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&payload_len.to_le_bytes());
    h.update(&time_us.to_le_bytes());
    h.update(&flags.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Writes `frame` as a record at the start of `out`; returns the bytes written
/// ([`record_len`] of the payload). Padding is zeroed.
pub fn encode(frame: &Frame, out: &mut [u8]) -> Result<usize, EncodeError> {
    let payload = &frame.data[..];
    if payload.len() > PAYLOAD_MAX_BYTES {
        return Err(EncodeError::FrameTooLarge { payload_len: payload.len() });
    }
    let total = record_len(payload.len());
    if out.len() < total {
        return Err(EncodeError::NoRoom { need_bytes: total, have_bytes: out.len() });
    }
    let payload_len = payload.len() as u32;
    let flags = (u32::from(frame.keyframe) * FLAG_KEYFRAME) | (u32::from(frame.codec.code()) << 8);
    let head = &mut out[..RECORD_HEADER_LEN];
    head[0..4].copy_from_slice(&RECORD_MARKER.to_le_bytes());
    head[4..8].copy_from_slice(&payload_len.to_le_bytes());
    head[8..16].copy_from_slice(&frame.time_us.to_le_bytes());
    head[16..20].copy_from_slice(&flags.to_le_bytes());
    let crc = record_crc(payload_len, frame.time_us, flags, payload);
    head[20..24].copy_from_slice(&crc.to_le_bytes());
    head[24..28].fill(0);
    let header_crc = crc32fast::hash(&head[..28]);
    head[28..32].copy_from_slice(&header_crc.to_le_bytes());
    let end = RECORD_HEADER_LEN + payload.len();
    out[RECORD_HEADER_LEN..end].copy_from_slice(payload);
    out[end..total].fill(0);
    debug_assert_eq!(decode_header(out).map(|h| h.record_len()), Ok(total));
    Ok(total)
}

/// Reads the header of the record at the start of `bytes` (the payload is not checked).
/// Constant time: this is what a scanner tries at every offset of a damaged region.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    let Some(head) = bytes.get(..RECORD_HEADER_LEN) else {
        return Err(RecordError::Truncated {
            need_bytes: RECORD_HEADER_LEN,
            have_bytes: bytes.len(),
        });
    };
    if u32_at(head, 0) != RECORD_MARKER {
        return Err(RecordError::NoMarker);
    }
    if crc32fast::hash(&head[..28]) != u32_at(head, 28) {
        return Err(RecordError::HeaderChecksum);
    }
    let payload_len = u32_at(head, 4);
    if payload_len as usize > PAYLOAD_MAX_BYTES {
        return Err(RecordError::PayloadTooLong { payload_len });
    }
    let flags = u32_at(head, 16);
    if flags & !FLAGS_KNOWN != 0 || u32_at(head, 24) != 0 {
        return Err(RecordError::UnknownFlags { flags });
    }
    let code = (flags >> 8) as u8;
    let codec = Codec::from_code(code).ok_or(RecordError::UnknownCodec { code })?;
    let mut time = [0u8; 8];
    time.copy_from_slice(&head[8..16]);
    Ok(RecordHeader {
        time_us: i64::from_le_bytes(time),
        keyframe: flags & FLAG_KEYFRAME != 0,
        codec,
        payload_len: payload_len as usize,
        crc: u32_at(head, 20),
        flags,
    })
}

/// Reads the header of the record at the start of `bytes` and checks its payload, without
/// copying it.
pub fn check(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    let header = decode_header(bytes)?;
    let payload = payload_of(&header, bytes)?;
    header.check_payload(payload)?;
    Ok(header)
}

fn payload_of<'a>(header: &RecordHeader, bytes: &'a [u8]) -> Result<&'a [u8], RecordError> {
    let end = RECORD_HEADER_LEN + header.payload_len;
    bytes
        .get(RECORD_HEADER_LEN..end)
        .ok_or(RecordError::Truncated { need_bytes: end, have_bytes: bytes.len() })
}

/// Reads the whole record at the start of `bytes`: its header and its frame. The payload is
/// copied first and the copy is checked, so the frame returned is the one that was written
/// even if the bytes change underneath.
pub fn decode(bytes: &[u8]) -> Result<(RecordHeader, Frame), RecordError> {
    let header = decode_header(bytes)?;
    let payload = Bytes::copy_from_slice(payload_of(&header, bytes)?);
    header.check_payload(&payload)?;
    let frame = Frame {
        time_us: header.time_us,
        keyframe: header.keyframe,
        codec: header.codec,
        data: payload,
    };
    Ok((header, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(time_us: i64, keyframe: bool, codec: Codec, data: Vec<u8>) -> Frame {
        Frame { time_us, keyframe, codec, data: Bytes::from(data) }
    }

    fn encoded(f: &Frame) -> Vec<u8> {
        let mut out = vec![0xaa; record_len(f.data.len())];
        assert_eq!(encode(f, &mut out), Ok(out.len()));
        out
    }

    proptest! {
        #[test]
        fn a_record_round_trips(
            time_us in any::<i64>(),
            keyframe in any::<bool>(),
            h265 in any::<bool>(),
            data in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let codec = if h265 { Codec::H265 } else { Codec::H264 };
            let f = frame(time_us, keyframe, codec, data);
            let bytes = encoded(&f);
            prop_assert_eq!(bytes.len() % RECORD_ALIGN, 0);
            let (header, back) = decode(&bytes).unwrap();
            prop_assert_eq!(back, f.clone());
            prop_assert_eq!(header.record_len(), bytes.len());
            // Padding is zeroed, whatever the buffer held.
            prop_assert!(bytes[RECORD_HEADER_LEN + f.data.len()..].iter().all(|&b| b == 0));
        }

        #[test]
        fn any_flipped_bit_before_the_padding_is_caught(
            data in prop::collection::vec(any::<u8>(), 1..300),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let f = frame(1_700_000_000_000_000, true, Codec::H264, data);
            let mut bytes = encoded(&f);
            let at = at.index(RECORD_HEADER_LEN + f.data.len());
            bytes[at] ^= 1 << bit;
            let header_damaged = at < RECORD_HEADER_LEN;
            match decode(&bytes) {
                Err(RecordError::Checksum) => prop_assert!(!header_damaged),
                Err(_) => prop_assert!(header_damaged),
                Ok(_) => prop_assert!(false, "a flipped bit at {} passed", at),
            }
        }
    }

    #[test]
    fn a_short_buffer_or_an_oversized_frame_is_refused() {
        let f = frame(5, false, Codec::H265, vec![1; 100]);
        let mut out = vec![0; record_len(100) - 1];
        assert_eq!(
            encode(&f, &mut out),
            Err(EncodeError::NoRoom { need_bytes: record_len(100), have_bytes: out.len() })
        );
        let huge = frame(5, false, Codec::H264, vec![0; PAYLOAD_MAX_BYTES + 1]);
        assert_eq!(
            encode(&huge, &mut out),
            Err(EncodeError::FrameTooLarge { payload_len: PAYLOAD_MAX_BYTES + 1 })
        );
        let bytes = encoded(&f);
        assert!(matches!(decode(&bytes[..40]), Err(RecordError::Truncated { .. })));
        assert!(matches!(decode(&bytes[..20]), Err(RecordError::Truncated { .. })));
        assert_eq!(decode(&[0; 64]).unwrap_err(), RecordError::NoMarker);
    }
}
