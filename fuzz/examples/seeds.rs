//! Writes seed inputs for every fuzz target into `<corpus dir>/<target>/`: real traffic between
//! two nodes, the records and snapshots they persist, and the files persistence writes.
//!
//! Usage: `cargo run --example seeds -- <corpus dir>`. Generated rather than committed, so the
//! seeds follow the formats as they change.

use hive::storage::Persistence;
use hive_core::auth::KdfParams;
use hive_core::frame::{self, encode_into};
use hive_core::hlc::Hlc;
use hive_core::ids::{CameraId, HardwareId, PeerAddr, ServerId, SystemId, SystemName};
use hive_core::licenses::{LicenseId, LicenseIssuer};
use hive_core::node::{Command, CommandId, Input, LinkId, Node, Now, Output};
use hive_core::persist::Record;
use hive_core::resources::{CameraRecord, FailoverPriority, HistoryRecord, Key, Value};
use hive_core::store::{ReplicaId, Transaction};
use hive_core::wire::{
    Beacon, Hello, IdentityChange, MergeMsg, Message, Purpose, PROTOCOL_VERSION,
};
use hive_fuzz::mem_fs::{block_on, MemFs};
use hive_fuzz::peer::{self, Opening, HARDWARE_ID, ISSUER_SEED, NODE_SEED, OWNER, PEER, START};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::{fs, io};

fn main() -> io::Result<()> {
    let Some(root) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seeds <corpus dir>");
        std::process::exit(2);
    };
    let pair = Pair::run();
    let message_frames: Vec<Vec<u8>> = pair.traffic.iter().map(|(_, m)| m.encode()).collect();
    let record_bodies: Vec<Vec<u8>> = pair.records.iter().map(Record::encode).collect();
    let snapshots: Vec<Vec<u8>> = pair.nodes.iter().map(|n| n.snapshot().encode()).collect();
    let log = log_of(&record_bodies);

    let mut stream_to_b = Vec::new();
    for (to, msg) in &pair.traffic {
        if *to == 1 {
            stream_to_b.extend(msg.encode());
        }
    }
    let mut wire_message = message_frames.clone();
    wire_message.push(stream_to_b.clone());
    write(&root, "wire_message", &wire_message)?;
    write(&root, "wire_beacon", &pair.beacons.iter().map(Beacon::encode).collect::<Vec<_>>())?;
    let mut frames = message_frames.iter().take(8).cloned().collect::<Vec<_>>();
    frames.push(frame::encode(b""));
    write(&root, "frame", &frames)?;
    write(&root, "persist_record", &record_bodies)?;
    write(&root, "persist_snapshot", &snapshots)?;

    let mut torn = log.clone();
    torn.truncate(log.len() - 3);
    let mut zero_tail = log.clone();
    zero_tail.resize(log.len() + 64, 0);
    let mut damaged = log.clone();
    damaged[log.len() / 2] ^= 0x5a;
    write(&root, "txlog_scan", &[log.clone(), torn, zero_tail, damaged])?;

    let files = [snapshot_file(b"x"), snapshot_file(&snapshots[0])];
    write(&root, "snapshot_file", &files)?;

    let node_messages = [
        seed(Opening::Accepted, pair.traffic.iter().filter(|(to, _)| *to == 1).map(|(_, m)| m)),
        seed(Opening::Accepted, &incoming_merge()),
        seed(Opening::Member, &member_messages(&pair.records)),
        seed(Opening::OutgoingMerge, &outgoing_merge()),
    ];
    write(&root, "node_messages", &node_messages)
}

/// Two nodes of one system with some resources, linked and synced.
struct Pair {
    nodes: [Node; 2],
    now: Now,
    queue: VecDeque<(usize, Message)>,
    /// Every message delivered, with the index of its receiver.
    traffic: Vec<(usize, Message)>,
    beacons: Vec<Beacon>,
    records: Vec<Record>,
}

impl Pair {
    fn run() -> Pair {
        let nodes = [peer::start(11, START), peer::start(12, START)];
        let mut pair = Pair {
            nodes,
            now: START,
            queue: VecDeque::new(),
            traffic: vec![],
            beacons: vec![],
            records: vec![],
        };
        for node in &pair.nodes {
            pair.records.push(Record::Identity(node.snapshot().identity));
        }
        pair.put_resources();
        let link = LinkId(1);
        pair.handle(0, Input::LinkOpened { link, dialed: Some(PeerAddr("10.0.0.2:7001".into())) });
        pair.handle(1, Input::LinkOpened { link, dialed: None });
        pair.deliver();
        for _ in 0..5 {
            pair.now.mono_ms += 1_000;
            pair.now.wall_ms += 1_000;
            for i in 0..2 {
                pair.handle(i, Input::Tick);
            }
            pair.deliver();
        }
        pair
    }

