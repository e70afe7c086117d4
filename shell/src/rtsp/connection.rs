//! One RTSP client connection: requests in order, then RTP of the playing flow, coalesced.

use super::{Access, ArchiveStart, AuthRequest, Flow, Media};
use bytes::BytesMut;
use hive_media::frame::Codec;
use hive_media::rtp::{rtp_time, Packetizer};
use hive_media::rtsp::reader::{Incoming, ReadError, RequestReader};
use hive_media::rtsp::session::{self, Context, Effect, PlayFrom, Session};
use hive_media::rtsp::target::Target;
use rtsp_types::{headers, Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes of RTP gathered into one write.
const WRITE_BYTES: usize = 256 * 1024;

/// Failed authentications after which the connection is closed (each costs a password hash).
const AUTH_FAILURES_MAX: u32 = 3;

/// How long a connection may take to authenticate (its first request other than OPTIONS)
/// after it is accepted: an unauthenticated peer trickling bytes cannot hold a slot longer.
const AUTHENTICATE_WITHIN: Duration = Duration::from_secs(10);

/// How long one write may wait for a client that stopped reading before it is dropped.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// Why a connection ended early.
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not RTSP, or too much of it.
    #[error("bad request: {0}")]
    Request(#[from] ReadError),
    /// Nothing from the client for the session timeout.
    #[error("client silent for {0} s")]
    Silent(u64),
    /// Too many failed authentications.
    #[error("{AUTH_FAILURES_MAX} failed authentications")]
    AuthFailures,
    /// No authenticated request within [`AUTHENTICATE_WITHIN`] of connecting.
    #[error("not authenticated within {} s", AUTHENTICATE_WITHIN.as_secs())]
    AuthenticationTimeout,
    /// The client took nothing for [`WRITE_STALL`].
    #[error("client stopped reading for {} s", WRITE_STALL.as_secs())]
    Stalled,
    /// The stream's source went away (a relayed camera whose recorder is gone for good).
    #[error("the stream's source went away")]
    SourceGone,
}

struct Playing {
    flow: Flow,
    channel: u8,
    /// The flow has no end of its own (live, or archive on into live): its end means the
    /// source is gone, and the connection closes so the player sees the end at once rather
    /// than wait on a session that will never send again.
    endless: bool,
}

/// Serves one connection until the client leaves, tears down, or misbehaves.
pub async fn serve_connection<IO, M>(
    io: IO,
    media: Arc<M>,
    peer: std::net::IpAddr,
) -> Result<(), ConnectionError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    M: Media,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut reader = RequestReader::new();
    let mut session = Session::new(format!("{:016x}", rand::random::<u64>()));
    let mut packetizer = Packetizer::new(Codec::H264, rand::random(), rand::random());
    let mut playing: Option<Playing> = None;
    let mut granted: Option<Option<String>> = None;
    let mut auth_failures = 0;
    let mut read_buf = vec![0u8; 4096];
    let mut out = BytesMut::with_capacity(WRITE_BYTES);
    let timeout = Duration::from_secs(session::SESSION_TIMEOUT_S);
    let mut last_heard = Instant::now();
    let authenticate_by = last_heard + AUTHENTICATE_WITHIN;
    // System time of the last frame sent since the last PLAY: where a paused archive flow
    // goes on.
    let mut last_sent_us: Option<i64> = None;
    loop {
        tokio::select! {
            read = rd.read(&mut read_buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                last_heard = Instant::now();
                reader.push(&read_buf[..n]);
                loop {
                    let request = match reader.next_message() {
                        Ok(Some(Incoming::Request(r))) => r,
                        Ok(Some(Incoming::Data)) => continue,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = write_response(&mut wr, &session::bad_request()).await;
                            return Err(e.into());
                        }
                    };
                    let authorization =
                        request.header(&headers::AUTHORIZATION).map(|v| v.as_str().to_owned());
                    let needs_auth = request.method() != rtsp_types::Method::Options;
                    if needs_auth && granted.as_ref() != Some(&authorization) {
                        let proof = AuthRequest {
                            authorization: authorization.clone(),
                            method: <&str>::from(request.method()).to_owned(),
                            uri: request.request_uri().map_or_else(String::new, |u| u.as_str().to_owned()),
                        };
                        if media.authorize(proof, peer).await == Access::Granted {
                            granted = Some(authorization);
                        } else {
                            let response = session::status_only(&request, StatusCode::Unauthorized);
                            let mut response = response;
                            response.insert_header(headers::WWW_AUTHENTICATE, media.challenge());
                            write_response(&mut wr, &response).await?;
                            auth_failures += u32::from(authorization.is_some());
                            if auth_failures >= AUTH_FAILURES_MAX {
                                return Err(ConnectionError::AuthFailures);
                            }
                            continue;
                        }
                    }
                    let mut flow = FlowState { packetizer: &mut packetizer, playing: &mut playing, last_sent_us: &mut last_sent_us };
                    let done = handle(&request, &mut session, &mut flow, &*media, &mut out, &mut wr).await?;
                    if done {
                        return Ok(());
                    }
                }
            }
            frame = next_frame(&mut playing) => {
                let Some(play) = playing.as_mut() else { continue };
                let Some(frame) = frame else {
                    // The flow ended: a Range with an end (the session stays for the next
                    // PLAY), or the source went away.
                    if play.endless {
                        return Err(ConnectionError::SourceGone);
                    }
                    playing = None;
                    continue;
                };
                let mut frame = Some(frame);
                while let Some(f) = frame.take() {
                    if packetizer.packetize(&f.data, rtp_time(f.time_us), play.channel, &mut out).is_err() {
                        tracing::debug!("dropping a malformed frame");
                    }
                    last_sent_us = Some(f.time_us);
                    if out.len() < WRITE_BYTES {
                        frame = play.flow.try_recv().ok();
                    }
                }
                match tokio::time::timeout(WRITE_STALL, wr.write_all(&out)).await {
                    Ok(written) => written?,
                    Err(_) => return Err(ConnectionError::Stalled),
                }
                out.clear();
            }
            _ = tokio::time::sleep_until(authenticate_by), if granted.is_none() => {
                return Err(ConnectionError::AuthenticationTimeout);
            }
            _ = tokio::time::sleep_until(last_heard + timeout), if playing.is_none() => {
                return Err(ConnectionError::Silent(session::SESSION_TIMEOUT_S));
            }
        }
        if playing.is_some() && last_heard.elapsed() > timeout * 2 {
            // Players send keep-alives (GET_PARAMETER or RTCP); a vanished one is dropped.
            return Err(ConnectionError::Silent(2 * session::SESSION_TIMEOUT_S));
        }
    }
}

