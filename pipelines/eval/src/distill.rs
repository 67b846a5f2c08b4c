//! Distillation, the labelling half: the second opinion labels messages nobody labelled, and
//! `triage train --distill` learns from those labels at a reduced weight
//! ([`crate::train::Distill`]). What the slow model knows flows back into the fast path, so
//! fewer messages need it (Online Cascade Learning, Nie et al., ICML 2024).

use std::io::Write;
use std::path::Path;

use triage_core::Progress;
use triage_core::argmax;

use crate::error::{EvalError, Result};
use crate::score::SecondOpinion;

/// What [`label`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// Rows written.
    pub rows: usize,
    /// Input lines skipped (no `text`).
    pub skipped: usize,
}

/// Labels every message of `input` (JSONL with `text`) with `second`'s top label and its
/// probability, in the fast model's label order (`labels`), and writes
/// `{"text", "label", "confidence", "probabilities"}` lines to `output` (the confidence and
/// every label's probability to four decimals, as `triage classify` writes them).
pub fn label(
    second: &SecondOpinion,
    labels: &[String],
    input: &Path,
    output: &Path,
    progress: &mut dyn Progress,
) -> Result<Labelled> {
    let texts = triage_core::jsonl::read_texts(input, triage_core::jsonl::OtherLines::Skip)?;
    let refs: Vec<&str> = texts.texts.iter().map(String::as_str).collect();
    let probs = second.probabilities(&refs, progress)?;
    triage_core::paths::write_file(output, |w| write_rows(w, labels, &texts.texts, &probs))
        .map_err(|e| EvalError::io(output, e))?;
    Ok(Labelled {
        rows: texts.texts.len(),
        skipped: texts.skipped.len(),
    })
}

fn write_rows(
    w: &mut dyn Write,
    labels: &[String],
    texts: &[String],
    probs: &ndarray::Array2<f32>,
) -> std::io::Result<()> {
    for (text, row) in texts.iter().zip(probs.rows()) {
        let row = row.to_vec();
        let (best, p) = argmax(&row);
        let probabilities: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .zip(&row)
            .map(|(l, &q)| (l.clone(), serde_json::json!(round4(q))))
            .collect();
        let line = serde_json::json!({
            "text": text,
            "label": labels[best],
            "confidence": round4(p),
            "probabilities": probabilities,
        });
        writeln!(w, "{line}")?;
    }
    Ok(())
}

/// `p` to four decimals, as the decision records write probabilities.
fn round4(p: f32) -> f64 {
    (f64::from(p) * 1e4).round() / 1e4
}
