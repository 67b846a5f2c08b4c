//! The `[slm]` section: the small language models, how they run, and fault injection.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::models::ModelsConfig;
use super::router::Combine;

/// Whether to use the small language models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SlmMode {
    /// Use them when installed; otherwise SLM routes are published as `degraded`, with a
    /// warning at start.
    #[default]
    Auto,
    /// Require them: refuse to start without them.
    On,
    /// Never use them: SLM routes are published as `degraded`.
    Off,
}

/// Drafted replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateConfig {
    /// The system prompt.
    pub system: String,
    /// A system prompt per label, overriding `system`.
    pub per_label: BTreeMap<String, String>,
    /// Most tokens in a reply.
    pub max_new_tokens: usize,
    /// 0 decodes greedily (deterministic); above 0 samples.
    pub temperature: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Penalty on repeated tokens (1.0 = none).
    pub repetition_penalty: f32,
    /// Stop the reply at any of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            system:
                "You are a friendly customer-support agent. Reply to the customer's message in one \
                     or two short sentences: acknowledge the problem and say what happens next."
                    .into(),
            per_label: BTreeMap::new(),
            max_new_tokens: 48,
            temperature: 0.0,
            seed: 0,
            repetition_penalty: 1.2,
            stop: vec!["\n\n".into()],
        }
    }
}

impl GenerateConfig {
    /// Refuses the settings every drafted reply would fail or come out empty with.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "slm.generate.temperature must be 0 (greedy) or more, got {}",
                self.temperature
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(format!(
                "slm.generate.repetition_penalty must be above 0 (1.0: none), got {}",
                self.repetition_penalty
            ));
        }
        if self.max_new_tokens == 0 {
            return Err("slm.generate.max_new_tokens must be > 0".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(
                "slm.generate.stop has an empty string, which every reply would stop at (empty)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Fault injection, for testing that failures degrade instead of stalling. Off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Share of calls that fail (0..=1).
    pub error_share: f64,
    /// Share of calls that hang past the executor's timeout (0..=1).
    pub timeout_share: f64,
    /// Every model call (a batch of second opinions, or a reply) takes this many milliseconds
    /// more: a slow SLM, for overload tests.
    pub delay_ms: u64,
}

/// The `[slm]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlmConfig {
    /// `auto`, `on` or `off`.
    pub mode: SlmMode,
    /// Where the runtime and the models are, threads, device.
    pub models: ModelsConfig,
    /// A fine-tuned second opinion (a directory from `triage slm finetune`). It takes precedence
    /// over `head`.
    pub finetuned: Option<PathBuf>,
    /// The frozen second opinion's head (from `triage slm train-head`), on the sentence encoder.
    /// With neither set, the built-in default model gets its shipped fine-tuned second opinion
    /// (or, when that is not installed, its shipped head); any other model needs one of the two.
    pub head: Option<PathBuf>,
    /// How the second opinion is used.
    pub combine: Combine,
    /// Threads, batching, timeout, concurrency.
    pub executor: ExecutorConfig,
    /// Drafted replies.
    pub generate: GenerateConfig,
    /// Fault injection (tests only).
    pub fault: FaultConfig,
}

/// Which second opinions a saturated SLM serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// The most urgent first: second opinions wait a short window in a queue
    /// ranked by the router's urgency (1 − confidence, or the learned deferral score); the SLM
    /// takes the most urgent as it frees up, and the rest are published `over_budget` at once.
    #[default]
    Urgency,
    /// First come, first served (triage's behaviour before the admission stage, kept for
    /// comparison): every call waits its turn within its timeout, then is published `degraded`.
    Arrival,
}

/// Executor settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Worker threads running the models (each call may itself use several ONNX Runtime threads).
    pub threads: usize,
    /// Most second opinions per model call.
    pub max_batch: usize,
    /// How long a worker waits for more second opinions to fill a batch, in milliseconds.
    pub max_wait_ms: u64,
    /// Per-call timeout for second opinions (queueing included), in milliseconds. Past it the
    /// message is `degraded`.
    pub timeout_ms: u64,
    /// Per-call timeout for drafted replies (queueing included), in milliseconds: generation
    /// takes hundreds of milliseconds per reply on a CPU.
    pub generate_timeout_ms: u64,
    /// `urgency` (the most urgent second opinions first, the rest `over_budget` after a short
    /// window) or `arrival` (first come, first served, `degraded` after the timeout).
    pub admission: Admission,
    /// `urgency`: how long a second opinion may wait for the SLM, in milliseconds; one not taken
    /// by then is published `over_budget` (fast label). The executor lengthens it to two model
    /// calls' time (measured) when that is longer, so that the SLM chooses among every message
    /// that arrived since it last chose. Longer windows choose among more messages, and delay
    /// the shed ones by as much.
    pub admission_window_ms: u64,
    /// `urgency`: most second opinions waiting; a more urgent one pushes the least urgent out
    /// (`over_budget`), a less urgent one is `over_budget` at once. `arrival`: not used (every
    /// call waits its turn within its timeout).
    pub max_concurrency: usize,
    /// `urgency`: most drafted replies waiting (first come, first served); one more is
    /// `over_budget` at once. A reply that waited its turn and then failed or timed out is
    /// `degraded`. `arrival`: not used.
    pub max_waiting_replies: usize,
}

impl ExecutorConfig {
    /// Refuses the settings no executor can run with (a count or a window of 0).
    pub fn validate(&self) -> Result<(), String> {
        let zero: Vec<&str> = [
            ("threads", self.threads as u64),
            ("max_batch", self.max_batch as u64),
            ("max_concurrency", self.max_concurrency as u64),
            ("max_waiting_replies", self.max_waiting_replies as u64),
            ("admission_window_ms", self.admission_window_ms),
        ]
        .into_iter()
        .filter(|&(_, v)| v == 0)
        .map(|(name, _)| name)
        .collect();
        if zero.is_empty() {
            Ok(())
        } else {
            Err(format!("slm.executor {} must be > 0", zero.join(", ")))
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            max_batch: 32,
            max_wait_ms: 5,
            timeout_ms: 5_000,
            generate_timeout_ms: 30_000,
            admission: Admission::Urgency,
            admission_window_ms: 50,
            max_concurrency: 256,
            max_waiting_replies: 16,
        }
    }
}
