//! A cloneable handle to a running driver: commands, reads and stop.

use crate::driver::Request;
use hive_core::node::{Command, CommandError, Node, Reply, TimeStatus};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// The server's node loop has stopped.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the server is stopping")]
pub struct Stopped;

/// Why a command did not succeed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandFailed {
    /// The node refused or failed it.
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The loop stopped first.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Talks to the driver loop of one server.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<Request>,
}

impl NodeHandle {
    /// A handle and the receiver the driver reads.
    pub fn new() -> (NodeHandle, mpsc::UnboundedReceiver<Request>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (NodeHandle { tx }, rx)
    }

    /// Runs a command; answers once its effects are durable.
    pub async fn command(&self, cmd: Command) -> Result<Reply, CommandFailed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Command(cmd, tx)).map_err(|_| Stopped)?;
        Ok(rx.await.map_err(|_| Stopped)??)
    }

    /// Computes something from the node between two events.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        let read = Box::new(move |node: &Node| {
            let _ = tx.send(f(node));
        });
        self.tx.send(Request::Read(read)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// This server's time, read at the moment the loop takes the request.
    pub async fn time(&self) -> Result<TimeStatus, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Time(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Asks neighbour `via` to dial a media channel back, opened with `token`.
    pub fn ask_media_dial(
        &self,
        via: hive_core::ids::ServerId,
        token: u128,
    ) -> Result<(), Stopped> {
        self.tx.send(Request::AskMediaDial { via, token }).map_err(|_| Stopped)
    }

    /// Asks the loop to stop after the current event.
    pub fn stop(&self) {
        let _ = self.tx.send(Request::Stop);
    }
}
