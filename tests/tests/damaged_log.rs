//! A damaged transaction log loses only what is damaged: a server keeps every intact record
//! before and after the damage, keeps the damaged file aside, and says plainly when it has no
//! peer to recover the rest from.

use hive_core::frame;
use hive_core::persist::Record;
use hive_core::resources::Key;
use hive_tests::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::ops::Range;

/// The frames of a log file: each one's byte range and record.
fn frames_of(log: &[u8]) -> Vec<(Range<usize>, Record)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let (body, used) = frame::decode(&log[at..]).expect("the log is intact before the test");
        let record = Record::decode(body).expect("every frame holds a record");
        frames.push((at..at + used, record));
        at += used;
    }
    frames
}

fn settings_of(hive: &Hive) -> BTreeMap<String, String> {
    let (status, settings) = hive.api().get("/api/settings");
    assert_eq!(status, 200, "{settings}");
    serde_json::from_value(settings).expect("settings are a name-to-value map")
}

#[test]
fn a_peerless_server_keeps_every_intact_setting_around_bytes_flipped_mid_log() {
    let mut a = Hive::start(Spec::new("alone", "Island", "secret-island", discovery_port()));
    let mut written = BTreeMap::new();
    for i in 0..30 {
        let (name, value) = (format!("setting-{i:02}"), format!("value {i}"));
        let (status, body) =
            a.api().post("/api/settings", &json!({ "name": name, "value": value }));
        assert_eq!(status, 201, "{body}");
        written.insert(name, value);
    }
    a.stop();

    let log_path = a.data_dir.join("log.0");
    let mut log = std::fs::read(&log_path).expect("the first log");
    let flipped = log.len() / 2..log.len() / 2 + 4;
    for byte in &mut log[flipped.clone()] {
        *byte ^= 0xff;
    }
    // Which records the four bytes hit: those, and only those, may be lost.
    let hit: Vec<_> = frames_of(&std::fs::read(&log_path).unwrap())
        .into_iter()
        .filter(|(range, _)| range.start < flipped.end && flipped.start < range.end)
        .collect();
    let mut expected = written.clone();
    for (_, record) in &hit {
        match record {
            Record::Txn(t) => match &t.key {
                Key::Setting { name, .. } => expected.remove(name),
                other => panic!("the middle of the log holds settings, not {other:?}"),
            },
            other => panic!("the middle of the log holds transactions, not {other:?}"),
        };
    }
    assert!(expected.len() >= 28, "four bytes hit at most two records");
    std::fs::write(&log_path, &log).unwrap();

    a.spawn();
    assert_eq!(settings_of(&a), expected, "every intact setting, before and after the damage");
    let kept = std::fs::read(a.data_dir.join("log.0.damaged-1")).expect("the damaged log is kept");
    assert_eq!(kept, log, "kept as found");
    let text = a.log_text();
    let damaged_at = hit[0].0.start;
    assert!(text.contains(&format!("the log was damaged at bytes {damaged_at}..")), "{text}");
    assert!(text.contains("no peers are known, so nothing can be recovered from peers"), "{text}");
    assert!(!text.contains("recovering"), "a peerless server recovers nothing from peers: {text}");

    // What was recovered was written fresh: a later write and a crash lose nothing more.
    let (status, _) = a.api().post("/api/settings", &json!({ "name": "after", "value": "x" }));
    assert_eq!(status, 201);
    a.kill9();
    a.spawn();
    expected.insert("after".into(), "x".into());
    assert_eq!(settings_of(&a), expected);
    let reports = a.log_text().matches("the log was damaged").count();
    assert_eq!(reports, 1, "the damage is reported once, not again at the next start");
}
