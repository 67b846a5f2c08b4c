//! The fast model's and the second opinion's probabilities for a labelled set: the inputs of
//! every cascade figure. Either both models as they are ([`score`]), or out of fold
//! ([`out_of_fold`]): for each fold a fast model and a head trained on the other folds, so that
//! calibration on training data never sees a model that saw the message.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};
use triage_classifier::{Example, Model, Scratch, TrainConfig};
use triage_core::config::Config;
use triage_core::{NoProgress, Progress};
use triage_models::{Encoder, Head, TrainOptions};

use crate::cascade::CascadeInputs;
use crate::embed::embed_cached;
use crate::error::{EvalError, Result};
use crate::evaluate::truth;
use crate::tune::split;

/// Fast and second-opinion probabilities for a labelled set.
pub struct Scored {
    /// The fast model's labels.
    pub labels: Vec<String>,
    /// True label index per message (`labels.len()` if unknown).
    pub truth: Vec<usize>,
    /// Fast probabilities, one row per message.
    pub fast: Array2<f32>,
    /// Second-opinion probabilities, one row per message, in the fast model's label order.
    pub second: Array2<f32>,
    /// The messages.
    pub examples: Vec<Example>,
}

impl Scored {
    /// The cascade inputs.
    pub fn inputs(&self) -> CascadeInputs<'_> {
        CascadeInputs {
            labels: &self.labels,
            truth: &self.truth,
            fast: &self.fast,
            second: &self.second,
        }
    }
}

/// The second opinion of a configuration: the encoder of `[slm.models]` and the head of
/// `[slm] head` (or the one given, or the one shipped for the built-in default model), with the
/// cache where embeddings are kept.
pub struct SecondOpinion {
    /// The sentence encoder.
    pub encoder: Encoder,
    /// The head, when one is loaded (out-of-fold scoring trains its own).
    pub head: Option<Head>,
    /// Where embeddings are cached.
    pub cache: PathBuf,
}

impl SecondOpinion {
    /// Loads the encoder, and the head unless `with_head` is false. Relative paths are resolved
    /// against `root`.
    pub fn load(
        config: &Config,
        root: &Path,
        head: Option<&Path>,
        model: &Model,
        with_head: bool,
    ) -> Result<Self> {
        let models = config.slm.models.resolved(root);
        let head = if with_head {
            let path = head
                .map(Path::to_path_buf)
                .or_else(|| config.slm.head.as_ref().map(|p| root.join(p)));
            Some(Head::resolve(path.as_deref(), model.is_default())?)
        } else {
            None
        };
        Ok(Self {
            encoder: Encoder::from_config(&models)?,
            head,
            cache: models.cache_dir(),
        })
    }

    /// Both models on `examples` ([`score`]).
    pub fn score(
        &self,
        model: &Model,
        examples: Vec<Example>,
        progress: &mut dyn Progress,
    ) -> Result<Scored> {
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| EvalError::Invalid("no second-opinion head loaded".into()))?;
        score(model, &self.encoder, head, examples, &self.cache, progress)
    }
}

/// The fast probabilities of `texts`, one row each.
pub fn fast_probabilities(model: &Model, texts: &[&str]) -> Array2<f32> {
    let k = model.labels().len();
    let mut out = Array2::<f32>::zeros((texts.len(), k));
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        model.predict_into(t, &mut scratch, &mut probs);
        for (c, p) in probs.iter().enumerate() {
            out[[i, c]] = *p;
        }
    }
    out
}

/// The head's column of each of `labels` (an error names a label the head lacks).
fn head_columns(head: &Head, labels: &[String]) -> Result<Vec<usize>> {
    labels
        .iter()
        .map(|l| {
            head.labels().iter().position(|h| h == l).ok_or_else(|| {
                EvalError::Invalid(format!(
                    "the second-opinion head has no label {l:?} (it has {})",
                    head.labels().join(", ")
                ))
            })
        })
        .collect()
}

/// The head's probabilities for embeddings `x`, in `labels` order.
fn head_probabilities(head: &Head, x: &Array2<f32>, labels: &[String]) -> Result<Array2<f32>> {
    let columns = head_columns(head, labels)?;
    let hp = head.predict_proba(x)?;
    Ok(hp.select(Axis(1), &columns))
}

/// Both models on `examples` as they are: the fast model and the encoder + head.
pub fn score(
    model: &Model,
    encoder: &Encoder,
    head: &Head,
    examples: Vec<Example>,
    cache: &Path,
    progress: &mut dyn Progress,
) -> Result<Scored> {
    let labels = model.labels().to_vec();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let fast = fast_probabilities(model, &texts);
    let x = embed_cached(encoder, &texts, cache, progress)?;
    let second = head_probabilities(head, &x, &labels)?;
    Ok(Scored {
        truth: truth(&labels, &examples),
        labels,
        fast,
        second,
        examples,
    })
}

/// How to score out of fold.
#[derive(Debug, Clone)]
pub struct Folds {
    /// Folds (at least 2).
    pub folds: usize,
    /// The fast model's training settings.
    pub train_config: TrainConfig,
    /// The heads' L2 strength.
    pub head_alpha: f64,
}

/// Out-of-fold probabilities on `examples` (training data without a dev split): for each fold,
/// a fast model and a head trained on the other folds score the held-out one. `labels` are the
/// deployed fast model's; every fold's model must have the same.
pub fn out_of_fold(
    second: &SecondOpinion,
    examples: Vec<Example>,
    labels: &[String],
    settings: &Folds,
    progress: &mut dyn Progress,
) -> Result<Scored> {
    let (encoder, cache) = (&second.encoder, second.cache.as_path());
    let Folds {
        folds,
        ref train_config,
        head_alpha,
    } = *settings;
    if folds < 2 {
        return Err(EvalError::Invalid("--folds must be at least 2".into()));
    }
    let k = labels.len();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let x = embed_cached(encoder, &texts, cache, progress)?;
    let truth = truth(labels, &examples);
    let mut fast = Array2::<f32>::zeros((examples.len(), k));
    let mut second = Array2::<f32>::zeros((examples.len(), k));
    for f in 0..folds {
        let (train_idx, held) = split(examples.len(), folds, f);
        let train: Vec<Example> = train_idx.iter().map(|&i| examples[i].clone()).collect();
        progress.message(&format!(
            "fold {}/{folds}: training on {} messages",
            f + 1,
            train.len()
        ));
        let m = Model::train(&train, train_config, &mut NoProgress)?;
        if m.labels() != labels {
            return Err(EvalError::Invalid(format!(
                "fold {f} lacks some labels; use fewer folds"
            )));
        }
        let xs = x.select(Axis(0), &train_idx);
        let ys: Vec<usize> = train_idx.iter().map(|&i| truth[i]).collect();
        let head = Head::train(
            &xs,
            &ys,
            labels,
            &TrainOptions {
                alpha: head_alpha,
                ..TrainOptions::default()
            },
        )?;
        let hp = head_probabilities(&head, &x.select(Axis(0), &held), labels)?;
        let held_texts: Vec<&str> = held.iter().map(|&i| texts[i]).collect();
        let fp = fast_probabilities(&m, &held_texts);
        for (j, &i) in held.iter().enumerate() {
            fast.row_mut(i).assign(&fp.row(j));
            second.row_mut(i).assign(&hp.row(j));
        }
    }
    Ok(Scored {
        labels: labels.to_vec(),
        truth,
        fast,
        second,
        examples,
    })
}
