//! # triage-eval
//!
//! Offline work on labelled data, the numbers behind every choice triage makes:
//! - [`train`]: a fast model from a labelled file, with provenance and dev metrics;
//! - [`evaluate`]: accuracy, macro-F1, per-class scores, confusion, coverage;
//! - [`tune`]: settings chosen on train/dev only (dev split or k-fold cross-validation);
//! - [`score`]: the fast and second-opinion probabilities of a labelled set, as they are or out
//!   of fold;
//! - [`cascade`]: the stream routed offline by the service's own router and budget, the cascade
//!   table, and threshold calibration for a budget or a target accuracy;
//! - [`deferral`]: learning which messages the second opinion should see;
//! - [`embed`]: sentence embeddings cached on disk;
//! - [`head`]: the frozen second opinion's head, trained on embeddings;
//! - [`report`]: the HTML report with its SVG charts;
//! - [`bench`](mod@bench): single-thread classify throughput.
//!
//! ```
//! use triage_classifier::{Example, Model, TrainConfig};
//! use triage_core::NoProgress;
//!
//! let ex = |t: &str, l: &str| Example { id: None, text: t.into(), label: l.into() };
//! let data: Vec<Example> = (0..20)
//!     .flat_map(|i| [ex(&format!("love it {i}"), "pos"), ex(&format!("hate it {i}"), "neg")])
//!     .collect();
//! let mut config = TrainConfig::default();
//! config.tfidf.min_df = 1;
//! let model = Model::train(&data, &config, &mut NoProgress).unwrap();
//! let e = triage_eval::evaluate::evaluate(&model, &data, &mut NoProgress);
//! assert_eq!(e.report.accuracy, 1.0);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod calibrate;
pub mod cascade;
pub mod deferral;
pub mod distill;
pub mod embed;
pub mod error;
pub mod evaluate;
pub mod finetune;
pub mod head;
pub mod report;
pub mod score;
pub mod train;
pub mod tune;

pub use error::{EvalError, Result};
