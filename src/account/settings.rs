//! `[directory]`: the directory's hot-path cache, trusted devices, the audit trail.

use std::time::Duration;

/// The directory and its hot-path cache (`[directory]`): users, policy, trusted devices, audit.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// The longest an entry of the in-process cache is trusted without an invalidation.
    pub cache_ttl: Duration,
    /// Entries per cache map (policies, users, devices) before the map is cleared.
    pub cache_max_entries: usize,
    /// How often the invalidation link proves it is alive (and how long a PING may take).
    pub invalidation_ping: Duration,
    /// Trusted devices per user; beyond it the one expiring first is dropped.
    pub max_devices_per_user: usize,
    /// Audit entries kept per account (a capped stream).
    pub audit_max_entries: usize,
}

impl DirectorySettings {
    /// The rules on values that parsed; each broken one adds a line to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.cache_ttl > Duration::from_secs(300) {
            errors.push(
                "directory.cache_ttl_ms: must be at most 300000 (it bounds staleness should an invalidation be lost)"
                    .to_owned(),
            );
        }
    }
}
