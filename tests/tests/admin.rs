//! Administrators' operations on whole systems through the API: merge two systems with the
//! remote owner's password (and not without it), split a server off, rename (merge-all).

use hive_tests::*;
use serde_json::{json, Value};

fn names_of(s: &Value) -> Vec<String> {
    let mut v: Vec<String> = s["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn two_systems_merge_through_the_api_only_with_the_remote_owners_password() {
    let port = discovery_port();
    let a1 = Hive::start(Spec::new("a1", "Alpha", "secret-alpha", port));
    let a2 = Hive::start(Spec::new("a2", "Alpha", "secret-alpha", port));
    let b1 = Hive::start(Spec::new("b1", "Beta", "secret-beta", port));
    wait_for("Alpha to form", CONVERGE, || merged(&[&a1, &a2]));
    a1.api().post("/api/cameras", &json!({ "name": "alpha-cam", "url": "rtsp://127.0.0.1/a" }));
    b1.api().post("/api/cameras", &json!({ "name": "beta-cam", "url": "rtsp://127.0.0.2/b" }));
    a1.api().post("/api/settings", &json!({ "name": "site", "value": "alpha-site" }));
    b1.api().post("/api/settings", &json!({ "name": "site", "value": "beta-site" }));
    b1.api().post("/api/licenses", &json!({ "key": license_text(10, "hw-b1") }));
    a2.api().post("/api/licenses", &json!({ "key": license_text(4, "hw-a2") }));

    let url = format!("http://{}", b1.http);
    let (status, body) = a1.api().post(
        "/api/merge",
        &json!({ "url": url, "user": "admin", "password": "not-the-password", "keep": "remote" }),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "remote_credentials_rejected");
    assert_eq!(b1.system()["name"], "Beta", "a refused merge changes nothing");
    assert_eq!(camera_names(&b1), ["beta-cam"]);

    let (status, body) = a1.api().post(
        "/api/merge",
        &json!({ "url": url, "user": "admin", "password": OWNER_PASSWORD, "keep": "remote" }),
    );
    assert_eq!(status, 200, "{body}");
    for h in [&a1, &a2, &b1] {
        let s = wait_for("one system of three servers named Beta", CONVERGE, || {
            let (ok, systems) = merged(&[&a1, &a2, &b1]);
            (ok && systems.iter().all(|s| s["name"] == "Beta"), systems)
        });
        assert_eq!(names_of(&s[0]), ["a1", "a2", "b1"]);
        wait_for("cameras of both sides", CONVERGE, || {
            let n = camera_names(h);
            (n == ["alpha-cam", "beta-cam"], n)
        });
        let (_, settings) = h.api().get("/api/settings");
        assert_eq!(settings["site"], "beta-site", "the kept side's settings win");
        wait_for("licenses add up", CONVERGE, || {
            let s = h.system();
            (s["licenses"]["total"] == 14, s["licenses"].clone())
        });
    }
}

#[test]
fn a_server_splits_off_with_its_cameras_and_the_rest_renames_itself() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "Plant", "secret-plant", port));
    let b = Hive::start(Spec::new("b", "Plant", "secret-plant", port));
    let c = Hive::start(Spec::new("c", "Plant", "secret-plant", port));
    wait_for("Plant to form", CONVERGE, || merged(&[&a, &b, &c]));
    a.api().post("/api/cameras", &json!({ "name": "cam-a", "url": "rtsp://127.0.0.1/a" }));
    c.api().post("/api/cameras", &json!({ "name": "cam-c", "url": "rtsp://127.0.0.3/c" }));
    wait_for("both cameras on c", CONVERGE, || {
        let n = camera_names(&c);
        (n.len() == 2, n)
    });

    let (status, body) = c.api().post("/api/split", &json!({ "name": "Annex" }));
    assert_eq!(status, 200, "{body}");
    let s = wait_for("c alone in Annex with its own camera", CONVERGE, || {
        let s = c.system();
        let alone = s["servers"].as_array().map_or(0, Vec::len) == 1;
        (s["name"] == "Annex" && alone && camera_names(&c) == ["cam-c"], s)
    });
    assert_eq!(names_of(&s), ["c"]);
    for h in [&a, &b] {
        wait_for("the rest forgets c and its camera", CONVERGE, || {
            let s = h.system();
            (names_of(&s) == ["a", "b"] && camera_names(h) == ["cam-a"], s)
        });
    }
    // The users came along: c's owner still logs in.
    assert_eq!(c.api().get("/api/users").0, 200);

    let (status, body) = a.api().post("/api/system/rename", &json!({ "name": "Works" }));
    assert_eq!(status, 200, "{body}");
    for h in [&a, &b] {
        wait_for("the rename everywhere", CONVERGE, || {
            let s = h.system();
            (s["name"] == "Works", s)
        });
    }
}

#[test]
fn merge_all_renames_one_system_into_another_with_the_same_secret() {
    let port = discovery_port();
    let a = Hive::start(Spec::new("a", "East", "shared-secret", port));
    let b = Hive::start(Spec::new("b", "West", "shared-secret", port));
    let (status, body) = b.api().post("/api/system/rename", &json!({ "name": "East" }));
    assert_eq!(status, 200, "{body}");
    let s = wait_for("one system named East", CONVERGE, || merged(&[&a, &b]));
    assert!(s.iter().all(|s| s["name"] == "East"));
}
