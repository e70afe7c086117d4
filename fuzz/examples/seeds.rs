//! Writes seed inputs for every fuzz target into `<corpus dir>/<target>/`: real traffic between
//! two nodes, the records and snapshots they persist, the files persistence writes, merges and
//! logins played honestly and not, and channel handshakes.
//!
//! Seeds named `regression-*` are inputs that once found a bug, in today's formats. The seeds
//! check themselves where it matters: an honest merge must change the node, an honest login and
//! handshake must succeed, so a harness that silently stopped reaching them fails here.
//!
//! Usage: `cargo run --example seeds -- <corpus dir>`. Generated rather than committed, so the
//! seeds follow the formats as they change.

use hive::storage::Persistence;
use hive_core::auth::{KdfParams, Secret};
use hive_core::frame::{self, encode_into};
use hive_core::hlc::Hlc;
use hive_core::ids::{CameraId, HardwareId, PeerAddr, ServerId, SystemId, SystemName};
use hive_core::instant::{MonoUs, WallMs};
use hive_core::licenses::{LicenseId, LicenseIssuer};
use hive_core::login;
use hive_core::node::{
    ChannelInfo, ChannelKind, Command, CommandId, Input, Keep, LinkId, Node, Now, Output,
};
use hive_core::persist::Record;
use hive_core::resources::{CameraRecord, FailoverPriority, HistoryRecord, Key, Value};
use hive_core::store::{ReplicaId, Transaction};
use hive_core::wire::{
    Beacon, IdentityChange, MergeMsg, MergeOffer, MergeOutcome, Message, RouteAd, Routed,
    RoutedBody, ServerStatus,
};
use hive_fuzz::mem_fs::{block_on, MemFs};
use hive_fuzz::merge::{self, Record as Held, Script, Side, Step};
use hive_fuzz::opaque::{self, Edit, Reached, Transcript};
use hive_fuzz::peer::{self, Opening, Peer, HARDWARE_ID, ISSUER_SEED, NODE_SEED, PEER, START};
use rand::SeedableRng;
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

    let to_b = pair.traffic.iter().filter(|(to, _)| *to == 1).map(|(_, m)| m);
    let node_messages = [
        seed(Opening::MemberChannel, to_b),
        seed(Opening::IncomingMerge, &incoming_merge()),
        seed(Opening::Member, &member_messages(&pair.records)),
        seed(Opening::OutgoingMerge, &outgoing_merge(KdfParams::CHEAP)),
    ];
    write(&root, "node_messages", &node_messages)?;
    let regressions = [
        // The node ran whatever key stretching a merge challenge asked for: gigabytes, or
        // passes for minutes (before protocol 3 the challenge came with a salt, not KE2).
        unreasonable_challenge(KdfParams { memory_kib: u32::MAX, passes: 1 }),
        unreasonable_challenge(KdfParams { memory_kib: 8, passes: u32::MAX }),
    ];
    let names = ["crash-merge-challenge-kdf-memory", "timeout-merge-challenge-kdf-passes"];
    write_named(&root, "node_messages", &names, &regressions)?;

    write(&root, "merge_messages", &merge_scripts())?;
    write(&root, "opaque_messages", &opaque_transcripts())?;
    write(&root, "channel_handshake", &handshakes())?;
    write(&root, "archive_segment", &archive_segments())?;
    write(&root, "rtsp_request", &rtsp_conversations())?;
    write(&root, "rtp_depacketize", &rtp_streams())?;
    write(&root, "relay_messages", &relay_conversations())
}

