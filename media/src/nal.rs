//! NAL units of H.264 and H.265: splitting Annex B streams and length-prefixed access units,
//! grouping an Annex B stream into access units, and finding parameter sets.

use crate::frame::Codec;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// A length-prefixed access unit that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NalError {
    /// A 4-byte length prefix is cut short.
    #[error("length prefix cut short at byte {offset}")]
    PrefixCut {
        /// Offset of the prefix in the access unit.
        offset: usize,
    },
    /// A NAL unit's length runs past the end of the access unit.
    #[error("NAL unit of {len} bytes at byte {offset} runs past the end")]
    Overrun {
        /// Offset of the prefix in the access unit.
        offset: usize,
        /// The length the prefix claims.
        len: usize,
    },
    /// A NAL unit of zero bytes.
    #[error("empty NAL unit at byte {offset}")]
    Empty {
        /// Offset of the prefix in the access unit.
        offset: usize,
    },
}

/// What a NAL unit is, as far as the hive cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalKind {
    /// Video parameter set (H.265 only).
    Vps,
    /// Sequence parameter set.
    Sps,
    /// Picture parameter set.
    Pps,
    /// Access unit delimiter.
    Delimiter,
    /// A slice a decoder can start at (IDR, or IRAP in H.265).
    KeySlice,
    /// Any other slice.
    Slice,
    /// Anything else (SEI, filler, …).
    Other,
}

/// The kind of `nal` (its first bytes are the NAL header). An empty unit is `Other`.
pub fn kind(codec: Codec, nal: &[u8]) -> NalKind {
    let Some(&head) = nal.first() else { return NalKind::Other };
    match codec {
        Codec::H264 => match head & 0x1f {
            7 => NalKind::Sps,
            8 => NalKind::Pps,
            9 => NalKind::Delimiter,
            5 => NalKind::KeySlice,
            1..=4 => NalKind::Slice,
            _ => NalKind::Other,
        },
        Codec::H265 => match (head >> 1) & 0x3f {
            32 => NalKind::Vps,
            33 => NalKind::Sps,
            34 => NalKind::Pps,
            35 => NalKind::Delimiter,
            16..=21 => NalKind::KeySlice,
            0..=9 => NalKind::Slice,
            _ => NalKind::Other,
        },
    }
}

/// Whether `nal` is a slice that starts a new picture (its first slice segment).
fn first_slice_of_picture(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        // first_mb_in_slice is ue(v); zero is coded as a single 1 bit.
        Codec::H264 => nal.get(1).is_some_and(|b| b & 0x80 != 0),
        // first_slice_segment_in_pic_flag is the first bit after the 2-byte header.
        Codec::H265 => nal.get(2).is_some_and(|b| b & 0x80 != 0),
    }
}

/// The NAL units of an Annex B byte stream (start codes `00 00 01` or `00 00 00 01`), without
/// their start codes. Bytes before the first start code are skipped.
pub fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(stream.len(), |next| next - 3);
        // Trailing zeros belong to the next start code (`00 00 00 01`) or are padding.
        while end > start && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&stream[start..end]);
        }
    }
    nals
}

/// The NAL units of a length-prefixed access unit.
pub fn split_length_prefixed(unit: &[u8]) -> Result<Vec<&[u8]>, NalError> {
    let mut nals = Vec::new();
    let mut offset = 0;
    while offset < unit.len() {
        let prefix: [u8; 4] = unit
            .get(offset..offset + 4)
            .and_then(|p| p.try_into().ok())
            .ok_or(NalError::PrefixCut { offset })?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Err(NalError::Empty { offset });
        }
        let nal =
            unit.get(offset + 4..offset + 4 + len).ok_or(NalError::Overrun { offset, len })?;
        nals.push(nal);
        offset += 4 + len;
    }
    Ok(nals)
}

/// NAL units joined into one length-prefixed access unit.
pub fn join_length_prefixed<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// One access unit of an Annex B stream: its NAL units and whether it is a keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Length-prefixed NAL units, delimiters dropped.
    pub data: Bytes,
    /// Whether it holds a key slice.
    pub keyframe: bool,
}

/// Groups an Annex B stream into access units: a new unit starts at a delimiter, at parameter
/// sets or SEI that follow a picture, or at the first slice of a new picture.
pub fn access_units(codec: Codec, stream: &[u8]) -> Vec<AccessUnit> {
    let mut units = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut has_picture = false;
    let mut keyframe = false;
    let mut finish = |current: &mut Vec<&[u8]>, keyframe: bool| {
        if !current.is_empty() {
            units.push(AccessUnit { data: join_length_prefixed(current.drain(..)), keyframe });
        }
    };
    for nal in split_annex_b(stream) {
        let k = kind(codec, nal);
        let is_slice = matches!(k, NalKind::Slice | NalKind::KeySlice);
        let starts_new = match k {
            NalKind::Delimiter | NalKind::Vps | NalKind::Sps | NalKind::Pps | NalKind::Other => {
                has_picture
            }
            NalKind::Slice | NalKind::KeySlice => has_picture && first_slice_of_picture(codec, nal),
        };
        if starts_new {
            finish(&mut current, keyframe);
            has_picture = false;
            keyframe = false;
        }
        if k == NalKind::Delimiter {
            continue;
        }
        has_picture |= is_slice;
        keyframe |= k == NalKind::KeySlice;
        current.push(nal);
    }
    if has_picture {
        finish(&mut current, keyframe);
    }
    units
}

