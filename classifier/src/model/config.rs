//! Training settings: text analysis, term weighting and the solver.

use serde::{Deserialize, Serialize};

use crate::analyzer::AnalyzerConfig;
use crate::logistic::LogisticConfig;

/// TF-IDF settings. IDF is computed once, at fit, and frozen into the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TfidfConfig {
    /// Use `1 + ln(tf)` instead of raw counts.
    pub sublinear_tf: bool,
    /// Keep only features seen in at least this many training messages.
    pub min_df: u32,
    /// Keep at most this many features per block (word, char), the most frequent first.
    pub max_features: Option<usize>,
    /// L2-normalise each block's vector.
    pub l2_norm: bool,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        Self {
            sublinear_tf: true,
            min_df: 2,
            max_features: None,
            l2_norm: true,
        }
    }
}

/// Everything `train` needs besides the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Text analysis.
    pub analyzer: AnalyzerConfig,
    /// Term weighting.
    pub tfidf: TfidfConfig,
    /// The classifier.
    pub logistic: LogisticConfig,
}
