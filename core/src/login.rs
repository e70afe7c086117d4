//! Administrator logins across systems with OPAQUE, an augmented PAKE (`opaque-ke`).
//!
//! A merge is started by an administrator of one system who knows a password of the other.
//! The two systems share no key, so the initiator proves the password with OPAQUE: the password
//! never travels, a stored [`LoginRecord`] alone is not enough to log in (no pass-the-hash),
//! and both sides end with one session key that nobody else learns. The login is bound to the
//! link's Noise handshake hash (the `context`), so a man in the middle who terminates both
//! channels cannot relay it. What the merge must hand over (system identity, secret, servers)
//! travels sealed under that session key ([`seal`], [`open`]).
//!
//! Every user record carries its own OPAQUE server setup, so records replicate and survive
//! merges without a system-wide OPRF key. Unknown names are answered from a dummy setup
//! derived from the system secret, which opaque-ke makes indistinguishable from a real record.

use crate::auth::KdfParams;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use opaque_ke::key_exchange::tripledh::TripleDh;
use opaque_ke::{
    CipherSuite, ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, CredentialRequest,
    CredentialResponse, Identifiers, Ristretto255, ServerLogin, ServerLoginStartParameters,
    ServerRegistration, ServerSetup,
};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// The OPAQUE cipher suite: ristretto255 for the OPRF and the key exchange, argon2id as the
/// key-stretching function (with each record's parameters).
pub struct Suite;

impl CipherSuite for Suite {
    type OprfCs = Ristretto255;
    type KeGroup = Ristretto255;
    type KeyExchange = TripleDh;
    type Ksf = argon2::Argon2<'static>;
}

/// What a server stores to check a user's password in a merge: an OPAQUE password file and
/// the setup it was registered under. Replicated with the user, secret from non-members.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRecord {
    /// Serialized `ServerSetup` (OPRF seed and server key pair) of this record.
    #[serde(with = "serde_bytes")]
    pub setup: Vec<u8>,
    /// Serialized `ServerRegistration` (the password file).
    #[serde(with = "serde_bytes")]
    pub file: Vec<u8>,
    /// Cost of the key stretching the client must run.
    pub params: KdfParams,
}

impl fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoginRecord {{ params: {:?}, <redacted> }}", self.params)
    }
}

/// Why a login step failed. Deliberately coarse: a wrong password and a forged message look
/// the same to the peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum LoginError {
    /// A message or a stored record did not parse.
    #[error("malformed login message or record")]
    Malformed,
    /// The password or the server's record did not match, or the channel was relayed.
    #[error("login failed: wrong password, or the other side is not who it claims")]
    Rejected,
    /// The key-stretching parameters are beyond what this server will run.
    #[error("the key-stretching parameters are beyond this server's limit")]
    Unreasonable,
}

/// The key both ends of a successful login share.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

impl SessionKey {
    fn from_output(output: &[u8]) -> Self {
        SessionKey(
            Sha256::new_with_prefix(b"hive-merge-seal-v1\0").chain_update(output).finalize().into(),
        )
    }
}

/// Which way a sealed message goes: each direction seals exactly one message per login, so
/// the direction alone makes every nonce unique under a session key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// From the initiator (client) to the remote (server).
    ToRemote,
    /// From the remote back to the initiator.
    ToInitiator,
}

fn ksf(params: KdfParams) -> Result<argon2::Argon2<'static>, LoginError> {
    if !params.within_limit() {
        return Err(LoginError::Unreasonable);
    }
    let p = argon2::Params::new(params.memory_kib.max(8), params.passes.max(1), 1, None)
        .map_err(|_| LoginError::Unreasonable)?;
    Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p))
}

/// Registers `password` for `user` entirely on this server (which momentarily knows the
/// password: at account creation, a password change, or the next login of an account made
/// before OPAQUE existed).
pub fn register<R: RngCore + CryptoRng>(
    user: &str,
    password: &str,
    params: KdfParams,
    rng: &mut R,
) -> Result<LoginRecord, LoginError> {
    let ksf = ksf(params)?;
    let setup = ServerSetup::<Suite>::new(rng);
    let start = ClientRegistration::<Suite>::start(rng, password.as_bytes())
        .map_err(|_| LoginError::Rejected)?;
    let response = ServerRegistration::<Suite>::start(&setup, start.message, user.as_bytes())
        .map_err(|_| LoginError::Rejected)?;
    let finish = start
        .state
        .finish(
            rng,
            password.as_bytes(),
            response.message,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
        )
        .map_err(|_| LoginError::Rejected)?;
    let file = ServerRegistration::<Suite>::finish(finish.message);
    Ok(LoginRecord { setup: setup.serialize().to_vec(), file: file.serialize().to_vec(), params })
}

