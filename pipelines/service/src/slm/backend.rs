//! The real small language models behind the executor: the second opinion (a fine-tuned
//! classifier, or the sentence encoder with a head) and the chat generator (drafted replies), from
//! `triage-models`; and a wrapper that injects faults (failures, hangs, a slow model), for testing
//! that failures degrade and overload sheds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use triage_core::config::{FaultConfig, GenerateConfig, ModelsConfig};
use triage_models::{ChatMessage, GenerateOptions, Generator, Mapped};

use super::executor::{BackendError, SlmBackend};
use crate::error::ServiceError;

/// The second opinion (fine-tuned, or encoder + head) and the generator.
pub struct ModelsBackend {
    second: Mapped,
    generator: Option<Generator>,
    generate: GenerateConfig,
}

impl ModelsBackend {
    /// The second opinion, and (if `with_generator`) the generator of `models`.
    pub fn load(
        models: &ModelsConfig,
        second: Mapped,
        with_generator: bool,
        generate: GenerateConfig,
    ) -> Result<Self, ServiceError> {
        let generator = if with_generator {
            Some(Generator::from_config(models)?)
        } else {
            None
        };
        Ok(Self {
            second,
            generator,
            generate,
        })
    }
}

impl SlmBackend for ModelsBackend {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        let p = self.second.probabilities(texts)?;
        Ok(p.rows().into_iter().map(|row| row.to_vec()).collect())
    }

    fn generate(&self, text: &str, label: &str) -> Result<String, BackendError> {
        let generator = self.generator.as_ref().ok_or(BackendError::NoGenerator)?;
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
        let out = generator.chat(
            &[ChatMessage::system(system.clone()), ChatMessage::user(text)],
            &opts,
        )?;
        Ok(out.text.trim().to_string())
    }
}

/// Wraps a backend and makes a share of its calls fail or hang (deterministically), and every call
/// slower by `delay_ms`.
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

    fn inject(&self, hang: Duration) -> Result<(), BackendError> {
        if self.fault.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.fault.delay_ms));
        }
        let d = self.draw();
        if d < self.fault.error_share {
            return Err(BackendError::Injected);
        }
        if d < self.fault.error_share + self.fault.timeout_share {
            std::thread::sleep(hang);
        }
        Ok(())
    }
}

impl<B: SlmBackend> SlmBackend for FaultyBackend<B> {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        self.inject(self.hang.0)?;
        self.inner.second_opinion(texts)
    }
    fn generate(&self, text: &str, label: &str) -> Result<String, BackendError> {
        self.inject(self.hang.1)?;
        self.inner.generate(text, label)
    }
}

impl<B: SlmBackend + ?Sized> SlmBackend for Box<B> {
    fn second_opinion(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackendError> {
        (**self).second_opinion(texts)
    }
    fn generate(&self, text: &str, label: &str) -> Result<String, BackendError> {
        (**self).generate(text, label)
    }
}
