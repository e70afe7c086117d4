//! `hive serve` settings: a TOML file and command-line flags, flags winning.

use hive_core::auth::{KdfParams, Secret};
use hive_core::ids::{HardwareId, PeerAddr, SystemName};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Default TCP port of peer links.
pub const PEER_PORT: u16 = 7001;
/// Default TCP port of the HTTP API.
pub const HTTP_PORT: u16 = 7080;
/// Default RTSP port of a server's video.
pub const RTSP_PORT: u16 = 7554;
/// Default discovery group.
pub const DISCOVERY_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 11, 11), 5007);

/// Public key of the Hive license vendor (hex); a config may name another for tests.
pub const VENDOR_KEY_HEX: &str = "8920f5b257bb7ccc13404cf866c4d34c873802a2472f1a1f2c28a740664c754d";

/// Why the settings could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped field.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, naming the field and line.
        message: String,
    },
    /// A field has a value that cannot be used.
    #[error("{source_name}: field `{field}`: {reason}")]
    Invalid {
        /// The file or "command line".
        source_name: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A required field is missing everywhere.
    #[error("`{field}` is required: set it in the config file or with {flag}")]
    Missing {
        /// The field.
        field: &'static str,
        /// The flag that sets it.
        flag: &'static str,
    },
}

/// The config file's fields, every one optional, unknown ones refused. The flags of
/// `hive serve` fill the same struct ([`Overrides`]), each `None` when not given.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// System name at first start.
    pub system_name: Option<String>,
    /// System secret at first start.
    pub secret: Option<String>,
    /// This server's name.
    pub server_name: Option<String>,
    /// TCP address for peer links.
    pub listen: Option<String>,
    /// TCP address of the HTTP API.
    pub http: Option<String>,
    /// Addresses peers should dial (default: the listen address; an unspecified host means
    /// "the address my beacons come from").
    pub advertise: Option<Vec<String>>,
    /// Multicast group of discovery.
    pub discovery_group: Option<String>,
    /// Interface address to run discovery on.
    pub discovery_interface: Option<String>,
    /// Servers to dial beyond the LAN.
    pub peers: Option<Vec<String>>,
    /// Hardware id override.
    pub hardware_id: Option<String>,
    /// Whether this server takes cameras of failed servers.
    pub failover: Option<bool>,
    /// Most cameras this server records.
    pub max_cameras: Option<u32>,
    /// How far ahead of this server's clock a peer's timestamps may be, in hours.
    pub clock_offset_max_hours: Option<u64>,
    /// License vendor public key (hex).
    pub license_vendor_key: Option<String>,
    /// First owner as `name:password`, created if no user has that name.
    pub init_owner: Option<String>,
    /// The API's certificate chain (PEM) instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Serve the API as plain HTTP instead of HTTPS.
    pub http_plain: Option<bool>,
    /// NTP server (`host:port`) this server takes its time from when it is the primary.
    pub ntp: Option<String>,
    /// How long a server may be silent before its cameras move, ms.
    pub failover_hold_ms: Option<u64>,
    /// How long a server must be up before it takes cameras of failed servers, ms.
    pub failover_min_uptime_ms: Option<u64>,
    /// How long a failed server must stay reachable before its cameras return, ms.
    pub failover_stability_ms: Option<u64>,
    /// TCP address of the RTSP server (video).
    pub rtsp: Option<String>,
    /// Serve RTSP in clear (`rtsp://`) instead of over TLS (`rtsps://`): passwords and video
    /// cross the network readable.
    pub rtsp_plain: Option<bool>,
    /// Most bytes the archive keeps.
    pub archive_max_bytes: Option<u64>,
    /// Most days the archive keeps (0: no limit).
    pub archive_max_days: Option<u32>,
    /// Bytes of each archive segment file.
    pub archive_segment_bytes: Option<u64>,
}

/// Flags of `hive serve`: the file's fields, set where a flag was given.
pub type Overrides = FileConfig;

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // It may hold the secret and the owner's password.
        f.write_str("FileConfig { .. }")
    }
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }
}

