//! `triage classify`: lines in (JSON objects with a text field, or plain text), one JSON record
//! per line out with the label, its confidence and every label's probability. The fast model
//! only: no routing, no SLM.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde_json::json;
use triage_classifier::{Model, Scratch};

use crate::error::{Result, ServiceError};

/// Classifies every non-blank line of `input` into `output`. A line that is a JSON object must
/// have a string `text_field` (its `id` is kept); any other line is the text itself.
pub fn classify_lines(
    model: &Model,
    input: impl BufRead,
    mut output: impl Write,
    text_field: &str,
) -> Result<()> {
    let labels = model.labels();
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let io = |what: &str, e: std::io::Error| ServiceError::io(what, e);
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| io("<stdin>", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, text) = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(obj)) => match obj.get(text_field) {
                Some(serde_json::Value::String(t)) => (obj.get("id").cloned(), t.clone()),
                _ => {
                    return Err(ServiceError::Config(format!(
                        "line {}: JSON object without a string {text_field:?} field",
                        i + 1
                    )));
                }
            },
            _ => (None, line.clone()),
        };
        model.predict_into(&text, &mut scratch, &mut probs);
        let p = model.prediction(&probs);
        let probabilities: BTreeMap<&str, f32> = labels
            .iter()
            .map(String::as_str)
            .zip(p.probabilities.iter().copied())
            .collect();
        let mut rec = json!({
            "label": p.label,
            "confidence": p.confidence,
            "probabilities": probabilities,
        });
        if let Some(id) = id {
            rec["id"] = id;
        }
        writeln!(output, "{rec}").map_err(|e| io("<stdout>", e))?;
    }
    output.flush().map_err(|e| io("<stdout>", e))
}
