//! Offline cascade analysis: does the second opinion pay for itself? Given, for a labelled set,
//! the fast classifier's probabilities and the second opinion's, this routes the stream with the
//! service's own [`Router`] and [`Budget`] ([`simulate`]), compares fast-only, second-opinion-only
//! and cascade accuracy ([`table`]), and calibrates thresholds for a budget or a target accuracy
//! ([`calibrate`]) on the policy that `triage run` executes: generative labels and
//! `generate_min_confidence` included.

use ndarray::Array2;
use serde::Serialize;
use triage_core::argmax;
use triage_core::config::{BudgetConfig, Combine, PolicyConfig};
use triage_router::{Answer, Budget, Outcome, Route, Router, Signals};

use crate::error::Result;
use crate::evaluate::report;

pub use crate::report::CascadeRow;

/// Per-message inputs, all in the fast model's label order.
pub struct CascadeInputs<'a> {
    /// Labels.
    pub labels: &'a [String],
    /// True label index (`labels.len()` for labels the model does not know).
    pub truth: &'a [usize],
    /// Fast probabilities, one row per message.
    pub fast: &'a Array2<f32>,
    /// Second-opinion probabilities, one row per message.
    pub second: &'a Array2<f32>,
    /// Per message, the share of its features the fast model has never seen (a deferral
    /// signal; empty: none known).
    pub unseen: &'a [f32],
    /// Per message, its length in bytes (a deferral signal; empty: none known).
    pub bytes: &'a [usize],
}

impl<'a> CascadeInputs<'a> {
    /// Inputs without the deferral signals beyond the probabilities (unseen share, length):
    /// for tables and calibrations of probabilities scored elsewhere.
    pub fn probabilities(
        labels: &'a [String],
        truth: &'a [usize],
        fast: &'a Array2<f32>,
        second: &'a Array2<f32>,
    ) -> Self {
        Self {
            labels,
            truth,
            fast,
            second,
            unseen: &[],
            bytes: &[],
        }
    }

    /// Messages.
    pub fn len(&self) -> usize {
        self.truth.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.truth.is_empty()
    }
}

/// The router's view of message `i`.
pub(crate) fn signals<'a>(inputs: &CascadeInputs<'_>, fast: &'a [f32], i: usize) -> Signals<'a> {
    Signals {
        probs: fast,
        unseen_share: inputs.unseen.get(i).copied().unwrap_or(0.0),
        bytes: inputs.bytes.get(i).copied().unwrap_or(0),
    }
}

pub(crate) fn row(a: &Array2<f32>, i: usize) -> Vec<f32> {
    a.row(i).to_vec()
}

/// An unlimited budget: every message that wants the SLM gets it.
fn unlimited() -> BudgetConfig {
    BudgetConfig {
        max_share: 1.0,
        ..BudgetConfig::default()
    }
}

/// Routes the messages in order, as the service does: `router.route` under the budget (none:
/// unlimited), then `router.settle` with the second opinion's probabilities as the SLM's answer
/// (and a reply for generative routes). The budget's `max_per_second` counts wall-clock time and
/// has no meaning offline: it is left out.
pub fn simulate(
    router: &Router,
    budget: Option<&BudgetConfig>,
    inputs: &CascadeInputs<'_>,
) -> Result<Vec<Outcome>> {
    let config = BudgetConfig {
        max_per_second: None,
        ..budget.cloned().unwrap_or_else(unlimited)
    };
    let mut budget = Budget::new(config)?;
    let mut out = Vec::with_capacity(inputs.truth.len());
    for i in 0..inputs.truth.len() {
        let fast = row(inputs.fast, i);
        let routing = router.route(&signals(inputs, &fast, i), &mut budget);
        let second = row(inputs.second, i);
        let answer = match routing.route {
            Route::SecondOpinion => Answer::SecondOpinion(&second),
            Route::Generate => Answer::Reply,
            _ => Answer::None,
        };
        out.push(router.settle(routing, &fast, answer));
    }
    Ok(out)
}

/// Share of outcomes that used the SLM (a second opinion or a reply).
pub fn slm_share(outcomes: &[Outcome]) -> f64 {
    let used = outcomes
        .iter()
        .filter(|o| matches!(o.route, Route::SecondOpinion | Route::Generate))
        .count();
    used as f64 / outcomes.len().max(1) as f64
}

fn accuracy(inputs: &CascadeInputs<'_>, outcomes: &[Outcome]) -> f64 {
    let ok = outcomes
        .iter()
        .zip(inputs.truth)
        .filter(|(o, t)| o.label == **t)
        .count();
    ok as f64 / outcomes.len().max(1) as f64
}

