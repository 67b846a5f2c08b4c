//! `triage eval`.

use std::path::PathBuf;

use serde_json::json;
use triage_classifier::{Model, read_jsonl};
use triage_core::config::Config;
use triage_eval::cascade::evaluate_config;
use triage_eval::evaluate::evaluate;
use triage_eval::report::{OperatingPoint, ReportInput, write_report};

use crate::exit::{CmdResult, Failure};
use crate::progress::Bars;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file; the built-in default model when omitted.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Labelled test data (JSONL with "text" and "label"; `-` for stdin).
    #[arg(long)]
    data: PathBuf,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Exit with code 3 unless accuracy (0-1) is at least this.
    #[arg(long, value_parser = super::unit_interval)]
    min_accuracy: Option<f64>,
    /// Exit with code 3 unless macro-F1 (0-1) is at least this.
    #[arg(long, value_parser = super::unit_interval)]
    min_macro_f1: Option<f64>,
    /// Also write an HTML report with charts (report.html and SVGs) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also evaluate the cascade: fast only, second opinion only, and the cascade at the
    /// configured thresholds and budget (needs the small language models).
    #[arg(long)]
    cascade: bool,
    /// The second opinion for --cascade.
    #[command(flatten)]
    second: super::SecondOpinionArgs,
    /// A label whose messages are out of scope (CLINC150's `oos`): --cascade reports how the
    /// cascade treats them, when the model has that label.
    #[arg(long, default_value = "oos")]
    out_of_scope_label: String,
    /// Service configuration (model, thresholds, budget, `[slm]`), e.g. from `triage calibrate`.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    weights: super::WeightsArgs,
}

pub fn run(a: Args) -> CmdResult {
    if let Some(dir) = &a.report
        && dir.exists()
        && !dir.is_dir()
    {
        // Found before the evaluation, not after it (it had ended "File exists", exit 1).
        return Err(Failure::usage(anyhow::anyhow!(
            "--report {} is a file; the report is a directory (report.html and its charts): \
             name a new or existing directory",
            dir.display()
        )));
    }
    let config = Config::load(a.config.as_deref())?;
    let mut model = Model::load_or_default(a.model.as_deref().or(config.model.path.as_deref()))?;
    a.weights.apply(&mut model);
    let data = read_jsonl(&a.data)?;
    let known: std::collections::HashSet<&str> =
        model.labels().iter().map(String::as_str).collect();
    let unknown = data
        .iter()
        .filter(|e| !known.contains(e.label.as_str()))
        .count();
    if unknown > 0 {
        let mut labels: Vec<&str> = data
            .iter()
            .map(|e| e.label.as_str())
            .filter(|l| !known.contains(l))
            .collect();
        labels.sort_unstable();
        labels.dedup();
        let shown = labels
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        // A few of the model's labels, quoted (a label may hold a comma), not all 711.
        const MODEL_LABELS_SHOWN: usize = 20;
        let theirs = model.labels();
        let listed = theirs
            .iter()
            .take(MODEL_LABELS_SHOWN)
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "warning: {unknown} of {} messages have a label the model does not know ({} label{}: \
             {shown}{}); they count as errors. The model's {} labels: {listed}{}",
            data.len(),
            labels.len(),
            if labels.len() == 1 { "" } else { "s" },
            if labels.len() > 5 { ", …" } else { "" },
            theirs.len(),
            if theirs.len() > MODEL_LABELS_SHOWN {
                format!(", and {} more", theirs.len() - MODEL_LABELS_SHOWN)
            } else {
                String::new()
            },
        );
    }
    let cascade = if a.cascade {
        let second = a.second.load(&config, &model)?;
        let scored = second.score(&model, data.clone(), &mut Bars::default())?;
        Some(evaluate_config(
            &config,
            &super::root()?,
            &scored.inputs(),
            Some(&a.out_of_scope_label),
        )?)
    } else {
        None
    };
    let e = evaluate(&model, &data, &mut Bars::default());
    let report = &e.report;
    if a.json {
        let mut v = serde_json::to_value(report).map_err(Failure::external)?;
        v["model_version"] = json!(model.version());
        v["weights"] = json!(model.weight_format().name());
        if let Some(c) = &cascade {
            v["cascade"] = serde_json::to_value(c).map_err(Failure::external)?;
        }
        println!("{v}");
    } else {
        println!(
            "model {} ({} labels, {} weights), data {}",
            model.version(),
            model.labels().len(),
            model.weight_format().name(),
            a.data.display()
        );
        print!("{}", report.to_text());
        if let Some(c) = &cascade {
            print!("{}", c.to_text());
        }
    }
    if let Some(dir) = &a.report {
        let mut input = ReportInput::new(
            report.clone(),
            model.version(),
            a.data.display().to_string(),
            e.confidences.clone(),
            e.correct.clone(),
        );
        if let Some(c) = &cascade {
            input.cascade = Some(c.rows.clone());
            input.operating_point = Some(OperatingPoint::Threshold(f64::from(
                config.router.default_threshold,
            )));
        }
        let html = write_report(dir, &input)?;
        // Keep stdout pure JSON under --json.
        if a.json {
            eprintln!("report: {}", html.display());
        } else {
            println!("report: {}", html.display());
        }
    }
    if let Some(min) = a.min_accuracy
        && report.accuracy < min
    {
        return Err(Failure::Gate(format!(
            "accuracy {:.4} < {min}",
            report.accuracy
        )));
    }
    if let Some(min) = a.min_macro_f1
        && report.macro_f1 < min
    {
        return Err(Failure::Gate(format!(
            "macro-F1 {:.4} < {min}",
            report.macro_f1
        )));
    }
    Ok(())
}
