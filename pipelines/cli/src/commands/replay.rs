//! `triage replay`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use triage_core::config::{Admission, Config};
use triage_service::Processor;
use triage_service::file::{ReplayOptions, replay};

use crate::exit::{CmdResult, Failure};
use crate::progress::Bars;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The message log: JSONL with "id" and "text" (other fields are kept), UTF-8 or UTF-16 with a
    /// byte order mark, plain or gzip. `-` for stdin (a pipe that goes quiet for 100 ms has its lines decided and written at once).
    #[arg(long)]
    input: PathBuf,
    /// Where decisions go, one JSON object per line. `-` for stdout. Not the input file.
    #[arg(long)]
    output: PathBuf,
    /// Where bad lines go, with their line number and the reason [default: OUTPUT with
    /// `.dead-letter.jsonl` appended; `dead-letter.jsonl` when OUTPUT is `-`].
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Service configuration (TOML); `TRIAGE__…` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model file (overrides the configuration); the built-in default model otherwise.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print the summary as JSON on stdout (needs --output to be a file, not `-`).
    #[arg(long)]
    json: bool,
    /// Threads deciding chunks of lines (1 to 256); the output is the same, in the same order,
    /// with any number [default: the cores available]
    #[arg(long, value_parser = threads)]
    threads: Option<usize>,
}

pub fn run(a: Args) -> CmdResult {
    if a.json && a.output == Path::new("-") {
        return Err(Failure::usage(anyhow::anyhow!(
            "--json prints the summary on stdout, where --output - writes the decisions: give \
             --output a file"
        )));
    }
    let mut config = Config::load(a.config.as_deref())?;
    // A log has no arrival rate to keep: replay waits for the SLM chunk by chunk, so it takes
    // calls first come, first served and sheds none (the same log gives the same decisions on a
    // slow machine and a fast one, timeouts apart).
    config.slm.executor.admission = Admission::Arrival;
    let dead_letter = a.dead_letter.clone().unwrap_or_else(|| {
        if a.output == Path::new("-") {
            PathBuf::from("dead-letter.jsonl")
        } else {
            let mut p = a.output.clone().into_os_string();
            p.push(".dead-letter.jsonl");
            PathBuf::from(p)
        }
    });
    triage_core::paths::refuse_overwriting(
        &[
            ("--config", a.config.as_deref()),
            ("--model", a.model.as_deref()),
        ],
        &[
            ("--output", Some(&a.output)),
            ("--dead-letter", Some(&dead_letter)),
        ],
    )?;
    super::refuse_overwriting_configured(
        &config,
        &[
            ("--output", Some(&a.output)),
            ("--dead-letter", Some(&dead_letter)),
        ],
    )?;
    let model = super::load_model(a.model.as_deref(), &config)?;
    let processor = Processor::from_config(Arc::new(model), &config, &super::root()?)?;
    let opts = ReplayOptions {
        input: a.input.clone(),
        output: a.output.clone(),
        dead_letter: dead_letter.clone(),
        input_config: config.input.clone(),
        threads: a.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
        stop: stop_on_signals()?,
    };
    let summary = replay(&processor, &opts, &mut Bars::default())?;
    if a.json && a.output != Path::new("-") {
        println!(
            "{}",
            serde_json::to_string(&summary).map_err(Failure::external)?
        );
    } else {
        eprint!("{}", summary.to_text());
        if summary.dead_lettered > 0 {
            eprintln!("dead letters written to {}", dead_letter.display());
        }
    }
    if summary.interrupted {
        return Err(Failure::Interrupted(
            opts.stop.load(Ordering::Relaxed) as i32
        ));
    }
    Ok(())
}

/// SIGINT and SIGTERM stop the replay after the lines already read (the value is the signal's
/// number); a second one ends the process at once, with 128 + its number, as without a handler.
fn stop_on_signals() -> Result<Arc<AtomicUsize>, Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // In this order: the second signal finds the flag that the first one set.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&asked))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&asked)))
            .and_then(|_| signal_hook::flag::register_usize(sig, Arc::clone(&stop), sig as usize))
            .map_err(Failure::external)?;
    }
    Ok(stop)
}

/// `--threads`: 1 to 256 (`--threads 0` had been taken, and 20,000 aborted the process when the
/// threads' stacks could not be had).
fn threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("'{s}' is not a thread count from 1 to 256")),
    }
}