/// The cascade table: fast only, second opinion only, the average of both on every message, and
/// the cascade with `router` (under `budget` when given). Returns the rows and the cascade's
/// outcomes.
pub fn table(
    router: &Router,
    budget: Option<&BudgetConfig>,
    inputs: &CascadeInputs<'_>,
) -> Result<(Vec<CascadeRow>, Vec<Outcome>)> {
    let make = |name: &str, pred: &[usize], share: f64| {
        let conf = vec![1.0; pred.len()];
        let r = report(inputs.labels, inputs.truth, pred, &conf);
        CascadeRow {
            name: name.into(),
            accuracy: r.accuracy,
            macro_f1: r.macro_f1,
            share_to_slm: share,
        }
    };
    let n = inputs.truth.len();
    let fast: Vec<usize> = (0..n).map(|i| argmax(&row(inputs.fast, i)).0).collect();
    let second: Vec<usize> = (0..n).map(|i| argmax(&row(inputs.second, i)).0).collect();
    let both: Vec<usize> = (0..n)
        .map(|i| {
            let avg: Vec<f32> = row(inputs.fast, i)
                .iter()
                .zip(row(inputs.second, i))
                .map(|(a, b)| (a + b) / 2.0)
                .collect();
            argmax(&avg).0
        })
        .collect();
    let outcomes = simulate(router, budget, inputs)?;
    let cascade: Vec<usize> = outcomes.iter().map(|o| o.label).collect();
    let mut rows = vec![make("fast only", &fast, 0.0)];
    if let Some((oos, below)) = router.out_of_scope() {
        let floored: Vec<usize> = (0..n)
            .map(|i| floored(argmax(&row(inputs.fast, i)), oos, below))
            .collect();
        rows.push(make(
            &format!("fast only, out-of-scope floor {below:.3}"),
            &floored,
            0.0,
        ));
    }
    rows.extend([
        make("second opinion only", &second, 1.0),
        make("average of both, every message", &both, 1.0),
        make("cascade", &cascade, slm_share(&outcomes)),
    ]);
    Ok((rows, outcomes))
}

/// The fast label with an out-of-scope floor, from the top label and its probability: `oos`
/// when that probability is under `below`, as [`Router::route`] decides it.
fn floored((label, confidence): (usize, f32), oos: usize, below: f32) -> usize {
    if confidence < below { oos } else { label }
}

/// An out-of-scope floor chosen on calibration data ([`out_of_scope_floor`]).
#[derive(Debug, Clone, Serialize)]
pub struct OutOfScopeFloor {
    /// The out-of-scope label.
    pub label: String,
    /// The fast confidence below which a message gets it.
    pub below: f32,
    /// Fast-only accuracy on the calibration data with the floor.
    pub accuracy: f64,
    /// Fast-only accuracy on the calibration data without it.
    pub accuracy_without: f64,
}

/// Chooses the out-of-scope floor for `label` on calibration data (train or dev, never test):
/// of the floors 0.025, 0.05, … 0.5, the one under which labelling the messages `label` gives
/// the best fast-only accuracy (the lowest on a tie). `None` when the model has no such label,
/// or when no floor beats none.
pub fn out_of_scope_floor(inputs: &CascadeInputs<'_>, label: &str) -> Option<OutOfScopeFloor> {
    let oos = inputs.labels.iter().position(|l| l == label)?;
    let n = inputs.truth.len();
    let top: Vec<(usize, f32)> = (0..n).map(|i| argmax(&row(inputs.fast, i))).collect();
    let accuracy = |below: f32| {
        let ok = top
            .iter()
            .zip(inputs.truth)
            .filter(|&(&top, &t)| floored(top, oos, below) == t)
            .count();
        ok as f64 / n.max(1) as f64
    };
    let without = accuracy(0.0);
    let (below, best) = (1..=20)
        .map(|i| 0.025 * i as f32)
        .map(|b| (b, accuracy(b)))
        .fold(
            (0.0, without),
            |best, c| if c.1 > best.1 { c } else { best },
        );
    (below > 0.0).then(|| OutOfScopeFloor {
        label: label.to_string(),
        below,
        accuracy: best,
        accuracy_without: without,
    })
}

/// What to calibrate for.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// Send at most this share of messages to the SLM, for the best accuracy.
    Budget(f64),
    /// Reach this accuracy with the smallest share.
    TargetAccuracy(f64),
}

