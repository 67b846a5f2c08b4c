//! `triage bench`.

use std::path::PathBuf;

use serde_json::json;
use triage_classifier::model::scoring::Kernel;
use triage_core::jsonl::{OtherLines, read_texts};
use triage_eval::bench::throughput;
use triage_eval::evaluate::over_limit;

use crate::exit::CmdResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Messages to classify (JSONL with "text", or plain lines).
    #[arg(long)]
    data: PathBuf,
    /// Passes over the data (after one warm-up pass); the best pass counts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    weights: super::WeightsArgs,
}

pub fn run(a: Args) -> CmdResult {
    let mut model = super::load_model(a.model.as_deref(), &Default::default())?;
    a.weights.apply(&mut model);
    let read = read_texts(&a.data, OtherLines::AsText)?;
    if let Some((line, why)) = read.skipped.first() {
        eprintln!(
            "warning: {} line(s) of {} skipped, not timed (line {line}: {why})",
            read.skipped.len(),
            a.data.display()
        );
    }
    let texts = read.texts;
    let limit = triage_core::message::InputConfig::default().max_message_bytes;
    if let Some(warning) = over_limit(texts.iter().map(String::as_str), limit) {
        eprintln!("warning: {warning}; bench times them");
    }
    let t = throughput(&model, &texts, a.repeat as usize);
    if a.json {
        println!(
            "{}",
            json!({"weights": model.weight_format(), "kernel": Kernel::detected().name(), "messages": t.messages, "seconds": t.seconds, "msgs_per_sec": t.msgs_per_sec,
                   "us_per_msg": t.us_per_msg, "features_per_message": t.features_per_message,
                   "checksum": t.checksum})
        );
    } else {
        println!(
            "{} messages in {:.4}s (best of {}): {:.0} msg/s, {:.3} µs/msg, one thread, {} weights, \
             {} kernel, {:.1} features/message",
            t.messages,
            t.seconds,
            a.repeat,
            t.msgs_per_sec,
            t.us_per_msg,
            model.weight_format().name(),
            Kernel::detected().name(),
            t.features_per_message
        );
    }
    Ok(())
}