/// A request, then an answer and frames as they would come back, cut into transport pieces.
fn relay_conversations() -> Vec<Vec<u8>> {
    use hive_media::frame::{Codec, Frame};
    use hive_media::relay::{Message, Opening, Request, Start};
    let mut bytes = bytes::BytesMut::new();
    Opening::Callback { token: 0x5eed }.encode(&mut bytes);
    let starts = [Start::Live, Start::Keyframe(1_796_000_000_000_000), Start::Describe];
    for (n, start) in starts.into_iter().enumerate() {
        Request {
            camera: format!("{:032x}", 0xabcd_u128 + n as u128),
            stream: (n % 2) as u8,
            start,
            speed: 1.0 + n as f64,
            until_us: (n == 1).then_some(1_796_000_060_000_000),
            hops_left: 16,
            server: None,
        }
        .encode(&mut bytes);
    }
    let sps_pps =
        hive_media::nal::join_length_prefixed([&[0x67, 0x42, 0, 0x1f][..], &[0x68, 0xce]]);
    let parameter_sets = hive_media::nal::ParameterSets::of_unit(Codec::H264, &sps_pps);
    Message::Info { codec: Codec::H264, parameter_sets }.encode(&mut bytes);
    for n in 0..3i64 {
        let unit = hive_media::nal::join_length_prefixed([&[0x65u8; 40][..]]);
        let frame = Frame {
            time_us: 1_796_000_000_000_000 + n * 40_000,
            keyframe: n == 0,
            codec: Codec::H264,
            data: unit,
        };
        Message::Frame(frame).encode(&mut bytes);
    }
    Message::NotFound.encode(&mut bytes);
    Message::End.encode(&mut bytes);
    // Whole, and cut into pieces of 7 bytes as a transport might deliver them.
    let mut whole = Vec::new();
    hive_fuzz::reader::put_bytes(&mut whole, &bytes);
    let mut pieces = Vec::new();
    for piece in bytes.chunks(7) {
        hive_fuzz::reader::put_bytes(&mut pieces, piece);
    }
    vec![whole, pieces]
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
        // Both ends of one member channel, as the driver reports it after the handshake.
        let key = |i: usize| pair.nodes[i].channel_keys().0.public;
        let channel = |i| ChannelInfo {
            kind: ChannelKind::Member,
            peer_key: key(i),
            handshake_hash: peer::HANDSHAKE_HASH,
        };
        let (to_a, to_b) = (channel(1), channel(0));
        let dialed = Some(PeerAddr("10.0.0.2:7001".into()));
        pair.handle(0, Input::LinkOpened { link, dialed, channel: to_a });
        pair.handle(1, Input::LinkOpened { link, dialed: None, channel: to_b });
        pair.deliver();
        for _ in 0..5 {
            pair.now.mono = pair.now.mono.plus_ms(1_000);
            pair.now.mono_us = MonoUs(pair.now.mono_us.0 + 1_000_000);
            pair.now.wall = WallMs(pair.now.wall.0 + 1_000);
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
            START.wall.0,
        );
        let camera = CameraRecord {
            name: "door".into(),
            url: "rtsp://10.0.0.50/stream".into(),
            secondary_url: None,
            preferred: me.server,
            failover_priority: FailoverPriority::Medium,
            recording: true,
            created_ms: START.wall.0,
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
            let received = self.now.mono_us;
            self.handle(to, Input::Message { link: LinkId(1), msg, received });
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
        Message::Reach {
            routes: vec![
                RouteAd { server: PEER, hops: 0, status: ServerStatus::default(), heard_ago_ms: 0 },
                RouteAd {
                    server: ServerId(9),
                    hops: 1,
                    status: ServerStatus {
                        up_since_ms: 5,
                        external_time: true,
                        failover_ready: true,
                        stamp: Hlc { wall_ms: 7, logical: 1 },
                    },
                    heard_ago_ms: 0,
                },
            ],
        },
        Message::Routed(Routed {
            from: PEER,
            to: node.server,
            ttl: 8,
            body: RoutedBody::TimeRequest { id: 1 },
        }),
        Message::Ping,
        Message::DialMedia { token: 0x5eed },
        Message::Identity(IdentityChange {
            from: node.system,
            to: node.system,
            name: SystemName::new("renamed").expect("valid name"),
            stamp: Hlc { wall_ms: START.wall.0 + 60_000, logical: 0 },
            new_secret: None,
        }),
    ]
}

/// Another system's administrator logging in to the fuzzed node with a genuine KE1, then
/// sending a finish that does not verify.
fn incoming_merge() -> Vec<Message> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let (_, ke1) = login::client_start(peer::OWNER.1, &mut rng).expect("a client starts");
    vec![
        Message::Merge(MergeMsg::Login { user: peer::OWNER.0.into(), ke1 }),
        Message::Merge(MergeMsg::Finish { ke3: vec![1; 64], offer: vec![2; 48] }),
    ]
}

