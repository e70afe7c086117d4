//! The archive's on-disk layout, without I/O: a segment file is a header followed by frame
//! records, and [`scan`] finds every intact record in whatever bytes a crash left behind.
//!
//! Record (little-endian, padded to 8 bytes):
//! `magic u32 | len u32 | crc32 u32 | flags u32 | time_us i64 | payload[len]`.
//! The crc covers `len`, `flags`, `time_us` and the payload, so a torn or flipped record is
//! never taken for a frame. The magic lets the scanner find the next record after damage.

use crate::frame::{Codec, Frame};
use bytes::Bytes;
use thiserror::Error;

/// Marks the start of a record.
pub const RECORD_MAGIC: u32 = 0x4652_5648; // "HVRF"
/// Bytes of a record before its payload.
pub const RECORD_HEADER_LEN: usize = 24;
/// The largest payload a record may hold: a corrupt length can never send the scanner far.
pub const PAYLOAD_MAX: usize = 16 << 20;
/// Bytes of a segment header; records start here.
pub const SEGMENT_HEADER_LEN: usize = 64;
const SEGMENT_MAGIC: &[u8; 8] = b"HIVESEG1";

const FLAG_KEYFRAME: u32 = 1;

/// Rounds up to the record alignment.
pub fn aligned(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// Bytes a frame of `payload_len` takes in a segment.
pub fn record_len(payload_len: usize) -> usize {
    aligned(RECORD_HEADER_LEN + payload_len)
}

fn crc(len: u32, flags: u32, time_us: i64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&flags.to_le_bytes());
    h.update(&time_us.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Writes `frame` as a record at the start of `out`, which must hold [`record_len`] bytes;
/// returns the bytes written. Padding is zeroed.
pub fn encode_record(frame: &Frame, out: &mut [u8]) -> usize {
    let payload = &frame.data[..];
    let total = record_len(payload.len());
    assert!(payload.len() <= PAYLOAD_MAX && out.len() >= total, "caller sized the record");
    let len = payload.len() as u32;
    let flags = (u32::from(frame.keyframe) * FLAG_KEYFRAME) | (u32::from(frame.codec.code()) << 8);
    out[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..12].copy_from_slice(&crc(len, flags, frame.time_us, payload).to_le_bytes());
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&frame.time_us.to_le_bytes());
    out[24..24 + payload.len()].copy_from_slice(payload);
    out[24 + payload.len()..total].fill(0);
    total
}

/// Where an intact record lies and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Offset of the record in the segment.
    pub offset: usize,
    /// Bytes it takes, padding included.
    pub len: usize,
    /// Frame time, µs since the epoch.
    pub time_us: i64,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
}

/// Reads the record at `offset`, `None` unless it is intact.
pub fn record_at(segment: &[u8], offset: usize) -> Option<(RecordPos, Frame)> {
    let head = segment.get(offset..offset.checked_add(RECORD_HEADER_LEN)?)?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != RECORD_MAGIC {
        return None;
    }
    let len = word(4);
    if len as usize > PAYLOAD_MAX {
        return None;
    }
    let flags = word(12);
    let time_us = i64::from_le_bytes(head[16..24].try_into().ok()?);
    let start = offset + RECORD_HEADER_LEN;
    let payload = segment.get(start..start + len as usize)?;
    if crc(len, flags, time_us, payload) != word(8) {
        return None;
    }
    let codec = Codec::from_code((flags >> 8) as u8)?;
    let keyframe = flags & FLAG_KEYFRAME != 0;
    let pos = RecordPos { offset, len: record_len(len as usize), time_us, keyframe };
    let frame = Frame { time_us, keyframe, codec, data: Bytes::copy_from_slice(payload) };
    Some((pos, frame))
}

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The camera, as its 128-bit id.
    pub camera: u128,
    /// 0 primary stream, 1 secondary.
    pub stream: u8,
    /// When the segment was started, µs since the epoch (also its name).
    pub start_us: i64,
}

/// A segment whose header is not ours.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// Too short, wrong magic or wrong checksum.
    #[error("not a Hive segment header (damaged or foreign file)")]
    Invalid,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..24].copy_from_slice(&self.camera.to_le_bytes());
        out[24] = self.stream;
        out[32..40].copy_from_slice(&self.start_us.to_le_bytes());
        let sum = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Parses the start of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let h = bytes.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Invalid)?;
        let sum = u32::from_le_bytes(h[60..64].try_into().map_err(|_| HeaderError::Invalid)?);
        if &h[0..8] != SEGMENT_MAGIC || crc32fast::hash(&h[..60]) != sum {
            return Err(HeaderError::Invalid);
        }
        Ok(SegmentHeader {
            camera: u128::from_le_bytes(h[8..24].try_into().map_err(|_| HeaderError::Invalid)?),
            stream: h[24],
            start_us: i64::from_le_bytes(h[32..40].try_into().map_err(|_| HeaderError::Invalid)?),
        })
    }
}

/// A damaged region skipped by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Where it starts in the segment.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// What a scan found in a segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Every intact record, in file order.
    pub records: Vec<RecordPos>,
    /// Damaged regions between intact records (reported, skipped).
    pub damage: Vec<Damage>,
    /// Where appending continues: just past the last intact record. Anything after it is a
    /// torn or unused tail.
    pub end: usize,
    /// Non-zero bytes found after `end` (a torn tail a crash left), to be cleared.
    pub torn_tail_bytes: usize,
}

