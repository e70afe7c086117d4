//! A node under test and the peer at the other end of one of its links.
//!
//! The node is set up like the simulator's (`sim/src/des/world.rs`): cheap password derivation,
//! the simulator's license issuer, and a fixed seed, entropy and start time, so a crashing input
//! replays exactly. It holds an owner account with an OPAQUE login record (so merge logins meet
//! a real password file), a viewer with one (who may not merge) and an administrator from before
//! protocol 3 without one.
//!
//! The driver runs the Noise handshake before the core hears of a link, so a link here opens
//! already established: [`Input::LinkOpened`] with the [`ChannelInfo`] a handshake would report.

use hive_core::auth::{password_verifier, KdfParams, Secret};
use hive_core::ids::{HardwareId, PeerAddr, ServerId, SystemName, UserId};
use hive_core::instant::{MonoMs, MonoUs, WallMs};
use hive_core::keys::{PublicKey, StaticKeypair};
use hive_core::licenses::LicenseIssuer;
use hive_core::login::{self, LoginRecord};
use hive_core::node::{
    ChannelInfo, ChannelKind, Command, CommandId, Config, Event, Input, Keep, LinkId, Node, Now,
    Output,
};
use hive_core::persist::Restored;
use hive_core::resources::{Key, PasswordVerifier, Role, UserRecord, Value};
use hive_core::wire::{Hello, Message, PROTOCOL_VERSION};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::LazyLock;

/// Seed of the license issuer whose public key is the node's vendor key, as in the simulator.
pub const ISSUER_SEED: [u8; 32] = [42; 32];
/// System secret of the node, which a member peer shares.
pub const SECRET: &str = "fuzz secret";
/// System name of the node.
pub const SYSTEM_NAME: &str = "fuzz";
/// Hardware id of the node, which license keys must name.
pub const HARDWARE_ID: &str = "hw-fuzz";
/// Login and password of the node's owner account (also the password the node's own outgoing
/// merge offers the other system).
pub const OWNER: (&str, &str) = ("admin", "pw");
/// A viewer with a login record and the owner's password: may never merge.
pub const VIEWER: &str = "viewer";
/// An administrator made before protocol 3: no login record until the next API login.
pub const LEGACY_ADMIN: &str = "legacy";
/// Server id the peer claims when it says hello as a member.
pub const PEER: ServerId = ServerId(0xfeed);
/// Static key the peer's channel presents.
pub const PEER_KEY: PublicKey = PublicKey([0xfe; 32]);
/// Handshake hash of the link's channel, which merge logins are bound to.
pub const HANDSHAKE_HASH: [u8; 32] = [0x4b; 32];
/// Address of the other system in an outgoing merge.
pub const MERGE_ADDR: &str = "10.0.0.9:7001";
/// Seed of the node's randomness: its server id and boot are the same in every run.
pub const NODE_SEED: u64 = 1;
/// When the node starts.
pub const START: Now = Now { mono: MonoMs(0), mono_us: MonoUs(0), wall: WallMs(1_700_000_000_000) };
/// Time between two inputs.
pub const STEP_MS: u64 = 10;
/// Ticks in [`Peer::wait`].
pub const TICKS: u64 = 25;

/// The link every [`Peer`] speaks on.
pub const LINK: LinkId = LinkId(1);

// The vendor key, the verifiers and the login records take most of a node's start: derived once
// per process, not per fuzz input.
static CONFIG: LazyLock<Config> = LazyLock::new(|| Config {
    server_name: "fuzz".into(),
    system_name: SystemName::new(SYSTEM_NAME).expect("valid system name"),
    secret: Secret::from_text(SECRET),
    // The core never runs Diffie-Hellman: any 32 bytes stand for a key pair.
    link_key: StaticKeypair { private: [0x11; 32], public: PublicKey([0x12; 32]) },
    entropy: [5; 32],
    hardware_id: HardwareId(HARDWARE_ID.into()),
    listen: vec![PeerAddr("10.0.0.1:7001".into())],
    manual_peers: vec![],
    media: None,
    vendor_key: LicenseIssuer::from_seed(ISSUER_SEED).verifying_key(),
    kdf: KdfParams::CHEAP,
    failover_enabled: true,
    max_cameras: 256,
    timing: Default::default(),
});
static PASSWORD: LazyLock<PasswordVerifier> =
    LazyLock::new(|| password_verifier(OWNER.1, [3; 16], KdfParams::CHEAP));
