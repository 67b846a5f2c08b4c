//! `triage tune`.

use std::path::PathBuf;

use anyhow::anyhow;
use triage_classifier::read_jsonl;
use triage_core::paths::refuse_overwriting;
use triage_eval::train::read_train_config;
use triage_eval::tune::{Criterion, Grid, Scoring, char_range, choose, class_weight, grid, pareto};

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
    /// Alphas to try, comma-separated [default: 0.1,0.3,1].
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.1, 0.3, 1.0], hide_default_value = true)]
    alpha: Vec<f64>,
    /// Class weights to try: none, balanced, balanced_sqrt (comma-separated). Without it, the
    /// base settings' weight only (`balanced_sqrt` without a config).
    #[arg(long, value_delimiter = ',')]
    class_weight: Vec<String>,
    /// Character n-gram ranges to try, e.g. `2-5,3-4,3,4` (`off`: none; comma-separated).
    /// Without it, the base settings' range only.
    #[arg(long, value_delimiter = ',')]
    char_ngrams: Vec<String>,
    /// Choose by this metric: accuracy, macro_f1, or mean (of the two).
    #[arg(long, default_value = "mean")]
    metric: String,
    /// Speed-aware choice: of the settings within this margin (0-1) of the best score, the one
    /// with the fewest features per message. 0: the best score.
    #[arg(long, default_value_t = 0.005, value_parser = super::unit_interval)]
    margin: f64,
    /// Write the best settings here (TOML).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> CmdResult {
    refuse_overwriting(
        &[
            ("--data", Some(&a.data)),
            ("--dev", a.dev.as_deref()),
            ("--config", a.config.as_deref()),
        ],
        &[("--out", a.out.as_deref())],
    )?;
    let base = read_train_config(a.config.as_deref())?;
    let criterion: Criterion = a.metric.parse()?;
    if a.dev.is_none() && a.folds < 2 {
        return Err(Failure::usage(anyhow!("--folds must be at least 2")));
    }
    let mut weights = a
        .class_weight
        .iter()
        .map(|w| class_weight(w))
        .collect::<Result<Vec<_>, _>>()?;
    if weights.is_empty() {
        weights.push(base.logistic.class_weight.clone());
    }
    let data = read_jsonl(&a.data)?;
    for warning in triage_eval::train::label_warnings(&data) {
        eprintln!("warning: {warning}");
    }
    let dev = a.dev.as_deref().map(read_jsonl).transpose()?;
    let scoring = match &dev {
        Some(d) => Scoring::Dev(d),
        None => Scoring::Folds(a.folds),
    };
    let chars = a
        .char_ngrams
        .iter()
        .map(|r| char_range(r))
        .collect::<Result<Vec<_>, _>>()?;
    let g = Grid {
        char_ngrams: &chars,
        alphas: &a.alpha,
        class_weights: &weights,
    };
    let trials = grid(&data, &base, &g, &scoring, |t| {
        eprintln!(
            "{}  accuracy {:.2}%  macro-F1 {:.4}  {:.1} features/msg  {:.0} msg/s  ({:.1}s)",
            setting(t),
            100.0 * t.accuracy,
            t.macro_f1,
            t.features_per_message,
            t.msgs_per_sec,
            t.seconds
        );
    })?;
    let best = choose(&trials, criterion, a.margin)
        .ok_or_else(|| Failure::usage(anyhow!("nothing to try")))?;
    let how = if dev.is_some() {
        "on the dev split".to_string()
    } else {
        format!("by {}-fold cross-validation", a.folds)
    };
    // The Pareto table: score against features per message, fewest features first.
    let front = pareto(&trials, criterion);
    let mut order: Vec<usize> = (0..trials.len()).collect();
    order.sort_by(|&x, &y| {
        trials[x]
            .features_per_message
            .total_cmp(&trials[y].features_per_message)
    });
    eprintln!(
        "\n| setting | {} | accuracy | macro-F1 | features/msg | msg/s | Pareto |\n|---|---:|---:|---:|---:|---:|---|",
        a.metric
    );
    for i in order {
        let t = &trials[i];
        eprintln!(
            "| {}{} | {:.4} | {:.2}% | {:.4} | {:.1} | {:.0} | {} |",
            setting(t),
            if std::ptr::eq(t, best) {
                " (chosen)"
            } else {
                ""
            },
            t.score(criterion),
            100.0 * t.accuracy,
            t.macro_f1,
            t.features_per_message,
            t.msgs_per_sec,
            if front[i] { "yes" } else { "" }
        );
    }
    eprintln!(
        "\nchosen {how} (the fewest features within {} of the best {}): {}: accuracy {:.2}%, \
         macro-F1 {:.4}, {:.1} features/msg",
        a.margin,
        a.metric,
        setting(best),
        100.0 * best.accuracy,
        best.macro_f1,
        best.features_per_message
    );
    let toml = toml::to_string(&best.config).map_err(Failure::external)?;
    match &a.out {
        Some(p) => super::write_file(p, toml.as_bytes())?,
        None => print!("{toml}"),
    }
    Ok(())
}

/// A trial's settings in one short line.
fn setting(t: &triage_eval::tune::Trial) -> String {
    let [c0, c1] = t.config.analyzer.char_ngrams;
    let chars = match (c0, c1) {
        (0, 0) => "off".to_string(),
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("{a}-{b}"),
    };
    format!(
        "char {chars:<4} alpha {:<6} class_weight {}",
        t.config.logistic.alpha,
        serde_json::to_string(&t.config.logistic.class_weight)
            .unwrap_or_default()
            .trim_matches('"')
    )
}
