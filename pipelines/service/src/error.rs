//! The service's one error type. Each variant reports its domain and retry hint
//! ([`triage_core::Diagnose`]), from which the binary derives its exit code.

use std::path::PathBuf;

use triage_core::error::CoreError;
use triage_core::{Diagnose, ErrorDomain, RetryHint};

/// Errors of the service: loading what it runs, reading and writing files, Kafka.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid; fix it and restart.
    #[error("configuration: {0}")]
    Config(String),

    /// Loading the configuration failed.
    #[error(transparent)]
    Core(#[from] CoreError),

    /// The classifier failed (model file, training data...).
    #[error(transparent)]
    Classifier(#[from] triage_classifier::ClassifierError),

    /// The routing policy is invalid.
    #[error(transparent)]
    Router(#[from] triage_router::RouterError),

    /// The small language models could not be loaded.
    /// (Its message is part of this one's, not a `source()`, so that a report of the chain
    /// does not print it twice.)
    #[error("small language models: {0}")]
    Models(triage_models::ModelsError),

    /// A file could not be read or written (the cause is part of the message).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },

    /// Kafka failed (a refused client setting is [`ServiceError::Config`] instead).
    #[error("kafka: {message}")]
    Kafka {
        /// What failed.
        message: String,
        /// Whether retrying can help (broker down, timeouts) or not.
        retryable: bool,
    },

    /// A bug: something that cannot happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

impl Diagnose for ServiceError {
    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            ServiceError::Io { cause, .. } => Some(cause),
            ServiceError::Core(e) => e.io_error(),
            ServiceError::Classifier(e) => e.io_error(),
            ServiceError::Models(e) => e.io_error(),
            _ => None,
        }
    }
    fn domain(&self) -> ErrorDomain {
        match self {
            ServiceError::Config(_) => ErrorDomain::User,
            ServiceError::Core(e) => e.domain(),
            ServiceError::Classifier(e) => e.domain(),
            ServiceError::Router(e) => e.domain(),
            ServiceError::Models(e) => e.domain(),
            ServiceError::Io { .. } | ServiceError::Kafka { .. } => ErrorDomain::External,
            ServiceError::Internal(_) => ErrorDomain::Internal,
        }
    }

    fn retry(&self) -> RetryHint {
        match self {
            ServiceError::Kafka {
                retryable: true, ..
            } => RetryHint::WithBackoff,
            ServiceError::Io { cause, .. } => triage_core::error::io_retry(cause),
            ServiceError::Models(e) => e.retry(),
            _ => RetryHint::NoRetry,
        }
    }
}

/// Shorthand.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl From<triage_models::ModelsError> for ServiceError {
    fn from(e: triage_models::ModelsError) -> Self {
        Self::Models(e)
    }
}
