//! The relay protocol: how one server asks the next server toward a camera's recorder for a
//! stream, and how frames come back. It runs inside an encrypted, authenticated channel between
//! members (the shell's Noise channel), on a connection of its own so video never queues in
//! front of the hive's control traffic.
//!
//! Every message is `u32 BE length | tag | body`. The asking side sends one [`Request`]; the
//! answering side sends [`Message::Info`] (or [`Message::NotFound`]), then frames until the
//! flow ends ([`Message::End`]) or either side closes the connection.
//!
//! The asking side usually dials the channel. When it cannot (the answering side is behind
//! NAT), it asks over the hive's link for a channel back; the answering side dials it and
//! opens it with [`Opening::Callback`] and the token it was given, and then the exchange runs
//! as on any channel. So the first message on a channel is an [`Opening`].
//!
//! Both sides are members of the hive (the channel proved the system secret), but a member
//! still gets bounded work: a message over [`MESSAGE_MAX`] bytes, an unknown tag or a short
//! body is an error, never a panic or an allocation of what the peer announces.

use crate::frame::{Codec, Frame};
use crate::nal::{join_length_prefixed, ParameterSets};
use crate::rtp::ACCESS_UNIT_MAX;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The largest message: a frame of [`ACCESS_UNIT_MAX`] and its header.
pub const MESSAGE_MAX: usize = ACCESS_UNIT_MAX + 64;
/// The longest camera name in a request, bytes.
pub const CAMERA_MAX: usize = 128;
/// The version of this protocol, sent in each request.
pub const VERSION: u8 = 1;

const TAG_REQUEST: u8 = b'R';
const TAG_INFO: u8 = b'I';
const TAG_NOT_FOUND: u8 = b'N';
const TAG_FRAME: u8 = b'F';
const TAG_END: u8 = b'E';
const TAG_RANGES: u8 = b'G';
const TAG_CALLBACK: u8 = b'C';
/// Most ranges in one answer; a longer list is cut (the oldest are kept).
pub const RANGES_MAX: usize = 65_536;
const NO_END: i64 = i64::MIN;

/// Where a relayed flow starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// Only the stream's description: the answer is `Info` or `NotFound`, then the end.
    Describe,
    /// Live, from the cached GOP.
    Live,
    /// The archive from the keyframe at or before this system time (µs since the epoch).
    Keyframe(i64),
    /// The archive from the first frame after this system time.
    After(i64),
    /// The archive from the first keyframe at or after this system time.
    KeyframeFrom(i64),
    /// No flow: the recorded ranges from this system time to the request's `until_us`; the
    /// answer is `Ranges`, then the end.
    Ranges(i64),
}

/// What a relaying server asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The camera, as in the RTSP URL.
    pub camera: String,
    /// 0 primary, 1 secondary.
    pub stream: u8,
    /// Where to start.
    pub start: Start,
    /// Playback speed of archive flows (1.0 real time).
    pub speed: f64,
    /// Where an archive flow ends, µs since the epoch; `None` goes on into live.
    pub until_us: Option<i64>,
    /// Further servers the request may be relayed through: each hop asks the next with one
    /// less, and one with none left answers `NotFound`, so routes that disagree for a moment
    /// cannot loop a request around the hive.
    pub hops_left: u8,
    /// The server whose archive is to be played (a server id of the hive), for playback that
    /// stitches the spans different servers recorded; `None`: the camera's recorder now.
    pub server: Option<u128>,
}

/// The first message on a channel, from the side that dialled it.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// The dialler asks for a flow.
    Request(Request),
    /// The dialler was asked for this channel (the other side could not dial it): the other
    /// side sends its request next. The token is the one it was asked with.
    Callback {
        /// What the ask named.
        token: u128,
    },
}

impl Opening {
    /// Appends the opening to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Opening::Request(request) => request.encode(out),
            Opening::Callback { token } => {
                frame_message(TAG_CALLBACK, 16, out);
                out.put_u128(*token);
            }
        }
    }
}

/// What comes back.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The stream exists: its codec and parameter sets (for DESCRIBE's SDP).
    Info {
        /// Its codec.
        codec: Codec,
        /// Its parameter sets, when known.
        parameter_sets: ParameterSets,
    },
    /// No server on the way knows the stream.
    NotFound,
    /// A frame of the flow.
    Frame(Frame),
    /// The flow ended (its `until_us` was reached, or the stream stopped).
    End,
    /// Recorded ranges (first and last frame, µs since the epoch), oldest first.
    Ranges(Vec<(i64, i64)>),
}

