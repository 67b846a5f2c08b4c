//! Sentence embeddings with all-MiniLM-L6-v2 (int8): tokenise, pad per batch, run, mean-pool over the attention
//! mask, L2-normalise.

use std::path::Path;

use ndarray::{Array1, Array2};

use crate::ModelsConfig;
use crate::error::{ModelsError, Result};
use crate::text::TextModel;
use crate::verify::Manifest;

/// A sentence encoder: text in, one L2-normalised embedding per text out.
///
/// `Encoder` is `Send + Sync`: `embed` takes `&self`. ONNX Runtime sessions need exclusive access to run, so the
/// encoder holds `encoder_sessions` of them behind mutexes and a call takes whichever is free.
pub struct Encoder {
    model: TextModel,
    dim: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.model.dir)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// The ONNX graph inside the encoder directory.
    pub const MODEL_FILE: &'static str = "model_int8.onnx";
    /// The tokenizer inside the encoder directory.
    pub const TOKENIZER_FILE: &'static str = "tokenizer.json";

    /// Loads the encoder from `dir` (`model_int8.onnx` + `tokenizer.json`), initialising ONNX Runtime if needed.
    ///
    /// Checks the files against the manifest first when `config.verify_checksums` is set, and runs one warm-up
    /// embedding so that a broken model fails here rather than on the first message.
    pub fn load(dir: impl AsRef<Path>, config: &ModelsConfig) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        config.validate().map_err(ModelsError::Config)?;
        for path in [
            &dir,
            &dir.join(Self::MODEL_FILE),
            &dir.join(Self::TOKENIZER_FILE),
        ] {
            if !path.exists() {
                return Err(ModelsError::ModelMissing { path: path.clone() });
            }
        }
        if config.verify_checksums {
            Manifest::load_or_builtin(config.manifest.as_deref())?.verify_dir(&dir)?;
        }
        let model = TextModel::load(
            &dir,
            Self::MODEL_FILE,
            Self::TOKENIZER_FILE,
            config.max_seq_len,
            "last_hidden_state",
            config,
            "encoder",
        )?;
        let mut encoder = Self { model, dim: 0 };
        let warm = encoder.embed(&["warm-up"])?;
        encoder.dim = warm.ncols();
        tracing::info!(dir = %encoder.model.dir.display(), dim = encoder.dim, "loaded encoder");
        Ok(encoder)
    }

    /// Loads the encoder from `config.encoder_dir()`.
    pub fn from_config(config: &ModelsConfig) -> Result<Self> {
        Self::load(config.encoder_dir(), config)
    }

    /// Embedding width (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.model.dir
    }

    /// Number of tokens `text` becomes (after truncation), including `[CLS]` and `[SEP]`.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.model.encode(text)?.ids.len())
    }

    /// Embeds `texts`: one L2-normalised row per text, in input order.
    ///
    /// Texts are sorted by length and run in batches of at most `encoder_batch_size`, each padded to its longest
    /// text and ending where padding would exceed a quarter of its first text (`TextModel::run_all`), so a long
    /// list and a small batch of mixed lengths both cost little padding. An empty slice gives a `0 × dim` array.
    pub fn embed(&self, texts: &[&str]) -> Result<Array2<f32>> {
        let out = self.model.run_all(texts, true, |o| {
            let [ob, olen, dim] = o.dims[..] else {
                return Err(self.model.error(format!(
                    "expected a [batch, tokens, dim] output, got shape {:?}",
                    o.dims
                )));
            };
            if ob != o.b || olen != o.len || o.data.len() != o.b * o.len * dim {
                return Err(self.model.error(format!(
                    "output shape {:?} does not match the [{}, {}, _] input",
                    o.dims, o.b, o.len
                )));
            }
            Ok(mean_pool_normalise(o.data, o.mask, o.b, o.len, dim))
        })?;
        if out.ncols() == 0 {
            return Ok(Array2::zeros((texts.len(), self.dim)));
        }
        Ok(out)
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Result<Array1<f32>> {
        let rows = self.embed(&[text])?;
        Ok(rows.row(0).to_owned())
    }
}

/// Mean of the token vectors where `mask` is 1, then L2-normalised; `hidden` is `[b, len, dim]` row-major.
fn mean_pool_normalise(
    hidden: &[f32],
    mask: &[i64],
    b: usize,
    len: usize,
    dim: usize,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((b, dim));
    for (r, mut row) in out.outer_iter_mut().enumerate() {
        let mut count = 0.0f32;
        for t in 0..len {
            if mask[r * len + t] == 0 {
                continue;
            }
            count += 1.0;
            let token = &hidden[(r * len + t) * dim..(r * len + t + 1) * dim];
            for (acc, &x) in row.iter_mut().zip(token) {
                *acc += x;
            }
        }
        row /= count.max(1e-9);
        let norm = row.dot(&row).sqrt().max(1e-12);
        row /= norm;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pool_ignores_padding_and_normalises() {
        // batch 1, 3 tokens (last one padding), dim 2
        let hidden = [1.0, 0.0, 3.0, 4.0, 100.0, 100.0];
        let out = mean_pool_normalise(&hidden, &[1, 1, 0], 1, 3, 2);
        // mean = (2, 2) -> normalised (0.7071, 0.7071)
        assert!((out[[0, 0]] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((out[[0, 1]] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
