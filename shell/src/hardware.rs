//! This machine's hardware id (what license keys bind to) and host name.

use sha2::{Digest, Sha256};

/// A stable id of this machine: a hash of `/etc/machine-id` and the MAC addresses of its
/// physical interfaces. Changes when the machine is replaced, not when it reboots.
pub fn machine_hardware_id() -> String {
    let mut hash = Sha256::new_with_prefix(b"hive-hardware-v1\0");
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        hash.update(id.trim().as_bytes());
    }
    let mut macs: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != "lo")
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    for m in macs {
        hash.update(m.as_bytes());
    }
    crate::config::encode_hex(&hash.finalize()[..12])
}

/// The host name, or "hive" when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hive".to_owned())
}