    fn put_resources(&mut self) {
        let me = self.nodes[0].snapshot().identity;
        let license = LicenseIssuer::from_seed(ISSUER_SEED).issue(
            LicenseId(1),
            4,
            HardwareId(HARDWARE_ID.into()),
            START.wall_ms,
        );
        let camera = CameraRecord {
            name: "door".into(),
            url: "rtsp://10.0.0.50/stream".into(),
            parent: me.server,
            preferred: me.server,
            failover_priority: FailoverPriority::Medium,
            recording: true,
            created_ms: START.wall_ms,
        };
        let history = Key::CameraHistory { camera: CameraId(1), server: me.server, start_ms: 5 };
        let puts = [
            (Key::Camera(CameraId(1)), Value::Camera(camera)),
            (Key::License(LicenseId(1)), Value::License(license)),
            (
                Key::Setting { system: me.system, name: "retention_days".into() },
                Value::Setting("30".into()),
            ),
            (history, Value::CameraHistory(HistoryRecord { end_ms: None })),
            (Key::ManualAddress(PeerAddr("192.168.1.7:7001".into())), Value::ManualAddress),
        ];
        for (i, (key, value)) in puts.into_iter().enumerate() {
            let cmd = Command::Put { key, value };
            self.handle(0, Input::Command { id: CommandId(i as u64), cmd });
        }
    }

    fn handle(&mut self, i: usize, input: Input) {
        self.nodes[i].handle(self.now, input);
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Send { msg, .. } => self.queue.push_back((1 - i, msg)),
                Output::Beacon { beacon, .. } => self.beacons.push(beacon),
                Output::Persist(records) => self.records.extend(records),
                _ => {}
            }
        }
    }

    fn deliver(&mut self) {
        while let Some((to, msg)) = self.queue.pop_front() {
            self.traffic.push((to, msg.clone()));
            self.handle(to, Input::Message { link: LinkId(1), msg });
        }
    }
}

/// What a member linked to the fuzzed node sends once up: its own writes and sync requests.
fn member_messages(records: &[Record]) -> Vec<Message> {
    let origin = ReplicaId { server: PEER, epoch: 0 };
    let txns: Vec<Transaction> = records
        .iter()
        .filter_map(|r| match r {
            Record::Txn(t) => Some(t.clone()),
            _ => None,
        })
        .zip(1..)
        .map(|(t, seq)| Transaction { origin, seq, ..t })
        .collect();
    let upto = txns.len() as u64;
    let node = peer::start(NODE_SEED, START).snapshot().identity;
    let half = txns.len() / 2;
    vec![
        Message::Have { covered: vec![(origin, upto)] },
        Message::Push { txns: txns[..half].to_vec() },
        Message::Writes { origin, upto, txns: txns[half..].to_vec() },
        Message::Pull { origin: node.replica(), after: 0, limit: 16 },
        Message::Reach { routes: vec![(PEER, 0), (ServerId(9), 1)] },
        Message::Ping,
        Message::Identity(IdentityChange {
            from: node.system,
            to: node.system,
            name: SystemName::new("renamed").expect("valid name"),
            stamp: Hlc { wall_ms: START.wall_ms + 60_000, logical: 0 },
            sealed_secret: None,
            nonce: [5; 16],
        }),
    ]
}

/// The hello of a server of another system, speaking for `purpose`.
fn other_hello(purpose: Purpose) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        server: ServerId(9),
        system: SystemId::new(1_600_000_000_000, 5),
        name: SystemName::new("other").expect("valid name"),
        name_stamp: Hlc { wall_ms: 1_600_000_000_000, logical: 0 },
        boot: 3,
        nonce: [8; 16],
        hlc: Hlc { wall_ms: START.wall_ms, logical: 1 },
        purpose,
        listen: vec![PeerAddr("10.0.0.9:7001".into())],
    }
}

/// Another system's administrator asking the fuzzed node to merge.
fn incoming_merge() -> Vec<Message> {
    vec![
        Message::Hello(other_hello(Purpose::Merge { user: OWNER.0.into() })),
        Message::Merge(MergeMsg::Proof {
            proof: [1; 32],
            keep_initiator: true,
            servers: vec![ServerId(9)],
            sealed_secret: Some([2; 32]),
        }),
    ]
}

/// The other system answering the fuzzed node's own merge request.
fn outgoing_merge() -> Vec<Message> {
    let system = SystemId::new(1_600_000_000_000, 5);
    vec![
        Message::Hello(other_hello(Purpose::Peer)),
        Message::Merge(MergeMsg::Challenge {
            salt: [1; 16],
            params: KdfParams::CHEAP,
            nonce: [2; 16],
            servers: vec![ServerId(9)],
        }),
        Message::Merge(MergeMsg::Accepted {
            system,
            name: SystemName::new("other").expect("valid name"),
            sealed_secret: Some([3; 32]),
        }),
    ]
}

/// A `node_messages` input: the opening byte, then the messages' frames.
fn seed<'a>(opening: Opening, msgs: impl IntoIterator<Item = &'a Message>) -> Vec<u8> {
    let mut input = vec![opening.byte()];
    for msg in msgs {
        input.extend(msg.encode());
    }
    input
}

fn log_of(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut log = Vec::new();
    for body in bodies {
        encode_into(body, &mut log);
    }
    log
}

/// The snapshot file persistence writes for `body`.
fn snapshot_file(body: &[u8]) -> Vec<u8> {
    let fs = MemFs::default();
    let (mut store, _) = block_on(Persistence::load(fs.clone(), hive::driver::is_record))
        .expect("an empty directory loads");
    block_on(store.write_snapshot(body)).expect("an in-memory write succeeds");
    fs.file("snapshot").expect("the snapshot was written")
}

fn write(root: &Path, target: &str, inputs: &[Vec<u8>]) -> io::Result<()> {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    for (i, input) in inputs.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:03}")), input)?;
    }
    println!("{target}: {} seeds", inputs.len());
    Ok(())
}
