//! Sentence embeddings with all-MiniLM-L6-v2 (int8): tokenise, pad per batch, run, mean-pool over the attention
//! mask, L2-normalise.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use ndarray::{Array1, Array2};
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

use crate::ModelsConfig;
use crate::error::{ModelsError, Result};
use crate::runtime;
use crate::verify::Manifest;

/// A sentence encoder: text in, one L2-normalised embedding per text out.
///
/// `Encoder` is `Send + Sync`: `embed` takes `&self`. ONNX Runtime sessions need exclusive access to run, so the
/// encoder holds `encoder_sessions` of them behind mutexes and a call takes whichever is free.
pub struct Encoder {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    tokenizer: Tokenizer,
    token_type_ids: bool,
    output: String,
    dim: usize,
    batch_size: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// One tokenised text.
struct Encoded {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
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
        let model = dir.join(Self::MODEL_FILE);
        let tokenizer_path = dir.join(Self::TOKENIZER_FILE);
        for path in [&dir, &model, &tokenizer_path] {
            if !path.exists() {
                return Err(ModelsError::ModelMissing { path: path.clone() });
            }
        }
        if config.verify_checksums {
            Manifest::load_or_builtin(config.manifest.as_deref())?.verify_dir(&dir)?;
        }
        let runtime = runtime::init(config)?;

        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelsError::ModelCorrupt {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        // tokenizer.json pads every input to 128 tokens and truncates at 128: pad per batch ourselves instead,
        // and truncate at the configured length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_seq_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| ModelsError::Config(format!("tokenizer truncation: {e}")))?;

        let sessions = (0..config.encoder_sessions)
            .map(|_| runtime.session(&model, config).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let (token_type_ids, output) = {
            let first = sessions[0].lock().unwrap_or_else(PoisonError::into_inner);
            let has = |name: &str| first.inputs().iter().any(|i| i.name() == name);
            if !has("input_ids") || !has("attention_mask") {
                return Err(ModelsError::ModelCorrupt {
                    path: model,
                    reason: "the graph has no `input_ids` / `attention_mask` inputs: not a BERT-style encoder"
                        .into(),
                });
            }
            let output = first
                .outputs()
                .iter()
                .find(|o| o.name() == "last_hidden_state")
                .or_else(|| first.outputs().first())
                .map(|o| o.name().to_string())
                .ok_or_else(|| ModelsError::ModelCorrupt {
                    path: model.clone(),
                    reason: "the graph has no outputs".into(),
                })?;
            (has("token_type_ids"), output)
        };

        let mut encoder = Self {
            sessions,
            next: AtomicUsize::new(0),
            tokenizer,
            token_type_ids,
            output,
            dim: 0,
            batch_size: config.encoder_batch_size,
            dir,
        };
        let warm = encoder.embed(&["warm-up"])?;
        encoder.dim = warm.ncols();
        tracing::info!(dir = %encoder.dir.display(), dim = encoder.dim, "loaded encoder");
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
        &self.dir
    }

    /// Number of tokens `text` becomes (after truncation), including `[CLS]` and `[SEP]`.
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.ids.len())
    }

    /// Embeds `texts`: one L2-normalised row per text, in input order.
    ///
    /// Texts are sorted by length and run in batches of `encoder_batch_size`, each padded to its longest text, so
    /// a long list costs little padding. An empty slice gives a `0 × dim` array.
    pub fn embed(&self, texts: &[&str]) -> Result<Array2<f32>> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].ids.len());

        let mut out = Array2::<f32>::zeros((texts.len(), self.dim));
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let rows = self.run_batch(&batch)?;
            if out.ncols() != rows.ncols() {
                // First call (the warm-up in `load`) learns the width.
                out = Array2::zeros((texts.len(), rows.ncols()));
            }
            for (row, &i) in rows.outer_iter().zip(chunk) {
                out.row_mut(i).assign(&row);
            }
        }
        Ok(out)
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Result<Array1<f32>> {
        let rows = self.embed(&[text])?;
        Ok(rows.row(0).to_owned())
    }

    fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelsError::Tokenizer(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
        })
    }

    /// Runs one padded batch and returns its pooled, normalised embeddings (rows in batch order).
    fn run_batch(&self, batch: &[&Encoded]) -> Result<Array2<f32>> {
        let b = batch.len();
        let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; b * len];
        let mut mask = vec![0i64; b * len];
        let mut types = vec![0i64; b * len];
        for (r, e) in batch.iter().enumerate() {
            for (t, (&id, &ty)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[r * len + t] = i64::from(id);
                mask[r * len + t] = 1;
                types[r * len + t] = i64::from(ty);
            }
        }
        let tensor = |data: Vec<i64>| {
            Tensor::from_array(([b, len], data))
                .map(SessionInputValue::from)
                .map_err(ModelsError::encoder)
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), tensor(ids)?),
            ("attention_mask".into(), tensor(mask.clone())?),
        ];
        if self.token_type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?));
        }

        self.with_session(|session| {
            let outputs = session.run(inputs).map_err(ModelsError::encoder)?;
            let value = outputs
                .get(&self.output)
                .ok_or_else(|| ModelsError::encoder(format!("no `{}` output", self.output)))?;
            let (shape, hidden) = value
                .try_extract_tensor::<f32>()
                .map_err(ModelsError::encoder)?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            let [ob, olen, dim] = dims[..] else {
                return Err(ModelsError::encoder(format!(
                    "expected a [batch, tokens, dim] output, got shape {dims:?}"
                )));
            };
            if ob != b || olen != len || hidden.len() != b * len * dim {
                return Err(ModelsError::encoder(format!(
                    "output shape {dims:?} does not match the [{b}, {len}, _] input"
                )));
            }
            Ok(mean_pool_normalise(hidden, &mask, b, len, dim))
        })
    }

    /// Runs `f` on a free session (or waits for one).
    fn with_session<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for k in 0..n {
            match self.sessions[(start + k) % n].try_lock() {
                Ok(mut guard) => return f(&mut guard),
                Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let mut guard = self.sessions[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
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
