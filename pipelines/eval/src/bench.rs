//! `triage bench`: single-thread classify throughput (analyse + vectorise + predict per message).

use std::time::Instant;

use serde::Serialize;
use triage_classifier::{Model, Scratch};

/// The best of `repeat` timed passes over `texts`, after one warm-up pass.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Messages per pass.
    pub messages: usize,
    /// The best pass, in seconds.
    pub seconds: f64,
    /// Messages per second in the best pass.
    pub msgs_per_sec: f64,
    /// Microseconds per message in the best pass.
    pub us_per_msg: f64,
    /// Mean distinct features per message (the rows scoring reads).
    pub features_per_message: f64,
    /// A sum of the first probability of every prediction, so that the work cannot be optimised
    /// away (and two builds can be checked to compute the same).
    pub checksum: f64,
}

/// Measures `model` on `texts`.
pub fn throughput(model: &Model, texts: &[String], repeat: usize) -> Throughput {
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let mut checksum = 0.0f64;
    let mut features = 0usize;
    for t in texts {
        model.predict_into(t, &mut scratch, &mut probs);
        features += model.distinct_features(&scratch);
    }
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        for t in texts {
            model.predict_into(t, &mut scratch, &mut probs);
            checksum += probs[0] as f64;
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let rate = texts.len() as f64 / best;
    Throughput {
        messages: texts.len(),
        seconds: best,
        msgs_per_sec: rate,
        us_per_msg: 1e6 / rate,
        features_per_message: features as f64 / texts.len().max(1) as f64,
        checksum,
    }
}
