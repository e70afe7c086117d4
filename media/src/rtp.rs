//! RTP for H.264 (RFC 6184) and H.265 (RFC 7798): access units into packets, framed for RTSP's
//! TCP interleaving, and packets back into access units.
//!
//! Packets for one client are appended to one buffer, so the shell writes many packets with one
//! syscall.

use crate::frame::Codec;
use crate::nal::{join_length_prefixed, split_length_prefixed, NalError};
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The dynamic payload type the hive's SDP announces for video.
pub const PAYLOAD_TYPE: u8 = 96;

/// RTP payload bytes per packet; with headers a packet stays under a 1,500-byte MTU.
pub const PAYLOAD_MAX: usize = 1_400;

/// The RTP clock rate of video, Hz.
pub const CLOCK_HZ: u64 = 90_000;

/// The 32-bit RTP timestamp of a system time: the 90 kHz clock since the Unix epoch, wrapped.
/// Every server derives it alike, so a relayed stream keeps its timestamps.
pub fn rtp_time(time_us: i64) -> u32 {
    (time_us.wrapping_mul(9) / 100) as u32
}

/// Turns access units into RTP packets of one stream.
#[derive(Debug, Clone)]
pub struct Packetizer {
    codec: Codec,
    ssrc: u32,
    /// Sequence number of the next packet.
    pub next_seq: u16,
}

impl Packetizer {
    /// A packetizer starting at sequence number `first_seq`.
    pub fn new(codec: Codec, ssrc: u32, first_seq: u16) -> Packetizer {
        Packetizer { codec, ssrc, next_seq: first_seq }
    }

    /// Appends the packets of one length-prefixed access unit to `out`, each framed for
    /// interleaving on `channel` (`$`, channel, 16-bit length). Delimiters are dropped; the
    /// last packet carries the marker bit. Returns the number of packets.
    pub fn packetize(
        &mut self,
        unit: &[u8],
        rtp_time: u32,
        channel: u8,
        out: &mut BytesMut,
    ) -> Result<usize, NalError> {
        let nals: Vec<&[u8]> = split_length_prefixed(unit)?
            .into_iter()
            .filter(|n| crate::nal::kind(self.codec, n) != crate::nal::NalKind::Delimiter)
            .collect();
        let mut packets = 0;
        for (i, nal) in nals.iter().enumerate() {
            let last_nal = i + 1 == nals.len();
            if nal.len() <= PAYLOAD_MAX {
                self.packet(out, channel, rtp_time, last_nal, &[], nal);
                packets += 1;
                continue;
            }
            let (head_len, fu_type) = match self.codec {
                Codec::H264 => (1, 28u8),
                Codec::H265 => (2, 49u8),
            };
            let (head, body) = nal.split_at(head_len);
            let mut fu = [0u8; 3];
            let fu_len = match self.codec {
                Codec::H264 => {
                    fu[0] = (head[0] & 0xe0) | fu_type;
                    fu[1] = head[0] & 0x1f;
                    2
                }
                Codec::H265 => {
                    fu[0] = (head[0] & 0x81) | (fu_type << 1);
                    fu[1] = head[1];
                    fu[2] = (head[0] >> 1) & 0x3f;
                    3
                }
            };
            let chunk_max = PAYLOAD_MAX - fu_len;
            let chunks = body.len().div_ceil(chunk_max);
            for (c, chunk) in body.chunks(chunk_max).enumerate() {
                let mut header = fu;
                let fu_header = &mut header[fu_len - 1];
                if c == 0 {
                    *fu_header |= 0x80;
                }
                let end = c + 1 == chunks;
                if end {
                    *fu_header |= 0x40;
                }
                self.packet(out, channel, rtp_time, last_nal && end, &header[..fu_len], chunk);
                packets += 1;
            }
        }
        Ok(packets)
    }

    fn packet(
        &mut self,
        out: &mut BytesMut,
        channel: u8,
        rtp_time: u32,
        marker: bool,
        head: &[u8],
        body: &[u8],
    ) {
        let len = 12 + head.len() + body.len();
        out.reserve(4 + len);
        out.put_u8(b'$');
        out.put_u8(channel);
        out.put_u16(len as u16);
        out.put_u8(0x80);
        out.put_u8(PAYLOAD_TYPE | if marker { 0x80 } else { 0 });
        out.put_u16(self.next_seq);
        out.put_u32(rtp_time);
        out.put_u32(self.ssrc);
        out.put_slice(head);
        out.put_slice(body);
        self.next_seq = self.next_seq.wrapping_add(1);
    }
}