/// The initiator's state between its first and last message.
pub struct ClientState(ClientLogin<Suite>);

impl fmt::Debug for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientState(<redacted>)")
    }
}

/// The remote's state between its answer and the initiator's last message.
pub struct ServerState(ServerLogin<Suite>);

impl fmt::Debug for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerState(<redacted>)")
    }
}

/// Initiator, step 1: the credential request (KE1) to send.
pub fn client_start<R: RngCore + CryptoRng>(
    password: &str,
    rng: &mut R,
) -> Result<(ClientState, Vec<u8>), LoginError> {
    let start =
        ClientLogin::<Suite>::start(rng, password.as_bytes()).map_err(|_| LoginError::Rejected)?;
    Ok((ClientState(start.state), start.message.serialize().to_vec()))
}

/// Initiator, step 3: checks the remote's answer (KE2) against the password and the channel
/// `context`; returns the finalization (KE3) to send and the session key.
pub fn client_finish(
    state: ClientState,
    password: &str,
    ke2: &[u8],
    params: KdfParams,
    context: &[u8],
) -> Result<(Vec<u8>, SessionKey), LoginError> {
    let ksf = ksf(params)?;
    let response =
        CredentialResponse::<Suite>::deserialize(ke2).map_err(|_| LoginError::Malformed)?;
    let finish = state
        .0
        .finish(
            password.as_bytes(),
            response,
            ClientLoginFinishParameters::new(Some(context), Identifiers::default(), Some(&ksf)),
        )
        .map_err(|_| LoginError::Rejected)?;
    Ok((finish.message.serialize().to_vec(), SessionKey::from_output(&finish.session_key)))
}

/// A dummy setup for names without a usable record, stable per system secret so an unknown
/// name answers like a known one every time.
pub fn dummy_setup(seed: [u8; 32]) -> Vec<u8> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
    ServerSetup::<Suite>::new(&mut rng).serialize().to_vec()
}

/// Remote, step 2: answers the credential request `ke1` for `user` from `record` (or, for an
/// unknown user or one who may not merge, from `dummy` — indistinguishably).
pub fn server_start<R: RngCore + CryptoRng>(
    record: Option<&LoginRecord>,
    dummy: &[u8],
    user: &str,
    ke1: &[u8],
    context: &[u8],
    rng: &mut R,
) -> Result<(ServerState, Vec<u8>), LoginError> {
    let request =
        CredentialRequest::<Suite>::deserialize(ke1).map_err(|_| LoginError::Malformed)?;
    let parsed = record.and_then(|r| {
        let setup = ServerSetup::<Suite>::deserialize(&r.setup).ok()?;
        let file = ServerRegistration::<Suite>::deserialize(&r.file).ok()?;
        Some((setup, file))
    });
    let (setup, file) = match parsed {
        Some((setup, file)) => (setup, Some(file)),
        None => {
            (ServerSetup::<Suite>::deserialize(dummy).map_err(|_| LoginError::Malformed)?, None)
        }
    };
    let params =
        ServerLoginStartParameters { context: Some(context), identifiers: Identifiers::default() };
    let start = ServerLogin::start(rng, &setup, file, request, user.as_bytes(), params)
        .map_err(|_| LoginError::Rejected)?;
    Ok((ServerState(start.state), start.message.serialize().to_vec()))
}

/// Remote, step 4: checks the initiator's finalization; the session key if the password was
/// right.
pub fn server_finish(state: ServerState, ke3: &[u8]) -> Result<SessionKey, LoginError> {
    let message =
        CredentialFinalization::<Suite>::deserialize(ke3).map_err(|_| LoginError::Malformed)?;
    let finish = state.0.finish(message).map_err(|_| LoginError::Rejected)?;
    Ok(SessionKey::from_output(&finish.session_key))
}

