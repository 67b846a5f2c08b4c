//! One module per subcommand: its arguments, and the library calls that do the work.

pub mod bench;
pub mod calibrate;
pub mod classify;
pub mod config;
pub mod eval;
pub mod replay;
pub mod run;
pub mod slm;
pub mod train;
pub mod tune;

use std::path::PathBuf;

use triage_core::config::Config;

/// The directory relative paths in a configuration are resolved against: the current one.
pub fn root() -> Result<PathBuf, crate::exit::Failure> {
    std::env::current_dir()
        .map_err(|e| crate::exit::Failure::external(anyhow::anyhow!("current directory: {e}")))
}

/// The models' settings of a configuration, resolved.
pub fn models(config: &Config) -> Result<triage_core::config::ModelsConfig, crate::exit::Failure> {
    Ok(config.slm.models.resolved(&root()?))
}