/// Bytes that are not a relay message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RelayError {
    /// A length over [`MESSAGE_MAX`].
    #[error("relay message of {0} bytes is over the bound")]
    TooLarge(usize),
    /// A tag this version does not know.
    #[error("unknown relay message tag {0:#04x}")]
    UnknownTag(u8),
    /// A body shorter than its fields, or with bad values.
    #[error("malformed relay {0}")]
    Malformed(&'static str),
    /// A request of another protocol version.
    #[error("relay protocol version {0}, this server speaks {VERSION}")]
    Version(u8),
}

fn frame_message(tag: u8, body_len: usize, out: &mut BytesMut) {
    out.reserve(5 + body_len);
    out.put_u32((1 + body_len) as u32);
    out.put_u8(tag);
}

impl Request {
    /// Appends the request to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let camera = &self.camera.as_bytes()[..self.camera.len().min(CAMERA_MAX)];
        let (kind, at) = match self.start {
            Start::Describe => (0, 0),
            Start::Live => (1, 0),
            Start::Keyframe(t) => (2, t),
            Start::After(t) => (3, t),
            Start::KeyframeFrom(t) => (4, t),
            Start::Ranges(t) => (5, t),
        };
        frame_message(TAG_REQUEST, 45 + camera.len(), out);
        out.put_u8(VERSION);
        out.put_u8(self.stream);
        out.put_u8(kind);
        out.put_i64(at);
        out.put_u64(self.speed.to_bits());
        out.put_i64(self.until_us.unwrap_or(NO_END));
        out.put_u8(self.hops_left);
        out.put_u128(self.server.unwrap_or(0));
        out.put_u8(camera.len() as u8);
        out.put_slice(camera);
    }

    fn decode(mut body: Bytes) -> Result<Request, RelayError> {
        if body.len() < 45 {
            return Err(RelayError::Malformed("request"));
        }
        let version = body.get_u8();
        if version != VERSION {
            return Err(RelayError::Version(version));
        }
        let stream = body.get_u8();
        let kind = body.get_u8();
        let at = body.get_i64();
        let speed = f64::from_bits(body.get_u64());
        let until = body.get_i64();
        let hops_left = body.get_u8();
        let server = Some(body.get_u128()).filter(|&s| s != 0);
        let camera_len = usize::from(body.get_u8());
        if body.len() != camera_len || stream > 1 || !(speed.is_finite() && speed > 0.0) {
            return Err(RelayError::Malformed("request"));
        }
        let camera =
            String::from_utf8(body.to_vec()).map_err(|_| RelayError::Malformed("camera name"))?;
        let start = match kind {
            0 => Start::Describe,
            1 => Start::Live,
            2 => Start::Keyframe(at),
            3 => Start::After(at),
            4 => Start::KeyframeFrom(at),
            5 => Start::Ranges(at),
            _ => return Err(RelayError::Malformed("start")),
        };
        let until_us = (until != NO_END).then_some(until);
        Ok(Request { camera, stream, start, speed, until_us, hops_left, server })
    }
}

