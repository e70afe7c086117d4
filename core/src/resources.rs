//! The replicated resources of a system and the keys they are stored under.

use crate::ids::{CameraId, HardwareId, PeerAddr, ServerId, SystemId, UserId};
use crate::instant::WallMs;
use crate::keys::PublicKey;
use crate::licenses::{LicenseId, LicenseKey};
use serde::{Deserialize, Serialize};

/// Where a resource lives in the replicated store. Ordered, so iteration is deterministic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub enum Key {
    /// A server of the system.
    Server(ServerId),
    /// A camera.
    Camera(CameraId),
    /// A user account.
    User(UserId),
    /// A system setting as written under one system id; the current system's value wins reads.
    Setting {
        /// System whose administrators wrote it.
        system: SystemId,
        /// Setting name.
        name: String,
    },
    /// A license key.
    License(LicenseId),
    /// One span of a camera's archive on one server.
    CameraHistory {
        /// Camera recorded.
        camera: CameraId,
        /// Server that recorded it.
        server: ServerId,
        /// Start of the span, system time in ms.
        start_ms: u64,
    },
    /// An address an administrator asked the system to dial (servers in other subnets or NAT).
    ManualAddress(PeerAddr),
    /// The system's current license shortfall, if any.
    LicenseShortfall,
    /// A server's pinned link key: written by the server itself at first start (or by an
    /// owner replacing it), under a key of its own so that no stale write of the server
    /// record can put an old key back.
    ServerKey(ServerId),
}

/// The value stored under a [`Key`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Value {
    /// See [`ServerRecord`].
    Server(ServerRecord),
    /// See [`CameraRecord`].
    Camera(CameraRecord),
    /// See [`UserRecord`].
    User(UserRecord),
    /// A setting's text value.
    Setting(String),
    /// A signed license key.
    License(LicenseKey),
    /// See [`HistoryRecord`].
    CameraHistory(HistoryRecord),
    /// A manual address has no payload beyond its key.
    ManualAddress,
    /// A shortfall of licenses started at this wall-clock time.
    LicenseShortfall {
        /// When the system first had more cameras recording than licensed channels, on the
        /// wall clock of the server that recorded it.
        since_ms: WallMs,
    },
    /// A server's public link key.
    ServerKey(PublicKey),
}

/// A server as the system knows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct ServerRecord {
    /// Human name.
    pub name: String,
    /// Hardware id that license keys bind to.
    pub hardware_id: HardwareId,
    /// Addresses it listens on.
    pub addresses: Vec<PeerAddr>,
    /// Whether it takes cameras of failed servers.
    pub failover_enabled: bool,
    /// How many cameras it may record.
    pub max_cameras: u32,
    /// An administrator's preference for this server as the primary time server (higher
    /// first; servers with an external time source come before any priority).
    #[serde(default)]
    pub time_priority: u32,
    /// Where it serves video (RTSP), if it does; servers that predate video have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaService>,
}

/// A server's RTSP service, so that any server can tell a client where a camera plays.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct MediaService {
    /// TCP port of its RTSP server, on each of the server's addresses.
    pub port: u16,
    /// Whether it speaks RTSP over TLS (`rtsps://`); plain `rtsp://` only when the operator
    /// allowed it.
    pub tls: bool,
}

/// How eagerly a camera moves to another server when its own fails.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub enum FailoverPriority {
    /// Never moves.
    Never,
    /// Moves last.
    Low,
    /// The default.
    Medium,
    /// Moves first.
    High,
}

/// A camera and who records it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct CameraRecord {
    /// Human name.
    pub name: String,
    /// Stream URL (RTSP).
    pub url: String,
    /// The camera's secondary (low-resolution) stream, recorded beside the primary one for
    /// grids and remote viewers; `None` when the camera has one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_url: Option<String>,
    /// Server that records it while it is online, and that it returns to after a failover.
    /// Who records it now is not stored: every server computes it from the view (see
    /// [`crate::failover`]), and camera history says who recorded when.
    pub preferred: ServerId,
    /// Failover priority.
    pub failover_priority: FailoverPriority,
    /// Whether it should be recorded at all.
    pub recording: bool,
    /// System time it was added, ms; newer cameras stop first on a license shortfall.
    pub created_ms: u64,
}

/// What a user may do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub enum Role {
    /// Everything, including merge and split.
    Owner,
    /// Everything but removing the owner.
    Admin,
    /// Watch only.
    Viewer,
}

/// A user account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Password verifier: a salted hash, never the password; checks API logins.
    pub password: PasswordVerifier,
    /// OPAQUE password file that checks this user's password in a merge from another
    /// system; `None` for accounts made before protocol 3 until their next login.
    #[serde(default)]
    pub login: Option<crate::login::LoginRecord>,
    /// System the account was created in; on a name clash the current system's account wins.
    pub home_system: SystemId,
}

/// A salted password hash (`key = derive(password, salt)`), usable as a shared key in a
/// challenge–response without the password travelling.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct PasswordVerifier {
    /// Random salt.
    pub salt: [u8; 16],
    /// Derived key.
    pub key: [u8; 32],
    /// Cost of the derivation.
    pub params: crate::auth::KdfParams,
}

/// One span of a camera's archive recorded by one server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct HistoryRecord {
    /// End of the span in system ms, or `None` while recording.
    pub end_ms: Option<u64>,
}

impl Value {
    /// Whether this value may be stored under `key` (a server record under a camera key is not).
    pub fn fits(&self, key: &Key) -> bool {
        matches!(
            (key, self),
            (Key::Server(_), Value::Server(_))
                | (Key::Camera(_), Value::Camera(_))
                | (Key::User(_), Value::User(_))
                | (Key::Setting { .. }, Value::Setting(_))
                | (Key::License(_), Value::License(_))
                | (Key::CameraHistory { .. }, Value::CameraHistory(_))
                | (Key::ManualAddress(_), Value::ManualAddress)
                | (Key::LicenseShortfall, Value::LicenseShortfall { .. })
                | (Key::ServerKey(_), Value::ServerKey(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).expect("CBOR encoding into memory");
        out
    }

    /// A shortfall as stored and replicated while its start was a bare `u64`.
    #[derive(Serialize)]
    enum Untyped {
        LicenseShortfall { since_ms: u64 },
    }

    #[test]
    fn a_license_shortfall_keeps_the_format_it_had_as_a_bare_number() {
        let typed = Value::LicenseShortfall { since_ms: WallMs(1_700_000_000_000) };
        let untyped = cbor(&Untyped::LicenseShortfall { since_ms: 1_700_000_000_000 });
        assert_eq!(cbor(&typed), untyped);
        let back: Value = ciborium::from_reader(&untyped[..]).expect("decodes");
        assert_eq!(back, typed);
    }
}
