//! # triage-pipelines
//!
//! Sources, sinks and the `triage` binary. Replay (file in, file out) and Kafka share one
//! processing path ([`decision::Processor`]) and differ only in where messages come from and
//! where decisions go.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod decision;
pub mod error;
pub mod kafka;
pub mod message;
pub mod metrics;
pub mod progress;
pub mod replay;

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