impl Message {
    /// Appends the message to `out`. A frame's payload is copied once, into `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::Info { codec, parameter_sets } => {
                let sets = [&parameter_sets.vps, &parameter_sets.sps, &parameter_sets.pps];
                let unit = join_length_prefixed(sets.into_iter().flatten().map(|b| b.as_ref()));
                frame_message(TAG_INFO, 1 + unit.len(), out);
                out.put_u8(codec.code());
                out.put_slice(&unit);
            }
            Message::NotFound => frame_message(TAG_NOT_FOUND, 0, out),
            Message::Ranges(ranges) => {
                let ranges = &ranges[..ranges.len().min(RANGES_MAX)];
                frame_message(TAG_RANGES, 4 + 16 * ranges.len(), out);
                out.put_u32(ranges.len() as u32);
                for &(from, to) in ranges {
                    out.put_i64(from);
                    out.put_i64(to);
                }
            }
            Message::End => frame_message(TAG_END, 0, out),
            Message::Frame(frame) => {
                frame_message(TAG_FRAME, 9 + frame.data.len(), out);
                out.put_i64(frame.time_us);
                out.put_u8(u8::from(frame.keyframe) | frame.codec.code() << 1);
                out.put_slice(&frame.data);
            }
        }
    }

    fn decode(tag: u8, mut body: Bytes) -> Result<Message, RelayError> {
        match tag {
            TAG_INFO => {
                if body.is_empty() {
                    return Err(RelayError::Malformed("info"));
                }
                let codec =
                    Codec::from_code(body.get_u8()).ok_or(RelayError::Malformed("codec"))?;
                crate::nal::split_length_prefixed(&body)
                    .map_err(|_| RelayError::Malformed("parameter sets"))?;
                Ok(Message::Info { codec, parameter_sets: ParameterSets::of_unit(codec, &body) })
            }
            TAG_NOT_FOUND | TAG_END if !body.is_empty() => Err(RelayError::Malformed("empty")),
            TAG_NOT_FOUND => Ok(Message::NotFound),
            TAG_RANGES => {
                if body.len() < 4 {
                    return Err(RelayError::Malformed("ranges"));
                }
                let count = body.get_u32() as usize;
                if count > RANGES_MAX || body.len() != 16 * count {
                    return Err(RelayError::Malformed("ranges"));
                }
                Ok(Message::Ranges((0..count).map(|_| (body.get_i64(), body.get_i64())).collect()))
            }
            TAG_END => Ok(Message::End),
            TAG_FRAME => {
                if body.len() < 9 {
                    return Err(RelayError::Malformed("frame"));
                }
                let time_us = body.get_i64();
                let flags = body.get_u8();
                let codec = Codec::from_code(flags >> 1).ok_or(RelayError::Malformed("codec"))?;
                let keyframe = flags & 1 != 0;
                Ok(Message::Frame(Frame { time_us, keyframe, codec, data: body }))
            }
            other => Err(RelayError::UnknownTag(other)),
        }
    }
}

/// Splits bytes received into messages, holding at most one message of [`MESSAGE_MAX`].
#[derive(Debug, Default)]
pub struct Reader {
    buf: BytesMut,
}

impl Reader {
    /// An empty reader.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Takes bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held and not yet taken as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn next_body(&mut self) -> Result<Option<(u8, Bytes)>, RelayError> {
        let Some(head) = self.buf.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MESSAGE_MAX {
            return Err(RelayError::TooLarge(len));
        }
        if len == 0 {
            return Err(RelayError::Malformed("empty message"));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let mut body = self.buf.split_to(len).freeze();
        let tag = body.get_u8();
        Ok(Some((tag, body)))
    }

    /// The next request (what the answering side reads), `Ok(None)` until it is whole.
    pub fn next_request(&mut self) -> Result<Option<Request>, RelayError> {
        match self.next_body()? {
            None => Ok(None),
            Some((TAG_REQUEST, body)) => Request::decode(body).map(Some),
            Some((tag, _)) => Err(RelayError::UnknownTag(tag)),
        }
    }

    /// The first message of a channel the reader did not dial, `Ok(None)` until it is whole.
    pub fn next_opening(&mut self) -> Result<Option<Opening>, RelayError> {
        match self.next_body()? {
            None => Ok(None),
            Some((TAG_REQUEST, body)) => Request::decode(body).map(|r| Some(Opening::Request(r))),
            Some((TAG_CALLBACK, mut body)) if body.len() == 16 => {
                Ok(Some(Opening::Callback { token: body.get_u128() }))
            }
            Some((TAG_CALLBACK, _)) => Err(RelayError::Malformed("callback")),
            Some((tag, _)) => Err(RelayError::UnknownTag(tag)),
        }
    }

