//! A hostile peer against real `hive` processes: each test performs one attack of issue 7 on
//! the peer port or the discovery group, with the client in `hive_tests::hostile`, and asserts
//! that it now fails and that the servers carry on unharmed.

use hive_core::auth::Secret;
use hive_core::hlc::Hlc;
use hive_core::ids::{PeerAddr, ServerId, SystemId, SystemName};
use hive_core::login;
use hive_core::node::ChannelKind;
use hive_core::persist::Snapshot;
use hive_core::resources::{Key, Value};
use hive_core::store::{ReplicaId, Transaction};
use hive_core::wire::{Beacon, Hello, MergeMsg, MergeRefusal, Message, PROTOCOL_VERSION};
use hive_tests::hostile::*;
use hive_tests::*;
use serde_json::json;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECRET: &str = "secret-shop";
/// What a server logs for an accepted connection whose handshake failed.
const HANDSHAKE_FAILED: &str = "failed its handshake";
/// How long the attacker waits for a server to answer or close.
const PATIENCE: Duration = Duration::from_secs(30);
/// Failed merge logins of one name before the back-off (`core/src/node/merge.rs`).
const MERGE_FAILURES_FREE: usize = 3;
/// Connections a server keeps in their handshake at once (`shell/src/driver/links.rs`).
const HALF_OPEN_MAX: usize = 64;

/// Lines of `hive`'s log containing `needle`.
fn count(h: &Hive, needle: &str) -> usize {
    h.log_text().lines().filter(|l| l.contains(needle)).count()
}

fn server_id(h: &Hive) -> ServerId {
    h.system()["server_id"].as_str().unwrap().parse().unwrap()
}

fn system_id(h: &Hive) -> SystemId {
    h.system()["id"].as_str().unwrap().parse().unwrap()
}

/// A Hello of a new server `server` answering `theirs`, stamped `hlc`.
fn hello_as(theirs: &Hello, server: ServerId, hlc: Hlc) -> Message {
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        server,
        system: theirs.system,
        name: theirs.name.clone(),
        name_stamp: theirs.name_stamp,
        boot: rand::random(),
        hlc,
        listen: Vec::new(),
    })
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of a 128-bit id as CBOR would carry them (big-endian, leading zeros dropped).
fn id_bytes(id: u128) -> Vec<u8> {
    id.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect()
}

/// Two servers of one system linked over multicast discovery.
fn two_members() -> (Hive, Hive) {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Shop", SECRET, port));
    let b = Hive::start(Spec::new("b", "Shop", SECRET, port));
    wait_for("a and b to link", CONVERGE, || merged(&[&a, &b]));
    (a, b)
}

/// Server `b`, and `a` whose only way to `b` is its manual peer `proxy` (separate discovery
/// groups: no multicast between them).
fn behind_proxy(rt: &tokio::runtime::Runtime, mode: ProxyMode) -> (Hive, Hive, Proxy) {
    let b = Hive::start(Spec::new("b", "Shop", SECRET, discovery_port()));
    let proxy = Proxy::start(rt, b.peer, mode, stranger_keys());
    let mut spec = Spec::new("a", "Shop", SECRET, discovery_port());
    spec.peers = vec![proxy.addr.to_string()];
    (Hive::start(spec), b, proxy)
}

