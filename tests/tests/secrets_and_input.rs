//! Secrets at rest and hostile input against a real server: the data directory and every
//! file in it are owner-only, backups are owner-only files that only the owner may take,
//! viewers never see camera passwords, names refuse control characters, `--init-owner`
//! follows the API's password rule, and every error — axum's own included — is JSON.

use hive_tests::*;
use serde_json::json;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir` with its mode.
fn file_modes(dir: &Path) -> Vec<(String, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), mode(&p)))
        // Directories (the archive) are 0700: as private as 0600 files.
        .map(|(p, m)| (p, if m == 0o700 { 0o600 } else { m }))
        .collect()
}

#[test]
fn the_data_directory_is_0700_and_every_file_in_it_0600_even_if_opened_up_before() {
    let mut h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    h.api().post("/api/settings", &json!({ "name": "motd", "value": "hello" }));
    assert_eq!(mode(&h.data_dir), 0o700);
    let files = file_modes(&h.data_dir);
    assert!(!files.is_empty());
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");

    // As an older version left them: world-readable.
    h.stop();
    set_mode(&h.data_dir, 0o755);
    for (file, _) in &files {
        set_mode(Path::new(file), 0o644);
    }
    h.spawn();
    h.api().post("/api/settings", &json!({ "name": "motd2", "value": "hello" }));
    assert_eq!(mode(&h.data_dir), 0o700);
    let files = file_modes(&h.data_dir);
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");
}

#[test]
fn a_backup_is_the_owners_alone_and_its_file_is_0600() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let (status, _) = h.api().post(
        "/api/users",
        &json!({ "name": "deputy", "password": "deputy-password", "role": "admin" }),
    );
    assert_eq!(status, 201);
    let (status, answer) = Api::new(h.http, "deputy", "deputy-password").get("/api/backup");
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")), "{answer}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hive.backup");
    std::fs::write(&out, b"an older, world-readable file").unwrap();
    set_mode(&out, 0o644);
    let run = Command::new(hive_bin())
        .args(["backup", "--out", out.to_str().unwrap()])
        .args(["--url", &format!("http://{}", h.http), "--user", "admin"])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(mode(&out), 0o600);
    assert!(std::fs::metadata(&out).unwrap().len() > 100, "the backup was written");
}

#[test]
fn a_viewer_never_sees_a_camera_password() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let url = "rtsp://cam-user:cam-secret-9@10.0.0.5:554/live";
    let (status, camera) = h.api().post("/api/cameras", &json!({ "name": "Gate", "url": url }));
    assert_eq!(status, 201, "{camera}");
    let id = camera["id"].as_str().unwrap();
    h.api().post(
        "/api/users",
        &json!({ "name": "watcher", "password": "watcher-password", "role": "viewer" }),
    );
    let viewer = Api::new(h.http, "watcher", "watcher-password");
    let (_, list) = viewer.get("/api/cameras");
    let (_, one) = viewer.get(&format!("/api/cameras/{id}"));
    let shown = "rtsp://cam-user:***@10.0.0.5:554/live";
    assert_eq!(list[0]["url"], shown, "{list}");
    assert_eq!(one["url"], shown, "{one}");
    assert!(!list.to_string().contains("cam-secret-9") && !one.to_string().contains("cam-secret"));
    // Administrators manage cameras and see them whole.
    assert_eq!(h.api().get(&format!("/api/cameras/{id}")).1["url"], url);
}

#[test]
fn names_with_nul_or_newline_are_refused_and_cannot_forge_a_log_line() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let api = h.api();
    for name in ["eve\nINFO hive: forged", "nul\u{0}byte", "bell\u{7}"] {
        let body = json!({ "name": name, "password": "long-enough-pw", "role": "viewer" });
        let (status, answer) = api.post("/api/users", &body);
        assert_eq!(status, 400, "{name:?}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("control"), "{answer}");
        let (status, answer) =
            api.post("/api/cameras", &json!({ "name": name, "url": "rtsp://127.0.0.5/x" }));
        assert_eq!(status, 400, "{name:?}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("control"), "{answer}");
    }
    assert!(camera_names(&h).is_empty());
    let (_, users) = api.get("/api/users");
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // A newline in a Basic-auth user name is logged escaped, on the failed login's own line.
    let forged = "FORGED-LINE user=admin logged in";
    let answer = get_as_from(
        h.http,
        Ipv4Addr::new(127, 0, 0, 3),
        "/api/system",
        &format!("mallory\n{forged}"),
        "wrong-password",
    );
    assert_eq!(answer.status, 401);
    let logs = wait_for("the failed login in the log", CONVERGE, || {
        let logs = h.log_text();
        (logs.contains("failed login"), logs)
    });
    assert!(logs.contains(&format!("mallory\\n{forged}")), "{logs}");
    assert!(!logs.lines().any(|l| l.starts_with(forged)), "{logs}");
}

#[test]
fn init_owner_with_a_one_character_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let group = format!("239.255.11.11:{}", discovery_port());
    let out = Command::new(hive_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--system-name", "Shop", "--discovery-group", &group])
        .args(["--discovery-interface", "127.0.0.1"])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("HIVE_SECRET", join_token("secret-shop"))
        .env("HIVE_INIT_OWNER", "admin:x")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 1-character owner password was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("init-owner") && err.contains("at least 8 characters"), "{err}");
    assert!(!dir.path().join("data").exists(), "refused before anything was written");
}

#[test]
fn every_error_is_json_even_the_ones_axum_makes() {
    let h = Hive::start(Spec::new("a", "Shop", "secret-shop", discovery_port()));
    let auth = {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{OWNER_PASSWORD}"));
        format!("Authorization: Basic {token}\r\n")
    };
    let send = |head: &str, body: &str| {
        let request =
            format!("{head} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n{body}", h.http);
        http_raw(h.http, Ipv4Addr::LOCALHOST, request.as_bytes())
    };
    let json_body = |text: &str| {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}", text.len())
    };
    let oversized = json_body(&format!("{{\"name\": \"{}\"}}", "x".repeat(3 * 1024 * 1024)));
    let cases = [
        ("bad percent-encoding", send("GET /api/cameras/%FF%FE", "\r\n"), 400, "bad_request"),
        ("bad percent-encoding", send("GET /api/users/%C3%28", "\r\n"), 400, "bad_request"),
        ("missing route", send("GET /api/nothing-here", "\r\n"), 404, "not_found"),
        (
            "method not allowed",
            send("PUT /api/system", &json_body("{}")),
            405,
            "method_not_allowed",
        ),
        ("bad JSON", send("POST /api/cameras", &json_body("{")), 400, "bad_request"),
        (
            "wrong content type",
            send("POST /api/cameras", "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"),
            415,
            "unsupported_media_type",
        ),
        ("oversized body", send("POST /api/cameras", &oversized), 413, "payload_too_large"),
    ];
    for (what, answer, status, code) in cases {
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        let content_type = answer.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{what}: {answer:?}");
        assert_eq!(answer.body["error"], code, "{what}: {answer:?}");
        assert!(answer.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer:?}");
    }
    assert!(camera_names(&h).is_empty());
}
