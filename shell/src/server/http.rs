//! Serving the API's connections: TLS unless plain, HTTP/1.1, and limits on every connection
//! so that slow or idle clients cannot hold the server's sockets (slowloris): a TLS handshake
//! timeout, a header-read timeout that also ends idle keep-alive connections, a deadline per
//! request (slow bodies), and caps on concurrent connections, for the server and per client
//! address. A connection keeps its slot until its socket closes, a WebSocket's included.

use crate::api::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Longest a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Longest a client may take to send a request's headers, counted from when the connection
/// starts waiting for a request: so also how long an idle keep-alive connection stays open.
pub const HEADER_TIMEOUT_MS: u64 = 10_000;
/// Longest one request may take from its headers to its answer, reading its body included.
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// Most connections served at once; further clients wait in the listen backlog.
pub const CONNECTIONS_MAX: usize = 512;
/// Most connections served at once from one client address: a
/// quarter of [`CONNECTIONS_MAX`], so one address cannot hold every slot, while an office
/// behind one NAT address still fits its browsers (six connections and a grid's WebSockets
/// each). Connections beyond are closed at once.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = CONNECTIONS_MAX / 4;
/// Longest a stopping server waits for open requests to finish.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_RETRY_MS: u64 = 100;

/// Serves `router` on `listener` until `stop` turns true, with TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let addresses = Arc::new(Addresses::default());
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, remote, permit)) = accepted else { continue };
        let Some(address) = addresses.take(remote.ip()) else {
            tracing::debug!(%remote, "API connection refused: {CONNECTIONS_PER_ADDRESS_MAX} open from its address");
            continue;
        };
        let hold =
            ConnectionHold { _held: Some(Arc::new(Held { _address: address, _permit: permit })) };
        let connection = Connection { remote, router: router.clone(), stop: stop.clone(), hold };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => connection.serve_tls(&acceptor, stream).await,
                None => connection.serve(stream).await,
            }
        });
    }
    drop(listener);
    // Every open connection holds a permit: all of them back means all drained.
    let drained = permits.acquire_many(CONNECTIONS_MAX as u32);
    if tokio::time::timeout(Duration::from_millis(DRAIN_TIMEOUT_MS), drained).await.is_err() {
        tracing::warn!("API connections still open after {DRAIN_TIMEOUT_MS} ms; closing them");
    }
}

/// The next connection once fewer than [`CONNECTIONS_MAX`] are open; `None` after a failed
/// accept.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    // The semaphore is never closed.
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, remote)) => Some((stream, remote, permit)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot accept an API connection");
            tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            None
        }
    }
}

