//! The fast model's and the second opinion's probabilities for a labelled set: the inputs of
//! every cascade figure. Either both models as they are ([`SecondOpinion::score`]), or out of fold
//! ([`out_of_fold`]): for each fold a fast model and a head trained on the other folds, so that
//! calibration on training data never sees a model that saw the message.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};
use triage_classifier::{Example, Model, Scratch, TrainConfig};
use triage_core::config::Config;
use triage_core::{NoProgress, Progress};
use triage_models::{Encoder, FinetunedClassifier, Head, Mapped, TrainOptions};

use crate::cascade::CascadeInputs;
use crate::embed::{cached_rows, embed_cached};
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
    /// Per message, the share of its features the fast model has never seen.
    pub unseen: Vec<f32>,
    /// Per message, its length in bytes.
    pub bytes: Vec<usize>,
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
            unseen: &self.unseen,
            bytes: &self.bytes,
        }
    }
}

/// The second opinion of a configuration ([`triage_models::SecondOpinion::load`]), with the
/// cache where its rows are kept.
pub struct SecondOpinion {
    /// The model, mapped to the fast model's labels.
    pub mapped: Mapped,
    /// Where embeddings and probabilities are cached.
    pub cache: PathBuf,
}

impl SecondOpinion {
    /// The second opinion of `config` for `model`; `finetuned` or `head` override the
    /// configuration's (`finetuned` first). Relative paths are resolved against `root`.
    pub fn load(
        config: &Config,
        root: &Path,
        finetuned: Option<&Path>,
        head: Option<&Path>,
        model: &Model,
    ) -> Result<Self> {
        let mut slm = config.slm.clone();
        if finetuned.is_some() || head.is_some() {
            slm.finetuned = finetuned.map(Path::to_path_buf);
            slm.head = head.map(Path::to_path_buf);
        }
        let mapped =
            triage_models::SecondOpinion::load(&slm, root, model.labels(), model.is_default())?;
        Ok(Self {
            mapped,
            cache: slm.models.resolved(root).cache_dir(),
        })
    }

    /// The frozen second opinion's encoder (out-of-fold scoring trains a head per fold on it).
    pub fn encoder(&self) -> Result<&Encoder> {
        match &self.mapped.model {
            triage_models::SecondOpinion::Frozen { encoder, .. } => Ok(encoder),
            triage_models::SecondOpinion::Finetuned(_) => Err(EvalError::Invalid(
                "out-of-fold scoring trains a head per fold on the frozen encoder: set [slm] head \
                 (or --head), not a fine-tuned second opinion; for a fine-tuned one, hold out a \
                 dev split of the training data instead"
                    .into(),
            )),
        }
    }

    /// Its probabilities for `texts` in the fast model's label order (cached).
    pub fn probabilities(
        &self,
        texts: &[&str],
        progress: &mut dyn Progress,
    ) -> Result<Array2<f32>> {
        match &self.mapped.model {
            triage_models::SecondOpinion::Frozen { encoder, head } => {
                let x = embed_cached(encoder, texts, &self.cache, progress)?;
                Ok(head
                    .predict_proba(&x)?
                    .select(Axis(1), &self.mapped.columns))
            }
            triage_models::SecondOpinion::Finetuned(c) => {
                let manifest = std::fs::read(c.dir().join(FinetunedClassifier::MANIFEST_FILE))
                    .unwrap_or_default();
                let mut identity = c.dir().to_string_lossy().into_owned().into_bytes();
                identity.extend_from_slice(&manifest);
                let p = cached_rows(
                    &self.cache,
                    "second-opinion",
                    &identity,
                    texts,
                    progress,
                    |t| Ok(c.classify(t)?),
                )?;
                Ok(p.select(Axis(1), &self.mapped.columns))
            }
        }
    }

    /// Both models on `examples`.
    pub fn score(
        &self,
        model: &Model,
        examples: Vec<Example>,
        progress: &mut dyn Progress,
    ) -> Result<Scored> {
        let labels = model.labels().to_vec();
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let (fast, unseen) = fast_probabilities(model, &texts);
        let second = self.probabilities(&texts, progress)?;
        Ok(Scored {
            truth: truth(&labels, &examples),
            labels,
            fast,
            second,
            unseen,
            bytes: texts.iter().map(|t| t.len()).collect(),
            examples,
        })
    }
}

/// The fast probabilities of `texts`, one row each, and each text's unseen-feature share.
pub fn fast_probabilities(model: &Model, texts: &[&str]) -> (Array2<f32>, Vec<f32>) {
    let k = model.labels().len();
    let mut out = Array2::<f32>::zeros((texts.len(), k));
    let mut unseen = Vec::with_capacity(texts.len());
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        model.predict_into(t, &mut scratch, &mut probs);
        unseen.push(model.unseen_share(&scratch));
        for (c, p) in probs.iter().enumerate() {
            out[[i, c]] = *p;
        }
    }
    (out, unseen)
}

/// The head's probabilities for embeddings `x`, in `labels` order.
fn head_probabilities(head: &Head, x: &Array2<f32>, labels: &[String]) -> Result<Array2<f32>> {
    let columns = triage_models::second_opinion::label_columns("frozen", head.labels(), labels)?;
    let hp = head.predict_proba(x)?;
    Ok(hp.select(Axis(1), &columns))
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
    let (encoder, cache) = (second.encoder()?, second.cache.as_path());
    let Folds {
        folds,
        ref train_config,
        head_alpha,
    } = *settings;
    crate::tune::check_folds(examples.len(), folds)?;
    let k = labels.len();
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let x = embed_cached(encoder, &texts, cache, progress)?;
    let truth = truth(labels, &examples);
    let mut fast = Array2::<f32>::zeros((examples.len(), k));
    let mut second = Array2::<f32>::zeros((examples.len(), k));
    let mut unseen = vec![0.0; examples.len()];
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
            let missing: Vec<String> = labels
                .iter()
                .enumerate()
                .filter(|(_, l)| !m.labels().contains(l))
                .map(|(i, l)| {
                    let n = truth.iter().filter(|&&t| t == i).count();
                    format!("{l:?} ({n} in all)")
                })
                .collect();
            return Err(EvalError::Invalid(format!(
                "fold {}/{folds}: its training part has no message labelled {}: every fold's \
                 model must know every label. A label needs at least 2 messages for 2 folds \
                 (more for more folds, as they fall); merge or drop the rarest labels, or add \
                 messages",
                f + 1,
                missing.join(", ")
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
        let (fp, us) = fast_probabilities(&m, &held_texts);
        for (j, &i) in held.iter().enumerate() {
            fast.row_mut(i).assign(&fp.row(j));
            second.row_mut(i).assign(&hp.row(j));
            unseen[i] = us[j];
        }
    }
    Ok(Scored {
        labels: labels.to_vec(),
        truth,
        fast,
        second,
        unseen,
        bytes: texts.iter().map(|t| t.len()).collect(),
        examples,
    })
}
