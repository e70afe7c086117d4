//! One OPAQUE login through `hive_core::login`, whose stored record and messages fuzz input may
//! change on the way.
//!
//! A [`Transcript`] runs `client_start`, `server_start`, `client_finish`, `server_finish`, then
//! `seal` and `open` of one message, with an [`Edit`] applied to each of the record's two parts
//! and each of the four messages, and possibly a wrong password, a relayed channel (the two
//! sides' handshake hashes differ) or an unknown user. [`run`] checks that nothing panics, that
//! the untouched transcript succeeds, and that a changed message, wrong password, relayed channel
//! or unknown user never does. A changed *record* may still log in (part of a `ServerSetup`,
//! the dummy key, is unused by a real record); it only must not panic.

use crate::reader::{put_bytes, Reader};
use hive_core::auth::KdfParams;
use hive_core::login::{self, Direction, LoginRecord};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::LazyLock;

/// The user who logs in.
pub const USER: &str = "admin";
/// Their password.
pub const PASSWORD: &str = "correct horse";
/// What the client seals once logged in.
pub const PLAINTEXT: &[u8] = b"merge offer";
/// The channel's handshake hash both sides bind the login to.
const CONTEXT: [u8; 32] = [0x4b; 32];

static RECORD: LazyLock<LoginRecord> =
    LazyLock::new(|| crate::peer::login_record(USER, PASSWORD, 9));
static DUMMY: LazyLock<Vec<u8>> = LazyLock::new(|| login::dummy_setup([10; 32]));

/// A change to bytes on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Left as they are.
    Keep,
    /// XORed with `mask` from offset `at` (modulo the length) on, wrapping around.
    Xor {
        /// Where the mask starts.
        at: u16,
        /// The mask.
        mask: Vec<u8>,
    },
    /// Replaced by these bytes.
    Replace(Vec<u8>),
}

impl Edit {
    fn read(r: &mut Reader<'_>) -> Edit {
        match r.u8() % 3 {
            0 => Edit::Keep,
            1 => Edit::Xor { at: r.u16(), mask: r.bytes() },
            _ => Edit::Replace(r.bytes()),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Edit::Keep => out.push(0),
            Edit::Xor { at, mask } => {
                out.push(1);
                out.extend(at.to_le_bytes());
                put_bytes(out, mask);
            }
            Edit::Replace(bytes) => {
                out.push(2);
                put_bytes(out, bytes);
            }
        }
    }

    /// `bytes` after the edit.
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Edit::Keep => bytes.to_vec(),
            Edit::Xor { at, mask } => {
                let mut out = bytes.to_vec();
                if !out.is_empty() {
                    let len = out.len();
                    for (i, m) in mask.iter().take(len).enumerate() {
                        out[(usize::from(*at) + i) % len] ^= m;
                    }
                }
                out
            }
            Edit::Replace(new) => new.clone(),
        }
    }
}

/// One login, as the `opaque_messages` target reads it from fuzz input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The client uses another password.
    pub wrong_password: bool,
    /// Client and server are on two channels (a man in the middle relays the login).
    pub relayed: bool,
    /// The server holds no record for the user and answers from the dummy setup.
    pub unknown_user: bool,
    /// Edits of the record's setup, the record's password file, KE1, KE2, KE3 and the sealed
    /// message, in that order.
    pub edits: [Edit; 6],
}

impl Transcript {
    /// The untouched transcript.
    pub fn genuine() -> Transcript {
        Transcript {
            wrong_password: false,
            relayed: false,
            unknown_user: false,
            edits: std::array::from_fn(|_| Edit::Keep),
        }
    }

    /// The transcript `data` spells: a flags byte, then six edits.
    pub fn decode(data: &[u8]) -> Transcript {
        let mut r = Reader::new(data);
        let flags = r.u8();
        Transcript {
            wrong_password: flags & 1 != 0,
            relayed: flags & 2 != 0,
            unknown_user: flags & 4 != 0,
            edits: std::array::from_fn(|_| Edit::read(&mut r)),
        }
    }

    /// The bytes [`Transcript::decode`] reads back as this transcript.
    pub fn encode(&self) -> Vec<u8> {
        let flags = u8::from(self.wrong_password)
            | u8::from(self.relayed) << 1
            | u8::from(self.unknown_user) << 2;
        let mut out = vec![flags];
        for e in &self.edits {
            e.write(&mut out);
        }
        out
    }
}

/// How far a login got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// `server_start` refused KE1.
    Nothing,
    /// `client_finish` refused KE2.
    ServerStarted,
    /// `server_finish` refused KE3.
    ClientFinished,
    /// `open` refused the sealed message.
    ServerFinished,
    /// The server read the client's sealed message.
    Opened,
}

/// Runs `t` and checks it (see the module doc); how far it got.
pub fn run(t: &Transcript) -> Reached {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let [setup, file, ke1, ke2, ke3, sealed] = &t.edits;
    let scenario_genuine = !(t.wrong_password || t.relayed || t.unknown_user);
    let record = LoginRecord {
        setup: setup.apply(&RECORD.setup),
        file: file.apply(&RECORD.file),
        params: RECORD.params,
    };
    let password = if t.wrong_password { "wrong" } else { PASSWORD };
    let server_context = if t.relayed { [0x5c; 32] } else { CONTEXT };
    let record_kept = record == *RECORD;
    let stored = (!t.unknown_user).then_some(&record);

    // Whether every message so far reached the other side as it was sent.
    let mut intact = true;
    let reached = (|| {
        let (client, sent) = login::client_start(password, &mut rng).expect("a client starts");
        let got = ke1.apply(&sent);
        intact &= got == sent;
        let started = login::server_start(stored, &DUMMY, USER, &got, &server_context, &mut rng);
        let Ok((server, sent)) = started else { return Reached::Nothing };
        let got = ke2.apply(&sent);
        intact &= got == sent;
        let finished = login::client_finish(client, password, &got, KdfParams::CHEAP, &CONTEXT);
        let Ok((sent, client_key)) = finished else { return Reached::ServerStarted };
        assert!(
            intact && scenario_genuine,
            "the client logged in on a changed KE1/KE2, a wrong password, a relayed channel or \
             an unknown user: {t:?}"
        );
        let got = ke3.apply(&sent);
        intact &= got == sent;
        let Ok(server_key) = login::server_finish(server, &got) else {
            return Reached::ClientFinished;
        };
        assert!(intact, "the server accepted a changed KE3: {t:?}");
        assert_eq!(client_key, server_key, "both sides of a login share one key");
        let sent = login::seal(&client_key, Direction::ToRemote, PLAINTEXT);
        let got = sealed.apply(&sent);
        intact &= got == sent;
        assert!(
            login::open(&server_key, Direction::ToInitiator, &got).is_err(),
            "a message opens in the wrong direction"
        );
        let Ok(plain) = login::open(&server_key, Direction::ToRemote, &got) else {
            return Reached::ServerFinished;
        };
        assert!(intact, "a changed sealed message opened: {t:?}");
        assert_eq!(plain, PLAINTEXT);
        Reached::Opened
    })();
    if scenario_genuine && record_kept && intact {
        assert_eq!(reached, Reached::Opened, "the genuine login failed: {t:?}");
    }
    reached
}