/// How the API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTls {
    /// HTTPS with a self-signed certificate kept in the data directory, made at first start.
    SelfSigned,
    /// HTTPS with the administrator's certificate chain and private key (PEM files).
    Supplied {
        /// Certificate chain, the server's own certificate first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// Plain HTTP: only on explicit request (`http_plain`), or loopback in `hive demo`.
    Plain,
}

/// Resolved settings of one server.
#[derive(Clone)]
pub struct ServeSettings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// System name at first start.
    pub system_name: SystemName,
    /// System secret at first start: a join token or a stretched passphrase; `None` makes a
    /// random one, shown once as a join token.
    pub secret: Option<Secret>,
    /// This server's name.
    pub server_name: String,
    /// Peer link address.
    pub listen: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Addresses peers should dial.
    pub advertise: Vec<PeerAddr>,
    /// Discovery group.
    pub discovery_group: SocketAddrV4,
    /// Discovery interface.
    pub discovery_interface: Ipv4Addr,
    /// Manual peers.
    pub peers: Vec<PeerAddr>,
    /// Hardware id.
    pub hardware_id: HardwareId,
    /// Failover enabled.
    pub failover: bool,
    /// Camera capacity.
    pub max_cameras: u32,
    /// A peer's timestamp further ahead than this closes its link (a clock violation).
    pub clock_offset_ms_max: u64,
    /// License vendor key.
    pub vendor_key: ed25519_dalek::VerifyingKey,
    /// First owner `(name, password)`.
    pub init_owner: Option<(String, String)>,
    /// HTTPS or plain HTTP for the API.
    pub api_tls: ApiTls,
    /// NTP server as `host:port`, checked for form only; the caller resolves the name.
    pub ntp: Option<String>,
    /// Failover timings: hold, minimum uptime and stability, ms.
    pub failover_ms: FailoverMs,
    /// RTSP address.
    pub rtsp: SocketAddr,
    /// RTSP in clear instead of over TLS.
    pub rtsp_plain: bool,
    /// Archive sizes and limits (the archive lives in `data_dir/archive`).
    pub archive: crate::archive::ArchiveConfig,
}

/// The failover timings a server is configured with (see [`hive_core::node::Timing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverMs {
    /// Silence after which a server's cameras move.
    pub hold: u64,
    /// Uptime a server needs before it takes cameras.
    pub min_uptime: u64,
    /// Reachable time after which cameras return.
    pub stability: u64,
}

impl Default for FailoverMs {
    fn default() -> Self {
        let t = hive_core::node::Timing::default();
        FailoverMs {
            hold: t.hold_ms,
            min_uptime: t.failover_min_uptime_ms,
            stability: t.failover_stability_ms,
        }
    }
}

/// Longest failover timing accepted: an hour.
pub const FAILOVER_MS_MAX: u64 = 3_600_000;
/// Shortest hold accepted: below a heartbeat a live server would look dead.
pub const FAILOVER_HOLD_MS_MIN: u64 = 1_000;

impl std::fmt::Debug for ServeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret and the owner's password stay out of logs.
        f.debug_struct("ServeSettings")
            .field("data_dir", &self.data_dir)
            .field("system_name", &self.system_name)
            .field("server_name", &self.server_name)
            .field("listen", &self.listen)
            .field("http", &self.http)
            .field("advertise", &self.advertise)
            .field("discovery_group", &self.discovery_group)
            .field("peers", &self.peers)
            .field("hardware_id", &self.hardware_id)
            .field("api_tls", &self.api_tls)
            .field("ntp", &self.ntp)
            .field("failover_ms", &self.failover_ms)
            .finish_non_exhaustive()
    }
}

/// Where a value came from, for error messages.
struct Origin<'a> {
    file: Option<&'a Path>,
}

impl Origin<'_> {
    fn name(&self, from_flag: bool) -> String {
        match (from_flag, self.file) {
            (false, Some(p)) => format!("config file {}", p.display()),
            _ => "command line".to_owned(),
        }
    }
}

/// Picks the flag if given, else the file's value, remembering which.
fn pick<T>(flag: Option<T>, file: Option<T>) -> (Option<T>, bool) {
    match flag {
        Some(v) => (Some(v), true),
        None => (file, false),
    }
}