#[test]
fn strangers_reflections_and_relays_without_the_secret_get_no_link_and_read_nothing() {
    let rt = runtime();
    let port = discovery_port();
    let b = Hive::start(Spec::new("b", "Shop", SECRET, port));
    // A also dials the attacker, who poses as a third server: the first time the attacker
    // answers with keys of its own, later it relays A's handshake to B and back.
    let proxy = Proxy::start(&rt, b.peer, ProxyMode::TerminateFirst, stranger_keys());
    let mut spec = Spec::new("a", "Shop", SECRET, port);
    spec.peers = vec![proxy.addr.to_string()];
    let a = Hive::start(spec);
    wait_for("a and b to link", CONVERGE, || merged(&[&a, &b]));
    let failed_before = (count(&a, HANDSHAKE_FAILED), count(&b, HANDSHAKE_FAILED));

    rt.block_on(async {
        for target in [a.peer, b.peer] {
            // By hand: the responder's second message says nothing, and after a third message
            // under the wrong key nothing more comes (no key confirmation, no frame).
            let keys = stranger_keys();
            let (mut stream, mut hs, second) = start_member_handshake(target, &keys).await;
            let mut payload = vec![0u8; 1024];
            let n = hs.read_message(&second, &mut payload).expect("message 2 needs no key yet");
            assert_eq!(n, 0, "the responder says nothing before the initiator proved the key");
            let mut third = vec![0u8; 1024];
            let n = hs.write_message(&[], &mut third).unwrap();
            write_message(&mut stream, &third[..n]).await.unwrap();
            let (rest, closed) = read_to_close(&mut stream, PATIENCE).await;
            assert!(closed, "the server keeps a stranger's connection open");
            assert!(rest.is_empty(), "a stranger got {} bytes after its proof", rest.len());
            // With the server's own handshake code.
            let refused = Channel::open(target, ChannelKind::Member, &stranger_keys()).await;
            assert!(refused.is_err(), "a stranger completed a member handshake");
        }
        // Reflection: each server's second message handed to the other as the third.
        let keys = stranger_keys();
        let (mut to_a, _, second_a) = start_member_handshake(a.peer, &keys).await;
        let (mut to_b, _, second_b) = start_member_handshake(b.peer, &keys).await;
        let _ = write_message(&mut to_b, &second_a).await;
        let _ = write_message(&mut to_a, &second_b).await;
        for stream in [&mut to_a, &mut to_b] {
            let (rest, closed) = read_to_close(stream, PATIENCE).await;
            assert!(closed && rest.is_empty(), "a reflected handshake got {} bytes", rest.len());
        }
    });

    // The attacker dialled by A: its own keys fail both ways; its relay carries only ciphertext.
    let relayed = wait_for("A to dial the attacker twice", CONVERGE, || {
        let r = proxy.relayed();
        (r.len() >= 2 && r[1].to_responder.len() >= 3 && r[1].to_initiator.len() >= 3, r)
    });
    let first = &relayed[0];
    assert!(first.initiator_handshake.is_some(), "A finished a handshake with the attacker");
    assert!(first.responder_handshake.is_some(), "B finished a handshake with the attacker");
    assert!(first.plaintext.is_empty(), "the attacker read {:?}", first.plaintext);
    let names: [&[u8]; 4] = [b"Shop", b"listen", b"name_stamp", b"covered"];
    for (n, conn) in relayed.iter().enumerate().skip(1) {
        let bytes: Vec<u8> =
            conn.to_responder.iter().chain(&conn.to_initiator).flatten().copied().collect();
        for name in names {
            assert!(!contains(&bytes, name), "connection {n} carried {name:?} in the clear");
        }
        for id in [server_id(&a).0, server_id(&b).0, system_id(&a).0] {
            assert!(!contains(&bytes, &id_bytes(id)), "connection {n} carried an id in the clear");
        }
    }
    wait_for("the failed handshakes in the logs", CONVERGE, || {
        let now = (count(&a, HANDSHAKE_FAILED), count(&b, HANDSHAKE_FAILED));
        (now.0 >= failed_before.0 + 3 && now.1 >= failed_before.1 + 3, now)
    });
    let (linked, systems) = merged(&[&a, &b]);
    assert!(linked, "a and b lost their link: {systems:#?}");
    for h in [&a, &b] {
        assert_eq!(h.system()["servers"].as_array().unwrap().len(), 2, "no third server appeared");
    }
}

