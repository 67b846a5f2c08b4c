//! `triage calibrate`: the routing settings for a budget, chosen on calibration data (a dev
//! split or out-of-fold predictions on train, never test). Every candidate is scored by the
//! service's own router ([`simulate`]):
//! - **max-probability routing**: thresholds on the fast confidence ([`calibrate`]);
//! - **learned deferral**: a model of whether the second opinion fixes the fast label
//!   ([`crate::deferral`]), its threshold set on out-of-fold scores for the budget;
//!
//! each with either combine rule (average, replace). The best dev accuracy wins.

use ndarray::Axis;
use serde::Serialize;
use triage_core::argmax;
use triage_core::config::{Combine, PolicyConfig};
use triage_router::{Deferral, Router};

use crate::cascade::{CascadeInputs, Goal, calibrate, row, simulate, slm_share};
use crate::deferral::{Fold, cross_fit, fit, threshold_for_share};
use crate::error::Result;

/// How a candidate routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Thresholds on the fast model's top probability.
    MaxProbability,
    /// A learned deferral score.
    LearnedDeferral,
}

/// One candidate and what it does on the calibration data.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// How it routes.
    pub method: Method,
    /// Its combine rule.
    pub combine: Combine,
    /// Its policy (thresholds, or the deferral threshold).
    #[serde(skip)]
    pub policy: PolicyConfig,
    /// Its deferral model (learned deferral only).
    #[serde(skip)]
    pub deferral: Option<Deferral>,
    /// Cascade accuracy on the calibration data (out of fold for learned deferral).
    pub accuracy: f64,
    /// Share sent to the SLM on the calibration data.
    pub share: f64,
}

/// The messages `idx` of `inputs`, as inputs of their own.
struct Subset {
    truth: Vec<usize>,
    fast: ndarray::Array2<f32>,
    second: ndarray::Array2<f32>,
    unseen: Vec<f32>,
    bytes: Vec<usize>,
}

impl Subset {
    fn of(inputs: &CascadeInputs<'_>, idx: &[usize]) -> Self {
        let pick = |v: &[f32]| {
            idx.iter()
                .map(|&i| v.get(i).copied().unwrap_or(0.0))
                .collect()
        };
        Self {
            truth: idx.iter().map(|&i| inputs.truth[i]).collect(),
            fast: inputs.fast.select(Axis(0), idx),
            second: inputs.second.select(Axis(0), idx),
            unseen: pick(inputs.unseen),
            bytes: idx
                .iter()
                .map(|&i| inputs.bytes.get(i).copied().unwrap_or(0))
                .collect(),
        }
    }

    fn inputs<'a>(&'a self, labels: &'a [String]) -> CascadeInputs<'a> {
        CascadeInputs {
            labels,
            truth: &self.truth,
            fast: &self.fast,
            second: &self.second,
            unseen: &self.unseen,
            bytes: &self.bytes,
        }
    }
}

/// The learned-deferral candidate for a budget share: `folds`-fold cross-fitting on the
/// calibration data, the threshold at the budget's share of the out-of-fold scores (less the
/// share generative labels take), accuracy from each fold's model routing its own held-out fold.
pub fn learned_deferral(
    inputs: &CascadeInputs<'_>,
    budget: f64,
    base: &PolicyConfig,
    combine: Combine,
    folds: usize,
    alpha: f64,
) -> Result<Candidate> {
    let router = Router::new(base.clone(), combine, inputs.labels)?;
    // The share the generative labels take whatever the deferral does.
    let no_deferral = PolicyConfig {
        default_threshold: 0.0,
        thresholds: Default::default(),
        ..base.clone()
    };
    let generative = slm_share(&simulate(
        &Router::new(no_deferral, combine, inputs.labels)?,
        None,
        inputs,
    )?);
    let (mut oof, models) = cross_fit(&router, inputs, folds, alpha)?;
    // Messages under the out-of-scope floor never reach the deferral score: the budget's share
    // is taken from the others.
    if let Some((_, below)) = router.out_of_scope() {
        for (i, score) in oof.iter_mut().enumerate() {
            if argmax(&row(inputs.fast, i)).1 < below {
                *score = f32::NEG_INFINITY;
            }
        }
    }
    let threshold = threshold_for_share(&oof, (budget - generative).max(0.0));
    let policy = PolicyConfig {
        deferral_threshold: threshold,
        ..base.clone()
    };
    let (mut correct, mut used, mut n) = (0usize, 0.0f64, 0usize);
    for Fold { held, model } in models {
        let sub = Subset::of(inputs, &held);
        let sub_inputs = sub.inputs(inputs.labels);
        let r = Router::new(policy.clone(), combine, inputs.labels)?.with_deferral(model)?;
        let outcomes = simulate(&r, None, &sub_inputs)?;
        correct += outcomes
            .iter()
            .zip(&sub.truth)
            .filter(|(o, t)| o.label == **t)
            .count();
        used += slm_share(&outcomes) * outcomes.len() as f64;
        n += outcomes.len();
    }
    let all: Vec<usize> = (0..inputs.len()).collect();
    let deferral = fit(
        &router,
        inputs,
        &all,
        alpha,
        &format!(
            "trained on {} calibration messages; threshold {threshold:.4} for a {:.0}% budget \
             ({folds}-fold out-of-fold scores)",
            inputs.len(),
            100.0 * budget
        ),
    )?;
    Ok(Candidate {
        method: Method::LearnedDeferral,
        combine,
        policy,
        deferral: Some(deferral),
        accuracy: correct as f64 / n.max(1) as f64,
        share: used / n.max(1) as f64,
    })
}

