//! # triage-pipelines
//!
//! Sources, sinks and the `triage` binary. Replay (file in, file out) and Kafka share one
//! processing path ([`decision::Processor`]) and differ only in where messages come from and
//! where decisions go.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cascade;
pub mod config;
pub mod decision;
pub mod error;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod progress;
pub mod replay;
pub mod report;

pub use error::{PipelineError, Result};

/// The default fast model, built into the binary: four sentiment categories (positive,
/// negative, ambiguous, neutral) trained on GoEmotions. See `models/default/MODEL_CARD.md`.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../models/default/sentiment4.triage");

/// Loads the built-in default model.
pub fn default_model() -> Result<triage_classifier::Model> {
    Ok(triage_classifier::Model::from_bytes(
        DEFAULT_MODEL,
        std::path::Path::new("<built-in default model>"),
    )?)
}

/// The second-opinion head shipped for the default model: a logistic regression on MiniLM
/// sentence embeddings of the same training data (`triage slm train-head`).
pub const DEFAULT_HEAD: &str = include_str!("../../models/default/sentiment4.head.json");

/// The SHA-256 of the built-in default model (from its checksum line).
pub fn default_model_sha256() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| {
        DEFAULT_MODEL
            .split(|&b| b == b'\n')
            .nth(1)
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.strip_prefix("sha256 "))
            .unwrap_or_default()
            .to_string()
    })
}
