//! A segment file: a header naming its camera stream, then records from [`SEGMENT_HEADER_LEN`]
//! on, then zeros up to the preallocated size. [`scan`] finds every intact record in whatever
//! bytes a crash or a failing disk left behind.
//!
//! Header, little-endian: magic `HIVESEG\0` (8 bytes), version u32 at 8, stream u8 at 12,
//! camera id u128 at 16, segment number u64 at 32, start time (µs, the time of the first frame
//! it was made for) i64 at 40, zeros, and a crc32 of bytes 0..60 at 60.

use super::index::SegmentId;
use super::record::{self, RecordError, RECORD_ALIGN, RECORD_HEADER_LEN};
use thiserror::Error;

/// Bytes of a segment header; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// The format version this code writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
const SEGMENT_MAGIC: &[u8; 8] = b"HIVESEG\0";

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The camera, as its 128-bit id.
    pub camera: u128,
    /// 0 for the primary stream, 1 for the secondary.
    pub stream: u8,
    /// The segment's number in its stream.
    pub segment: SegmentId,
    /// Time of the frame the segment was made for, µs since the Unix epoch.
    pub start_us: i64,
}

/// Why a segment header cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The file is shorter than a header.
    #[error("{len_bytes} bytes, shorter than a segment header")]
    Truncated {
        /// Bytes there are.
        len_bytes: usize,
    },
    /// Not a Hive segment (or its first bytes are damaged).
    #[error("no segment magic")]
    BadMagic,
    /// A segment of a format version this code does not read.
    #[error("segment format version {version}, this build reads {SEGMENT_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The header is damaged.
    #[error("segment header checksum mismatch")]
    Checksum,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out[12] = self.stream;
        out[16..32].copy_from_slice(&self.camera.to_le_bytes());
        out[32..40].copy_from_slice(&self.segment.0.to_le_bytes());
        out[40..48].copy_from_slice(&self.start_us.to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the header at the start of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(HeaderError::Truncated { len_bytes: bytes.len() });
        };
        let field = |from: usize, to: usize| -> &[u8] { &h[from..to] };
        let mut word = [0u8; 4];
        if field(0, 8) != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        word.copy_from_slice(field(8, 12));
        let version = u32::from_le_bytes(word);
        if version != SEGMENT_VERSION {
            return Err(HeaderError::UnsupportedVersion { version });
        }
        word.copy_from_slice(field(60, 64));
        if crc32fast::hash(field(0, 60)) != u32::from_le_bytes(word) {
            return Err(HeaderError::Checksum);
        }
        let mut camera = [0u8; 16];
        camera.copy_from_slice(field(16, 32));
        let mut segment = [0u8; 8];
        segment.copy_from_slice(field(32, 40));
        let mut start = [0u8; 8];
        start.copy_from_slice(field(40, 48));
        Ok(SegmentHeader {
            camera: u128::from_le_bytes(camera),
            stream: h[12],
            segment: SegmentId(u64::from_le_bytes(segment)),
            start_us: i64::from_le_bytes(start),
        })
    }
}

/// Where an intact record lies in its segment and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPos {
    /// Offset of the record in the segment.
    pub offset: usize,
    /// Bytes it takes, padding included.
    pub len: usize,
    /// Frame time, µs since the Unix epoch.
    pub time_us: i64,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
}

impl RecordPos {
    /// Where the record ends (the next one may start here).
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// What a damaged region held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// One record whose header is intact but whose payload is not: one frame lost.
    Frame {
        /// The lost frame's time, µs since the Unix epoch.
        time_us: i64,
        /// Whether it was a keyframe.
        keyframe: bool,
    },
    /// Bytes where no record header holds (flipped header bits, a zeroed or overwritten
    /// page); the frames they held are lost and unknown.
    Unreadable {
        /// Why the first offset of the region is not a record.
        error: RecordError,
    },
}

/// A damaged region between intact records, skipped by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Where it starts in the segment.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
    /// What it held.
    pub kind: DamageKind,
}

/// Bytes after the last intact record that are not all zero: what an interrupted write (a
/// crash, a power cut) leaves. They hold no intact record and are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where they start: the scan's `valid_end`.
    pub offset: usize,
    /// Bytes up to and including the last non-zero byte.
    pub len: usize,
}

