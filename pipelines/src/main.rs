//! The `triage` command line.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_slm;
mod commands;

/// triage: classify and route chat messages. A fast TF-IDF + logistic classifier labels most
/// messages; only unsure ones (and those needing a reply) go to a small language model.
///
/// Exit codes: 0 success; 1 runtime failure (I/O, broker, model); 2 usage or configuration
/// error; 3 a quality gate failed (e.g. `eval --min-accuracy`).
#[derive(Parser, Debug)]
#[command(name = "triage", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a fast classifier from labelled JSONL ({"text", "label"} per line).
    Train(commands::TrainArgs),
    /// Evaluate a model on labelled JSONL: accuracy, macro-F1, per-class scores, confusion and
    /// coverage tables.
    Eval(commands::EvalArgs),
    /// Classify messages from stdin (JSONL or plain lines) to JSONL on stdout.
    Classify(commands::ClassifyArgs),
    /// Replay a message log (JSONL with id and text) through the pipeline: one decision per
    /// message, bad lines to a dead-letter file. No broker needed.
    Replay(commands::ReplayArgs),
    /// Choose training settings (alpha, n-grams, class weights) on train/dev data only, by
    /// cross-validation or on a dev split.
    Tune(commands::TuneArgs),
    /// Measure single-core classify throughput (analyse + vectorise + predict per message).
    Bench(commands::BenchArgs),
    /// Run the Kafka service: consume, classify, route, publish decisions (at-least-once).
    Run(commands::RunArgs),
    /// Print the effective configuration (file + environment), secrets redacted.
    Config(commands::ConfigArgs),
    /// The small language models: train the second-opinion head, or build a zero-shot one.
    #[command(subcommand)]
    Slm(cmd_slm::SlmCommand),
    /// Pick the routing thresholds on a dev set for an SLM budget or a target accuracy, and write
    /// them into a configuration file.
    Calibrate(cmd_slm::CalibrateArgs),
}

/// Where an error ends: its exit code.
pub(crate) enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
    Gate(String),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let e: anyhow::Error = e.into();
        let usage = e
            .downcast_ref::<triage_pipelines::PipelineError>()
            .is_some_and(|p| {
                matches!(
                    p,
                    triage_pipelines::PipelineError::Config(_)
                        | triage_pipelines::PipelineError::Router(_)
                )
            });
        if usage {
            Failure::Usage(e)
        } else {
            Failure::Runtime(e)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => commands::train(a),
        Command::Eval(a) => commands::eval(a),
        Command::Classify(a) => commands::classify(a),
        Command::Replay(a) => commands::replay(a),
        Command::Tune(a) => commands::tune(a),
        Command::Bench(a) => commands::bench(a),
        Command::Run(a) => commands::run(a),
        Command::Config(a) => commands::config(a),
        Command::Slm(c) => cmd_slm::slm(c),
        Command::Calibrate(a) => cmd_slm::calibrate(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Gate(msg)) => {
            eprintln!("quality gate failed: {msg}");
            ExitCode::from(3)
        }
    }
}

/// Default location of the data sets used by examples and tests.
#[allow(dead_code)]
pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("TRIAGE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}
