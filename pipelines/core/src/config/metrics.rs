//! The `[metrics]` section: the Prometheus and health endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` and `/health`.
    pub enabled: bool,
    /// Address to listen on. Loopback by default: expose it deliberately.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint is reachable from this host only unless a configuration says otherwise,
    /// also when the configuration has a `[metrics]` section without `listen`.
    #[test]
    fn listens_on_loopback_by_default() {
        let d = MetricsConfig::default();
        assert!(d.listen.ip().is_loopback(), "{}", d.listen);
        assert_eq!(d.listen, SocketAddr::from(([127, 0, 0, 1], 9898)));
        let partial: MetricsConfig = toml::from_str("enabled = true\n").unwrap();
        assert!(partial.listen.ip().is_loopback(), "{}", partial.listen);
    }
}
