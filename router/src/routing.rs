//! The one routing policy: every route a message can take is decided here, by the same code in
//! the running service and in the offline tools that tune it (`triage calibrate`,
//! `triage eval --cascade`).
//!
//! A message is routed in two steps:
//! 1. [`Router::route`], on the fast classifier's probabilities: `fast`, `second_opinion` or
//!    `generate` by the policy's thresholds and generative labels, then `over_budget` when the
//!    SLM is wanted but the budget is spent;
//! 2. [`Router::settle`], once the SLM answered or failed: the combine rule applied to a second
//!    opinion, a drafted reply kept, or `degraded` (the fast label stands) when there is no
//!    usable answer.

use triage_core::argmax;
use triage_core::config::{Combine, PolicyConfig};

use std::path::Path;

use crate::deferral::{Deferral, Signals};
use crate::policy::push_3;
use crate::{Budget, Policy, Route, RouterError};

/// The policy and the combine rule, for one fast model's labels.
#[derive(Debug, Clone)]
pub struct Router {
    policy: Policy,
    combine: Combine,
    labels: Vec<String>,
    deferral: Option<Deferral>,
    /// The out-of-scope label's index and the confidence below which a message gets it.
    out_of_scope: Option<(usize, f32)>,
}

/// A message's route before the SLM answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// `fast`, `second_opinion`, `generate` or `over_budget`.
    pub route: Route,
    /// The fast label (an index into the labels).
    pub label: usize,
    /// Its probability.
    pub confidence: f32,
    /// Why, in words.
    pub reason: String,
    /// How much the message needs the SLM, for the admission stage in front of it when it is
    /// saturated (higher first): the learned deferral score, or else `1 − confidence`.
    pub urgency: f32,
}

/// Why the admission stage in front of the SLM turned a routed message away: the SLM was
/// saturated. The message is published `over_budget` with the fast label. Shedding happens at
/// run time only (it depends on how fast the SLM answers); the offline simulation never sheds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// More urgent messages took the SLM's capacity for the whole admission window (ms).
    Window {
        /// The window, in milliseconds.
        ms: u64,
    },
    /// The queue in front of the SLM was full of more urgent messages.
    QueueFull {
        /// How many second opinions may wait.
        capacity: usize,
    },
    /// The drafted replies' queue was full.
    RepliesFull {
        /// How many replies may wait.
        capacity: usize,
    },
}

impl Shed {
    /// A short name for metrics (`window`, `queue_full`, `replies_full`).
    pub fn kind(self) -> &'static str {
        match self {
            Shed::Window { .. } => "window",
            Shed::QueueFull { .. } => "queue_full",
            Shed::RepliesFull { .. } => "replies_full",
        }
    }
}

impl std::fmt::Display for Shed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shed::Window { ms } => write!(
                f,
                "SLM saturated: more urgent messages took it for the whole {ms} ms admission window"
            ),
            Shed::QueueFull { capacity } => write!(
                f,
                "SLM saturated: its queue was full ({capacity} more urgent messages waiting)"
            ),
            Shed::RepliesFull { capacity } => write!(
                f,
                "SLM saturated: {capacity} drafted replies were already waiting"
            ),
        }
    }
}

/// What the small language model gave for a routed message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer<'a> {
    /// No SLM call was made (the route does not use it).
    None,
    /// Second-opinion probabilities, in the fast model's label order.
    SecondOpinion(&'a [f32]),
    /// A drafted reply.
    Reply,
    /// No usable answer: why (a timeout, an error, no SLM installed).
    Failed(&'a str),
    /// Not asked: the SLM was saturated and more urgent messages took its capacity.
    Shed(Shed),
}

/// What is published for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The final route (`degraded` when the SLM was asked and gave no usable answer,
    /// `over_budget` when it was saturated and the message was shed).
    pub route: Route,
    /// The published label.
    pub label: usize,
    /// Its probability.
    pub confidence: f32,
    /// The published probabilities: the fast ones, or the combination with the second opinion.
    pub probabilities: Vec<f32>,
    /// The second opinion's own label and confidence, when it answered.
    pub second_opinion: Option<(usize, f32)>,
    /// Why, in words.
    pub reason: String,
}

