//! `triage eval`.

use std::path::PathBuf;

use serde_json::json;
use triage_classifier::read_jsonl;
use triage_core::config::Config;
use triage_eval::cascade::evaluate_config;
use triage_eval::evaluate::{evaluate, over_limit, unknown_labels};
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
    if !a.cascade && (a.second.finetuned.is_some() || a.second.head.is_some()) {
        // Without --cascade no second opinion runs: the flag had been ignored, silently.
        return Err(Failure::usage(anyhow::anyhow!(
            "--finetuned and --head choose the second opinion of --cascade; add --cascade"
        )));
    }
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
    let mut model = super::load_model(a.model.as_deref(), &config)?;
    a.weights.apply(&mut model);
    let data = read_jsonl(&a.data)?;
    if let Some(warning) = unknown_labels(model.labels(), &data) {
        eprintln!("warning: {warning}");
    }
    let limit = config.input.max_message_bytes;
    if let Some(warning) = over_limit(data.iter().map(|e| e.text.as_str()), limit) {
        eprintln!("warning: {warning}; eval scores them");
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
