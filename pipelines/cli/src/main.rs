//! The `triage` command line. Each subcommand's module parses its arguments and calls a library:
//! `triage-eval` for offline work on labelled data, `triage-service` for replay, `run` and
//! `classify`. Errors carry their domain; [`exit::Failure`] turns it into the exit code.

// One call into mimalloc's C API (`release_freed_memory`); nothing else.
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod exit;
mod logging;
mod progress;

use commands::*;

/// mimalloc instead of the system allocator: the Kafka loop allocates and frees small buffers on
/// one thread and librdkafka's threads free others, where glibc's malloc took a quarter of the
/// loop thread's time (docs/kafka.md, "The allocator": the p99 at half the passthrough's rate fell
/// from 5-16x the passthrough's to 1.3-3x in five runs of six).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands back to the OS the memory mimalloc holds freed (it does so on its own a little later),
/// so that the memory a finished fit freed counts as available when the next fit is sized
/// (`tune`'s folds: triage_core::memory).
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions: any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// triage: classify and route chat messages. A fast TF-IDF + logistic classifier labels most
/// messages; only unsure ones (and those needing a reply) go to a small language model.
///
/// Exit codes: 0 success; 1 runtime failure (I/O, broker, model); 2 usage or configuration
/// error; 3 a quality gate failed (e.g. `eval --min-accuracy`); 128 + the signal for a replay a
/// signal stopped (130, 143); 141 when the reader of the output went away (`| head`).
#[derive(Parser, Debug)]
#[command(name = "triage", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a fast classifier from labelled JSONL ({"text", "label"} per line).
    Train(train::Args),
    /// Evaluate a model on labelled JSONL: accuracy, macro-F1, per-class scores, confusion and
    /// coverage tables.
    Eval(eval::Args),
    /// Classify messages from stdin (JSONL or plain lines) to JSONL on stdout.
    Classify(classify::Args),
    /// Replay a message log (JSONL with id and text) through the pipeline: one decision per
    /// message, bad lines to a dead-letter file. No broker needed. SIGINT or SIGTERM stops it
    /// after the lines already read (the summary says how far), a second one at once.
    Replay(replay::Args),
    /// Choose training settings (alpha, n-grams, class weights) on train/dev data only, by
    /// cross-validation or on a dev split.
    Tune(tune::Args),
    /// Measure single-core classify throughput (analyse + vectorise + predict per message).
    Bench(bench::Args),
    /// Run the Kafka service: consume, classify, route, publish decisions (at-least-once, or
    /// exactly-once with `[kafka] delivery = "exactly_once"`).
    Run(run::Args),
    /// Print the effective configuration (file + environment), secrets redacted.
    Config(config::Args),
    /// The small language models: fine-tune one on your labels, train a second-opinion head or
    /// build a zero-shot one, label messages for distillation.
    #[command(subcommand)]
    Slm(slm::Command),
    /// Pick the routing thresholds on a dev set for an SLM budget or a target accuracy, and write
    /// them into a configuration file.
    Calibrate(calibrate::Args),
}

fn main() -> ExitCode {
    exit::exit_quietly_when_output_closes();
    triage_core::memory::set_release(release_freed_memory);
    let command = Cli::parse().command;
    // `triage run` logs as its configuration says; the offline commands log warnings (a
    // second opinion that fell back, injected faults), or what RUST_LOG asks for.
    if !matches!(command, Command::Run(_)) {
        let mut quiet = triage_core::config::Config::default();
        quiet.log.level = "warn".into();
        logging::init(&quiet);
    }
    let result = match command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Run(a) => run::run(a),
        Command::Config(a) => config::run(a),
        Command::Slm(c) => slm::run(c),
        Command::Calibrate(a) => calibrate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}
