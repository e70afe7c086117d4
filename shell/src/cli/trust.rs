//! How the CLI trusts an HTTPS server: by the certificate it pinned on first use (see
//! [`super::known_servers`]), or by a certificate authority given with `--ca`.

use crate::fingerprint::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why a TLS client configuration could not be made.
#[derive(Debug, Error)]
pub enum TrustError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("the CA file {path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the pinning verifier found in a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// No certificate was pinned for the server: this one was accepted, to be pinned.
    New(Fingerprint),
    /// The certificate is the pinned one.
    Matches,
    /// Another certificate than the pinned one: refused.
    Changed {
        /// What was pinned.
        pinned: Fingerprint,
        /// What the server presented.
        presented: Fingerprint,
    },
}

/// One server's pin as the verifier and the client share it.
#[derive(Debug, Default)]
pub struct PinState {
    /// The certificate trusted; set by the first handshake when none was pinned, so later
    /// connections of the same process must present it too.
    pub pinned: Option<Fingerprint>,
    /// What the last handshake found, read by the client after a request.
    pub last: Option<PinCheck>,
}

/// [`PinState`] shared between the client and its verifier.
pub type PinSlot = Arc<Mutex<PinState>>;

/// Locks a slot; a panic elsewhere cannot leave a pin half-written, so poison is ignored.
pub fn lock(slot: &PinSlot) -> std::sync::MutexGuard<'_, PinState> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Accepts exactly the pinned certificate, or any when none is pinned yet (trust on first
/// use). Handshake signatures are verified as usual, so the server must hold the
/// certificate's key.
#[derive(Debug)]
struct PinVerifier {
    slot: PinSlot,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of(end_entity);
        let mut state = lock(&self.slot);
        let check = match state.pinned {
            None => {
                state.pinned = Some(presented);
                PinCheck::New(presented)
            }
            Some(pinned) if pinned == presented => PinCheck::Matches,
            Some(pinned) => PinCheck::Changed { pinned, presented },
        };
        state.last = Some(check);
        match check {
            PinCheck::Changed { .. } => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            PinCheck::New(_) | PinCheck::Matches => Ok(ServerCertVerified::assertion()),
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A configuration that trusts the certificate pinned in `slot`, or the first one seen when
/// none is; each handshake's finding goes to the slot.
pub fn pinned(slot: PinSlot) -> Result<ClientConfig, TrustError> {
    let provider = provider();
    let verifier = PinVerifier { slot, algorithms: provider.signature_verification_algorithms };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A configuration that trusts servers whose certificate chains to a CA in `ca_file` (PEM)
/// and names the host asked for.
pub fn ca(ca_file: &Path) -> Result<ClientConfig, TrustError> {
    let bytes = std::fs::read(ca_file)
        .map_err(|source| TrustError::Read { path: ca_file.to_owned(), source })?;
    let bad = |reason: String| TrustError::Ca { path: ca_file.to_owned(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate (expected BEGIN CERTIFICATE)".into()));
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