fn cipher(key: &SessionKey, direction: Direction) -> (ChaCha20Poly1305, Nonce) {
    let mut nonce = [0u8; 12];
    nonce[0] = match direction {
        Direction::ToRemote => 1,
        Direction::ToInitiator => 2,
    };
    (ChaCha20Poly1305::new(Key::from_slice(&key.0)), *Nonce::from_slice(&nonce))
}

/// Encrypts and authenticates the one message of `direction` under the session key.
pub fn seal(key: &SessionKey, direction: Direction, plaintext: &[u8]) -> Vec<u8> {
    let (c, nonce) = cipher(key, direction);
    // Encryption into memory fails only for inputs beyond 256 GiB.
    c.encrypt(&nonce, plaintext).expect("sealing a small message")
}

/// Reverses [`seal`]; any change to the bytes is an error.
pub fn open(key: &SessionKey, direction: Direction, sealed: &[u8]) -> Result<Vec<u8>, LoginError> {
    let (c, nonce) = cipher(key, direction);
    c.decrypt(&nonce, sealed).map_err(|_| LoginError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const CHEAP: KdfParams = KdfParams::CHEAP;

    fn login(
        record: Option<&LoginRecord>,
        password: &str,
        ctx: (&[u8], &[u8]),
    ) -> Result<(SessionKey, SessionKey), LoginError> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let dummy = dummy_setup([9; 32]);
        let (client, ke1) = client_start(password, &mut rng)?;
        let (server, ke2) = server_start(record, &dummy, "admin", &ke1, ctx.1, &mut rng)?;
        let (ke3, client_key) = client_finish(client, password, &ke2, CHEAP, ctx.0)?;
        let server_key = server_finish(server, &ke3)?;
        Ok((client_key, server_key))
    }

    fn record(password: &str) -> LoginRecord {
        register("admin", password, CHEAP, &mut rand_chacha::ChaCha20Rng::seed_from_u64(1)).unwrap()
    }

    #[test]
    fn the_right_password_gives_both_sides_one_key() {
        let (c, s) = login(Some(&record("correct horse")), "correct horse", (b"h", b"h")).unwrap();
        assert_eq!(c, s);
        let sealed = seal(&c, Direction::ToRemote, b"secret");
        assert_eq!(open(&s, Direction::ToRemote, &sealed).unwrap(), b"secret");
        assert!(open(&s, Direction::ToInitiator, &sealed).is_err());
    }

    #[test]
    fn a_wrong_password_an_unknown_user_and_a_relayed_channel_all_fail() {
        let r = record("correct horse");
        assert_eq!(login(Some(&r), "wrong", (b"h", b"h")).unwrap_err(), LoginError::Rejected);
        assert_eq!(login(None, "correct horse", (b"h", b"h")).unwrap_err(), LoginError::Rejected);
        // A man in the middle holds two channels with two handshake hashes.
        assert_eq!(
            login(Some(&r), "correct horse", (b"h1", b"h2")).unwrap_err(),
            LoginError::Rejected
        );
    }

    #[test]
    fn the_stored_record_alone_does_not_log_in() {
        // Pass-the-hash: whatever bytes of the record an attacker offers as the password fail.
        let r = record("correct horse");
        for guess in [&r.file, &r.setup] {
            let text: String = guess.iter().map(|b| format!("{b:02x}")).collect();
            assert!(login(Some(&r), &text, (b"h", b"h")).is_err());
        }
    }

    #[test]
    fn a_flipped_bit_in_a_sealed_message_is_refused() {
        let (c, s) = login(Some(&record("pw")), "pw", (b"h", b"h")).unwrap();
        let mut sealed = seal(&c, Direction::ToInitiator, b"identity");
        sealed[3] ^= 1;
        assert!(open(&s, Direction::ToInitiator, &sealed).is_err());
    }

    #[test]
    fn unreasonable_parameters_are_refused_before_any_work() {
        let huge = KdfParams { memory_kib: u32::MAX, passes: 1 };
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        assert_eq!(register("a", "b", huge, &mut rng).unwrap_err(), LoginError::Unreasonable);
    }
}