    /// The next answer (what the asking side reads), `Ok(None)` until it is whole.
    pub fn next_message(&mut self) -> Result<Option<Message>, RelayError> {
        match self.next_body()? {
            None => Ok(None),
            Some((tag, body)) => Message::decode(tag, body).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(n: u8, keyframe: bool, codec: Codec) -> Frame {
        let data = join_length_prefixed([vec![0x65, n, n].as_slice()]);
        Frame { time_us: 1_796_000_000_000_000 + i64::from(n), keyframe, codec, data }
    }

    /// A live request of camera `cam` with `hops_left`.
    fn live_request(hops_left: u8) -> Request {
        Request {
            camera: "cam".into(),
            stream: 0,
            start: Start::Live,
            speed: 1.0,
            until_us: None,
            hops_left,
            server: None,
        }
    }

    #[test]
    fn a_ranges_answer_announcing_more_than_it_holds_is_malformed() {
        let mut wire = BytesMut::new();
        Message::Ranges(vec![(1, 2)]).encode(&mut wire);
        wire[8] = 2; // length, tag, then the count (u32 BE): 2, with one pair
        let mut r = Reader::new();
        r.push(&wire);
        assert_eq!(r.next_message(), Err(RelayError::Malformed("ranges")));
    }

    #[test]
    fn a_request_and_its_answers_come_through_whole_in_any_cut() {
        let request = Request {
            camera: "5bb3e5666d1a1d3979d313fbac171999".into(),
            stream: 1,
            start: Start::Keyframe(1_796_000_000_000_000),
            speed: 4.0,
            until_us: Some(1_796_000_060_000_000),
            hops_left: 7,
            server: Some(0xfeed),
        };
        let sets = ParameterSets {
            vps: None,
            sps: Some(Bytes::from_static(&[0x67, 1, 2])),
            pps: Some(Bytes::from_static(&[0x68, 3])),
        };
        let answers = vec![
            Message::Info { codec: Codec::H264, parameter_sets: sets },
            Message::Frame(frame(1, true, Codec::H264)),
            Message::Frame(frame(2, false, Codec::H265)),
            Message::End,
            Message::NotFound,
            Message::Ranges(vec![(1, 2), (5, 9)]),
            Message::Ranges(Vec::new()),
        ];
        let mut wire = BytesMut::new();
        request.encode(&mut wire);
        let mut answer_wire = BytesMut::new();
        for a in &answers {
            a.encode(&mut answer_wire);
        }
        for cut in [1, 3, 7, 1000] {
            let mut r = Reader::new();
            let mut got = None;
            for piece in wire.chunks(cut) {
                r.push(piece);
                if let Some(req) = r.next_request().unwrap() {
                    got = Some(req);
                }
            }
            assert_eq!(got.as_ref(), Some(&request));
            let mut r = Reader::new();
            let mut got = Vec::new();
            for piece in answer_wire.chunks(cut) {
                r.push(piece);
                while let Some(m) = r.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, answers);
        }
    }

    #[test]
    fn an_opening_is_a_request_or_a_callback_and_a_callback_of_another_size_is_malformed() {
        let request = live_request(3);
        for opening in [Opening::Request(request), Opening::Callback { token: u128::MAX - 5 }] {
            let mut wire = BytesMut::new();
            opening.encode(&mut wire);
            let mut r = Reader::new();
            r.push(&wire);
            assert_eq!(r.next_opening(), Ok(Some(opening)));
        }
        let mut short = BytesMut::new();
        frame_message(TAG_CALLBACK, 8, &mut short);
        short.put_u64(1);
        let mut r = Reader::new();
        r.push(&short);
        assert_eq!(r.next_opening(), Err(RelayError::Malformed("callback")));
        // A callback is never a request: a dialled-back side reads only requests.
        let mut callback = BytesMut::new();
        Opening::Callback { token: 1 }.encode(&mut callback);
        let mut r = Reader::new();
        r.push(&callback);
        assert_eq!(r.next_request(), Err(RelayError::UnknownTag(TAG_CALLBACK)));
    }

    #[test]
    fn an_announced_length_over_the_bound_is_refused_before_anything_is_held() {
        let mut r = Reader::new();
        r.push(&(MESSAGE_MAX as u32 + 1).to_be_bytes());
        assert_eq!(r.next_message(), Err(RelayError::TooLarge(MESSAGE_MAX + 1)));
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut wire = BytesMut::new();
        let request = live_request(1);
        request.encode(&mut wire);
        let mut bad_version = wire.clone();
        bad_version[5] = 9;
        let mut bad_speed = BytesMut::new();
        Request { speed: f64::NAN, ..request.clone() }.encode(&mut bad_speed);
        let mut short = wire.clone();
        short[3] -= 1;
        for (bytes, want) in [
            (bad_version, RelayError::Version(9)),
            (bad_speed, RelayError::Malformed("request")),
            (short, RelayError::Malformed("request")),
        ] {
            let mut r = Reader::new();
            r.push(&bytes);
            assert_eq!(r.next_request(), Err(want));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_message_an_error_or_more_to_come(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut r = Reader::new();
            r.push(&bytes);
            while let Ok(Some(_)) = r.next_message() {}
            let mut r = Reader::new();
            r.push(&bytes);
            while let Ok(Some(_)) = r.next_request() {}
        }
    }
}
