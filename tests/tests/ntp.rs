//! The SNTP client against a real NTP server (chronyd serving this machine's clock on
//! loopback) and against hostile "servers": a silent one and ones replying garbage, a wrong
//! origin timestamp, a kiss-o'-death, an unsynchronised stratum.

use hive::time::{query, SntpError, SntpPoller};
use hive_tests::chrony::{self, Chrony};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// Queries made against chronyd: a full poller window.
const QUERIES: usize = 8;

/// A monotonic clock in µs from `start`.
fn mono_from(start: Instant) -> impl Fn() -> u64 + Sync {
    move || start.elapsed().as_micros() as u64
}

fn unix_now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test]
async fn chronyd_gives_this_machines_time_through_query_and_the_poller() {
    let mut chrony = Chrony::start();
    let mono_us = mono_from(Instant::now());
    let first = chrony.serving(&mono_us).await;
    assert!(matches!(first.stratum, chrony::STRATUM..=9), "{first:?}");

    let mut poller = SntpPoller::new();
    for _ in 0..QUERIES {
        let reply = query(chrony.addr, &mono_us, Duration::from_secs(2)).await.unwrap();
        assert!(matches!(reply.stratum, chrony::STRATUM..=9), "{reply:?}");
        assert!(reply.received_mono_us >= reply.sent_mono_us, "{reply:?}");
        assert!(reply.server_sent_unix_us >= reply.server_received_unix_us, "{reply:?}");
        poller.push(reply);
    }
    let polled = poller.poll(chrony.addr, &mono_us, Duration::from_secs(2)).await.unwrap();
    assert_eq!(poller.len(), QUERIES);
    let best = poller.best().unwrap();
    assert_eq!(polled, best);
    // Loopback: the best of eight round trips is far below a LAN's.
    assert!(best.round_trip_us() < 100_000, "{best:?}");
    // chronyd serves this machine's clock, so local monotonic time plus the offset is the
    // machine's wall time.
    let system_us = mono_us() as i64 + best.offset_us();
    let error_us = (system_us - unix_now_us()).abs();
    assert!(error_us < 50_000, "system time is {error_us} µs off the machine's clock: {best:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mono_us = mono_from(Instant::now());
    let err = query(silent.local_addr().unwrap(), &mono_us, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, SntpError::Timeout), "{err:?}");
}

/// A "server" answering every request with `reply(request)`.
async fn hostile(reply: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut request = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut request).await {
            let _ = socket.send_to(&reply(&request[..len]), from).await;
        }
    });
    addr
}

/// A well-formed stratum-2 reply to `request` (its transmit timestamp echoed as origin).
fn honest(request: &[u8]) -> Vec<u8> {
    let now_ntp_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2_208_988_800;
    let mut reply = vec![0u8; 48];
    reply[0] = 4 << 3 | 4; // version 4, server mode
    reply[1] = 2;
    reply[24..32].copy_from_slice(&request[40..48]);
    reply[32..40].copy_from_slice(&(now_ntp_s << 32).to_be_bytes());
    reply[40..48].copy_from_slice(&(now_ntp_s << 32).to_be_bytes());
    reply
}

async fn query_hostile(reply: fn(&[u8]) -> Vec<u8>) -> Result<hive::time::NtpReply, SntpError> {
    let mono_us = mono_from(Instant::now());
    query(hostile(reply).await, &mono_us, Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_hostile_server_gets_the_matching_typed_error() {
    let reply = query_hostile(honest).await.unwrap();
    assert_eq!(reply.stratum, 2);

    let err = query_hostile(|_| b"garbage".to_vec()).await.unwrap_err();
    assert!(matches!(err, SntpError::TooShort { len: 7 }), "{err:?}");

    let err = query_hostile(|_| vec![0xff; 48]).await.unwrap_err();
    assert!(matches!(err, SntpError::NotServerReply { mode: 7 }), "{err:?}");

    let err = query_hostile(|_| vec![0x23; 48]).await.unwrap_err();
    assert!(matches!(err, SntpError::NotServerReply { mode: 3 }), "{err:?}");

    let err = query_hostile(|request| {
        let mut r = honest(request);
        r[31] ^= 1;
        r
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SntpError::OriginMismatch), "{err:?}");

    let err = query_hostile(|request| {
        let mut r = honest(request);
        r[1] = 0;
        r[12..16].copy_from_slice(b"DENY");
        r
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SntpError::KissOfDeath { code } if &code == b"DENY"), "{err:?}");

    let err = query_hostile(|request| {
        let mut r = honest(request);
        r[1] = 16;
        r
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SntpError::Unsynchronised { stratum: 16 }), "{err:?}");

    let err = query_hostile(|request| {
        let mut r = honest(request);
        r[0] |= 3 << 6;
        r
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SntpError::LeapAlarm), "{err:?}");

    let err = query_hostile(|request| {
        let mut r = honest(request);
        r[40..48].fill(0);
        r
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SntpError::ZeroTransmitTime), "{err:?}");
}
