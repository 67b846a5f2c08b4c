//! `triage config`.

use std::path::PathBuf;

use triage_core::config::Config;

use crate::exit::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Service configuration (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Also check it as `triage run` and `replay` do when they start, without a broker: the
    /// Kafka properties, the model and the labels the policy names, thresholds, budget, the
    /// deferral model, the output settings, and the second opinion's models (loaded). Exit 2
    /// when `run` would refuse to start.
    #[arg(long)]
    check: bool,
}

pub fn run(a: Args) -> CmdResult {
    let config = Config::load(a.config.as_deref())?;
    print!("{}", config.redacted_toml()?);
    if a.check {
        let processor = super::run::prepare(&config)?;
        triage_service::kafka::check_client_configs(&config.kafka)?;
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