static OWNER_LOGIN: LazyLock<LoginRecord> = LazyLock::new(|| login_record(OWNER.0, OWNER.1, 1));
static VIEWER_LOGIN: LazyLock<LoginRecord> = LazyLock::new(|| login_record(VIEWER, OWNER.1, 2));

/// An OPAQUE login record of `user` with `password`, registered with a generator seeded `seed`.
pub fn login_record(user: &str, password: &str, seed: u64) -> LoginRecord {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    login::register(user, password, KdfParams::CHEAP, &mut rng).expect("cheap parameters register")
}

/// The node's configuration.
pub fn config() -> Config {
    CONFIG.clone()
}

/// The node's system secret.
pub fn secret() -> Secret {
    CONFIG.secret.clone()
}

/// What the driver reports for a channel of `kind` to the peer.
pub fn channel(kind: ChannelKind) -> ChannelInfo {
    ChannelInfo { kind, peer_key: PEER_KEY, handshake_hash: HANDSHAKE_HASH }
}

/// How the link to the node came about, and how far the peer takes it before the fuzz input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The node accepted a member channel and sent its hello; the input speaks from then on,
    /// starting with its own hello.
    MemberChannel,
    /// The peer also said hello as member [`PEER`]: the link is up between two members.
    Member,
    /// An administrator asked the node to merge with [`MERGE_ADDR`]; the node dialled it and
    /// sent its OPAQUE login.
    OutgoingMerge,
    /// The node accepted a merge channel: another system's administrator may log in.
    IncomingMerge,
}

impl Opening {
    /// The opening a fuzz input's first byte selects.
    pub fn from_byte(byte: u8) -> Opening {
        match byte % 4 {
            0 => Opening::MemberChannel,
            1 => Opening::Member,
            2 => Opening::OutgoingMerge,
            _ => Opening::IncomingMerge,
        }
    }

    /// The byte that selects this opening.
    pub fn byte(self) -> u8 {
        match self {
            Opening::MemberChannel => 0,
            Opening::Member => 1,
            Opening::OutgoingMerge => 2,
            Opening::IncomingMerge => 3,
        }
    }
}

/// A started node, seeded `seed`, holding an owner, a viewer and a legacy administrator.
pub fn start(seed: u64, now: Now) -> Node {
    let mut node = Node::new(config(), Restored::default(), seed, now);
    let home_system = node.snapshot().identity.system;
    let user = |name: &str, role, login: Option<&LoginRecord>| UserRecord {
        name: name.into(),
        role,
        password: PASSWORD.clone(),
        login: login.cloned(),
        home_system,
    };
    let users = [
        user(OWNER.0, Role::Owner, Some(&OWNER_LOGIN)),
        user(VIEWER, Role::Viewer, Some(&VIEWER_LOGIN)),
        user(LEGACY_ADMIN, Role::Admin, None),
    ];
    for (i, u) in (1u64..).zip(users) {
        let cmd = Command::Put { key: Key::User(UserId(i.into())), value: Value::User(u) };
        node.handle(now, Input::Command { id: CommandId(i), cmd });
    }
    while node.poll_output().is_some() {}
    node
}

/// A node and the peer on its link: everything the node sends is recorded, never delivered, so
/// inputs are all the peer can influence it by.
pub struct Peer {
    node: Node,
    now: Now,
    sent: Vec<Message>,
    outputs: Vec<Output>,
    commands: u64,
}

impl Peer {
    /// Starts a node and opens the link as `opening` says.
    pub fn connect(opening: Opening) -> Peer {
        Self::connect_keeping(opening, Keep::Local)
    }

