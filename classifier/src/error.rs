//! The classifier's one error type.

use std::path::PathBuf;

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
    #[error("{path}:{line}: {reason}")]
    DatasetLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },

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

    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ClassifierError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn model_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::ModelFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = ClassifierError> = std::result::Result<T, E>;