/// An RTP packet the depacketizer cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the fixed header, its CSRCs or its extension.
    #[error("packet of {len} bytes is shorter than its header")]
    Short {
        /// Bytes in the packet.
        len: usize,
    },
    /// Not RTP version 2.
    #[error("RTP version {0}, want 2")]
    Version(u8),
    /// A payload with no NAL unit in it.
    #[error("empty payload")]
    EmptyPayload,
    /// An aggregation packet whose sizes overrun it.
    #[error("aggregation packet overruns its payload")]
    AggregationOverrun,
    /// A payload type this depacketizer does not take (interleaved or multi-time aggregation).
    #[error("unsupported NAL unit type {0}")]
    Unsupported(u8),
    /// An access unit grew past the bound.
    #[error("access unit over {0} bytes")]
    TooLarge(usize),
}

/// The largest access unit the depacketizer assembles, bytes: bounds what a sender can make it
/// hold.
pub const ACCESS_UNIT_MAX: usize = 8 << 20;

/// One access unit put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depacketized {
    /// RTP timestamp of the unit.
    pub rtp_time: u32,
    /// Length-prefixed NAL units.
    pub data: Bytes,
    /// Whether a packet was lost inside it (the unit is then dropped by callers that need
    /// integrity).
    pub damaged: bool,
}

/// Puts RTP packets of one stream back into access units.
#[derive(Debug, Default)]
pub struct Depacketizer {
    codec: Option<Codec>,
    nals: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    rtp_time: Option<u32>,
    next_seq: Option<u16>,
    damaged: bool,
    bytes: usize,
}

impl Depacketizer {
    /// A depacketizer for `codec`.
    pub fn new(codec: Codec) -> Depacketizer {
        Depacketizer { codec: Some(codec), ..Depacketizer::default() }
    }

    /// Takes one RTP packet (without interleave framing). Returns an access unit when this
    /// packet completed one (marker bit) or started a new timestamp after an unfinished one.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<Depacketized>, RtpError> {
        if packet.len() < 12 {
            return Err(RtpError::Short { len: packet.len() });
        }
        let version = packet[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let csrcs = usize::from(packet[0] & 0x0f);
        let mut start = 12 + 4 * csrcs;
        if packet[0] & 0x10 != 0 {
            let ext =
                packet.get(start + 2..start + 4).ok_or(RtpError::Short { len: packet.len() })?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            let pad = usize::from(packet[packet.len() - 1]);
            end = end.checked_sub(pad).ok_or(RtpError::Short { len: packet.len() })?;
        }
        let payload = packet.get(start..end).filter(|p| !p.is_empty());
        let payload = payload.ok_or(RtpError::EmptyPayload)?;
        let marker = packet[1] & 0x80 != 0;
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let rtp_time = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);

