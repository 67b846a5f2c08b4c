//! One processing path for every source: a payload in, a [`Step`] out; a [`Decision`] once the
//! SLM (if asked) has answered.
//!
//! [`Processor::step`] decodes the payload, runs the fast classifier and routes the message
//! ([`Router::route`]; microseconds, synchronous). When the route asks for the small language
//! model, [`Processor::resolve`] awaits it through the executor (off the async workers, batched,
//! with a timeout), and [`Router::settle`] decides what is published: the second opinion
//! combined in, the drafted reply, or the fast label as `degraded` (the SLM failed) or
//! `over_budget` (a saturated SLM served more urgent messages).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use triage_classifier::{Model, Scratch};
use triage_core::config::Config;
use triage_core::message::{DecodeError, InputConfig, Message, decode};
use triage_core::names::metric;
use triage_router::{Answer, Budget, Route, Router, Routing, Signals};

use crate::error::Result;
use crate::slm::{SlmError, SlmRequest, SlmResponse, SlmStage};

/// The result record published for every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The input message's id.
    pub id: String,
    /// The published label: the fast label, or the label after the second opinion.
    pub label: String,
    /// Its confidence.
    pub confidence: f32,
    /// The published probability of every label.
    pub probabilities: BTreeMap<String, f32>,
    /// Which route the message took.
    pub route: Route,
    /// Why.
    pub reason: String,
    /// The fast classifier's label and confidence.
    pub fast: Label,
    /// The second opinion's label and confidence, when one was asked and answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_opinion: Option<Label>,
    /// The drafted reply, for generative labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// The fast classifier's model version (first 12 hex digits of its SHA-256).
    pub model_version: String,
    /// Time spent, in microseconds.
    pub timings_us: Timings,
    /// The input's other fields, unchanged.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// A label with its confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The label.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
}

/// Time spent on a message, in microseconds, written to the nanosecond (3 decimals):
/// `"classify":24.126`, not `24.125999999999998`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Analyse + vectorise + predict.
    #[serde(serialize_with = "short_us")]
    pub classify: f64,
    /// The small language model (queueing included), when it was asked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "short_us_opt"
    )]
    pub slm: Option<f64>,
}

/// A duration in microseconds rounded to 3 decimals. `n / 1000.0` is the double nearest to
/// the decimal `n/1000`, so serde_json (ryu, shortest round-trip) prints at most 3 decimals.
fn round_us(us: f64) -> f64 {
    if us.is_finite() && us.abs() < 1e15 {
        (us * 1000.0).round() / 1000.0
    } else {
        us
    }
}

fn short_us<S: serde::Serializer>(us: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(round_us(*us))
}

fn short_us_opt<S: serde::Serializer>(
    us: &Option<f64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match us {
        Some(v) => s.serialize_some(&round_us(*v)),
        None => s.serialize_none(),
    }
}

/// Classifier + router + budget + SLM stage: the shared processing path.
pub struct Processor {
    model: Arc<Model>,
    router: Router,
    budget: Mutex<Budget>,
    slm: SlmStage,
}

/// What became of one payload on the fast path.
pub enum Step {
    /// Decided: publish it.
    Done(Box<Decision>),
    /// The route asks the SLM: pass it to [`Processor::resolve`], then publish.
    Slm(Box<Pending>),
    /// Not a message: dead-letter it with the reason.
    Dead(DecodeError),
}

/// A message waiting for the small language model.
pub struct Pending {
    decision: Decision,
    routing: Routing,
    fast: Vec<f32>,
    text: String,
}

impl Pending {
    /// The message's id.
    pub fn id(&self) -> &str {
        &self.decision.id
    }

    /// Time the fast path took, in microseconds.
    pub fn classify_us(&self) -> f64 {
        self.decision.timings_us.classify
    }
}

impl Processor {
    /// Builds a processor, checking that the policy only names labels the model has.
    /// A learned deferral model named by the policy is read relative to `root`.
    pub fn new(model: Arc<Model>, config: &Config, slm: SlmStage, root: &Path) -> Result<Self> {
        let router = Router::from_config(
            config.router.clone(),
            config.slm.combine,
            model.labels(),
            root,
        )?;
        Ok(Self {
            model,
            router,
            budget: Mutex::new(Budget::new(config.budget.clone())?),
            slm,
        })
    }

    /// The processing path of a configuration: its router, budget and SLM stage (loaded from
    /// `[slm]`, with relative paths resolved against `root`).
    pub fn from_config(model: Arc<Model>, config: &Config, root: &Path) -> Result<Self> {
        let slm = SlmStage::load(&config.slm, &model, &config.router, root)?;
        Self::new(model, config, slm, root)
    }

    /// Decodes a payload and, if it is a message, classifies and routes it (fast path;
    /// synchronous). `fallback_id` names a message without an id.
    pub fn step(
        &self,
        payload: &[u8],
        input: &InputConfig,
        fallback_id: impl FnOnce() -> String,
        scratch: &mut Scratch,
        probs: &mut Vec<f32>,
    ) -> Step {
        match decode(payload, input, fallback_id) {
            Ok(msg) => self.decide(msg, scratch, probs),
            Err(e) => Step::Dead(e),
        }
    }

