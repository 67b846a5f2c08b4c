//! Choosing training settings on train/dev data only: a grid of character n-gram range × alpha ×
//! class weight, each scored on a dev split or by k-fold cross-validation. The choice is speed
//! aware: of the settings within a stated margin of the best score, the one whose messages have
//! the fewest features (the cost of scoring), as [`choose`] states; [`pareto`] gives the table.

use std::time::Instant;

use serde::Serialize;
use triage_classifier::{ClassWeight, Example, Model, TrainConfig};
use triage_core::NoProgress;

use crate::bench::{Throughput, throughput};
use crate::error::{EvalError, Result};
use crate::evaluate::evaluate;

/// The fold (0..`folds`) of the example at position `i`: a hash of the position, so that folds
/// are interleaved and the same on every run. Cross-validation and out-of-fold scoring use it.
pub fn fold_of(i: usize, folds: usize) -> usize {
    (i.wrapping_mul(2654435761) >> 7) % folds
}

/// The fewest held-out examples a fold may have: below it a fold's accuracy and macro-F1 mean
/// little (400 examples in 400 folds had scored 32% against 48% in 3, and measured no speed).
pub const MIN_FOLD: usize = 10;

/// Refuses a fold count under 2, or one that leaves a fold with fewer than [`MIN_FOLD`] of the
/// `n` examples.
pub fn check_folds(n: usize, folds: usize) -> Result<()> {
    if folds < 2 {
        return Err(EvalError::Invalid("--folds must be at least 2".into()));
    }
    let mut sizes = vec![0usize; folds];
    for i in 0..n {
        sizes[fold_of(i, folds)] += 1;
    }
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    if smallest < MIN_FOLD {
        return Err(EvalError::Invalid(format!(
            "--folds {folds} over {n} examples leaves a fold of {smallest} (at least {MIN_FOLD} \
             needed for its scores to mean something): use at most about {} folds",
            (n / (MIN_FOLD + MIN_FOLD / 2)).max(2)
        )));
    }
    Ok(())
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
    /// Mean distinct features per scored message (the cost of scoring one).
    pub features_per_message: f64,
    /// Classify throughput of the trial's model on the scored messages, one thread.
    pub msgs_per_sec: f64,
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

/// A setting's scores: accuracy and macro-F1 (on the dev split, or averaged over the folds),
/// and the speed of the model on the messages it was scored on (the dev split's, or the last
/// fold's).
pub struct Scored {
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
    /// Speed and features per message.
    pub speed: Throughput,
}

/// Scores `config`: see [`Scored`].
pub fn score(data: &[Example], config: &TrainConfig, scoring: &Scoring<'_>) -> Result<Scored> {
    let speed = |m: &Model, held: &[Example]| {
        let texts: Vec<String> = held.iter().map(|e| e.text.clone()).collect();
        throughput(m, &texts, 3)
    };
    match scoring {
        Scoring::Dev(dev) => {
            let m = Model::train(data, config, &mut NoProgress)?;
            let r = evaluate(&m, dev, &mut NoProgress).report;
            Ok(Scored {
                accuracy: r.accuracy,
                macro_f1: r.macro_f1,
                speed: speed(&m, dev),
            })
        }
        Scoring::Folds(folds) => {
            check_folds(data.len(), *folds)?;
            let (mut acc, mut f1, mut last) = (0.0, 0.0, None);
            for f in 0..*folds {
                let (train, held) = split(data.len(), *folds, f);
                let train: Vec<Example> = train.iter().map(|&i| data[i].clone()).collect();
                let held: Vec<Example> = held.iter().map(|&i| data[i].clone()).collect();
                let m = Model::train(&train, config, &mut NoProgress)?;
                let r = evaluate(&m, &held, &mut NoProgress).report;
                acc += r.accuracy / *folds as f64;
                f1 += r.macro_f1 / *folds as f64;
                if f + 1 == *folds {
                    last = Some(speed(&m, &held));
                }
            }
            Ok(Scored {
                accuracy: acc,
                macro_f1: f1,
                speed: last.expect("at least two folds"),
            })
        }
    }
}

/// Parses a character n-gram range: `2-5`, `4` (one length) or `off`.
pub fn char_range(s: &str) -> Result<[u8; 2]> {
    let bad = || {
        EvalError::Invalid(format!(
            "--char-ngrams takes ranges like 2-5, 4 or off, not {s:?}"
        ))
    };
    if s == "off" {
        return Ok([0, 0]);
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    Ok([a, b])
}

/// What the grid varies, on top of a base configuration.
pub struct Grid<'a> {
    /// Character n-gram ranges (`[0, 0]`: none); empty: the base's.
    pub char_ngrams: &'a [[u8; 2]],
    /// L2 strengths.
    pub alphas: &'a [f64],
    /// Class weights.
    pub class_weights: &'a [ClassWeight],
}

/// Scores every character range × alpha × class weight of `grid` on top of `base`; `on_trial`
/// sees each as it finishes.
pub fn grid(
    data: &[Example],
    base: &TrainConfig,
    grid: &Grid<'_>,
    scoring: &Scoring<'_>,
    mut on_trial: impl FnMut(&Trial),
) -> Result<Vec<Trial>> {
    let own = [base.analyzer.char_ngrams];
    let ranges = if grid.char_ngrams.is_empty() {
        &own[..]
    } else {
        grid.char_ngrams
    };
    let mut out = Vec::new();
    for &chars in ranges {
        for cw in grid.class_weights {
            for &alpha in grid.alphas {
                let mut config = base.clone();
                config.analyzer.char_ngrams = chars;
                config.logistic.alpha = alpha;
                config.logistic.class_weight = cw.clone();
                config.analyzer.validate()?;
                let t0 = Instant::now();
                let s = score(data, &config, scoring)?;
                let trial = Trial {
                    config,
                    accuracy: s.accuracy,
                    macro_f1: s.macro_f1,
                    seconds: t0.elapsed().as_secs_f64(),
                    features_per_message: s.speed.features_per_message,
                    msgs_per_sec: s.speed.msgs_per_sec,
                };
                on_trial(&trial);
                out.push(trial);
            }
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

/// The speed-aware choice: of the trials scoring within `margin` of the best by `criterion`,
/// the one with the fewest features per message (a deterministic proxy for speed: timings move
/// with the machine's load); among equals, the higher score. `margin` 0 is [`best`] with ties
/// broken by speed.
pub fn choose(trials: &[Trial], criterion: Criterion, margin: f64) -> Option<&Trial> {
    let top = best(trials, criterion)?.score(criterion);
    trials
        .iter()
        .filter(|t| t.score(criterion) >= top - margin)
        .min_by(|x, y| {
            x.features_per_message
                .total_cmp(&y.features_per_message)
                .then(y.score(criterion).total_cmp(&x.score(criterion)))
        })
}

/// Whether each trial is on the Pareto front of score against features per message: no other
/// trial scores at least as well with no more features, and strictly better in one.
pub fn pareto(trials: &[Trial], criterion: Criterion) -> Vec<bool> {
    trials
        .iter()
        .map(|t| {
            !trials.iter().any(|o| {
                let (so, st) = (o.score(criterion), t.score(criterion));
                so >= st
                    && o.features_per_message <= t.features_per_message
                    && (so > st || o.features_per_message < t.features_per_message)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_folds_are_refused() {
        assert!(check_folds(400, 3).is_ok());
        assert!(check_folds(400, 1).is_err());
        let err = check_folds(400, 400).unwrap_err().to_string();
        assert!(err.contains("at most about 26 folds"), "{err}");
        // The suggestion itself passes.
        assert!(check_folds(400, 26).is_ok());
        assert!(check_folds(15, 2).is_err());
    }

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

    /// Two classes that the words alone separate, and settings that keep every feature.
    fn learnable() -> (Vec<Example>, TrainConfig) {
        let mut data = Vec::new();
        for i in 0..60 {
            data.push(ex(&format!("great lovely thanks {i}"), "pos"));
            data.push(ex(&format!("awful broken refund {i}"), "neg"));
        }
        let mut base = TrainConfig::default();
        base.tfidf.min_df = 1;
        (data, base)
    }

    #[test]
    fn cross_validation_scores_a_learnable_task() {
        let (data, base) = learnable();
        let g = Grid {
            char_ngrams: &[],
            alphas: &[0.1, 1.0],
            class_weights: &[ClassWeight::None],
        };
        let trials = grid(&data, &base, &g, &Scoring::Folds(3), |_| {}).unwrap();
        assert_eq!(trials.len(), 2);
        let b = best(&trials, Criterion::Mean).unwrap();
        assert!(b.accuracy > 0.95, "{}", b.accuracy);
        assert!(
            trials
                .iter()
                .all(|t| t.features_per_message > 0.0 && t.msgs_per_sec > 0.0)
        );
        assert!(score(&data, &base, &Scoring::Folds(1)).is_err());
    }

    #[test]
    fn the_choice_is_the_fewest_features_within_the_margin() {
        let (data, base) = learnable();
        let g = Grid {
            char_ngrams: &[[2, 5], [4, 4], [0, 0]],
            alphas: &[1.0],
            class_weights: &[ClassWeight::None],
        };
        let trials = grid(&data, &base, &g, &Scoring::Folds(3), |_| {}).unwrap();
        assert_eq!(trials.len(), 3);
        let f: Vec<f64> = trials.iter().map(|t| t.features_per_message).collect();
        assert!(
            f[0] > 3.0 * f[1] && f[1] > f[2],
            "features per message {f:?}"
        );
        // Words alone separate these perfectly, so within any margin they win on speed.
        let c = choose(&trials, Criterion::Mean, 0.005).unwrap();
        assert_eq!(c.config.analyzer.char_ngrams, [0, 0]);
        assert_eq!(pareto(&trials, Criterion::Mean), vec![false, false, true]);
        // A tie-break only: with no margin the best score still wins.
        let mut worse = trials.clone();
        worse[2].accuracy = 0.5;
        worse[2].macro_f1 = 0.5;
        let c = choose(&worse, Criterion::Mean, 0.0).unwrap();
        assert_ne!(c.config.analyzer.char_ngrams, [0, 0]);
        assert_eq!(char_range("2-5").unwrap(), [2, 5]);
        assert_eq!(char_range("4").unwrap(), [4, 4]);
        assert_eq!(char_range("off").unwrap(), [0, 0]);
        assert!(char_range("x").is_err());
    }
}
