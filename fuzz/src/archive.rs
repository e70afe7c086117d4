//! Archive segments built from fuzz input: intact records (checksums made right) with damage
//! laid between and into them, and what a scan must find in them.
//!
//! A mutated record almost never keeps both of its checksums right, so raw input alone rarely
//! reaches long runs of intact records. Payloads and garbage never hold the record marker:
//! a scan cannot tell a record copied whole into a payload from a real one, and the
//! property checked here ("every undamaged record is found") is about damage, not forgery.

use crate::reader::Reader;
use bytes::Bytes;
use hive_media::archive::index::SegmentId;
use hive_media::archive::record::{self, RECORD_ALIGN, RECORD_HEADER_LEN, RECORD_MARKER};
use hive_media::archive::SegmentHeader;
use hive_media::frame::{Codec, Frame};

/// A record the builder wrote, and whether damage was laid into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Where it starts.
    pub offset: usize,
    /// Its frame's time.
    pub time_us: i64,
    /// Bytes its checksums cover: its header and payload.
    pub checked_bytes: usize,
    /// Whether a byte of its header or payload was changed.
    pub damaged: bool,
}

/// The segment file header every built segment starts with.
pub const HEADER: SegmentHeader =
    SegmentHeader { camera: 0xc0ffee, stream: 0, segment: SegmentId(1), start_us: 1_000 };

/// Replaces every occurrence of the record marker in `bytes`.
fn scrub(bytes: &mut [u8]) {
    let marker = RECORD_MARKER.to_le_bytes();
    for i in 0..bytes.len().saturating_sub(3) {
        if bytes[i..i + 4] == marker {
            bytes[i] ^= 0xff;
        }
    }
}

/// A segment from `data`, read as operations: a record (`0..160`, then a `u16 LE length |
/// bytes` payload and a keyframe bit), garbage (`160..200`, then a count of 8-byte words
/// taken from the input), zeros (`200..220`, then a count of 8-byte words) or a flipped byte
/// in the last record (`220..`, then a u16 position and a bit).
pub fn segment_of(data: &[u8]) -> (Vec<u8>, Vec<Written>) {
    let mut input = Reader::new(data);
    let mut out = HEADER.encode().to_vec();
    let mut written: Vec<Written> = Vec::new();
    let mut time_us = 1_000_000;
    while !input.is_empty() {
        match input.u8() {
            0..160 => {
                let mut payload = input.bytes();
                scrub(&mut payload);
                time_us += i64::from(input.u8()) * 1_000;
                let keyframe = input.u8() & 1 == 1;
                let frame =
                    Frame { time_us, keyframe, codec: Codec::H264, data: Bytes::from(payload) };
                let offset = out.len();
                out.resize(offset + record::record_len(frame.data.len()), 0);
                record::encode(&frame, &mut out[offset..]).expect("sized for the record");
                let checked_bytes = RECORD_HEADER_LEN + frame.data.len();
                written.push(Written { offset, time_us, checked_bytes, damaged: false });
            }
            160..200 => {
                let words = usize::from(input.u8());
                let mut garbage: Vec<u8> = (0..words * RECORD_ALIGN).map(|_| input.u8()).collect();
                scrub(&mut garbage);
                out.extend(garbage);
            }
            200..220 => out.resize(out.len() + usize::from(input.u8()) * RECORD_ALIGN, 0),
            _ => {
                let (at, bit) = (usize::from(input.u16()), input.u8() % 8);
                if let Some(last) = written.last_mut() {
                    out[last.offset + at % last.checked_bytes] ^= 1 << bit;
                    last.damaged = true;
                }
            }
        }
    }
    (out, written)
}
