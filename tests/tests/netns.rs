//! Multicast discovery works across real network stacks, not just on loopback: three servers,
//! each in a network namespace of its own and joined only by a Linux bridge, find each other by
//! multicast beacons on the wire and merge into one system; a fourth server on the same bridge
//! with the same system name but a wrong secret is listed under `other_systems`, never among
//! the servers. Every server is queried through the `hive status --json` CLI run in its own
//! namespace.
//!
//! Topology (all of it inside namespaces this test creates; the host's own interfaces, addresses
//! and routes are never touched):
//!
//! ```text
//!   hive-<pid>-br:  br0 (bridge, multicast snooping off)
//!                   ├── va ══ eth0 in hive-<pid>-a  10.231.0.1/24   member
//!                   ├── vb ══ eth0 in hive-<pid>-b  10.231.0.2/24   member
//!                   ├── vc ══ eth0 in hive-<pid>-c  10.231.0.3/24   member
//!                   └── vx ══ eth0 in hive-<pid>-x  10.231.0.4/24   wrong secret
//! ```
//!
//! Needs root. It fails when it cannot build the namespaces, unless `HIVE_SKIP_NETNS=1` is set,
//! in which case it warns and passes (for developers without root).

use hive_tests::netns::lab_or_skip;
use hive_tests::{wait_for, CONVERGE};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Instant;

const SYSTEM: &str = "Depot";
const SECRET: &str = "secret-depot";
const WRONG_SECRET: &str = "a-wrong-guess";

#[test]
fn servers_in_separate_network_namespaces_find_each_other_by_multicast() {
    let Some(mut lab) = lab_or_skip() else { return };
    let started = Instant::now();
    let members: Vec<usize> =
        ["a", "b", "c"].iter().map(|n| lab.start(n, SYSTEM, SECRET, &[])).collect();
    let intruder = lab.start("x", SYSTEM, WRONG_SECRET, &[]);
    for i in 0..lab.servers.len() {
        lab.wait_until_answering(i);
    }
    eprintln!("netns: 4 servers answering after {:?}", started.elapsed());

    let views = wait_for("the three members to form one system", CONVERGE, || lab.merged(&members));
    eprintln!("netns: members merged after {:?}", started.elapsed());
    let system_id = views[0]["id"].clone();
    let intruder_id = lab.status(intruder).expect("the intruder answers")["server_id"].clone();

    for &m in &members {
        let what = format!("{} to list the intruder under other systems", lab.servers[m].name);
        let view = lab.wait_for_view(m, &what, |v| lists_other_server(v, &intruder_id));
        assert_eq!(view["id"], system_id, "{view:#}");
        assert!(!server_ids(&view).contains(&text(&intruder_id)), "intruder merged: {view:#}");
        assert_eq!(server_ids(&view).len(), 3, "{view:#}");
    }

    let member_id = views[0]["server_id"].clone();
    let what = "the intruder to list the members as another system";
    let view = lab.wait_for_view(intruder, what, |v| lists_other_server(v, &member_id));
    assert_ne!(view["id"], system_id, "{view:#}");
    assert_eq!(server_ids(&view), BTreeSet::from([text(&intruder_id)]), "{view:#}");
    eprintln!("netns: done after {:?}", started.elapsed());
}

/// Whether `view` lists server `id` under one of its other systems named like ours.
fn lists_other_server(view: &Value, id: &Value) -> bool {
    view["other_systems"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["name"] == SYSTEM && o["servers"].as_array().is_some_and(|s| s.contains(id)))
}

/// The ids of the servers of `view`'s system.
fn server_ids(view: &Value) -> BTreeSet<String> {
    view["servers"].as_array().into_iter().flatten().map(|s| text(&s["id"])).collect()
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
