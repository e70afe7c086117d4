//! The sockets the driver needs, over tokio in production and over turmoil in simulation.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite};

/// TCP and UDP as the driver uses them; one implementation per runtime.
pub trait Net: 'static {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening socket.
    type Listener: 'static;
    /// A datagram socket.
    type Udp: 'static;

    /// Listens on `addr`.
    fn listen(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>>;
    /// Accepts the next connection.
    fn accept(l: &Self::Listener) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
    /// Connects to `addr`.
    fn connect(addr: SocketAddr)
        -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;
    /// Binds a datagram socket on `addr` and joins `group` on `interface`.
    fn bind_multicast(
        addr: SocketAddr,
        group: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> impl Future<Output = io::Result<Self::Udp>>;
    /// Sends one datagram.
    fn send_to(
        u: &Self::Udp,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>>;
    /// Receives one datagram.
    fn recv_from(
        u: &Self::Udp,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
}

/// Real sockets.
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;
    type Udp = tokio::net::UdpSocket;

    async fn listen(addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (s, a) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok((s, a))
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    async fn bind_multicast(
        addr: SocketAddr,
        group: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> io::Result<Self::Udp> {
        // Several servers on one machine (the demo, tests) share the discovery port.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.join_multicast_v4(&group, &interface)?;
        if !interface.is_unspecified() {
            // Send beacons out of the chosen interface, not the default route's.
            socket.set_multicast_if_v4(&interface)?;
        }
        socket.set_multicast_loop_v4(true)?;
        tokio::net::UdpSocket::from_std(socket.into())
    }

    async fn send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        u.send_to(buf, to).await
    }

    async fn recv_from(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        u.recv_from(buf).await
    }
}

/// turmoil's simulated sockets: the same driver runs inside a simulated host.
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;
    type Udp = turmoil::net::UdpSocket;

    async fn listen(addr: SocketAddr) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr).await
    }

    async fn accept(l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        l.accept().await
    }

    fn connect(
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static {
        turmoil::net::TcpStream::connect(addr)
    }

    async fn bind_multicast(
        addr: SocketAddr,
        group: Ipv4Addr,
        interface: Ipv4Addr,
    ) -> io::Result<Self::Udp> {
        let u = turmoil::net::UdpSocket::bind(addr).await?;
        u.join_multicast_v4(group, interface)?;
        Ok(u)
    }

    async fn send_to(u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        u.send_to(buf, to).await
    }

    async fn recv_from(u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        u.recv_from(buf).await
    }
}
