//! A server's long-lived link key: the X25519 static key pair of its Noise handshakes.
//!
//! The pair is made by the shell from the operating system's randomness (a seeded generator
//! per simulated host), never by the core's generator; the core only stores it with the
//! server's identity and compares public keys against the ones the system pinned.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A server's public link key, as pinned in the replicated store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// The key in hex, as shown to administrators.
    pub fn fingerprint(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A server's static key pair.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticKeypair {
    /// Private half; never leaves the server except in its owner-only backup.
    pub private: [u8; 32],
    /// Public half.
    pub public: PublicKey,
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKeypair {{ public: {:?}, private: <redacted> }}", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_never_shows_in_debug_output() {
        let pair = StaticKeypair { private: [0xab; 32], public: PublicKey([1; 32]) };
        assert!(!format!("{pair:?}").contains("abab"));
    }
}
