//! # triage-router
//!
//! The one routing policy. For each fast prediction it decides the route, and once the small
//! language model has answered (or not) what is published:
//! - a per-label confidence threshold: below it, ask a **second opinion**; or, with a learned
//!   [`Deferral`] model, a score of how likely the second opinion is to fix the label;
//! - **generative** labels: messages with these labels get a drafted reply (**generate**);
//! - a **budget**: at most a share of messages may use the SLM; beyond it the fast label is
//!   published as **over_budget**;
//! - an **out-of-scope floor**: a message whose fast confidence is below it gets the policy's
//!   out-of-scope label (CLINC150's `oos`) on the fast path, without a second opinion;
//! - the **combine** rule for a second opinion, and **degraded** (the fast label stands) when
//!   the SLM gave no usable answer, or **over_budget** when a saturated SLM [`Shed`] the message
//!   (the service ranks waiting messages by [`Routing::urgency`]).
//!
//! The service (`triage run`, `triage replay`) and the offline tools (`triage calibrate`,
//! `triage eval --cascade`) call the same [`Router`], so what is tuned is what runs. This crate
//! runs no model and does no I/O: the SLM is called by the service, between
//! [`Router::route`] and [`Router::settle`].
//!
//! ```
//! use triage_core::config::{BudgetConfig, Combine, PolicyConfig};
//! use triage_router::{Answer, Budget, Route, Router, Signals};
//!
//! let labels = vec!["complaint".to_string(), "praise".to_string()];
//! let mut policy = PolicyConfig::default();
//! policy.default_threshold = 0.6;
//! policy.generative = vec!["complaint".into()];
//! let router = Router::new(policy, Combine::Average, &labels).unwrap();
//! let mut budget = Budget::new(BudgetConfig::default()).unwrap();
//!
//! assert_eq!(router.route(&Signals::probs(&[0.05, 0.95]), &mut budget).route, Route::Fast);
//! assert_eq!(router.route(&Signals::probs(&[0.99, 0.01]), &mut budget).route, Route::Generate);
//! let unsure = router.route(&Signals::probs(&[0.45, 0.55]), &mut budget);
//! assert_eq!(unsure.route, Route::SecondOpinion);
//! let published = router.settle(unsure, &[0.45, 0.55], Answer::SecondOpinion(&[0.85, 0.15]));
//! assert_eq!(labels[published.label], "complaint");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod budget;
pub mod deferral;
mod policy;
mod routing;

pub use budget::Budget;
pub use deferral::{Deferral, Signals};
pub use policy::{Plan, Policy, Route};
pub use routing::{Answer, Outcome, Router, Routing, Shed};

use triage_core::{Diagnose, ErrorDomain};

/// The router's one error type.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A policy or budget setting is out of range, or names a label the model does not have.
    #[error("invalid router configuration: {0}")]
    Config(String),
}

impl Diagnose for RouterError {
    fn domain(&self) -> ErrorDomain {
        ErrorDomain::User
    }
}
