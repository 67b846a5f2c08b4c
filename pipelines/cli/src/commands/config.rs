//! `triage config`.

use std::path::PathBuf;

use triage_core::config::Config;

use crate::exit::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service configuration (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(a: Args) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    print!("{}", config.redacted_toml()?);
    Ok(())
}
