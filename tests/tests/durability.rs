//! What is acknowledged survives `kill -9`; a restart pulls nothing it already had; a backup
//! taken while the server runs restores into a working server.

use hive_tests::*;
use serde_json::json;

fn metric(h: &Hive, name: &str) -> u64 {
    let metrics = metrics_at(h.http).expect("the server answers /metrics");
    *metrics.get(name).unwrap_or_else(|| panic!("no metric {name} in {metrics:?}")) as u64
}

#[test]
fn kill_9_right_after_acknowledgement_loses_nothing() {
    let port = discovery_port();
    let mut a = Hive::start(Spec::new("a", "Vault", "secret-vault", port));
    let mut names = Vec::new();
    for i in 0..20 {
        let name = format!("cam-{i:02}");
        let (status, _) = a
            .api()
            .post("/api/cameras", &json!({ "name": name, "url": format!("rtsp://127.0.0.1/{i}") }));
        assert_eq!(status, 201);
        names.push(name);
    }
    let (status, _) = a.api().post(
        "/api/users",
        &json!({ "name": "guard", "password": "guard-password", "role": "viewer" }),
    );
    assert_eq!(status, 201);
    a.api().post("/api/settings", &json!({ "name": "retention_days", "value": "30" }));
    let before = a.system();
    a.kill9();
    a.spawn();
    assert_eq!(camera_names(&a), names);
    assert_eq!(Api::new(a.http, "guard", "guard-password").get("/api/cameras").0, 200);
    let (_, settings) = a.api().get("/api/settings");
    assert_eq!(settings["retention_days"], "30");
    let after = a.system();
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["server_id"], before["server_id"]);
}

#[test]
fn a_restarted_server_pulls_nothing_it_already_had() {
    let port = discovery_port();
    // b's downtime must not fail its cameras over to a: the moves would be real writes b has
    // to pull, and this test counts replays of what b already had.
    let spec = |name: &str| {
        let mut spec = Spec::new(name, "Depot", "secret-depot", port);
        spec.extra.extend(["--failover-hold-ms".into(), "600000".into()]);
        spec
    };
    let a = Hive::start(spec("a"));
    let mut b = Hive::start(spec("b"));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));
    for i in 0..50 {
        a.api()
            .post("/api/cameras", &json!({ "name": format!("c{i}"), "url": "rtsp://127.0.0.1/x" }));
    }
    // Each camera brings a later write (its recorder's history entry): b must hold them all,
    // or the restart would rightly pull the ones it lacked. a has written them all when its
    // count stands still between two looks.
    let a_before = std::cell::Cell::new(0);
    wait_for("b to hold everything a has written", CONVERGE, || {
        let held = (metric(&a, "hive_transactions"), metric(&b, "hive_transactions"));
        let still = a_before.replace(held.0) == held.0;
        std::thread::sleep(std::time::Duration::from_millis(200));
        (camera_names(&b).len() == 50 && still && held.0 == held.1, held)
    });
    b.kill9();
    b.spawn();
    wait_for("the two to meet again", CONVERGE, || merged(&[&a, &b]));
    assert_eq!(camera_names(&b).len(), 50);
    // What b is sent again of what it had is the replay this test is about; writes made
    // meanwhile (server records, the license shortfall, camera history as recording resumes)
    // are new to b and rightly pulled. A replay of what b had would be 100 or more.
    let replayed = |b: &Hive| {
        metric(b, "hive_sync_transactions_received_total")
            - metric(b, "hive_sync_transactions_new_total")
    };
    let again = replayed(&b);
    assert!(again < 5, "b was sent {again} transactions it had after a restart");

    // A change made while b was down is all it pulls.
    b.kill9();
    a.api().post("/api/cameras", &json!({ "name": "late", "url": "rtsp://127.0.0.1/late" }));
    b.spawn();
    wait_for("b to catch up", CONVERGE, || {
        let n = camera_names(&b).len();
        (n == 51, n)
    });
    let again = replayed(&b);
    assert!(again < 5, "b was sent {again} transactions it had after the second restart");
}

#[test]
fn a_backup_taken_while_running_restores_into_a_server_that_rejoins() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Bank", "secret-bank", port));
    let mut b = Hive::start(Spec::new("b", "Bank", "secret-bank", port));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));
    b.api().post("/api/cameras", &json!({ "name": "before", "url": "rtsp://127.0.0.1/x" }));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.backup");
    let out = std::process::Command::new(hive_bin())
        .args(["backup", "--out"])
        .arg(&file)
        .args(["--url", &format!("http://{}", b.http), "--user", "admin"])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server_id = b.system()["server_id"].clone();
    let link_key = |h: &Hive| {
        let s = h.system();
        let me = s["servers"].as_array().unwrap().iter().find(|x| x["id"] == server_id).cloned();
        me.map(|x| x["link_key"].clone())
    };
    let pinned = link_key(&a);
    assert!(pinned.as_ref().is_some_and(|k| k.is_string()), "{pinned:?}");
    // Written after the backup: must come back from the peer.
    b.api().post("/api/cameras", &json!({ "name": "after", "url": "rtsp://127.0.0.1/y" }));
    wait_for("a to hold both", CONVERGE, || {
        let n = camera_names(&a);
        (n.len() == 2, n)
    });
    b.stop();
    std::fs::remove_dir_all(&b.data_dir).unwrap();

    let out = std::process::Command::new(hive_bin())
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(&b.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b.spawn();
    assert_eq!(b.system()["server_id"], server_id, "the restored server is the same server");
    wait_for("the restored server to catch up", CONVERGE, || {
        let n = camera_names(&b);
        (n == ["after", "before"], n)
    });
    // Its link key came back with it: the peer still recognises it.
    assert_eq!(link_key(&a), pinned);
    assert!(!a.log_text().contains("KeyMismatch"), "{}", a.log_text());
    // New writes from the restored server reach the peer (a new write epoch, no reused numbers).
    b.api().post("/api/cameras", &json!({ "name": "restored", "url": "rtsp://127.0.0.1/z" }));
    wait_for("a to see the restored server's write", CONVERGE, || {
        let n = camera_names(&a);
        (n.len() == 3, n)
    });
}

#[test]
fn restore_refuses_a_file_that_is_not_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk");
    std::fs::write(&file, b"this is not a snapshot").unwrap();
    let out = std::process::Command::new(hive_bin())
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Hive backup"), "{err}");
}

#[test]
fn kill_9_in_the_middle_of_writes_keeps_every_acknowledged_change() {
    let mut a = Hive::start(Spec::new("a", "Mint", "secret-mint", discovery_port()));
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let http = a.http;
        let writer = std::thread::spawn(move || {
            let api = Api::new(http, "admin", OWNER_PASSWORD);
            let mut acked = Vec::new();
            for i in 0.. {
                let name = format!("r{round}-{i:04}");
                let body = json!({ "name": name, "url": "rtsp://127.0.0.1/x" }).to_string();
                match std::panic::catch_unwind(|| api.post_raw("/api/cameras", &body)) {
                    Ok((201, _)) => acked.push(name),
                    _ => break,
                }
            }
            acked
        });
        std::thread::sleep(std::time::Duration::from_millis(400 + 150 * round));
        a.kill9();
        let acked = writer.join().unwrap();
        assert!(!acked.is_empty(), "round {round} acknowledged nothing");
        acknowledged.extend(acked);
        a.spawn();
        let present = camera_names(&a);
        let lost: Vec<_> = acknowledged.iter().filter(|n| !present.contains(n)).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged but lost after kill -9: {lost:?}");
    }
}