/// The key of a client address for the per-address cap: an IPv4 client reaching an IPv6
/// socket is its IPv4 address. IPv6 addresses are not grouped by /64: every host of an office
/// LAN (and every link-local client) shares its /64, so grouping would make a whole office one
/// client.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Connections open per client address.
#[derive(Default)]
struct Addresses(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address; dropping it uncounts it.
struct AddressSlot {
    addresses: Arc<Addresses>,
    key: IpAddr,
}

impl Addresses {
    /// A slot for one more connection from `ip`, unless its address has all of its own.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = address_key(ip);
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= CONNECTIONS_PER_ADDRESS_MAX {
            return None;
        }
        *count += 1;
        debug_assert!(open.len() <= CONNECTIONS_MAX);
        Some(AddressSlot { addresses: Arc::clone(self), key })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.addresses.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What a connection holds while its socket is open: its slot of [`CONNECTIONS_MAX`] and of
/// its address's [`CONNECTIONS_PER_ADDRESS_MAX`].
struct Held {
    // Dropped first: the address's count falls before the permit frees a slot that the
    // accept loop could give to that same address.
    _address: AddressSlot,
    _permit: OwnedSemaphorePermit,
}

/// A connection's slots, shared with its requests: a handler that takes the socket over
/// (a WebSocket) keeps this until the socket closes, so the connection stays counted after
/// hyper lets go of it. Empty outside a served connection (handler tests).
#[derive(Clone, Default)]
pub struct ConnectionHold {
    _held: Option<Arc<Held>>,
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionHold {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ConnectionHold>().cloned().unwrap_or_default())
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    remote: SocketAddr,
    router: Router,
    /// Turns true when the server stops: the connection finishes its request and closes.
    stop: watch::Receiver<bool>,
    /// Held while the connection is open.
    hold: ConnectionHold,
}

impl Connection {
    async fn serve_tls(self, acceptor: &TlsAcceptor, stream: TcpStream) {
        let handshake = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve(tls).await,
            Ok(Err(e)) => {
                tracing::debug!(remote = %self.remote, error = %e, "API TLS handshake failed")
            }
            Err(_) => tracing::debug!(remote = %self.remote, "API TLS handshake timed out"),
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { remote, router, stop, hold } = self;
        let service = hyper::service::service_fn(move |mut request| {
            // What `into_make_service_with_connect_info` gives axum::serve's handlers.
            request.extensions_mut().insert(ConnectInfo(remote));
            request.extensions_mut().insert(hold.clone());
            let answer = router.clone().oneshot(request);
            async move {
                let limit = Duration::from_millis(REQUEST_TIMEOUT_MS);
                match tokio::time::timeout(limit, answer).await {
                    Ok(answer) => answer,
                    Err(_) => Ok(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!("the request took longer than {REQUEST_TIMEOUT_MS} ms"),
                    )
                    .into_response()),
                }
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(HEADER_TIMEOUT_MS));
        // With upgrades: the web UI's video WebSockets. (hyper-util's graceful watcher takes
        // no upgradeable connection, so the stop is watched here.)
        let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let mut stop = stop;
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            // The borrow `wait_for` returns is dropped here: it may not live across an await.
            () = async { drop(stop.wait_for(|s| *s).await) } => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%remote, error = %e, "API connection ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::WebSocketUpgrade;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    /// A server of `/` (200) and `/ws` (a WebSocket that keeps its connection's slots, as the
    /// video socket does), and a way to stop it.
    async fn server() -> (SocketAddr, watch::Sender<bool>) {
        let router = Router::new().route("/", axum::routing::get(|| async { "hello" })).route(
            "/ws",
            axum::routing::get(|hold: ConnectionHold, upgrade: WebSocketUpgrade| async move {
                upgrade.on_upgrade(move |mut socket| async move {
                    let _hold = hold;
                    while socket.recv().await.is_some() {}
                })
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(serve(listener, None, router, stop_rx));
        (addr, stop)
    }

    async fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        socket.connect(server).await.unwrap()
    }

    /// Sends `request` and returns the start of the answer ("" when the server closed).
    async fn ask(stream: &mut TcpStream, request: &str) -> String {
        if stream.write_all(request.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut buf = vec![0; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf));
        match read.await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(Err(_)) => String::new(),
            Err(_) => panic!("no answer and no close within 5 s"),
        }
    }

    const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const WS: &str = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[tokio::test]
    async fn one_address_cannot_hold_every_connection_and_its_websockets_count() {
        let (server, _stop) = server().await;
        // The address's slots, one of them a WebSocket (which hyper lets go of on upgrade).
        let mut held = Vec::new();
        let mut ws = connect_from([127, 0, 0, 1], server).await;
        assert!(ask(&mut ws, WS).await.starts_with("HTTP/1.1 101"));
        held.push(ws);
        for _ in 1..CONNECTIONS_PER_ADDRESS_MAX {
            let mut idle = connect_from([127, 0, 0, 1], server).await;
            assert!(ask(&mut idle, GET).await.starts_with("HTTP/1.1 200"));
            held.push(idle);
        }
        let mut one_more = connect_from([127, 0, 0, 1], server).await;
        assert_eq!(ask(&mut one_more, GET).await, "", "closed at once: the address is full");
        // Another address is served meanwhile.
        let mut other = connect_from([127, 0, 0, 2], server).await;
        assert!(ask(&mut other, GET).await.starts_with("HTTP/1.1 200"));
        // The WebSocket closed frees its slot.
        drop(held.remove(0));
        let mut served = false;
        for _ in 0..50 {
            let mut again = connect_from([127, 0, 0, 1], server).await;
            if ask(&mut again, GET).await.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "a slot freed serves the address again");
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_ipv6_hosts_stay_apart() {
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1::2".parse().unwrap();
        assert_ne!(address_key(a), address_key(b), "two hosts of one office LAN");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 7]));
        assert_eq!(address_key(IpAddr::from([10, 0, 0, 1])), IpAddr::from([10, 0, 0, 1]));
    }
}
