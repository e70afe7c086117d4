//! One system time across real processes whose wall clocks disagree: three servers on
//! loopback with wall clocks skewed by −7 s, 0 and +11 s (`HIVE_TEST_WALL_SKEW_MS`) agree
//! through `/api/time` on their system time, each reporting the offset it applies to its own
//! wall clock; with `ntp` pointing at a local chronyd, that server becomes the primary and
//! reports its time as external.

use hive_tests::chrony::Chrony;
use hive_tests::{discovery_port, merged, wait_for, Hive, Spec, CONVERGE};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Wall-clock skews of the three servers, ms.
const SKEWS_MS: [i64; 3] = [-7_000, 0, 11_000];
/// How far apart the servers' system times may be, read in quick succession and corrected
/// by each request's round trip.
const AGREEMENT_MS: i64 = 50;
/// How far a reported offset may be from the skew difference it should undo.
const OFFSET_SLACK_MS: i64 = 100;

/// Three skewed servers of one system, the first `extra` arguments given to each by index.
fn skewed_servers(system: &str, extra: [Vec<String>; 3]) -> Vec<Hive> {
    let port = discovery_port();
    let hives: Vec<Hive> = SKEWS_MS
        .iter()
        .zip(extra)
        .enumerate()
        .map(|(i, (skew, extra))| {
            let mut spec = Spec::new(&format!("clock-{i}"), system, "secret-clocks", port);
            spec.env.push(("HIVE_TEST_WALL_SKEW_MS".into(), skew.to_string()));
            spec.extra = extra;
            Hive::start(spec)
        })
        .collect();
    let refs: Vec<&Hive> = hives.iter().collect();
    wait_for("three skewed servers to merge", CONVERGE, || merged(&refs));
    hives
}

/// `/api/time` of each server, with each reading's system time moved to the moment the
/// first request was sent (half the round trip after its own send).
fn readings(hives: &[Hive]) -> Vec<(Value, i64)> {
    let start = Instant::now();
    hives
        .iter()
        .map(|h| {
            let sent = start.elapsed();
            let (_, t) = h.api().get("/api/time");
            let midpoint_ms = ((sent + start.elapsed()) / 2).as_millis() as i64;
            let at_start_ms = t["system_ms"].as_i64().unwrap_or(0) - midpoint_ms;
            (t, at_start_ms)
        })
        .collect()
}

/// Polls until every server is synced and their system times agree; returns the readings.
fn agreed(hives: &[Hive]) -> Vec<(Value, i64)> {
    wait_for("synced servers whose system times agree", CONVERGE, || {
        let r = readings(hives);
        let synced = r.iter().all(|(t, _)| t["synced"] == true);
        let one_primary = r.iter().all(|(t, _)| t["primary"] == r[0].0["primary"]);
        let times = r.iter().map(|(_, ms)| *ms);
        let spread_ms = times.clone().max().unwrap_or(0) - times.min().unwrap_or(0);
        (synced && one_primary && spread_ms <= AGREEMENT_MS, r)
    })
}

/// The index of the server whose id is `id`.
fn index_of(hives: &[Hive], id: &Value) -> usize {
    hives.iter().position(|h| h.system()["server_id"] == *id).expect("the primary is one of them")
}

/// Each server's offset undoes the difference between its skew and the primary's.
fn assert_offsets_undo_skews(readings: &[(Value, i64)], reference_skew_ms: i64) {
    for (i, (t, _)) in readings.iter().enumerate() {
        let want_ms = reference_skew_ms - SKEWS_MS[i];
        let offset_ms = t["offset_from_wall_ms"].as_i64().unwrap();
        assert!(
            (offset_ms - want_ms).abs() <= OFFSET_SLACK_MS,
            "server {i} (skew {} ms) applies {offset_ms} ms, not about {want_ms}: {readings:#?}",
            SKEWS_MS[i]
        );
    }
}

#[test]
fn servers_with_skewed_wall_clocks_agree_on_system_time_and_report_their_offsets() {
    let hives = skewed_servers("Clocks", Default::default());
    let started = Instant::now();
    let r = agreed(&hives);
    eprintln!("time sync: three skewed servers agree after {:?}", started.elapsed());
    let primary = index_of(&hives, &r[0].0["primary"]);
    assert_eq!(r[primary].0["source"], "own", "{r:#?}");
    assert_offsets_undo_skews(&r, SKEWS_MS[primary]);
}

#[test]
fn a_server_taking_time_from_ntp_becomes_the_primary_and_reports_an_external_source() {
    let mut chrony = Chrony::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let start = Instant::now();
    let mono_us = move || start.elapsed().as_micros() as u64;
    runtime.block_on(chrony.serving(&mono_us));
    // The server skewed +11 s takes the machine's true time from chronyd.
    let ntp = vec!["--ntp".to_owned(), chrony.addr.to_string()];
    let hives = skewed_servers("Ntp", [Vec::new(), Vec::new(), ntp]);
    // Servers that followed another primary first catch down at half speed, never backwards.
    let limit = Duration::from_secs(60);
    let r = wait_for("the NTP server's client as primary, external", limit, || {
        let r = agreed(&hives);
        let primary = index_of(&hives, &r[0].0["primary"]);
        (primary == 2 && r[2].0["source"] == "external", r)
    });
    // chronyd serves the unskewed clock: every offset undoes the server's own skew.
    assert_offsets_undo_skews(&r, 0);
}