#[test]
fn a_recorded_handshake_replayed_to_the_server_is_refused() {
    let rt = runtime();
    let (a, b, proxy) = behind_proxy(&rt, ProxyMode::Relay);
    wait_for("a and b to link through the proxy", CONVERGE, || merged(&[&a, &b]));
    let recorded = wait_for("a recorded link that carried frames", CONVERGE, || {
        let first = proxy.relayed().into_iter().next();
        (first.as_ref().is_some_and(|c| c.to_responder.len() >= 4), first)
    })
    .unwrap();
    let failed_before = count(&b, HANDSHAKE_FAILED);
    rt.block_on(async {
        // Everything A sent, at once.
        let mut stream = TcpStream::connect(b.peer).await.unwrap();
        let _ = stream.write_all(&recorded.preamble).await;
        for m in &recorded.to_responder {
            let _ = write_message(&mut stream, m).await;
        }
        let (answer, closed) = read_to_close(&mut stream, PATIENCE).await;
        assert!(closed, "the replay was not closed");
        // B's fresh second handshake message, then nothing.
        let second = recorded.to_initiator[0].len();
        assert_eq!(answer.len(), 2 + second, "B sent more than its second handshake message");
        assert_ne!(&answer[2..], &recorded.to_initiator[0][..], "B reused its ephemeral key");

        // Step by step, as a careful attacker would.
        let mut stream = TcpStream::connect(b.peer).await.unwrap();
        stream.write_all(&recorded.preamble).await.unwrap();
        write_message(&mut stream, &recorded.to_responder[0]).await.unwrap();
        let fresh = read_message(&mut stream).await.expect("B's second message");
        assert_ne!(fresh, recorded.to_initiator[0]);
        let _ = write_message(&mut stream, &recorded.to_responder[1]).await;
        let (rest, closed) = read_to_close(&mut stream, PATIENCE).await;
        assert!(closed && rest.is_empty(), "a replayed proof got {} bytes", rest.len());
    });
    wait_for("both replays refused in B's log", CONVERGE, || {
        let n = count(&b, HANDSHAKE_FAILED);
        (n >= failed_before + 2, n)
    });
    assert!(merged(&[&a, &b]).0, "the real link suffered");
}

#[test]
fn a_relay_that_flips_a_byte_after_the_handshake_gets_the_link_closed() {
    let rt = runtime();
    let (a, b, proxy) = behind_proxy(&rt, ProxyMode::FlipFirstTransport);
    let relayed = wait_for("the flipped link closed by B", CONVERGE, || {
        let r = proxy.relayed();
        (r.first().is_some_and(|c| c.flipped && c.responder_closed), r)
    });
    assert!(relayed[0].plaintext.is_empty());
    wait_for("B to say why it closed the link", CONVERGE, || {
        let n = count(&b, "failed authentication");
        (n >= 1, b.log_text())
    });
    // A redials through the proxy, which now relays faithfully.
    wait_for("a and b to link through the proxy unflipped", CONVERGE, || merged(&[&a, &b]));
    let (status, _) = a.api().post("/api/settings", &json!({ "name": "after-flip", "value": "a" }));
    assert_eq!(status, 201);
    let (status, _) = b.api().post("/api/settings", &json!({ "name": "from-b", "value": "b" }));
    assert_eq!(status, 201);
    for h in [&a, &b] {
        wait_for("both settings intact on both servers", CONVERGE, || {
            let (_, s) = h.api().get("/api/settings");
            (s["after-flip"] == "a" && s["from-b"] == "b", s)
        });
    }
    assert!(count(&a, "ProtocolViolation") + count(&b, "ProtocolViolation") == 0);
}

#[test]
fn a_man_in_the_middle_without_the_secret_gets_no_member_link() {
    let rt = runtime();
    let (a, b, proxy) = behind_proxy(&rt, ProxyMode::Terminate);
    let relayed = wait_for("A to try the man in the middle three times", CONVERGE, || {
        let r = proxy.relayed();
        let tried = r.iter().filter(|c| c.initiator_handshake.is_some()).count();
        (tried >= 3, r)
    });
    for c in relayed.iter().filter(|c| c.initiator_handshake.is_some()) {
        assert!(c.responder_handshake.is_some(), "B accepted the man in the middle: {c:?}");
        assert!(c.plaintext.is_empty(), "the man in the middle read {:?}", c.plaintext);
    }
    for h in [&a, &b] {
        let s = h.system();
        assert_eq!(s["servers"].as_array().unwrap().len(), 1, "{s:#}");
    }
}

/// `POST /api/merge` on `from` towards the peer address `to` as `admin` with `password`.
fn merge(from: &Hive, to: SocketAddr, password: &str) -> (u16, serde_json::Value) {
    let body =
        json!({ "url": to.to_string(), "user": "admin", "password": password, "keep": "remote" });
    from.api().post("/api/merge", &body)
}

fn alpha_and_beta() -> (Hive, Hive) {
    let a1 = Hive::start(Spec::new("a1", "Alpha", "secret-alpha", discovery_port()));
    let b1 = Hive::start(Spec::new("b1", "Beta", "secret-beta", discovery_port()));
    (a1, b1)
}

