//! A real NTP server for tests: Debian's `chronyd`, serving this machine's own clock on a
//! loopback port. It runs with `-x`, so it never touches the clock, and without root (as
//! `nobody` when the tests run as root); its files live in a temp dir. Dropping it stops it.

use hive::time::{query, NtpReply, SntpError};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stratum chronyd is configured to serve (`local stratum`).
pub const STRATUM: u8 = 8;
/// uid and gid of `nobody` on Debian, which chronyd runs as when the tests run as root.
const NOBODY_ID: u32 = 65_534;

/// A running `chronyd`, killed on drop.
pub struct Chrony {
    /// Where it answers NTP.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The `chronyd` binary: on the PATH or in the sbin directories a non-root PATH may lack.
fn chronyd_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("chronyd"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!("chronyd is not installed: run scripts/test-all, which installs chrony")
        })
}

/// A free UDP port on loopback.
fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

impl Chrony {
    /// Starts chronyd on a free loopback port (not yet answering: see [`Chrony::serving`]).
    pub fn start() -> Chrony {
        let bin = chronyd_bin();
        let dir = tempfile::Builder::new().prefix("hive-chrony-").tempdir().unwrap();
        let port = free_udp_port();
        let d = dir.path().display();
        let config = format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum {STRATUM}\n\
             pidfile {d}/chronyd.pid\ndriftfile {d}/drift\ndumpdir {d}\n\
             cmdport 0\nbindcmdaddress /\n"
        );
        let config_path = dir.path().join("chrony.conf");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("chronyd.log");
        let mut cmd = Command::new(bin);
        // -x: never touch the clock; -d: foreground, log to stderr; -U: no root needed.
        cmd.args(["-x", "-d", "-U", "-f"]).arg(&config_path);
        if running_as_root() {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY_ID), Some(NOBODY_ID)).unwrap();
            std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY_ID);
            std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY_ID);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("chronyd starts");
        Chrony { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)), child, log, _dir: dir }
    }

    /// Polls until chronyd answers a query with a valid reply (within 20 s) and returns it;
    /// panics with its log if it exits or never answers.
    pub async fn serving(&mut self, mono_us: &(dyn Fn() -> u64 + Sync)) -> NtpReply {
        let start = Instant::now();
        let mut last: Option<SntpError> = None;
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("chronyd exited with {status}:\n{}", self.log_text());
            }
            match query(self.addr, mono_us, Duration::from_millis(200)).await {
                Ok(reply) => return reply,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chronyd did not answer within 20 s (last: {last:?}):\n{}", self.log_text());
    }

    /// What chronyd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chrony {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn running_as_root() -> bool {
    Path::new("/proc/self").metadata().is_ok_and(|m| m.uid() == 0)
}
