//! # triage-classifier
//!
//! The fast path of triage: short messages in, labels with probabilities out, in about a
//! microsecond per message on one core.
//!
//! The pipeline has one module per stage:
//! - [`tokenize`]: lower-case, NFKC (with an ASCII fast path), word tokens that keep emoji,
//!   URLs, @mentions, numbers and non-Latin scripts;
//! - [`analyzer`]: optional Snowball stemming, word n-grams and character n-grams inside word
//!   boundaries, hashed into two feature blocks;
//! - [`model`]: TF-IDF with the IDF frozen at fit (sublinear tf, per-block L2 norm, `min_df`,
//!   `max_features`) and multinomial logistic regression; its settings (`model::config`),
//!   training (`model::trainer`) and versioned file (`model::serialization`) each have a module;
//! - [`logistic`]: the L2-regularised softmax objective of linfa-logistic over a sparse matrix,
//!   minimised by [`lbfgs`], L-BFGS with its vector algebra in place;
//! - [`metrics`]: accuracy, macro-F1, per-class scores, confusion and coverage tables.
//!
//! ```
//! use triage_classifier::{Example, Model, NoProgress, TrainConfig};
//!
//! let ex = |text: &str, label: &str| Example { id: None, text: text.into(), label: label.into() };
//! let data = vec![
//!     ex("thank you so much, this is great", "positive"),
//!     ex("love it, great work", "positive"),
//!     ex("this is awful, I hate it", "negative"),
//!     ex("terrible service, hate this", "negative"),
//! ];
//! let mut config = TrainConfig::default();
//! config.tfidf.min_df = 1;
//! let model = Model::train(&data, &config, &mut NoProgress).unwrap();
//! let p = model.predict("great, thank you!");
//! assert_eq!(p.label, "positive");
//! assert!(p.confidence > 0.5);
//! ```
// Unsafe code, allowed where it is: the calls of the scoring kernels compiled for AVX2 and
// AVX-512, picked at run time (model/mod.rs), and the prefetch hint of the int8 table's rows
// (model/scoring.rs).
// (The training sweep compiled for AVX2 trained no faster: it is bound by memory.)
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod analyzer;
pub mod data;
pub mod error;
pub mod lbfgs;
pub mod logistic;
pub mod metrics;
pub mod model;
pub mod tokenize;

pub use analyzer::{Analyzer, AnalyzerConfig, Scratch, StemLanguage};
pub use data::{Example, read_jsonl};
pub use error::{ClassifierError, Result};
pub use logistic::{ClassWeight, FitReport, LogisticConfig};
pub use metrics::{ClassMetrics, CoverageRow, EvalReport};
pub use model::{
    DEFAULT_MODEL, FORMAT_VERSION, Model, ModelHeader, Prediction, TfidfConfig, TrainConfig,
    TrainingInfo, WeightFormat,
};
/// Training reports its progress through these (from `triage-core`).
pub use triage_core::{NoProgress, Progress};