/// What a scan found in a segment. Intact records and damage tile
/// `SEGMENT_HEADER_LEN..valid_end` in order (padding after a record belongs to the record);
/// after `valid_end` come a torn tail, if any, and zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The header, or why it cannot be read (the records are scanned either way).
    pub header: Result<SegmentHeader, HeaderError>,
    /// Every intact record, in file order.
    pub records: Vec<RecordPos>,
    /// Damaged regions between intact records, in file order (reported, skipped).
    pub damage: Vec<Damage>,
    /// Where appending would continue: the end of the last intact record (the header's end
    /// when there is none), never past the input.
    pub valid_end: usize,
    /// Non-zero bytes after `valid_end`, to be cut.
    pub torn_tail: Option<TornTail>,
}

/// Finds every intact record of a segment file's bytes. Never panics; linear in the input
/// (a region whose headers fail costs a constant per [`RECORD_ALIGN`] bytes, and every payload
/// is checksummed at most once because a record with an intact header is skipped whole).
pub fn scan(bytes: &[u8]) -> Scan {
    let mut found = Scan {
        header: SegmentHeader::decode(bytes),
        records: Vec::new(),
        damage: Vec::new(),
        valid_end: SEGMENT_HEADER_LEN.min(bytes.len()),
        torn_tail: None,
    };
    // Damage since the last intact record: it becomes damage when an intact record follows,
    // and is the torn tail otherwise.
    let mut pending: Vec<Damage> = Vec::new();
    let mut unreadable_from: Option<(usize, RecordError)> = None;
    let mut offset = SEGMENT_HEADER_LEN;
    let close_unreadable =
        |pending: &mut Vec<Damage>, from: &mut Option<(usize, RecordError)>, to: usize| {
            if let Some((offset, error)) = from.take() {
                let kind = DamageKind::Unreadable { error };
                pending.push(Damage { offset, len: to - offset, kind });
            }
        };
    while offset + RECORD_HEADER_LEN <= bytes.len() {
        let rest = &bytes[offset..];
        let header = match record::decode_header(rest) {
            Ok(header) => header,
            Err(error) => {
                unreadable_from.get_or_insert((offset, error));
                // A run of zero words (the preallocated tail, a lost page) goes in one step.
                let zero_words = rest
                    .chunks_exact(RECORD_ALIGN)
                    .take_while(|w| u64::from_le_bytes((*w).try_into().unwrap_or([1; 8])) == 0)
                    .count();
                offset += zero_words.max(1) * RECORD_ALIGN;
                continue;
            }
        };
        close_unreadable(&mut pending, &mut unreadable_from, offset);
        let len = header.record_len();
        if header.payload_len > rest.len() - RECORD_HEADER_LEN {
            // Cut short: the payload runs past the end of the file.
            let kind = DamageKind::Frame { time_us: header.time_us, keyframe: header.keyframe };
            pending.push(Damage { offset, len: rest.len(), kind });
            break;
        }
        let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + header.payload_len];
        if header.check_payload(payload).is_err() {
            let kind = DamageKind::Frame { time_us: header.time_us, keyframe: header.keyframe };
            pending.push(Damage { offset, len: len.min(rest.len()), kind });
            offset += len;
            continue;
        }
        found.damage.append(&mut pending);
        found.records.push(RecordPos {
            offset,
            len,
            time_us: header.time_us,
            keyframe: header.keyframe,
        });
        // Padding past a file cut short inside it is not needed to read the record.
        found.valid_end = (offset + len).min(bytes.len());
        offset += len;
    }
    if let Some(last) = last_nonzero(&bytes[found.valid_end..]) {
        found.torn_tail = Some(TornTail { offset: found.valid_end, len: last + 1 });
    }
    found
}

/// The index of the last non-zero byte. Word by word: the preallocated tail of a segment is
/// megabytes of zeros.
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let rest = words.remainder();
    if let Some(i) = rest.iter().rposition(|&b| b != 0) {
        return Some(bytes.len() - rest.len() + i);
    }
    let word = words.rposition(|w| u64::from_le_bytes(w.try_into().unwrap_or([1; 8])) != 0)?;
    let in_word = bytes[word * 8..word * 8 + 8].iter().rposition(|&b| b != 0)?;
    Some(word * 8 + in_word)
}

