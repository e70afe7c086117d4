//! Failover between real processes on real network stacks: three servers, each in a network
//! namespace of its own (see `hive_tests::netns`), cameras on one. Its cable is taken out
//! (its bridge port down: no reset reaches anyone, the others only stop hearing it), and every
//! remaining server's API soon shows its cameras recorded by the others; the cable back in,
//! they return to it once it has been reachable for the stability time.
//!
//! The servers run with short failover timings (hold 3 s, minimum uptime 2 s, stability 5 s)
//! to keep the test fast. Needs root; `HIVE_SKIP_NETNS=1` skips it.

use hive_tests::netns::{lab_or_skip, Lab};
use hive_tests::{wait_for, CONVERGE, FAST_FAILOVER};
use serde_json::Value;
use std::time::{Duration, Instant};

const SYSTEM: &str = "Failover";
const SECRET: &str = "secret-failover";
const CAMERAS: usize = 4;
/// From the cable out until every camera is elsewhere: hold time and detection, with room for
/// a loaded machine.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// From the cable back in until every camera is home: stability time plus room.
const RETURN_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn cameras_of_a_server_whose_cable_is_out_move_to_the_others_and_return() {
    let Some(mut lab) = lab_or_skip() else { return };
    let servers: Vec<usize> =
        ["a", "b", "c"].iter().map(|n| lab.start(n, SYSTEM, SECRET, &FAST_FAILOVER)).collect();
    for &i in &servers {
        lab.wait_until_answering(i);
    }
    let views = wait_for("three servers to form one system", CONVERGE, || lab.merged(&servers));
    let ids: Vec<String> = views.iter().map(|v| text(&v["server_id"])).collect();
    let recorder = &ids[0];
    for n in 0..CAMERAS {
        let stream = format!("rtsp://127.0.0.9/cam-{n}");
        let name = format!("cam-{n}");
        let added = lab.hive_json(0, &["camera", "add", "--name", &name, "--stream", &stream]);
        added.unwrap_or_else(|e| panic!("{e}"));
    }
    for &i in &servers {
        wait_for("every camera recorded by its preferred server", CONVERGE, || {
            let cams = cameras(&lab, i);
            (cams.len() == CAMERAS && cams.iter().all(|(_, s)| s == recorder), cams)
        });
    }

    lab.set_link(0, false);
    let cut = Instant::now();
    for &i in &servers[1..] {
        let cams = wait_for("every camera recorded by one of the others", FAILOVER_LIMIT, || {
            let cams = cameras(&lab, i);
            let moved = cams.iter().all(|(_, s)| ids[1..].contains(s));
            (cams.len() == CAMERAS && moved, cams)
        });
        eprintln!(
            "failover: {} sees every camera moved {:?} after the cable went out: {cams:?}",
            lab.servers[i].name,
            cut.elapsed()
        );
    }

    lab.set_link(0, true);
    let back = Instant::now();
    for &i in &servers {
        wait_for("every camera back on its preferred server", RETURN_LIMIT, || {
            let cams = cameras(&lab, i);
            (cams.len() == CAMERAS && cams.iter().all(|(_, s)| s == recorder), cams)
        });
        eprintln!(
            "failover: {} sees every camera home {:?} after the cable went back in",
            lab.servers[i].name,
            back.elapsed()
        );
    }
}

/// Each camera's name and recording server (empty: none) as server `i`'s API lists them.
fn cameras(lab: &Lab, i: usize) -> Vec<(String, String)> {
    match lab.hive_json(i, &["camera", "list"]) {
        Ok(list) => list
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (text(&c["name"]), text(&c["server"])))
            .collect(),
        Err(e) => vec![(e, String::new())],
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