/// The other system answering the fuzzed node's own merge login with a genuine KE2 (asking
/// for `params`), then an outcome that does not open.
fn outgoing_merge(params: KdfParams) -> Vec<Message> {
    let peer = Peer::connect(Opening::OutgoingMerge);
    let Some(Message::Merge(MergeMsg::Login { user, ke1 })) = peer.sent().last() else {
        panic!("the node's merge starts with its login: {:?}", peer.sent());
    };
    let record = peer::login_record(peer::OWNER.0, peer::OWNER.1, 21);
    let dummy = login::dummy_setup([0; 32]);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
    let context = peer::HANDSHAKE_HASH;
    let (_, ke2) = login::server_start(Some(&record), &dummy, user, ke1, &context, &mut rng)
        .expect("the node's login parses");
    vec![
        Message::Merge(MergeMsg::Challenge { ke2, params }),
        Message::Merge(MergeMsg::Accepted { outcome: vec![3; 48] }),
    ]
}

/// A `node_messages` input: the node's own merge meets a challenge asking for `params`.
fn unreasonable_challenge(params: KdfParams) -> Vec<u8> {
    seed(Opening::OutgoingMerge, &outgoing_merge(params)[..1])
}

fn offer_bytes(offer: &MergeOffer) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(offer, &mut out).expect("CBOR encoding into memory");
    out
}

fn outcome_bytes(outcome: &MergeOutcome) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(outcome, &mut out).expect("CBOR encoding into memory");
    out
}