/// Scans `bytes` and asserts the scan's promises on any input, for the proptests and the fuzz
/// target: intact records and damage tile the file from the header to the last record, every
/// record checks out, and what follows is a torn tail or zeros.
pub fn check_scan(bytes: &[u8]) -> Scan {
    let found = scan(bytes);
    assert!(found.valid_end <= bytes.len());
    let mut regions: Vec<(usize, usize)> =
        found.records.iter().map(|r| (r.offset, r.len)).collect();
    regions.extend(found.damage.iter().map(|d| (d.offset, d.len)));
    regions.sort();
    let mut at = SEGMENT_HEADER_LEN.min(bytes.len());
    for (offset, len) in regions {
        assert_eq!(offset, at, "{found:?}");
        assert!(len > 0 && offset % RECORD_ALIGN == 0, "{found:?}");
        at = offset + len;
    }
    match found.records.last() {
        Some(last) => {
            assert_eq!(at, last.end());
            assert_eq!(found.valid_end, last.end().min(bytes.len()));
        }
        None => {
            assert!(found.damage.is_empty());
            assert_eq!(found.valid_end, SEGMENT_HEADER_LEN.min(bytes.len()));
        }
    }
    for r in &found.records {
        let header = record::check(&bytes[r.offset..]).expect("an intact record");
        assert_eq!(
            (header.time_us, header.keyframe, header.record_len()),
            (r.time_us, r.keyframe, r.len)
        );
    }
    let tail = &bytes[found.valid_end..];
    match found.torn_tail {
        None => assert!(tail.iter().all(|&b| b == 0)),
        Some(torn) => {
            assert_eq!(torn.offset, found.valid_end);
            assert!(torn.len > 0 && tail[torn.len - 1] != 0);
            assert!(tail[torn.len..].iter().all(|&b| b == 0));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::record::{encode, record_len};
    use crate::frame::{Codec, Frame};
    use bytes::Bytes;
    use proptest::prelude::*;

    const HEADER: SegmentHeader =
        SegmentHeader { camera: 7, stream: 1, segment: SegmentId(3), start_us: 1_000 };

    /// A segment holding `frames`, and the offset of each record.
    fn segment(frames: &[Frame]) -> (Vec<u8>, Vec<usize>) {
        let mut out = HEADER.encode().to_vec();
        let mut offsets = Vec::new();
        for f in frames {
            let at = out.len();
            offsets.push(at);
            out.resize(at + record_len(f.data.len()), 0);
            encode(f, &mut out[at..]).unwrap();
        }
        (out, offsets)
    }

    fn frames() -> impl Strategy<Value = Vec<Frame>> {
        prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 1..20)
            .prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (keyframe, data))| Frame {
                        time_us: 40_000 * i as i64,
                        keyframe,
                        codec: Codec::H264,
                        data: Bytes::from(data),
                    })
                    .collect()
            })
    }

    fn offsets_of(scan: &Scan) -> Vec<usize> {
        scan.records.iter().map(|r| r.offset).collect()
    }

    proptest! {
        #[test]
        fn every_record_is_found_and_a_zero_tail_is_neither_damage_nor_torn(
            fs in frames(),
            zeros in 0usize..300,
        ) {
            let (mut seg, offsets) = segment(&fs);
            let end = seg.len();
            seg.resize(end + zeros, 0);
            let found = scan(&seg);
            prop_assert_eq!(found.header, Ok(HEADER));
            prop_assert_eq!(offsets_of(&found), offsets);
            for (r, f) in found.records.iter().zip(&fs) {
                prop_assert_eq!((r.time_us, r.keyframe), (f.time_us, f.keyframe));
            }
            prop_assert_eq!(found.valid_end, end);
            prop_assert!(found.damage.is_empty());
            prop_assert_eq!(found.torn_tail, None);
        }

        #[test]
        fn a_flipped_byte_loses_at_most_its_record_and_is_reported_where_it_is(
            fs in frames(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut seg, offsets) = segment(&fs);
            let flip = SEGMENT_HEADER_LEN + at.index(seg.len() - SEGMENT_HEADER_LEN);
            seg[flip] ^= 1 << bit;
            let found = scan(&seg);
            let hit = offsets.iter().rposition(|&o| o <= flip).unwrap();
            let in_padding = flip >= offsets[hit] + RECORD_HEADER_LEN + fs[hit].data.len();
            let others: Vec<usize> =
                offsets.iter().copied().enumerate().filter(|&(i, _)| i != hit).map(|(_, o)| o).collect();
            if in_padding {
                // Padding is outside the checksums: nothing is lost.
                prop_assert_eq!(offsets_of(&found), offsets);
            } else {
                prop_assert_eq!(offsets_of(&found), others);
                if hit + 1 < offsets.len() {
                    // In the middle: reported where the damaged record starts.
                    prop_assert_eq!(found.damage.len(), 1);
                    prop_assert_eq!(found.damage[0].offset, offsets[hit]);
                    prop_assert_eq!(found.damage[0].len, offsets[hit + 1] - offsets[hit]);
                    prop_assert_eq!(found.torn_tail, None);
                } else {
                    // The last record: a torn tail, cut.
                    prop_assert!(found.damage.is_empty());
                    prop_assert_eq!(found.valid_end, offsets[hit]);
                    prop_assert!(found.torn_tail.is_some());
                }
            }
        }

        #[test]
        fn a_segment_cut_anywhere_keeps_every_whole_record_before_the_cut(
            fs in frames(),
            at in any::<prop::sample::Index>(),
        ) {
            let (seg, offsets) = segment(&fs);
            let cut = at.index(seg.len() + 1);
            let found = scan(&seg[..cut]);
            let whole: Vec<usize> = offsets
                .iter()
                .zip(&fs)
                .filter(|(o, f)| **o + RECORD_HEADER_LEN + f.data.len() <= cut)
                .map(|(o, _)| *o)
                .collect();
            prop_assert_eq!(offsets_of(&found), whole);
            prop_assert!(found.damage.is_empty());
            prop_assert!(found.valid_end <= cut);
        }

        #[test]
        fn a_zeroed_page_in_the_middle_is_reported_and_the_records_after_it_are_kept(
            fs in frames(),
            from in any::<prop::sample::Index>(),
            len in 1usize..400,
        ) {
            let (original, offsets) = segment(&fs);
            let mut seg = original.clone();
            let from = SEGMENT_HEADER_LEN + from.index(seg.len() - SEGMENT_HEADER_LEN);
            let to = (from + len).min(seg.len());
            seg[from..to].fill(0);
            let found = scan(&seg);
            // Every record that does not overlap the zeroed bytes is kept.
            for (o, f) in offsets.iter().zip(&fs) {
                let end = o + RECORD_HEADER_LEN + f.data.len();
                if end <= from || *o >= to {
                    prop_assert!(offsets_of(&found).contains(o), "{} lost", o);
                }
            }
            // A damaged record with an intact one after it lies in reported damage.
            for (o, f) in offsets.iter().zip(&fs) {
                let end = o + RECORD_HEADER_LEN + f.data.len();
                let hit = seg[*o..end] != original[*o..end];
                if hit && found.records.iter().any(|r| r.offset > *o) {
                    prop_assert!(
                        found.damage.iter().any(|d| d.offset <= *o && *o < d.offset + d.len),
                        "{} not reported: {:?}", o, found.damage
                    );
                }
            }
            check_scan(&seg);
        }

        #[test]
        fn scanning_garbage_never_panics_and_tiles_the_file(bytes in prop::collection::vec(any::<u8>(), 0..3_000)) {
            check_scan(&bytes);
        }
    }

    #[test]
    fn garbage_before_a_record_is_reported_as_unreadable() {
        let f = Frame {
            time_us: 9,
            keyframe: true,
            codec: Codec::H265,
            data: Bytes::from_static(b"abc"),
        };
        let (mut seg, offsets) = segment(&[f.clone(), f.clone()]);
        seg[offsets[0]..offsets[0] + 4].copy_from_slice(b"junk");
        let found = scan(&seg);
        assert_eq!(offsets_of(&found), vec![offsets[1]]);
        assert_eq!(
            found.damage,
            vec![Damage {
                offset: offsets[0],
                len: offsets[1] - offsets[0],
                kind: DamageKind::Unreadable { error: RecordError::NoMarker },
            }]
        );
    }

    #[test]
    fn a_header_round_trips_and_a_damaged_or_foreign_one_is_refused() {
        let h = SegmentHeader {
            camera: u128::MAX - 3,
            stream: 1,
            segment: SegmentId(u64::MAX),
            start_us: -5,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Checksum));
        bad = h.encode();
        bad[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(SegmentHeader::decode(&[0; 64]), Err(HeaderError::BadMagic));
        assert_eq!(SegmentHeader::decode(b"short"), Err(HeaderError::Truncated { len_bytes: 5 }));
    }

    #[test]
    fn a_damaged_header_does_not_hide_the_records() {
        let f = Frame {
            time_us: 9,
            keyframe: true,
            codec: Codec::H264,
            data: Bytes::from_static(b"x"),
        };
        let (mut seg, offsets) = segment(&[f]);
        seg[..SEGMENT_HEADER_LEN].fill(0);
        let found = scan(&seg);
        assert_eq!(found.header, Err(HeaderError::BadMagic));
        assert_eq!(offsets_of(&found), offsets);
    }
}