/// Calibrated thresholds and what they do on the calibration set.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// One global threshold.
    pub default_threshold: f32,
    /// Per-label thresholds (empty when the labels are too many or the data too few to fit them).
    pub per_label: Vec<(String, f32)>,
    /// Share sent to the SLM on the calibration set (second opinions and replies).
    pub share: f64,
    /// Cascade accuracy on the calibration set.
    pub accuracy: f64,
    /// Fast-only accuracy on the calibration set.
    pub fast_accuracy: f64,
    /// Whether the goal is met on the calibration set (a target accuracy may be out of reach:
    /// then these are the most accurate thresholds found).
    pub reached: bool,
}

/// Chooses thresholds on a calibration set (train or dev data, never test) for the policy
/// `base` (its generative labels and `generate_min_confidence` stay; its thresholds are what is
/// chosen) and the combine rule.
///
/// First one global threshold: for a budget, the largest whose SLM share fits; for a target
/// accuracy, the smallest that reaches it (or, where none does, the most accurate). Then, when every label has at least 100 messages,
/// per-label thresholds by coordinate ascent on cascade accuracy, keeping the share within the
/// budget (or the accuracy above the target). Each candidate is scored by [`simulate`].
pub fn calibrate(
    inputs: &CascadeInputs<'_>,
    goal: Goal,
    base: &PolicyConfig,
    combine: Combine,
) -> Result<Calibration> {
    let k = inputs.labels.len();
    let n = inputs.truth.len();
    let mut conf: Vec<f32> = (0..n).map(|i| argmax(&row(inputs.fast, i)).1).collect();
    conf.sort_by(f32::total_cmp);
    let last = n.max(1) - 1;
    // Candidate global thresholds: quantiles of the confidence in 0.5% steps.
    let candidates: Vec<f32> = (0..=200)
        .map(|i| {
            conf.get(((i as f64 / 200.0) * last as f64) as usize)
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let eval = |thresholds: &[f32]| -> Result<(f64, f64)> {
        let policy = PolicyConfig {
            default_threshold: thresholds.first().copied().unwrap_or(0.0),
            thresholds: inputs
                .labels
                .iter()
                .cloned()
                .zip(thresholds.iter().copied())
                .collect(),
            ..base.clone()
        };
        let router = Router::new(policy, combine, inputs.labels)?;
        let outcomes = simulate(&router, None, inputs)?;
        Ok((accuracy(inputs, &outcomes), slm_share(&outcomes)))
    };
    // For a target out of reach of every global threshold, the most accurate one: the per-label
    // search starts there (sending everything is not a start: the SLM alone may score lower
    // than the cascade, or than the fast path).
    let mut global = 0.0f32;
    let mut most_accurate = (f64::NEG_INFINITY, 0.0f32);
    for &t in &candidates {
        let (acc, share) = eval(&vec![t; k])?;
        match goal {
            Goal::Budget(b) if share <= b => global = global.max(t),
            Goal::TargetAccuracy(a) => {
                if acc > most_accurate.0 {
                    most_accurate = (acc, t);
                }
                if acc >= a {
                    global = t;
                    most_accurate = (acc, t);
                    break;
                }
            }
            _ => {}
        }
    }
    if let Goal::TargetAccuracy(_) = goal {
        global = most_accurate.1;
    }
    let mut thresholds = vec![global; k];
    let (mut best_acc, mut best_share) = eval(&thresholds)?;
    let mut counts = vec![0usize; k];
    for &t in inputs.truth {
        if t < k {
            counts[t] += 1;
        }
    }
    let per_label_ok = k <= 20 && counts.iter().all(|&c| c >= 100);
    if per_label_ok {
        let grid: Vec<f32> = (0..=40).map(|i| 0.3 + 0.0175 * i as f32).collect();
        for _round in 0..2 {
            for l in 0..k {
                for &g in &grid {
                    let mut t = thresholds.clone();
                    t[l] = g;
                    let (acc, share) = eval(&t)?;
                    let take = match goal {
                        Goal::Budget(b) => share <= b && acc > best_acc + 1e-9,
                        // Short of the target: closer to it. Reached: a smaller share that
                        // stays there (or the same share, more accurate).
                        Goal::TargetAccuracy(a) if best_acc < a => acc > best_acc + 1e-9,
                        Goal::TargetAccuracy(a) => {
                            acc >= a
                                && (share < best_share - 1e-9
                                    || (share <= best_share && acc > best_acc + 1e-9))
                        }
                    };
                    if take {
                        thresholds = t;
                        best_acc = acc;
                        best_share = share;
                    }
                }
            }
        }
    }
    let fast_ok = (0..n)
        .filter(|&i| argmax(&row(inputs.fast, i)).0 == inputs.truth[i])
        .count();
    Ok(Calibration {
        default_threshold: global,
        per_label: if per_label_ok {
            inputs
                .labels
                .iter()
                .cloned()
                .zip(thresholds.iter().copied())
                .filter(|(_, t)| *t != global)
                .collect()
        } else {
            Vec::new()
        },
        share: best_share,
        accuracy: best_acc,
        fast_accuracy: fast_ok as f64 / n.max(1) as f64,
        reached: match goal {
            Goal::Budget(b) => best_share <= b,
            Goal::TargetAccuracy(a) => best_acc >= a,
        },
    })
}

/// How out-of-scope messages fare (a label such as CLINC150's `oos`).
#[derive(Debug, Clone, Serialize)]
pub struct OutOfScope {
    /// The label.
    pub label: String,
    /// Messages with that true label.
    pub queries: usize,
    /// Of those, sent to the SLM by the cascade without a budget.
    pub routed: usize,
    /// Of those, sent to the SLM under the run-time budget.
    pub routed_with_budget: usize,
    /// Of those, labelled out-of-scope by the fast path (with its out-of-scope floor, if any).
    pub labelled_oos_fast: usize,
    /// Of those, labelled out-of-scope by the cascade without a budget.
    pub labelled_oos_cascade: usize,
}

/// The cascade on a labelled set, as `triage eval --cascade` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CascadeEval {
    /// Fast only, second opinion only, both, the cascade, and the cascade under the budget.
    pub rows: Vec<CascadeRow>,
    /// Messages.
    pub messages: usize,
    /// The policy's default threshold.
    pub default_threshold: f32,
    /// How many per-label thresholds it has.
    pub per_label_thresholds: usize,
    /// The budget's share.
    pub budget_share: f64,
    /// Out-of-scope figures, when the labels have the out-of-scope label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oos: Option<OutOfScope>,
}

/// [`evaluate`] with the router and budget of a configuration (a deferral model it names is read
/// relative to `root`).
pub fn evaluate_config(
    config: &triage_core::config::Config,
    root: &std::path::Path,
    inputs: &CascadeInputs<'_>,
    out_of_scope: Option<&str>,
) -> Result<CascadeEval> {
    let router = Router::from_config(
        config.router.clone(),
        config.slm.combine,
        inputs.labels,
        root,
    )?;
    evaluate(&router, &config.budget, inputs, out_of_scope)
}

/// Evaluates the cascade with `router` and the run-time `budget` on scored inputs;
/// `out_of_scope` names a label to report on separately.
pub fn evaluate(
    router: &Router,
    budget: &BudgetConfig,
    inputs: &CascadeInputs<'_>,
    out_of_scope: Option<&str>,
) -> Result<CascadeEval> {
    let (mut rows, outcomes) = table(router, None, inputs)?;
    let budgeted = simulate(router, Some(budget), inputs)?;
    let cascade_row = |outcomes: &[Outcome], name: String| {
        let pred: Vec<usize> = outcomes.iter().map(|o| o.label).collect();
        let conf = vec![1.0; pred.len()];
        let r = report(inputs.labels, inputs.truth, &pred, &conf);
        CascadeRow {
            name,
            accuracy: r.accuracy,
            macro_f1: r.macro_f1,
            share_to_slm: slm_share(outcomes),
        }
    };
    rows.push(cascade_row(
        &budgeted,
        format!("cascade, run-time budget {:.0}%", 100.0 * budget.max_share),
    ));
    let oos = out_of_scope.and_then(|label| {
        let o = inputs.labels.iter().position(|l| l == label)?;
        let is_oos = |i: &usize| inputs.truth[*i] == o;
        let n = inputs.truth.len();
        let count = |f: &dyn Fn(usize) -> bool| (0..n).filter(is_oos).filter(|&i| f(i)).count();
        let uses = |x: &Outcome| x.route.uses_slm();
        Some(OutOfScope {
            label: label.to_string(),
            queries: (0..n).filter(is_oos).count(),
            routed: count(&|i| uses(&outcomes[i])),
            routed_with_budget: count(&|i| uses(&budgeted[i])),
            labelled_oos_fast: count(&|i| {
                let probs = row(inputs.fast, i);
                match router.out_of_scope() {
                    Some((oos, below)) => floored(argmax(&probs), oos, below) == o,
                    None => argmax(&probs).0 == o,
                }
            }),
            labelled_oos_cascade: count(&|i| outcomes[i].label == o),
        })
    });
    let policy = router.policy().config();
    Ok(CascadeEval {
        rows,
        messages: inputs.truth.len(),
        default_threshold: policy.default_threshold,
        per_label_thresholds: policy.thresholds.len(),
        budget_share: budget.max_share,
        oos,
    })
}

impl CascadeEval {
    /// The table as text.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "\ncascade ({} messages; threshold {:.3}, {} per-label; budget {:.0}%)",
            self.messages,
            self.default_threshold,
            self.per_label_thresholds,
            100.0 * self.budget_share
        );
        let _ = writeln!(
            text,
            "{:<42} {:>9} {:>9} {:>11}",
            "", "accuracy", "macro-F1", "to the SLM"
        );
        for r in &self.rows {
            let _ = writeln!(
                text,
                "{:<42} {:>8.2}% {:>9.4} {:>10.1}%",
                r.name,
                100.0 * r.accuracy,
                r.macro_f1,
                100.0 * r.share_to_slm
            );
        }
        if let Some(o) = &self.oos {
            let _ = writeln!(
                text,
                "out-of-scope ({}): {} queries; routed to the SLM {} ({} with the budget); \
                 labelled {} by the fast path {}, by the cascade {}",
                o.label,
                o.queries,
                o.routed,
                o.routed_with_budget,
                o.label,
                o.labelled_oos_fast,
                o.labelled_oos_cascade
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn router(threshold: f32, generative: &[&str], labels: &[String]) -> Router {
        let policy = PolicyConfig {
            default_threshold: threshold,
            generative: generative.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Router::new(policy, Combine::Average, labels).unwrap()
    }

    #[test]
    fn cascade_fixes_unsure_messages_within_budget() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // 4 messages: two confident and right, two unsure and wrong; the second opinion is right.
        let fast = array![[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.52, 0.48]];
        let second = array![[0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.05, 0.95]];
        let truth = [0, 1, 1, 1];
        let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &second);
        let (rows, outcomes) = table(&router(0.6, &[], &labels), None, &inputs).unwrap();
        assert_eq!(rows[0].accuracy, 0.5);
        assert_eq!(rows[3].accuracy, 1.0);
        let routed: Vec<bool> = outcomes
            .iter()
            .map(|o| o.route == Route::SecondOpinion)
            .collect();
        assert_eq!(routed, vec![false, false, true, true]);
        let cal = calibrate(
            &inputs,
            Goal::Budget(0.5),
            &PolicyConfig::default(),
            Combine::Average,
        )
        .unwrap();
        assert!(cal.share <= 0.5);
        assert_eq!(cal.accuracy, 1.0);
        // A simulated budget caps the share whatever the thresholds say.
        let budget = BudgetConfig {
            max_share: 0.25,
            burst: 0,
            max_per_second: None,
        };
        let outcomes = simulate(&router(1.0, &[], &labels), Some(&budget), &inputs).unwrap();
        assert_eq!(slm_share(&outcomes), 0.25);
    }

    /// The out-of-scope floor is the one under which labelling messages out-of-scope helps the
    /// fast path most; none where no floor helps or the model has no such label.
    #[test]
    fn out_of_scope_floor_is_chosen_on_fast_accuracy() {
        let labels: Vec<String> = ["a", "b", "oos"].map(String::from).to_vec();
        // Two sure and right; two unsure (top 0.34 and 0.38) and out of scope; one unsure
        // (0.45) and right.
        let fast = array![
            [0.9, 0.05, 0.05],
            [0.1, 0.8, 0.1],
            [0.34, 0.33, 0.33],
            [0.38, 0.32, 0.3],
            [0.45, 0.4, 0.15]
        ];
        let truth = [0, 1, 2, 2, 0];
        let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &fast);
        let f = out_of_scope_floor(&inputs, "oos").expect("a floor helps");
        assert_eq!(
            f.below, 0.4,
            "the lowest floor above 0.38 and not above 0.45"
        );
        assert_eq!((f.accuracy, f.accuracy_without), (1.0, 0.6));
        assert!(out_of_scope_floor(&inputs, "other").is_none());
        // Out-of-scope messages the model is sure of: no floor helps.
        let truth = [0, 1, 0, 0, 0];
        let inputs = CascadeInputs {
            truth: &truth,
            ..inputs
        };
        assert!(out_of_scope_floor(&inputs, "oos").is_none());
        // The router's floor gives the cascade table a row of its own.
        let policy = PolicyConfig {
            out_of_scope_label: Some("oos".into()),
            out_of_scope_below: f.below,
            ..Default::default()
        };
        let r = Router::new(policy, Combine::Average, &labels).unwrap();
        let truth = [0, 1, 2, 2, 0];
        let inputs = CascadeInputs {
            truth: &truth,
            ..inputs
        };
        let (rows, _) = table(&r, None, &inputs).unwrap();
        assert_eq!(rows[1].name, "fast only, out-of-scope floor 0.400");
        assert_eq!(rows[1].accuracy, 1.0);
    }

    /// A target accuracy takes the smallest share that reaches it; one out of reach gives the
    /// most accurate thresholds, said so, never "send everything" where the second opinion
    /// alone scores lower (as the per-label search from a start of 1.0 had done). With and
    /// without per-label thresholds (100 messages a label turn them on).
    #[test]
    fn a_target_accuracy_takes_the_least_share_or_says_it_is_out_of_reach() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // Fast right on 0, 1, 3; the second opinion right on 2 only: sending 2 alone gives 0.8
        // (the most any thresholds give), sending everything 0.2.
        let fast = [[0.9, 0.1], [0.8, 0.2], [0.55, 0.45], [0.6, 0.4], [0.7, 0.3]];
        let second = [[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8], [0.7, 0.3]];
        let truth = [0, 0, 1, 0, 1];
        for copies in [1, 50] {
            let rows = |m: &[[f32; 2]]| {
                let flat: Vec<f32> = (0..copies)
                    .flat_map(|_| m.iter().flatten().copied())
                    .collect();
                ndarray::Array2::from_shape_vec((5 * copies, 2), flat).unwrap()
            };
            let (fast, second) = (rows(&fast), rows(&second));
            let truth: Vec<usize> = (0..copies).flat_map(|_| truth).collect();
            let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &second);
            let at = |target: f64| {
                calibrate(
                    &inputs,
                    Goal::TargetAccuracy(target),
                    &PolicyConfig::default(),
                    Combine::Replace,
                )
                .unwrap()
            };
            for target in [0.7, 0.8] {
                let cal = at(target);
                assert!(cal.reached, "{target}: {cal:?}");
                assert!((cal.accuracy - 0.8).abs() < 1e-9, "{target}: {cal:?}");
                assert!((cal.share - 0.2).abs() < 1e-9, "{target}: {cal:?}");
            }
            let cal = at(0.9);
            assert!(!cal.reached, "{cal:?}");
            assert!((cal.accuracy - 0.8).abs() < 1e-9, "{cal:?}");
            assert!((cal.share - 0.2).abs() < 1e-9, "{cal:?}");
            assert!((cal.fast_accuracy - 0.6).abs() < 1e-9, "{cal:?}");
        }
    }

    /// Generative labels take budget: calibration counts their replies in the share, as the
    /// service does, and picks a lower threshold than it would without them.
    #[test]
    fn generative_labels_take_their_share() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // Half the messages are confidently "b", a generative label: each takes a reply.
        let fast = array![[0.1, 0.9], [0.1, 0.9], [0.55, 0.45], [0.52, 0.48]];
        let second = array![[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.05, 0.95]];
        let truth = [1, 1, 1, 1];
        let inputs = CascadeInputs::probabilities(&labels, &truth, &fast, &second);
        let outcomes = simulate(&router(0.6, &["b"], &labels), None, &inputs).unwrap();
        let routes: Vec<Route> = outcomes.iter().map(|o| o.route).collect();
        assert_eq!(
            routes,
            [
                Route::Generate,
                Route::Generate,
                Route::SecondOpinion,
                Route::SecondOpinion
            ]
        );
        assert_eq!(slm_share(&outcomes), 1.0);
        let with = PolicyConfig {
            generative: vec!["b".into()],
            ..Default::default()
        };
        let cal = calibrate(&inputs, Goal::Budget(0.75), &with, Combine::Average).unwrap();
        assert!(cal.share <= 0.75, "{cal:?}");
        // Without the generative label, both unsure messages fit in the budget.
        let cal = calibrate(
            &inputs,
            Goal::Budget(0.75),
            &PolicyConfig::default(),
            Combine::Average,
        )
        .unwrap();
        assert_eq!(cal.accuracy, 1.0, "{cal:?}");
    }
}