impl Router {
    /// Validates the policy and checks that it only names labels the model has.
    pub fn new(
        policy: PolicyConfig,
        combine: Combine,
        labels: &[String],
    ) -> Result<Self, RouterError> {
        let policy = Policy::new(policy)?;
        policy.check_labels(labels)?;
        let config = policy.config();
        let out_of_scope = config
            .out_of_scope_label
            .as_ref()
            .and_then(|l| labels.iter().position(|x| x == l))
            .filter(|_| config.out_of_scope_below > 0.0)
            .map(|i| (i, config.out_of_scope_below));
        Ok(Self {
            policy,
            combine,
            labels: labels.to_vec(),
            deferral: None,
            out_of_scope,
        })
    }

    /// The router of a policy, with its learned deferral model when `policy.deferral` names one
    /// (read from that file, relative to `root`).
    pub fn from_config(
        policy: PolicyConfig,
        combine: Combine,
        labels: &[String],
        root: &Path,
    ) -> Result<Self, RouterError> {
        let deferral = match &policy.deferral {
            None => None,
            Some(p) => {
                let path = root.join(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    RouterError::Config(format!("deferral model {}: {e}", path.display()))
                })?;
                Some(serde_json::from_str(&text).map_err(|e| {
                    RouterError::Config(format!("deferral model {}: {e}", path.display()))
                })?)
            }
        };
        let router = Self::new(policy, combine, labels)?;
        match deferral {
            Some(d) => router.with_deferral(d),
            None => Ok(router),
        }
    }

    /// Routes by a learned deferral score (at the policy's `deferral_threshold`) instead of the
    /// confidence thresholds.
    pub fn with_deferral(mut self, deferral: Deferral) -> Result<Self, RouterError> {
        deferral.check(&self.labels)?;
        self.deferral = Some(deferral);
        Ok(self)
    }

    /// The learned deferral model, if any.
    pub fn deferral(&self) -> Option<&Deferral> {
        self.deferral.as_ref()
    }

    /// The labels, in probability order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The combine rule.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// The out-of-scope label (an index into the labels) and the fast confidence below which a
    /// message gets it, when the policy has one.
    pub fn out_of_scope(&self) -> Option<(usize, f32)> {
        self.out_of_scope
    }

    /// The route of a message, from its fast probabilities (`signals.probs`, label order) and,
    /// with a learned deferral model, its other signals; the budget applied: every message is
    /// recorded in `budget`, whether it wants the SLM or not.
    pub fn route(&self, signals: &Signals<'_>, budget: &mut Budget) -> Routing {
        let (label, confidence) = argmax(signals.probs);
        if let Some((oos, below)) = self.out_of_scope
            && confidence < below
        {
            budget.admit(false);
            return Routing {
                route: Route::Fast,
                label: oos,
                confidence,
                reason: out_of_scope_reason(
                    confidence,
                    &self.labels[label],
                    below,
                    &self.labels[oos],
                ),
                urgency: 0.0,
            };
        }
        let score = self.deferral.as_ref().map(|d| d.score(signals));
        let plan = self.policy.plan(&self.labels[label], confidence, score);
        let admitted = budget.admit(plan.route.uses_slm());
        let (route, reason) = if plan.route.uses_slm() && !admitted {
            (Route::OverBudget, joined(plan.reason, "SLM budget spent"))
        } else {
            (plan.route, plan.reason)
        };
        Routing {
            route,
            label,
            confidence,
            reason,
            urgency: score.unwrap_or(1.0 - confidence),
        }
    }

    /// What is published once the SLM has answered (or not). Routes that do not use the SLM
    /// take [`Answer::None`] and keep the fast label; a second opinion with the wrong number of
    /// probabilities counts as no answer.
    pub fn settle(&self, routing: Routing, fast: &[f32], answer: Answer<'_>) -> Outcome {
        let fast_outcome = |route: Route, reason: String| Outcome {
            route,
            label: routing.label,
            confidence: routing.confidence,
            probabilities: fast.to_vec(),
            second_opinion: None,
            reason,
        };
        if !routing.route.uses_slm() {
            return fast_outcome(routing.route, routing.reason);
        }
        match answer {
            Answer::SecondOpinion(second)
                if routing.route == Route::SecondOpinion && second.len() == fast.len() =>
            {
                let combined = self.combined(fast, second);
                let (label, confidence) = argmax(&combined);
                Outcome {
                    route: Route::SecondOpinion,
                    label,
                    confidence,
                    probabilities: combined,
                    second_opinion: Some(argmax(second)),
                    reason: routing.reason,
                }
            }
            Answer::Reply if routing.route == Route::Generate => {
                fast_outcome(Route::Generate, routing.reason)
            }
            Answer::Failed(why) => fast_outcome(Route::Degraded, joined(routing.reason, why)),
            Answer::Shed(why) => {
                fast_outcome(Route::OverBudget, format!("{}; {why}", routing.reason))
            }
            Answer::None | Answer::SecondOpinion(_) | Answer::Reply => fast_outcome(
                Route::Degraded,
                joined(routing.reason, "SLM failed: malformed answer"),
            ),
        }
    }

    /// The combine rule: the published probabilities of a message that got a second opinion.
    pub fn combined(&self, fast: &[f32], second: &[f32]) -> Vec<f32> {
        match self.combine {
            Combine::Average => fast
                .iter()
                .zip(second)
                .map(|(a, b)| (a + b) / 2.0)
                .collect(),
            Combine::Replace => second.to_vec(),
        }
    }
}

