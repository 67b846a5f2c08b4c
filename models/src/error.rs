//! The crate's one error type.

use std::path::PathBuf;

/// Shorthand for `Result<T, ModelsError>`.
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running the models.
///
/// Each message says what to do next. [`ModelsError::needs_install`] tells a caller that the installation is
/// incomplete (so the second opinion should be switched off, not retried); [`ModelsError::retryable`] tells it that
/// trying the same call again may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// The ONNX Runtime shared library is not where we looked.
    #[error(
        "ONNX Runtime library not found at {path}: run scripts/install-models.sh, \
         or set ORT_DYLIB_PATH (or `runtime_path`) to libonnxruntime.so.1.31.1"
    )]
    RuntimeNotFound {
        /// Where we looked.
        path: PathBuf,
    },

    /// The library exists but could not be loaded, or is the wrong version.
    #[error(
        "could not load ONNX Runtime from {path}: {reason}. It must be ONNX Runtime 1.31.x for this platform: \
         re-run scripts/install-models.sh or point ORT_DYLIB_PATH at the right file"
    )]
    RuntimeLoad {
        /// The library we tried.
        path: PathBuf,
        /// What the loader or ONNX Runtime said.
        reason: String,
    },

    /// A model file (or a directory of them) does not exist.
    #[error(
        "model file {path} is missing: run scripts/install-models.sh \
         (the models are looked for in $TRIAGE_CACHE, else in .cache/triage under the current \
         directory; or fix `encoder_dir` / `generator_dir` in the models config, or `[slm] \
         finetuned`: a fine-tuned model is made by `triage slm finetune`)"
    )]
    ModelMissing {
        /// The missing file or directory.
        path: PathBuf,
    },

    /// A model the user makes (a head, a fine-tuned model's directory) is not where it was named:
    /// no installer makes it.
    #[error("{path} is not {what}: {made_by} makes one")]
    NotMade {
        /// The path named.
        path: PathBuf,
        /// What it should have been ("a second-opinion head (no such file)").
        what: &'static str,
        /// The command that makes one.
        made_by: &'static str,
    },

    /// A model file exists but cannot be parsed or loaded.
    #[error(
        "model file {path} is corrupt: {reason}. Delete it and re-run scripts/install-models.sh"
    )]
    ModelCorrupt {
        /// The file that failed to load.
        path: PathBuf,
        /// What the parser or ONNX Runtime said.
        reason: String,
    },

    /// A model file does not have the sha256 pinned in the manifest.
    #[error(
        "model file {path} does not match the manifest (sha256 {actual}, expected {expected}): \
         it is corrupt or a different version. Delete it and re-run scripts/install-models.sh"
    )]
    ChecksumMismatch {
        /// The file that was hashed.
        path: PathBuf,
        /// The hash pinned in the manifest.
        expected: String,
        /// The hash of the file on disk.
        actual: String,
    },

    /// The checksum manifest cannot be read or has no entries for a model.
    #[error("checksum manifest {path}: {reason}")]
    Manifest {
        /// The manifest (or `<built-in>`).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A configuration value is invalid.
    #[error("invalid models configuration: {0}")]
    Config(String),

    /// The caller passed something the model cannot take (wrong dimension, empty label set, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// Tokenising or detokenising text failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// ONNX Runtime failed while running a loaded model.
    #[error("inference failed in the {model} model: {reason}")]
    Inference {
        /// Which model: `encoder`, `classifier` (fine-tuned) or `generator`.
        model: &'static str,
        /// What ONNX Runtime said.
        reason: String,
    },

    /// Training the classification head failed.
    #[error("training the classification head failed: {0}")]
    Training(String),

    /// Reading or writing a file failed (the cause is part of the message).
    #[error("I/O error on {}: {cause}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
}

impl ModelsError {
    /// True when the runtime or the model files need (re)installing with `scripts/install-models.sh`.
    pub fn needs_install(&self) -> bool {
        matches!(
            self,
            Self::RuntimeNotFound { .. }
                | Self::RuntimeLoad { .. }
                | Self::ModelMissing { .. }
                | Self::NotMade { .. }
                | Self::ModelCorrupt { .. }
                | Self::ChecksumMismatch { .. }
        )
    }

    /// True when the same call may succeed if tried again (a transient I/O error or a failed inference run, e.g.
    /// out of memory). Installation, configuration and input errors are not retryable.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Inference { .. } => true,
            Self::Io { cause, .. } => matches!(
                cause.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ResourceBusy
            ),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn generator(reason: impl std::fmt::Display) -> Self {
        Self::Inference {
            model: "generator",
            reason: reason.to_string(),
        }
    }
}

impl triage_core::Diagnose for ModelsError {
    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::Io { cause, .. } => Some(cause),
            _ => None,
        }
    }
    fn domain(&self) -> triage_core::ErrorDomain {
        use triage_core::ErrorDomain;
        match self {
            // Not installed (or damaged: re-install), or configured to look elsewhere: the
            // user's to fix, and the message says how. A failure while running is external.
            e if e.needs_install() => ErrorDomain::User,
            Self::Config(_) | Self::InvalidInput(_) => ErrorDomain::User,
            Self::Training(_) => ErrorDomain::Internal,
            _ => ErrorDomain::External,
        }
    }
    fn retry(&self) -> triage_core::RetryHint {
        if self.retryable() {
            triage_core::RetryHint::WithBackoff
        } else {
            triage_core::RetryHint::NoRetry
        }
    }
}
