//! Proofs of membership and of credentials: the system secret and user passwords are never
//! sent; peers prove knowledge of them with HMAC-SHA256 over fresh nonces.

use crate::ids::{ServerId, SystemId, SystemName};
use crate::resources::PasswordVerifier;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte message authentication code.
pub type Mac = [u8; 32];

/// A fresh random value that makes a proof unrepeatable.
pub type Nonce = [u8; 16];

/// The shared secret that proves membership of a system.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Derives the secret from the text an administrator set.
    pub fn from_text(text: &str) -> Self {
        Secret(Sha256::new_with_prefix(b"hive-secret-v1\0").chain_update(text).finalize().into())
    }

    /// Proof carried in a beacon that the sender holds the secret of `system` named `name`.
    pub fn beacon_proof(&self, server: ServerId, system: SystemId, name: &SystemName) -> Mac {
        mac(
            &self.0,
            &[
                b"hive-beacon-v1",
                &server.0.to_le_bytes(),
                &system.0.to_le_bytes(),
                name.as_str().as_bytes(),
            ],
        )
    }

    /// Proof in a link handshake: `server` answers the challenge `peer_nonce`.
    pub fn link_proof(&self, peer_nonce: &Nonce, server: ServerId) -> Mac {
        mac(&self.0, &[b"hive-link-v1", peer_nonce, &server.0.to_le_bytes()])
    }

    /// Encrypts `other` for members of this secret's system (used to hand over a new secret).
    pub fn seal(&self, other: &Secret, nonce: &Nonce) -> [u8; 32] {
        xor(&other.0, &mac(&self.0, &[b"hive-seal-v1", nonce]))
    }

    /// Reverses [`Secret::seal`].
    pub fn unseal(&self, sealed: &[u8; 32], nonce: &Nonce) -> Secret {
        Secret(xor(sealed, &mac(&self.0, &[b"hive-seal-v1", nonce])))
    }

    /// A password-derived key used as a secret for sealing.
    pub fn from_key(key: [u8; 32]) -> Self {
        Secret(key)
    }
}

/// Cost of the password key derivation (argon2id).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
}

impl KdfParams {
    /// The production cost (OWASP's argon2id minimum).
    pub const STANDARD: KdfParams = KdfParams { memory_kib: 19 * 1024, passes: 2 };
    /// A cheap cost for simulations and tests.
    pub const CHEAP: KdfParams = KdfParams { memory_kib: 8, passes: 1 };
    /// The most this server spends on one derivation: a peer's challenge asking for more is
    /// refused, so a stranger cannot make it allocate gigabytes or spin for minutes.
    pub const LIMIT: KdfParams = KdfParams { memory_kib: 64 * 1024, passes: 8 };

    /// Whether deriving with these parameters stays within [`KdfParams::LIMIT`].
    pub fn within_limit(self) -> bool {
        self.memory_kib <= Self::LIMIT.memory_kib && self.passes <= Self::LIMIT.passes
    }
}

/// Working memory of one key derivation, reusable across derivations.
///
/// argon2id fills `memory_kib` KiB per derivation; a server that checks many passwords keeps
/// one of these per worker instead of allocating (and fragmenting the heap with) a fresh
/// 19 MiB block for every attempt.
#[derive(Default)]
pub struct KdfMemory(Vec<argon2::Block>);

impl KdfMemory {
    /// Empty; grows to what the first derivation needs.
    pub fn new() -> Self {
        KdfMemory(Vec::new())
    }

    /// KiB held now.
    pub fn held_kib(&self) -> usize {
        self.0.len() * argon2::Block::SIZE / 1024
    }

    /// Gives back what exceeds `memory_kib` (after an unusually expensive verifier).
    pub fn shrink_to(&mut self, memory_kib: u32) {
        let blocks = memory_kib as usize * 1024 / argon2::Block::SIZE;
        if self.0.len() > blocks {
            self.0.truncate(blocks);
            self.0.shrink_to_fit();
        }
    }
}

