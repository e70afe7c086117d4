//! The SHA-256 fingerprint of a certificate: what the CLI pins and the server logs at start.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// SHA-256 of a certificate's DER encoding. Shown as colon-separated upper-case hex, the
/// form `openssl x509 -noout -fingerprint -sha256` prints, so an administrator can compare
/// it with the server's certificate file by eye.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Fingerprint(pub [u8; 32]);

/// Why a text is not a fingerprint.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not a SHA-256 fingerprint (32 hex bytes separated by colons)")]
pub struct BadFingerprint(pub String);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = BadFingerprint;

    /// Parses the displayed form; colons are optional and case does not matter.
    fn from_str(text: &str) -> Result<Fingerprint, BadFingerprint> {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        crate::config::decode_hex(&hex)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Fingerprint)
            .ok_or_else(|| BadFingerprint(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_reads_back_what_it_shows() {
        let f = Fingerprint::of(b"a certificate");
        let shown = f.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(shown.parse::<Fingerprint>(), Ok(f));
        assert_eq!(shown.to_lowercase().replace(':', "").parse::<Fingerprint>(), Ok(f));
    }

    #[test]
    fn a_short_or_non_hex_fingerprint_is_refused() {
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }
}