impl ServeSettings {
    /// Resolves flags over the file (if any) over defaults.
    pub fn resolve(
        flags: Overrides,
        file: FileConfig,
        file_path: Option<&Path>,
    ) -> Result<ServeSettings, ConfigError> {
        let origin = Origin { file: file_path };
        let invalid = |from_flag: bool, field: &'static str, reason: String| ConfigError::Invalid {
            source_name: origin.name(from_flag),
            field,
            reason,
        };

        let (data_dir, _) = pick(flags.data_dir, file.data_dir);
        let data_dir =
            data_dir.ok_or(ConfigError::Missing { field: "data_dir", flag: "--data-dir" })?;

        let (name, f) = pick(flags.system_name, file.system_name);
        let name =
            name.ok_or(ConfigError::Missing { field: "system_name", flag: "--system-name" })?;
        let system_name =
            SystemName::new(name).map_err(|e| invalid(f, "system_name", e.to_string()))?;

        let (secret, f) = pick(flags.secret, file.secret);
        let secret = secret
            .map(|text| Secret::parse(text.trim(), KdfParams::STANDARD))
            .transpose()
            .map_err(|e| invalid(f, "secret", e.to_string()))?;

        let (listen, f) = pick(flags.listen, file.listen);
        let listen = match listen {
            Some(l) => parse_socket(&l).map_err(|r| invalid(f, "listen", r))?,
            None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, PEER_PORT)),
        };
        let (http, f) = pick(flags.http, file.http);
        let http = match http {
            Some(h) => parse_socket(&h).map_err(|r| invalid(f, "http", r))?,
            None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, HTTP_PORT)),
        };
        let (advertise, f) = pick(flags.advertise, file.advertise);
        let advertise = match advertise {
            Some(list) => list
                .iter()
                .map(|a| parse_socket(a).map(|s| PeerAddr(s.to_string())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|r| invalid(f, "advertise", r))?,
            None => vec![PeerAddr(listen.to_string())],
        };
        let (group, f) = pick(flags.discovery_group, file.discovery_group);
        let discovery_group = match group {
            Some(g) => match parse_socket(&g).map_err(|r| invalid(f, "discovery_group", r))? {
                SocketAddr::V4(v4) if v4.ip().is_multicast() => v4,
                _ => {
                    return Err(invalid(
                        f,
                        "discovery_group",
                        format!("{g} is not an IPv4 multicast address"),
                    ))
                }
            },
            None => DISCOVERY_GROUP,
        };
        let (iface, f) = pick(flags.discovery_interface, file.discovery_interface);
        let discovery_interface = match iface {
            Some(i) => i.parse().map_err(|_| {
                invalid(f, "discovery_interface", format!("{i:?} is not an IPv4 address"))
            })?,
            None => Ipv4Addr::UNSPECIFIED,
        };
        let (peers, f) = pick(flags.peers, file.peers);
        let peers = peers
            .unwrap_or_default()
            .iter()
            .map(|a| parse_socket(a).map(|s| PeerAddr(s.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| invalid(f, "peers", r))?;
        let (hw, _) = pick(flags.hardware_id, file.hardware_id);
        let hardware_id = HardwareId(hw.unwrap_or_else(crate::hardware::machine_hardware_id));
        let (server_name, _) = pick(flags.server_name, file.server_name);
        let server_name = server_name.unwrap_or_else(crate::hardware::host_name);
        let (vendor, f) = pick(flags.license_vendor_key, file.license_vendor_key);
        let vendor_key = parse_vendor_key(vendor.as_deref().unwrap_or(VENDOR_KEY_HEX))
            .map_err(|r| invalid(f, "license_vendor_key", r))?;
        let (owner, f) = pick(flags.init_owner, file.init_owner);
        let init_owner = match owner {
            Some(o) => match o.split_once(':') {
                Some((n, p)) if !n.is_empty() && !p.is_empty() => {
                    Some((n.to_owned(), p.to_owned()))
                }
                _ => return Err(invalid(f, "init_owner", "expected NAME:PASSWORD".into())),
            },
            None => None,
        };
        let api_tls = resolve_api_tls(
            pick(flags.tls_cert, file.tls_cert),
            pick(flags.tls_key, file.tls_key),
            pick(flags.http_plain, file.http_plain),
            &invalid,
        )?;
        let (ntp, f) = pick(flags.ntp, file.ntp);
        let ntp = ntp.map(|n| parse_host_port(&n)).transpose().map_err(|r| invalid(f, "ntp", r))?;
        let defaults = FailoverMs::default();
        let ms = |(value, f): (Option<u64>, bool), field: &'static str, default: u64, min: u64| {
            let value = value.unwrap_or(default);
            if (min..=FAILOVER_MS_MAX).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    f,
                    field,
                    format!("{value} is not within {min} to {FAILOVER_MS_MAX} ms"),
                ))
            }
        };
        let failover_ms = FailoverMs {
            hold: ms(
                pick(flags.failover_hold_ms, file.failover_hold_ms),
                "failover_hold_ms",
                defaults.hold,
                FAILOVER_HOLD_MS_MIN,
            )?,
            min_uptime: ms(
                pick(flags.failover_min_uptime_ms, file.failover_min_uptime_ms),
                "failover_min_uptime_ms",
                defaults.min_uptime,
                0,
            )?,
            stability: ms(
                pick(flags.failover_stability_ms, file.failover_stability_ms),
                "failover_stability_ms",
                defaults.stability,
                0,
            )?,
        };
        let (rtsp, f) = pick(flags.rtsp, file.rtsp);
        let rtsp = match rtsp {
            Some(r) => parse_socket(&r).map_err(|e| invalid(f, "rtsp", e))?,
            None => SocketAddr::from((Ipv4Addr::UNSPECIFIED, RTSP_PORT)),
        };
        let rtsp_plain = pick(flags.rtsp_plain, file.rtsp_plain).0.unwrap_or(false);
        let defaults_archive = crate::archive::ArchiveConfig::default();
        let (segment_bytes, f) = pick(flags.archive_segment_bytes, file.archive_segment_bytes);
        let segment_bytes = segment_bytes.unwrap_or(defaults_archive.segment_bytes);
        if !(1 << 20..=1 << 30).contains(&segment_bytes) {
            return Err(invalid(
                f,
                "archive_segment_bytes",
                format!("{segment_bytes} is not within 1 MiB to 1 GiB"),
            ));
        }
        let archive = crate::archive::ArchiveConfig {
            segment_bytes,
            max_bytes: pick(flags.archive_max_bytes, file.archive_max_bytes)
                .0
                .unwrap_or(defaults_archive.max_bytes),
            max_days: pick(flags.archive_max_days, file.archive_max_days).0.unwrap_or(0),
        };
        Ok(ServeSettings {
            data_dir,
            system_name,
            secret,
            server_name,
            listen,
            http,
            advertise,
            discovery_group,
            discovery_interface,
            peers,
            hardware_id,
            failover: pick(flags.failover, file.failover).0.unwrap_or(true),
            max_cameras: pick(flags.max_cameras, file.max_cameras).0.unwrap_or(64),
            clock_offset_ms_max: clock_offset_ms_max(
                flags.clock_offset_max_hours,
                file.clock_offset_max_hours,
            )?,
            vendor_key,
            init_owner,
            api_tls,
            ntp,
            failover_ms,
            rtsp,
            rtsp_plain,
            archive,
        })
    }
}

