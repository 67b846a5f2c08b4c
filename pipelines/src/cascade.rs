//! Offline cascade analysis: does the second opinion pay for itself? Given, for a labelled set,
//! the fast classifier's probabilities and the second opinion's, this computes fast-only,
//! second-opinion-only and cascade accuracy, calibrates thresholds for a budget or a target
//! accuracy, and simulates the run-time budget on the stream.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Serialize;
use sha2::{Digest, Sha256};
use triage_classifier::EvalReport;
use triage_router::backend::Combine;
use triage_router::{Budget, BudgetConfig};

use crate::error::{PipelineError, Result};

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
}

pub use crate::report::CascadeRow;

fn argmax(row: ndarray::ArrayView1<'_, f32>) -> (usize, f32) {
    row.iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

fn report(inputs: &CascadeInputs<'_>, pred: &[usize]) -> EvalReport {
    let mut labels = inputs.labels.to_vec();
    if inputs.truth.iter().any(|&t| t >= labels.len()) {
        labels.push("<unknown label>".into());
    }
    let conf = vec![1.0; pred.len()];
    EvalReport::new(&labels, inputs.truth, pred, &conf)
}

/// The fast model's confidence for each message.
pub fn confidences(fast: &Array2<f32>) -> Vec<f32> {
    fast.rows().into_iter().map(|r| argmax(r).1).collect()
}

/// Cascade predictions: messages whose fast confidence is below their label's threshold (and
/// that the budget admits, if one is simulated) get the combined prediction.
pub fn cascade_predictions(
    inputs: &CascadeInputs<'_>,
    thresholds: &[f32],
    combine: Combine,
    budget: Option<&BudgetConfig>,
) -> Result<(Vec<usize>, Vec<bool>)> {
    let mut b = budget.map(|c| Budget::new(c.clone())).transpose()?;
    let mut pred = Vec::with_capacity(inputs.truth.len());
    let mut routed = Vec::with_capacity(inputs.truth.len());
    for (f, s) in inputs.fast.rows().into_iter().zip(inputs.second.rows()) {
        let (fl, fc) = argmax(f);
        let wants = fc < thresholds[fl];
        let admitted = match b.as_mut() {
            Some(b) => b.admit(wants),
            None => wants,
        };
        routed.push(admitted);
        if admitted {
            let p = match combine {
                Combine::Average => argmax((&f + &s).view()).0,
                Combine::Replace => argmax(s).0,
            };
            pred.push(p);
        } else {
            pred.push(fl);
        }
    }
    Ok((pred, routed))
}

/// The cascade table: fast only, second opinion only, the average of both on every message, and
/// the cascade at `thresholds` (with the run-time budget simulated when given).
pub fn table(
    inputs: &CascadeInputs<'_>,
    thresholds: &[f32],
    combine: Combine,
    budget: Option<&BudgetConfig>,
) -> Result<(Vec<CascadeRow>, Vec<usize>, Vec<bool>)> {
    let row = |name: &str, pred: &[usize], share: f64| {
        let r = report(inputs, pred);
        CascadeRow {
            name: name.into(),
            accuracy: r.accuracy,
            macro_f1: r.macro_f1,
            share_to_slm: share,
        }
    };
    let fast: Vec<usize> = inputs
        .fast
        .rows()
        .into_iter()
        .map(|r| argmax(r).0)
        .collect();
    let second: Vec<usize> = inputs
        .second
        .rows()
        .into_iter()
        .map(|r| argmax(r).0)
        .collect();
    let both: Vec<usize> = (inputs.fast + inputs.second)
        .rows()
        .into_iter()
        .map(|r| argmax(r).0)
        .collect();
    let (cascade, routed) = cascade_predictions(inputs, thresholds, combine, budget)?;
    let share = routed.iter().filter(|&&r| r).count() as f64 / routed.len().max(1) as f64;
    Ok((
        vec![
            row("fast only", &fast, 0.0),
            row("second opinion only", &second, 1.0),
            row("average of both, every message", &both, 1.0),
            row("cascade", &cascade, share),
        ],
        cascade,
        routed,
    ))
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
    /// Share routed on the calibration set.
    pub share: f64,
    /// Cascade accuracy on the calibration set.
    pub accuracy: f64,
    /// Fast-only accuracy on the calibration set.
    pub fast_accuracy: f64,
}

fn cascade_accuracy(
    inputs: &CascadeInputs<'_>,
    thresholds: &[f32],
    combine: Combine,
) -> (f64, f64) {
    let (pred, routed) = cascade_predictions(inputs, thresholds, combine, None).unwrap_or_default();
    let ok = pred
        .iter()
        .zip(inputs.truth)
        .filter(|(p, t)| p == t)
        .count();
    let share = routed.iter().filter(|&&r| r).count() as f64 / routed.len().max(1) as f64;
    (ok as f64 / pred.len().max(1) as f64, share)
}

/// Chooses thresholds on a calibration set (train or dev data, never test).
///
/// First one global threshold: for a budget, the largest whose routed share fits; for a target
/// accuracy, the smallest that reaches it. Then, when every label has at least 100 messages,
/// per-label thresholds by coordinate ascent on cascade accuracy, keeping the share within the
/// budget (or the accuracy above the target).
pub fn calibrate(inputs: &CascadeInputs<'_>, goal: Goal, combine: Combine) -> Calibration {
    let k = inputs.labels.len();
    let conf = confidences(inputs.fast);
    let mut sorted = conf.clone();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len().max(1);
    // Candidate global thresholds: quantiles of the confidence in 0.5% steps.
    let candidates: Vec<f32> = (0..=200)
        .map(|i| sorted[((i as f64 / 200.0) * (n - 1) as f64) as usize])
        .collect();
    let eval = |t: &[f32]| cascade_accuracy(inputs, t, combine);
    let global = match goal {
        Goal::Budget(b) => candidates
            .iter()
            .copied()
            .filter(|&t| eval(&vec![t; k]).1 <= b)
            .fold(0.0f32, f32::max),
        Goal::TargetAccuracy(a) => candidates
            .iter()
            .copied()
            .find(|&t| eval(&vec![t; k]).0 >= a)
            .unwrap_or(1.0),
    };
    let mut thresholds = vec![global; k];
    let (mut best_acc, mut best_share) = eval(&thresholds);
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
                    let (acc, share) = eval(&t);
                    let feasible = match goal {
                        Goal::Budget(b) => share <= b,
                        Goal::TargetAccuracy(a) => acc >= a,
                    };
                    let better = match goal {
                        Goal::Budget(_) => acc > best_acc + 1e-9,
                        Goal::TargetAccuracy(_) => {
                            share < best_share - 1e-9
                                || (share <= best_share && acc > best_acc + 1e-9)
                        }
                    };
                    if feasible && better {
                        thresholds = t;
                        best_acc = acc;
                        best_share = share;
                    }
                }
            }
        }
    }
    let fast_ok = conf
        .iter()
        .zip(inputs.fast.rows())
        .zip(inputs.truth)
        .filter(|((_, r), t)| argmax(*r).0 == **t)
        .count();
    Calibration {
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
        fast_accuracy: fast_ok as f64 / n as f64,
    }
}

