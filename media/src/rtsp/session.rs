//! One RTSP session's state machine: requests in, a response and what the shell must do to the
//! flow of frames out. It holds no socket and reads no clock; the shell passes what it needs.

use super::clock::{us_to_utc, utc_to_us};
use super::target::{Target, SPEED_MAX};
use crate::rtp::rtp_time;
use crate::sdp::{describe, StreamInfo, TRACK};
use rtsp_types::headers::{
    self, NptRange, NptTime, Range, RtpLowerTransport, RtpProfile, Scale, Transport, Transports,
    UtcRange,
};
use rtsp_types::{Method, Request, Response, StatusCode, Version};

/// Seconds a client may stay silent before the shell ends its session.
pub const SESSION_TIMEOUT_S: u64 = 60;

/// Where a PLAY starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayFrom {
    /// Live, from the cached last GOP.
    Live,
    /// The archive, from the keyframe at or before this system time (µs since the epoch).
    At(i64),
    /// The archive, from the first frame after this system time, without going back to a
    /// keyframe: a paused archive flow resumed, whose client's decoder holds the frames before.
    After(i64),
}

/// What the shell does to the session's flow of frames.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Start (or restart) sending.
    Play {
        /// The camera stream.
        target: Target,
        /// Where.
        from: PlayFrom,
        /// Playback speed (1.0 real time).
        speed: f64,
        /// Where to stop, µs since the epoch; `None` goes on into live.
        until_us: Option<i64>,
        /// The interleaved channel of RTP.
        channel: u8,
    },
    /// Stop sending, keep the position.
    Pause,
    /// End the session.
    Teardown,
}

/// A response and its effect.
#[derive(Debug)]
pub struct Reply {
    /// What goes back to the client.
    pub response: Response<Vec<u8>>,
    /// What the shell does.
    pub effect: Effect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Init,
    Ready,
    Playing,
    Paused,
}

/// The state of one client connection's RTSP session (one video track).
#[derive(Debug)]
pub struct Session {
    id: String,
    state: State,
    target: Option<Target>,
    channel: u8,
    /// Whether the URL chose a position, so `npt` counts from it.
    played_once: bool,
    /// Where the archive flow playing (or paused) started; `None` while live.
    archive_from_us: Option<i64>,
}

/// What the shell knows at the time of a request.
pub struct Context<'a> {
    /// The stream a DESCRIBE or SETUP names, looked up by the shell; `None` if it has no such
    /// camera.
    pub lookup: &'a mut dyn FnMut(&Target) -> Option<StreamInfo>,
    /// Sequence number of the next RTP packet the session sends.
    pub next_seq: u16,
    /// System time now, µs since the epoch.
    pub now_us: i64,
    /// System time of the last frame the session sent since its last PLAY, if any: where a
    /// paused archive flow resumes.
    pub last_sent_us: Option<i64>,
}

/// The methods the server answers.
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER, TEARDOWN";

fn respond(request: &Request<Vec<u8>>, status: StatusCode) -> rtsp_types::ResponseBuilder {
    let mut builder = Response::builder(Version::V1_0, status);
    if let Some(cseq) = request.header(&headers::CSEQ) {
        builder = builder.header(headers::CSEQ, cseq.as_str());
    }
    builder
}

/// A response to `request` with `status` and no body.
pub fn status_only(request: &Request<Vec<u8>>, status: StatusCode) -> Response<Vec<u8>> {
    respond(request, status).build(Vec::new())
}

fn fail(request: &Request<Vec<u8>>, status: StatusCode) -> Reply {
    Reply { response: status_only(request, status), effect: Effect::None }
}

/// A 400 for bytes that did not parse as a request (no CSeq to echo).
pub fn bad_request() -> Response<Vec<u8>> {
    Response::builder(Version::V1_0, StatusCode::BadRequest).build(Vec::new())
}

/// The track control URL of a session URL: its path with `/trackID=0` appended, query kept.
pub fn track_url(url: &url::Url) -> String {
    let mut track = url.clone();
    let path = track.path().trim_end_matches('/').to_owned();
    if !path.ends_with(TRACK) {
        track.set_path(&format!("{path}/{TRACK}"));
    }
    track.to_string()
}

