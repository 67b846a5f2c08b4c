//! Learned deferral: which messages the second opinion should see. A small logistic model on
//! signals of the fast prediction scores each message by how likely the second opinion is to fix
//! its label; the router sends the messages whose score reaches a threshold (calibrated for the
//! budget), instead of those whose top probability is low.
//!
//! The model is trained offline (`triage calibrate --deferral`, in `triage-eval`) on
//! out-of-fold predictions of train/dev data, never test. The features:
//! - the margin between the top two fast probabilities;
//! - the entropy of the fast probabilities (divided by `ln k`);
//! - the share of the message's features the fast model has no weights for (unseen n-grams);
//! - the message length (`ln(1 + bytes)`);
//! - the predicted label (one indicator per label).

use serde::{Deserialize, Serialize};

use crate::RouterError;

/// What the router knows of a message besides its fast probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals<'a> {
    /// Fast probabilities, in label order.
    pub probs: &'a [f32],
    /// Share of the message's distinct features the fast model has never seen (0..=1).
    pub unseen_share: f32,
    /// Length of the text in bytes.
    pub bytes: usize,
}

impl<'a> Signals<'a> {
    /// Signals with only the probabilities known (the rest neutral).
    pub fn probs(probs: &'a [f32]) -> Self {
        Self {
            probs,
            unseen_share: 0.0,
            bytes: 0,
        }
    }
}

/// Numeric features before the label indicators.
pub const NUMERIC_FEATURES: usize = 4;

/// The numeric features of a message and its predicted label (the one indicator that is 1).
fn numeric(s: &Signals<'_>) -> ([f32; NUMERIC_FEATURES], usize) {
    let k = s.probs.len();
    let (mut top, mut second, mut best) = (f32::NEG_INFINITY, f32::NEG_INFINITY, 0);
    for (i, &p) in s.probs.iter().enumerate() {
        if p >= top {
            second = top;
            top = p;
            best = i;
        } else if p > second {
            second = p;
        }
    }
    let margin = if k > 1 { top - second.max(0.0) } else { 1.0 };
    let entropy: f32 = s
        .probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| -p * p.ln())
        .sum::<f32>()
        / (k.max(2) as f32).ln();
    (
        [margin, entropy, s.unseen_share, (1.0 + s.bytes as f32).ln()],
        best,
    )
}

/// The feature vector of a message: [`NUMERIC_FEATURES`] numbers, then one indicator per label.
pub fn features(s: &Signals<'_>) -> Vec<f32> {
    let (num, best) = numeric(s);
    let mut out = Vec::with_capacity(NUMERIC_FEATURES + s.probs.len());
    out.extend(num);
    out.extend((0..s.probs.len()).map(|i| (i == best) as u8 as f32));
    out
}

/// A trained deferral model (the JSON file `[router] deferral` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deferral {
    /// File format (1).
    pub format: u32,
    /// The fast model's labels it was trained for, in order.
    pub labels: Vec<String>,
    /// Per-feature centring, subtracted before the weights apply.
    pub mean: Vec<f32>,
    /// Per-feature scale, divided by before the weights apply.
    pub scale: Vec<f32>,
    /// One weight per feature.
    pub weights: Vec<f32>,
    /// The intercept.
    pub bias: f32,
    /// What it was trained and calibrated on, for the record.
    #[serde(default)]
    pub provenance: String,
}

impl Deferral {
    /// Checks that the model fits `labels`.
    pub fn check(&self, labels: &[String]) -> Result<(), RouterError> {
        let d = NUMERIC_FEATURES + labels.len();
        if self.format != 1 {
            return Err(RouterError::Config(format!(
                "deferral model format {} (this triage reads 1)",
                self.format
            )));
        }
        if self.labels != labels {
            return Err(RouterError::Config(
                "the deferral model was trained for other labels than the fast model's: \
                 calibrate it again (`triage calibrate --deferral`)"
                    .into(),
            ));
        }
        if [self.mean.len(), self.scale.len(), self.weights.len()] != [d; 3] {
            return Err(RouterError::Config(format!(
                "the deferral model has {} weights for {d} features",
                self.weights.len()
            )));
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !finite(&self.mean) || !finite(&self.weights) || !self.bias.is_finite() {
            return Err(RouterError::Config("non-finite deferral weights".into()));
        }
        if self.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(RouterError::Config("deferral scales must be > 0".into()));
        }
        Ok(())
    }

    /// The probability that the second opinion fixes this message's fast label.
    pub fn score(&self, s: &Signals<'_>) -> f32 {
        // The same sum as over `features(s)`, without building the vector: this runs per message.
        let (num, best) = numeric(s);
        let x = |i: usize| {
            if i < NUMERIC_FEATURES {
                num[i]
            } else {
                (i - NUMERIC_FEATURES == best) as u8 as f32
            }
        };
        let z: f32 = (0..self.weights.len())
            .map(|i| (x(i) - self.mean[i]) / self.scale[i] * self.weights[i])
            .sum::<f32>()
            + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_of_a_prediction() {
        let f = features(&Signals {
            probs: &[0.1, 0.7, 0.2],
            unseen_share: 0.25,
            bytes: 10,
        });
        assert!((f[0] - 0.5).abs() < 1e-6, "margin {}", f[0]);
        assert!(f[1] > 0.0 && f[1] < 1.0, "entropy {}", f[1]);
        assert_eq!(f[2], 0.25);
        assert!((f[3] - 11f32.ln()).abs() < 1e-6);
        assert_eq!(&f[4..], &[0.0, 1.0, 0.0]);
        // Certain: no entropy, full margin.
        let f = features(&Signals::probs(&[0.0, 1.0]));
        assert_eq!((f[0], f[1]), (1.0, 0.0));
    }

    #[test]
    fn scores_follow_the_weights() {
        let labels = vec!["a".to_string(), "b".to_string()];
        // Defer when the margin is small: a negative weight on the margin.
        let d = Deferral {
            format: 1,
            labels: labels.clone(),
            mean: vec![0.0; 6],
            scale: vec![1.0; 6],
            weights: vec![-10.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            bias: 2.0,
            provenance: String::new(),
        };
        d.check(&labels).unwrap();
        let unsure = d.score(&Signals::probs(&[0.48, 0.52]));
        let sure = d.score(&Signals::probs(&[0.02, 0.98]));
        assert!(unsure > 0.8 && sure < 0.01, "{unsure} {sure}");
        assert!(d.check(&["x".to_string(), "b".to_string()]).is_err());
    }
}
