//! Learning when to defer: a logistic model of whether the second opinion fixes the fast label,
//! on the signals [`triage_router::deferral::features`] defines, trained on labelled
//! calibration data (a dev split, or out-of-fold predictions on train; never test). The router
//! then sends the messages with the highest scores, under the same budget.
//!
//! The threshold for a budget is chosen on scores the model did not train on: each fold's model
//! scores its held-out fold ([`cross_fit`]), and the threshold is the score above which the
//! budget's share of those out-of-fold scores lies.

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use triage_core::argmax;
use triage_router::deferral::features;
use triage_router::{Deferral, Router};

use crate::cascade::{CascadeInputs, row, signals};
use crate::error::{EvalError, Result};
use crate::tune::split;

/// Whether the second opinion, combined by `router`'s rule, fixes each message's fast label.
pub fn targets(router: &Router, inputs: &CascadeInputs<'_>) -> Vec<bool> {
    (0..inputs.len())
        .map(|i| {
            let (fast, second) = (row(inputs.fast, i), row(inputs.second, i));
            let truth = inputs.truth[i];
            argmax(&fast).0 != truth && argmax(&router.combined(&fast, &second)).0 == truth
        })
        .collect()
}

/// The feature matrix of messages `idx`.
fn matrix(inputs: &CascadeInputs<'_>, idx: &[usize]) -> Array2<f32> {
    let d = triage_router::deferral::NUMERIC_FEATURES + inputs.labels.len();
    let mut x = Array2::<f32>::zeros((idx.len(), d));
    for (r, &i) in idx.iter().enumerate() {
        let fast = row(inputs.fast, i);
        for (c, v) in features(&signals(inputs, &fast, i)).into_iter().enumerate() {
            x[[r, c]] = v;
        }
    }
    x
}

/// Fits a deferral model on messages `idx` (L2 strength `alpha` on standardised features).
pub fn fit(
    router: &Router,
    inputs: &CascadeInputs<'_>,
    idx: &[usize],
    alpha: f64,
    provenance: &str,
) -> Result<Deferral> {
    let y_all = targets(router, inputs);
    let y: Array1<usize> = idx.iter().map(|&i| y_all[i] as usize).collect();
    let positives = y.iter().filter(|&&v| v == 1).count();
    if positives == 0 || positives == y.len() {
        return Err(EvalError::Invalid(format!(
            "learned deferral needs messages the second opinion fixes and others it does not: \
             {positives} of {} are fixed",
            y.len()
        )));
    }
    let x = matrix(inputs, idx);
    let d = x.ncols();
    let n = x.nrows() as f32;
    let mut mean = vec![0.0f32; d];
    let mut scale = vec![1.0f32; d];
    // Standardise the numeric signals; the label indicators stay 0/1.
    for c in 0..triage_router::deferral::NUMERIC_FEATURES {
        let col = x.column(c);
        let m = col.sum() / n;
        let var = col.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / n;
        mean[c] = m;
        scale[c] = var.sqrt().max(1e-6);
    }
    let xs: Array2<f64> = Array2::from_shape_fn((x.nrows(), d), |(r, c)| {
        f64::from((x[[r, c]] - mean[c]) / scale[c])
    });
    let fitted = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(200)
        .fit(&Dataset::new(xs, y))
        .map_err(|e| EvalError::Invalid(format!("fitting the deferral model: {e}")))?;
    // linfa's positive class is the more frequent one, usually "not fixed": orient the model so
    // that its score is the probability that the second opinion fixes the label.
    let sign = if fitted.labels().pos.class == 1 {
        1.0
    } else {
        -1.0
    };
    let weights: Vec<f32> = fitted.params().iter().map(|&w| (sign * w) as f32).collect();
    Ok(Deferral {
        format: 1,
        labels: inputs.labels.to_vec(),
        mean,
        scale,
        weights,
        bias: (sign * fitted.intercept()) as f32,
        provenance: provenance.to_string(),
    })
}

/// One cross-fitting fold: the messages it held out and the model trained without them.
pub struct Fold {
    /// Indices (into the inputs) of the held-out messages.
    pub held: Vec<usize>,
    /// The deferral model fitted on the other folds.
    pub model: Deferral,
}

/// Out-of-fold deferral scores on every message: each of `folds` models, trained on the other
/// folds, scores its held-out fold. Returns the scores and the folds.
pub fn cross_fit(
    router: &Router,
    inputs: &CascadeInputs<'_>,
    folds: usize,
    alpha: f64,
) -> Result<(Vec<f32>, Vec<Fold>)> {
    let mut scores = vec![0.0f32; inputs.len()];
    let mut models = Vec::with_capacity(folds);
    for f in 0..folds {
        let (train, held) = split(inputs.len(), folds, f);
        let d = fit(router, inputs, &train, alpha, "cross-fit fold")?;
        for &i in &held {
            let fast = row(inputs.fast, i);
            scores[i] = d.score(&signals(inputs, &fast, i));
        }
        models.push(Fold { held, model: d });
    }
    Ok((scores, models))
}

/// The threshold that sends the top `share` of `scores` (at least one score above it when
/// `share` > 0).
pub fn threshold_for_share(scores: &[f32], share: f64) -> f32 {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = ((share * s.len() as f64).floor() as usize).min(s.len());
    if k == 0 {
        return 1.0;
    }
    // Route score >= t: the k-th highest.
    s[k - 1].clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use triage_core::config::{Combine, PolicyConfig};

    #[test]
    fn learns_which_messages_the_second_opinion_fixes() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // Messages with a small margin are wrong and fixed by the second opinion; confident
        // ones are right.
        let n = 200;
        let mut fast = Array2::<f32>::zeros((n, 2));
        let mut second = Array2::<f32>::zeros((n, 2));
        let mut truth = vec![0usize; n];
        for i in 0..n {
            let unsure = i % 4 == 0;
            let p = if unsure { 0.52 } else { 0.95 };
            fast[[i, 0]] = p;
            fast[[i, 1]] = 1.0 - p;
            truth[i] = if unsure { 1 } else { 0 };
            second.row_mut(i).assign(&if unsure {
                array![0.1, 0.9]
            } else {
                array![0.9, 0.1]
            });
        }
        let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &second);
        let router = Router::new(PolicyConfig::default(), Combine::Replace, &labels).unwrap();
        let all: Vec<usize> = (0..n).collect();
        let d = fit(&router, &inputs, &all, 0.01, "test").unwrap();
        let s_unsure = d.score(&signals(&inputs, &row(&fast, 0), 0));
        let s_sure = d.score(&signals(&inputs, &row(&fast, 1), 1));
        assert!(s_unsure > 0.8 && s_sure < 0.2, "{s_unsure} {s_sure}");
        let (oof, models) = cross_fit(&router, &inputs, 3, 0.01).unwrap();
        assert_eq!(models.len(), 3);
        let t = threshold_for_share(&oof, 0.25);
        let routed = (0..n).filter(|&i| oof[i] >= t).count();
        assert!((45..=55).contains(&routed), "{routed} routed at {t}");
        assert!((0..n).filter(|&i| oof[i] >= t).all(|i| i % 4 == 0));
    }
}
