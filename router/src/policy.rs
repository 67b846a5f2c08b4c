//! Thresholds and generative labels: what route a prediction should take.

use serde::{Deserialize, Serialize};
use triage_core::config::PolicyConfig;

use crate::RouterError;

/// Where a message's decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The fast classifier was confident enough: its label is published.
    Fast,
    /// The fast classifier was unsure: the second-opinion model (SLM) decides.
    SecondOpinion,
    /// The label is configured as generative: the generator (SLM) drafts a reply.
    Generate,
    /// The SLM was wanted but the budget was spent: the fast label is published.
    OverBudget,
    /// The SLM was wanted but failed or timed out: the fast label is published.
    Degraded,
}

impl Route {
    /// Whether this route asks the small language model.
    pub fn uses_slm(self) -> bool {
        matches!(self, Route::SecondOpinion | Route::Generate)
    }

    /// The route's name as written in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Fast => "fast",
            Route::SecondOpinion => "second_opinion",
            Route::Generate => "generate",
            Route::OverBudget => "over_budget",
            Route::Degraded => "degraded",
        }
    }
}

/// What the policy wants for one prediction, before the budget is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The route.
    pub route: Route,
    /// Why, in words (e.g. `confidence 0.41 < threshold 0.55 for neutral`).
    pub reason: String,
}