/// `confidence 0.118 for definition < out-of-scope floor 0.150: oos`, written as the policy's
/// reasons are (no formatting machinery: this can run for a good share of the messages).
fn out_of_scope_reason(confidence: f32, top: &str, below: f32, oos: &str) -> String {
    let mut r = String::with_capacity(48 + top.len() + oos.len());
    r.push_str("confidence ");
    push_3(&mut r, confidence);
    r.push_str(" for ");
    r.push_str(top);
    r.push_str(" < out-of-scope floor ");
    push_3(&mut r, below);
    r.push_str(": ");
    r.push_str(oos);
    r
}

/// `reason; why`, appended in place (no formatting machinery: this can run for every message).
fn joined(mut reason: String, why: &str) -> String {
    reason.reserve(2 + why.len());
    reason.push_str("; ");
    reason.push_str(why);
    reason
}

#[cfg(test)]
mod tests {
    use triage_core::config::BudgetConfig;

    use super::*;

    fn router(combine: Combine, generative: &[&str]) -> Router {
        let labels = vec!["a".to_string(), "b".to_string()];
        let policy = PolicyConfig {
            default_threshold: 0.6,
            generative: generative.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Router::new(policy, combine, &labels).unwrap()
    }

    fn unlimited() -> Budget {
        Budget::new(BudgetConfig {
            max_share: 1.0,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn every_route() {
        let r = router(Combine::Average, &["b"]);
        let mut budget = unlimited();
        assert_eq!(
            r.route(&Signals::probs(&[0.9, 0.1]), &mut budget).route,
            Route::Fast
        );
        let unsure = r.route(&Signals::probs(&[0.55, 0.45]), &mut budget);
        assert_eq!(unsure.route, Route::SecondOpinion);
        assert_eq!(
            r.route(&Signals::probs(&[0.1, 0.9]), &mut budget).route,
            Route::Generate
        );

        // The second opinion is averaged in and can change the label.
        let o = r.settle(
            unsure.clone(),
            &[0.55, 0.45],
            Answer::SecondOpinion(&[0.05, 0.95]),
        );
        assert_eq!((o.route, o.label), (Route::SecondOpinion, 1));
        assert_eq!(o.probabilities, vec![0.3, 0.7]);
        assert_eq!(o.second_opinion, Some((1, 0.95)));
        // No answer: degraded, fast label, the reason says why.
        let o = r.settle(
            unsure.clone(),
            &[0.55, 0.45],
            Answer::Failed("SLM call timed out"),
        );
        assert_eq!((o.route, o.label), (Route::Degraded, 0));
        assert!(o.reason.ends_with("; SLM call timed out"), "{}", o.reason);
        // Shed by a saturated SLM: over_budget, fast label, and the reason says so.
        let o = r.settle(
            unsure.clone(),
            &[0.55, 0.45],
            Answer::Shed(Shed::Window { ms: 50 }),
        );
        assert_eq!((o.route, o.label), (Route::OverBudget, 0));
        assert_eq!(o.second_opinion, None);
        assert!(
            o.reason.starts_with(&unsure.reason) && o.reason.contains("50 ms admission window"),
            "{}",
            o.reason
        );
        // The least confident are the most urgent.
        assert!((unsure.urgency - 0.45).abs() < 1e-6, "{}", unsure.urgency);

        // Nothing left in the budget: over_budget, fast label.
        let mut none = Budget::new(BudgetConfig {
            max_share: 0.0,
            burst: 0,
            ..Default::default()
        })
        .unwrap();
        let o = r.route(&Signals::probs(&[0.55, 0.45]), &mut none);
        assert_eq!(o.route, Route::OverBudget);
        assert!(o.reason.ends_with("SLM budget spent"), "{}", o.reason);
    }

    /// Under the out-of-scope floor a message gets the out-of-scope label on the fast path: no
    /// second opinion, no budget spent, the reason says why. At or above it, the policy routes.
    #[test]
    fn the_out_of_scope_floor_labels_on_the_fast_path() {
        let labels: Vec<String> = ["a", "b", "oos"].map(String::from).to_vec();
        let policy = PolicyConfig {
            default_threshold: 0.6,
            out_of_scope_label: Some("oos".into()),
            out_of_scope_below: 0.45,
            ..Default::default()
        };
        let r = Router::new(policy.clone(), Combine::Average, &labels).unwrap();
        assert_eq!(r.out_of_scope(), Some((2, 0.45)));
        let mut budget = Budget::new(BudgetConfig {
            max_share: 0.0,
            burst: 1,
            ..Default::default()
        })
        .unwrap();
        let fast = [0.44, 0.4, 0.16];
        let o = r.route(&Signals::probs(&fast), &mut budget);
        assert_eq!((o.route, o.label), (Route::Fast, 2));
        assert_eq!(
            o.reason,
            "confidence 0.440 for a < out-of-scope floor 0.450: oos"
        );
        let settled = r.settle(o, &fast, Answer::None);
        assert_eq!((settled.route, settled.label), (Route::Fast, 2));
        // The one SLM call the budget holds is still there for an unsure in-scope message.
        let unsure = r.route(&Signals::probs(&[0.5, 0.3, 0.2]), &mut budget);
        assert_eq!((unsure.route, unsure.label), (Route::SecondOpinion, 0));
        assert_eq!(
            r.route(&Signals::probs(&[0.9, 0.05, 0.05]), &mut budget)
                .route,
            Route::Fast
        );
        // A label the model does not have, or a floor out of range, is refused; 0 is off.
        let unknown = PolicyConfig {
            out_of_scope_label: Some("other".into()),
            ..policy.clone()
        };
        assert!(Router::new(unknown, Combine::Average, &labels).is_err());
        let high = PolicyConfig {
            out_of_scope_below: 1.5,
            ..policy.clone()
        };
        assert!(Router::new(high, Combine::Average, &labels).is_err());
        let no_label = PolicyConfig {
            out_of_scope_label: None,
            ..policy.clone()
        };
        assert!(Router::new(no_label, Combine::Average, &labels).is_err());
        let off = PolicyConfig {
            out_of_scope_below: 0.0,
            ..policy
        };
        assert_eq!(
            Router::new(off, Combine::Average, &labels)
                .unwrap()
                .out_of_scope(),
            None
        );
    }

    #[test]
    fn with_a_deferral_model_the_score_is_the_urgency() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let d = Deferral {
            format: 1,
            labels: labels.clone(),
            mean: vec![0.0; 6],
            scale: vec![1.0; 6],
            weights: vec![-10.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            bias: 2.0,
            provenance: String::new(),
        };
        let r = router(Combine::Average, &[])
            .with_deferral(d.clone())
            .unwrap();
        let signals = Signals::probs(&[0.48, 0.52]);
        let routing = r.route(&signals, &mut unlimited());
        assert_eq!(routing.route, Route::SecondOpinion);
        assert_eq!(routing.urgency, d.score(&signals));
        assert!((routing.urgency - (1.0 - routing.confidence)).abs() > 0.1);
    }

    #[test]
    fn replace_takes_the_second_opinion() {
        let r = router(Combine::Replace, &[]);
        let routing = r.route(&Signals::probs(&[0.55, 0.45]), &mut unlimited());
        let o = r.settle(routing, &[0.55, 0.45], Answer::SecondOpinion(&[0.4, 0.6]));
        assert_eq!((o.label, o.probabilities), (1, vec![0.4, 0.6]));
    }
}
