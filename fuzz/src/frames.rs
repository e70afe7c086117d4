//! Fuzz input as frames (`u32 len | u32 crc32 | body`), with the checksum recomputed.
//!
//! A random mutation of a frame's body almost never keeps its crc32 right, so a target fed only
//! raw bytes would spend its time in the checksum check. Targets decode the raw input as well,
//! which keeps the framing checks covered.

use hive_core::frame::{self, BODY_LEN_MAX, HEADER_LEN};

/// The frames laid out back to back in `data`, each re-encoded with a correct checksum.
///
/// A length running past the end takes the rest of the input; fewer than [`HEADER_LEN`] bytes
/// left over end the sequence.
pub fn frames(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let len = len.min(BODY_LEN_MAX);
        let end = HEADER_LEN.saturating_add(len).min(rest.len());
        let body = &rest[HEADER_LEN..end];
        rest = &rest[end..];
        Some(frame::encode(body))
    })
}

/// `data` as exactly one frame: its first [`HEADER_LEN`] bytes replaced by the header that fits
/// the rest.
pub fn reframe(data: &[u8]) -> Vec<u8> {
    let body = data.get(HEADER_LEN..).unwrap_or_default();
    frame::encode(&body[..body.len().min(BODY_LEN_MAX)])
}
