//! `hive demo`, as a new user runs it: three servers record their test cameras, and the RTSP
//! URLs it prints play, live and from the archive, from the recorder and through the other
//! servers, in ffprobe/ffmpeg from Debian; and the web UI it points to shows the system with
//! live video in Debian's Chromium.

use hive_tests::browser::{Browser, DESKTOP};
use hive_tests::hive_bin;
use hive_tests::video::{decode, frames, require_ffmpeg, Killed};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_demo_prints_a_url_per_camera_that_plays_live_and_from_the_archive() {
    require_ffmpeg();
    let mut child = Command::new(hive_bin())
        .arg("demo")
        .env("HIVE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Killed(child);
    // Read the demo's output on a thread, line by line, until it says how to watch.
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.starts_with("Archive:")) {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the demo stopped printing:\n{}", printed.join("\n")));
        printed.push(line);
    }
    let text = printed.join("\n");
    let camera_urls: Vec<&str> = printed
        .iter()
        .filter(|l| l.starts_with("  Demo camera") && l.contains("rtsp://"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("rtsp://")))
        .collect();
    assert_eq!(camera_urls.len(), 6, "one URL per camera:\n{text}");
    assert!(
        printed
            .iter()
            .filter(|l| l.starts_with("  Demo camera"))
            .all(|l| l.ends_with("(recording)")),
        "every camera records:\n{text}"
    );
    for url in &camera_urls {
        let n = frames(url, 2);
        assert!(n >= 25, "{n} frames in 2 s from {url}");
    }
    // Each camera on each of the two servers that do not record it: relayed, it plays too.
    let relayed: Vec<&str> = printed
        .iter()
        .filter(|l| l.starts_with("    Demo camera") && l.contains(" via server "))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("rtsp://")))
        .collect();
    assert_eq!(relayed.len(), 12, "two relayed URLs per camera:\n{text}");
    for url in relayed.iter().step_by(5) {
        let n = frames(url, 2);
        assert!(n >= 25, "{n} frames in 2 s through another server from {url}");
    }
    // The printed archive command plays (from the archive's start, as the demo is new).
    let archive = printed
        .iter()
        .find(|l| l.starts_with("Archive:"))
        .and_then(|l| l.split('\'').nth(1))
        .unwrap()
        .to_owned();
    assert!(archive.contains("?pos="), "{archive}");
    let (ok, errors) = decode(&archive, 2);
    assert!(ok && errors.is_empty(), "archive decode of {archive}: {errors}");

    // The web UI it printed: over plain HTTP on loopback (a secure context, so the Secure
    // cookie is kept), the whole system and live video.
    let web = printed
        .iter()
        .skip_while(|l| !l.starts_with("Open the web UI"))
        .nth(1)
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| panic!("no web UI URL:\n{text}"));
    let browser = Browser::start(
        DESKTOP,
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"),
    );
    let long = Duration::from_secs(30);
    browser.log_in(web.trim_end_matches('/'), "admin", "hive-demo");
    browser.wait_until(
        "three servers online",
        "document.querySelectorAll('tr.server.online').length === 3",
        long,
    );
    browser.screenshot("demo-system");
    browser.goto(&format!("{web}#/grid"));
    browser.wait_until(
        "all six cameras live in the grid",
        "[...document.querySelectorAll('video.grid-video')].filter(v => v.readyState >= 2 && v.currentTime > 0.5).length === 6",
        long,
    );
    browser.screenshot("demo-grid");
}