/// The routing policy.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    /// Validates the settings.
    pub fn new(config: PolicyConfig) -> Result<Self, RouterError> {
        let check = |name: &str, t: f32| {
            if (0.0..=1.0).contains(&t) {
                Ok(())
            } else {
                Err(RouterError::Config(format!(
                    "{name} must be within 0..=1, got {t}"
                )))
            }
        };
        check("default_threshold", config.default_threshold)?;
        check("generate_min_confidence", config.generate_min_confidence)?;
        check("deferral_threshold", config.deferral_threshold)?;
        check("out_of_scope_below", config.out_of_scope_below)?;
        if config.out_of_scope_below > 0.0 && config.out_of_scope_label.is_none() {
            return Err(RouterError::Config(
                "out_of_scope_below needs out_of_scope_label: the label a message under it gets"
                    .into(),
            ));
        }
        for (label, &t) in &config.thresholds {
            check(&format!("thresholds.{label}"), t)?;
        }
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The threshold that applies to `label`.
    pub fn threshold(&self, label: &str) -> f32 {
        self.config
            .thresholds
            .get(label)
            .copied()
            .unwrap_or(self.config.default_threshold)
    }

    /// Checks that every label the policy names is one the model knows.
    pub fn check_labels(&self, labels: &[String]) -> Result<(), RouterError> {
        let names = self.config.thresholds.keys().chain(&self.config.generative);
        for name in names.chain(&self.config.out_of_scope_label) {
            if !labels.contains(name) {
                return Err(RouterError::Config(format!(
                    "the policy names label {name:?}, which the model does not have (it has: {})",
                    labels.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The route for a fast prediction of `label` with `confidence`.
    ///
    /// With a deferral `score` (a learned deferral model's), the message is unsure when the score
    /// reaches `deferral_threshold`; without, when the confidence is below the label's threshold.
    pub fn plan(&self, label: &str, confidence: f32, score: Option<f32>) -> Plan {
        // The reason is written once, for the route taken (this runs for every message).
        let reason = |what: &str, value: f32, cmp: &str, bound: f32, tail: &str| {
            let mut r = String::with_capacity(64);
            r.push_str(what);
            push_3(&mut r, value);
            r.push_str(cmp);
            push_3(&mut r, bound);
            r.push_str(tail);
            r.push_str(label);
            r
        };
        let sure_reason = match score {
            Some(s) => {
                let t = self.config.deferral_threshold;
                if s >= t {
                    return Plan {
                        route: Route::SecondOpinion,
                        reason: reason("deferral score ", s, " >= ", t, " for "),
                    };
                }
                (s, " < ", t, "deferral score ", " for ")
            }
            None => {
                let threshold = self.threshold(label);
                if confidence < threshold {
                    return Plan {
                        route: Route::SecondOpinion,
                        reason: reason(
                            "confidence ",
                            confidence,
                            " < threshold ",
                            threshold,
                            " for ",
                        ),
                    };
                }
                (
                    confidence,
                    " >= threshold ",
                    threshold,
                    "confidence ",
                    " for ",
                )
            }
        };
        if self.config.generative.iter().any(|g| g == label)
            && confidence >= self.config.generate_min_confidence
        {
            return Plan {
                route: Route::Generate,
                reason: format!("{label} is a generative label"),
            };
        }
        let (value, cmp, bound, what, tail) = sure_reason;
        Plan {
            route: Route::Fast,
            reason: reason(what, value, cmp, bound, tail),
        }
    }
}

/// Appends `x` with exactly 3 decimals, as `format!("{x:.3}")` writes it (ties to even; an f32
/// times 1000 is exact in an f64, so the rounding is of the exact value), without the
/// formatting machinery: this runs for every message.
pub(crate) fn push_3(out: &mut String, x: f32) {
    let scaled = f64::from(x) * 1000.0;
    if !(scaled.is_finite() && scaled.abs() < 1e15) {
        use std::fmt::Write as _;
        let _ = write!(out, "{x:.3}");
        return;
    }
    let n = scaled.round_ties_even();
    if n < 0.0 || (n == 0.0 && x.is_sign_negative()) {
        out.push('-');
    }
    let n = n.abs() as u64;
    let (int, frac) = (n / 1000, n % 1000);
    let mut buf = [0u8; 24];
    let mut i = buf.len();
    for d in [frac % 10, frac / 10 % 10, frac / 100] {
        i -= 1;
        buf[i] = b'0' + d as u8;
    }
    i -= 1;
    buf[i] = b'.';
    let mut int = int;
    loop {
        i -= 1;
        buf[i] = b'0' + (int % 10) as u8;
        int /= 10;
        if int == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_decimals_as_format_writes_them() {
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            0.0625,
            0.1875,
            0.0005,
            0.0015,
            0.9995,
            0.99951,
            2.5e-4,
            -0.0625,
            -1.2345,
            123.4565,
            1e9,
            0.3785279,
            f32::MIN_POSITIVE,
        ];
        xs.extend((0..200_000u32).map(|i| i as f32 / 100_000.0));
        xs.extend((0..5_000u32).map(|i| (i as f32 + 0.5) / 1000.0));
        for x in xs {
            let mut s = String::new();
            push_3(&mut s, x);
            assert_eq!(s, format!("{x:.3}"), "{x:e}");
        }
    }

    #[test]
    fn per_label_thresholds_override_the_default() {
        let mut c = PolicyConfig::default();
        c.thresholds.insert("neutral".into(), 0.8);
        let p = Policy::new(c).unwrap();
        assert_eq!(p.plan("neutral", 0.7, None).route, Route::SecondOpinion);
        assert_eq!(p.plan("positive", 0.7, None).route, Route::Fast);
        assert!(p.plan("neutral", 0.7, None).reason.contains("0.800"));
    }

    #[test]
    fn unsure_generative_asks_second_opinion_first() {
        let c = PolicyConfig {
            generative: vec!["negative".into()],
            ..Default::default()
        };
        let p = Policy::new(c).unwrap();
        assert_eq!(p.plan("negative", 0.3, None).route, Route::SecondOpinion);
        assert_eq!(p.plan("negative", 0.9, None).route, Route::Generate);
    }

    #[test]
    fn rejects_out_of_range_and_unknown_labels() {
        let c = PolicyConfig {
            default_threshold: 1.5,
            ..Default::default()
        };
        assert!(Policy::new(c).is_err());
        let c = PolicyConfig {
            generative: vec!["nope".into()],
            ..Default::default()
        };
        let p = Policy::new(c).unwrap();
        assert!(p.check_labels(&["a".into(), "b".into()]).is_err());
    }
}
