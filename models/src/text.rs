//! What the BERT-style models share: a tokenizer with per-batch padding, sessions behind mutexes,
//! and a padded batch run that hands the raw output to the caller (who pools or softmaxes it).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use tokenizers::{Tokenizer, TruncationParams};

use crate::ModelsConfig;
use crate::error::{ModelsError, Result};
use crate::runtime;

/// One tokenised text.
pub(crate) struct Encoded {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
}

/// A padded batch's output: `data` is row-major with shape `dims`; `mask` is the batch's
/// `[b, len]` attention mask.
pub(crate) struct BatchOutput<'a> {
    pub(crate) dims: Vec<usize>,
    pub(crate) data: &'a [f32],
    pub(crate) mask: &'a [i64],
    pub(crate) b: usize,
    pub(crate) len: usize,
}

/// Tokenizer + sessions of one `.onnx` file with `input_ids` / `attention_mask` (and maybe
/// `token_type_ids`) inputs.
pub(crate) struct TextModel {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    tokenizer: Tokenizer,
    token_type_ids: bool,
    output: String,
    pub(crate) batch_size: usize,
    pub(crate) dir: PathBuf,
    /// `encoder` or `classifier`, for error messages.
    role: &'static str,
}

impl TextModel {
    /// Loads `dir/model` and `dir/tokenizer`, truncating at `max_seq_len`, with
    /// `config.encoder_sessions` sessions; `output` names the output to read (the first one when
    /// the graph has no output of that name).
    pub(crate) fn load(
        dir: &Path,
        model: &str,
        tokenizer: &str,
        max_seq_len: usize,
        output: &str,
        config: &ModelsConfig,
        role: &'static str,
    ) -> Result<Self> {
        let model = dir.join(model);
        let tokenizer_path = dir.join(tokenizer);
        for path in [dir, &model, &tokenizer_path] {
            if !path.exists() {
                return Err(ModelsError::ModelMissing {
                    path: path.to_path_buf(),
                });
            }
        }
        let runtime = runtime::init(config)?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelsError::ModelCorrupt {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            })?;
        // tokenizer.json pads every input to 128 tokens and truncates at 128: pad per batch
        // ourselves instead, and truncate at the configured length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_len,
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
                    reason: "the graph has no `input_ids` / `attention_mask` inputs: not a BERT-style model"
                        .into(),
                });
            }
            let output = first
                .outputs()
                .iter()
                .find(|o| o.name() == output)
                .or_else(|| first.outputs().first())
                .map(|o| o.name().to_string())
                .ok_or_else(|| ModelsError::ModelCorrupt {
                    path: model.clone(),
                    reason: "the graph has no outputs".into(),
                })?;
            (has("token_type_ids"), output)
        };
        Ok(Self {
            sessions,
            next: AtomicUsize::new(0),
            tokenizer,
            token_type_ids,
            output,
            batch_size: config.encoder_batch_size,
            dir: dir.to_path_buf(),
            role,
        })
    }

    pub(crate) fn error(&self, reason: impl std::fmt::Display) -> ModelsError {
        ModelsError::Inference {
            model: self.role,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelsError::Tokenizer(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
        })
    }

    /// Runs `texts` in batches of at most `batch_size`, each padded to its longest text; `take`
    /// turns each batch's output into one row per text, and the rows come back in input order.
    ///
    /// With `sort`, the texts are sorted by length first and a batch also ends where the next
    /// text is more than a quarter (plus two tokens) longer than the batch's first: padding is
    /// then at most that, whether `texts` is a long list or one small admission batch of mixed
    /// lengths (where one batch padded to its longest text wasted most of its work).
    pub(crate) fn run_all(
        &self,
        texts: &[&str],
        sort: bool,
        mut take: impl FnMut(&BatchOutput<'_>) -> Result<ndarray::Array2<f32>>,
    ) -> Result<ndarray::Array2<f32>> {
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        if sort {
            order.sort_by_key(|&i| encoded[i].ids.len());
        }
        let lengths: Vec<usize> = order.iter().map(|&i| encoded[i].ids.len()).collect();
        let mut out = ndarray::Array2::<f32>::zeros((texts.len(), 0));
        for range in batches(&lengths, self.batch_size.max(1), sort) {
            let chunk = &order[range];
            let batch: Vec<&Encoded> = chunk.iter().map(|&i| &encoded[i]).collect();
            let rows = self.run_batch(&batch, &mut take)?;
            if out.ncols() != rows.ncols() {
                out = ndarray::Array2::zeros((texts.len(), rows.ncols()));
            }
            for (row, &i) in rows.outer_iter().zip(chunk) {
                out.row_mut(i).assign(&row);
            }
        }
        Ok(out)
    }

    /// Runs one padded batch and hands its output to `take`.
    fn run_batch(
        &self,
        batch: &[&Encoded],
        take: &mut impl FnMut(&BatchOutput<'_>) -> Result<ndarray::Array2<f32>>,
    ) -> Result<ndarray::Array2<f32>> {
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
                .map_err(|e| self.error(e))
        };
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), tensor(ids)?),
            ("attention_mask".into(), tensor(mask.clone())?),
        ];
        if self.token_type_ids {
            inputs.push(("token_type_ids".into(), tensor(types)?));
        }
        self.with_session(|session| {
            let outputs = session.run(inputs).map_err(|e| self.error(e))?;
            let value = outputs
                .get(&self.output)
                .ok_or_else(|| self.error(format!("no `{}` output", self.output)))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| self.error(e))?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            take(&BatchOutput {
                dims,
                data,
                mask: &mask,
                b,
                len,
            })
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

/// Index ranges of consecutive batches over texts of `lengths` (in run order): at most `size`
/// each; with `bounded_padding` (lengths ascending), a batch also ends before a text longer than
/// its first text plus a quarter plus two tokens.
fn batches(
    lengths: &[usize],
    size: usize,
    bounded_padding: bool,
) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= lengths.len() {
            return None;
        }
        let limit = lengths[start] + lengths[start] / 4 + 2;
        let mut end = start + 1;
        while end < lengths.len()
            && end - start < size
            && (!bounded_padding || lengths[end] <= limit)
        {
            end += 1;
        }
        let range = start..end;
        start = end;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_bound_padding_when_sorted() {
        let lengths = [5, 6, 7, 8, 9, 12, 30, 31, 40, 64];
        let b: Vec<_> = batches(&lengths, 64, true).collect();
        // 5 allows up to 8; 9 up to 13; 30 up to 39; 40 up to 52; 64 alone.
        assert_eq!(b, vec![0..4, 4..6, 6..8, 8..9, 9..10]);
        // Never more than the size.
        let b: Vec<_> = batches(&lengths, 3, true).collect();
        assert_eq!(b, vec![0..3, 3..6, 6..8, 8..9, 9..10]);
        // Arrival order: fixed-size batches only.
        let b: Vec<_> = batches(&lengths, 4, false).collect();
        assert_eq!(b, vec![0..4, 4..8, 8..10]);
        assert_eq!(batches(&[], 4, true).count(), 0);
    }
}