/// Derives the verifier key of `password` with `salt`; parameters are clamped to
/// [`KdfParams::LIMIT`] (callers refuse larger ones from peers before they get here).
pub fn derive_password_key(password: &str, salt: &[u8; 16], params: KdfParams) -> [u8; 32] {
    derive_password_key_in(&mut KdfMemory::new(), password, salt, params)
}

/// [`derive_password_key`] in the caller's working memory, which it grows if needed.
pub fn derive_password_key_in(
    memory: &mut KdfMemory,
    password: &str,
    salt: &[u8; 16],
    params: KdfParams,
) -> [u8; 32] {
    let mut key = [0u8; 32];
    let memory_kib = params.memory_kib.clamp(8, KdfParams::LIMIT.memory_kib);
    let passes = params.passes.clamp(1, KdfParams::LIMIT.passes);
    let argon = argon2::Params::new(memory_kib, passes, 1, Some(32)).map(|p| {
        let blocks = p.block_count();
        (argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p), blocks)
    });
    let hashed = argon.map(|(a, blocks)| {
        if memory.0.len() < blocks {
            memory.0.resize(blocks, argon2::Block::new());
        }
        a.hash_password_into_with_memory(password.as_bytes(), salt, &mut key, &mut memory.0[..])
    });
    match hashed {
        Ok(Ok(())) => key,
        // Parameters are clamped into argon2's valid range above, so this cannot happen; fall
        // back to a salted SHA-256 rather than panic on input.
        _ => Sha256::new_with_prefix(salt).chain_update(password).finalize().into(),
    }
}

/// A verifier for `password` with `salt`, as stored in a user record.
pub fn password_verifier(password: &str, salt: [u8; 16], params: KdfParams) -> PasswordVerifier {
    PasswordVerifier { salt, key: derive_password_key(password, &salt, params), params }
}

/// Proof that the sender knows the password behind `key`, answering `nonce`.
pub fn credential_proof(key: &[u8; 32], nonce: &Nonce) -> Mac {
    mac(key, &[b"hive-merge-v1", nonce])
}

/// Compares two MACs in constant time.
pub fn mac_eq(a: &Mac, b: &Mac) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Mac {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(&(p.len() as u32).to_le_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_secret_gives_a_different_proof() {
        let nonce = [7; 16];
        let a = Secret::from_text("right").link_proof(&nonce, ServerId(1));
        let b = Secret::from_text("wrong").link_proof(&nonce, ServerId(1));
        assert!(!mac_eq(&a, &b));
    }

    #[test]
    fn a_sealed_secret_opens_only_with_the_sealing_secret() {
        let (k, new, nonce) = (Secret::from_text("k"), Secret::from_text("new"), [1; 16]);
        let sealed = k.seal(&new, &nonce);
        assert_eq!(k.unseal(&sealed, &nonce), new);
        assert_ne!(Secret::from_text("x").unseal(&sealed, &nonce), new);
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::from_text("hunter2")), "Secret(<redacted>)");
    }

    #[test]
    fn a_password_verifier_matches_only_its_password() {
        let v = password_verifier("pw", [3; 16], KdfParams::CHEAP);
        assert_eq!(derive_password_key("pw", &v.salt, v.params), v.key);
        assert_ne!(derive_password_key("pW", &v.salt, v.params), v.key);
    }

    #[test]
    fn reused_working_memory_derives_the_same_keys() {
        let mut memory = KdfMemory::new();
        let params = KdfParams { memory_kib: 64, passes: 1 };
        for (password, salt) in [("first", [1; 16]), ("second", [2; 16]), ("first", [1; 16])] {
            let reused = derive_password_key_in(&mut memory, password, &salt, params);
            assert_eq!(reused, derive_password_key(password, &salt, params));
        }
        assert_eq!(memory.held_kib(), 64);
        memory.shrink_to(8);
        assert_eq!(memory.held_kib(), 8);
    }
}
