//! Error domains and retry hints, in the manner of arroyo's errors: every error type of triage
//! says whose problem it is and whether trying again can help, and one place acts on that (the
//! binary's exit code, the service's retry loop).

/// Whose problem an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDomain {
    /// The user's input: a command-line argument, a configuration value, a data file's content.
    /// Fix it and run again (the binary exits with code 2).
    User,
    /// Something outside triage: a file system, the broker, the ONNX Runtime, a model file
    /// (the binary exits with code 1).
    External,
    /// A bug in triage (the binary exits with code 1 and says so).
    Internal,
}

/// Whether the failed operation may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// Trying again gives the same error.
    NoRetry,
    /// Trying again later may work (a broker that is down, a timeout).
    WithBackoff,
}

/// The retry hint of an I/O error: transient kinds (interrupted, would block, timed out, busy)
/// may succeed later; a missing file or a refused permission will not.
pub fn io_retry(e: &std::io::Error) -> RetryHint {
    use std::io::ErrorKind::*;
    match e.kind() {
        Interrupted | WouldBlock | TimedOut | ResourceBusy => RetryHint::WithBackoff,
        _ => RetryHint::NoRetry,
    }
}

/// What every error type of triage answers.
pub trait Diagnose {
    /// Whose problem it is.
    fn domain(&self) -> ErrorDomain;
    /// Whether trying again can help.
    fn retry(&self) -> RetryHint {
        RetryHint::NoRetry
    }
    /// The I/O error underneath, if it is one (a write to a pipe nobody reads any more is the
    /// binary's exit 141, not a failure).
    fn io_error(&self) -> Option<&std::io::Error> {
        None
    }
}

/// The errors of this crate: loading the configuration and reading files.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The configuration is invalid: fix it and restart.
    #[error("configuration: {0}")]
    Config(String),

    /// A file could not be read. (The cause is part of the message, not a `source()`, so
    /// that a report of the whole chain does not print it twice.)
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        cause: std::io::Error,
    },

    /// A line of a JSONL file is not what the reader expects.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A JSONL file holds nothing to read.
    #[error("{} holds no {what}", path.display())]
    Empty {
        /// The file.
        path: std::path::PathBuf,
        /// What it should have held.
        what: &'static str,
    },

    /// An output path names one of the command's inputs ([`crate::paths::refuse_overwriting`]).
    #[error(
        "{output} {} is the {input} file ({}): writing it would destroy what {input} holds; \
         give another path",
        path.display(),
        input_path.display()
    )]
    Overwrite {
        /// The output's option (`--out`).
        output: String,
        /// The output's path.
        path: std::path::PathBuf,
        /// The input's option (`--data`).
        input: String,
        /// The input's path.
        input_path: std::path::PathBuf,
    },

    /// Two output paths name one file ([`crate::paths::refuse_overwriting`]).
    #[error(
        "{first} and {second} name one file ({}): one would write over the other; give another \
         path",
        path.display()
    )]
    SameOutput {
        /// The first output's option.
        first: String,
        /// The second output's option.
        second: String,
        /// The second output's path.
        path: std::path::PathBuf,
    },

    /// An output's directory is a file ([`crate::paths::refuse_overwriting`]).
    #[error("{output} {}: {} is not a directory", path.display(), parent.display())]
    OutputParentNotDirectory {
        /// The output's option (`--out`).
        output: String,
        /// The output's path.
        path: std::path::PathBuf,
        /// The part of the path that is a file.
        parent: std::path::PathBuf,
    },

    /// An output that is a file names a directory ([`crate::paths::refuse_overwriting`]).
    #[error("{output} {} is a directory; the output is a file: name one inside it", path.display())]
    OutputIsDirectory {
        /// The output's option (`--out`).
        output: String,
        /// The output's path.
        path: std::path::PathBuf,
    },
}

impl CoreError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}

impl Diagnose for CoreError {
    fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            CoreError::Io { cause, .. } => Some(cause),
            _ => None,
        }
    }
    fn domain(&self) -> ErrorDomain {
        match self {
            CoreError::Io { .. } => ErrorDomain::External,
            CoreError::Config(_)
            | CoreError::Line { .. }
            | CoreError::Empty { .. }
            | CoreError::Overwrite { .. }
            | CoreError::SameOutput { .. }
            | CoreError::OutputIsDirectory { .. }
            | CoreError::OutputParentNotDirectory { .. } => ErrorDomain::User,
        }
    }
    fn retry(&self) -> RetryHint {
        match self {
            CoreError::Io { cause, .. } => io_retry(cause),
            _ => RetryHint::NoRetry,
        }
    }
}
