//! # triage-router
//!
//! The policy that decides, for each fast prediction, whether it is published as it is or
//! whether a small language model should look at it:
//! - a per-label confidence threshold: below it, ask a **second opinion**;
//! - **generative** labels: messages with these labels get a drafted reply;
//! - a **budget**: at most a share of messages may use the SLM; beyond it the fast label is
//!   published with the route `over_budget`.
//!
//! ```
//! use triage_router::{Policy, PolicyConfig, Route};
//!
//! let mut config = PolicyConfig::default();
//! config.default_threshold = 0.6;
//! config.generative = vec!["complaint".into()];
//! let policy = Policy::new(config).unwrap();
//! assert_eq!(policy.plan("praise", 0.95).route, Route::Fast);
//! assert_eq!(policy.plan("praise", 0.40).route, Route::SecondOpinion);
//! assert_eq!(policy.plan("complaint", 0.99).route, Route::Generate);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
mod budget;
pub mod executor;
mod policy;

pub use backend::{
    Combine, FaultConfig, FaultyBackend, GenerateConfig, ModelsBackend, SlmConfig, SlmMode,
};
pub use budget::{Budget, BudgetConfig};
pub use executor::{Executor, ExecutorConfig, SlmBackend, SlmError, SlmRequest, SlmResponse};
pub use policy::{Plan, Policy, PolicyConfig, Route};

/// The router's one error type.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A policy or budget setting is out of range.
    #[error("invalid router configuration: {0}")]
    Config(String),

    /// The small language models could not be loaded.
    #[error("small language models: {0}")]
    Models(String),
}
