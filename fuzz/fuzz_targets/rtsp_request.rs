//! RTSP requests from an unauthenticated client: bytes fed in chunks to the request reader, and
//! every request it yields answered by a session. Nothing may panic; the reader never holds more
//! than one bounded request; every answer carries a status the server sends, echoes the CSeq,
//! and a PLAY that starts a flow names the stream the session set up.
#![no_main]

use hive_fuzz::reader::Reader;
use hive_media::frame::Codec;
use hive_media::nal::ParameterSets;
use hive_media::rtsp::reader::{Incoming, RequestReader, REQUEST_MAX};
use hive_media::rtsp::session::{Context, Effect, Session};
use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use libfuzzer_sys::fuzz_target;
use rtsp_types::headers;

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let chunk = usize::from(input.u8()).max(1);
    let now_us = input.u64() as i64;
    let last_sent_us = Some(input.u64() as i64).filter(|t| t % 2 == 0);
    let bytes = input.rest();
    let mut reader = RequestReader::new();
    let mut session = Session::new("fuzz".into());
    let mut set_up: Option<Target> = None;
    'feed: for piece in bytes.chunks(chunk) {
        reader.push(piece);
        loop {
            let request = match reader.next_message() {
                Ok(Some(Incoming::Request(request))) => request,
                Ok(Some(Incoming::Data)) => continue,
                Ok(None) => break,
                Err(_) => break 'feed,
            };
            let mut lookup = |t: &Target| {
                (!t.camera.is_empty()).then(|| StreamInfo {
                    codec: Codec::H264,
                    parameter_sets: ParameterSets::default(),
                    title: t.camera.clone(),
                })
            };
            let cx = Context { lookup: &mut lookup, next_seq: 7, now_us, last_sent_us };
            let reply = session.handle(&request, cx);
            let status = u16::from(reply.response.status());
            assert!((200..600).contains(&status), "status {status}");
            if let Some(cseq) = request.header(&headers::CSEQ) {
                assert_eq!(reply.response.header(&headers::CSEQ), Some(cseq));
            }
            let mut wire = Vec::new();
            reply.response.write(&mut wire).expect("a response serializes");
            match &reply.effect {
                Effect::Play { target, speed, .. } => {
                    assert_eq!(status, 200);
                    assert!(speed.is_finite() && *speed > 0.0, "speed {speed}");
                    if let Some(t) = &set_up {
                        assert_eq!(&t.camera, &target.camera);
                    }
                }
                Effect::None | Effect::Pause | Effect::Teardown => {}
            }
            if request.method() == rtsp_types::Method::Setup && status == 200 {
                set_up = request.request_uri().and_then(|u| Target::parse(u).ok());
            }
        }
        // Whatever is buffered is one request still coming in, never more than the bound.
        assert!(reader.buffered() <= REQUEST_MAX + chunk, "{} buffered", reader.buffered());
    }
});
