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

use triage_classifier::Model;
use triage_core::config::Config;
use triage_eval::score::SecondOpinion;

/// The directory relative paths in a configuration are resolved against: the current one.
pub fn root() -> Result<PathBuf, crate::exit::Failure> {
    std::env::current_dir()
        .map_err(|e| crate::exit::Failure::external(anyhow::anyhow!("current directory: {e}")))
}

/// The models' settings of a configuration, resolved.
pub fn models(config: &Config) -> Result<triage_core::config::ModelsConfig, crate::exit::Failure> {
    Ok(config.slm.models.resolved(&root()?))
}

/// The second opinion's overrides that the offline commands share.
#[derive(clap::Args, Debug)]
pub struct SecondOpinionArgs {
    /// Fine-tuned second opinion (a `triage slm finetune` directory; overrides the
    /// configuration).
    #[arg(long)]
    pub finetuned: Option<PathBuf>,
    /// Frozen second opinion's head (overrides the configuration).
    #[arg(long, conflicts_with = "finetuned")]
    pub head: Option<PathBuf>,
}

impl SecondOpinionArgs {
    /// The second opinion of `config` for `model`, with these overrides.
    pub fn load(
        &self,
        config: &Config,
        model: &Model,
    ) -> Result<SecondOpinion, crate::exit::Failure> {
        Ok(SecondOpinion::load(
            config,
            &root()?,
            self.finetuned.as_deref(),
            self.head.as_deref(),
            model,
        )?)
    }
}
