//! `triage train`.

use std::path::PathBuf;

use anyhow::anyhow;
use serde_json::json;
use triage_core::paths::refuse_overwriting;
use triage_eval::train::{Distill, TrainRequest, read_train_config, train_and_save};

use crate::exit::{CmdResult, Failure};
use crate::progress::Bars;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Labelled training data (JSONL with "text" and "label"; `-` for stdin).
    #[arg(long)]
    data: PathBuf,
    /// Optional held-out data; its metrics are stored in the model file.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Where to write the model file.
    #[arg(long)]
    out: PathBuf,
    /// Training settings (TOML: `[analyzer]`, `[tfidf]`, `[logistic]`); defaults otherwise.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the L2 strength (scikit-learn's 1/C).
    #[arg(long)]
    alpha: Option<f64>,
    /// Override the maximum L-BFGS iterations.
    #[arg(long)]
    max_iterations: Option<u64>,
    /// A description stored in the model file (e.g. the data source).
    #[arg(long)]
    description: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also learn from rows the second opinion labelled (`triage slm label` output: JSONL with
    /// "text", "label", "confidence"): distillation into the fast model. Checked as --data is
    /// (no blank label), with each confidence between 0 and 1, and only labels --data has.
    #[arg(long)]
    distill: Option<PathBuf>,
    /// Weight of each distilled row, relative to a labelled row.
    #[arg(long, default_value_t = 0.5, requires = "distill")]
    distill_weight: f64,
    /// Leave out distilled rows whose confidence is below this.
    #[arg(long, default_value_t = 0.0, requires = "distill", value_parser = super::unit_interval)]
    distill_min_confidence: f64,
}

pub fn run(a: Args) -> CmdResult {
    refuse_overwriting(
        &[
            ("--data", Some(&a.data)),
            ("--dev", a.dev.as_deref()),
            ("--config", a.config.as_deref()),
            ("--distill", a.distill.as_deref()),
        ],
        &[("--out", Some(&a.out))],
    )?;
    let stdin = [Some(&*a.data), a.dev.as_deref(), a.distill.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| *p == std::path::Path::new("-"))
        .count();
    if stdin > 1 {
        return Err(Failure::usage(anyhow!(
            "only one of --data, --dev and --distill can be `-`: standard input is read once"
        )));
    }
    let mut config = read_train_config(a.config.as_deref())?;
    if let Some(alpha) = a.alpha {
        config.logistic.alpha = alpha;
    }
    if let Some(m) = a.max_iterations {
        config.logistic.max_iterations = m;
    }
    let req = TrainRequest {
        data: a.data.clone(),
        dev: a.dev.clone(),
        config,
        description: a.description.clone(),
        distill: a.distill.clone().map(|path| Distill {
            path,
            weight: a.distill_weight,
            min_confidence: a.distill_min_confidence,
        }),
    };
    let (model, train_seconds) = train_and_save(&req, &a.out, &mut Bars::default())?;
    let h = model.header();
    let t = &h.training;
    if a.json {
        let out = json!({
            "model": a.out,
            "sha256": model.sha256(),
            "labels": h.labels,
            "n_train": t.n_train,
            "n_features": t.n_features,
            "nnz": t.nnz,
            "fit": t.fit,
            "vectorise_seconds": t.vectorise_seconds,
            "fit_seconds": t.fit_seconds,
            "train_seconds": train_seconds,
            "dev": h.eval.as_ref().map(|e| json!({"accuracy": e.accuracy, "macro_f1": e.macro_f1})),
        });
        println!("{out}");
        return Ok(());
    }
    eprintln!(
        "trained on {} messages, {} labels, {} + {} features (word + char), {} non-zeros",
        t.n_train,
        h.labels.len(),
        t.n_features[0],
        t.n_features[1],
        t.nnz
    );
    // argmin's wording starts with a capital ("Maximum number of iterations reached").
    let mut termination = t.fit.termination.chars();
    let termination: String = termination
        .next()
        .map(|c| c.to_lowercase().chain(termination).collect())
        .unwrap_or_default();
    eprintln!(
        "L-BFGS: {termination} after {} iterations ({} evaluations), mean loss {:.5}",
        t.fit.iterations, t.fit.evaluations, t.fit.final_loss
    );
    if !t.fit.converged {
        if t.fit.termination.starts_with("Line search") {
            // More iterations do not help here: the same stop comes at the same iteration.
            eprintln!(
                "note: the line search found no step that lowers the cost further: the fit is \
                 as tight as the arithmetic allows (more iterations would not change it; a \
                 larger [logistic] gradient_tolerance would stop sooner)"
            );
        } else {
            eprintln!(
                "note: the optimiser did not converge; raise [logistic] max_iterations for a \
                 tighter fit"
            );
        }
    }
    eprintln!(
        "time: {:.2}s analyse + vectorise, {:.2}s fit, {:.2}s total",
        t.vectorise_seconds, t.fit_seconds, train_seconds
    );
    if let Some(e) = &h.eval {
        eprintln!(
            "dev: accuracy {:.2}%, macro-F1 {:.4} on {} messages",
            100.0 * e.accuracy,
            e.macro_f1,
            e.n
        );
    }
    eprintln!("wrote {} (sha256 {})", a.out.display(), model.sha256());
    Ok(())
}
