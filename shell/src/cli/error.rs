//! Everything the `hive` command can fail with.

use super::client::ClientError;
use crate::config::ConfigError;
use crate::server::backup::RestoreError;
use crate::server::ServeError;
use thiserror::Error;

/// A failed `hive` command.
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The API refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A restore failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Signals could not be watched.
    #[error("cannot watch signals: {0}")]
    Signal(std::io::Error),
    /// The test cameras could not start.
    #[error(transparent)]
    Testcamera(#[from] crate::video::testcamera::ClipError),
    /// The demo could not set up.
    #[error("demo: {0}")]
    Demo(String),
}
