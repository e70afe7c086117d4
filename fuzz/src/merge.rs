//! Merge logins played against a node as another system would, honestly or not.
//!
//! A [`Script`] says which side of a merge the node is on and what the other system does, step
//! by step: deliver a [`MergeMsg`] of arbitrary content, or act as a genuine OPAQUE client or
//! server (with the right password or record, or a wrong one) on whatever the node last sent.
//! The genuine steps let a fuzzer get past the login to the sealed offer and outcome, which
//! random bytes never would.
//!
//! [`run`] checks after every step that the node stays unchanged (identity, system, secret and
//! store) unless a login with the right password on the right channel completed, that it sends
//! nothing but merge messages on a merge link, and that the system secret never travels in the
//! clear.

use crate::peer::{self, Opening, Peer, HANDSHAKE_HASH, LEGACY_ADMIN, OWNER, VIEWER};
use crate::reader::{put_bytes, Reader};
use hive_core::auth::KdfParams;
use hive_core::login::{self, ClientState, Direction, LoginRecord, ServerState};
use hive_core::node::{Keep, Node};
use hive_core::persist::Snapshot;
use hive_core::wire::{MergeMsg, MergeOffer, MergeRefusal, Message};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::LazyLock;

/// Longest a [`Step::Wait`] lets pass: past every merge back-off.
const WAIT_MS_MAX: u64 = 600_000;
/// Largest key stretching a delivered challenge within the node's limit asks for. Deriving at
/// [`KdfParams::LIMIT`] takes a second, which would slow fuzzing a hundredfold for no new
/// coverage; parameters beyond the limit are delivered as they are (they must be refused).
const AFFORDABLE: KdfParams = KdfParams { memory_kib: 1_024, passes: 2 };

/// Names a genuine client may log in as: only the owner can merge.
pub const USERS: [&str; 4] = [OWNER.0, VIEWER, LEGACY_ADMIN, "nobody"];
/// Password of a genuine client that is not the owner's.
pub const WRONG_PASSWORD: &str = "wrong";

/// The other system's record of its administrator, as a genuine server in a merge the node
/// started checks the node's login against.
static REMOTE_RIGHT: LazyLock<LoginRecord> =
    LazyLock::new(|| peer::login_record(OWNER.0, OWNER.1, 21));
static REMOTE_WRONG: LazyLock<LoginRecord> =
    LazyLock::new(|| peer::login_record(OWNER.0, WRONG_PASSWORD, 22));
static DUMMY: LazyLock<Vec<u8>> = LazyLock::new(|| login::dummy_setup([23; 32]));

/// The node's side of the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Another system's administrator logs in to the node.
    Remote,
    /// The node's administrator asked it to merge, keeping this side.
    Initiator(Keep),
}

/// What the genuine server answering the node's own merge login holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The record of the password the node offers: the login succeeds.
    Right,
    /// A record of another password.
    WrongPassword,
    /// No record: the dummy setup unknown names are answered from.
    Unknown,
    /// The right record on another channel: a man in the middle relaying the login.
    Relayed,
}

/// One thing the other system does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delivers this message as it is.
    Msg(MergeMsg),
    /// Logs in as `USERS[user % 4]`, with the owner's password or [`WRONG_PASSWORD`], from a
    /// genuine OPAQUE client.
    Login {
        /// Index into [`USERS`].
        user: u8,
        /// Whether the password is the owner's.
        right_password: bool,
    },
    /// Finishes the genuine client's login on the node's last challenge and sends `offer`
    /// sealed under the session key; sends a garbage finish if the login failed.
    Finish {
        /// Plaintext of the offer (CBOR of a [`MergeOffer`] when honest).
        offer: Vec<u8>,
    },
    /// Answers the node's last login as a genuine OPAQUE server holding `record`.
    Challenge {
        /// What the server holds.
        record: Record,
    },
    /// Checks the node's last finish as that server and answers with `outcome` sealed under
    /// the session key; sends it unsealed if the login failed.
    Accept {
        /// Plaintext of the outcome (CBOR of a `MergeOutcome` when honest).
        outcome: Vec<u8>,
    },
    /// Lets this many ms pass (at most [`WAIT_MS_MAX`]).
    Wait {
        /// How long.
        ms: u32,
    },
    /// Closes the link; then the node accepts a new merge channel (remote side) or is asked
    /// to merge again (initiator side).
    Reopen,
}

