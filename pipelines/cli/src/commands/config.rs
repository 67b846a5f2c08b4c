//! `triage config`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use triage_classifier::Model;
use triage_core::config::Config;
use triage_service::processor::Processor;

use crate::exit::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service configuration (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also check it as `triage run` and `replay` do when they start, without a broker: the
    /// Kafka properties, the model and the labels the policy names, thresholds, budget, the
    /// deferral model, the output settings, and the second opinion's models (loaded). Exit 2 (or
    /// 1 for a file that cannot be read) when `run` would refuse to start.
    #[arg(long)]
    check: bool,
}

pub fn run(a: Args) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    print!("{}", config.redacted_toml()?);
    if a.check {
        crate::logging::init(&config);
        config
            .kafka
            .validate()
            .map_err(|e| Failure::usage(anyhow!("configuration: {e}")))?;
        let model = Arc::new(Model::load_or_default(config.model.path.as_deref())?);
        let processor = Processor::from_config(model, &config, &super::root()?)?;
        let slm = match processor.slm_status() {
            Ok(()) => "the small language models are loaded".to_string(),
            Err(why) => format!("no second opinion: its routes degrade ({why})"),
        };
        eprintln!(
            "the configuration checks out: model {} ({} labels); {slm}",
            processor.model_version(),
            processor.labels().len()
        );
    }
    Ok(())
}
