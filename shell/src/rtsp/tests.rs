//! The RTSP server against hostile and broken clients, over real loopback sockets (and an
//! in-memory pipe where time must be skipped): each attack gets the right status or a closed
//! connection, costs bounded memory and time, and never disturbs another client.

use super::connection::ConnectionError;
use super::*;
use crate::video::testcamera::{Clip, TestCameras};
use hive_media::frame::Codec;
use hive_media::rtsp::reader::REQUEST_MAX;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `viewer:pw` as Basic credentials.
const AUTH: &str = "Authorization: Basic dmlld2VyOnB3\r\n";

fn cameras() -> Arc<TestCameras> {
    let main = Clip::bundled(Codec::H264);
    Arc::new(TestCameras::new(1, main, Clip::bundled_sub(), Some("viewer:pw"), false))
}

/// A test camera server on a loopback port; its address.
async fn server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, cameras(), None));
    addr
}

/// Sends `request` and reads one response head (up to the blank line).
async fn ask(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_head(stream).await
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Whether the server closed the connection (reads reach the end within a few seconds).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = vec![0u8; 64 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn request(method: &str, url: &str, cseq: u32, extra: &str) -> String {
    format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}\r\n")
}

#[tokio::test]
async fn garbage_gets_400_and_closes_only_its_own_connection() {
    let addr = server().await;
    let mut bystander = TcpStream::connect(addr).await.unwrap();
    let mut attacker = TcpStream::connect(addr).await.unwrap();
    let head = ask(&mut attacker, "\x16\x03\x01 not rtsp at all\r\n\r\n").await;
    assert!(head.starts_with("RTSP/1.0 400"), "{head}");
    assert!(closed(&mut attacker).await);
    let url = format!("rtsp://{addr}/cam1");
    let head = ask(&mut bystander, &request("DESCRIBE", &url, 1, AUTH)).await;
    assert!(head.starts_with("RTSP/1.0 200"), "the other client is served: {head}");
}

#[tokio::test]
async fn a_request_over_the_bound_is_refused_before_the_server_reads_much_more() {
    let addr = server().await;
    let mut attacker = TcpStream::connect(addr).await.unwrap();
    let url = format!("rtsp://{addr}/cam1");
    let huge = format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\nX-Pad: {}", "a".repeat(REQUEST_MAX));
    attacker.write_all(huge.as_bytes()).await.unwrap();
    // The server answers and closes without waiting for the end of the header; a client that
    // goes on sending finds the connection gone long before it sent a megabyte more.
    let head = read_head(&mut attacker).await;
    assert!(head.starts_with("RTSP/1.0 400"), "{head}");
    let mut sent = 0usize;
    let chunk = vec![b'a'; 64 << 10];
    while sent < 64 << 20 {
        if attacker.write_all(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < 16 << 20, "the server kept reading: {sent} bytes taken after the bound");
}

#[tokio::test]
async fn each_bad_request_gets_its_status_and_the_connection_goes_on() {
    let addr = server().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let url = format!("rtsp://{addr}/cam1");
    let cases = [
        // No credentials: 401 with a challenge.
        (request("DESCRIBE", &url, 1, ""), "401"),
        (request("DESCRIBE", &format!("rtsp://{addr}/cam9"), 2, AUTH), "404"),
        (request("RECORD", &url, 3, AUTH), "405"),
        // UDP transport: only interleaved TCP is served.
        (
            request(
                "SETUP",
                &format!("{url}/trackID=0"),
                4,
                &format!("{AUTH}Transport: RTP/AVP;unicast;client_port=5000-5001\r\n"),
            ),
            "461",
        ),
        // PLAY with a session the server never gave.
        (request("PLAY", &url, 5, &format!("{AUTH}Session: 12345\r\n")), "454"),
        // A bad position.
        (request("DESCRIBE", &format!("{url}?pos=yesterday"), 6, AUTH), "400"),
        (request("OPTIONS", &url, 7, ""), "200"),
    ];
    for (req, status) in cases {
        let head = ask(&mut client, &req).await;
        assert!(head.starts_with(&format!("RTSP/1.0 {status}")), "{req} -> {head}");
        if status == "401" {
            assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
        }
    }
}

#[tokio::test]
async fn three_wrong_passwords_close_the_connection() {
    let addr = server().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let url = format!("rtsp://{addr}/cam1");
    let wrong = "Authorization: Basic dmlld2VyOm5v\r\n";
    for cseq in 1..=3 {
        let head = ask(&mut client, &request("DESCRIBE", &url, cseq, wrong)).await;
        assert!(head.starts_with("RTSP/1.0 401"), "{head}");
    }
    assert!(closed(&mut client).await, "a fourth guess needs a new connection");
}

#[tokio::test(start_paused = true)]
async fn an_unauthenticated_trickle_loses_its_slot() {
    // One byte every 5 s keeps the connection from being silent, yet it never authenticates.
    let (server_end, mut client) = tokio::io::duplex(64 << 10);
    let cams = cameras();
    let served = tokio::spawn(connection::serve_connection(
        server_end,
        cams,
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let trickle = tokio::spawn(async move {
        for byte in b"DESCRIBE rtsp://x/cam1 RTSP/1.0\r\n".iter().cycle() {
            if client.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let ended = tokio::time::timeout(Duration::from_secs(60), served).await;
    let result = ended.expect("the connection is dropped within the limit").unwrap();
    assert!(matches!(result, Err(ConnectionError::AuthenticationTimeout)), "{result:?}");
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_and_the_camera_goes_on() {
    let (server_end, client) = tokio::io::duplex(16 << 10);
    let cams = cameras();
    tokio::spawn(cams.clone().run(25.0));
    let served = tokio::spawn(connection::serve_connection(
        server_end,
        cams.clone(),
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let (mut rd, mut wr) = tokio::io::split(client);
    let url = "rtsp://127.0.0.1:8554/cam1";
    let transport = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n";
    let setup = request("SETUP", &format!("{url}/trackID=0"), 1, &format!("{AUTH}{transport}"));
    wr.write_all(setup.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        rd.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let session = text
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_owned();
    assert!(text.starts_with("RTSP/1.0 200"), "{text}");
    wr.write_all(request("PLAY", url, 2, &format!("{AUTH}Session: {session}\r\n")).as_bytes())
        .await
        .unwrap();
    // The client reads nothing more: the pipe fills, the write stalls, the server gives up.
    let ended = tokio::time::timeout(Duration::from_secs(100), served).await;
    let result = ended.expect("a stalled client is dropped").unwrap();
    assert!(matches!(result, Err(ConnectionError::Stalled)), "{result:?}");
    // The camera's feed was never held up: a new viewer gets frames at once.
    let target = hive_media::rtsp::target::Target::parse(&url::Url::parse(url).unwrap()).unwrap();
    let mut flow = cams.live(&target).unwrap();
    assert!(flow.recv().await.is_some());
    drop(rd);
}