/// `merge_messages` inputs: honest merges from either side (checked to change the node), wrong
/// passwords, users who may not merge, relayed logins, the back-off, and raw messages.
fn merge_scripts() -> Vec<Vec<u8>> {
    let node = peer::start(NODE_SEED, START).snapshot().identity;
    let other = SystemId::new(WallMs(1_600_000_000_000), 5);
    let other_name = SystemName::new("other").expect("valid name");
    let other_secret = Secret::from_text("other secret");
    let offer = |keep_initiator: bool, system: SystemId, servers: Vec<ServerId>| {
        let secret = keep_initiator.then(|| other_secret.clone());
        let name = other_name.clone();
        Step::Finish {
            offer: offer_bytes(&MergeOffer { system, name, keep_initiator, servers, secret }),
        }
    };
    let outcome = |system: SystemId, secret: Option<Secret>| Step::Accept {
        outcome: outcome_bytes(&MergeOutcome { system, name: other_name.clone(), secret }),
    };
    let login = |user: u8, right_password: bool| Step::Login { user, right_password };
    let remote = |steps: Vec<Step>| Script { side: Side::Remote, steps };
    let local = |steps: Vec<Step>| Script { side: Side::Initiator(Keep::Local), steps };
    let kept_remote = |steps: Vec<Step>| Script { side: Side::Initiator(Keep::Remote), steps };
    let others = vec![ServerId(9)];

    let mut backoff = Vec::new();
    for _ in 0..merge_backoff_failures() {
        backoff.extend([login(0, false), offer(true, other, others.clone()), Step::Reopen]);
    }
    backoff.extend([login(0, true), Step::Wait { ms: 120_000 }, Step::Reopen]);
    backoff.extend([login(0, true), offer(true, other, others.clone())]);

    let mut no_secret = offer(true, other, others.clone());
    if let Step::Finish { offer } = &mut no_secret {
        let o = MergeOffer {
            system: other,
            name: other_name.clone(),
            keep_initiator: true,
            servers: others.clone(),
            secret: None,
        };
        *offer = offer_bytes(&o);
    }

    // (script, whether the node must end in the other system, whether it must change at all)
    let checked = [
        (remote(vec![login(0, true), offer(true, other, others.clone())]), true, true),
        (remote(vec![login(0, true), offer(false, other, others.clone())]), false, false),
        (remote(vec![login(0, true), offer(true, node.system, others.clone())]), false, false),
        (remote(vec![login(0, true), offer(true, other, vec![node.server])]), false, false),
        (remote(vec![login(0, true), no_secret]), false, false),
        (remote(vec![login(0, true), Step::Finish { offer: b"not cbor".to_vec() }]), false, false),
        (remote(vec![login(0, false), offer(true, other, others.clone())]), false, false),
        (
            remote(vec![
                login(1, true),
                offer(true, other, others.clone()),
                Step::Reopen,
                login(2, true),
                offer(true, other, others.clone()),
                Step::Reopen,
                login(3, true),
                offer(true, other, others.clone()),
            ]),
            false,
            false,
        ),
        (remote(backoff), true, true),
        (
            remote(vec![
                offer(true, other, others.clone()),
                login(0, true),
                login(0, true),
                Step::Msg(MergeMsg::Accepted { outcome: vec![1; 40] }),
            ]),
            false,
            false,
        ),
        (
            remote(vec![
                Step::Msg(MergeMsg::Login { user: "admin".into(), ke1: vec![0; 96] }),
                Step::Msg(MergeMsg::Finish { ke3: vec![0; 64], offer: vec![] }),
            ]),
            false,
            false,
        ),
        (
            local(vec![Step::Challenge { record: Held::Right }, outcome(node.system, None)]),
            false,
            true,
        ),
        (
            kept_remote(vec![
                Step::Challenge { record: Held::Right },
                outcome(other, Some(other_secret.clone())),
            ]),
            true,
            true,
        ),
        (
            kept_remote(vec![Step::Challenge { record: Held::Right }, outcome(other, None)]),
            false,
            false,
        ),
        (
            local(vec![
                Step::Challenge { record: Held::WrongPassword },
                outcome(node.system, None),
            ]),
            false,
            false,
        ),
        (
            kept_remote(vec![
                Step::Challenge { record: Held::Unknown },
                outcome(other, Some(other_secret.clone())),
            ]),
            false,
            false,
        ),
        (
            local(vec![Step::Challenge { record: Held::Relayed }, outcome(node.system, None)]),
            false,
            false,
        ),
        (
            local(vec![
                Step::Msg(MergeMsg::Refused(hive_core::wire::MergeRefusal::TooManyAttempts {
                    retry_after_ms: 5,
                })),
                Step::Reopen,
                Step::Msg(MergeMsg::Challenge { ke2: vec![0; 320], params: KdfParams::CHEAP }),
                Step::Reopen,
                Step::Challenge { record: Held::Right },
                Step::Accept { outcome: b"garbage".to_vec() },
            ]),
            false,
            false,
        ),
    ];
    let mut inputs = Vec::new();
    for (script, moves, changes) in checked {
        assert_eq!(Script::decode(&script.encode()), script, "scripts round-trip");
        let out = merge::run(&script);
        let moved = out.end.identity.system == other;
        assert_eq!(moved, moves, "{script:?} moved: {out:?}");
        assert_eq!(out.end != out.start, changes, "{script:?} changed: {out:?}");
        if changes {
            assert!(out.logged_in, "{script:?}");
        }
        inputs.push(script.encode());
    }
    // Regressions: challenges asking for unbounded key stretching.
    for params in [
        KdfParams { memory_kib: u32::MAX, passes: 1 },
        KdfParams { memory_kib: 8, passes: u32::MAX },
    ] {
        let script = local(vec![Step::Msg(MergeMsg::Challenge { ke2: vec![0; 320], params })]);
        merge::run(&script);
        inputs.push(script.encode());
    }
    inputs
}

/// Failed merge logins of one name that start its back-off: one more than the free ones
/// (`MERGE_FAILURES_FREE` in `core/src/node/merge.rs`, private to the core).
fn merge_backoff_failures() -> u32 {
    4
}

/// `opaque_messages` inputs: the genuine login (checked to succeed), one bit flipped in each
/// part (checked to fail for the messages), and each wrong scenario.
fn opaque_transcripts() -> Vec<Vec<u8>> {
    let genuine = Transcript::genuine();
    assert_eq!(opaque::run(&genuine), Reached::Opened);
    let mut inputs = vec![genuine.encode()];
    for part in 0..6 {
        let mut t = Transcript::genuine();
        t.edits[part] = Edit::Xor { at: 5, mask: vec![1] };
        let reached = opaque::run(&t);
        assert!(part < 2 || reached < Reached::Opened, "part {part} changed: {reached:?}");
        inputs.push(t.encode());
    }
    for flags in [1u8, 2, 4] {
        let t = Transcript {
            wrong_password: flags & 1 != 0,
            relayed: flags & 2 != 0,
            unknown_user: flags & 4 != 0,
            ..Transcript::genuine()
        };
        assert!(opaque::run(&t) <= Reached::ServerStarted, "{t:?}");
        inputs.push(t.encode());
    }
    let mut t = Transcript::genuine();
    t.edits[2] = Edit::Replace(vec![]);
    t.edits[3] = Edit::Replace(vec![0; 320]);
    assert_eq!(Transcript::decode(&t.encode()), t);
    opaque::run(&t);
    inputs.push(t.encode());
    inputs
}

