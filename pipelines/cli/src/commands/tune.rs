//! `triage tune`.

use std::path::PathBuf;

use anyhow::anyhow;
use triage_classifier::read_jsonl;
use triage_eval::train::read_train_config;
use triage_eval::tune::{Criterion, Scoring, best, class_weight, grid};

use crate::exit::{CmdResult, Failure};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training data.
    #[arg(long)]
    data: PathBuf,
    /// A dev split to score on; without it, k-fold cross-validation on the training data.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Folds for cross-validation (without --dev).
    #[arg(long, default_value_t = 3)]
    folds: usize,
    /// Base training settings (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Alphas to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.1, 0.3, 1.0])]
    alpha: Vec<f64>,
    /// Class weights to try: none, balanced, balanced_sqrt (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec!["none".to_string()])]
    class_weight: Vec<String>,
    /// Choose by this metric: accuracy, macro_f1, or mean (of the two).
    #[arg(long, default_value = "mean")]
    metric: String,
    /// Write the best settings here (TOML).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> CmdResult {
    let base = read_train_config(a.config.as_deref())?;
    let criterion: Criterion = a.metric.parse()?;
    if a.dev.is_none() && a.folds < 2 {
        return Err(Failure::usage(anyhow!("--folds must be at least 2")));
    }
    let weights = a
        .class_weight
        .iter()
        .map(|w| class_weight(w))
        .collect::<Result<Vec<_>, _>>()?;
    let data = read_jsonl(&a.data)?;
    let dev = a.dev.as_deref().map(read_jsonl).transpose()?;
    let scoring = match &dev {
        Some(d) => Scoring::Dev(d),
        None => Scoring::Folds(a.folds),
    };
    let trials = grid(&data, &base, &a.alpha, &weights, &scoring, |t| {
        eprintln!(
            "alpha {:<8} class_weight {:<9} accuracy {:.2}%  macro-F1 {:.4}  ({:.1}s)",
            t.config.logistic.alpha,
            serde_json::to_string(&t.config.logistic.class_weight)
                .unwrap_or_default()
                .trim_matches('"'),
            100.0 * t.accuracy,
            t.macro_f1,
            t.seconds
        );
    })?;
    let best = best(&trials, criterion).ok_or_else(|| Failure::usage(anyhow!("nothing to try")))?;
    let how = if dev.is_some() {
        "on the dev split".to_string()
    } else {
        format!("by {}-fold cross-validation", a.folds)
    };
    eprintln!(
        "best {how}: alpha {} class_weight {:?}: accuracy {:.2}%, macro-F1 {:.4}",
        best.config.logistic.alpha,
        best.config.logistic.class_weight,
        100.0 * best.accuracy,
        best.macro_f1
    );
    let toml = toml::to_string(&best.config).map_err(Failure::external)?;
    match &a.out {
        Some(p) => std::fs::write(p, toml)
            .map_err(|e| Failure::external(anyhow!("writing {}: {e}", p.display())))?,
        None => print!("{toml}"),
    }
    Ok(())
}