#[test]
fn a_man_in_the_middle_of_a_merge_cannot_relay_the_login_and_nothing_changes() {
    let rt = runtime();
    let (a1, b1) = alpha_and_beta();
    let before = (a1.system()["id"].clone(), b1.system()["id"].clone());
    let proxy = Proxy::start(&rt, b1.peer, ProxyMode::Terminate, stranger_keys());
    let (status, body) = merge(&a1, proxy.addr, OWNER_PASSWORD);
    assert_ne!(status, 200, "a merge through a man in the middle succeeded: {body}");
    assert_eq!(body["error"], "remote_credentials_rejected", "{body}");
    let relayed = proxy.relayed();
    let c = &relayed[0];
    assert_eq!(c.initiator_handshake, None, "merge channels need no secret: both sessions open");
    assert_eq!(c.responder_handshake, None);
    let kinds: Vec<(bool, &str)> = c
        .plaintext
        .iter()
        .map(|(up, m)| match m {
            Message::Merge(MergeMsg::Login { .. }) => (*up, "Login"),
            Message::Merge(MergeMsg::Challenge { .. }) => (*up, "Challenge"),
            Message::Merge(MergeMsg::Finish { .. }) => (*up, "Finish"),
            Message::Merge(MergeMsg::Accepted { .. }) => (*up, "Accepted"),
            m => (*up, m.kind()),
        })
        .collect();
    assert_eq!(kinds[..2], [(true, "Login"), (false, "Challenge")], "relayed: {kinds:?}");
    assert!(!kinds.iter().any(|k| k.1 == "Accepted" || k.1 == "Finish"), "{kinds:?}");
    wait_for("B to log the failed merge login", CONVERGE, || {
        (count(&b1, "MergeLoginFailed") >= 1, b1.log_text())
    });
    assert_eq!((a1.system()["id"].clone(), b1.system()["id"].clone()), before);
    assert_eq!(
        (a1.system()["name"].clone(), b1.system()["name"].clone()),
        ("Alpha".into(), "Beta".into())
    );
    // The password was right: without the man in the middle the same merge goes through.
    let (status, body) = merge(&a1, b1.peer, OWNER_PASSWORD);
    assert_eq!(status, 200, "{body}");
}

/// Opens a merge channel to `to` and logs in as `user`: the first message that comes back.
async fn merge_login(to: SocketAddr, user: &str) -> (Channel, Message) {
    let mut ch =
        Channel::open(to, ChannelKind::Merge, &stranger_keys()).await.expect("merge channel");
    let (_, ke1) = login::client_start("a guess", &mut rand::rngs::OsRng).unwrap();
    ch.send(&Message::Merge(MergeMsg::Login { user: user.into(), ke1 })).await.unwrap();
    let answer = ch.recv(PATIENCE).await.expect("an answer to a merge login");
    (ch, answer)
}

#[test]
fn merge_logins_for_the_owner_an_unknown_name_and_a_viewer_get_alike_challenges_and_nothing_else() {
    let rt = runtime();
    let b = Hive::start(Spec::new("beta-server", "Beta", "secret-beta", discovery_port()));
    let viewer = json!({ "name": "watcher", "password": "watcher-password", "role": "viewer" });
    assert_eq!(b.api().post("/api/users", &viewer).0, 201);
    let secrets = [
        b"Beta".to_vec(),
        b"beta-server".to_vec(),
        id_bytes(system_id(&b).0),
        id_bytes(server_id(&b).0),
        b.peer.to_string().into_bytes(),
    ];
    let answers: Vec<(usize, usize, String)> = rt.block_on(async {
        let mut answers = Vec::new();
        for user in ["admin", "nobody-by-this-name", "watcher"] {
            let (mut ch, answer) = merge_login(b.peer, user).await;
            let Message::Merge(MergeMsg::Challenge { ke2, params }) = answer else {
                panic!("{user}: answered {answer:?}");
            };
            let plain = ch.rx.received_plain.clone();
            for s in &secrets {
                assert!(!contains(&plain, s), "{user}: the challenge carries {s:?}");
            }
            // Nothing more comes before the proof.
            let (more, _) = ch.drain(Duration::from_millis(500)).await;
            assert!(more.is_empty(), "{user}: more before the proof: {more:?}");
            // Nothing but the challenge crossed. Its CBOR length varies with the random bytes
            // of KE2 (a byte string is an array of integers), not with the user: compare the
            // shape with those bytes zeroed.
            let sent = Message::Merge(MergeMsg::Challenge { ke2: ke2.clone(), params });
            assert_eq!(sent.encode().len(), plain.len(), "{user}: more than the challenge");
            let zeroed = Message::Merge(MergeMsg::Challenge { ke2: vec![0; ke2.len()], params });
            answers.push((ke2.len(), zeroed.encode().len(), format!("{params:?}")));
        }
        answers
    });
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "challenges differ: {answers:?}");
}