/// Every candidate for a budget, best first: max-probability routing and learned deferral, each
/// with either combine rule. (`with_deferral` false: max-probability routing only.)
pub fn candidates(
    inputs: &CascadeInputs<'_>,
    budget: f64,
    base: &PolicyConfig,
    with_deferral: bool,
) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for combine in [Combine::Average, Combine::Replace] {
        let cal = calibrate(inputs, Goal::Budget(budget), base, combine)?;
        out.push(Candidate {
            method: Method::MaxProbability,
            combine,
            policy: PolicyConfig {
                default_threshold: cal.default_threshold,
                thresholds: cal.per_label.iter().cloned().collect(),
                deferral: None,
                ..base.clone()
            },
            deferral: None,
            accuracy: cal.accuracy,
            share: cal.share,
        });
        if with_deferral {
            out.push(learned_deferral(inputs, budget, base, combine, 5, 1.0)?);
        }
    }
    out.sort_by(|a, b| b.accuracy.total_cmp(&a.accuracy));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    /// Messages under the out-of-scope floor have the highest deferral scores (the second
    /// opinion fixes every one) but never reach the SLM: the threshold is set on the others, so
    /// that the budget is used.
    #[test]
    fn learned_deferral_spends_the_budget_beside_the_floor() {
        let labels: Vec<String> = ["a", "b", "oos"].map(String::from).to_vec();
        let n = 300;
        let (mut fast, mut second) = (Array2::zeros((n, 3)), Array2::zeros((n, 3)));
        let mut truth = vec![0; n];
        for (i, truth) in truth.iter_mut().enumerate() {
            let j = (i / 3) as f32;
            let (f, s, t) = match i % 3 {
                // Under the floor, out of scope: the second opinion knows.
                0 => ([0.36, 0.34, 0.3], [0.1, 0.1, 0.8], 2),
                // Unsure, in scope: wrong every other time, and then the second opinion fixes it.
                1 if (i / 3) % 2 == 0 => (
                    [0.5 + 0.001 * j, 0.45 - 0.001 * j, 0.05],
                    [0.1, 0.85, 0.05],
                    1,
                ),
                1 => (
                    [0.5 + 0.001 * j, 0.45 - 0.001 * j, 0.05],
                    [0.8, 0.1, 0.1],
                    0,
                ),
                _ => ([0.05, 0.9, 0.05], [0.05, 0.9, 0.05], 1),
            };
            fast.row_mut(i).assign(&ndarray::arr1(&f));
            second.row_mut(i).assign(&ndarray::arr1(&s));
            *truth = t;
        }
        let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &second);
        let base = PolicyConfig {
            out_of_scope_label: Some("oos".into()),
            out_of_scope_below: 0.45,
            ..Default::default()
        };
        let c = learned_deferral(&inputs, 0.2, &base, Combine::Replace, 5, 1.0).unwrap();
        assert!((c.share - 0.2).abs() < 0.04, "share {}", c.share);
    }
}
