//! The API and CLI of failover and time: `/api/servers` (list, `PATCH` of failover settings),
//! `/api/time`, `/api/routes`, the `time_primary` setting, the cameras' recording and
//! preferred servers, `hive status`, `hive camera list` and `hive server set`.

use hive_tests::{discovery_port, hive, merged, ok, wait_for, Api, Hive, Spec, CONVERGE};
use serde_json::{json, Value};

/// Two servers of one system, merged.
fn pair(system: &str) -> (Hive, Hive) {
    let port = discovery_port();
    let secret = format!("secret-{system}");
    let a = Hive::start(Spec::new("alpha", system, &secret, port));
    let b = Hive::start(Spec::new("beta", system, &secret, port));
    wait_for("two servers to merge", CONVERGE, || merged(&[&a, &b]));
    (a, b)
}

fn server_id(h: &Hive) -> String {
    h.system()["server_id"].as_str().unwrap().to_owned()
}

/// The entry of server `id` in `GET /api/servers` of `h`.
fn server_entry(h: &Hive, id: &str) -> Value {
    let (status, servers) = h.api().get("/api/servers");
    assert_eq!(status, 200, "{servers:#}");
    servers.as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap_or(Value::Null)
}

#[test]
fn servers_list_failover_settings_and_a_patch_reaches_every_server() {
    let (a, b) = pair("Servers");
    let (a_id, b_id) = (server_id(&a), server_id(&b));
    let me = server_entry(&a, &a_id);
    assert_eq!(me["online"], true, "{me:#}");
    assert_eq!(me["is_self"], true, "{me:#}");
    assert_eq!(me["failover_enabled"], true, "{me:#}");
    assert_eq!(me["cameras_recording"], 0, "{me:#}");
    assert!(me["time_offset_ms"].is_i64(), "{me:#}");
    // A number once synced, null before.
    assert!(me["time_error_bound_us"].is_u64() || me["time_error_bound_us"].is_null(), "{me:#}");
    let other = server_entry(&a, &b_id);
    assert_eq!(other["online"], true, "{other:#}");
    // Only a server knows its own time.
    assert!(other["time_offset_ms"].is_null(), "{other:#}");

    let change = json!({ "failover_enabled": false, "max_cameras": 5, "time_priority": 3 });
    let (status, answer) = a.api().patch(&format!("/api/servers/{b_id}"), &change);
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!((&answer["failover_enabled"], &answer["max_cameras"]), (&json!(false), &json!(5)));
    let seen = wait_for("the change seen by the server it is about", CONVERGE, || {
        let s = server_entry(&b, &b_id);
        (s["failover_enabled"] == false && s["max_cameras"] == 5 && s["time_priority"] == 3, s)
    });
    assert_eq!(seen["is_self"], true);
    // The system view lists the same.
    let system = b.system();
    let listed = system["servers"].as_array().unwrap().iter().find(|s| s["id"] == b_id).unwrap();
    assert_eq!(listed["max_cameras"], 5, "{system:#}");
}

#[test]
fn a_server_patch_refuses_unknown_fields_bad_ids_too_many_cameras_and_viewers() {
    let h = Hive::start(Spec::new("solo", "Refusals", "secret-refusals", discovery_port()));
    let id = server_id(&h);
    let api = h.api();
    let path = format!("/api/servers/{id}");
    let cases = [
        (path.as_str(), json!({ "failover": true }), 400),
        (path.as_str(), json!({ "max_cameras": 10_001 }), 400),
        (path.as_str(), json!({ "max_cameras": -1 }), 400),
        (path.as_str(), json!({ "failover_enabled": "yes" }), 400),
        ("/api/servers/not-hex", json!({ "max_cameras": 1 }), 400),
        ("/api/servers/0123456789abcdef0123456789abcdef", json!({ "max_cameras": 1 }), 404),
    ];
    for (path, body, want) in cases {
        let (status, answer) = api.patch(path, &body);
        assert_eq!(status, want, "{path} {body}: {answer:#}");
        assert!(answer["error"].is_string(), "{answer:#}");
    }
    assert_eq!(api.patch(&path, &json!({ "max_cameras": 10_000 })).0, 200);

    let viewer = json!({ "name": "watcher", "password": "watcher-password", "role": "viewer" });
    assert_eq!(api.post("/api/users", &viewer).0, 201);
    let viewer = Api::new(h.http, "watcher", "watcher-password");
    assert_eq!(viewer.get("/api/servers").0, 200);
    assert_eq!(viewer.get("/api/time").0, 200);
    assert_eq!(viewer.get("/api/routes").0, 200);
    let (status, answer) = viewer.patch(&path, &json!({ "max_cameras": 1 }));
    assert_eq!(status, 403, "{answer:#}");
    let (status, _) = viewer.post("/api/settings", &json!({ "name": "time_primary", "value": id }));
    assert_eq!(status, 403);
}

