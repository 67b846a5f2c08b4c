//! `triage train`: a fast model from a labelled file, with its provenance (the data file's name
//! and SHA-256) and, given a dev file, its held-out metrics stored in the model file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use triage_classifier::{Model, TrainConfig, read_jsonl};
use triage_core::{NoProgress, Progress};

use crate::error::{EvalError, Result};
use crate::evaluate::evaluate;

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Labelled training data (JSONL with `text` and `label`).
    pub data: PathBuf,
    /// Held-out data; its metrics are stored in the model file.
    pub dev: Option<PathBuf>,
    /// The settings.
    pub config: TrainConfig,
    /// A description stored in the model file.
    pub description: Option<String>,
    /// Distillation: rows labelled by the second opinion (`triage slm label`), trained on beside
    /// `data` with their own weight.
    pub distill: Option<Distill>,
}

/// Machine-labelled rows to learn from (distillation of the second opinion into the fast model).
#[derive(Debug, Clone)]
pub struct Distill {
    /// JSONL with `text`, `label` and, optionally, `confidence` (as `triage slm label` writes).
    pub path: PathBuf,
    /// Each row's weight relative to a person-labelled row (0..=1 is usual).
    pub weight: f64,
    /// Rows whose `confidence` is below this are left out.
    pub min_confidence: f64,
}

/// One machine-labelled row: a labelled example (its label not blank, as in `--data`) and the
/// second opinion's confidence in it.
#[derive(Debug, serde::Deserialize)]
struct DistillRow {
    #[serde(flatten)]
    example: triage_classifier::Example,
    #[serde(default = "one", deserialize_with = "probability")]
    confidence: f64,
}

fn one() -> f64 {
    1.0
}

fn probability<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    let p = <f64 as serde::Deserialize>::deserialize(d)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(serde::de::Error::custom(format!(
            "the confidence must be between 0 and 1, not {p}"
        )));
    }
    Ok(p)
}

/// The training rows and their weights: `data` at 1, then the distilled rows that pass
/// `min_confidence`, at `weight`. Returns also how many distilled rows were kept.
fn with_distilled(
    mut data: Vec<triage_classifier::Example>,
    d: &Distill,
) -> Result<(Vec<triage_classifier::Example>, Vec<f64>, usize)> {
    if !d.weight.is_finite() || d.weight < 0.0 {
        return Err(EvalError::Invalid(format!(
            "--distill-weight {}: must be finite and at least 0",
            d.weight
        )));
    }
    let rows: Vec<DistillRow> =
        triage_core::jsonl::read(&d.path, "{\"text\", \"label\", \"confidence\"}")?;
    // A label the labelled data lacks means the file came from another model (a second opinion
    // has the fast model's labels): it would become a class of this one.
    let known: std::collections::BTreeSet<&str> = data.iter().map(|e| e.label.as_str()).collect();
    let mut unknown = std::collections::BTreeMap::<&str, usize>::new();
    for r in &rows {
        if !known.contains(r.example.label.as_str()) {
            *unknown.entry(&r.example.label).or_default() += 1;
        }
    }
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .take(5)
            .map(|(l, n)| format!("{l:?} ({n} rows)"))
            .collect();
        return Err(EvalError::Invalid(format!(
            "--distill {}: labels the labelled data (--data) lacks: {}{}; distil the labels of a \
             second opinion trained on the same labels",
            d.path.display(),
            list.join(", "),
            if unknown.len() > 5 { ", ..." } else { "" }
        )));
    }
    let mut weights = vec![1.0; data.len()];
    let mut kept = 0;
    for r in rows {
        if r.confidence >= d.min_confidence {
            data.push(triage_classifier::Example {
                id: None,
                ..r.example
            });
            weights.push(d.weight);
            kept += 1;
        }
    }
    Ok((data, weights, kept))
}

/// Trains, evaluates on the dev file if any, and saves to `out`. Returns the model and the
/// whole time it took, in seconds.
pub fn train_and_save(
    req: &TrainRequest,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<(Model, f64)> {
    let data = read_jsonl(&req.data)?;
    let dev = req.dev.as_deref().map(read_jsonl).transpose()?;
    let (data, weights) = match &req.distill {
        Some(d) => {
            let (data, weights, kept) = with_distilled(data, d)?;
            tracing::info!(
                distilled = kept,
                weight = d.weight,
                "training with rows labelled by the second opinion"
            );
            (data, Some(weights))
        }
        None => (data, None),
    };
    let t0 = Instant::now();
    let mut model = Model::train_weighted(&data, weights.as_deref(), &req.config, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    {
        let h = model.header_mut();
        // Standard input (`-`) is gone once read: no hash of it to record.
        h.training.data_sha256 = if req.data == std::path::Path::new("-") {
            None
        } else {
            Some(triage_core::sha256_file(&req.data).map_err(|e| EvalError::io(&req.data, e))?)
        };
        h.training.data_file = req
            .data
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        h.description = req.description.clone();
        if let Some(d) = &req.distill {
            let note = format!(
                "distilled from {} (weight {}, min confidence {})",
                d.path.display(),
                d.weight,
                d.min_confidence
            );
            h.description = Some(match h.description.take() {
                Some(desc) => format!("{desc}; {note}"),
                None => note,
            });
        }
    }
    if let Some(dev) = &dev {
        let report = evaluate(&model, dev, &mut NoProgress).report;
        model.header_mut().eval = Some(report);
    }
    model.save(out)?;
    Ok((model, seconds))
}

/// Reads training settings (TOML: `[analyzer]`, `[tfidf]`, `[logistic]`), or the defaults.
pub fn read_train_config(path: Option<&Path>) -> Result<TrainConfig> {
    let Some(p) = path else {
        return Ok(TrainConfig::default());
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| EvalError::Invalid(format!("reading training config {}: {e}", p.display())))?;
    toml::from_str(&text)
        .map_err(|e| EvalError::Invalid(format!("training config {}: {e}", p.display())))
}
