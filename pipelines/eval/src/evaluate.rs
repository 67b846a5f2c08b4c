//! A fast model on labelled data: accuracy, macro-F1, per-class scores, confusion and coverage
//! tables, and each message's confidence and correctness (for the report's charts).

use triage_classifier::{EvalReport, Example, Model, Scratch};
use triage_core::{Progress, Unit, argmax};

/// An evaluation and its per-message figures, in data order.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The metrics.
    pub report: EvalReport,
    /// The confidence of each predicted label.
    pub confidences: Vec<f32>,
    /// Whether each prediction was right.
    pub correct: Vec<bool>,
}

/// The label index of each example (`labels.len()` for a label the model does not know, so that
/// it counts as an error).
pub fn truth(labels: &[String], data: &[Example]) -> Vec<usize> {
    data.iter()
        .map(|e| {
            labels
                .iter()
                .position(|l| *l == e.label)
                .unwrap_or(labels.len())
        })
        .collect()
}

/// The report of predictions `pred` against `truth` (which may hold the unknown index
/// `labels.len()`: then an `<unknown label>` class is added).
pub fn report(labels: &[String], truth: &[usize], pred: &[usize], conf: &[f32]) -> EvalReport {
    let mut all = labels.to_vec();
    if truth.iter().any(|&t| t >= labels.len()) {
        all.push("<unknown label>".into());
    }
    EvalReport::new(&all, truth, pred, conf)
}

/// Evaluates `model` on `data`.
pub fn evaluate(model: &Model, data: &[Example], progress: &mut dyn Progress) -> Evaluation {
    let labels = model.labels();
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let (mut pred, mut conf) = (
        Vec::with_capacity(data.len()),
        Vec::with_capacity(data.len()),
    );
    progress.phase("eval", Some(data.len() as u64), Unit::Messages);
    for ex in data {
        model.predict_into(&ex.text, &mut scratch, &mut probs);
        let (best, c) = argmax(&probs);
        pred.push(best);
        conf.push(c);
        progress.advance(1);
    }
    progress.finish_phase();
    let truth = truth(labels, data);
    let correct = truth.iter().zip(&pred).map(|(t, p)| t == p).collect();
    Evaluation {
        report: report(labels, &truth, &pred, &conf),
        confidences: conf,
        correct,
    }
}
