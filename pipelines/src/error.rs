//! The pipelines crate's one error type.

use std::path::PathBuf;

/// Errors of the I/O layer. Each says which domain failed and whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration is invalid; fix it and restart.
    #[error("configuration: {0}")]
    Config(String),

    /// The classifier failed (model file, training data...).
    #[error(transparent)]
    Classifier(#[from] triage_classifier::ClassifierError),

    /// The routing policy is invalid.
    #[error(transparent)]
    Router(#[from] triage_router::RouterError),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The evaluation report could not be drawn, or its input is inconsistent.
    #[error("report: {0}")]
    Report(String),

    /// Kafka failed; `retryable` says whether the same operation may succeed later.
    #[error("kafka: {message}")]
    Kafka {
        /// What failed.
        message: String,
        /// Whether retrying can help (broker down, timeouts) or not (bad config).
        retryable: bool,
    },
}

impl PipelineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the failed operation may succeed if retried.
    pub fn retryable(&self) -> bool {
        match self {
            PipelineError::Kafka { retryable, .. } => *retryable,
            PipelineError::Io { .. } => true,
            _ => false,
        }
    }
}

/// Shorthand.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
