//! `GET /metrics` in the Prometheus text format.

use super::openapi::Unavailable;
use super::{ApiError, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;

/// Prometheus metrics of the answering server, without credentials.
///
/// Servers, links, replication, discovery, logins and video relaying, in the Prometheus text
/// format; scrape every server.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        Unavailable,
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (peers, online, servers, cameras, txns, entries, pending, sync) = state
        .handle
        .read(|n| {
            (
                n.linked_peers().count(),
                n.online_servers().len(),
                n.servers().count(),
                n.cameras().count(),
                n.store().vector().values().sum::<u64>(),
                n.store().len(),
                n.sync_pending_origins(),
                n.sync_stats(),
            )
        })
        .await?;
    let traffic = state.stats.read();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("hive_peers_linked", "gauge", "Servers of the system linked directly.", peers as u64);
    metric(
        "hive_servers_online",
        "gauge",
        "Servers of the system reachable, this one included.",
        online as u64,
    );
    metric("hive_servers", "gauge", "Servers of the system.", servers as u64);
    metric("hive_cameras", "gauge", "Cameras of the system.", cameras as u64);
    metric("hive_transactions", "gauge", "Transactions held, all origins.", txns);
    metric("hive_store_entries", "gauge", "Entries of the replicated store.", entries as u64);
    metric(
        "hive_sync_lag_origins",
        "gauge",
        "Origins whose writes this server knows it lacks (pulls outstanding or waiting).",
        pending as u64,
    );
    metric(
        "hive_sync_transactions_received_total",
        "counter",
        "Transactions received from peers.",
        sync.txns_received,
    );
    metric(
        "hive_sync_transactions_new_total",
        "counter",
        "Received transactions that were new.",
        sync.txns_new,
    );
    metric(
        "hive_link_bytes_sent_total",
        "counter",
        "Bytes written to peer links.",
        traffic.link_bytes_sent,
    );
    metric(
        "hive_link_bytes_received_total",
        "counter",
        "Bytes read from peer links.",
        traffic.link_bytes_received,
    );
    metric("hive_beacons_sent_total", "counter", "Discovery beacons sent.", traffic.beacons_sent);
    metric(
        "hive_beacon_bytes_sent_total",
        "counter",
        "Bytes of discovery beacons sent.",
        traffic.beacon_bytes_sent,
    );
    metric(
        "hive_link_handshakes_failed_total",
        "counter",
        "Accepted connections whose Noise handshake failed (wrong secret, tampering, timeout).",
        traffic.handshakes_failed,
    );
    metric(
        "hive_link_half_open_refused_total",
        "counter",
        "Connections closed at once because too many were still in their handshake.",
        traffic.half_open_refused,
    );
    metric(
        "hive_password_derivations_total",
        "counter",
        "Password key derivations (argon2id) run: one per checked login or new password.",
        state.passwords.derivations(),
    );
    let hive = state.video.upgrade().and_then(|v| v.hive.get()?.upgrade());
    if let Some(hive) = hive {
        use std::sync::atomic::Ordering::Relaxed;
        let relay = &hive.stats;
        metric(
            "hive_media_flows_to_servers",
            "gauge",
            "Video flows this server sends to other servers now (each relay pulls one).",
            relay.flows_to_servers.load(Relaxed),
        );
        metric(
            "hive_media_flows_to_servers_total",
            "counter",
            "Video flows sent to other servers since start.",
            relay.flows_to_servers_total.load(Relaxed),
        );
        metric(
            "hive_media_relays_open",
            "gauge",
            "Live streams of cameras recorded elsewhere that this server relays now.",
            hive.relays_open() as u64,
        );
        metric(
            "hive_media_upstreams_opened_total",
            "counter",
            "Video flows this server asked of other servers since start.",
            relay.upstreams_opened_total.load(Relaxed),
        );
        metric(
            "hive_media_channels_dialled_back_total",
            "counter",
            "Media channels this server dialled because a server it linked to could not dial it.",
            relay.channels_dialled_back_total.load(Relaxed),
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