/// A fuzz input of the `merge_messages` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The node's side.
    pub side: Side,
    /// What the other system does, in order.
    pub steps: Vec<Step>,
}

fn refusal(tag: u8, retry_after_ms: u64) -> MergeRefusal {
    match tag % 7 {
        0 => MergeRefusal::BadCredentials,
        1 => MergeRefusal::ServerOnBothSides,
        2 => MergeRefusal::SameSystem,
        3 => MergeRefusal::UnreasonableChallenge,
        4 => MergeRefusal::TooManyAttempts { retry_after_ms },
        5 => MergeRefusal::Busy,
        _ => MergeRefusal::NotVerified,
    }
}

fn refusal_tag(why: MergeRefusal) -> (u8, u64) {
    match why {
        MergeRefusal::BadCredentials => (0, 0),
        MergeRefusal::ServerOnBothSides => (1, 0),
        MergeRefusal::SameSystem => (2, 0),
        MergeRefusal::UnreasonableChallenge => (3, 0),
        MergeRefusal::TooManyAttempts { retry_after_ms } => (4, retry_after_ms),
        MergeRefusal::Busy => (5, 0),
        MergeRefusal::NotVerified => (6, 0),
    }
}

const RECORDS: [Record; 4] =
    [Record::Right, Record::WrongPassword, Record::Unknown, Record::Relayed];

impl Script {
    /// The script `data` spells: a side byte, then steps, each a tag byte and its fields.
    pub fn decode(data: &[u8]) -> Script {
        let mut r = Reader::new(data);
        let side = match r.u8() % 3 {
            0 => Side::Remote,
            1 => Side::Initiator(Keep::Local),
            _ => Side::Initiator(Keep::Remote),
        };
        let mut steps = Vec::new();
        while !r.is_empty() {
            let step = match r.u8() % 11 {
                0 => Step::Msg(MergeMsg::Login { user: r.text(), ke1: r.bytes() }),
                1 => Step::Msg(MergeMsg::Challenge {
                    ke2: r.bytes(),
                    params: KdfParams { memory_kib: r.u32(), passes: r.u32() },
                }),
                2 => Step::Msg(MergeMsg::Finish { ke3: r.bytes(), offer: r.bytes() }),
                3 => Step::Msg(MergeMsg::Accepted { outcome: r.bytes() }),
                4 => Step::Msg(MergeMsg::Refused(refusal(r.u8(), r.u64()))),
                5 => Step::Login { user: r.u8() % 4, right_password: r.u8() % 2 == 1 },
                6 => Step::Finish { offer: r.bytes() },
                7 => Step::Challenge { record: RECORDS[usize::from(r.u8() % 4)] },
                8 => Step::Accept { outcome: r.bytes() },
                9 => Step::Wait { ms: r.u32() },
                _ => Step::Reopen,
            };
            steps.push(step);
        }
        Script { side, steps }
    }

    /// The bytes [`Script::decode`] reads back as this script.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![match self.side {
            Side::Remote => 0,
            Side::Initiator(Keep::Local) => 1,
            Side::Initiator(Keep::Remote) => 2,
        }];
        for step in &self.steps {
            match step {
                Step::Msg(MergeMsg::Login { user, ke1 }) => {
                    out.push(0);
                    put_bytes(&mut out, user.as_bytes());
                    put_bytes(&mut out, ke1);
                }
                Step::Msg(MergeMsg::Challenge { ke2, params }) => {
                    out.push(1);
                    put_bytes(&mut out, ke2);
                    out.extend(params.memory_kib.to_le_bytes());
                    out.extend(params.passes.to_le_bytes());
                }
                Step::Msg(MergeMsg::Finish { ke3, offer }) => {
                    out.push(2);
                    put_bytes(&mut out, ke3);
                    put_bytes(&mut out, offer);
                }
                Step::Msg(MergeMsg::Accepted { outcome }) => {
                    out.push(3);
                    put_bytes(&mut out, outcome);
                }
                Step::Msg(MergeMsg::Refused(why)) => {
                    let (tag, retry) = refusal_tag(*why);
                    out.extend([4, tag]);
                    out.extend(retry.to_le_bytes());
                }
                Step::Login { user, right_password } => {
                    out.extend([5, *user, u8::from(*right_password)]);
                }
                Step::Finish { offer } => {
                    out.push(6);
                    put_bytes(&mut out, offer);
                }
                Step::Challenge { record } => {
                    let i = RECORDS.iter().position(|r| r == record).expect("listed");
                    out.extend([7, i as u8]);
                }
                Step::Accept { outcome } => {
                    out.push(8);
                    put_bytes(&mut out, outcome);
                }
                Step::Wait { ms } => {
                    out.push(9);
                    out.extend(ms.to_le_bytes());
                }
                Step::Reopen => out.push(10),
            }
        }
        out
    }
}