/// The parameter sets a decoder needs before a keyframe, in the order they are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterSets {
    /// H.265 video parameter set; empty for H.264.
    pub vps: Option<Bytes>,
    /// Sequence parameter set.
    pub sps: Option<Bytes>,
    /// Picture parameter set.
    pub pps: Option<Bytes>,
}

impl ParameterSets {
    /// The parameter sets found in a length-prefixed access unit (later ones win).
    pub fn of_unit(codec: Codec, unit: &[u8]) -> ParameterSets {
        let mut sets = ParameterSets::default();
        sets.update(codec, unit);
        sets
    }

    /// Takes any parameter sets of `unit` in place of the ones held.
    pub fn update(&mut self, codec: Codec, unit: &[u8]) {
        for nal in split_length_prefixed(unit).unwrap_or_default() {
            let copy = || Some(Bytes::copy_from_slice(nal));
            match kind(codec, nal) {
                NalKind::Vps => self.vps = copy(),
                NalKind::Sps => self.sps = copy(),
                NalKind::Pps => self.pps = copy(),
                _ => {}
            }
        }
    }

    /// Whether a decoder of `codec` can start with these.
    pub fn complete(&self, codec: Codec) -> bool {
        self.sps.is_some() && self.pps.is_some() && (codec == Codec::H264 || self.vps.is_some())
    }

    /// `unit` with these parameter sets in front, unless it already carries an SPS.
    pub fn prepend_to(&self, codec: Codec, unit: &Bytes) -> Bytes {
        let nals = match split_length_prefixed(unit) {
            Ok(nals) => nals,
            Err(_) => return unit.clone(),
        };
        if nals.iter().any(|n| kind(codec, n) == NalKind::Sps) {
            return unit.clone();
        }
        let sets = [&self.vps, &self.sps, &self.pps];
        let front = sets.into_iter().flatten().map(|b| b.as_ref());
        join_length_prefixed(front.chain(nals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn an_annex_b_stream_groups_into_access_units_at_each_new_picture() {
        let sps: &[u8] = &[0x67, 0x42, 0x1e];
        let pps: &[u8] = &[0x68, 0xce];
        let idr: &[u8] = &[0x65, 0x88, 0x10];
        let p1: &[u8] = &[0x41, 0x9a, 0x01];
        let p2: &[u8] = &[0x41, 0x9b, 0x02];
        let stream = annex_b(&[sps, pps, idr, p1, p2, sps, pps, idr]);
        let units = access_units(Codec::H264, &stream);
        let keys: Vec<bool> = units.iter().map(|u| u.keyframe).collect();
        assert_eq!(keys, [true, false, false, true]);
        assert_eq!(split_length_prefixed(&units[0].data).unwrap(), [sps, pps, idr]);
        assert_eq!(split_length_prefixed(&units[1].data).unwrap(), [p1]);
        let sets = ParameterSets::of_unit(Codec::H264, &units[3].data);
        assert_eq!(sets.sps.as_deref(), Some(sps));
        assert!(sets.complete(Codec::H264));
    }

    #[test]
    fn the_second_slice_of_a_picture_stays_in_its_access_unit() {
        let first: &[u8] = &[0x41, 0x9a];
        let second: &[u8] = &[0x41, 0x40]; // first_mb_in_slice != 0
        let units = access_units(Codec::H264, &annex_b(&[first, second, first]));
        assert_eq!(units.len(), 2);
        assert_eq!(split_length_prefixed(&units[0].data).unwrap(), [first, second]);
    }

    #[test]
    fn a_broken_length_prefix_is_an_error_not_a_panic() {
        assert_eq!(split_length_prefixed(&[0, 0, 0]), Err(NalError::PrefixCut { offset: 0 }));
        assert_eq!(
            split_length_prefixed(&[0, 0, 0, 9, 1]),
            Err(NalError::Overrun { offset: 0, len: 9 })
        );
        assert_eq!(split_length_prefixed(&[0, 0, 0, 0]), Err(NalError::Empty { offset: 0 }));
    }

    #[test]
    fn parameter_sets_go_in_front_of_a_keyframe_that_lacks_them() {
        let sets = ParameterSets {
            vps: None,
            sps: Some(Bytes::from_static(&[0x67, 1])),
            pps: Some(Bytes::from_static(&[0x68, 2])),
        };
        let idr = join_length_prefixed([&[0x65u8, 0x88][..]]);
        let with = sets.prepend_to(Codec::H264, &idr);
        assert_eq!(split_length_prefixed(&with).unwrap().len(), 3);
        assert_eq!(sets.prepend_to(Codec::H264, &with), with);
    }
}