#[test]
fn cameras_show_the_server_recording_them_and_their_preferred_server() {
    let (a, b) = pair("Cameras");
    let a_id = server_id(&a);
    let (status, cam) =
        a.api().post("/api/cameras", &json!({ "name": "Gate", "url": "rtsp://127.0.0.7/gate" }));
    assert_eq!(status, 201, "{cam:#}");
    let path = format!("/api/cameras/{}", cam["id"].as_str().unwrap());
    let seen = wait_for(
        "the camera recorded by its preferred server, seen by the other",
        CONVERGE,
        || {
            let (_, c) = b.api().get(&path);
            (c["server"] == a_id.as_str(), c)
        },
    );
    assert_eq!(seen["preferred_server"], a_id.as_str());
    let recording = wait_for("the recorder counted in the servers list", CONVERGE, || {
        let s = server_entry(&b, &a_id);
        (s["cameras_recording"] == 1, s)
    });
    assert_eq!(recording["online"], true);
    let (status, changed) = a.api().patch(&path, &json!({ "failover_priority": "high" }));
    assert_eq!(status, 200, "{changed:#}");
    assert_eq!(changed["failover_priority"], "high");
    assert_eq!(a.api().patch(&path, &json!({ "failover_priority": "urgent" })).0, 400);

    let list = ok(hive(&b, &["camera", "list"]));
    assert!(list.contains("RECORDED BY") && list.contains("PREFERRED"), "{list}");
    let line = list.lines().find(|l| l.contains("Gate")).unwrap();
    assert_eq!(line.matches(&a_id[..8]).count(), 2, "recorder and preferred: {list}");
}

#[test]
fn time_and_routes_report_this_servers_time_the_primary_and_the_way_to_each_server() {
    let (a, b) = pair("Clocks");
    let (a_id, b_id) = (server_id(&a), server_id(&b));
    let time = wait_for("both servers synced", CONVERGE, || {
        let (ta, tb) = (a.api().get("/api/time").1, b.api().get("/api/time").1);
        (ta["synced"] == true && tb["synced"] == true, (ta, tb))
    });
    for t in [&time.0, &time.1] {
        assert!(t["system_ms"].as_u64().unwrap() > 1_600_000_000_000, "{t:#}");
        assert!(t["offset_from_wall_ms"].is_i64(), "{t:#}");
        // A number, or null while the core reports no bound (a follower's bound stays
        // unbounded today even once synced: reported to the core's owner).
        assert!(t["error_bound_us"].is_u64() || t["error_bound_us"].is_null(), "{t:#}");
        assert_eq!(t["primary"], time.0["primary"], "one primary: {time:#?}");
        assert!(t["primary_chosen"].is_null(), "{t:#}");
    }
    let primary = time.0["primary"].as_str().unwrap();
    assert!(primary == a_id || primary == b_id, "{time:#?}");
    let (leader, follower) = if primary == a_id { (&time.0, &time.1) } else { (&time.1, &time.0) };
    assert_eq!(follower["source"], "primary", "{follower:#}");
    assert_eq!(leader["error_bound_us"], 0, "the primary's time is the system's: {leader:#}");

    let (status, routes) = a.api().get("/api/routes");
    assert_eq!(status, 200);
    assert_eq!(routes, json!([{ "server": b_id, "hops": 1, "via": b_id }]));
}

#[test]
fn the_time_primary_setting_must_name_a_server_of_the_system_and_makes_it_primary() {
    let (a, b) = pair("Primary");
    let b_id = server_id(&b);
    let api = a.api();
    let unknown = "0123456789abcdef0123456789abcdef";
    for value in ["not-a-server", unknown] {
        let body = json!({ "name": "time_primary", "value": value });
        let (status, answer) = api.post("/api/settings", &body);
        assert_eq!(status, 400, "{value}: {answer:#}");
        let (status, _) = api.patch("/api/settings", &json!({ "time_primary": value }));
        assert_eq!(status, 400, "{value}");
    }
    let (status, answer) =
        api.post("/api/settings", &json!({ "name": "time_primary", "value": b_id }));
    assert_eq!(status, 201, "{answer:#}");
    for h in [&a, &b] {
        let t = wait_for("the chosen server as primary", CONVERGE, || {
            let t = h.api().get("/api/time").1;
            (t["primary"] == b_id.as_str(), t)
        });
        assert_eq!(t["primary_chosen"], b_id.as_str());
    }
    // Removing the choice is always allowed.
    assert_eq!(api.patch("/api/settings", &json!({ "time_primary": null })).0, 200);
}

#[test]
fn hive_status_shows_recording_and_time_and_hive_server_set_changes_failover() {
    let (a, b) = pair("Console");
    let b_id = server_id(&b);
    let text = ok(hive(&a, &["status"]));
    assert!(text.contains("RECORDING") && text.contains("FAILOVER"), "{text}");
    assert!(text.contains("primary time server"), "{text}");
    assert!(text.contains("µs") || text.contains("not synced yet"), "{text}");

    let out = ok(hive(&a, &["server", "set", &b_id, "--failover", "off", "--max-cameras", "7"]));
    assert!(out.contains("off") && out.contains("0/7"), "{out}");
    wait_for("the change seen through the other server", CONVERGE, || {
        let list = ok(hive(&b, &["server", "list"]));
        let line = list.lines().find(|l| l.contains(&b_id[..8])).unwrap_or("").to_owned();
        (line.contains("off") && line.contains("0/7"), list)
    });
    let refused = hive(&a, &["server", "set", &b_id, "--max-cameras", "20000"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("max_cameras"));
}
