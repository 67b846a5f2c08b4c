//! Logging set-up: `tracing` to stderr, text or JSON, filtered by `[log] level` (`RUST_LOG`
//! overrides it). Only the binary installs a subscriber; the libraries only emit events.

use triage_core::config::{Config, LogFormat};

/// Installs the subscriber for a configuration (once; later calls do nothing).
pub fn init(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
