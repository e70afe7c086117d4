//! The system secret and user passwords.
//!
//! The secret is 32 bytes that every member holds. It is never sent: links prove it through
//! the Noise handshake's pre-shared key ([`Secret::noise_psk`]) and beacons carry an HMAC
//! under a key derived from it ([`Secret::beacon_key`]). Each use gets its own derived key,
//! so no two protocols ever share one.

use crate::resources::PasswordVerifier;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// A 32-byte message authentication code.
pub type Mac = [u8; 32];

/// The shared secret that proves membership of a system.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The key of beacon proofs, derived from the system secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BeaconKey([u8; 32]);

impl fmt::Debug for BeaconKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BeaconKey(<redacted>)")
    }
}

impl BeaconKey {
    /// Proof over a beacon's fields (each length-prefixed).
    pub fn proof(&self, fields: &[&[u8]]) -> Mac {
        mac(&self.0, fields)
    }
}

/// Prefix of a join token: `hive-` and the secret's 32 bytes in hex.
pub const TOKEN_PREFIX: &str = "hive-";

/// Fewest characters of a passphrase accepted as a system secret.
pub const PASSPHRASE_LEN_MIN: usize = 20;

/// Why text cannot be a system secret.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum SecretError {
    /// It starts like a join token but is not one.
    #[error("a join token is `hive-` followed by 64 hex digits")]
    BadToken,
    /// A passphrase too short to resist offline guessing.
    #[error("a system secret must be a join token (`hive secret`) or a passphrase of at least {PASSPHRASE_LEN_MIN} characters")]
    Weak,
}

impl Secret {
    /// A secret from 32 random bytes (the operating system's, in production).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Secret(bytes)
    }

    /// Derives a secret from any text, without a strength check: for simulations and tests,
    /// whose secrets never face an attacker.
    pub fn from_text(text: &str) -> Self {
        Secret(Sha256::new_with_prefix(b"hive-secret-v1\0").chain_update(text).finalize().into())
    }

    /// Reads an administrator's secret: a join token, or a long passphrase stretched with
    /// argon2id (`params`) so that a beacon's MAC is no cheap guessing oracle.
    pub fn parse(text: &str, params: KdfParams) -> Result<Self, SecretError> {
        if let Some(hex) = text.strip_prefix(TOKEN_PREFIX) {
            let bytes = decode_hex32(hex).ok_or(SecretError::BadToken)?;
            return Ok(Secret(bytes));
        }
        if text.chars().count() < PASSPHRASE_LEN_MIN {
            return Err(SecretError::Weak);
        }
        Ok(Secret(derive_password_key(text, b"hive-system-v1\0\0", params)))
    }

    /// The secret as a join token an administrator copies to the next server.
    pub fn token(&self) -> String {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        format!("{TOKEN_PREFIX}{hex}")
    }

    /// The pre-shared key of member links' Noise handshakes.
    pub fn noise_psk(&self) -> [u8; 32] {
        mac(&self.0, &[b"hive-noise-psk-v1"])
    }

    /// The key beacons are authenticated with, derived once per secret (every beacon heard
    /// is checked with it).
    pub fn beacon_key(&self) -> BeaconKey {
        BeaconKey(mac(&self.0, &[b"hive-beacon-key-v2"]))
    }

    /// Seed of the dummy login setup unknown user names are answered from.
    pub fn dummy_login_seed(&self) -> [u8; 32] {
        mac(&self.0, &[b"hive-dummy-login-v1"])
    }
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_secret_gives_a_different_proof() {
        let a = Secret::from_text("right").beacon_key().proof(&[b"x"]);
        let b = Secret::from_text("wrong").beacon_key().proof(&[b"x"]);
        assert!(!mac_eq(&a, &b));
        assert_ne!(Secret::from_text("right").noise_psk(), Secret::from_text("wrong").noise_psk());
    }

    #[test]
    fn a_join_token_round_trips_and_weak_secrets_are_refused() {
        let s = Secret::from_bytes([7; 32]);
        assert_eq!(Secret::parse(&s.token(), KdfParams::CHEAP), Ok(s));
        assert_eq!(Secret::parse("hive-12", KdfParams::CHEAP), Err(SecretError::BadToken));
        assert_eq!(Secret::parse("s3cret", KdfParams::CHEAP), Err(SecretError::Weak));
        let long = "a passphrase long enough to stretch";
        assert_eq!(Secret::parse(long, KdfParams::CHEAP), Secret::parse(long, KdfParams::CHEAP));
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
