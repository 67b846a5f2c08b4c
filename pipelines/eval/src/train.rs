//! `triage train`: a fast model from a labelled file, with its provenance (the data file's name
//! and SHA-256) and, given a dev file, its held-out metrics stored in the model file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use triage_classifier::{Example, Model, TrainConfig, read_jsonl};
use triage_core::{NoProgress, Progress};

use crate::error::{EvalError, Result};
use crate::evaluate::{evaluate, over_limit, unknown_labels};

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
    for warning in label_warnings(&data) {
        progress.message(&format!("warning: {warning}"));
    }
    let limit = triage_core::message::InputConfig::default().max_message_bytes;
    if let Some(warning) = over_limit(data.iter().map(|e| e.text.as_str()), limit) {
        progress.message(&format!("warning: {warning}; the model learns from them"));
    }
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
        if let Some(warning) = unknown_labels(model.labels(), dev) {
            progress.message(&format!("warning: --dev: {warning}"));
        }
        let report = evaluate(&model, dev, &mut NoProgress).report;
        model.header_mut().eval = Some(report);
    }
    model.save(out)?;
    Ok((model, seconds))
}

/// What in labelled training data is probably a mistake, as warnings (the training goes on):
/// labels that differ only in case or surrounding white space (`spam`, `Spam`, `spam `), labels
/// with a single example, and texts given more than one label.
///
/// ```
/// use triage_classifier::Example;
/// use triage_eval::train::label_warnings;
///
/// let ex = |text: &str, label: &str| Example { id: None, text: text.into(), label: label.into() };
/// let data = [ex("win money", "spam"), ex("win cash", "Spam"), ex("hi", "ham"), ex("hi", "spam")];
/// let w = label_warnings(&data);
/// assert_eq!(w.len(), 3, "{w:?}");
/// assert!(w[0].starts_with(r#"labels "Spam" and "spam" differ only in case"#), "{w:?}");
/// assert!(w[1].starts_with(r#"2 labels have a single example: "Spam", "ham""#), "{w:?}");
/// assert!(w[2].starts_with(r#"1 text has more than one label: "hi" ("ham", "spam")"#), "{w:?}");
/// ```
pub fn label_warnings(data: &[Example]) -> Vec<String> {
    use std::collections::{BTreeMap, HashMap};
    const SHOWN: usize = 5;
    let more = |n: usize| if n > SHOWN { ", …" } else { "" };
    let quoted = |ls: &[&str]| -> String {
        ls.iter()
            .take(SHOWN)
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in data {
        *counts.entry(&e.label).or_default() += 1;
    }
    let mut warnings = Vec::new();
    let mut alike: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for &label in counts.keys() {
        alike
            .entry(label.trim().to_lowercase())
            .or_default()
            .push(label);
    }
    for group in alike.values().filter(|g| g.len() > 1) {
        let (last, first) = group.split_last().expect("more than one");
        warnings.push(format!(
            "labels {} and {last:?} differ only in case or white space ({} examples): probably \
             one label, which the model learns as {} different ones",
            first
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            group
                .iter()
                .map(|l| counts[l].to_string())
                .collect::<Vec<_>>()
                .join(", "),
            group.len()
        ));
    }
    let single: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(l, _)| *l)
        .collect();
    if !single.is_empty() {
        warnings.push(format!(
            "{} label{} a single example: {}{} (too few to learn; add examples or merge them)",
            single.len(),
            if single.len() == 1 { " has" } else { "s have" },
            quoted(&single),
            more(single.len())
        ));
    }
    let mut by_text: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in data {
        let labels = by_text.entry(e.text.as_str()).or_default();
        if !labels.contains(&e.label.as_str()) {
            labels.push(&e.label);
        }
    }
    let mut mixed: Vec<(&str, Vec<&str>)> =
        by_text.into_iter().filter(|(_, l)| l.len() > 1).collect();
    if !mixed.is_empty() {
        mixed.sort_unstable();
        let n = mixed.len();
        let (text, labels) = &mut mixed[0];
        labels.sort_unstable();
        let shown: String = text.chars().take(60).collect();
        warnings.push(format!(
            "{} text{} more than one label: {shown:?} ({}){} (the model cannot tell such \
             messages apart; check the labels)",
            n,
            if n == 1 { " has" } else { "s have" },
            quoted(labels),
            if n > 1 { ", …" } else { "" }
        ));
    }
    warnings
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
