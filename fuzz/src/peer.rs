//! A node under test and the peer at the other end of one of its links.
//!
//! The node is set up like the simulator's (`sim/src/des/world.rs`): cheap password derivation,
//! the simulator's license issuer, and a fixed seed and start time, so a crashing input replays
//! exactly. It also holds an owner account, so merge requests meet a real password verifier.

use hive_core::auth::{password_verifier, KdfParams, Secret};
use hive_core::ids::{HardwareId, PeerAddr, ServerId, SystemName, UserId};
use hive_core::licenses::LicenseIssuer;
use hive_core::node::{Command, CommandId, Config, Event, Input, Keep, LinkId, Node, Now, Output};
use hive_core::persist::Restored;
use hive_core::resources::PasswordVerifier;
use hive_core::resources::{Key, Role, UserRecord, Value};
use hive_core::wire::{Hello, Message, Purpose, PROTOCOL_VERSION};
use std::sync::LazyLock;

/// Seed of the license issuer whose public key is the node's vendor key, as in the simulator.
pub const ISSUER_SEED: [u8; 32] = [42; 32];
/// System secret of the node, which an authenticated peer shares.
pub const SECRET: &str = "fuzz secret";
/// System name of the node.
pub const SYSTEM_NAME: &str = "fuzz";
/// Hardware id of the node, which license keys must name.
pub const HARDWARE_ID: &str = "hw-fuzz";
/// Login and password of the node's owner account.
pub const OWNER: (&str, &str) = ("admin", "pw");
/// Server id the peer claims when it authenticates as a member.
pub const PEER: ServerId = ServerId(0xfeed);
/// Address of the other system in an outgoing merge.
pub const MERGE_ADDR: &str = "10.0.0.9:7001";
/// Seed of the node's randomness: its server id and nonces are the same in every run.
pub const NODE_SEED: u64 = 1;
/// When the node starts.
pub const START: Now = Now { mono_ms: 0, wall_ms: 1_700_000_000_000 };
/// Time between two inputs.
pub const STEP_MS: u64 = 10;
/// Ticks in [`Peer::wait`].
pub const TICKS: u64 = 25;

const LINK: LinkId = LinkId(1);

// The vendor key and the owner's verifier take most of a node's start: derived once per
// process, not per fuzz input.
static CONFIG: LazyLock<Config> = LazyLock::new(|| Config {
    server_name: "fuzz".into(),
    system_name: SystemName::new(SYSTEM_NAME).expect("valid system name"),
    secret: Secret::from_text(SECRET),
    hardware_id: HardwareId(HARDWARE_ID.into()),
    listen: vec![PeerAddr("10.0.0.1:7001".into())],
    manual_peers: vec![],
    vendor_key: LicenseIssuer::from_seed(ISSUER_SEED).verifying_key(),
    kdf: KdfParams::CHEAP,
    failover_enabled: true,
    max_cameras: 256,
    timing: Default::default(),
});
static OWNER_PASSWORD: LazyLock<PasswordVerifier> =
    LazyLock::new(|| password_verifier(OWNER.1, [3; 16], KdfParams::CHEAP));

/// The node's configuration.
pub fn config() -> Config {
    CONFIG.clone()
}

/// How the link to the node came about, and how far the peer takes it before the fuzz input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// The node accepted the link and sent its hello; the input speaks from then on.
    Accepted,
    /// The peer also proved the system secret: the link is up between two members.
    Member,
    /// An administrator asked the node to merge with [`MERGE_ADDR`] and the node dialled it.
    OutgoingMerge,
}

impl Opening {
    /// The opening a fuzz input's first byte selects.
    pub fn from_byte(byte: u8) -> Opening {
        match byte % 3 {
            0 => Opening::Accepted,
            1 => Opening::Member,
            _ => Opening::OutgoingMerge,
        }
    }

    /// The byte that selects this opening.
    pub fn byte(self) -> u8 {
        match self {
            Opening::Accepted => 0,
            Opening::Member => 1,
            Opening::OutgoingMerge => 2,
        }
    }
}

/// A started node, seeded `seed`, holding an owner account.
pub fn start(seed: u64, now: Now) -> Node {
    let mut node = Node::new(config(), Restored::default(), seed, now);
    let owner = UserRecord {
        name: OWNER.0.into(),
        role: Role::Owner,
        password: OWNER_PASSWORD.clone(),
        home_system: node.snapshot().identity.system,
    };
    let cmd = Command::Put { key: Key::User(UserId(1)), value: Value::User(owner) };
    node.handle(now, Input::Command { id: CommandId(0), cmd });
    while node.poll_output().is_some() {}
    node
}

/// A node and the peer on its link: everything the node sends is dropped, so inputs are all
/// the peer can influence it by.
pub struct Peer {
    node: Node,
    now: Now,
}

impl Peer {
    /// Starts a node and opens the link as `opening` says.
    pub fn connect(opening: Opening) -> Peer {
        let mut peer = Peer { node: start(NODE_SEED, START), now: START };
        match opening {
            Opening::Accepted => {
                peer.handle(Input::LinkOpened { link: LINK, dialed: None });
            }
            Opening::Member => peer.authenticate(),
            Opening::OutgoingMerge => {
                let addr = PeerAddr(MERGE_ADDR.into());
                let cmd = Command::Merge {
                    addr: addr.clone(),
                    user: OWNER.0.into(),
                    password: OWNER.1.into(),
                    keep: Keep::Local,
                };
                let out = peer.handle(Input::Command { id: CommandId(1), cmd });
                assert!(out.contains(&Output::Dial(addr.clone())), "merge dials: {out:?}");
                peer.handle(Input::LinkOpened { link: LINK, dialed: Some(addr) });
            }
        }
        peer
    }

    /// Delivers `msg` on the link, [`STEP_MS`] after the previous input.
    pub fn send(&mut self, msg: Message) -> Vec<Output> {
        self.handle(Input::Message { link: LINK, msg })
    }

    /// Lets `ms` pass in [`TICKS`] ticks, so timers fire on whatever state the messages left.
    pub fn wait(&mut self, ms: u64) {
        for _ in 0..TICKS {
            self.handle_after(ms / TICKS, Input::Tick);
        }
    }

    /// Plays the honest member: answers the node's hello and its challenge.
    fn authenticate(&mut self) {
        let out = self.handle(Input::LinkOpened { link: LINK, dialed: None });
        let hello = out
            .into_iter()
            .find_map(|o| match o {
                Output::Send { msg: Message::Hello(h), .. } => Some(h),
                _ => None,
            })
            .expect("the node greets a new link");
        self.send(Message::Hello(member_hello(&hello)));
        let proof = Secret::from_text(SECRET).link_proof(&hello.nonce, PEER);
        let out = self.send(Message::Auth { proof });
        assert!(out.contains(&Output::Event(Event::PeerUp(PEER))), "member link is up: {out:?}");
    }

    fn handle(&mut self, input: Input) -> Vec<Output> {
        self.handle_after(STEP_MS, input)
    }

    fn handle_after(&mut self, ms: u64, input: Input) -> Vec<Output> {
        self.now.mono_ms += ms;
        self.now.wall_ms += ms;
        self.node.handle(self.now, input);
        std::iter::from_fn(|| self.node.poll_output()).collect()
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
        nonce: [7; 16],
        hlc: theirs.hlc,
        purpose: Purpose::Peer,
        listen: vec![],
    }
}
