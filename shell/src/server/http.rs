//! Serving the API's connections: TLS unless plain, HTTP/1.1, and limits on every connection
//! so that slow or idle clients cannot hold the server's sockets (slowloris): a TLS handshake
//! timeout, a header-read timeout that also ends idle keep-alive connections, a deadline per
//! request (slow bodies), and a cap on concurrent connections.

use crate::api::ApiError;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
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
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let Some((stream, remote, permit)) = accepted else { continue };
        let connection =
            Connection { remote, router: router.clone(), stop: stop.clone(), _permit: permit };
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

/// One accepted connection and what serving it needs.
struct Connection {
    remote: SocketAddr,
    router: Router,
    /// Turns true when the server stops: the connection finishes its request and closes.
    stop: watch::Receiver<bool>,
    /// Held while the connection is open.
    _permit: OwnedSemaphorePermit,
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
        let Connection { remote, router, stop, _permit } = self;
        let service = hyper::service::service_fn(move |mut request| {
            // What `into_make_service_with_connect_info` gives axum::serve's handlers.
            request.extensions_mut().insert(ConnectInfo(remote));
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
