//! HTTPS for the harness: a client that trusts exactly one certificate (a server's own, read
//! from its data directory, as a client that pinned it would), and what a server presents.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's own certificate (DER) in a PEM file; `None` while the file is not there.
pub fn certificate_in(pem_file: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(pem_file).ok()?;
    let first = CertificateDer::pem_slice_iter(&bytes).next()?.ok()?;
    Some(first.to_vec())
}

/// Accepts the one expected certificate (`None`: any), remembering what was presented;
/// handshake signatures are checked as usual.
#[derive(Debug)]
struct OneCertificate {
    expected: Option<Vec<u8>>,
    presented: Arc<Mutex<Option<Vec<u8>>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for OneCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.presented.lock().unwrap() = Some(end_entity.to_vec());
        match &self.expected {
            Some(e) if e.as_slice() != end_entity.as_ref() => {
                Err(rustls::Error::General("not the expected certificate".into()))
            }
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn config(
    expected: Option<Vec<u8>>,
    presented: Arc<Mutex<Option<Vec<u8>>>>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = OneCertificate {
        expected,
        presented,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// An HTTP client trusting only the certificate `der`.
pub fn agent_trusting(der: Vec<u8>) -> ureq::Agent {
    ureq::AgentBuilder::new().tls_config(config(Some(der), Arc::default())).build()
}

/// The certificate (DER) and protocol version the HTTPS server at `addr` presents in a
/// completed handshake; `Err` when no handshake completes.
pub fn presented_certificate(
    addr: SocketAddr,
) -> Result<(Vec<u8>, rustls::ProtocolVersion), String> {
    let presented = Arc::default();
    let name = ServerName::from(addr.ip());
    let mut tls = rustls::ClientConnection::new(config(None, Arc::clone(&presented)), name)
        .map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    tcp.flush().map_err(|e| e.to_string())?;
    let version = tls.protocol_version().ok_or("no protocol version")?;
    let der = presented.lock().unwrap().take().ok_or("no certificate")?;
    Ok((der, version))
}
