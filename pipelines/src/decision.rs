//! One processing path for every source: a [`Message`] in, a [`Decision`] out.
//!
//! [`Processor::decide`] runs the fast classifier and the policy (microseconds, synchronous).
//! When the route asks for the small language model, [`Processor::resolve`] awaits it through
//! the [`Executor`] (off the async workers, batched, with a timeout) and either applies its answer
//! or publishes the fast label as `degraded`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use triage_classifier::{Model, Scratch};
use triage_router::backend::{Combine, FaultyBackend, SlmConfig, SlmMode};
use triage_router::{
    Budget, BudgetConfig, Executor, ModelsBackend, Policy, PolicyConfig, Route, SlmBackend,
    SlmError, SlmRequest, SlmResponse,
};

use crate::error::{PipelineError, Result};
use crate::message::Message;

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

/// The small-language-model stage: the executor, or why there is none.
pub struct SlmStage {
    executor: Option<Executor>,
    combine: Combine,
    unavailable: String,
}

impl SlmStage {
    /// No SLM: its routes degrade with this reason.
    pub fn disabled(reason: impl Into<String>) -> Self {
        Self {
            executor: None,
            combine: Combine::Average,
            unavailable: reason.into(),
        }
    }

    /// A stage over any backend (tests use stand-ins; the service uses [`ModelsBackend`]).
    pub fn with_backend(backend: Arc<dyn SlmBackend>, config: &SlmConfig) -> Result<Self> {
        Ok(Self {
            executor: Some(Executor::start(backend, config.executor.clone())?),
            combine: config.combine,
            unavailable: String::new(),
        })
    }

    /// Builds the stage from the `[slm]` section for this model and policy: loads the encoder,
    /// the head and, when the policy has generative labels, the generator. In `auto` mode a
    /// missing model or runtime disables the stage with a warning; in `on` mode it is an error.
    pub fn load(
        config: &SlmConfig,
        model: &Model,
        policy: &PolicyConfig,
        root: &Path,
    ) -> Result<Self> {
        if config.mode == SlmMode::Off {
            return Ok(Self::disabled("the SLM is off ([slm] mode = \"off\")"));
        }
        match Self::try_load(config, model, policy, root) {
            Ok(stage) => Ok(stage),
            Err(e) if config.mode == SlmMode::Auto => {
                tracing::warn!(error = %e, "small language models unavailable: SLM routes will be published as degraded");
                Ok(Self::disabled(format!("SLM unavailable: {e}")))
            }
            Err(e) => Err(e),
        }
    }

    fn try_load(
        config: &SlmConfig,
        model: &Model,
        policy: &PolicyConfig,
        root: &Path,
    ) -> Result<Self> {
        let models = config.models.resolved(root);
        let head = match &config.head {
            Some(p) => triage_models::Head::load(&root.join(p)),
            None if model.sha256() == crate::default_model_sha256() => {
                triage_models::Head::from_json(crate::DEFAULT_HEAD)
            }
            None => {
                return Err(PipelineError::Config(
                    "[slm] head is not set: train one for this model with `triage slm train-head`"
                        .into(),
                ));
            }
        }
        .map_err(|e| PipelineError::Config(format!("second-opinion head: {e}")))?;
        let t0 = Instant::now();
        let backend = ModelsBackend::load(
            &models,
            head,
            model.labels(),
            !policy.generative.is_empty(),
            config.generate.clone(),
        )?;
        tracing::info!(
            seconds = t0.elapsed().as_secs_f64(),
            "small language models loaded"
        );
        let fault = &config.fault;
        let backend: Arc<dyn SlmBackend> = if fault.error_share > 0.0 || fault.timeout_share > 0.0 {
            tracing::warn!(?fault, "SLM fault injection is ON");
            let past = |ms: u64| std::time::Duration::from_millis(ms + ms / 2 + 50);
            let hang = (
                past(config.executor.timeout_ms),
                past(config.executor.generate_timeout_ms),
            );
            Arc::new(FaultyBackend::new(backend, fault.clone(), hang))
        } else {
            Arc::new(backend)
        };
        Self::with_backend(backend, config)
    }

    /// Whether an executor is running.
    pub fn available(&self) -> bool {
        self.executor.is_some()
    }
}

/// Classifier + policy + budget + SLM stage: the shared processing path.
pub struct Processor {
    model: Arc<Model>,
    policy: Policy,
    budget: Mutex<Budget>,
    slm: SlmStage,
}

