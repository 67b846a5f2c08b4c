//! The real small language models behind the executor: the sentence encoder with a
//! classification head (second opinion) and the chat generator (drafted replies), from
//! `triage-models`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use triage_models::{ChatMessage, Encoder, GenerateOptions, Generator, Head, ModelsConfig};

use crate::RouterError;
use crate::executor::{ExecutorConfig, SlmBackend};

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

/// How the second opinion changes the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Average the fast and second-opinion probabilities (the better rule on every data set
    /// measured; see docs/cascade.md).
    #[default]
    Average,
    /// Take the second opinion's probabilities.
    Replace,
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

/// Fault injection, for testing that failures degrade instead of stalling. Off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Share of calls that fail (0..=1).
    pub error_share: f64,
    /// Share of calls that hang past the executor's timeout (0..=1).
    pub timeout_share: f64,
}

/// The `[slm]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlmConfig {
    /// `auto`, `on` or `off`.
    pub mode: SlmMode,
    /// Where the runtime and the models are, threads, device.
    pub models: ModelsConfig,
    /// The second-opinion head (from `triage slm train-head`). Unset: the head shipped for the
    /// built-in default model.
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

/// Encoder + head + generator.
pub struct ModelsBackend {
    encoder: Encoder,
    head: Head,
    /// `columns[i]` is the head column of the fast model's label `i`.
    columns: Vec<usize>,
    generator: Option<Generator>,
    generate: GenerateConfig,
}

impl ModelsBackend {
    /// Loads the encoder, the head and (if `with_generator`) the generator. The head's labels
    /// must be the fast model's labels.
    pub fn load(
        models: &ModelsConfig,
        head: Head,
        fast_labels: &[String],
        with_generator: bool,
        generate: GenerateConfig,
    ) -> Result<Self, RouterError> {
        let columns = fast_labels
            .iter()
            .map(|l| {
                head.labels().iter().position(|h| h == l).ok_or_else(|| {
                    RouterError::Config(format!(
                        "the second-opinion head has no label {l:?} (it has {}); train one for this \
                         model with `triage slm train-head`",
                        head.labels().join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoder =
            Encoder::from_config(models).map_err(|e| RouterError::Models(e.to_string()))?;
        let generator = if with_generator {
            Some(Generator::from_config(models).map_err(|e| RouterError::Models(e.to_string()))?)
        } else {
            None
        };
        Ok(Self {
            encoder,
            head,
            columns,
            generator,
            generate,
        })
    }
}

impl SlmBackend for ModelsBackend {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let x = self.encoder.embed(texts).map_err(|e| e.to_string())?;
        let p = self.head.predict_proba(&x).map_err(|e| e.to_string())?;
        Ok(p.rows()
            .into_iter()
            .map(|row| self.columns.iter().map(|&c| row[c]).collect())
            .collect())
    }

    fn generate(&self, text: &str, label: &str) -> Result<String, String> {
        let generator = self
            .generator
            .as_ref()
            .ok_or("no generator loaded (no generative labels configured)")?;
        let system = self
            .generate
            .per_label
            .get(label)
            .unwrap_or(&self.generate.system);
        let opts = GenerateOptions {
            max_new_tokens: self.generate.max_new_tokens,
            temperature: self.generate.temperature,
            seed: self.generate.seed,
            repetition_penalty: self.generate.repetition_penalty,
            stop_strings: self.generate.stop.clone(),
            ..GenerateOptions::default()
        };
        let out = generator
            .chat(
                &[ChatMessage::system(system.clone()), ChatMessage::user(text)],
                &opts,
            )
            .map_err(|e| e.to_string())?;
        Ok(out.text.trim().to_string())
    }
}

/// Wraps a backend and makes a share of its calls fail or hang (deterministically).
pub struct FaultyBackend<B> {
    inner: B,
    fault: FaultConfig,
    /// How long a hanging second opinion and a hanging reply take.
    hang: (Duration, Duration),
    calls: AtomicU64,
}

impl<B> FaultyBackend<B> {
    /// Hanging calls last `hang.0` (second opinions) or `hang.1` (replies): longer than the
    /// executor's timeouts.
    pub fn new(inner: B, fault: FaultConfig, hang: (Duration, Duration)) -> Self {
        Self {
            inner,
            fault,
            hang,
            calls: AtomicU64::new(0),
        }
    }

    /// A deterministic draw in [0, 1) per call.
    fn draw(&self) -> f64 {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let h = (n ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn inject(&self, hang: Duration) -> Result<(), String> {
        let d = self.draw();
        if d < self.fault.error_share {
            return Err("injected fault".into());
        }
        if d < self.fault.error_share + self.fault.timeout_share {
            std::thread::sleep(hang);
        }
        Ok(())
    }
}

impl<B: SlmBackend> SlmBackend for FaultyBackend<B> {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.inject(self.hang.0)?;
        self.inner.second_opinion(texts)
    }
    fn generate(&self, text: &str, label: &str) -> Result<String, String> {
        self.inject(self.hang.1)?;
        self.inner.generate(text, label)
    }
}

impl<B: SlmBackend + ?Sized> SlmBackend for Box<B> {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        (**self).second_opinion(texts)
    }
    fn generate(&self, text: &str, label: &str) -> Result<String, String> {
        (**self).generate(text, label)
    }
}
