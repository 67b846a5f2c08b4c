//! The classifier's one error type.

use std::path::PathBuf;

use triage_core::{Diagnose, ErrorDomain, RetryHint};

/// Everything that can go wrong while analysing, training, saving or loading a model.
///
/// Messages say what happened and, where the user can do something about it, what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The training data cannot train a model (too few rows or classes, unknown labels...).
    #[error("invalid training data: {0}")]
    Data(String),

    /// A dataset file could not be read or parsed.
    #[error(transparent)]
    Dataset(#[from] triage_core::error::CoreError),

    /// The fit would need more memory than the machine (or its container) has free; the message
    /// gives the estimate and settings that need less.
    #[error("not enough memory: {0}")]
    Memory(String),

    /// The optimiser failed (not "did not converge": that is reported in the training summary).
    #[error("optimisation failed: {0}")]
    Optimiser(String),

    /// The model file is not a triage model, has an unsupported version, or is damaged.
    #[error("model file {path}: {reason}")]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// An I/O error with the path it concerns (the cause is part of the message).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
}

impl ClassifierError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn model_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::ModelFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl Diagnose for ClassifierError {
    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            ClassifierError::Io { cause, .. } => Some(cause),
            ClassifierError::Dataset(e) => e.io_error(),
            _ => None,
        }
    }
    fn domain(&self) -> ErrorDomain {
        match self {
            ClassifierError::Config(_) | ClassifierError::Data(_) | ClassifierError::Memory(_) => {
                ErrorDomain::User
            }
            ClassifierError::Dataset(e) => e.domain(),
            ClassifierError::ModelFile { .. } | ClassifierError::Io { .. } => ErrorDomain::External,
            ClassifierError::Optimiser(_) => ErrorDomain::Internal,
        }
    }
    fn retry(&self) -> RetryHint {
        match self {
            ClassifierError::Io { cause, .. } => triage_core::error::io_retry(cause),
            ClassifierError::Dataset(e) => e.retry(),
            _ => RetryHint::NoRetry,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = ClassifierError> = std::result::Result<T, E>;
