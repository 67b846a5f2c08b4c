//! The `[router]` and `[budget]` sections and the combine rule: the settings of the routing
//! policy (`triage-router` applies them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Confidence below which a prediction asks for a second opinion, unless the label has its
    /// own threshold. 0 turns second opinions off.
    pub default_threshold: f32,
    /// Per-label thresholds, e.g. `{ neutral = 0.7 }`.
    pub thresholds: BTreeMap<String, f32>,
    /// Labels whose messages need a generated reply.
    pub generative: Vec<String>,
    /// Only draft a reply when the fast label is at least this confident (below it, a second
    /// opinion is asked first).
    pub generate_min_confidence: f32,
    /// A learned deferral model (JSON, from `triage calibrate --deferral`). With it, a message
    /// asks for a second opinion when its deferral score reaches `deferral_threshold`, instead
    /// of when its confidence is below its threshold.
    pub deferral: Option<std::path::PathBuf>,
    /// The deferral score from which a message asks for a second opinion (0..=1).
    pub deferral_threshold: f32,
    /// A label for messages that none of the others fits (CLINC150's `oos`, a help desk's
    /// `other`). A message whose fast confidence is below `out_of_scope_below` gets it, on the
    /// fast path: no label is sure enough, and a second opinion on which in-scope label it is
    /// would be spent on a message that has none. `None`: off.
    pub out_of_scope_label: Option<String>,
    /// The fast confidence below which a message gets `out_of_scope_label` (0..=1; 0: never).
    /// `triage calibrate` chooses it on the calibration data.
    pub out_of_scope_below: f32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default_threshold: 0.5,
            thresholds: BTreeMap::new(),
            generative: Vec::new(),
            generate_min_confidence: 0.0,
            deferral: None,
            deferral_threshold: 0.5,
            out_of_scope_label: None,
            out_of_scope_below: 0.0,
        }
    }
}

/// Budget settings: a token bucket counted in messages. Every message adds `max_share` of a
/// token (up to `burst`), and every SLM call takes one, so over every prefix of `n` messages at
/// most `max_share · n + burst` use the SLM, from the first message on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Largest share of messages that may use the SLM (0..=1).
    pub max_share: f64,
    /// SLM calls the bucket holds: how far the SLM may run ahead of `max_share` in a burst (the
    /// bucket starts full).
    pub burst: u32,
    /// Largest SLM calls per second (a second token bucket, in wall-clock time); none means no
    /// rate limit.
    pub max_per_second: Option<f64>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            max_share: 0.15,
            burst: 5,
            max_per_second: None,
        }
    }
}

/// How the second opinion changes the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Average the fast and second-opinion probabilities (the better rule on every data set
    /// measured; see docs/cascade.md).
    #[default]
    Average,
    /// Take the second opinion's probabilities.
    Replace,
}