    /// [`Peer::connect`], with the node's outgoing merge (if any) keeping `keep`'s side.
    pub fn connect_keeping(opening: Opening, keep: Keep) -> Peer {
        let mut peer = Peer {
            node: start(NODE_SEED, START),
            now: START,
            sent: vec![],
            outputs: vec![],
            commands: 100,
        };
        match opening {
            Opening::MemberChannel => {
                peer.open(ChannelKind::Member, None);
            }
            Opening::Member => peer.say_hello(),
            Opening::OutgoingMerge => peer.merge(keep),
            Opening::IncomingMerge => {
                peer.open(ChannelKind::Merge, None);
            }
        }
        peer
    }

    /// The node under test.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Every message the node sent on [`LINK`], oldest first.
    pub fn sent(&self) -> &[Message] {
        &self.sent
    }

    /// Every output of the node since it started, oldest first.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Delivers `msg` on the link, [`STEP_MS`] after the previous input.
    pub fn send(&mut self, msg: Message) -> Vec<Output> {
        self.handle(Input::Message { link: LINK, msg, received: self.now.mono_us })
    }

    /// Reports the link's channel of `kind` established; `dialed` for a link the node asked for.
    pub fn open(&mut self, kind: ChannelKind, dialed: Option<PeerAddr>) -> Vec<Output> {
        self.handle(Input::LinkOpened { link: LINK, dialed, channel: channel(kind) })
    }

    /// Reports the link closed (the node may have closed it already: then nothing happens).
    pub fn close(&mut self) -> Vec<Output> {
        self.handle(Input::LinkClosed { link: LINK })
    }

    /// Asks the node to merge with [`MERGE_ADDR`] as [`OWNER`] (keeping `keep`'s side) and
    /// opens the merge channel it dials, if it dials.
    pub fn merge(&mut self, keep: Keep) {
        let addr = PeerAddr(MERGE_ADDR.into());
        let cmd = Command::Merge {
            addr: addr.clone(),
            user: OWNER.0.into(),
            password: OWNER.1.into(),
            keep,
        };
        self.commands += 1;
        let out = self.handle(Input::Command { id: CommandId(self.commands), cmd });
        if out.contains(&Output::Dial { addr: addr.clone(), kind: ChannelKind::Merge }) {
            self.open(ChannelKind::Merge, Some(addr));
        }
    }

    /// Lets `ms` pass in [`TICKS`] ticks, so timers fire on whatever state the messages left.
    pub fn wait(&mut self, ms: u64) {
        for _ in 0..TICKS {
            self.handle_after(ms / TICKS, Input::Tick);
        }
    }

    /// Plays the honest member: answers the node's hello with [`PEER`]'s.
    fn say_hello(&mut self) {
        let out = self.open(ChannelKind::Member, None);
        let hello = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg: Message::Hello(h), .. } => Some(h),
                _ => None,
            })
            .expect("the node greets a new member channel");
        let out = self.send(Message::Hello(member_hello(&hello)));
        assert!(out.contains(&Output::Event(Event::PeerUp(PEER))), "member link is up: {out:?}");
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.handle_after(STEP_MS, input)
    }

    fn handle_after(&mut self, ms: u64, input: Input) -> Vec<Output> {
        self.now.mono = self.now.mono.plus_ms(ms);
        self.now.mono_us = MonoUs(self.now.mono_us.0 + ms * 1000);
        self.now.wall = WallMs(self.now.wall.0 + ms);
        self.node.handle(self.now, input);
        let out: Vec<Output> = std::iter::from_fn(|| self.node.poll_output()).collect();
        for o in &out {
            if let Output::Send { link: LINK, msg } = o {
                self.sent.push(msg.clone());
            }
        }
        self.outputs.extend(out.iter().cloned());
        out
    }
}

/// The hello of [`PEER`], a member of the system that greeted it with `theirs`.
pub fn member_hello(theirs: &Hello) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        server: PEER,
        system: theirs.system,
        name: theirs.name.clone(),
        name_stamp: theirs.name_stamp,
        boot: 1,
        hlc: theirs.hlc,
        listen: vec![],
    }
}