impl Session {
    /// A new session with the id the shell chose (random, unguessable).
    pub fn new(id: String) -> Session {
        Session {
            id,
            state: State::Init,
            target: None,
            channel: 0,
            played_once: false,
            archive_from_us: None,
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Answers one request.
    pub fn handle(&mut self, request: &Request<Vec<u8>>, cx: Context<'_>) -> Reply {
        if request.header(&headers::CSEQ).is_none() {
            return fail(request, StatusCode::BadRequest);
        }
        if request.version() != Version::V1_0 {
            return fail(request, StatusCode::RTSPVersionNotSupported);
        }
        let needs_session =
            matches!(request.method(), Method::Play | Method::Pause | Method::Teardown);
        if needs_session || self.state != State::Init {
            if let Some(Ok(Some(headers::Session(id, _)))) =
                Some(request.typed_header::<headers::Session>())
            {
                if id != self.id {
                    return fail(request, StatusCode::SessionNotFound);
                }
            } else if needs_session {
                return fail(request, StatusCode::SessionNotFound);
            }
        }
        match request.method() {
            Method::Options => Reply {
                response: respond(request, StatusCode::Ok)
                    .header(headers::PUBLIC, PUBLIC)
                    .build(Vec::new()),
                effect: Effect::None,
            },
            Method::Describe => self.describe(request, cx),
            Method::Setup => self.setup(request, cx),
            Method::Play => self.play(request, cx),
            Method::Pause => self.pause(request),
            Method::GetParameter | Method::SetParameter => Reply {
                response: self.with_session(respond(request, StatusCode::Ok)).build(Vec::new()),
                effect: Effect::None,
            },
            Method::Teardown => {
                self.state = State::Init;
                self.target = None;
                self.archive_from_us = None;
                Reply { response: status_only(request, StatusCode::Ok), effect: Effect::Teardown }
            }
            _ => Reply {
                response: respond(request, StatusCode::MethodNotAllowed)
                    .header(headers::ALLOW, PUBLIC)
                    .build(Vec::new()),
                effect: Effect::None,
            },
        }
    }

    fn with_session(&self, builder: rtsp_types::ResponseBuilder) -> rtsp_types::ResponseBuilder {
        if self.state == State::Init {
            return builder;
        }
        builder.header(headers::SESSION, format!("{};timeout={SESSION_TIMEOUT_S}", self.id))
    }

    fn target_of(request: &Request<Vec<u8>>) -> Result<Target, StatusCode> {
        let url = request.request_uri().ok_or(StatusCode::BadRequest)?;
        Target::parse(url).map_err(|e| match e {
            super::target::TargetError::NoCamera => StatusCode::NotFound,
            super::target::TargetError::BadValue { .. } => StatusCode::BadRequest,
        })
    }

    fn describe(&mut self, request: &Request<Vec<u8>>, cx: Context<'_>) -> Reply {
        let target = match Self::target_of(request) {
            Ok(t) => t,
            Err(status) => return fail(request, status),
        };
        let Some(info) = (cx.lookup)(&target) else { return fail(request, StatusCode::NotFound) };
        let Some(url) = request.request_uri() else { return fail(request, StatusCode::BadRequest) };
        let base = url.to_string();
        let sdp = describe(&info, cx.now_us as u64, &track_url(url));
        Reply {
            response: respond(request, StatusCode::Ok)
                .header(headers::CONTENT_TYPE, "application/sdp")
                .header(headers::CONTENT_BASE, base)
                .build(sdp.into_bytes()),
            effect: Effect::None,
        }
    }

    fn setup(&mut self, request: &Request<Vec<u8>>, cx: Context<'_>) -> Reply {
        if matches!(self.state, State::Playing | State::Paused) {
            return fail(request, StatusCode::MethodNotValidInThisState);
        }
        let target = match Self::target_of(request) {
            Ok(t) => t,
            Err(status) => return fail(request, status),
        };
        if (cx.lookup)(&target).is_none() {
            return fail(request, StatusCode::NotFound);
        }
        let Ok(Some(transports)) = request.typed_header::<Transports>() else {
            return fail(request, StatusCode::UnsupportedTransport);
        };
        let tcp = transports.iter().find_map(|t| match t {
            Transport::Rtp(rtp)
                if rtp.profile == RtpProfile::Avp
                    && rtp.lower_transport == Some(RtpLowerTransport::Tcp) =>
            {
                Some(rtp.params.interleaved.map_or(0, |(rtp, _)| rtp))
            }
            _ => None,
        });
        let Some(channel) = tcp else { return fail(request, StatusCode::UnsupportedTransport) };
        if channel == u8::MAX {
            return fail(request, StatusCode::UnsupportedTransport);
        }
        self.channel = channel;
        self.target = Some(target);
        self.state = State::Ready;
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", channel, channel + 1);
        Reply {
            response: self
                .with_session(respond(request, StatusCode::Ok))
                .header(headers::TRANSPORT, transport)
                .build(Vec::new()),
            effect: Effect::None,
        }
    }

    fn play(&mut self, request: &Request<Vec<u8>>, cx: Context<'_>) -> Reply {
        let Some(target) = self.target.clone() else {
            return fail(request, StatusCode::MethodNotValidInThisState);
        };
        let range = match request.typed_header::<Range>() {
            Ok(r) => r,
            Err(_) => return fail(request, StatusCode::InvalidRange),
        };
        let mut speed = target.speed;
        match request.typed_header::<Scale>() {
            Ok(Some(scale)) if *scale > 0.0 && *scale <= SPEED_MAX => speed = *scale,
            Ok(Some(_)) | Err(_) => return fail(request, StatusCode::InvalidRange),
            Ok(None) => {}
        }
        let npt_us = |t: &NptTime| -> Option<i64> {
            match *t {
                NptTime::Now => None,
                // Peer numbers: every step checked, an overflow is an invalid range.
                NptTime::Seconds(s, ns) => i64::try_from(s)
                    .ok()?
                    .checked_mul(1_000_000)?
                    .checked_add(i64::from(ns.unwrap_or(0) / 1_000)),
                NptTime::Hms(h, m, s, ns) => i64::try_from(h)
                    .ok()?
                    .checked_mul(3600)?
                    .checked_add(i64::from(m) * 60 + i64::from(s))?
                    .checked_mul(1_000_000)?
                    .checked_add(i64::from(ns.unwrap_or(0) / 1_000)),
            }
        };
        // A paused (or replayed) archive flow goes on after the last frame sent, or from where
        // it started if nothing was sent; a live one is live again.
        let resume = match (self.archive_from_us, cx.last_sent_us) {
            (Some(_), Some(last)) => PlayFrom::After(last),
            (Some(from), _) => PlayFrom::At(from),
            (None, _) => PlayFrom::Live,
        };
        // (start, end) as system times.
        let (from, until_us) = match &range {
            Some(Range::Utc(UtcRange::From(t))) => match utc_to_us(t) {
                Some(t) => (PlayFrom::At(t), None),
                None => return fail(request, StatusCode::InvalidRange),
            },
            Some(Range::Utc(UtcRange::FromTo(a, b))) => match (utc_to_us(a), utc_to_us(b)) {
                (Some(a), Some(b)) if a <= b => (PlayFrom::At(a), Some(b)),
                _ => return fail(request, StatusCode::InvalidRange),
            },
            Some(Range::Npt(npt)) => {
                let (start, end) = match npt {
                    NptRange::From(s) => (Some(s), None),
                    NptRange::FromTo(s, e) => (Some(s), Some(e)),
                    NptRange::To(e) => (None, Some(e)),
                    NptRange::Empty => (None, None),
                };
                match target.pos_us {
                    // With a position in the URL, npt counts from it.
                    Some(pos) => {
                        let offset = |t: Option<&NptTime>| match t.map(|t| (t, npt_us(t))) {
                            Some((NptTime::Now, _)) | None => Ok(None),
                            Some((_, us)) => {
                                us.and_then(|us| pos.checked_add(us)).map(Some).ok_or(())
                            }
                        };
                        let (Ok(start), Ok(end)) = (offset(start), offset(end)) else {
                            return fail(request, StatusCode::InvalidRange);
                        };
                        let from = match start {
                            Some(s) => PlayFrom::At(s),
                            None if self.state == State::Paused => resume,
                            None => PlayFrom::At(pos),
                        };
                        (from, end)
                    }
                    // Without one, the URL is live until a PLAY names a clock position.
                    None => (PlayFrom::Live, None),
                }
            }
            Some(_) => return fail(request, StatusCode::InvalidRange),
            None => match (target.pos_us, self.state) {
                (_, State::Paused) => (resume, None),
                (Some(pos), _) if !self.played_once => (PlayFrom::At(pos), None),
                (Some(_), _) => (resume, None),
                (None, _) => (resume, None),
            },
        };
        let start_us = match from {
            PlayFrom::At(t) | PlayFrom::After(t) => t,
            PlayFrom::Live => cx.now_us,
        };
        let range_header = match (&range, from) {
            (Some(Range::Utc(_)), _) => format!("clock={}-", us_to_utc(start_us)),
            // Resumed without a position in the URL: only an absolute time says where.
            (None, PlayFrom::After(_)) if target.pos_us.is_none() => {
                format!("clock={}-", us_to_utc(start_us))
            }
            (_, PlayFrom::At(t) | PlayFrom::After(t)) => {
                let pos = target.pos_us.unwrap_or(t);
                let s = t.saturating_sub(pos).max(0);
                format!("npt={}.{:03}-", s / 1_000_000, s % 1_000_000 / 1_000)
            }
            _ => "npt=0.000-".to_owned(),
        };
        let track = request.request_uri().map(track_url).unwrap_or_default();
        let rtp_info = format!("url={track};seq={};rtptime={}", cx.next_seq, rtp_time(start_us));
        self.state = State::Playing;
        self.played_once = true;
        self.archive_from_us = match from {
            PlayFrom::At(t) => Some(t),
            PlayFrom::After(_) => self.archive_from_us,
            PlayFrom::Live => None,
        };
        let mut builder = self
            .with_session(respond(request, StatusCode::Ok))
            .header(headers::RANGE, range_header)
            .header(headers::RTP_INFO, rtp_info);
        if speed != 1.0 || request.header(&headers::SCALE).is_some() {
            builder = builder.header(headers::SCALE, format!("{speed}"));
        }
        Reply {
            response: builder.build(Vec::new()),
            effect: Effect::Play { target, from, speed, until_us, channel: self.channel },
        }
    }

    fn pause(&mut self, request: &Request<Vec<u8>>) -> Reply {
        if self.state == State::Init {
            return fail(request, StatusCode::MethodNotValidInThisState);
        }
        if self.state == State::Playing {
            self.state = State::Paused;
        }
        Reply {
            response: self.with_session(respond(request, StatusCode::Ok)).build(Vec::new()),
            effect: Effect::Pause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Codec;
    use crate::nal::ParameterSets;

    fn request(text: &str) -> Request<Vec<u8>> {
        match rtsp_types::Message::<Vec<u8>>::parse(text.as_bytes()).unwrap().0 {
            rtsp_types::Message::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn send(session: &mut Session, text: &str) -> Reply {
        send_after(session, text, None)
    }

    /// `send` by a shell that last sent a frame of system time `last_sent_us`.
    fn send_after(session: &mut Session, text: &str, last_sent_us: Option<i64>) -> Reply {
        let mut lookup = |t: &Target| {
            (t.camera == "cam1").then(|| StreamInfo {
                codec: Codec::H264,
                parameter_sets: ParameterSets::default(),
                title: t.camera.clone(),
            })
        };
        let cx = Context { lookup: &mut lookup, next_seq: 5, now_us: 9_000_000, last_sent_us };
        session.handle(&request(text), cx)
    }

    fn status(reply: &Reply) -> u16 {
        reply.response.status().into()
    }

    const SETUP: &str = "SETUP rtsp://h/cam1?pos=1000000/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n\
                         Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n";

    #[test]
    fn ffmpeg_seeks_with_play_pause_play_in_one_session() {
        let mut s = Session::new("abc".into());
        let r = send(&mut s, "DESCRIBE rtsp://h/cam1?pos=1000000 RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert_eq!(status(&r), 200);
        assert!(String::from_utf8_lossy(r.response.body()).contains("H264/90000"));
        let setup = SETUP.replace("?pos=1000000/trackID=0", "/trackID=0?pos=1000000");
        assert_eq!(status(&send(&mut s, &setup)), 200);
        let play = |npt: &str| {
            format!("PLAY rtsp://h/cam1?pos=1000000 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\nRange: npt={npt}-\r\n\r\n")
        };
        let r = send(&mut s, &play("0"));
        assert!(
            matches!(r.effect, Effect::Play { from: PlayFrom::At(1_000_000_000), .. }),
            "{:?}",
            r.effect
        );
        let r = send(&mut s, "PAUSE rtsp://h/cam1 RTSP/1.0\r\nCSeq: 5\r\nSession: abc\r\n\r\n");
        assert_eq!(r.effect, Effect::Pause);
        let r = send(&mut s, &play("30.5"));
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::At(1_030_500_000), .. }));
        let info = r.response.header(&headers::RTP_INFO).unwrap().as_str().to_owned();
        assert!(info.contains("seq=5;rtptime="), "{info}");
        assert_eq!(r.response.header(&headers::RANGE).unwrap().as_str(), "npt=30.500-");
    }

    #[test]
    fn a_paused_archive_flow_resumes_after_the_last_frame_sent_and_a_live_one_goes_live() {
        const PAUSE: &str = "PAUSE rtsp://h/cam1 RTSP/1.0\r\nCSeq: 5\r\nSession: abc\r\n\r\n";
        const PLAY: &str = "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 6\r\nSession: abc\r\n\r\n";
        // An archive URL: PLAY, PAUSE after frames up to 1.8 s past pos, PLAY without Range.
        let mut s = Session::new("abc".into());
        let setup = SETUP.replace("?pos=1000000/trackID=0", "/trackID=0?pos=1000000");
        assert_eq!(status(&send(&mut s, &setup)), 200);
        let r = send(&mut s, PLAY);
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::At(1_000_000_000), .. }));
        send_after(&mut s, PAUSE, Some(1_001_800_000));
        let r = send_after(&mut s, PLAY, Some(1_001_800_000));
        assert!(
            matches!(r.effect, Effect::Play { from: PlayFrom::After(1_001_800_000), .. }),
            "{:?}",
            r.effect
        );
        assert_eq!(r.response.header(&headers::RANGE).unwrap().as_str(), "npt=1.800-");
        // Paused before anything was sent: from the start again.
        let mut s = Session::new("abc".into());
        send(&mut s, &setup);
        send(&mut s, PLAY);
        send(&mut s, PAUSE);
        let r = send(&mut s, PLAY);
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::At(1_000_000_000), .. }));
        // A live URL paused and played again is live again.
        let mut s = Session::new("abc".into());
        send(&mut s, &SETUP.replace("?pos=1000000", ""));
        send(&mut s, PLAY);
        send_after(&mut s, PAUSE, Some(8_000_000));
        let r = send_after(&mut s, PLAY, Some(8_000_000));
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::Live, .. }), "{:?}", r.effect);
        // A live URL moved into the archive by a clock PLAY resumes in the archive, and says
        // where by an absolute time.
        let clock = "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 7\r\nSession: abc\r\n\
                     Range: clock=19700101T000010Z-\r\n\r\n";
        send(&mut s, clock);
        send_after(&mut s, PAUSE, Some(12_000_000));
        let r = send_after(&mut s, PLAY, Some(12_000_000));
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::After(12_000_000), .. }));
        assert_eq!(r.response.header(&headers::RANGE).unwrap().as_str(), "clock=19700101T000012Z-");
    }

    #[test]
    fn a_live_url_plays_live_until_a_play_names_a_clock_position() {
        let mut s = Session::new("abc".into());
        assert_eq!(status(&send(&mut s, &SETUP.replace("?pos=1000000", ""))), 200);
        let r = send(
            &mut s,
            "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\nRange: npt=0.000-\r\n\r\n",
        );
        assert!(matches!(r.effect, Effect::Play { from: PlayFrom::Live, until_us: None, .. }));
        let r = send(
            &mut s,
            "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 5\r\nSession: abc\r\n\
                              Range: clock=19700101T000010Z-19700101T000020Z\r\nScale: 4\r\n\r\n",
        );
        assert!(matches!(
            r.effect,
            Effect::Play {
                from: PlayFrom::At(10_000_000),
                until_us: Some(20_000_000),
                speed: 4.0,
                ..
            }
        ));
        assert_eq!(r.response.header(&headers::SCALE).unwrap().as_str(), "4");
    }

    #[test]
    fn wrong_requests_get_their_status_codes() {
        let mut s = Session::new("abc".into());
        let udp = "SETUP rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n";
        assert_eq!(status(&send(&mut s, udp)), 461);
        assert_eq!(
            status(&send(&mut s, "DESCRIBE rtsp://h/cam9 RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
            404
        );
        assert_eq!(
            status(&send(&mut s, "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nSession: abc\r\n\r\n")),
            455
        );
        assert_eq!(
            status(&send(&mut s, "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nSession: zzz\r\n\r\n")),
            454
        );
        assert_eq!(status(&send(&mut s, "RECORD rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")), 405);
        assert_eq!(status(&send(&mut s, "OPTIONS * RTSP/1.0\r\n\r\n")), 400);
        assert_eq!(
            status(&send(&mut s, "DESCRIBE rtsp://h/cam1?speed=-1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
            400
        );
        assert_eq!(status(&send(&mut s, &SETUP.replace("?pos=1000000", ""))), 200);
        let r = send(&mut s, "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\nRange: smpte=0:00:10-\r\n\r\n");
        assert_eq!(status(&r), 457);
    }

    #[test]
    fn npt_offsets_that_overflow_the_clock_are_an_invalid_range_not_a_panic() {
        let mut s = Session::new("abc".into());
        let setup = SETUP.replace("?pos=1000000/trackID=0", "/trackID=0?pos=9223372036854775");
        assert_eq!(status(&send(&mut s, &setup)), 200);
        for range in ["npt=9223372036854-", "npt=9223372036854775807-", "npt=2562047788:00:00-"] {
            let play = format!(
                "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: abc\r\nRange: {range}\r\n\r\n"
            );
            assert_eq!(status(&send(&mut s, &play)), 457, "{range}");
        }
    }
}