/// What a script did to the node.
#[derive(Debug)]
pub struct Outcome {
    /// Whether a login with the right password on the right channel completed on the
    /// harness's side (the node may change from then on).
    pub logged_in: bool,
    /// The node's state at the end.
    pub end: Snapshot,
    /// Its state after the link opened.
    pub start: Snapshot,
}

struct Run {
    peer: Peer,
    rng: ChaCha20Rng,
    side: Side,
    start: Snapshot,
    secret: [u8; 32],
    logged_in: bool,
    /// Genuine client: its state, password, and whether it is the owner with the right one.
    client: Option<(ClientState, &'static str, bool)>,
    /// Genuine server: its state and whether it held the right record on the right channel.
    server: Option<(ServerState, bool)>,
    /// Messages of the node already checked.
    checked: usize,
}

/// Plays `script` against a fresh node and checks it after every step (see the module doc).
pub fn run(script: &Script) -> Outcome {
    let peer = match script.side {
        Side::Remote => Peer::connect(Opening::IncomingMerge),
        Side::Initiator(keep) => Peer::connect_keeping(Opening::OutgoingMerge, keep),
    };
    let start = peer.node().snapshot();
    let token = peer::secret().token();
    let hex = token.strip_prefix(hive_core::auth::TOKEN_PREFIX).expect("a join token");
    let mut secret = [0u8; 32];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
    }
    let mut run = Run {
        peer,
        rng: ChaCha20Rng::seed_from_u64(7),
        side: script.side,
        start,
        secret,
        logged_in: false,
        client: None,
        server: None,
        checked: 0,
    };
    run.check();
    for step in &script.steps {
        run.step(step);
        run.check();
    }
    run.peer.wait(20_000);
    run.check();
    Outcome { logged_in: run.logged_in, end: run.peer.node().snapshot(), start: run.start }
}

impl Run {
    fn node(&self) -> &Node {
        self.peer.node()
    }

    /// The merge message the node sent last.
    fn last_sent(&self) -> Option<&MergeMsg> {
        match self.peer.sent().last() {
            Some(Message::Merge(m)) => Some(m),
            _ => None,
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Msg(msg) => {
                let msg = match msg {
                    MergeMsg::Challenge { ke2, params } if params.within_limit() => {
                        let params = KdfParams {
                            memory_kib: params.memory_kib.min(AFFORDABLE.memory_kib),
                            passes: params.passes.min(AFFORDABLE.passes),
                        };
                        MergeMsg::Challenge { ke2: ke2.clone(), params }
                    }
                    other => other.clone(),
                };
                self.peer.send(Message::Merge(msg));
            }
            Step::Login { user, right_password } => {
                let name = USERS[usize::from(*user % 4)];
                let password = if *right_password { OWNER.1 } else { WRONG_PASSWORD };
                let (state, ke1) =
                    login::client_start(password, &mut self.rng).expect("a client starts");
                self.client = Some((state, password, name == OWNER.0 && *right_password));
                let login = MergeMsg::Login { user: name.into(), ke1 };
                self.peer.send(Message::Merge(login));
            }
            Step::Finish { offer } => self.finish(offer),
            Step::Challenge { record } => self.challenge(*record),
            Step::Accept { outcome } => self.accept(outcome),
            Step::Wait { ms } => self.peer.wait(u64::from(*ms).min(WAIT_MS_MAX)),
            Step::Reopen => {
                self.client = None;
                self.server = None;
                self.peer.close();
                match self.side {
                    Side::Remote => {
                        self.peer.open(hive_core::node::ChannelKind::Merge, None);
                    }
                    Side::Initiator(keep) => self.peer.merge(keep),
                }
            }
        }
    }

