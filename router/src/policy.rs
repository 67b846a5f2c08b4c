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
        for name in self.config.thresholds.keys().chain(&self.config.generative) {
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
        let threshold = self.threshold(label);
        let t = self.config.deferral_threshold;
        let (unsure, sure_reason) = match score {
            Some(s) if s >= t => {
                return Plan {
                    route: Route::SecondOpinion,
                    reason: format!("deferral score {s:.3} >= {t:.3} for {label}"),
                };
            }
            Some(s) => (false, format!("deferral score {s:.3} < {t:.3} for {label}")),
            None => (
                confidence < threshold,
                format!("confidence {confidence:.3} >= threshold {threshold:.3} for {label}"),
            ),
        };
        if unsure {
            return Plan {
                route: Route::SecondOpinion,
                reason: format!(
                    "confidence {confidence:.3} < threshold {threshold:.3} for {label}"
                ),
            };
        }
        if self.config.generative.iter().any(|g| g == label)
            && confidence >= self.config.generate_min_confidence
        {
            return Plan {
                route: Route::Generate,
                reason: format!("{label} is a generative label"),
            };
        }
        Plan {
            route: Route::Fast,
            reason: sure_reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
