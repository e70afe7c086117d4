//! The snapshot file format: a header frame, then the snapshot body in frames.
//!
//! ```text
//! frame 0, 28-byte body:  "HIVESNAP" | u32 version = 1 | u64 generation | u64 body_len
//! frames 1..:             the body in order, in chunks of at most BODY_LEN_MAX bytes
//! ```
//!
//! All integers are little-endian and the file ends right after the last chunk. The file is
//! replaced atomically, so any damage is corruption, never a torn write.

use crate::storage::Generation;
use hive_core::frame::{self, encode_into, FrameError, BODY_LEN_MAX};
use thiserror::Error;

const MAGIC: [u8; 8] = *b"HIVESNAP";
const VERSION: u32 = 1;
const HEADER_BODY_LEN: usize = 8 + 4 + 8 + 8;

/// Why a snapshot file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// A frame is damaged.
    #[error("frame at byte {offset}: {error}")]
    Frame {
        /// Where the frame starts.
        offset: u64,
        /// What is wrong with it.
        error: FrameError,
    },
    /// The header frame is not a snapshot header.
    #[error("not a snapshot header")]
    NotAHeader,
    /// The snapshot was written by a newer format.
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u32),
    /// The generation is [`Generation::MAX`] or beyond.
    #[error("generation {0} out of range")]
    GenerationOutOfRange(u64),
    /// The chunks do not add up to the length in the header.
    #[error("header announces {expected} body bytes, chunks hold {actual}")]
    LengthMismatch {
        /// Length in the header.
        expected: u64,
        /// Bytes in the chunks.
        actual: u64,
    },
    /// Bytes follow the last chunk.
    #[error("unexpected bytes after the body at byte {offset}")]
    TrailingBytes {
        /// Where they start.
        offset: u64,
    },
}

/// Returns the snapshot file holding `body` for `generation`.
pub(crate) fn encode(generation: Generation, body: &[u8]) -> Vec<u8> {
    encode_chunked(generation, body, BODY_LEN_MAX)
}

fn encode_chunked(generation: Generation, body: &[u8], chunk_len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BODY_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&generation.0.to_le_bytes());
    header.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let chunks = body.len().div_ceil(chunk_len);
    let mut file = Vec::with_capacity(body.len() + (chunks + 1) * frame::HEADER_LEN + header.len());
    encode_into(&header, &mut file);
    for chunk in body.chunks(chunk_len) {
        encode_into(chunk, &mut file);
    }
    file
}

/// Reads a snapshot file back: its generation and body.
pub(crate) fn decode(file: &[u8]) -> Result<(Generation, Vec<u8>), SnapshotError> {
    let (header, mut offset) =
        frame::decode(file).map_err(|error| SnapshotError::Frame { offset: 0, error })?;
    let (generation, body_len) = parse_header(header)?;
    // Cap the reservation by the file size: the header's length is not trusted yet.
    let mut body = Vec::with_capacity(file.len().min(usize::try_from(body_len).unwrap_or(0)));
    while (body.len() as u64) < body_len {
        let (chunk, used) = frame::decode(&file[offset..])
            .map_err(|error| SnapshotError::Frame { offset: offset as u64, error })?;
        body.extend_from_slice(chunk);
        offset += used;
    }
    if body.len() as u64 != body_len {
        return Err(SnapshotError::LengthMismatch {
            expected: body_len,
            actual: body.len() as u64,
        });
    }
    if offset != file.len() {
        return Err(SnapshotError::TrailingBytes { offset: offset as u64 });
    }
    Ok((generation, body))
}

/// Reads the header frame's body: generation and body length.
fn parse_header(header: &[u8]) -> Result<(Generation, u64), SnapshotError> {
    if header.len() != HEADER_BODY_LEN || header[..8] != MAGIC {
        return Err(SnapshotError::NotAHeader);
    }
    let u32_at = |at: usize| header[at..at + 4].try_into().map(u32::from_le_bytes);
    let u64_at = |at: usize| header[at..at + 8].try_into().map(u64::from_le_bytes);
    let (Ok(version), Ok(generation), Ok(body_len)) = (u32_at(8), u64_at(12), u64_at(20)) else {
        return Err(SnapshotError::NotAHeader);
    };
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    // A snapshot at MAX could never be followed by another: only damage puts one there.
    if generation >= Generation::MAX.0 {
        return Err(SnapshotError::GenerationOutOfRange(generation));
    }
    Ok((Generation(generation), body_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_generation_and_body() {
        let file = encode(Generation(7), b"state of the world");
        assert_eq!(decode(&file), Ok((Generation(7), b"state of the world".to_vec())));
    }

    #[test]
    fn round_trips_an_empty_body() {
        assert_eq!(decode(&encode(Generation(1), b"")), Ok((Generation(1), vec![])));
    }

    #[test]
    fn a_body_spans_several_chunks() {
        let body: Vec<u8> = (0..=255).collect();
        let file = encode_chunked(Generation(3), &body, 10);
        assert_eq!(decode(&file), Ok((Generation(3), body)));
    }

    #[test]
    fn a_flipped_bit_is_reported_with_the_frame_offset() {
        let mut file = encode_chunked(Generation(3), b"abcdefghij", 4);
        let second_chunk = frame::HEADER_LEN + HEADER_BODY_LEN + frame::HEADER_LEN + 4;
        file[second_chunk + frame::HEADER_LEN] ^= 1;
        assert!(matches!(
            decode(&file),
            Err(SnapshotError::Frame { offset, error: FrameError::Checksum { .. } })
                if offset == second_chunk as u64
        ));
    }

    #[test]
    fn a_missing_chunk_or_extra_bytes_are_refused() {
        let file = encode_chunked(Generation(3), b"abcdefghij", 4);
        let cut = file.len() - (frame::HEADER_LEN + 2);
        assert!(matches!(decode(&file[..cut]), Err(SnapshotError::Frame { .. })));
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::TrailingBytes { .. })));
    }

    #[test]
    fn a_foreign_header_is_refused() {
        assert_eq!(decode(&frame::encode(b"not a snapshot")), Err(SnapshotError::NotAHeader));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_cut_of_a_snapshot_is_refused(
            body in prop::collection::vec(any::<u8>(), 0..64),
            cut_seed in any::<usize>(),
        ) {
            let file = encode_chunked(Generation(2), &body, 8);
            let cut = cut_seed % file.len();
            prop_assert!(decode(&file[..cut]).is_err());
        }
    }
}
