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
    let t0 = Instant::now();
    let mut model = Model::train(&data, &req.config, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    {
        let h = model.header_mut();
        h.training.data_sha256 =
            Some(triage_core::sha256_file(&req.data).map_err(|e| EvalError::io(&req.data, e))?);
        h.training.data_file = req
            .data
            .file_name()
            .map(|f| f.to_string_lossy().into_owned());
        h.description = req.description.clone();
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
