//! The small-language-model stage: the models behind an executor that runs them off the async
//! workers (dedicated threads, dynamic batching, timeouts) with an admission stage in front
//! (when the SLM is saturated, the most urgent calls first). The router decides who asks it;
//! [`crate::Processor::resolve`] asks it.

pub mod admission;
pub mod backend;
pub mod executor;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triage_classifier::Model;
use triage_core::config::{PolicyConfig, SlmConfig, SlmMode};
use triage_models::SecondOpinion;

pub use backend::{FaultyBackend, ModelsBackend};
pub use executor::{BackendError, Executor, SlmBackend, SlmError, SlmRequest, SlmResponse};

use crate::error::{Result, ServiceError};

/// The SLM stage: the executor, or why there is none.
pub struct SlmStage {
    pub(crate) executor: Option<Executor>,
    pub(crate) unavailable: String,
}

impl SlmStage {
    /// No SLM: its routes degrade with this reason.
    pub fn disabled(reason: impl Into<String>) -> Self {
        Self {
            executor: None,
            unavailable: reason.into(),
        }
    }

    /// A stage over any backend (tests use stand-ins; the service uses [`ModelsBackend`]).
    pub fn with_backend(backend: Arc<dyn SlmBackend>, config: &SlmConfig) -> Result<Self> {
        Ok(Self {
            executor: Some(Executor::start(backend, config.executor.clone())?),
            unavailable: String::new(),
        })
    }

    /// Builds the stage from the `[slm]` section for this model and policy: loads the second
    /// opinion ([`SecondOpinion::load`]) and, when the policy has generative labels, the generator. In `auto` mode a
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
        // What the configuration gets wrong is refused in every mode: `auto` degrades for models
        // not installed, not for a setting no executor runs with or a file the user named and
        // mistyped.
        config.executor.validate().map_err(ServiceError::Config)?;
        config.generate.validate().map_err(ServiceError::Config)?;
        if let Some(label) = config
            .generate
            .per_label
            .keys()
            .find(|l| !model.labels().contains(l))
        {
            return Err(ServiceError::Config(format!(
                "slm.generate.per_label names {label:?}, which the model does not have (it has {})",
                model.labels().join(", ")
            )));
        }
        for (key, path, made_by) in [
            ("slm.head", &config.head, "triage slm train-head"),
            ("slm.finetuned", &config.finetuned, "triage slm finetune"),
        ] {
            if let Some(p) = path {
                let at = root.join(p);
                if !at.exists() {
                    return Err(ServiceError::Config(format!(
                        "{key} {} does not exist{} (`{made_by}` makes one)",
                        p.display(),
                        if p.is_relative() {
                            format!(" (relative to {})", root.display())
                        } else {
                            String::new()
                        }
                    )));
                }
            }
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
        let t0 = Instant::now();
        let second = SecondOpinion::load(config, root, model.labels(), model.is_default())?;
        let kind = second.model.kind();
        let backend = ModelsBackend::load(
            &models,
            second,
            !policy.generative.is_empty(),
            config.generate.clone(),
        )?;
        tracing::info!(
            seconds = t0.elapsed().as_secs_f64(),
            second_opinion = kind,
            "small language models loaded"
        );
        let fault = &config.fault;
        let backend: Arc<dyn SlmBackend> =
            if fault.error_share > 0.0 || fault.timeout_share > 0.0 || fault.delay_ms > 0 {
                tracing::warn!(?fault, "SLM fault injection is ON");
                let past = |ms: u64| Duration::from_millis(ms + ms / 2 + 50);
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
}
