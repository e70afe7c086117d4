//! Bad input gets a clear error and loses nothing: config files, taken ports, malformed API
//! bodies, wrong credentials (rate-limited); and no secret or password reaches the logs.

use hive_tests::*;
use serde_json::json;
use std::process::Command;

fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(hive_bin());
    cmd.arg("serve").arg("--data-dir").arg(dir.path().join("data")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "hive serve {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_config_field_names_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hive.toml");
    std::fs::write(&file, "system_name = \"Shop\"\nsecret = \"the secret of the shop next door\"\nlisten_port = 7001\n")
        .unwrap();
    let err = serve_fails(&["--config", file.to_str().unwrap()], &[]);
    assert!(err.contains("listen_port") && err.contains("hive.toml"), "{err}");
}

#[test]
fn an_invalid_config_value_names_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.toml");
    std::fs::write(
        &file,
        "system_name = \"Shop\"\nsecret = \"the secret of the shop next door\"\nlisten = \"everywhere\"\n",
    )
    .unwrap();
    let err = serve_fails(&["--config", file.to_str().unwrap()], &[]);
    assert!(err.contains("`listen`") && err.contains("site.toml"), "{err}");
}

#[test]
fn a_taken_port_says_which() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = discovery_port().to_string();
    let group = format!("239.255.11.11:{port}");
    let common = [
        "--system-name",
        "Shop",
        "--discovery-group",
        &group,
        "--discovery-interface",
        "127.0.0.1",
    ];
    let free = format!("127.0.0.1:{}", free_port());
    let mut http_taken = common.to_vec();
    http_taken.extend(["--http", &addr, "--listen", &free]);
    let token = join_token("secret-shop");
    let err = serve_fails(&http_taken, &[("HIVE_SECRET", &token)]);
    assert!(err.contains(&addr) && err.contains("HTTP"), "{err}");

    let free = format!("127.0.0.1:{}", free_port());
    let mut peer_taken = common.to_vec();
    peer_taken.extend(["--http", &free, "--listen", &addr]);
    let err = serve_fails(&peer_taken, &[("HIVE_SECRET", &token)]);
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn a_weak_system_secret_is_refused_and_says_what_is_accepted() {
    // A short secret makes every beacon an offline guessing oracle.
    let args = ["--system-name", "Shop"];
    let err = serve_fails(&args, &[("HIVE_SECRET", "secret-shop")]);
    assert!(err.contains("secret") && err.contains("join token"), "{err}");
}

#[test]
fn malformed_api_bodies_get_400_with_the_reason_and_change_nothing() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let api = h.api();
    let cases = [
        ("/api/cameras", "{", "EOF"),
        ("/api/cameras", r#"{"name": "x", "url": "rtsp://h/x", "colour": "red"}"#, "colour"),
        ("/api/cameras", r#"{"name": 7, "url": "rtsp://h/x"}"#, "name"),
        ("/api/cameras", r#"{"name": "x"}"#, "url"),
        ("/api/cameras", r#"{"name": "x", "url": "ftp://h/x"}"#, "rtsp://"),
        ("/api/cameras", r#"{"name": "", "url": "rtsp://h/x"}"#, "name"),
        ("/api/users", r#"{"name": "u", "password": "short", "role": "viewer"}"#, "password"),
        ("/api/users", r#"{"name": "u", "password": "long-enough", "role": "king"}"#, "role"),
        ("/api/licenses", r#"{"key": "HIVE1-garbage"}"#, "license key"),
        ("/api/merge", r#"{"url": "x", "user": "u", "password": "p", "keep": "both"}"#, "keep"),
        ("/api/split", r#"{"name": ""}"#, "name"),
        ("/api/settings", r#"{"name": "bad name!", "value": "v"}"#, "name"),
    ];
    for (path, body, reason) in cases {
        let (status, answer) = api.post_raw(path, body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default().to_lowercase();
        assert!(answer["error"].is_string(), "{answer}");
        assert!(message.contains(&reason.to_lowercase()), "{path} {body}: {message}");
    }
    let (status, answer) = api.get("/api/cameras/not-hex");
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = api.get(&format!("/api/cameras/{:032x}", 42));
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
    let (status, _) = api.get("/api/nothing-here");
    assert_eq!(status, 404);
    assert!(camera_names(&h).is_empty(), "a refused body created something");
}

#[test]
fn wrong_credentials_get_401_then_429_and_viewers_cannot_change_things() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let (status, _) = h.api().post(
        "/api/users",
        &json!({ "name": "watcher", "password": "watcher-password", "role": "viewer" }),
    );
    assert_eq!(status, 201);
    let viewer = Api::new(h.http, "watcher", "watcher-password");
    assert_eq!(viewer.get("/api/cameras").0, 200);
    let (status, answer) =
        viewer.post("/api/cameras", &json!({ "name": "x", "url": "rtsp://h/x" }));
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")));

    let (status, answer) = Api::new(h.http, "admin", "wrong").get("/api/system");
    assert_eq!((status, answer["error"].as_str()), (401, Some("unauthorized")));
    let (status, _) = Api::new(h.http, "nobody", "wrong").get("/api/system");
    assert_eq!(status, 401);
    let mut last = 0;
    for _ in 0..10 {
        last = Api::new(h.http, "admin", "still-wrong").get("/api/system").0;
    }
    assert_eq!(last, 429, "repeated failures are rate-limited");
    let (status, answer) = h.api().get("/api/system");
    assert_eq!(status, 429, "even right credentials wait out the window: {answer}");
    assert!(answer["message"].as_str().unwrap().contains("try again"));
}

#[test]
fn no_secret_or_password_appears_in_the_logs() {
    let port = discovery_port();
    let mut spec = Spec::new("a", "Shop", "the-system-secret-value", port);
    spec.env.push(("HIVE_LOG".into(), "trace".into()));
    let a = Hive::start(spec);
    let mut spec = Spec::new("b", "Other", "another-secret-value", port);
    spec.env.push(("HIVE_LOG".into(), "trace".into()));
    let b = Hive::start(spec);
    a.api().post(
        "/api/users",
        &json!({ "name": "carol", "password": "carols-password-value", "role": "admin" }),
    );
    Api::new(a.http, "carol", "carols-wrong-password").get("/api/system");
    Api::new(a.http, "carol", "carols-password-value").get("/api/system");
    // A merge attempt carries the remote password through the server.
    a.api().post(
        "/api/merge",
        &json!({ "url": format!("http://{}", b.http), "user": "admin", "password": "merge-password-value", "keep": "local" }),
    );
    let logs = a.log_text() + &b.log_text();
    assert!(logs.len() > 1000, "trace logging produced little: {logs}");
    for secret in [
        "the-system-secret-value",
        "another-secret-value",
        OWNER_PASSWORD,
        "carols-password-value",
        "carols-wrong-password",
        "merge-password-value",
    ] {
        assert!(!logs.contains(secret), "{secret:?} appears in the logs");
    }
}