/// Embeds `texts`, caching the result under `cache` keyed by the encoder files and the texts, so
/// that calibration and evaluation on the same data do not embed it twice.
pub fn embed_cached(
    encoder: &triage_models::Encoder,
    texts: &[&str],
    cache: &Path,
) -> Result<Array2<f32>> {
    let mut h = Sha256::new();
    h.update(encoder.dir().to_string_lossy().as_bytes());
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    let key = hex::encode(h.finalize());
    let path: PathBuf = cache.join("embeddings").join(format!("{key}.f32"));
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() >= 8
    {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let d = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if n == texts.len() && bytes.len() == 8 + 4 * n * d {
            let v: Vec<f32> = bytes[8..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Ok(a) = Array2::from_shape_vec((n, d), v) {
                return Ok(a);
            }
        }
    }
    let pb = crate::progress::bar(texts.len() as u64, "messages");
    pb.set_message("embed");
    let mut rows: Vec<f32> = Vec::with_capacity(texts.len() * encoder.dim());
    for chunk in texts.chunks(512) {
        let x = encoder
            .embed(chunk)
            .map_err(|e| PipelineError::Config(format!("embedding: {e}")))?;
        rows.extend(x.iter());
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let d = encoder.dim();
    let x = Array2::from_shape_vec((texts.len(), d), rows)
        .map_err(|e| PipelineError::Config(format!("embedding shape: {e}")))?;
    if let Some(dir) = path.parent() {
        let mut bytes = Vec::with_capacity(8 + 4 * x.len());
        bytes.extend_from_slice(&(texts.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(d as u32).to_le_bytes());
        for v in x.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = std::fs::write(&path, bytes);
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cascade_fixes_unsure_messages_within_budget() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // 4 messages: two confident and right, two unsure and wrong; the second opinion is right.
        let fast = array![[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.52, 0.48]];
        let second = array![[0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.05, 0.95]];
        let truth = [0, 1, 1, 1];
        let inputs = CascadeInputs {
            labels: &labels,
            truth: &truth,
            fast: &fast,
            second: &second,
        };
        let (rows, _, routed) = table(&inputs, &[0.6, 0.6], Combine::Average, None).unwrap();
        assert_eq!(rows[0].accuracy, 0.5);
        assert_eq!(rows[3].accuracy, 1.0);
        assert_eq!(routed, vec![false, false, true, true]);
        let cal = calibrate(&inputs, Goal::Budget(0.5), Combine::Average);
        assert!(cal.share <= 0.5);
        assert_eq!(cal.accuracy, 1.0);
        // A simulated budget caps the share whatever the thresholds say.
        let budget = BudgetConfig {
            max_share: 0.25,
            window: 4,
            max_per_second: None,
        };
        let (_, routed) =
            cascade_predictions(&inputs, &[1.0, 1.0], Combine::Average, Some(&budget)).unwrap();
        assert_eq!(routed.iter().filter(|&&r| r).count(), 1);
    }
}