    /// Classifies and routes a decoded message.
    pub fn decide(&self, msg: Message, scratch: &mut Scratch, probs: &mut Vec<f32>) -> Step {
        let t0 = Instant::now();
        self.model.predict_into(&msg.text, scratch, probs);
        let classify = t0.elapsed().as_secs_f64() * 1e6;
        let signals = Signals {
            probs,
            unseen_share: if self.router.deferral().is_some() {
                self.model.unseen_share(scratch)
            } else {
                0.0
            },
            bytes: msg.text.len(),
        };
        let routing = {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            self.router.route(&signals, &mut budget)
        };
        let labels = self.model.labels();
        let label = labels[routing.label].clone();
        let decision = Decision {
            id: msg.id,
            fast: Label {
                label: label.clone(),
                confidence: routing.confidence,
            },
            label,
            confidence: routing.confidence,
            probabilities: labels.iter().cloned().zip(probs.iter().copied()).collect(),
            route: routing.route,
            reason: routing.reason.clone(),
            second_opinion: None,
            reply: None,
            model_version: self.model.version().to_string(),
            timings_us: Timings {
                classify,
                slm: None,
            },
            fields: msg.fields,
        };
        if routing.route.uses_slm() {
            Step::Slm(Box::new(Pending {
                decision,
                routing,
                fast: probs.clone(),
                text: msg.text,
            }))
        } else {
            Step::Done(Box::new(decision))
        }
    }

    /// Asks the SLM for a pending message and settles it: the second opinion combined in, the
    /// drafted reply attached, `degraded` (the fast label stands) when the SLM is unavailable,
    /// fails or times out, or `over_budget` when it is saturated and more urgent messages took
    /// it (the executor's admission stage, ranked by [`Routing::urgency`]).
    pub async fn resolve(&self, pending: Pending) -> Decision {
        let Pending {
            mut decision,
            routing,
            fast,
            text,
        } = pending;
        let Some(executor) = &self.slm.executor else {
            metrics::counter!(metric::SLM_CALLS, "kind" => "unavailable").increment(1);
            let outcome = self
                .router
                .settle(routing, &fast, Answer::Failed(&self.slm.unavailable));
            self.apply(&mut decision, outcome);
            return decision;
        };
        let request = match routing.route {
            Route::Generate => SlmRequest::Generate {
                text,
                label: decision.label.clone(),
            },
            _ => SlmRequest::SecondOpinion(text),
        };
        let t0 = Instant::now();
        let answer = executor.call(request, routing.urgency).await;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        decision.timings_us.slm = Some(us);
        metrics::histogram!(metric::SLM_SECONDS).record(us / 1e6);
        let failure;
        let outcome = match &answer {
            Ok(SlmResponse::Probabilities(p)) => {
                self.router.settle(routing, &fast, Answer::SecondOpinion(p))
            }
            Ok(SlmResponse::Reply(_)) => self.router.settle(routing, &fast, Answer::Reply),
            Err(SlmError::Shed(shed)) => {
                metrics::counter!(metric::SLM_SHED, "why" => shed.kind()).increment(1);
                self.router.settle(routing, &fast, Answer::Shed(*shed))
            }
            Err(e) => {
                failure = e.to_string();
                self.router.settle(routing, &fast, Answer::Failed(&failure))
            }
        };
        let kind = match (&answer, outcome.route) {
            (Err(e), _) => e.kind(),
            (Ok(_), Route::Degraded) => "error",
            (Ok(SlmResponse::Probabilities(_)), _) => "second_opinion",
            (Ok(SlmResponse::Reply(_)), _) => "generate",
        };
        metrics::counter!(metric::SLM_CALLS, "kind" => kind).increment(1);
        if outcome.route == Route::Degraded {
            tracing::debug!(id = %decision.id, reason = %outcome.reason, "SLM call failed; publishing the fast label");
        }
        if let (Ok(SlmResponse::Reply(reply)), Route::Generate) = (answer, outcome.route) {
            decision.reply = Some(reply);
        }
        self.apply(&mut decision, outcome);
        decision
    }

    /// Writes the router's outcome into the decision.
    fn apply(&self, d: &mut Decision, outcome: triage_router::Outcome) {
        let labels = self.model.labels();
        d.route = outcome.route;
        d.reason = outcome.reason;
        d.second_opinion = outcome.second_opinion.map(|(l, c)| Label {
            label: labels[l].clone(),
            confidence: c,
        });
        if outcome.route == Route::SecondOpinion {
            d.label = labels[outcome.label].clone();
            d.confidence = outcome.confidence;
            d.probabilities = labels.iter().cloned().zip(outcome.probabilities).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimals(json: &str, field: &str) -> usize {
        let at = json.find(&format!("\"{field}\":")).expect(field) + field.len() + 3;
        let num: String = json[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
            .collect();
        num.split('.').nth(1).map_or(0, str::len)
    }

    #[test]
    fn timings_are_written_short() {
        let d = Decision {
            id: "x".into(),
            label: "neutral".into(),
            confidence: 0.5,
            probabilities: BTreeMap::new(),
            route: Route::Fast,
            reason: "r".into(),
            fast: Label {
                label: "neutral".into(),
                confidence: 0.5,
            },
            second_opinion: None,
            reply: None,
            model_version: "0123456789ab".into(),
            timings_us: Timings {
                classify: 24.125999999999998,
                slm: Some(1.0 / 3.0 * 1000.0),
            },
            fields: Map::new(),
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"classify\":24.126"), "{json}");
        assert!(decimals(&json, "classify") <= 3, "{json}");
        assert!(decimals(&json, "slm") <= 3, "{json}");
        assert!(json.contains("\"slm\":333.333"), "{json}");
        // Field names unchanged, and the record reads back.
        let back: Decision = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timings_us.classify, 24.126);
        // Many values: never more than 3 decimals.
        for i in 0..10_000u32 {
            let t = Timings {
                classify: f64::from(i) * 0.0137 + 0.1,
                slm: None,
            };
            let j = serde_json::to_string(&t).unwrap();
            assert!(decimals(&j, "classify") <= 3, "{j}");
            assert!(!j.contains("slm"), "{j}");
        }
    }
}
