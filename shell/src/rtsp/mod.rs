//! The RTSP server every server runs (and `hive testcamera`): live from the cached GOP and the
//! archive at any position, RTP over the RTSP connection (TCP interleaved), packets to one
//! client coalesced into large writes.
//!
//! Protocol decisions live in `hive_media::rtsp`; this module owns sockets and tasks. What is
//! served comes from a [`Media`], so a test camera, a recorder, and later a relay of another
//! server's stream share one server.

mod connection;
#[cfg(test)]
mod tests;

use hive_media::rtsp::target::Target;
use hive_media::sdp::StreamInfo;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

pub use connection::serve_connection;

/// Connections served at once; more wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 1024;

/// Frames of a flow: the GOP cache then live frames, or archive frames paced at their speed.
pub type Flow = mpsc::Receiver<hive_media::frame::Frame>;

/// Whether a client may watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Its credentials are good (or none are needed).
    Granted,
    /// No or wrong credentials: 401.
    Denied,
}

/// Where archive frames start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveStart {
    /// From the keyframe at or before this system time (µs since the epoch): what a new
    /// decoder needs.
    Keyframe(i64),
    /// From the first frame after this system time: a paused flow going on, whose client's
    /// decoder holds the frames before.
    After(i64),
    /// From the first keyframe at or after this system time: where a span of the camera's
    /// history begins, when the same server holds older frames before it.
    KeyframeFrom(i64),
}

impl ArchiveStart {
    /// The system time named, µs since the epoch.
    pub fn time_us(self) -> i64 {
        match self {
            ArchiveStart::Keyframe(t) | ArchiveStart::After(t) | ArchiveStart::KeyframeFrom(t) => t,
        }
    }
}

/// What a request offers as proof of who sends it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its method (`DESCRIBE`, …), which Digest signs.
    pub method: String,
    /// Its request URI, which Digest signs.
    pub uri: String,
}

/// What an RTSP server serves and who may watch it.
pub trait Media: Send + Sync + 'static {
    /// The stream a URL names, for DESCRIBE and SETUP; `None` is 404. May read the archive
    /// (off the runtime's threads).
    fn info(&self, target: &Target) -> impl Future<Output = Option<StreamInfo>> + Send;
    /// Live frames of a stream, starting with its cached GOP.
    fn live(&self, target: &Target) -> Option<Flow>;
    /// Archive frames from `start`, paced at `speed`, on into live unless `until_us` ends
    /// them. `None` when the stream has no archive (then live is served).
    fn archive(
        &self,
        target: &Target,
        start: ArchiveStart,
        speed: f64,
        until_us: Option<i64>,
    ) -> Option<Flow>;
    /// Whether the credentials of a request from a client at `peer` let it watch.
    fn authorize(
        &self,
        request: AuthRequest,
        peer: std::net::IpAddr,
    ) -> impl Future<Output = Access> + Send;
    /// The `WWW-Authenticate` value of a 401: Basic, which the server can check against
    /// password verifiers (Digest would need a password-equivalent stored).
    fn challenge(&self) -> String {
        "Basic realm=\"hive\"".to_owned()
    }
    /// System time now, µs since the epoch.
    fn now_us(&self) -> i64;
}

/// Accepts RTSP connections on `listener` until the task is dropped; `tls` wraps each
/// connection when set (rtsps).
pub async fn serve<M: Media>(
    listener: TcpListener,
    media: Arc<M>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "rtsp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let media = media.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => match tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(stream)) => run(stream, media, peer).await,
                    _ => tracing::debug!(%peer, "rtsps handshake failed"),
                },
                None => run(stream, media, peer).await,
            }
        });
    }
}

async fn run<IO, M>(io: IO, media: Arc<M>, peer: std::net::SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    M: Media,
{
    if let Err(e) = serve_connection(io, media, peer.ip()).await {
        tracing::debug!(%peer, error = %e, "rtsp connection ended");
    }
}