async fn next_frame(playing: &mut Option<Playing>) -> Option<hive_media::frame::Frame> {
    match playing {
        Some(play) => play.flow.recv().await,
        None => std::future::pending().await,
    }
}

async fn write_response<W: AsyncWrite + Unpin>(
    wr: &mut W,
    response: &rtsp_types::Response<Vec<u8>>,
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(256);
    response.write(&mut bytes).map_err(std::io::Error::other)?;
    wr.write_all(&bytes).await
}

/// Answers one request; `true` when the connection should close.
/// The connection's flow of frames, as a request may change it.
struct FlowState<'a> {
    packetizer: &'a mut Packetizer,
    playing: &'a mut Option<Playing>,
    /// System time of the last frame sent since the last PLAY, if any.
    last_sent_us: &'a mut Option<i64>,
}

async fn handle<W, M>(
    request: &Request<Vec<u8>>,
    session: &mut Session,
    flow: &mut FlowState<'_>,
    media: &M,
    out: &mut BytesMut,
    wr: &mut W,
) -> Result<bool, ConnectionError>
where
    W: AsyncWrite + Unpin,
    M: Media,
{
    // The session looks streams up synchronously; looking one up may read the archive, so it
    // is done here first, for the only requests that look up (DESCRIBE and SETUP).
    let info = match request.method() {
        rtsp_types::Method::Describe | rtsp_types::Method::Setup => {
            let target = request.request_uri().and_then(|url| Target::parse(url).ok());
            match target {
                Some(target) => media.info(&target).await,
                None => None,
            }
        }
        _ => None,
    };
    let codec = info.as_ref().map(|i| i.codec);
    let mut lookup = |_: &Target| info.clone();
    let now_us = media.now_us();
    let next_seq = flow.packetizer.next_seq;
    let cx = Context { lookup: &mut lookup, next_seq, now_us, last_sent_us: *flow.last_sent_us };
    let reply = session.handle(request, cx);
    if let Some(codec) = codec {
        if request.method() == rtsp_types::Method::Setup {
            *flow.packetizer = Packetizer::new(codec, rand::random(), next_seq);
        }
    }
    match reply.effect {
        Effect::None => {}
        Effect::Pause => *flow.playing = None,
        Effect::Teardown => *flow.playing = None,
        Effect::Play { target, from, speed, until_us, channel } => {
            out.clear();
            *flow.last_sent_us = None;
            let frames = match from {
                PlayFrom::Live => media.live(&target),
                PlayFrom::At(at) => media
                    .archive(&target, ArchiveStart::Keyframe(at), speed, until_us)
                    .or_else(|| media.live(&target)),
                PlayFrom::After(at) => media
                    .archive(&target, ArchiveStart::After(at), speed, until_us)
                    .or_else(|| media.live(&target)),
            };
            match frames {
                Some(frames) => {
                    let endless = until_us.is_none();
                    *flow.playing = Some(Playing { flow: frames, channel, endless })
                }
                None => {
                    let response = session::status_only(request, StatusCode::NotFound);
                    write_response(wr, &response).await?;
                    return Ok(false);
                }
            }
        }
    }
    write_response(wr, &reply.response).await?;
    Ok(false)
}