/// `channel_handshake` inputs: the honest initiator of each kind (checked to succeed), each
/// with a byte flipped late (checked to fail), and broken preambles and lengths.
fn handshakes() -> Vec<Vec<u8>> {
    use hive_fuzz::channel::{genuine, respond};
    let mut inputs = Vec::new();
    for kind in [ChannelKind::Member, ChannelKind::Merge, ChannelKind::Media] {
        let honest = genuine(kind).to_vec();
        assert!(respond(&honest).result.is_ok(), "the honest {kind:?} handshake succeeds");
        let mut flipped = honest.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(respond(&flipped).result.is_err(), "a flipped {kind:?} handshake fails");
        inputs.extend([honest, flipped]);
    }
    let member = genuine(ChannelKind::Member);
    let mut kind_swapped = genuine(ChannelKind::Merge).to_vec();
    kind_swapped[..8].copy_from_slice(&member[..8]);
    let mut old_version = member.to_vec();
    old_version[5] = 2;
    let mut oversized = member[..8].to_vec();
    oversized.extend([0xff, 0xff]);
    oversized.extend([0u8; 64]);
    inputs.extend([kind_swapped, old_version, member[..8].to_vec(), oversized]);
    inputs
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

/// Segment files as the archive writes them, and as crashes and failing disks leave them: whole,
/// cut short, with a zeroed tail, a flipped byte in the middle, a damaged header. Then one
/// input that `hive_fuzz::archive::segment_of` reads as records with damage between them.
fn archive_segments() -> Vec<Vec<u8>> {
    let mut whole = hive_fuzz::archive::HEADER.encode().to_vec();
    for n in 0..12u8 {
        let frame = hive_media::frame::Frame {
            time_us: 1_700_000_000_000_000 + i64::from(n) * 40_000,
            keyframe: n % 5 == 0,
            codec: hive_media::frame::Codec::H264,
            data: bytes::Bytes::from(vec![n; 20 + usize::from(n) * 13]),
        };
        let at = whole.len();
        whole.resize(at + hive_media::archive::record::record_len(frame.data.len()), 0);
        hive_media::archive::record::encode(&frame, &mut whole[at..]).expect("sized for it");
    }
    let mut cut = whole.clone();
    cut.truncate(whole.len() - 21);
    let mut zero_tail = whole.clone();
    zero_tail.resize(whole.len() + 256, 0);
    let mut flipped = whole.clone();
    flipped[whole.len() / 2] ^= 0x10;
    let mut bad_header = whole.clone();
    bad_header[20] ^= 1;
    // Three records, eight words of garbage, a record, a flip in it, four zero words, a record.
    let mut structured = Vec::new();
    for payload in [&b"first"[..], b"second", b"third"] {
        structured.push(0);
        hive_fuzz::reader::put_bytes(&mut structured, payload);
        structured.extend([40, 1]);
    }
    structured.extend([170, 8]);
    structured.extend((0..64).map(|i| i as u8));
    structured.push(1);
    hive_fuzz::reader::put_bytes(&mut structured, b"hit by a flip");
    structured.extend([40, 0, 230, 35, 0, 3, 210, 4, 2]);
    hive_fuzz::reader::put_bytes(&mut structured, b"after the damage");
    structured.extend([40, 1]);
    vec![whole, cut, zero_tail, flipped, bad_header, structured]
}

/// Writes `inputs` as `regression-<name>` seeds of `target`.
fn write_named(root: &Path, target: &str, names: &[&str], inputs: &[Vec<u8>]) -> io::Result<()> {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    for (name, input) in names.iter().zip(inputs) {
        fs::write(dir.join(format!("regression-{name}")), input)?;
    }
    Ok(())
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

/// What RTSP clients send: ffmpeg's seek (PLAY, PAUSE, PLAY npt), a VLC-like live session, a
/// clock seek with Scale, and hostile openings; each behind the target's header (chunk size,
/// time now, last frame sent).
fn rtsp_conversations() -> Vec<Vec<u8>> {
    let url = "rtsp://127.0.0.1:8554/cam1";
    let setup = |cseq: u32, query: &str| {
        format!(
            "SETUP {url}/trackID=0{query} RTSP/1.0\r\nCSeq: {cseq}\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        )
    };
    let play = |cseq: u32, extra: &str| {
        format!("PLAY {url} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: fuzz\r\n{extra}\r\n")
    };
    let conversations = [
        format!(
            "OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n\
             DESCRIBE {url}?pos=1796277600000 RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n\
             {}{}PAUSE {url} RTSP/1.0\r\nCSeq: 5\r\nSession: fuzz\r\n\r\n{}\
             TEARDOWN {url} RTSP/1.0\r\nCSeq: 7\r\nSession: fuzz\r\n\r\n",
            setup(3, "?pos=1796277600000"),
            play(4, "Range: npt=0.000-\r\n"),
            play(6, "Range: npt=4.500-\r\n"),
        ),
        format!(
            "DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\n\r\n{}{}\
             GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 5\r\nSession: fuzz\r\n\r\n$\x01\x00\x04abcd",
            setup(3, ""),
            play(4, ""),
        ),
        format!(
            "{}{}",
            setup(3, "?speed=4&stream=1"),
            play(4, "Range: clock=20261203T060000.250Z-20261203T070000Z\r\nScale: 2\r\n"),
        ),
        "PLAY rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nRange: npt=99999999999999-\r\n\r\n".into(),
        "ANNOUNCE rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 4\r\n\r\nabcd".into(),
        "SETUP rtsp://h/cam1 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n".into(),
    ];
    conversations
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut seed = vec![if i % 2 == 0 { 255 } else { 7 }];
            seed.extend_from_slice(&1_796_277_600_000_000u64.to_le_bytes());
            seed.extend_from_slice(&1_796_277_601_800_000u64.to_le_bytes());
            seed.extend_from_slice(text.as_bytes());
            seed
        })
        .collect()
}

/// RTP streams as cameras send them: access units of an H.264 and an H.265 stream (parameter
/// sets, a keyframe fragmented into FU packets, small frames), packetized by our own packetizer,
/// each packet as `u16 LE length | packet`.
fn rtp_streams() -> Vec<Vec<u8>> {
    use hive_media::frame::Codec;
    use hive_media::rtp::Packetizer;
    let streams = [
        (Codec::H264, vec![vec![0x67, 0x42, 0, 0x1f], vec![0x68, 0xce], vec![0x65; 3000]]),
        (
            Codec::H265,
            vec![
                vec![0x40, 1, 0xc],
                vec![0x42, 1, 1],
                vec![0x44, 1, 0xc0],
                vec![0x26, 1, 0xaf, 0x80],
            ],
        ),
    ];
    let mut seeds = Vec::new();
    for (codec, keyframe_nals) in streams {
        let mut packets = bytes::BytesMut::new();
        let mut packetizer = Packetizer::new(codec, 0x1234_5678, 65_530);
        let small: Vec<u8> = match codec {
            Codec::H264 => vec![0x41; 300],
            Codec::H265 => [vec![0x02, 0x01], vec![0x55; 300]].concat(),
        };
        let mut keyframe = keyframe_nals;
        if codec == Codec::H265 {
            keyframe.push([vec![0x26, 0x01], vec![0x77; 3000]].concat());
        }
        let units = [
            hive_media::nal::join_length_prefixed(keyframe.iter().map(Vec::as_slice)),
            hive_media::nal::join_length_prefixed([small.as_slice(), small.as_slice()]),
        ];
        for (n, unit) in units.iter().enumerate() {
            let rtp_time = 90_000 + 3_000 * n as u32;
            packetizer.packetize(unit, rtp_time, 0, &mut packets).expect("well formed");
        }
        let mut seed = Vec::new();
        let mut rest = &packets[..];
        // Interleaved framing: `$`, channel, u16 BE length.
        while rest.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            hive_fuzz::reader::put_bytes(&mut seed, &rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        seeds.push(seed);
    }
    seeds
}
