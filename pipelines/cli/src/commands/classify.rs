//! `triage classify`.

use std::path::PathBuf;

use triage_core::message::InputConfig;
use triage_service::classify::classify_lines;

use crate::exit::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The JSON field holding the text when input lines are JSON objects.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Longer lines get an error record instead of a label, as a replay dead-letters them
    /// (`[input] max_message_bytes`, the same default).
    #[arg(long, default_value_t = InputConfig::default().max_message_bytes)]
    max_message_bytes: usize,
}

pub fn run(a: Args) -> CmdResult {
    let model = super::load_model(a.model.as_deref(), &Default::default())?;
    let stdin = std::io::stdin().lock();
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let config = InputConfig {
        text_field: a.text_field,
        max_message_bytes: a.max_message_bytes,
        ..InputConfig::default()
    };
    config
        .validate()
        .map_err(|e| Failure::usage(anyhow::anyhow!("{e}")))?;
    let refused = classify_lines(&model, stdin, out, &config)?;
    if refused > 0 {
        eprintln!(
            "{refused} line{} could not be classified: {} an \"error\" record in its place",
            if refused == 1 { "" } else { "s" },
            if refused == 1 { "it has" } else { "each has" }
        );
    }
    Ok(())
}
