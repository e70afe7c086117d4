//! `hive-web-bench`: the web UI's figures (`docs/benchmarks.md`) in Debian's Chromium against
//! real servers on loopback: page load to interactive, a server's death to the page showing
//! it offline, live view to first picture direct and through a proxy, and an archive seek to
//! first picture.
//!
//! ```sh
//! cargo build --release -p hive -p hive-tests
//! HIVE_BIN=target/release/hive target/release/hive-web-bench --trials 20 --markdown /tmp/web.md
//! ```
//!
//! Times are wall clock seen by the test through WebDriver, polled every 20 ms: each includes
//! up to one poll and one WebDriver round trip (a few ms) on top of what a person waits.

use hive_tests::bench::percentiles;
use hive_tests::browser::{video_shows_picture, Browser, DESKTOP};
use hive_tests::video::{fast_failover_servers, now_ms, test_cameras, wait_for_recorder};
use hive_tests::{free_port, wait_for, ApiTransport, Hive, Spec, CONVERGE, OWNER_PASSWORD};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let trials: usize = match value("--trials").map(|t| t.parse()) {
        None => 10,
        Some(Ok(n)) if n > 0 => n,
        _ => return eprintln!("usage: hive-web-bench [--trials N (> 0)] [--markdown FILE]"),
    };
    let markdown = value("--markdown");

    let camera_port = free_port();
    let _cameras = test_cameras(2, camera_port, None, &[]);
    let mut servers = fast_failover_servers(&["a", "b", "c"], |name, port| {
        let mut spec = Spec::new(name, "Bench", "secret-bench", port);
        spec.api = ApiTransport::SelfSigned;
        spec
    });
    let mut cameras = Vec::new();
    for (i, h) in servers.iter().take(2).enumerate() {
        let url = format!("rtsp://127.0.0.1:{camera_port}/cam{}", i + 1);
        let (status, cam) =
            h.api().post("/api/cameras", &json!({ "name": format!("cam-{}", i + 1), "url": url }));
        assert_eq!(status, 201, "{cam}");
        cameras.push(cam["id"].as_str().unwrap().to_owned());
    }
    let refs: Vec<&Hive> = servers.iter().collect();
    assert_eq!(wait_for_recorder(&refs, &cameras[0]), 0, "cam-1 recorded by a");
    assert_eq!(wait_for_recorder(&refs, &cameras[1]), 1, "cam-2 recorded by b");
    let c_id = servers[2].system()["server_id"].as_str().unwrap().to_owned();
    let base = servers[0].url();
    let shots = std::env::temp_dir().join("hive-web-bench");
    let browser = Browser::start(DESKTOP, &shots);
    browser.log_in(&base, "admin", OWNER_PASSWORD);
    browser.wait_until("logged in", "document.querySelectorAll('tr.server').length === 3", LONG);
    // Let a few seconds be recorded for the seeks.
    let recorded_from_ms = now_ms();
    std::thread::sleep(Duration::from_secs(4));

    let mut rows: Vec<(String, String)> = Vec::new();
    let mut report = |name: &str, samples: Vec<f64>| {
        if std::env::var_os("HIVE_BENCH_SAMPLES").is_some() {
            println!("{name}: samples {samples:?}");
        }
        let line = percentiles(samples);
        println!("{name}: {line} ms (p50 / p99 / max)");
        rows.push((name.to_owned(), line));
    };

    // Page load: a fresh load of the page (logged in) until the servers are shown.
    let mut load = Vec::new();
    let mut interactive = Vec::new();
    for i in 0..trials {
        let started = Instant::now();
        browser.goto(&format!("{base}/?load={i}#/system"));
        browser.wait_until(
            "the servers shown",
            "document.querySelectorAll('tr.server.online').length === 3",
            LONG,
        );
        load.push(ms(started.elapsed()));
        let dom =
            browser.eval("return performance.getEntriesByType('navigation')[0].domInteractive;");
        interactive.push(dom.as_f64().unwrap_or(0.0));
        if std::env::var_os("HIVE_BENCH_SAMPLES").is_some() && dom.as_f64().unwrap_or(0.0) > 500.0 {
            let entry = browser.eval("const e = performance.getEntriesByType('navigation')[0]; return [e.fetchStart, e.unloadEventStart, e.redirectStart, e.workerStart, e.domainLookupStart, e.connectStart, e.secureConnectionStart, e.connectEnd, e.requestStart, e.responseStart, e.responseEnd, e.domInteractive, e.nextHopProtocol];");
            println!("slow load {i}: {entry}");
        }
    }
    report("page load to DOM interactive", interactive);
    report("page load to the servers shown (SSE's first event)", load);

    // Live and archive starts, on the camera page, by the page's own player.
    let picture =
        |css: &str| format!("window.hive.state().clock_ms != null && {}", video_shows_picture(css));
    for (label, camera) in
        [("direct (recorded by a)", &cameras[0]), ("through a proxy (recorded by b)", &cameras[1])]
    {
        browser.goto(&format!("{base}/?cam={label}#/camera/{camera}"));
        browser.wait_until("the camera page", &picture("#live-video"), LONG);
        let mut live = Vec::new();
        let mut seek = Vec::new();
        for i in 0..trials {
            let pos_ms = recorded_from_ms + 500 + (i as i64 * 250) % 3_000;
            let started = Instant::now();
            browser.eval(&format!("window.hive.playAt({pos_ms}); return true;"));
            browser.wait_until(
                "archive picture",
                &format!(
                    "window.hive.state().mode === 'archive' && {} && Math.abs(window.hive.state().clock_ms - {pos_ms}) < 2000",
                    picture("#live-video")
                ),
                LONG,
            );
            seek.push(ms(started.elapsed()));
            let started = Instant::now();
            browser.eval("window.hive.live(); return true;");
            browser.wait_until(
                "live picture",
                &format!("window.hive.state().mode === 'live' && {}", picture("#live-video")),
                LONG,
            );
            live.push(ms(started.elapsed()));
        }
        report(&format!("live view to first picture, {label}"), live);
        report(&format!("archive seek to first picture, {label}"), seek);
    }

    // A server's death to the page showing it offline (fast failover timings: a link is found
    // dead after its heartbeats stop).
    browser.goto(&format!("{base}/?death#/system"));
    let status = format!(
        "document.querySelector(\"tr.server[data-id='{c_id}'] td.status\").textContent.trim()"
    );
    let mut death = Vec::new();
    for _ in 0..trials.min(5) {
        browser.wait_until("c online", &format!("{status} === 'online'"), CONVERGE);
        servers[2].kill9();
        let killed = Instant::now();
        browser.wait_until("c offline", &format!("{status} === 'offline'"), LONG);
        death.push(ms(killed.elapsed()));
        servers[2].spawn();
        wait_for("c back", CONVERGE, || hive_tests::merged(&refs_of(&servers)));
    }
    report("server killed (kill -9) to shown offline", death);

    let mut md = format!(
        "Machine: {} × {}; `hive-web-bench --trials {trials}`; Chromium {} headless.\n\n| figure | ms p50 / p99 / max |\n|---|---|\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        hive_tests::bench::cpu_model(),
        chromium_version(),
    );
    for (name, line) in &rows {
        md.push_str(&format!("| {name} | {line} |\n"));
    }
    println!("\n{md}");
    if let Some(path) = markdown {
        std::fs::write(path, md).expect("write markdown");
    }
}

fn refs_of(servers: &[Hive]) -> Vec<&Hive> {
    servers.iter().collect()
}

fn chromium_version() -> String {
    std::process::Command::new(hive_tests::browser::CHROMIUM)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
