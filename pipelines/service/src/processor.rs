//! One processing path for every source: a payload in, a [`Step`] out; a [`Decision`] once the
//! SLM (if asked) has answered.
//!
//! [`Processor::step`] decodes the payload, runs the fast classifier and routes the message
//! ([`Router::route`]; microseconds, synchronous). When the route asks for the small language
//! model, [`Processor::resolve`] awaits it through the executor (off the async workers, batched,
//! with a timeout), and [`Router::settle`] decides what is published: the second opinion
//! combined in, the drafted reply, or the fast label as `degraded`.

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
use crate::slm::{SlmRequest, SlmResponse, SlmStage};

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

/// Time spent on a message, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Analyse + vectorise + predict.
    pub classify: f64,
    /// The small language model (queueing included), when it was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slm: Option<f64>,
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
    /// drafted reply attached, or `degraded` (the fast label stands) when the SLM is
    /// unavailable, fails or times out.
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
        let answer = executor.call(request).await;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        decision.timings_us.slm = Some(us);
        metrics::histogram!(metric::SLM_SECONDS).record(us / 1e6);
        let failure;
        let outcome = match &answer {
            Ok(SlmResponse::Probabilities(p)) => {
                self.router.settle(routing, &fast, Answer::SecondOpinion(p))
            }
            Ok(SlmResponse::Reply(_)) => self.router.settle(routing, &fast, Answer::Reply),
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
