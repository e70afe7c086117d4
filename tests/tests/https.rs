//! HTTPS for the API: served by default with a certificate kept in the data directory or
//! supplied by the administrator; the CLI pins it on first use or trusts a CA; and every
//! connection has timeouts, so slow (slowloris) and idle clients are cut off.

use hive_tests::tls::presented_certificate;
use hive_tests::*;
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Far longer than the server's 10 s header and handshake timeouts: the tests assert that a
/// connection is closed, not when.
const CUT_OFF_LIMIT: Duration = Duration::from_secs(60);

fn spec(name: &str, system: &str, api: ApiTransport) -> Spec {
    let secret = format!("secret-{system}");
    Spec { api, ..Spec::new(name, system, &secret, discovery_port()) }
}

/// The SHA-256 fingerprint as the CLI shows it: colon-separated upper-case hex.
fn fingerprint(der: &[u8]) -> String {
    let hex: Vec<String> = Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// `hive status --json` against `h` as its owner, with `args` (how to trust it).
fn status(h: &Hive, args: &[&str]) -> Output {
    Command::new(hive_bin())
        .args(["status", "--json", "--url", &h.url(), "--user", "admin"])
        .args(args)
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .env_remove("HIVE_CA")
        .env_remove("HIVE_KNOWN_SERVERS")
        .output()
        .unwrap()
}

fn pinning_in(known_servers: &Path) -> [&str; 2] {
    ["--known-servers", known_servers.to_str().unwrap()]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_default_server_answers_https_with_the_certificate_kept_in_its_data_dir() {
    let mut h = Hive::start(spec("tls-default", "Default", ApiTransport::SelfSigned));
    let kept = h.certificate().expect("a certificate in the data directory");
    let (presented, version) = presented_certificate(h.http).unwrap();
    assert_eq!(presented, kept, "the server presents the certificate in its data directory");
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    let (code, hello) = h.api().get("/api/hello");
    assert_eq!(code, 200, "{hello}");
    let key_mode = std::fs::metadata(h.data_dir.join("api-key.pem")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600, "the private key is readable by its owner only");

    h.stop();
    h.spawn();
    let (again, _) = presented_certificate(h.http).unwrap();
    assert_eq!(again, kept, "a restart keeps the certificate, so pins stay valid");
}

#[test]
fn plain_http_to_the_https_port_gets_no_answer() {
    let h = Hive::start(spec("tls-plain-probe", "Probe", ApiTransport::SelfSigned));
    let plain =
        ureq::get(&format!("http://{}/api/hello", h.http)).timeout(Duration::from_secs(30)).call();
    assert!(matches!(plain, Err(ureq::Error::Transport(_))), "{plain:?}");
    let out = Command::new(hive_bin())
        .args(["status", "--url", &format!("http://{}", h.http)])
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("use https://"), "the CLI says why: {}", stderr(&out));
    assert_eq!(h.api().get("/api/hello").0, 200, "HTTPS still answers");
}

#[test]
fn the_cli_pins_a_certificate_on_first_use_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("config").join("known_servers");
    let mut h = Hive::start(spec("tls-pin", "Pinned", ApiTransport::SelfSigned));
    let first = fingerprint(&h.certificate().unwrap());

    let out = status(&h, &pinning_in(&known));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Pinned") && stderr(&out).contains(&first), "{}", stderr(&out));
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(pins.contains(&format!("{} {first}", h.http)), "{pins}");
    let out = status(&h, &pinning_in(&known));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Pinned"), "pinned once: {}", stderr(&out));

    // The server gets another certificate: as a man in the middle would present.
    h.stop();
    std::fs::remove_file(h.data_dir.join("api-cert.pem")).unwrap();
    std::fs::remove_file(h.data_dir.join("api-key.pem")).unwrap();
    h.spawn();
    let second = fingerprint(&h.certificate().unwrap());
    assert_ne!(first, second);
    let out = status(&h, &pinning_in(&known));
    let err = stderr(&out);
    assert!(!out.status.success(), "a changed certificate is refused");
    assert!(err.contains("has changed") && err.contains(&first) && err.contains(&second), "{err}");
    assert!(err.contains("remove the line") && err.contains(known.to_str().unwrap()), "{err}");
    assert!(out.stdout.is_empty(), "nothing from the refused server is shown");

    // Accepting the new certificate: remove the line, and the next use pins it.
    std::fs::write(&known, "").unwrap();
    let out = status(&h, &pinning_in(&known));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&second), "{}", stderr(&out));
}

