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

/// The texts over `max` bytes, the limit `replay`, `classify` and `run` apply
/// (`[input] max_message_bytes`): those dead-letter such a message (`too_large`) unclassified,
/// where `eval`, `bench` and `train` would take it. A warning to finish with what the caller does
/// with them; `None` where there are none. (A record is a little longer than its text, so a text
/// just under the limit may still be over it as a record: this counts those that are over for
/// certain.)
///
/// ```
/// use triage_eval::evaluate::over_limit;
///
/// let texts = ["short", &"x".repeat(100)];
/// let w = over_limit(texts.iter().map(|t| t.as_ref()), 64).unwrap();
/// assert!(w.starts_with("1 of 2 messages is longer than 64 bytes"), "{w}");
/// assert_eq!(over_limit(texts.iter().map(|t| t.as_ref()), 100), None);
/// ```
pub fn over_limit<'a>(texts: impl Iterator<Item = &'a str>, max: usize) -> Option<String> {
    let (mut n, mut over, mut longest) = (0usize, 0usize, 0usize);
    for t in texts {
        n += 1;
        if t.len() > max {
            over += 1;
            longest = longest.max(t.len());
        }
    }
    (over > 0).then(|| {
        format!(
            "{over} of {n} messages {} longer than {max} bytes (the longest {longest}), the limit \
             of replay, classify and run (`[input] max_message_bytes`), which dead-letter such a \
             message unclassified",
            if over == 1 { "is" } else { "are" }
        )
    })
}

/// The messages of `data` whose label is not one of the model's `labels`, as a warning (they
/// count as errors); `None` where there are none. Names a few of each side (the model's quoted:
/// a label may hold a comma), not all 711.
pub fn unknown_labels(labels: &[String], data: &[Example]) -> Option<String> {
    let known: std::collections::HashSet<&str> = labels.iter().map(String::as_str).collect();
    let mut unknown: Vec<&str> = data
        .iter()
        .map(|e| e.label.as_str())
        .filter(|l| !known.contains(l))
        .collect();
    if unknown.is_empty() {
        return None;
    }
    let messages = unknown.len();
    unknown.sort_unstable();
    unknown.dedup();
    const SHOWN: usize = 20;
    let quoted = |ls: &mut dyn Iterator<Item = &str>, n: usize| {
        ls.take(n)
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{messages} of {} messages have a label the model does not know ({} label{}: {}{}); they \
         count as errors. The model's {} labels: {}{}",
        data.len(),
        unknown.len(),
        if unknown.len() == 1 { "" } else { "s" },
        unknown
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", "),
        if unknown.len() > 5 { ", …" } else { "" },
        labels.len(),
        quoted(&mut labels.iter().map(String::as_str), SHOWN),
        if labels.len() > SHOWN {
            format!(", and {} more", labels.len() - SHOWN)
        } else {
            String::new()
        },
    ))
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