/// HTTPS unless plain HTTP is asked for; a supplied certificate needs its key, and the
/// two cannot be combined with plain HTTP.
/// Each argument is a picked value and whether it came from a flag.
fn resolve_api_tls(
    (cert, cert_flag): (Option<PathBuf>, bool),
    (key, key_flag): (Option<PathBuf>, bool),
    (plain, plain_flag): (Option<bool>, bool),
    invalid: &impl Fn(bool, &'static str, String) -> ConfigError,
) -> Result<ApiTls, ConfigError> {
    match (cert, key, plain.unwrap_or(false)) {
        (None, None, false) => Ok(ApiTls::SelfSigned),
        (None, None, true) => Ok(ApiTls::Plain),
        (Some(_), Some(_), true) => Err(invalid(
            plain_flag,
            "http_plain",
            "cannot be combined with tls_cert and tls_key: choose HTTPS or plain HTTP".into(),
        )),
        (Some(cert), Some(key), false) => Ok(ApiTls::Supplied { cert, key }),
        (Some(_), None, _) => {
            Err(invalid(cert_flag, "tls_cert", "needs tls_key (--tls-key) too".into()))
        }
        (None, Some(_), _) => {
            Err(invalid(key_flag, "tls_key", "needs tls_cert (--tls-cert) too".into()))
        }
    }
}

fn parse_socket(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an address of the form IP:PORT"))
}

/// Checks `text` is `host:port` (an IPv6 host in brackets) and returns it trimmed.
fn parse_host_port(text: &str) -> Result<String, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not of the form HOST:PORT (e.g. ntp.example.org:123)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace),
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 && host_ok => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