        let mut done = None;
        if self.rtp_time.is_some_and(|t| t != rtp_time) {
            done = self.finish();
        }
        if self.next_seq.is_some_and(|s| s != seq) {
            self.damaged = true;
            self.fragment = None;
        }
        self.next_seq = Some(seq.wrapping_add(1));
        self.rtp_time = Some(rtp_time);
        self.payload(payload)?;
        if marker {
            return Ok(self.finish().or(done));
        }
        Ok(done)
    }

    /// Bytes held for the access unit under way: never over [`ACCESS_UNIT_MAX`].
    pub fn buffered_bytes(&self) -> usize {
        self.bytes + self.fragment.as_ref().map_or(0, Vec::len)
    }

    fn add(&mut self, nal: Vec<u8>) -> Result<(), RtpError> {
        self.bytes += nal.len() + 4;
        if self.bytes > ACCESS_UNIT_MAX {
            self.reset();
            return Err(RtpError::TooLarge(ACCESS_UNIT_MAX));
        }
        self.nals.push(nal);
        Ok(())
    }

    fn payload(&mut self, payload: &[u8]) -> Result<(), RtpError> {
        let codec = self.codec.unwrap_or(Codec::H264);
        let (nal_type, head_len) = match codec {
            Codec::H264 => (payload[0] & 0x1f, 1),
            Codec::H265 => {
                if payload.len() < 2 {
                    return Err(RtpError::EmptyPayload);
                }
                ((payload[0] >> 1) & 0x3f, 2)
            }
        };
        let (aggregate, fragment) = match codec {
            Codec::H264 => (24, 28),
            Codec::H265 => (48, 49),
        };
        if nal_type == aggregate {
            let mut rest = &payload[head_len..];
            while !rest.is_empty() {
                let size = rest.get(..2).ok_or(RtpError::AggregationOverrun)?;
                let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                let nal = rest.get(2..2 + size).ok_or(RtpError::AggregationOverrun)?;
                if !nal.is_empty() {
                    self.add(nal.to_vec())?;
                }
                rest = &rest[2 + size..];
            }
            return Ok(());
        }
        if nal_type == fragment {
            let fu_header = *payload.get(head_len).ok_or(RtpError::EmptyPayload)?;
            let body = &payload[head_len + 1..];
            let first = fu_header & 0x80 != 0;
            let last = fu_header & 0x40 != 0;
            if first {
                let head: Vec<u8> = match codec {
                    Codec::H264 => vec![(payload[0] & 0xe0) | (fu_header & 0x1f)],
                    Codec::H265 => {
                        vec![(payload[0] & 0x81) | ((fu_header & 0x3f) << 1), payload[1]]
                    }
                };
                self.fragment = Some(head);
            }
            match self.fragment.as_mut() {
                Some(f) => {
                    f.extend_from_slice(body);
                    // The unit's NAL units and the fragment under way share the bound.
                    if self.bytes + f.len() > ACCESS_UNIT_MAX {
                        self.reset();
                        return Err(RtpError::TooLarge(ACCESS_UNIT_MAX));
                    }
                }
                None => self.damaged = true,
            }
            if last {
                if let Some(f) = self.fragment.take() {
                    self.add(f)?;
                }
            }
            return Ok(());
        }
        match codec {
            Codec::H264 if (1..=23).contains(&nal_type) => self.add(payload.to_vec()),
            Codec::H265 if nal_type < 48 => self.add(payload.to_vec()),
            _ => Err(RtpError::Unsupported(nal_type)),
        }
    }

    fn reset(&mut self) {
        self.nals.clear();
        self.fragment = None;
        self.bytes = 0;
        self.damaged = true;
    }

    fn finish(&mut self) -> Option<Depacketized> {
        let rtp_time = self.rtp_time.take()?;
        let damaged = std::mem::take(&mut self.damaged) || self.fragment.take().is_some();
        self.bytes = 0;
        if self.nals.is_empty() {
            return None;
        }
        let data = join_length_prefixed(self.nals.iter().map(Vec::as_slice));
        self.nals.clear();
        Some(Depacketized { rtp_time, data, damaged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The RTP packets (without interleave framing) of `framed`.
    fn unframe(framed: &[u8]) -> Vec<&[u8]> {
        let mut packets = Vec::new();
        let mut rest = framed;
        while !rest.is_empty() {
            assert_eq!(rest[0], b'$');
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            packets.push(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        packets
    }

    fn nal(codec: Codec, len: usize, fill: u8) -> Vec<u8> {
        let mut n = vec![fill; len];
        match codec {
            Codec::H264 => n[0] = 0x41,
            Codec::H265 => {
                n[0] = 0x02;
                n[1] = 0x01;
            }
        }
        n
    }

    proptest! {
        #[test]
        fn access_units_survive_packetizing_and_depacketizing(
            h265 in any::<bool>(),
            sizes in prop::collection::vec(prop::collection::vec(3usize..5_000, 1..4), 1..6),
            first_seq in any::<u16>(),
        ) {
            let codec = if h265 { Codec::H265 } else { Codec::H264 };
            let mut packetizer = Packetizer::new(codec, 7, first_seq);
            let mut depacketizer = Depacketizer::new(codec);
            for (i, unit_sizes) in sizes.iter().enumerate() {
                let nals: Vec<Vec<u8>> =
                    unit_sizes.iter().map(|&len| nal(codec, len, i as u8)).collect();
                let unit = join_length_prefixed(nals.iter().map(Vec::as_slice));
                let mut out = BytesMut::new();
                let time = 3_000 * i as u32;
                packetizer.packetize(&unit, time, 0, &mut out).unwrap();
                let mut got = None;
                for packet in unframe(&out) {
                    prop_assert!(packet.len() <= 12 + PAYLOAD_MAX);
                    if let Some(done) = depacketizer.push(packet).unwrap() {
                        got = Some(done);
                    }
                }
                let got = got.expect("the marker completes the unit");
                prop_assert_eq!(got.rtp_time, time);
                prop_assert!(!got.damaged);
                prop_assert_eq!(got.data, unit);
            }
        }

        #[test]
        fn the_depacketizer_never_panics_on_any_packet(
            packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32)
        ) {
            let mut d = Depacketizer::new(Codec::H265);
            let mut e = Depacketizer::new(Codec::H264);
            for p in &packets {
                let _ = d.push(p);
                let _ = e.push(p);
            }
        }
    }

    #[test]
    fn a_lost_fragment_marks_its_access_unit_damaged() {
        let codec = Codec::H264;
        let unit = join_length_prefixed([nal(codec, 4_000, 1).as_slice()]);
        let mut out = BytesMut::new();
        Packetizer::new(codec, 1, 0).packetize(&unit, 90, 0, &mut out).unwrap();
        let packets = unframe(&out);
        let mut d = Depacketizer::new(codec);
        let mut got = None;
        for (i, p) in packets.iter().enumerate() {
            if i != 1 {
                got = d.push(p).unwrap().or(got);
            }
        }
        assert!(got.is_none_or(|u| u.damaged));
    }

    #[test]
    fn rtp_time_is_the_90_khz_clock_of_system_time() {
        assert_eq!(rtp_time(1_000_000), 90_000);
        assert_eq!(rtp_time(0), 0);
    }
}