    fn finish(&mut self, offer: &[u8]) {
        let challenge = match self.last_sent() {
            Some(MergeMsg::Challenge { ke2, params }) => Some((ke2.clone(), *params)),
            _ => None,
        };
        let sealed = match (self.client.take(), challenge) {
            (Some((state, password, genuine)), Some((ke2, params))) => {
                match login::client_finish(state, password, &ke2, params, &HANDSHAKE_HASH) {
                    Ok((ke3, key)) => {
                        assert!(genuine, "a client without the owner's password logged in");
                        self.logged_in = true;
                        Some((ke3, login::seal(&key, Direction::ToRemote, offer)))
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let (ke3, offer) = sealed.unwrap_or_else(|| (vec![], offer.to_vec()));
        self.peer.send(Message::Merge(MergeMsg::Finish { ke3, offer }));
    }

    fn challenge(&mut self, record: Record) {
        let Some(MergeMsg::Login { user, ke1 }) = self.last_sent().cloned() else {
            let ke2 = vec![];
            let msg = MergeMsg::Challenge { ke2, params: KdfParams::CHEAP };
            self.peer.send(Message::Merge(msg));
            return;
        };
        let (stored, context) = match record {
            Record::Right => (Some(&*REMOTE_RIGHT), HANDSHAKE_HASH),
            Record::WrongPassword => (Some(&*REMOTE_WRONG), HANDSHAKE_HASH),
            Record::Unknown => (None, HANDSHAKE_HASH),
            Record::Relayed => (Some(&*REMOTE_RIGHT), [0x5c; 32]),
        };
        let started = login::server_start(stored, &DUMMY, &user, &ke1, &context, &mut self.rng);
        let ke2 = match started {
            Ok((state, ke2)) => {
                self.server = Some((state, record == Record::Right));
                ke2
            }
            Err(e) => panic!("the node's own login does not parse: {e}"),
        };
        self.peer.send(Message::Merge(MergeMsg::Challenge { ke2, params: KdfParams::CHEAP }));
    }

    fn accept(&mut self, outcome: &[u8]) {
        let finish = match self.last_sent() {
            Some(MergeMsg::Finish { ke3, offer }) => Some((ke3.clone(), offer.clone())),
            _ => None,
        };
        let mut sealed = outcome.to_vec();
        if let (Some((state, genuine)), Some((ke3, offer))) = (self.server.take(), finish) {
            if let Ok(key) = login::server_finish(state, &ke3) {
                assert!(genuine, "the node finished a login against the wrong record or channel");
                let offer = login::open(&key, Direction::ToRemote, &offer)
                    .expect("the node's offer opens under the session key");
                let offer: MergeOffer =
                    ciborium::from_reader(&offer[..]).expect("the node's offer is a MergeOffer");
                assert_eq!(offer.system, self.node().snapshot().identity.system);
                let keeps_local = self.side == Side::Initiator(Keep::Local);
                assert_eq!(offer.secret.is_some(), keeps_local, "secret offered iff kept");
                self.logged_in = true;
                sealed = login::seal(&key, Direction::ToInitiator, outcome);
            }
        }
        self.peer.send(Message::Merge(MergeMsg::Accepted { outcome: sealed }));
    }

    fn check(&mut self) {
        if !self.logged_in {
            let now = self.node().snapshot();
            assert!(now == self.start, "a merge without a successful login changed the node");
        }
        for msg in &self.peer.sent()[self.checked..] {
            assert!(matches!(msg, Message::Merge(_)), "{} sent on a merge link", msg.kind());
            let bytes = msg.encode();
            assert!(
                !bytes.windows(self.secret.len()).any(|w| w == self.secret),
                "the system secret went out in the clear: {msg:?}"
            );
        }
        self.checked = self.peer.sent().len();
    }
}