impl Processor {
    /// Builds a processor, checking that the policy only names labels the model has.
    pub fn new(
        model: Arc<Model>,
        policy: PolicyConfig,
        budget: BudgetConfig,
        slm: SlmStage,
    ) -> Result<Self> {
        let policy = Policy::new(policy)?;
        policy.check_labels(model.labels())?;
        Ok(Self {
            model,
            policy,
            budget: Mutex::new(Budget::new(budget)?),
            slm,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The SLM stage.
    pub fn slm(&self) -> &SlmStage {
        &self.slm
    }

    /// Classifies a message and decides its route (fast path; synchronous). If the route uses
    /// the SLM, pass the decision to [`Processor::resolve`] before publishing it.
    pub fn decide(&self, msg: &Message, scratch: &mut Scratch, probs: &mut Vec<f32>) -> Decision {
        let t0 = Instant::now();
        self.model.predict_into(&msg.text, scratch, probs);
        let classify = t0.elapsed().as_secs_f64() * 1e6;
        let (best, &confidence) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        let labels = self.model.labels();
        let label = labels[best].clone();
        let plan = self.policy.plan(&label, confidence);
        let admitted = {
            let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
            budget.admit(plan.route.uses_slm())
        };
        let (route, reason) = if plan.route.uses_slm() && !admitted {
            (
                Route::OverBudget,
                format!("{}; SLM budget spent", plan.reason),
            )
        } else {
            (plan.route, plan.reason)
        };
        Decision {
            id: msg.id.clone(),
            fast: Label {
                label: label.clone(),
                confidence,
            },
            label,
            confidence,
            probabilities: labels.iter().cloned().zip(probs.iter().copied()).collect(),
            route,
            reason,
            second_opinion: None,
            reply: None,
            model_version: self.model.version().to_string(),
            timings_us: Timings {
                classify,
                slm: None,
            },
            fields: msg.fields.clone(),
        }
    }

    /// Completes a decision whose route uses the SLM: applies the second opinion or the drafted
    /// reply, or marks it `degraded` (the fast label stands) when the SLM is unavailable, fails
    /// or times out. Decisions on other routes are returned unchanged.
    pub async fn resolve(&self, mut d: Decision, text: &str) -> Decision {
        if !d.route.uses_slm() {
            return d;
        }
        let Some(executor) = &self.slm.executor else {
            d.reason = format!("{}; {}", d.reason, self.slm.unavailable);
            d.route = Route::Degraded;
            metrics::counter!("triage_slm_calls_total", "kind" => "unavailable").increment(1);
            return d;
        };
        let request = match d.route {
            Route::Generate => SlmRequest::Generate {
                text: text.to_string(),
                label: d.label.clone(),
            },
            _ => SlmRequest::SecondOpinion(text.to_string()),
        };
        let t0 = Instant::now();
        let answer = executor.call(request).await;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        d.timings_us.slm = Some(us);
        metrics::histogram!("triage_slm_seconds").record(us / 1e6);
        match answer {
            Ok(SlmResponse::Probabilities(p)) if p.len() == d.probabilities.len() => {
                metrics::counter!("triage_slm_calls_total", "kind" => "second_opinion")
                    .increment(1);
                self.apply_second_opinion(&mut d, &p);
            }
            Ok(SlmResponse::Reply(text)) => {
                metrics::counter!("triage_slm_calls_total", "kind" => "generate").increment(1);
                d.reply = Some(text);
            }
            Ok(_) => self.degrade(&mut d, &SlmError::Backend("malformed answer".into())),
            Err(e) => self.degrade(&mut d, &e),
        }
        d
    }

    fn degrade(&self, d: &mut Decision, e: &SlmError) {
        metrics::counter!("triage_slm_calls_total", "kind" => e.kind()).increment(1);
        tracing::debug!(id = %d.id, error = %e, "SLM call failed; publishing the fast label");
        d.reason = format!("{}; {e}", d.reason);
        d.route = Route::Degraded;
    }

    fn apply_second_opinion(&self, d: &mut Decision, head: &[f32]) {
        let labels = self.model.labels();
        let fast: Vec<f32> = labels.iter().map(|l| d.probabilities[l]).collect();
        let (hb, &hc) = head
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        d.second_opinion = Some(Label {
            label: labels[hb].clone(),
            confidence: hc,
        });
        let combined: Vec<f32> = match self.slm.combine {
            Combine::Average => fast.iter().zip(head).map(|(a, b)| (a + b) / 2.0).collect(),
            Combine::Replace => head.to_vec(),
        };
        let (best, &conf) = combined
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap_or((0, &0.0));
        d.label = labels[best].clone();
        d.confidence = conf;
        d.probabilities = labels.iter().cloned().zip(combined).collect();
    }
}
