//! The web UI in Debian's Chromium (headless, over WebDriver) against three real servers and
//! a test camera server: log in, watch servers go offline and cameras move, merge a fourth
//! server through the dialog, play live video through a server that does not record it, seek
//! in the archive, and a viewer sees no admin controls. Screenshots of every page go to
//! `target/screenshots/` for review; the times a person waits are printed as figures.

use hive_tests::browser::{counter_region, video_shows_picture, Browser, DESKTOP, PHONE};
use hive_tests::video::{
    fast_failover_servers, now_ms, require_ffmpeg, test_cameras, wait_for_recorder,
};
use hive_tests::{free_port, ApiTransport, Hive, Spec, CONVERGE, OWNER_PASSWORD};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn https(name: &str, system: &str, secret: &str, port: u16) -> Spec {
    let mut spec = Spec::new(name, system, secret, port);
    spec.api = ApiTransport::SelfSigned;
    spec
}

fn server_row(id: &str) -> String {
    format!("tr.server[data-id='{id}']")
}

#[test]
fn an_administrator_runs_the_hive_from_a_browser() {
    require_ffmpeg();
    let shots = shots_dir();
    let camera_port = free_port();
    let _cameras = test_cameras(3, camera_port, None, &[]);
    let mut servers = fast_failover_servers(&["a", "b", "c"], |name, port| {
        https(name, "Campus", "secret-campus", port)
    });
    let ids: Vec<String> =
        servers.iter().map(|h| h.system()["server_id"].as_str().unwrap().to_owned()).collect();
    // One camera added through each server: each records its own.
    let mut cameras = Vec::new();
    for (i, h) in servers.iter().enumerate() {
        let url = format!("rtsp://127.0.0.1:{camera_port}/cam{}", i + 1);
        let (status, cam) =
            h.api().post("/api/cameras", &json!({ "name": format!("cam-{}", i + 1), "url": url }));
        assert_eq!(status, 201, "{cam}");
        cameras.push(cam["id"].as_str().unwrap().to_owned());
    }
    let started_ms = now_ms();
    let refs: Vec<&Hive> = servers.iter().collect();
    let recorder_of_2 = wait_for_recorder(&refs, &cameras[1]);
    assert_eq!(recorder_of_2, 1, "cam-2 is recorded by b, where it was added");
    let base = servers[0].url();

    let browser = Browser::start(DESKTOP, &shots);
    browser.goto(&format!("{base}/"));
    browser.wait_until(
        "the login form",
        "document.querySelector('#login-name')",
        Duration::from_secs(20),
    );
    browser.screenshot("login");
    // A wrong password is refused in words, and the page stays on the form.
    browser.fill("#login-name", "admin");
    browser.fill("#login-password", "not-the-password");
    browser.click("#login-submit");
    browser.wait_until(
        "the refusal in words",
        "document.querySelector('#login-error').textContent.length > 0",
        Duration::from_secs(20),
    );
    let to_interactive = browser.log_in(&base, "admin", OWNER_PASSWORD);
    println!("figure: login to the system page interactive: {} ms", to_interactive.as_millis());
    let cookie = browser.eval("return document.cookie;");
    assert_eq!(cookie, json!(""), "the session cookie is HttpOnly: no script reads it");

    // Three servers online.
    browser.wait_until(
        "three servers online",
        "document.querySelectorAll('tr.server.online').length === 3",
        CONVERGE,
    );
    browser.screenshot("system");

    // Live video of cam-2 (recorded by b) through a.
    let started = Instant::now();
    browser.goto(&format!("{base}/#/camera/{}", cameras[1]));
    let first_frame = browser.wait_until(
        "live video through a",
        &video_shows_picture("#live-video"),
        Duration::from_secs(30),
    );
    println!(
        "figure: live view to first picture through a proxy: {} ms",
        started.elapsed().as_millis()
    );
    let _ = first_frame;
    let t0 = browser.eval("return document.querySelector('#live-video').currentTime;");
    std::thread::sleep(Duration::from_secs(2));
    let t1 = browser.eval("return document.querySelector('#live-video').currentTime;");
    assert!(
        t1.as_f64().unwrap() > t0.as_f64().unwrap() + 1.0,
        "live video plays: currentTime {t0} then {t1}"
    );
    browser.screenshot("camera-live");

    // Seek into the archive: the burned-in counter shows another frame and the clock a
    // time near the position asked for.
    let live_region = browser.eval(&counter_region("#live-video"));
    let pos_ms = started_ms + 3_000;
    let started = Instant::now();
    browser.eval(&format!("window.hive.playAt({pos_ms}); return true;"));
    browser.wait_until(
        "archive playback at the position",
        &format!(
            "window.hive.state().mode === 'archive' && Math.abs(window.hive.state().clock_ms - {pos_ms}) < 3000 \
             && {}",
            video_shows_picture("#live-video")
        ),
        Duration::from_secs(30),
    );
    println!("figure: archive seek to first picture: {} ms", started.elapsed().as_millis());
    let archive_region = browser.eval(&counter_region("#live-video"));
    assert_ne!(live_region, archive_region, "the burned-in counter region changed with the seek");
    browser.screenshot("camera-archive");
    browser.click("#live-button");
    browser.wait_until(
        "back to live",
        "window.hive.state().mode === 'live'",
        Duration::from_secs(10),
    );

    // The grid plays several cameras at once.
    browser.goto(&format!("{base}/#/grid"));
    browser.wait_until(
        "three cameras playing in the grid",
        "[...document.querySelectorAll('video.grid-video')].filter(v => v.readyState >= 2 && v.currentTime > 0).length >= 3",
        Duration::from_secs(30),
    );
    browser.screenshot("grid");

    // Kill c: its row turns offline and its camera moves to a server that is alive.
    browser.goto(&format!("{base}/#/system"));
    browser.wait_until(
        "the system page",
        "document.querySelectorAll('tr.server.online').length === 3",
        CONVERGE,
    );
    servers[2].kill9();
    let killed = Instant::now();
    browser.wait_until(
        "c offline on the page",
        &format!(
            "document.querySelector(\"{} td.status\").textContent.trim() === 'offline'",
            server_row(&ids[2])
        ),
        Duration::from_secs(30),
    );
    println!("figure: server killed to shown offline: {} ms", killed.elapsed().as_millis());
    browser.screenshot("system-server-offline");
    browser.goto(&format!("{base}/#/cameras"));
    let c_name = "c";
    browser.wait_until(
        "c's camera moved to a live server",
        &format!(
            "(() => {{ const r = document.querySelector(\"tr.camera[data-id='{}'] .recorder\"); \
             return r && r.textContent.trim() !== '' && r.textContent.trim() !== '{c_name}'; }})()",
            cameras[2]
        ),
        Duration::from_secs(60),
    );
    browser.screenshot("cameras");

    // A fourth server of another system is merged through the dialog.
    let port = servers[0].spec.discovery_port;
    let d = Hive::start(https("d", "Annex", "secret-annex", port));
    browser.goto(&format!("{base}/#/system"));
    browser.wait_until(
        "the system page",
        "document.querySelectorAll('tr.server').length === 3",
        CONVERGE,
    );
    browser.click("#merge-button");
    browser.wait_until(
        "the merge dialog",
        "document.querySelector('#merge-dialog').open",
        Duration::from_secs(10),
    );
    browser.fill("#merge-url", &d.url());
    browser.fill("#merge-user", "admin");
    browser.fill("#merge-password", OWNER_PASSWORD);
    browser.select("#merge-keep", "local");
    browser.screenshot("merge-dialog");
    browser.click("#merge-submit");
    browser.wait_until(
        "four servers",
        "document.querySelectorAll('tr.server').length === 4",
        CONVERGE,
    );
    browser.screenshot("system-merged");

    // Licenses and users pages.
    browser.goto(&format!("{base}/#/licenses"));
    browser.wait_until(
        "the licenses page",
        "document.querySelector('#license-total')",
        Duration::from_secs(10),
    );
    browser.screenshot("licenses");
    let (status, viewer) = servers[0].api().post(
        "/api/users",
        &json!({ "name": "guard", "password": "guard-password-1", "role": "viewer" }),
    );
    assert_eq!(status, 201, "{viewer}");
    browser.goto(&format!("{base}/#/users"));
    browser.wait_until(
        "the users page",
        "document.querySelector(\"tr.user[data-name='guard']\")",
        CONVERGE,
    );
    browser.screenshot("users");

    // The phone viewport: nothing wider than the screen.
    browser.resize(PHONE);
    for page in ["system", "cameras"] {
        browser.goto(&format!("{base}/#/{page}"));
        browser.wait_until(
            &format!("the {page} page on a phone"),
            "document.querySelector('#whoami') && document.documentElement.scrollWidth <= window.innerWidth + 1",
            Duration::from_secs(10),
        );
        browser.screenshot(&format!("phone-{page}"));
    }
    browser.resize(DESKTOP);

    // Log out; a viewer logs in and sees no admin control, and the API refuses one anyway.
    browser.click("#logout");
    browser.wait_until(
        "the login form",
        "document.querySelector('#login-name')",
        Duration::from_secs(10),
    );
    browser.log_in(&base, "guard", "guard-password-1");
    for page in ["system", "cameras", "licenses", "users"] {
        browser.goto(&format!("{base}/#/{page}"));
        browser.wait_until(
            &format!("the {page} page as a viewer"),
            "document.querySelector('#whoami') && document.querySelector('#whoami').textContent.includes('viewer')",
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_millis(300));
        let shown = browser.eval(
            "return [...document.querySelectorAll('.admin-only')].filter(e => e.offsetParent !== null).map(e => e.outerHTML.slice(0, 80));",
        );
        assert_eq!(shown, json!([]), "a viewer sees no admin control on {page}");
    }
    browser.goto(&format!("{base}/#/system"));
    browser.wait_until(
        "the system page as a viewer",
        "document.querySelectorAll('tr.server').length === 4",
        CONVERGE,
    );
    browser.screenshot("viewer-system");
    let refused = browser.eval(
        "return (async () => { const s = await (await fetch('/api/session')).json(); \
         const r = await fetch('/api/cameras', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, \
         body: JSON.stringify({ name: 'x', url: 'rtsp://127.0.0.1/x' }) }); return r.status; })();",
    );
    assert_eq!(refused, json!(403), "the API refuses a viewer's change");
    drop(d);
    servers.clear();
}
