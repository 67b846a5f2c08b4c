//! The evaluation library's one error type.

use std::path::PathBuf;

use triage_core::error::CoreError;
use triage_core::{Diagnose, ErrorDomain, RetryHint};

/// Errors of offline work on labelled data.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A setting or an argument is invalid.
    #[error("{0}")]
    Invalid(String),

    /// Reading a file or the configuration failed.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// The classifier failed (training data, model file...).
    #[error(transparent)]
    Classifier(#[from] triage_classifier::ClassifierError),

    /// The routing policy is invalid.
    #[error(transparent)]
    Router(#[from] triage_router::RouterError),

    /// The small language models failed (loading or inference).
    /// (Its message is part of this one's, not a `source()`, so that a report of the chain
    /// does not print it twice.)
    #[error("small language models: {0}")]
    Models(triage_models::ModelsError),

    /// A file could not be written (the cause is part of the message).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },

    /// The report could not be drawn.
    #[error("report: {0}")]
    Report(String),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

impl Diagnose for EvalError {
    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            EvalError::Io { cause, .. } => Some(cause),
            EvalError::Core(e) => e.io_error(),
            EvalError::Classifier(e) => e.io_error(),
            EvalError::Models(e) => e.io_error(),
            _ => None,
        }
    }
    fn domain(&self) -> ErrorDomain {
        match self {
            EvalError::Invalid(_) => ErrorDomain::User,
            EvalError::Core(e) => e.domain(),
            EvalError::Classifier(e) => e.domain(),
            EvalError::Router(e) => e.domain(),
            EvalError::Models(e) => e.domain(),
            EvalError::Io { .. } => ErrorDomain::External,
            EvalError::Report(_) => ErrorDomain::Internal,
        }
    }
    fn retry(&self) -> RetryHint {
        match self {
            EvalError::Models(e) => e.retry(),
            EvalError::Io { cause, .. } => triage_core::error::io_retry(cause),
            _ => RetryHint::NoRetry,
        }
    }
}

/// Shorthand.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl From<triage_models::ModelsError> for EvalError {
    fn from(e: triage_models::ModelsError) -> Self {
        Self::Models(e)
    }
}
