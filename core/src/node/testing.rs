//! Nodes for unit tests of the state machine.

use super::{Command, CommandId, Config, Input, Node, Now, Timing};
use crate::auth::{KdfParams, Secret};
use crate::ids::{HardwareId, PeerAddr, SystemName, UserId};
use crate::instant::{MonoMs, MonoUs, WallMs};
use crate::keys::{PublicKey, StaticKeypair};
use crate::login;
use crate::persist::Restored;
use crate::resources::{Key, Role, UserRecord, Value};

pub const NOW: Now =
    Now { mono: MonoMs(1_000), mono_us: MonoUs(1_000_000), wall: WallMs(1_700_000_000_000) };

/// A node of system `name` (secret from the name) with users `owner` and `viewer`, both
/// with password `pw-right`.
pub fn node(name: &str, seed: u8) -> Node {
    let config = Config {
        server_name: name.into(),
        system_name: SystemName::new(name).unwrap(),
        secret: Secret::from_text(name),
        link_key: StaticKeypair { private: [seed; 32], public: PublicKey([seed; 32]) },
        entropy: [seed; 32],
        hardware_id: HardwareId(name.into()),
        listen: vec![PeerAddr(format!("10.0.0.{seed}:7001"))],
        manual_peers: vec![],
        media: None,
        vendor_key: crate::licenses::LicenseIssuer::from_seed([1; 32]).verifying_key(),
        kdf: KdfParams::CHEAP,
        failover_enabled: true,
        max_cameras: 8,
        timing: Timing::default(),
    };
    let mut n = Node::new(config, Restored::default(), u64::from(seed), NOW);
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(9);
    for (id, user, role) in [(1, "owner", Role::Owner), (2, "viewer", Role::Viewer)] {
        let record = UserRecord {
            name: user.into(),
            role,
            password: crate::auth::password_verifier("pw-right", [1; 16], KdfParams::CHEAP),
            home_system: n.identity.system,
            login: login::register(user, "pw-right", KdfParams::CHEAP, &mut rng).ok(),
        };
        let put = Command::Put { key: Key::User(UserId(id)), value: Value::User(record) };
        n.handle(NOW, Input::Command { id: CommandId(100 + id as u64), cmd: put });
    }
    while n.poll_output().is_some() {}
    n
}

/// Two servers of system "north" joined by link 1, which `a` dialled; every message between
/// them delivered until both are quiet. The third value is `a`'s address `b` was dialled at.
pub fn pair() -> (Node, Node, PeerAddr) {
    use super::{ChannelInfo, ChannelKind, LinkId, Output};
    let (mut a, mut b) = (node("north", 1), node("north", 2));
    let link = LinkId(1);
    let dialed = PeerAddr("10.0.0.2:7001".into());
    let channel = |peer: &Node| ChannelInfo {
        kind: ChannelKind::Member,
        peer_key: peer.channel_keys().0.public,
        handshake_hash: [3; 32],
    };
    let (to_a, to_b) = (channel(&b), channel(&a));
    a.handle(NOW, Input::LinkOpened { link, dialed: Some(dialed.clone()), channel: to_a });
    b.handle(NOW, Input::LinkOpened { link, dialed: None, channel: to_b });
    fn deliver(from: &mut Node, to: &mut Node, link: LinkId, now: Now) -> bool {
        let mut delivered = false;
        for out in from.drain_outputs() {
            if let Output::Send { msg, .. } = out {
                delivered = true;
                to.handle(now, Input::Message { link, msg, received: MonoUs(0) });
            }
        }
        delivered
    }
    while deliver(&mut a, &mut b, link, NOW) | deliver(&mut b, &mut a, link, NOW) {}
    // Routes are announced a moment after a link comes up.
    let later = Now {
        mono: MonoMs(NOW.mono.0 + 1_000),
        mono_us: MonoUs(NOW.mono_us.0 + 1_000_000),
        wall: WallMs(NOW.wall.0 + 1_000),
    };
    a.handle(later, Input::Tick);
    b.handle(later, Input::Tick);
    while deliver(&mut a, &mut b, link, later) | deliver(&mut b, &mut a, link, later) {}
    (a, b, dialed)
}

impl Node {
    /// Every output waiting.
    pub fn drain_outputs(&mut self) -> Vec<super::Output> {
        std::iter::from_fn(|| self.poll_output()).collect()
    }
}
