//! `triage classify`.

use std::path::PathBuf;

use triage_classifier::Model;
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
}

pub fn run(a: Args) -> CmdResult {
    let model = Model::load_or_default(a.model.as_deref())?;
    let stdin = std::io::stdin().lock();
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let refused =
        classify_lines(&model, stdin, out, &a.text_field).map_err(Failure::or_output_closed)?;
    if refused > 0 {
        eprintln!(
            "{refused} line{} could not be classified: {} an \"error\" record in its place",
            if refused == 1 { "" } else { "s" },
            if refused == 1 { "it has" } else { "each has" }
        );
    }
    Ok(())
}
