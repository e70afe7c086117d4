//! Servers with one name and secret merge by themselves; a change made through any server is
//! read back through every other; a wrong secret is shown as another system and gets nothing.

use hive_tests::*;
use serde_json::json;

#[test]
fn three_servers_merge_and_a_change_through_one_is_read_through_the_others() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Shop", "secret-shop", port));
    let b = Hive::start(Spec::new("b", "Shop", "secret-shop", port));
    let c = Hive::start(Spec::new("c", "Shop", "secret-shop", port));
    wait_for("three servers to form one system", CONVERGE, || merged(&[&a, &b, &c]));

    let (status, cam) =
        a.api().post("/api/cameras", &json!({ "name": "Door", "url": "rtsp://127.0.0.9/door" }));
    assert_eq!(status, 201, "{cam}");
    let (status, _) = b.api().post("/api/licenses", &json!({ "key": license_text(4, "hw-a") }));
    assert_eq!(status, 201);
    let (status, _) = c.api().post("/api/licenses", &json!({ "key": license_text(10, "hw-b") }));
    assert_eq!(status, 201);
    let (status, _) = c.api().post("/api/settings", &json!({ "name": "site", "value": "Depot" }));
    assert_eq!(status, 201);

    for h in [&a, &b, &c] {
        wait_for("the camera everywhere", CONVERGE, || {
            let names = camera_names(h);
            (names == ["Door"], names)
        });
        wait_for("4 + 10 licensed channels everywhere", CONVERGE, || {
            let s = h.system();
            (s["licenses"]["total"] == 14, s["licenses"].clone())
        });
        wait_for("the setting everywhere", CONVERGE, || {
            let (_, settings) = h.api().get("/api/settings");
            (settings["site"] == "Depot", settings)
        });
    }
    // The server recording the camera is the one it was added through.
    // (C computes recorders a moment after the camera reaches it: wait for its answer.)
    let id = cam["id"].as_str().unwrap();
    let a_id = a.system()["server_id"].clone();
    wait_for("the recorder shown through C", CONVERGE, || {
        let (_, seen) = c.api().get(&format!("/api/cameras/{id}"));
        (seen["server"] == a_id, seen)
    });
}

#[test]
fn a_server_with_the_right_name_but_a_wrong_secret_is_another_system_and_sees_no_data() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Shop", "secret-shop", port));
    let b = Hive::start(Spec::new("b", "Shop", "secret-shop", port));
    let c = Hive::start(Spec::new("c", "Shop", "secret-shop", port));
    let intruder = Hive::start(Spec::new("x", "Shop", "a-wrong-guess", port));
    wait_for("the members to merge", CONVERGE, || merged(&[&a, &b, &c]));
    let (status, _) =
        a.api().post("/api/cameras", &json!({ "name": "Vault", "url": "rtsp://127.0.0.9/vault" }));
    assert_eq!(status, 201);

    for member in [&a, &b, &c] {
        wait_for("the intruder listed under other systems", CONVERGE, || {
            let s = member.system();
            let others = s["other_systems"].as_array().cloned().unwrap_or_default();
            let listed = others.iter().any(|o| {
                o["name"] == "Shop" && o["servers"].as_array().is_some_and(|v| v.len() == 1)
            });
            (listed && s["servers"].as_array().unwrap().len() == 3, s)
        });
    }
    let s = wait_for("the members listed under other systems by the intruder", CONVERGE, || {
        let s = intruder.system();
        let listed = s["other_systems"].as_array().is_some_and(|o| !o.is_empty());
        (listed, s)
    });
    assert_eq!(s["servers"].as_array().unwrap().len(), 1, "{s:#}");
    assert!(camera_names(&intruder).is_empty(), "the intruder got data");
}

#[test]
fn a_server_behind_nat_joins_by_address_and_keeps_its_outgoing_link() {
    // Separate discovery groups: no multicast between them, as across subnets.
    let hub = Hive::start(Spec::new("hub", "Chain", "secret-chain", discovery_port()));
    let mut spec = Spec::new("branch", "Chain", "secret-chain", discovery_port());
    spec.peers = vec![hub.peer.to_string()];
    // Behind NAT: the address it would be dialled at leads nowhere.
    spec.extra = vec!["--advertise".into(), format!("127.0.0.1:{}", free_port())];
    let branch = Hive::start(spec);
    wait_for("the branch to join the hub", CONVERGE, || merged(&[&hub, &branch]));
    let (status, _) =
        hub.api().post("/api/cameras", &json!({ "name": "Till", "url": "rtsp://127.0.0.5/till" }));
    assert_eq!(status, 201);
    wait_for("the hub's camera at the branch", CONVERGE, || {
        let n = camera_names(&branch);
        (n == ["Till"], n)
    });
    // Still linked a while later: the link it dialled is the one it keeps.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let (ok, systems) = merged(&[&hub, &branch]);
    assert!(ok, "{systems:#?}");
}