/// Finds every intact record of a segment (header already checked). Never panics; linear in
/// the segment's size.
pub fn scan(segment: &[u8]) -> Scan {
    let mut scan = Scan { end: SEGMENT_HEADER_LEN.min(segment.len()), ..Scan::default() };
    let mut offset = SEGMENT_HEADER_LEN;
    let mut bad_from: Option<usize> = None;
    while offset + RECORD_HEADER_LEN <= segment.len() {
        if let Some((pos, _)) = record_at_unchecked_payload(segment, offset) {
            if let Some(from) = bad_from.take() {
                scan.damage.push(Damage { offset: from, len: offset - from });
            }
            scan.records.push(pos);
            offset += pos.len;
            scan.end = offset;
            continue;
        }
        bad_from.get_or_insert(offset);
        offset += 8;
    }
    // Damage with no intact record after it is the tail: cut, not reported as damage.
    let tail = &segment[scan.end.min(segment.len())..];
    scan.torn_tail_bytes = tail.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    scan
}

/// [`record_at`] without copying the payload.
fn record_at_unchecked_payload(segment: &[u8], offset: usize) -> Option<(RecordPos, ())> {
    let head = segment.get(offset..offset + RECORD_HEADER_LEN)?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != RECORD_MAGIC || word(4) as usize > PAYLOAD_MAX {
        return None;
    }
    let (len, flags) = (word(4), word(12));
    let time_us = i64::from_le_bytes(head[16..24].try_into().ok()?);
    let payload =
        segment.get(offset + RECORD_HEADER_LEN..offset + RECORD_HEADER_LEN + len as usize)?;
    if crc(len, flags, time_us, payload) != word(8)
        || Codec::from_code((flags >> 8) as u8).is_none()
    {
        return None;
    }
    let pos = RecordPos {
        offset,
        len: record_len(len as usize),
        time_us,
        keyframe: flags & FLAG_KEYFRAME != 0,
    };
    Some((pos, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(frames: &[Frame]) -> (Vec<u8>, Vec<usize>) {
        let header = SegmentHeader { camera: 7, stream: 0, start_us: 1 };
        let mut out = header.encode().to_vec();
        let mut offsets = Vec::new();
        for f in frames {
            let at = out.len();
            offsets.push(at);
            out.resize(at + record_len(f.data.len()), 0);
            encode_record(f, &mut out[at..]);
        }
        (out, offsets)
    }

    fn frames() -> impl Strategy<Value = Vec<Frame>> {
        prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 1..300)), 1..20)
            .prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (keyframe, data))| Frame {
                        time_us: 1_000 * i as i64,
                        keyframe,
                        codec: Codec::H264,
                        data: Bytes::from(data),
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn every_record_reads_back_and_the_scan_ends_after_the_last(fs in frames(), tail in 0usize..200) {
            let (mut seg, offsets) = segment(&fs);
            let end = seg.len();
            seg.resize(end + tail, 0);
            let scan = scan(&seg);
            prop_assert_eq!(scan.records.len(), fs.len());
            prop_assert_eq!(scan.end, end);
            prop_assert!(scan.damage.is_empty());
            prop_assert_eq!(scan.torn_tail_bytes, 0);
            for (f, off) in fs.iter().zip(offsets) {
                prop_assert_eq!(&record_at(&seg, off).unwrap().1, f);
            }
        }

        #[test]
        fn a_flipped_byte_loses_only_its_record(fs in frames(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (mut seg, offsets) = segment(&fs);
            let flip = SEGMENT_HEADER_LEN + at.index(seg.len() - SEGMENT_HEADER_LEN);
            seg[flip] ^= 1 << bit;
            let scan = scan(&seg);
            let hit = offsets.iter().rposition(|&o| o <= flip).unwrap();
            let expect: Vec<usize> = offsets.iter().copied().enumerate()
                .filter(|&(i, _)| i != hit).map(|(_, o)| o).collect();
            let got: Vec<usize> = scan.records.iter().map(|r| r.offset).collect();
            // Padding bytes are outside the crc: a flip there loses nothing.
            prop_assert!(got == expect || got == offsets, "{:?} vs {:?}", got, expect);
            if got == expect && hit + 1 < offsets.len() {
                prop_assert_eq!(scan.damage.len(), 1);
                prop_assert_eq!(scan.damage[0].offset, offsets[hit]);
            }
            for r in &scan.records {
                prop_assert!(record_at(&seg, r.offset).is_some());
            }
        }

        #[test]
        fn a_segment_cut_anywhere_keeps_every_whole_record_before_the_cut(fs in frames(), at in any::<prop::sample::Index>()) {
            let (seg, offsets) = segment(&fs);
            let cut = SEGMENT_HEADER_LEN + at.index(seg.len() - SEGMENT_HEADER_LEN + 1);
            let scan = scan(&seg[..cut]);
            let whole = offsets.iter().zip(&fs).filter(|(o, f)| **o + RECORD_HEADER_LEN + f.data.len() <= cut).count();
            prop_assert_eq!(scan.records.len(), whole);
            prop_assert!(scan.damage.is_empty());
        }

        #[test]
        fn scanning_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
            let scan = scan(&bytes);
            prop_assert!(scan.end <= bytes.len().max(SEGMENT_HEADER_LEN));
            let mut last = 0;
            for r in &scan.records {
                prop_assert!(r.offset >= last && r.offset + r.len <= bytes.len() + 8);
                last = r.offset + r.len;
            }
        }
    }

    #[test]
    fn a_header_round_trips_and_a_foreign_file_is_refused() {
        let h = SegmentHeader { camera: u128::MAX - 3, stream: 1, start_us: -5 };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Invalid));
        assert_eq!(SegmentHeader::decode(b"short"), Err(HeaderError::Invalid));
    }
}
