//! Where an error ends: its exit code, derived from the error's domain ([`Diagnose`]), never by
//! guessing at its type.
//!
//! 0 success; 1 a runtime failure (I/O, broker, model) or a bug; 2 a usage or configuration
//! error; 3 a quality gate failed (`eval --min-accuracy`, `--min-macro-f1`); 128 + the signal's
//! number when a signal stopped the work early (`replay`: 130 for SIGINT, 143 for SIGTERM); 141
//! (128 + SIGPIPE), quietly, when the reader of the output went away (`triage replay --output - |
//! head`), as for a tool that SIGPIPE ends.

use std::process::ExitCode;

use triage_core::{Diagnose, ErrorDomain, RetryHint};

/// The exit code of a process that SIGPIPE ended: 128 + 13.
const OUTPUT_CLOSED: u8 = 141;

/// `println!` and `eprintln!` panic when their stream is a pipe whose reader went away (`triage
/// eval | head -1`: a backtrace and exit 101). Such a panic now ends the process quietly with 141,
/// as SIGPIPE ends a C tool; any other panic goes to the default hook. (Rust ignores SIGPIPE so
/// that a socket's closed peer is an error, not the process's end: `triage run` needs that.)
pub fn exit_quietly_when_output_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.starts_with("failed printing to std")
            && (message.contains("Broken pipe") || message.contains("os error 32"))
        {
            std::process::exit(OUTPUT_CLOSED.into());
        }
        default(info);
    }));
}

/// A command's failure.
pub enum Failure {
    /// An error, with whose problem it is.
    Error {
        /// User: exit 2; External, Internal: exit 1.
        domain: ErrorDomain,
        /// Whether running again later may succeed (said on stderr).
        retry: RetryHint,
        /// What to print.
        error: anyhow::Error,
    },
    /// A quality gate failed: exit 3.
    Gate(String),
    /// Stopped early by this signal, what was done kept: exit 128 + the signal.
    Interrupted(i32),
    /// The output was a pipe whose reader went away (`| head`): nothing to say, exit 141.
    OutputClosed,
}

impl<E: Diagnose + std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        // `--out -` or `--output -` into `| head`: the reader went away, as SIGPIPE would say.
        if e.io_error()
            .is_some_and(|c| c.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return Failure::OutputClosed;
        }
        Failure::Error {
            domain: e.domain(),
            retry: e.retry(),
            error: e.into(),
        }
    }
}

impl Failure {
    /// A usage error (a bad argument): exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure::Error {
            domain: ErrorDomain::User,
            retry: RetryHint::NoRetry,
            error: error.into(),
        }
    }

    /// A failure of something outside triage (stdin, stdout, a file): exit 1.
    pub fn external(error: impl Into<anyhow::Error>) -> Self {
        Failure::Error {
            domain: ErrorDomain::External,
            retry: RetryHint::NoRetry,
            error: error.into(),
        }
    }

    /// Prints the failure and returns its exit code.
    pub fn report(self) -> ExitCode {
        let later = " (this may succeed if run again later)";
        match self {
            Failure::Error {
                domain: ErrorDomain::User,
                error,
                ..
            } => {
                eprintln!("error: {error:#}");
                ExitCode::from(2)
            }
            Failure::Error {
                domain: ErrorDomain::External,
                error,
                retry,
            } => {
                let hint = if retry == RetryHint::WithBackoff {
                    later
                } else {
                    ""
                };
                eprintln!("error: {error:#}{hint}");
                ExitCode::from(1)
            }
            Failure::Error {
                domain: ErrorDomain::Internal,
                error,
                ..
            } => {
                eprintln!("internal error (a bug in triage; please report it): {error:#}");
                ExitCode::from(1)
            }
            Failure::Gate(msg) => {
                eprintln!("quality gate failed: {msg}");
                ExitCode::from(3)
            }
            Failure::Interrupted(signal) => {
                eprintln!("stopped by signal {signal}");
                ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
            }
            Failure::OutputClosed => ExitCode::from(OUTPUT_CLOSED),
        }
    }
}

/// A command's result.
pub type CmdResult = Result<(), Failure>;
