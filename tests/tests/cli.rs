//! The `hive` command for people: status, cameras, users, licenses, join — text by default,
//! JSON with `--json`, a non-zero exit and a message on failure.

use hive_tests::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn status_cameras_users_and_licenses_from_the_command_line() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("alpha", "Yard", "secret-yard", port));
    let b = Hive::start(Spec::new("beta", "Yard", "secret-yard", port));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));

    let text = ok(hive(&a, &["status"]));
    assert!(text.contains("Yard") && text.contains("alpha") && text.contains("beta"), "{text}");
    assert_eq!(text.matches("online").count(), 2, "{text}");
    let json: Value = serde_json::from_str(&ok(hive(&a, &["status", "--json"]))).unwrap();
    assert_eq!(json["servers"].as_array().unwrap().len(), 2);

    let added: Value = serde_json::from_str(&ok(hive(
        &a,
        &["camera", "add", "--name", "Gate", "--stream", "rtsp://127.0.0.7/gate", "--json"],
    )))
    .unwrap();
    let id = added["id"].as_str().unwrap().to_owned();
    wait_for("the camera listed through the other server", CONVERGE, || {
        let list = ok(hive(&b, &["camera", "list"]));
        (list.contains("Gate") && list.contains(&id), list)
    });
    ok(hive(&b, &["camera", "rm", &id]));
    wait_for("the camera gone through the first server", CONVERGE, || {
        let list = ok(hive(&a, &["camera", "list"]));
        (!list.contains("Gate"), list)
    });

    let out = Command::new(hive_bin())
        .args(["user", "add", "dora", "--role", "viewer", "--url", &format!("http://{}", a.http)])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .env("HIVE_NEW_PASSWORD", "doras-password")
        .output()
        .unwrap();
    assert!(ok(out).contains("dora"));
    wait_for("the user listed through the other server", CONVERGE, || {
        let list = ok(hive(&b, &["user", "list"]));
        (list.contains("dora") && list.contains("viewer"), list)
    });

    let key = license_text(8, "hw-beta");
    assert!(ok(hive(&a, &["license", "add", &key])).contains("8 channels"));
    let listed = ok(hive(&a, &["license", "list"]));
    assert!(listed.contains("Total: 8 channels"), "{listed}");
}

#[test]
fn a_refused_command_exits_non_zero_with_the_reason() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Left", "secret-left", port));
    let b = Hive::start(Spec::new("b", "Right", "secret-right", port));
    let out = Command::new(hive_bin())
        .args(["join", &format!("http://{}", b.http), "--remote-user", "admin"])
        .args(["--url", &format!("http://{}", a.http)])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .env("HIVE_REMOTE_PASSWORD", "wrong-password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong credentials"), "{err}");

    let out =
        Command::new(hive_bin()).args(["status", "--url", "http://127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