/// Parses a hex ed25519 public key.
pub fn parse_vendor_key(hex: &str) -> Result<ed25519_dalek::VerifyingKey, String> {
    let bytes = decode_hex(hex).ok_or_else(|| "expected 64 hex digits".to_owned())?;
    let array: [u8; 32] = bytes.try_into().map_err(|_| "expected 64 hex digits".to_owned())?;
    ed25519_dalek::VerifyingKey::from_bytes(&array).map_err(|e| format!("not a public key: {e}"))
}

/// Decodes lowercase or uppercase hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// Encodes bytes as lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Default bound on a peer's clock lead, in hours: wide enough for the skews a hive survives.
pub const CLOCK_OFFSET_MAX_HOURS: u64 = 24;

fn clock_offset_ms_max(flag: Option<u64>, file: Option<u64>) -> Result<u64, ConfigError> {
    let (hours, source) = match (flag, file) {
        (Some(h), _) => (h, "command line"),
        (None, Some(h)) => (h, "config file"),
        (None, None) => (CLOCK_OFFSET_MAX_HOURS, ""),
    };
    if !(1..=24 * 365).contains(&hours) {
        return Err(ConfigError::Invalid {
            source_name: source.into(),
            field: "clock_offset_max_hours",
            reason: "must be 1 to 8760 hours".into(),
        });
    }
    Ok(hours * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Overrides {
        Overrides {
            data_dir: Some("/tmp/x".into()),
            system_name: Some("Main".into()),
            secret: Some("correct horse battery staple".into()),
            ..Overrides::default()
        }
    }

    #[test]
    fn unknown_field_names_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive.toml");
        std::fs::write(&path, "system_name = \"A\"\nlisten_port = 7001\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("hive.toml"), "{err}");
    }

    #[test]
    fn mistyped_field_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive.toml");
        std::fs::write(&path, "max_cameras = \"many\"\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("max_cameras"), "{err}");
    }

    #[test]
    fn invalid_value_names_field_and_source() {
        let file = FileConfig { listen: Some("nowhere".into()), ..FileConfig::default() };
        let err = ServeSettings::resolve(minimal(), file, Some(Path::new("/etc/hive.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`listen`") && err.contains("/etc/hive.toml"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = FileConfig {
            server_name: Some("from-file".into()),
            max_cameras: Some(3),
            ..FileConfig::default()
        };
        let flags = Overrides { server_name: Some("from-flag".into()), ..minimal() };
        let s = ServeSettings::resolve(flags, file, None).unwrap();
        assert_eq!(s.server_name, "from-flag");
        assert_eq!(s.max_cameras, 3);
    }

    #[test]
    fn a_weak_secret_is_refused_and_says_what_is_accepted() {
        for weak in ["s3cret", "hive-0123"] {
            let flags = Overrides { secret: Some(weak.into()), ..minimal() };
            let err = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap_err();
            assert!(err.to_string().contains("join token"), "{err}");
        }
        let token = Secret::from_bytes([3; 32]).token();
        let flags = Overrides { secret: Some(token), ..minimal() };
        let s = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap();
        assert_eq!(s.secret, Some(Secret::from_bytes([3; 32])));
    }

    #[test]
    fn the_clock_offset_bound_defaults_to_a_day_and_refuses_nonsense() {
        let s = ServeSettings::resolve(minimal(), FileConfig::default(), None).unwrap();
        assert_eq!(s.clock_offset_ms_max, 24 * 3_600_000);
        let flags = Overrides { clock_offset_max_hours: Some(2), ..minimal() };
        let s = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap();
        assert_eq!(s.clock_offset_ms_max, 2 * 3_600_000);
        let flags = Overrides { clock_offset_max_hours: Some(0), ..minimal() };
        let err = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("clock_offset_max_hours"), "{err}");
    }

    #[test]
    fn without_a_secret_the_server_makes_one() {
        let flags = Overrides { secret: None, ..minimal() };
        let s = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap();
        assert_eq!(s.secret, None);
    }

    #[test]
    fn the_api_is_https_with_a_self_signed_certificate_by_default() {
        let s = ServeSettings::resolve(minimal(), FileConfig::default(), None).unwrap();
        assert_eq!(s.api_tls, ApiTls::SelfSigned);
    }

    #[test]
    fn plain_http_only_on_request() {
        let file = FileConfig { http_plain: Some(true), ..FileConfig::default() };
        let s = ServeSettings::resolve(minimal(), file, None).unwrap();
        assert_eq!(s.api_tls, ApiTls::Plain);
    }

    #[test]
    fn a_supplied_certificate_needs_its_key() {
        let flags = Overrides { tls_cert: Some("/etc/hive/cert.pem".into()), ..minimal() };
        let err = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("tls_key"), "{err}");
    }

    #[test]
    fn a_supplied_certificate_cannot_be_served_plain() {
        let file = FileConfig {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..FileConfig::default()
        };
        let flags = Overrides { http_plain: Some(true), ..minimal() };
        let err = ServeSettings::resolve(flags, file, None).unwrap_err().to_string();
        assert!(err.contains("http_plain") && err.contains("command line"), "{err}");
    }

    #[test]
    fn a_supplied_certificate_from_the_file_is_served() {
        let file = FileConfig {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..FileConfig::default()
        };
        let s = ServeSettings::resolve(minimal(), file, None).unwrap();
        assert_eq!(s.api_tls, ApiTls::Supplied { cert: "c.pem".into(), key: "k.pem".into() });
    }

    #[test]
    fn an_ntp_server_is_host_and_port() {
        let s = ServeSettings::resolve(minimal(), FileConfig::default(), None).unwrap();
        assert_eq!(s.ntp, None);
        for good in ["127.0.0.1:123", "ntp.example.org:123", "[::1]:11123"] {
            let file = FileConfig { ntp: Some(good.into()), ..FileConfig::default() };
            let s = ServeSettings::resolve(minimal(), file, None).unwrap();
            assert_eq!(s.ntp.as_deref(), Some(good));
        }
    }

    #[test]
    fn a_bad_ntp_server_names_the_key_and_the_file() {
        for bad in ["ntp.example.org", ":123", "host:0", "host:port", "::1:123", "[x]:123"] {
            let file = FileConfig { ntp: Some(bad.into()), ..FileConfig::default() };
            let err = ServeSettings::resolve(minimal(), file, Some(Path::new("/etc/hive.toml")))
                .unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { field: "ntp", .. }), "{bad}: {err}");
            assert!(err.to_string().contains("/etc/hive.toml"), "{err}");
        }
    }

    #[test]
    fn the_ntp_key_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive.toml");
        std::fs::write(&path, "ntp = \"127.0.0.1:11123\"\n").unwrap();
        let file = FileConfig::load(&path).unwrap();
        assert_eq!(file.ntp.as_deref(), Some("127.0.0.1:11123"));
    }

    #[test]
    fn settings_debug_hides_the_secret() {
        let flags = Overrides { init_owner: Some("admin:hunter22".into()), ..minimal() };
        let s = ServeSettings::resolve(flags, FileConfig::default(), None).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("correct horse") && !shown.contains("hunter22"));
        assert!(!shown.contains("Secret("));
    }
}
