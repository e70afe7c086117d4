//! License upkeep: the system's licensed channels against the cameras recording, and the
//! shortfall record that starts the grace period.

use super::Node;
use crate::ids::{CameraId, HardwareId};
use crate::licenses::{self, CameraLicenseView, LicenseKey, ShortfallState};
use crate::resources::{FailoverPriority, Key, Value};
use serde::Serialize;
use std::collections::BTreeSet;

/// Name of the setting that overrides the grace period, in ms.
pub const GRACE_SETTING: &str = "license_grace_ms";

/// Licenses of the system as this server sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LicenseStatus {
    /// Channels of valid keys bound to online servers.
    pub total: u64,
    /// Cameras set to record.
    pub used: u64,
    /// Where the system stands.
    pub state: ShortfallState,
    /// Cameras that must not record because the grace period is over.
    pub stopped: Vec<CameraId>,
}

fn priority_rank(p: FailoverPriority) -> u8 {
    match p {
        FailoverPriority::Never => 0,
        FailoverPriority::Low => 1,
        FailoverPriority::Medium => 2,
        FailoverPriority::High => 3,
    }
}

impl Node {
    pub(super) fn licenses_dirty(&mut self) {
        self.license_dirty = true;
    }

    /// Hardware ids of the servers online now, this one included.
    fn online_hardware(&self) -> BTreeSet<HardwareId> {
        self.online_servers()
            .into_iter()
            .filter_map(|s| match self.store.get(&Key::Server(s)) {
                Some(Value::Server(r)) => Some(r.hardware_id.clone()),
                _ => None,
            })
            .collect()
    }

    fn stored_license_keys(&self) -> impl Iterator<Item = &LicenseKey> {
        self.store.range(Key::License(licenses::LicenseId(0))..).map_while(|(_, v)| match v {
            Value::License(k) => Some(k),
            _ => None,
        })
    }

    /// The system's license keys, each with whether it counts now: signed by the vendor and
    /// bound to a server that is online.
    pub fn license_keys(&self) -> Vec<(&LicenseKey, bool)> {
        let online = self.online_hardware();
        self.stored_license_keys()
            .map(|k| {
                let counts =
                    online.contains(&k.hardware_id) && k.verify(&self.config.vendor_key).is_ok();
                (k, counts)
            })
            .collect()
    }

    /// The license total, use and shortfall as of now.
    pub fn license_status(&self) -> LicenseStatus {
        let online = self.online_hardware();
        let keys = self.stored_license_keys();
        let total = licenses::system_total(keys, &online, &self.config.vendor_key).total_channels;
        let cameras: Vec<CameraLicenseView> = self
            .cameras()
            .filter(|(_, c)| c.recording)
            .map(|(id, c)| CameraLicenseView {
                id,
                priority: priority_rank(c.failover_priority),
                created_ms: c.created_ms,
            })
            .collect();
        let used = cameras.len() as u64;
        let recorded = match self.store.get(&Key::LicenseShortfall) {
            Some(Value::LicenseShortfall { since_ms }) => {
                Some(licenses::Shortfall { since_ms: *since_ms })
            }
            _ => None,
        };
        let grace_ms = self
            .setting(GRACE_SETTING)
            .and_then(|v| v.parse().ok())
            .unwrap_or(licenses::GRACE_MS_DEFAULT);
        let state = licenses::shortfall_state(used, total, recorded, self.now.wall, grace_ms);
        let stopped = match state {
            ShortfallState::Expired { excess, .. } => licenses::cameras_to_stop(&cameras, excess),
            _ => Vec::new(),
        };
        LicenseStatus { total, used, state, stopped }
    }

    /// Records or clears the shortfall; only the lowest online server writes, so the system
    /// does not fill with concurrent copies of one fact.
    pub(super) fn check_licenses(&mut self) {
        // Only a change of cameras, keys or membership can start or end a shortfall.
        if !std::mem::take(&mut self.license_dirty) {
            return;
        }
        let lowest = self.routing_lowest().is_none_or(|s| s > self.identity.server);
        if !lowest {
            return;
        }
        match self.license_status().state {
            ShortfallState::Started { since_ms } => self
                .write(vec![(Key::LicenseShortfall, Some(Value::LicenseShortfall { since_ms }))]),
            ShortfallState::Within if self.store.get(&Key::LicenseShortfall).is_some() => {
                self.write(vec![(Key::LicenseShortfall, None)])
            }
            _ => {}
        }
    }
}