/// A certificate authority and a server certificate for 127.0.0.1 it issued, as PEM files
/// `ca.pem`, `cert.pem` and `key.pem` in `dir`.
fn issue_certificate(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Hive test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn a_supplied_certificate_is_served_and_trusted_through_its_ca() {
    let issued = tempfile::tempdir().unwrap();
    issue_certificate(issued.path());
    let other_ca = tempfile::tempdir().unwrap();
    issue_certificate(other_ca.path());
    let supplied = ApiTransport::Supplied {
        cert: issued.path().join("cert.pem"),
        key: issued.path().join("key.pem"),
    };
    let h = Hive::start(spec("tls-supplied", "Supplied", supplied));

    let (presented, _) = presented_certificate(h.http).unwrap();
    assert_eq!(Some(presented), h.certificate(), "the supplied certificate is served");
    assert!(!h.data_dir.join("api-cert.pem").exists(), "no self-signed one is made");

    let known = issued.path().join("known_servers");
    let ca = issued.path().join("ca.pem");
    let out =
        status(&h, &["--ca", ca.to_str().unwrap(), "--known-servers", known.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!known.exists(), "a CA's certificate is trusted, not pinned");

    let wrong = other_ca.path().join("ca.pem");
    let out = status(&h, &["--ca", wrong.to_str().unwrap()]);
    assert!(!out.status.success(), "a certificate another CA issued is refused");
    assert!(out.stdout.is_empty());
}

/// Connects to `addr`, sends `prefix` and then one byte a second (the read timeout paces
/// it) until the server closes the connection; whether it did within [`CUT_OFF_LIMIT`].
fn closed_while_trickling(addr: SocketAddr, prefix: &[u8]) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut bytes = prefix.iter().copied().chain(std::iter::repeat(b'a'));
    let start = Instant::now();
    while start.elapsed() < CUT_OFF_LIMIT {
        let byte = bytes.next().unwrap_or(b'a');
        if stream.write_all(&[byte]).is_err() {
            return true;
        }
        let mut answer = [0u8; 1024];
        match stream.read(&mut answer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_slowloris_client_sending_a_header_byte_a_second_is_cut_off() {
    let h = Hive::start(spec("slowloris", "Slow", ApiTransport::Plain));
    let request = format!("GET /api/hello HTTP/1.1\r\nHost: {}\r\nX-Slow: ", h.http);
    assert!(closed_while_trickling(h.http, request.as_bytes()), "the connection stayed open");
    assert_eq!(h.api().get("/api/hello").0, 200, "the server still answers others");
}

#[test]
fn a_tls_handshake_trickling_a_byte_a_second_is_cut_off() {
    let h = Hive::start(spec("slow-handshake", "SlowTls", ApiTransport::SelfSigned));
    // A TLS record header announcing a 512-byte handshake message that never completes.
    let record = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    assert!(closed_while_trickling(h.http, &record), "the connection stayed open");
    assert_eq!(h.api().get("/api/hello").0, 200, "the server still answers others");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let h = Hive::start(spec("idle", "Idle", ApiTransport::Plain));
    let mut stream = TcpStream::connect(h.http).unwrap();
    let request = format!("GET /api/hello HTTP/1.1\r\nHost: {}\r\n\r\n", h.http);
    stream.write_all(request.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut answer = Vec::new();
    let start = Instant::now();
    let closed = loop {
        if start.elapsed() > CUT_OFF_LIMIT {
            break false;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "the idle connection stayed open");
}

#[test]
fn a_merge_by_https_url_joins_the_other_system() {
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    let a = Hive::start(spec("https-a", "Left", ApiTransport::SelfSigned));
    let b = Hive::start(spec("https-b", "Right", ApiTransport::SelfSigned));
    let out = Command::new(hive_bin())
        .args(["join", &b.url(), "--remote-user", "admin", "--keep", "local"])
        .args(["--url", &a.url()])
        .args(pinning_in(&known))
        .env("HIVE_PASSWORD", OWNER_PASSWORD)
        .env("HIVE_REMOTE_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("one system over an https:// merge", CONVERGE, || merged(&[&a, &b]));
}
