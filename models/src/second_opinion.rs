//! The second opinion of a configuration: a fine-tuned classifier, or the frozen encoder with a
//! head, chosen by `[slm]` the same way by the service and the offline tools, and answering in
//! the fast model's label order.

use std::path::Path;

use ndarray::{Array2, Axis};
use triage_core::config::SlmConfig;

use crate::error::{ModelsError, Result};
use crate::{Encoder, FinetunedClassifier, Head};

/// Which model gives the second opinion.
pub enum SecondOpinion {
    /// The encoder fine-tuned on the labels (`triage slm finetune`).
    Finetuned(FinetunedClassifier),
    /// The frozen encoder with a classification head.
    Frozen {
        /// The encoder.
        encoder: Encoder,
        /// The head.
        head: Head,
    },
}

/// A second opinion and the column of each fast label in its output.
pub struct Mapped {
    /// The model.
    pub model: SecondOpinion,
    /// `columns[i]` is the output column of the fast model's label `i`.
    pub columns: Vec<usize>,
}

impl SecondOpinion {
    /// The second opinion `[slm]` asks for, for a fast model with `fast_labels` (`is_default`:
    /// the built-in default model). Relative paths are resolved against `root`.
    ///
    /// `[slm] finetuned`, else `[slm] head` on the encoder; with neither, the built-in default
    /// model gets its shipped fine-tuned model when installed, else its shipped head; any other
    /// model needs one of the two.
    pub fn load(
        slm: &SlmConfig,
        root: &Path,
        fast_labels: &[String],
        is_default: bool,
    ) -> Result<Mapped> {
        let models = slm.models.resolved(root);
        let model = if let Some(dir) = &slm.finetuned {
            Self::Finetuned(FinetunedClassifier::load(root.join(dir), &models)?)
        } else if let Some(head) = &slm.head {
            Self::Frozen {
                encoder: Encoder::from_config(&models)?,
                head: Head::load(&root.join(head))?,
            }
        } else if is_default && models.default_finetuned_dir().is_dir() {
            Self::Finetuned(FinetunedClassifier::load(
                models.default_finetuned_dir(),
                &models,
            )?)
        } else if is_default {
            // The frozen head needs the encoder: where that is missing too, nothing is
            // installed, and the warning would promise a fallback that does not come.
            let encoder = Encoder::from_config(&models)?;
            tracing::warn!(
                dir = %models.default_finetuned_dir().display(),
                "the default model's fine-tuned second opinion is not installed \
                 (scripts/install-models.sh): using its frozen head"
            );
            Self::Frozen {
                encoder,
                head: Head::resolve(None, true)?,
            }
        } else {
            return Err(ModelsError::Config(
                "no second opinion for this model: set [slm] finetuned (from `triage slm \
                 finetune`) or [slm] head (from `triage slm train-head`)"
                    .into(),
            ));
        };
        let columns = model.columns(fast_labels)?;
        Ok(Mapped { model, columns })
    }

    /// Its labels.
    pub fn labels(&self) -> &[String] {
        match self {
            Self::Finetuned(c) => c.labels(),
            Self::Frozen { head, .. } => head.labels(),
        }
    }

    /// `fine-tuned` or `frozen`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Finetuned(_) => "fine-tuned",
            Self::Frozen { .. } => "frozen",
        }
    }

    /// The column of each of `fast_labels` in this model's output.
    pub fn columns(&self, fast_labels: &[String]) -> Result<Vec<usize>> {
        label_columns(self.kind(), self.labels(), fast_labels)
    }

    /// Its own probabilities for `texts`, one row each, in its label order.
    pub fn probabilities(&self, texts: &[&str]) -> Result<Array2<f32>> {
        match self {
            Self::Finetuned(c) => c.classify(texts),
            Self::Frozen { encoder, head } => head.predict_proba(&encoder.embed(texts)?),
        }
    }
}

/// The column of each of `fast_labels` among a second opinion's labels `own`. Its labels must be
/// the fast model's: one it lacks cannot be scored, and one only it has would take probability
/// that no fast label receives (the published probabilities would not sum to one). `kind` names
/// it in the error (`fine-tuned`, `frozen`).
///
/// ```
/// use triage_models::second_opinion::label_columns;
/// let own = ["b".to_string(), "a".to_string()];
/// assert_eq!(label_columns("frozen", &own, &["a".into(), "b".into()]).unwrap(), [1, 0]);
/// assert!(label_columns("frozen", &own, &["a".into()]).is_err());
/// ```
pub fn label_columns(kind: &str, own: &[String], fast_labels: &[String]) -> Result<Vec<usize>> {
    let columns = fast_labels
        .iter()
        .map(|l| {
            own.iter().position(|h| h == l).ok_or_else(|| {
                ModelsError::Config(format!(
                    "the {kind} second opinion has no label {l:?} (it has {}): train one on the \
                     fast model's labels",
                    own.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let extra: Vec<&str> = own
        .iter()
        .filter(|h| !fast_labels.contains(h))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        return Err(ModelsError::Config(format!(
            "the {kind} second opinion has labels the fast model lacks: {} (the fast model has \
             {}); their probability would be lost: train one on the fast model's labels",
            extra.join(", "),
            fast_labels.join(", ")
        )));
    }
    Ok(columns)
}

impl Mapped {
    /// Probabilities for `texts` in the fast model's label order.
    pub fn probabilities(&self, texts: &[&str]) -> Result<Array2<f32>> {
        Ok(self
            .model
            .probabilities(texts)?
            .select(Axis(1), &self.columns))
    }
}
