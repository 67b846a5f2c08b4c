//! `triage slm train-head`: the frozen second opinion's head, a logistic regression on sentence
//! embeddings of labelled data.

use std::path::Path;

use triage_classifier::Example;
use triage_core::Progress;
use triage_models::{Encoder, Head, TrainOptions};

use crate::embed::embed_cached;
use crate::error::Result;

/// A trained head and its accuracy on its own training data.
pub struct TrainedHead {
    /// The head.
    pub head: Head,
    /// Training accuracy (a sanity check, not a held-out figure).
    pub train_accuracy: f64,
    /// Seconds spent embedding and training.
    pub embed_seconds: f64,
    /// Seconds spent training the head.
    pub train_seconds: f64,
}

/// Trains a head on `data` (labels: the sorted set of its labels), caching embeddings in
/// `cache`.
pub fn train_head(
    encoder: &Encoder,
    data: &[Example],
    cache: &Path,
    options: &TrainOptions,
    progress: &mut dyn Progress,
) -> Result<TrainedHead> {
    let mut labels: Vec<String> = data.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let y: Vec<usize> = data
        .iter()
        .map(|e| labels.binary_search(&e.label).unwrap_or(0))
        .collect();
    let texts: Vec<&str> = data.iter().map(|e| e.text.as_str()).collect();
    let t0 = std::time::Instant::now();
    let x = embed_cached(encoder, &texts, cache, progress)?;
    let embed_seconds = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let head = Head::train(&x, &y, &labels, options)?;
    let pred = head.predict(&x)?;
    let train_accuracy =
        pred.iter().zip(&y).filter(|(p, t)| p == t).count() as f64 / y.len().max(1) as f64;
    Ok(TrainedHead {
        head,
        train_accuracy,
        embed_seconds,
        train_seconds: t1.elapsed().as_secs_f64(),
    })
}
