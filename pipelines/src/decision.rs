//! One processing path for every source: a [`Message`] in, a [`Decision`] out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use triage_classifier::{Model, Scratch};
use triage_router::{Budget, BudgetConfig, Policy, PolicyConfig, Route};

use crate::error::Result;
use crate::message::Message;

/// The result record published for every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The input message's id.
    pub id: String,
    /// The published label.
    pub label: String,
    /// Its confidence.
    pub confidence: f32,
    /// The fast classifier's probability for every label.
    pub probabilities: BTreeMap<String, f32>,
    /// Which route the message took.
    pub route: Route,
    /// Why.
    pub reason: String,
    /// The fast classifier's model version (first 12 hex digits of its SHA-256).
    pub model_version: String,
    /// Time spent, in microseconds.
    pub timings_us: Timings,
    /// The input's other fields, unchanged.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
}

/// Time spent on a message, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Analyse + vectorise + predict.
    pub classify: f64,
}

/// Classifier + policy + budget: the shared processing path.
pub struct Processor {
    model: Arc<Model>,
    policy: Policy,
    budget: Mutex<Budget>,
}

impl Processor {
    /// Builds a processor, checking that the policy only names labels the model has.
    pub fn new(model: Arc<Model>, policy: PolicyConfig, budget: BudgetConfig) -> Result<Self> {
        let policy = Policy::new(policy)?;
        policy.check_labels(model.labels())?;
        Ok(Self {
            model,
            policy,
            budget: Mutex::new(Budget::new(budget)?),
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Classifies a message and decides its route. `scratch` and `probs` are the caller's reusable
    /// buffers.
    pub fn decide(&self, msg: Message, scratch: &mut Scratch, probs: &mut Vec<f32>) -> Decision {
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
            id: msg.id,
            label,
            confidence,
            probabilities: labels.iter().cloned().zip(probs.iter().copied()).collect(),
            route,
            reason,
            model_version: self.model.version().to_string(),
            timings_us: Timings { classify },
            fields: msg.fields,
        }
    }
}
