//! Length- and checksum-framed byte records: `u32 len | u32 crc32 | body`, both little-endian.
//!
//! The same framing carries messages between servers and records in the transaction log, so a
//! torn or corrupted frame is detected the same way on the wire and on disk.

use thiserror::Error;

/// Bytes of the frame header: length and crc32.
pub const HEADER_LEN: usize = 8;

/// Largest body a frame may carry (16 MiB); a larger length is treated as corruption.
pub const BODY_LEN_MAX: usize = 16 * 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum FrameError {
    /// Fewer bytes than the header or the announced body length: more input is needed
    /// (on disk: a torn tail).
    #[error("frame incomplete: need {needed} bytes, have {available}")]
    Incomplete {
        /// Bytes the whole frame needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The announced body length exceeds [`BODY_LEN_MAX`].
    #[error("frame body of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// The body does not match its checksum.
    #[error(
        "frame checksum mismatch: header says {expected:#010x}, body hashes to {actual:#010x}"
    )]
    Checksum {
        /// Checksum in the header.
        expected: u32,
        /// Checksum of the body as read.
        actual: u32,
    },
}

/// Appends one frame holding `body` to `out`.
///
/// Panics if `body` is longer than [`BODY_LEN_MAX`]; callers encode only their own bounded data.
pub fn encode_into(body: &[u8], out: &mut Vec<u8>) {
    assert!(body.len() <= BODY_LEN_MAX, "frame body too large: {}", body.len());
    out.reserve(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Returns one frame holding `body`.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    encode_into(body, &mut out);
    out
}

/// Reads the frame at the start of `input`; returns its body and the bytes it occupied.
pub fn decode(input: &[u8]) -> Result<(&[u8], usize), FrameError> {
    if input.len() < HEADER_LEN {
        return Err(FrameError::Incomplete { needed: HEADER_LEN, available: input.len() });
    }
    let len = u32::from_le_bytes([input[0], input[1], input[2], input[3]]) as usize;
    let expected = u32::from_le_bytes([input[4], input[5], input[6], input[7]]);
    if len > BODY_LEN_MAX {
        return Err(FrameError::TooLarge { len, max: BODY_LEN_MAX });
    }
    let needed = HEADER_LEN + len;
    if input.len() < needed {
        return Err(FrameError::Incomplete { needed, available: input.len() });
    }
    let body = &input[HEADER_LEN..needed];
    let actual = crc32fast::hash(body);
    if actual != expected {
        return Err(FrameError::Checksum { expected, actual });
    }
    Ok((body, needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_body() {
        let frame = encode(b"hello");
        assert_eq!(decode(&frame), Ok((&b"hello"[..], frame.len())));
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_error() {
        let mut frame = encode(b"hello");
        frame[9] ^= 1;
        assert!(matches!(decode(&frame), Err(FrameError::Checksum { .. })));
    }

    #[test]
    fn a_cut_frame_is_incomplete() {
        let frame = encode(b"hello");
        assert!(matches!(decode(&frame[..10]), Err(FrameError::Incomplete { needed: 13, .. })));
    }

    #[test]
    fn a_huge_length_is_refused_before_reading() {
        let mut frame = encode(b"x");
        frame[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&frame), Err(FrameError::TooLarge { .. })));
    }
}
