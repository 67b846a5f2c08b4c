//! A fine-tuned classifier: the sentence encoder trained end to end with a classification head on
//! the user's labels (`triage slm finetune`), exported as one int8 ONNX graph whose `logits`
//! output gives the class scores directly.
//!
//! Its directory holds `model_int8.onnx`, `tokenizer.json`, `slm.json` (labels, sequence length),
//! a model card and `MANIFEST.sha256`, which every file is checked against before loading.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::ModelsConfig;
use crate::error::{ModelsError, Result};
use crate::text::TextModel;
use crate::verify::Manifest;

/// `slm.json`: what the directory holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierCard {
    /// The format version (1).
    pub format: u32,
    /// Always `finetuned-classifier`.
    pub kind: String,
    /// The base model it was fine-tuned from.
    pub base: String,
    /// Class labels, in output column order.
    pub labels: Vec<String>,
    /// Longest input in tokens (as in training).
    pub max_seq_len: usize,
    /// The graph's output with the class scores.
    #[serde(default = "logits")]
    pub output: String,
}

fn logits() -> String {
    "logits".into()
}

/// A fine-tuned classifier: text in, class probabilities out.
pub struct FinetunedClassifier {
    model: TextModel,
    card: ClassifierCard,
}

impl std::fmt::Debug for FinetunedClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinetunedClassifier")
            .field("dir", &self.model.dir)
            .field("labels", &self.card.labels.len())
            .finish_non_exhaustive()
    }
}

impl FinetunedClassifier {
    /// The ONNX graph inside the directory.
    pub const MODEL_FILE: &'static str = "model_int8.onnx";
    /// The tokenizer inside the directory.
    pub const TOKENIZER_FILE: &'static str = "tokenizer.json";
    /// What the directory holds.
    pub const CARD_FILE: &'static str = "slm.json";
    /// The checksums of every other file.
    pub const MANIFEST_FILE: &'static str = "MANIFEST.sha256";

    /// Loads the classifier in `dir`, after checking its files against its `MANIFEST.sha256`
    /// (when `config.verify_checksums`), and classifies one message to warm up.
    pub fn load(dir: impl AsRef<Path>, config: &ModelsConfig) -> Result<Self> {
        let dir: PathBuf = dir.as_ref().to_path_buf();
        config.validate().map_err(ModelsError::Config)?;
        let card_path = dir.join(Self::CARD_FILE);
        if !dir.exists() {
            return Err(ModelsError::ModelMissing { path: dir });
        }
        if !card_path.exists() {
            // A directory, but not one `slm finetune` wrote: no installer fixes that.
            return Err(ModelsError::NotMade {
                path: dir,
                what: "a fine-tuned model's directory (it has no slm.json)",
                made_by: "`triage slm finetune`",
            });
        }
        if config.verify_checksums {
            let manifest = dir.join(Self::MANIFEST_FILE);
            if !manifest.is_file() {
                return Err(ModelsError::ModelMissing { path: manifest });
            }
            Manifest::load(&manifest)?.verify_root(&dir)?;
        }
        let text =
            std::fs::read_to_string(&card_path).map_err(|e| ModelsError::io(&card_path, e))?;
        let card: ClassifierCard =
            serde_json::from_str(&text).map_err(|e| ModelsError::ModelCorrupt {
                path: card_path.clone(),
                reason: format!("not a slm.json: {e}"),
            })?;
        if card.kind != "finetuned-classifier" || card.format != 1 {
            return Err(ModelsError::ModelCorrupt {
                path: card_path,
                reason: format!(
                    "kind {:?} format {}: this triage reads finetuned-classifier format 1",
                    card.kind, card.format
                ),
            });
        }
        if card.labels.len() < 2 || !(2..=512).contains(&card.max_seq_len) {
            return Err(ModelsError::ModelCorrupt {
                path: card_path,
                reason: "fewer than two labels, or max_seq_len outside 2..=512".into(),
            });
        }
        let model = TextModel::load(
            &dir,
            Self::MODEL_FILE,
            Self::TOKENIZER_FILE,
            card.max_seq_len,
            &card.output,
            config,
            "classifier",
        )?;
        let classifier = Self { model, card };
        let warm = classifier.classify(&["warm-up"])?;
        if warm.ncols() != classifier.card.labels.len() {
            return Err(ModelsError::ModelCorrupt {
                path: dir.join(Self::MODEL_FILE),
                reason: format!(
                    "{} outputs for the {} labels of slm.json",
                    warm.ncols(),
                    classifier.card.labels.len()
                ),
            });
        }
        tracing::info!(dir = %dir.display(), labels = classifier.card.labels.len(), "loaded fine-tuned classifier");
        Ok(classifier)
    }

    /// Labels, in probability column order.
    pub fn labels(&self) -> &[String] {
        &self.card.labels
    }

    /// What `slm.json` says.
    pub fn card(&self) -> &ClassifierCard {
        &self.card
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.model.dir
    }

    /// Class probabilities of `texts` (one row each, in input order). The texts are sorted by
    /// length and run in batches of at most `encoder_batch_size` whose padding is bounded
    /// (`TextModel::run_all`): an admission batch of mixed lengths padded to its longest text
    /// spent most of its work on padding. The int8 graph quantises activations per batch, so a
    /// text's probabilities may differ in the last digits with the batch it is in.
    pub fn classify(&self, texts: &[&str]) -> Result<Array2<f32>> {
        self.model.run_all(texts, true, |o| {
            let [ob, k] = o.dims[..] else {
                return Err(self.model.error(format!(
                    "expected a [batch, labels] output, got shape {:?}",
                    o.dims
                )));
            };
            if ob != o.b || o.data.len() != ob * k {
                return Err(self.model.error(format!(
                    "output shape {:?} does not match the batch of {}",
                    o.dims, o.b
                )));
            }
            let mut out = Array2::<f32>::zeros((ob, k));
            for (r, mut row) in out.outer_iter_mut().enumerate() {
                let logits = &o.data[r * k..(r + 1) * k];
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (p, &l) in row.iter_mut().zip(logits) {
                    *p = (l - max).exp();
                    sum += *p;
                }
                row /= sum;
            }
            Ok(out)
        })
    }
}
