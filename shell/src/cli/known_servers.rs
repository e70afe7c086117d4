//! The CLI's known servers: the certificate each HTTPS server presented the first time the
//! CLI talked to it (trust on first use, like ssh's `known_hosts`). A text file of lines
//! `HOST:PORT FINGERPRINT`; `#` starts a comment. Removing a line accepts the server's next
//! certificate.

use crate::fingerprint::Fingerprint;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why the known servers file could not be used.
#[derive(Debug, Error)]
pub enum KnownServersError {
    /// No path was given and `$HOME` is not set.
    #[error(
        "no known servers file: set HIVE_KNOWN_SERVERS (or --known-servers), or HOME, or pass --ca"
    )]
    NoHome,
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not `HOST:PORT FINGERPRINT`.
    #[error("{path} line {line}: expected HOST:PORT and a SHA-256 fingerprint")]
    Line {
        /// The file.
        path: PathBuf,
        /// Its number, from 1.
        line: usize,
    },
    /// A new pin could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The pins of one known servers file.
#[derive(Debug)]
pub struct KnownServers {
    path: PathBuf,
    pins: Vec<(String, Fingerprint)>,
}

impl KnownServers {
    /// `$HOME/.config/hive/known_servers`.
    pub fn default_path() -> Result<PathBuf, KnownServersError> {
        let home = std::env::var_os("HOME").ok_or(KnownServersError::NoHome)?;
        Ok(Path::new(&home).join(".config").join("hive").join("known_servers"))
    }

    /// Reads `path`; a missing file knows no server yet.
    pub fn load(path: &Path) -> Result<KnownServers, KnownServersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(KnownServersError::Read { path: path.to_owned(), source }),
        };
        let mut pins = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || KnownServersError::Line { path: path.to_owned(), line: i + 1 };
            let mut fields = line.split_whitespace();
            let (Some(server), Some(fingerprint), None) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            pins.push((server.to_owned(), fingerprint.parse().map_err(|_| bad())?));
        }
        Ok(KnownServers { path: path.to_owned(), pins })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificate pinned for `server` (`HOST:PORT`), if any.
    pub fn pin(&self, server: &str) -> Option<Fingerprint> {
        self.pins.iter().find(|(s, _)| s == server).map(|(_, f)| *f)
    }

    /// Pins `fingerprint` for `server`, appending a line (the directory and file are made
    /// private to the user when new).
    pub fn add(&mut self, server: &str, fingerprint: Fingerprint) -> Result<(), KnownServersError> {
        let failed = |source| KnownServersError::Write { path: self.path.clone(), source };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(failed)?;
        writeln!(file, "{server} {fingerprint}").and_then(|()| file.sync_all()).map_err(failed)?;
        self.pins.push((server.to_owned(), fingerprint));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_added_is_found_after_loading_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive").join("known_servers");
        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.pin("10.0.0.2:7080"), None);
        let f = Fingerprint::of(b"cert");
        known.add("10.0.0.2:7080", f).unwrap();
        let again = KnownServers::load(&path).unwrap();
        assert_eq!(again.pin("10.0.0.2:7080"), Some(f));
        assert_eq!(again.pin("10.0.0.3:7080"), None);
    }

    #[test]
    fn a_damaged_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        std::fs::write(&path, "# pins\n\n10.0.0.2:7080 not-a-fingerprint\n").unwrap();
        let err = KnownServers::load(&path).unwrap_err().to_string();
        assert!(err.contains("known_servers line 3"), "{err}");
    }
}
