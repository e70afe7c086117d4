//! The API's TLS identity ([`crate::config::ApiTls`]): a self-signed certificate made at first start and kept in the data
//! directory, or the administrator's own; and the rustls configuration that serves it
//! (TLS 1.3 and 1.2, ring provider, HTTP/1.1).

use crate::fingerprint::Fingerprint;
use hive_core::ids::PeerAddr;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The self-signed certificate's file in the data directory.
pub const CERT_FILE: &str = "api-cert.pem";
/// Its private key's file in the data directory, readable by the server's user only.
pub const KEY_FILE: &str = "api-key.pem";

/// Why the API's certificate could not be loaded, made or served.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make the API's certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The self-signed certificate could not be kept.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("cannot serve the API's certificate: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain (the server's own first) and its private key.
pub struct ApiIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ApiIdentity {
    /// The administrator's certificate chain and key ([`crate::config::ApiTls::Supplied`]).
    pub fn supplied(cert: &Path, key: &Path) -> Result<ApiIdentity, TlsError> {
        read_pair(cert, key)
    }

    /// The self-signed pair in `data_dir` ([`crate::config::ApiTls::SelfSigned`]), made at first start to
    /// cover `names` (host names and IP addresses) and kept, so its pins stay valid.
    pub fn self_signed(data_dir: &Path, names: &[String]) -> Result<ApiIdentity, TlsError> {
        let cert = data_dir.join(CERT_FILE);
        let key = data_dir.join(KEY_FILE);
        // Both or neither: a crash between the two writes leaves a key of no use.
        if !(cert.exists() && key.exists()) {
            make_self_signed(&cert, &key, names)?;
        }
        read_pair(&cert, &key)
    }

    /// The fingerprint of the server's own certificate, which the CLI pins.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.chain[0])
    }

    /// The rustls configuration serving this identity.
    pub fn server_config(self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)?;
        // The API speaks HTTP/1.1 only, where the header timeout applies.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Names a self-signed certificate covers: the API's address, or the advertised peer
/// addresses and the host name when the API listens on all interfaces; always loopback.
pub fn certificate_names(http: SocketAddr, advertise: &[PeerAddr]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        IpAddr::from(Ipv4Addr::LOCALHOST).to_string(),
        IpAddr::from(Ipv6Addr::LOCALHOST).to_string(),
    ];
    if http.ip().is_unspecified() {
        names.push(crate::hardware::host_name());
        names.extend(
            advertise
                .iter()
                .filter_map(|a| a.0.parse::<SocketAddr>().ok())
                .map(|a| a.ip())
                .filter(|ip| !ip.is_unspecified())
                .map(|ip| ip.to_string()),
        );
    } else {
        names.push(http.ip().to_string());
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn read_pair(cert: &Path, key: &Path) -> Result<ApiIdentity, TlsError> {
    let pem = |path: &Path, reason: String| TlsError::Pem { path: path.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(cert, "holds no certificate (expected BEGIN CERTIFICATE)".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem(key, e.to_string()))?;
    Ok(ApiIdentity { chain, key: key_der })
}

/// Makes a self-signed certificate and writes it and its key (0600), each fsynced and
/// renamed into place, so a crash leaves either no file or a whole one.
fn make_self_signed(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<(), TlsError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Hive server (self-signed)");
    let cert = params.self_signed(&key)?;
    write_durably(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_durably(cert_path, cert.pem().as_bytes(), 0o644)?;
    if let Some(dir) = cert_path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| TlsError::Write { path: dir.to_owned(), source })?;
    }
    tracing::info!(
        cert = %cert_path.display(),
        names = ?names,
        "made a self-signed certificate for the API"
    );
    Ok(())
}

fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let failed = |source| TlsError::Write { path: path.to_owned(), source };
    // An old temporary file may have another mode; start afresh.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_self_signed_certificate_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let names = certificate_names("127.0.0.1:7080".parse().unwrap(), &[]);
        let first = ApiIdentity::self_signed(dir.path(), &names).unwrap();
        let again = ApiIdentity::self_signed(dir.path(), &names).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.server_config().is_ok());
    }

    #[test]
    fn a_certificate_without_its_key_is_made_anew() {
        let dir = tempfile::tempdir().unwrap();
        let names = certificate_names("127.0.0.1:7080".parse().unwrap(), &[]);
        let first = ApiIdentity::self_signed(dir.path(), &names).unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let second = ApiIdentity::self_signed(dir.path(), &names).unwrap();
        assert_ne!(first.fingerprint(), second.fingerprint());
    }

    #[test]
    fn a_file_that_is_not_a_certificate_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let err = ApiIdentity::supplied(&cert, &key).err().unwrap().to_string();
        assert!(err.contains("cert.pem"), "{err}");
    }

    #[test]
    fn a_server_on_all_interfaces_covers_its_advertised_addresses() {
        let names = certificate_names(
            "0.0.0.0:7080".parse().unwrap(),
            &[PeerAddr("10.0.0.2:7001".into()), PeerAddr("0.0.0.0:7001".into())],
        );
        assert!(names.contains(&"10.0.0.2".to_owned()), "{names:?}");
        assert!(names.contains(&"127.0.0.1".to_owned()) && names.contains(&"localhost".into()));
        assert!(!names.contains(&"0.0.0.0".to_owned()), "{names:?}");
    }
}