#[test]
fn repeated_failed_merge_logins_for_one_name_are_refused_for_a_while_and_logged() {
    let rt = runtime();
    let b = Hive::start(Spec::new("b", "Beta", "secret-beta", discovery_port()));
    let outcomes: Vec<&str> = rt.block_on(async {
        let mut outcomes = Vec::new();
        for _ in 0..10 {
            let (mut ch, answer) = merge_login(b.peer, "admin").await;
            match answer {
                Message::Merge(MergeMsg::Challenge { .. }) => {
                    let finish = MergeMsg::Finish { ke3: vec![0; 64], offer: Vec::new() };
                    ch.send(&Message::Merge(finish)).await.unwrap();
                    let refused = ch.recv(PATIENCE).await;
                    assert!(
                        matches!(
                            refused,
                            Ok(Message::Merge(MergeMsg::Refused(MergeRefusal::BadCredentials)))
                        ),
                        "{refused:?}"
                    );
                    outcomes.push("failed");
                }
                Message::Merge(MergeMsg::Refused(MergeRefusal::TooManyAttempts { .. })) => {
                    outcomes.push("throttled")
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
        outcomes
    });
    let free = MERGE_FAILURES_FREE;
    assert!(outcomes[..free].iter().all(|o| *o == "failed"), "{outcomes:?}");
    assert!(outcomes.contains(&"throttled"), "never throttled: {outcomes:?}");
    let failed = outcomes.iter().filter(|o| **o == "failed").count();
    wait_for("each failure logged", CONVERGE, || {
        let n = count(&b, "MergeLoginFailed");
        (n >= failed, n)
    });
}

/// The owner's backup of `h`, raw.
fn backup(h: &Hive) -> Vec<u8> {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("admin:{OWNER_PASSWORD}"));
    let response = ureq::get(&format!("{}/api/backup", h.url()))
        .set("Authorization", &format!("Basic {token}"))
        .call()
        .unwrap();
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_stored_verifier_and_opaque_record_from_a_backup_do_not_open_a_merge() {
    let (a1, b1) = alpha_and_beta();
    let snapshot = Snapshot::decode(&backup(&b1)).expect("a backup decodes");
    let owner = snapshot
        .store
        .iter()
        .find_map(|(_, v)| match v {
            Value::User(u) if u.name == "admin" => Some(u.clone()),
            _ => None,
        })
        .expect("the owner in the backup");
    let record = owner.login.clone().expect("the owner has an OPAQUE record");
    let stolen = [hex(&owner.password.key), hex(&record.file), hex(&record.setup)];
    for password in &stolen {
        let (status, body) = merge(&a1, b1.peer, password);
        assert_eq!(status, 403, "pass-the-hash: {body}");
        assert_eq!(body["error"], "remote_credentials_rejected", "{body}");
    }
    assert_eq!(b1.system()["name"], "Beta");
    assert_eq!(a1.system()["name"], "Alpha");
    assert_eq!(a1.system()["servers"].as_array().unwrap().len(), 1);
}

#[test]
fn an_insider_stamp_beyond_the_clock_bound_closes_the_link_and_later_writes_are_kept() {
    let rt = runtime();
    let (a, b) = two_members();
    assert_eq!(a.api().post("/api/settings", &json!({ "name": "doomed", "value": "x" })).0, 201);
    wait_for("the setting on b", CONVERGE, || {
        let (_, s) = b.api().get("/api/settings");
        (s["doomed"] == "x", s)
    });
    rt.block_on(async {
        // A Hello from the end of time.
        let mut ch =
            Channel::open(b.peer, ChannelKind::Member, &insider_keys(SECRET)).await.unwrap();
        let Ok(Message::Hello(theirs)) = ch.recv(PATIENCE).await else { panic!("no Hello") };
        let max = Hlc { wall_ms: u64::MAX, logical: u32::MAX };
        ch.send(&hello_as(&theirs, ServerId(rand::random()), max)).await.unwrap();
        let (after, end) = ch.drain(PATIENCE).await;
        assert!(matches!(end, ChannelEnd::Closed), "{end:?}");
        assert!(after.is_empty(), "a poisoned Hello was answered with {after:?}");

        // A Push of a transaction stamped ten years ahead, on a link that is up.
        let mut ch =
            Channel::open(b.peer, ChannelKind::Member, &insider_keys(SECRET)).await.unwrap();
        let Ok(Message::Hello(theirs)) = ch.recv(PATIENCE).await else { panic!("no Hello") };
        let me = ServerId(rand::random());
        ch.send(&hello_as(&theirs, me, theirs.hlc)).await.unwrap();
        let up = ch.recv(PATIENCE).await;
        assert!(up.is_ok(), "the insider's link did not come up: {up:?}");
        let future = Hlc { wall_ms: theirs.hlc.wall_ms + 10 * 365 * 86_400_000, logical: 0 };
        let txn = Transaction {
            origin: ReplicaId { server: me, epoch: 0 },
            seq: 1,
            hlc: future,
            key: Key::Setting { system: theirs.system, name: "poison".into() },
            value: Some(Value::Setting("from the future".into())),
        };
        ch.send(&Message::Push { txns: vec![txn] }).await.unwrap();
        let (_, end) = ch.drain(PATIENCE).await;
        assert!(matches!(end, ChannelEnd::Closed), "{end:?}");
    });
    wait_for("both clock violations in B's log", CONVERGE, || {
        let n = count(&b, "ClockViolation");
        (n >= 2, n)
    });
    let (status, _) = a.api().patch("/api/settings", &json!({ "motd": "kept" }));
    assert_eq!(status, 200);
    let (status, _) = b.api().delete("/api/settings/doomed");
    assert_eq!(status, 204);
    for h in [&a, &b] {
        wait_for("the writes after the attack everywhere", CONVERGE, || {
            let (_, s) = h.api().get("/api/settings");
            let ok = s["motd"] == "kept" && s.get("doomed").is_none() && s.get("poison").is_none();
            (ok, s)
        });
    }
}

#[test]
fn a_holder_of_the_secret_posing_as_a_known_server_with_another_key_is_refused() {
    let rt = runtime();
    let (a, b) = two_members();
    // Once a write of A's reached B, so did A's pinned key (written at A's first start).
    assert_eq!(a.api().post("/api/settings", &json!({ "name": "synced", "value": "y" })).0, 201);
    wait_for("A's writes on b", CONVERGE, || {
        let (_, s) = b.api().get("/api/settings");
        (s["synced"] == "y", s)
    });
    let a_id = server_id(&a);
    rt.block_on(async {
        let mut ch =
            Channel::open(b.peer, ChannelKind::Member, &insider_keys(SECRET)).await.unwrap();
        let Ok(Message::Hello(theirs)) = ch.recv(PATIENCE).await else { panic!("no Hello") };
        ch.send(&hello_as(&theirs, a_id, theirs.hlc)).await.unwrap();
        let (after, end) = ch.drain(PATIENCE).await;
        assert!(matches!(end, ChannelEnd::Closed), "{end:?}");
        assert!(after.is_empty(), "the impostor was answered with {after:?}");
    });
    wait_for("B to report the key mismatch", CONVERGE, || {
        (count(&b, "KeyMismatch") >= 1, b.log_text())
    });
    assert!(merged(&[&a, &b]).0, "the real A lost its link");
    assert_eq!(a.api().post("/api/settings", &json!({ "name": "still", "value": "z" })).0, 201);
    wait_for("A's next write on b", CONVERGE, || {
        let (_, s) = b.api().get("/api/settings");
        (s["still"] == "z", s)
    });
}

#[test]
fn bursts_of_unauthenticated_connections_stay_within_memory_and_the_half_open_cap() {
    let rt = runtime();
    let b = Hive::start(Spec::new("b", "Shop", SECRET, discovery_port()));
    let pid = b.pid().unwrap();
    let peer = b.peer;
    rt.block_on(async {
        // 60 at once: a third announce the largest handshake message and send it, a third
        // send garbage handshake messages, a third open a merge channel (no secret needed) and
        // send most of an 8 MiB frame.
        let mut tasks = Vec::new();
        for i in 0..60 {
            tasks.push(tokio::spawn(async move {
                let mut sent = 0usize;
                let chunk = vec![0xa5u8; 65_535];
                match i % 3 {
                    0 | 1 => {
                        let Ok(mut s) = TcpStream::connect(peer).await else { return };
                        let _ = s.write_all(&our_preamble(ChannelKind::Member)).await;
                        let msg = if i % 3 == 0 { &chunk[..] } else { &chunk[..900] };
                        while sent < 8 << 20 {
                            if write_message(&mut s, msg).await.is_err() {
                                break;
                            }
                            sent += msg.len();
                        }
                        let _ = read_to_close(&mut s, PATIENCE).await;
                    }
                    _ => {
                        let keys = stranger_keys();
                        let Ok(mut ch) = Channel::open(peer, ChannelKind::Merge, &keys).await
                        else {
                            return;
                        };
                        let mut frame = ((8u32 << 20) - 16).to_le_bytes().to_vec();
                        frame.extend_from_slice(&[0; 4]);
                        frame.extend_from_slice(&chunk[..60_000]);
                        while sent < 8 << 20 {
                            if ch.tx.send_frame(&frame).await.is_err() {
                                break;
                            }
                            sent += frame.len();
                            frame.truncate(60_000);
                        }
                        let _ = ch.drain(PATIENCE).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let (status, _) = b.api().get("/api/system");
    assert_eq!(status, 200, "the API stopped serving");

    let refused_before = count(&b, "too many connections in their handshake");
    let idle = rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..100 {
            let mut s = TcpStream::connect(peer).await.unwrap();
            let _ = s.write_all(&our_preamble(ChannelKind::Member)).await;
            idle.push(s);
        }
        idle
    });
    wait_for("connections beyond the half-open cap closed at once", CONVERGE, || {
        let n = count(&b, "too many connections in their handshake") - refused_before;
        (n >= 100 - HALF_OPEN_MAX, n)
    });
    let (status, _) = b.api().get("/api/system");
    assert_eq!(status, 200, "the API stopped serving");
    drop(idle);
    let peak_kib = proc_status_kib(pid, "VmHWM");
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}

/// A socket that sends to (and hears) the discovery group on `port` over loopback.
fn discovery_socket(port: u16) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()).unwrap();
    s.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.into()
}

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 11, 11);

fn forged_beacon(version: u32, name: &str) -> Beacon {
    Beacon {
        version,
        server: ServerId(rand::random()),
        system: SystemId(rand::random()),
        name: SystemName::new(name).unwrap(),
        boot: rand::random(),
        seq: 1,
        listen: vec![PeerAddr("127.0.0.1:9".into())],
        interval_ms: 1_000,
        proof: rand::random(),
    }
}

fn other_servers(h: &Hive) -> (usize, usize) {
    let s = h.system();
    let n = s["other_systems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["servers"].as_array().map_or(0, Vec::len))
        .sum();
    (n, s.to_string().len())
}

#[test]
fn ten_thousand_forged_beacons_list_at_most_the_cap_of_other_servers() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Shop", SECRET, port));
    let socket = discovery_socket(port);
    for _ in 0..10_000 {
        let _ = socket.send_to(&forged_beacon(PROTOCOL_VERSION, "Shop").encode(), (GROUP, port));
    }
    let cap = 64;
    let (n, len) = wait_for("the cap of other servers filled", CONVERGE, || {
        let seen = other_servers(&a);
        (seen.0 >= cap, seen)
    });
    assert!(n <= cap, "{n} forged servers listed");
    assert!(len < 32 * 1024, "/api/system is {len} bytes");
    assert_eq!(a.system()["servers"].as_array().unwrap().len(), 1);
}

#[test]
fn a_replayed_beacon_of_a_dead_server_neither_keeps_it_online_nor_redirects_dials() {
    let port = discovery_port();
    let socket = discovery_socket(port);
    let a = Hive::start(Spec::new("a", "Shop", SECRET, port));
    let b = Hive::start(Spec::new("b", "Shop", SECRET, port));
    let mut c = Hive::start(Spec::new("c", "Shop", SECRET, port));
    wait_for("three servers linked", CONVERGE, || merged(&[&a, &b, &c]));
    let c_id = server_id(&c);
    let captured = wait_for("a beacon of c", CONVERGE, || {
        let mut buf = [0u8; 2048];
        let got = socket.recv_from(&mut buf).ok().and_then(|(n, _)| Beacon::decode(&buf[..n]).ok());
        let of_c = got.filter(|beacon| beacon.server == c_id);
        (of_c.is_some(), of_c)
    })
    .unwrap();
    assert!(captured.expected_proof(&Secret::from_bytes([0; 32]).beacon_key()) != captured.proof);
    c.kill9();
    // The attacker's own listener, and the captured beacon pointing at it (unsigned).
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let mut redirect = captured.clone();
    redirect.listen = vec![PeerAddr(trap.local_addr().unwrap().to_string())];
    redirect.seq += 1_000;
    let mut bumped = captured.clone();
    bumped.seq += 1_000;
    let replay = std::thread::spawn(move || {
        for _ in 0..100 {
            for beacon in [&captured, &redirect, &bumped] {
                let _ = socket.send_to(&beacon.encode(), (GROUP, port));
            }
            // Pacing of the attacker's sending, not a wait for a condition.
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    for h in [&a, &b] {
        wait_for("c offline despite its replayed beacons", CONVERGE, || {
            let s = h.system();
            let c_status = s["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == c_id.to_string())
                .map(|x| x["status"].clone());
            (c_status == Some("offline".into()), s)
        });
    }
    replay.join().unwrap();
    for h in [&a, &b] {
        let s = h.system();
        let c_status = s["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == c_id.to_string())
            .map(|x| x["status"].clone());
        assert_eq!(c_status, Some("offline".into()), "{s:#}");
    }
    assert!(trap.accept().is_err(), "a server dialled the address of an unsigned beacon");
}

#[test]
fn a_beacon_of_protocol_2_is_listed_with_a_reason_to_upgrade() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Shop", SECRET, port));
    let socket = discovery_socket(port);
    let old = forged_beacon(2, "Legacy");
    let listed = wait_for("the protocol-2 server listed", CONVERGE, || {
        let _ = socket.send_to(&old.encode(), (GROUP, port));
        let s = a.system();
        let entry = s["other_systems"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["name"] == "Legacy")
            .cloned();
        (entry.is_some(), entry)
    })
    .unwrap();
    let reason = listed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("protocol 2") && reason.contains("upgrade"),
        "the listing does not say why: {listed}"
    );
}

#[test]
fn a_media_channel_is_refused_to_a_stranger_and_to_an_insider_key_of_no_server() {
    use hive_media::relay::{Request, Start};
    let rt = runtime();
    let (a, b) = two_members();
    let (status, cam) =
        b.api().post("/api/cameras", &json!({ "name": "vault", "url": "rtsp://127.0.0.1:1/x" }));
    assert_eq!(status, 201, "{cam}");
    let camera = cam["id"].as_str().unwrap().to_owned();
    rt.block_on(async {
        // Without the system secret the handshake itself fails.
        let refused = Channel::open(b.peer, ChannelKind::Media, &stranger_keys()).await;
        assert!(refused.is_err(), "a stranger got a media channel");

        // With the secret but a key no server of the system holds (a leaked secret, or a
        // server split off): the channel is closed before a byte of video or description.
        for server in [&a, &b] {
            let mut ch = Channel::open(server.peer, ChannelKind::Media, &insider_keys(SECRET))
                .await
                .expect("the handshake proves only the secret");
            let mut request = bytes::BytesMut::new();
            Request {
                camera: camera.clone(),
                stream: 0,
                start: Start::Live,
                speed: 1.0,
                until_us: None,
                hops_left: 4,
                server: None,
            }
            .encode(&mut request);
            let _ = ch.tx.send_frame(&request).await;
            let (_, end) = ch.drain(PATIENCE).await;
            assert!(matches!(end, ChannelEnd::Closed), "{end:?}");
            assert!(
                ch.rx.received_plain.is_empty(),
                "{} answered an unknown key: {:?}",
                server.spec.name,
                ch.rx.received_plain
            );
        }
    });
}
