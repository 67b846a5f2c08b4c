//! Rows computed per text by a model (sentence embeddings, a fine-tuned second opinion's
//! probabilities), cached on disk under the models' cache directory and keyed by the model and
//! the texts, so that calibration, evaluation and head training on the same data run it once.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};
use triage_core::{Progress, Unit};

use crate::error::{EvalError, Result};

/// The rows of `texts` (one per text), from `cache/<kind>/<key>.f32` when present, else from
/// `compute` (called on chunks of 512 texts, reported as the phase `kind`) and then stored. The
/// key is the SHA-256 of `identity` (what names the model and its version) and the texts.
pub fn cached_rows(
    cache: &Path,
    kind: &str,
    identity: &[u8],
    texts: &[&str],
    progress: &mut dyn Progress,
    mut compute: impl FnMut(&[&str]) -> Result<Array2<f32>>,
) -> Result<Array2<f32>> {
    let mut h = Sha256::new();
    h.update(identity);
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    let key = hex::encode(h.finalize());
    let path: PathBuf = cache.join(kind).join(format!("{key}.f32"));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() >= 8
    {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let d = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if n == texts.len() && bytes.len() == 8 + 4 * n * d {
            let v: Vec<f32> = bytes[8..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Ok(a) = Array2::from_shape_vec((n, d), v) {
                return Ok(a);
            }
        }
    }
    progress.phase(kind, Some(texts.len() as u64), Unit::Messages);
    let mut rows: Vec<f32> = Vec::new();
    let mut d = 0;
    for chunk in texts.chunks(512) {
        let x = compute(chunk)?;
        d = x.ncols();
        rows.extend(x.iter());
        progress.advance(chunk.len() as u64);
    }
    progress.finish_phase();
    let x = Array2::from_shape_vec((texts.len(), d), rows)
        .map_err(|e| EvalError::Invalid(format!("{kind} shape: {e}")))?;
    if let Some(dir) = path.parent() {
        let mut bytes = Vec::with_capacity(8 + 4 * x.len());
        bytes.extend_from_slice(&(texts.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(d as u32).to_le_bytes());
        for v in x.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = std::fs::write(&path, bytes);
        }
    }
    Ok(x)
}

/// Sentence embeddings of `texts`, cached ([`cached_rows`], keyed by the encoder's directory).
pub fn embed_cached(
    encoder: &triage_models::Encoder,
    texts: &[&str],
    cache: &Path,
    progress: &mut dyn Progress,
) -> Result<Array2<f32>> {
    let identity = encoder.dir().to_string_lossy().into_owned();
    cached_rows(
        cache,
        "embeddings",
        identity.as_bytes(),
        texts,
        progress,
        |c| Ok(encoder.embed(c)?),
    )
}
