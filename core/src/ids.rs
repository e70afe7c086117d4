//! Identifiers and names: servers, systems, cameras, users, hardware.

use crate::instant::WallMs;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

macro_rules! id128 {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u128);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Short form keeps traces readable; the full id is in Display.
                write!(f, concat!($prefix, "-{:08x}"), (self.0 & 0xffff_ffff) as u32)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                u128::from_str_radix(s, 16).map($name).map_err(|_| IdError::NotHex(s.to_owned()))
            }
        }
    };
}

id128!(
    /// A server, chosen at first start and kept for life.
    ServerId, "srv"
);
id128!(
    /// A system. The high 64 bits are its creation time in ms, so a smaller id is an older system.
    SystemId, "sys"
);
id128!(
    /// A camera.
    CameraId, "cam"
);
id128!(
    /// A user account.
    UserId, "usr"
);

impl SystemId {
    /// A system id created at wall time `created` with `random` low bits: older systems sort
    /// first.
    pub fn new(created: WallMs, random: u64) -> Self {
        SystemId(((created.0 as u128) << 64) | random as u128)
    }
}

/// Why an identifier or name was refused.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum IdError {
    /// Not a 128-bit hexadecimal id.
    #[error("not a hexadecimal id: {0:?}")]
    NotHex(String),
    /// A name that is empty, too long or holds control characters.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Longest system name, in bytes.
pub const SYSTEM_NAME_LEN_MAX: usize = 64;

/// The human name of a system; servers with the same name (and secret) join each other.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
#[serde(try_from = "String", into = "String")]
pub struct SystemName(String);

impl SystemName {
    /// Validates a system name: 1 to 64 bytes, no control characters, not blank.
    pub fn new(name: impl Into<String>) -> Result<Self, IdError> {
        let name = name.into();
        let reason = if name.trim().is_empty() {
            Some("must not be blank")
        } else if name.len() > SYSTEM_NAME_LEN_MAX {
            Some("longer than 64 bytes")
        } else if name.chars().any(char::is_control) {
            Some("holds control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(IdError::InvalidName { name, reason }),
            None => Ok(SystemName(name)),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SystemName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        SystemName::new(s)
    }
}

impl From<SystemName> for String {
    fn from(n: SystemName) -> String {
        n.0
    }
}

impl fmt::Display for SystemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A machine's hardware id, to which license keys are bound.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct HardwareId(pub String);

impl fmt::Display for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address a server can be dialled at, `host:port`; opaque to the core.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct PeerAddr(pub String);

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_system_id_sorts_first() {
        assert!(SystemId::new(WallMs(1_000), u64::MAX) < SystemId::new(WallMs(1_001), 0));
    }

    #[test]
    fn blank_and_long_names_are_refused() {
        assert!(SystemName::new("  ").is_err());
        assert!(SystemName::new("x".repeat(65)).is_err());
        assert!(SystemName::new("a\nb").is_err());
        assert_eq!(SystemName::new("Main office").unwrap().as_str(), "Main office");
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = ServerId(0xdead_beef_0000_1111);
        assert_eq!(id.to_string().parse::<ServerId>(), Ok(id));
    }
}
