//! Commands that build test data: cameras, users, settings, licenses. Shared by scenarios,
//! benchmarks, the demo and the tests.

use crate::des::world::VENDOR_SEED;
use hive_core::auth::{password_verifier, KdfParams};
use hive_core::ids::{CameraId, HardwareId, ServerId, SystemId, UserId};
use hive_core::licenses::{LicenseId, LicenseIssuer};
use hive_core::node::Command;
use hive_core::resources::{CameraRecord, FailoverPriority, Key, Role, UserRecord, Value};

/// A recording camera `id` on `server`, medium priority, created at `id` ms.
pub fn camera(id: u128, server: ServerId) -> Command {
    camera_with(id, server, FailoverPriority::Medium)
}

/// A recording camera `id` on `server` with a failover priority.
pub fn camera_with(id: u128, server: ServerId, priority: FailoverPriority) -> Command {
    let record = CameraRecord {
        name: format!("Camera {id}"),
        url: format!("rtsp://192.0.2.{}/stream{id}", id % 250),
        secondary_url: None,
        preferred: server,
        failover_priority: priority,
        recording: true,
        created_ms: id as u64,
    };
    Command::Put { key: Key::Camera(CameraId(id)), value: Value::Camera(record) }
}

/// A user account created in `home`, with a cheap password verifier.
pub fn user(id: u128, name: &str, password: &str, role: Role, home: SystemId) -> Command {
    let record = UserRecord {
        name: name.into(),
        role,
        password: password_verifier(password, [id as u8; 16], KdfParams::CHEAP),
        home_system: home,
        login: hive_core::login::register(
            name,
            password,
            KdfParams::CHEAP,
            &mut <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(id as u64),
        )
        .ok(),
    };
    Command::Put { key: Key::User(UserId(id)), value: Value::User(record) }
}

/// A system setting written under `system`.
pub fn setting(system: SystemId, name: &str, value: &str) -> Command {
    Command::Put {
        key: Key::Setting { system, name: name.into() },
        value: Value::Setting(value.into()),
    }
}

/// A license of `channels` bound to the hardware of simulated host `host` ("hw-{host}"),
/// signed by the simulation's vendor key.
pub fn license(id: u128, host: usize, channels: u32) -> Command {
    let key = LicenseIssuer::from_seed(VENDOR_SEED).issue(
        LicenseId(id),
        channels,
        HardwareId(format!("hw-{host}")),
        0,
    );
    Command::Put { key: Key::License(key.id), value: Value::License(key) }
}

/// Live cameras among replica entries.
pub fn cameras_in(
    entries: &std::collections::BTreeMap<Key, hive_core::store::Entry>,
) -> Vec<CameraId> {
    entries
        .iter()
        .filter_map(|(k, e)| match (k, &e.value) {
            (Key::Camera(c), Some(_)) => Some(*c),
            _ => None,
        })
        .collect()
}
