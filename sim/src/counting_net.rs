//! turmoil's sockets with every byte counted: what the links of a simulated world put on the
//! wire, handshakes included, whatever the driver itself counts.
//!
//! The driver's own counters ([`hive::driver::TrafficStats`]) see frames once a link is up;
//! a benchmark comparing link protocols (plain frames against encrypted channels) needs the
//! bytes a network would carry, so the count sits under the driver, in the [`Net`] it runs on.
//! The counters are process-wide: a benchmark reads them before and after what it measures.

use hive::driver::{Net, TurmoilNet};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

static TCP_BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static TCP_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static UDP_BYTES_SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes and connections of every simulated host of this process, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireCount {
    /// Bytes written to TCP streams (link frames, handshakes, merge logins).
    pub tcp_bytes: u64,
    /// TCP connections made (each dial that connected).
    pub tcp_connections: u64,
    /// Bytes of datagrams sent (beacons; a multicast datagram counts once).
    pub udp_bytes: u64,
}

impl WireCount {
    /// The counters now.
    pub fn now() -> WireCount {
        WireCount {
            tcp_bytes: TCP_BYTES_WRITTEN.load(Relaxed),
            tcp_connections: TCP_CONNECTIONS.load(Relaxed),
            udp_bytes: UDP_BYTES_SENT.load(Relaxed),
        }
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: WireCount) -> WireCount {
        WireCount {
            tcp_bytes: self.tcp_bytes - earlier.tcp_bytes,
            tcp_connections: self.tcp_connections - earlier.tcp_connections,
            udp_bytes: self.udp_bytes - earlier.udp_bytes,
        }
    }
}

/// [`TurmoilNet`] with its traffic counted in [`WireCount`].
pub struct CountingNet;

/// A turmoil stream whose written bytes are counted (each byte is written by one end and
/// read by the other, so reads are not counted again).
pub struct CountedStream(<TurmoilNet as Net>::Stream);

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            TCP_BYTES_WRITTEN.fetch_add(*n as u64, Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Net for CountingNet {
    type Stream = CountedStream;
    type Listener = <TurmoilNet as Net>::Listener;
    type Udp = <TurmoilNet as Net>::Udp;

    async fn listen(addr: SocketAddr) -> io::Result<Self::Listener> {
        TurmoilNet::listen(addr).await
    }

    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, from) = TurmoilNet::accept(l).await?;
        Ok((CountedStream(s), from))
    }

    fn connect(
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        let connecting = TurmoilNet::connect(addr);
        async move {
            let s = connecting.await?;
            TCP_CONNECTIONS.fetch_add(1, Relaxed);
            Ok(CountedStream(s))
        }
    }

    async fn bind_multicast(
        addr: SocketAddr,
        group: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> io::Result<Self::Udp> {
        TurmoilNet::bind_multicast(addr, group, interface).await
    }

    async fn send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let n = TurmoilNet::send_to(u, buf, to).await?;
        UDP_BYTES_SENT.fetch_add(n as u64, Relaxed);
        Ok(n)
    }

    async fn recv_from(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        TurmoilNet::recv_from(u, buf).await
    }
}
