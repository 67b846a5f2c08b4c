//! Choosing training settings on train/dev data only: a grid of alpha × class weight, each
//! scored on a dev split or by k-fold cross-validation, the best kept by a stated criterion.

use std::time::Instant;

use serde::Serialize;
use triage_classifier::{ClassWeight, Example, Model, TrainConfig};
use triage_core::NoProgress;

use crate::error::{EvalError, Result};
use crate::evaluate::evaluate;

/// The fold (0..`folds`) of the example at position `i`: a hash of the position, so that folds
/// are interleaved and the same on every run. Cross-validation and out-of-fold scoring use it.
pub fn fold_of(i: usize, folds: usize) -> usize {
    (i.wrapping_mul(2654435761) >> 7) % folds
}

/// The positions in and out of fold `f`.
pub fn split(n: usize, folds: usize, f: usize) -> (Vec<usize>, Vec<usize>) {
    (0..n).partition(|&i| fold_of(i, folds) != f)
}

/// How to compare settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// Accuracy.
    Accuracy,
    /// Macro-F1.
    MacroF1,
    /// The mean of the two.
    Mean,
}

impl std::str::FromStr for Criterion {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "accuracy" => Ok(Self::Accuracy),
            "macro_f1" => Ok(Self::MacroF1),
            "mean" => Ok(Self::Mean),
            _ => Err(EvalError::Invalid(
                "--metric must be accuracy, macro_f1 or mean".into(),
            )),
        }
    }
}

/// Parses a class-weight name.
pub fn class_weight(name: &str) -> Result<ClassWeight> {
    match name {
        "none" => Ok(ClassWeight::None),
        "balanced" => Ok(ClassWeight::Balanced),
        "balanced_sqrt" => Ok(ClassWeight::BalancedSqrt),
        other => Err(EvalError::Invalid(format!(
            "--class-weight takes none, balanced or balanced_sqrt, not {other:?}"
        ))),
    }
}

/// Where settings are scored.
pub enum Scoring<'a> {
    /// On a dev split.
    Dev(&'a [Example]),
    /// By k-fold cross-validation on the training data.
    Folds(usize),
}

/// One setting's scores.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// The settings.
    pub config: TrainConfig,
    /// Mean accuracy.
    pub accuracy: f64,
    /// Mean macro-F1.
    pub macro_f1: f64,
    /// Seconds it took.
    pub seconds: f64,
}

impl Trial {
    /// The score by `criterion`.
    pub fn score(&self, criterion: Criterion) -> f64 {
        match criterion {
            Criterion::Accuracy => self.accuracy,
            Criterion::MacroF1 => self.macro_f1,
            Criterion::Mean => (self.accuracy + self.macro_f1) / 2.0,
        }
    }
}

/// Accuracy and macro-F1 of `config` on the dev split, or averaged over the folds.
pub fn score(data: &[Example], config: &TrainConfig, scoring: &Scoring<'_>) -> Result<(f64, f64)> {
    match scoring {
        Scoring::Dev(dev) => {
            let m = Model::train(data, config, &mut NoProgress)?;
            let r = evaluate(&m, dev, &mut NoProgress).report;
            Ok((r.accuracy, r.macro_f1))
        }
        Scoring::Folds(folds) => {
            if *folds < 2 {
                return Err(EvalError::Invalid("--folds must be at least 2".into()));
            }
            let (mut acc, mut f1) = (0.0, 0.0);
            for f in 0..*folds {
                let (train, held) = split(data.len(), *folds, f);
                let train: Vec<Example> = train.iter().map(|&i| data[i].clone()).collect();
                let held: Vec<Example> = held.iter().map(|&i| data[i].clone()).collect();
                let m = Model::train(&train, config, &mut NoProgress)?;
                let r = evaluate(&m, &held, &mut NoProgress).report;
                acc += r.accuracy / *folds as f64;
                f1 += r.macro_f1 / *folds as f64;
            }
            Ok((acc, f1))
        }
    }
}

/// Scores every alpha × class weight on top of `base`; `on_trial` sees each as it finishes.
pub fn grid(
    data: &[Example],
    base: &TrainConfig,
    alphas: &[f64],
    class_weights: &[ClassWeight],
    scoring: &Scoring<'_>,
    mut on_trial: impl FnMut(&Trial),
) -> Result<Vec<Trial>> {
    let mut out = Vec::new();
    for cw in class_weights {
        for &alpha in alphas {
            let mut config = base.clone();
            config.logistic.alpha = alpha;
            config.logistic.class_weight = cw.clone();
            let t0 = Instant::now();
            let (accuracy, macro_f1) = score(data, &config, scoring)?;
            let trial = Trial {
                config,
                accuracy,
                macro_f1,
                seconds: t0.elapsed().as_secs_f64(),
            };
            on_trial(&trial);
            out.push(trial);
        }
    }
    Ok(out)
}

/// The best trial by `criterion` (the last of equals).
pub fn best(trials: &[Trial], criterion: Criterion) -> Option<&Trial> {
    trials
        .iter()
        .max_by(|x, y| x.score(criterion).total_cmp(&y.score(criterion)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_data() {
        let n = 1000;
        let mut seen = vec![0; n];
        for f in 0..3 {
            let (train, held) = split(n, 3, f);
            assert_eq!(train.len() + held.len(), n);
            for i in held {
                seen[i] += 1;
            }
        }
        assert!(
            seen.iter().all(|&c| c == 1),
            "each example is held out once"
        );
        let sizes: Vec<usize> = (0..3).map(|f| split(n, 3, f).1.len()).collect();
        assert!(
            sizes.iter().all(|&s| s > 250),
            "folds are balanced: {sizes:?}"
        );
    }

    fn ex(text: &str, label: &str) -> Example {
        Example {
            id: None,
            text: text.into(),
            label: label.into(),
        }
    }

    #[test]
    fn cross_validation_scores_a_learnable_task() {
        let mut data = Vec::new();
        for i in 0..60 {
            data.push(ex(&format!("great lovely thanks {i}"), "pos"));
            data.push(ex(&format!("awful broken refund {i}"), "neg"));
        }
        let mut base = TrainConfig::default();
        base.tfidf.min_df = 1;
        let trials = grid(
            &data,
            &base,
            &[0.1, 1.0],
            &[ClassWeight::None],
            &Scoring::Folds(3),
            |_| {},
        )
        .unwrap();
        assert_eq!(trials.len(), 2);
        let b = best(&trials, Criterion::Mean).unwrap();
        assert!(b.accuracy > 0.95, "{}", b.accuracy);
        assert!(score(&data, &base, &Scoring::Folds(1)).is_err());
    }
}
