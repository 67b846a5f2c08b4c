//! `triage classify`: lines in (JSON objects with a text field, or plain text), one JSON record
//! per line out with the label, its confidence and every label's probability. The fast model
//! only: no routing, no SLM. Numbers are written as decision records write them
//! ([`crate::record`]: at most 4 decimals).

use std::io::{BufRead, Write};

use triage_classifier::{Model, Scratch};
use triage_core::argmax;
use triage_core::message::{DecodeError, InputConfig, decode_text, write_json_str};

use crate::error::{Result, ServiceError};
use crate::record::{PROBABILITY_DECIMALS, quoted_labels, write_decimal};

/// Classifies every non-blank line of `input` into `output`. A line that is a JSON object must
/// have a string `text_field` (its `id` is kept, as a string); any other line is the text itself.
pub fn classify_lines(
    model: &Model,
    mut input: impl BufRead,
    mut output: impl Write,
    text_field: &str,
) -> Result<()> {
    let labels = model.labels();
    let (quoted, sorted) = quoted_labels(labels);
    let config = InputConfig {
        text_field: text_field.to_string(),
        id_field: "id".into(),
        max_message_bytes: usize::MAX,
    };
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let (mut line, mut out) = (Vec::new(), Vec::new());
    let io = |what: &str, e: std::io::Error| ServiceError::io(what, e);
    for i in 1.. {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| io("<stdin>", e))?
            == 0
        {
            break;
        }
        let line = if i == 1 {
            triage_core::jsonl::strip_bom(&line)
        } else {
            &line
        };
        let text = std::str::from_utf8(line).map_err(|e| {
            ServiceError::Config(format!(
                "line {i}: not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let mut has_id = true;
        let msg = decode_text(text.as_bytes(), &config, || {
            has_id = false;
            String::new()
        });
        let (id, text) = match &msg {
            Ok(m) => (has_id.then_some(&*m.id), &*m.text),
            Err(DecodeError::NotJson(_) | DecodeError::NotObject) => (None, text),
            Err(DecodeError::EmptyText(_)) => (None, ""),
            Err(e) => {
                return Err(ServiceError::Config(format!(
                    "line {i}: JSON object without a string {text_field:?} field ({e})"
                )));
            }
        };
        model.predict_into(text, &mut scratch, &mut probs);
        let (label, confidence) = argmax(&probs);
        out.clear();
        out.push(b'{');
        if let Some(id) = id {
            out.extend_from_slice(b"\"id\":");
            write_json_str(&mut out, id);
            out.push(b',');
        }
        out.extend_from_slice(b"\"label\":");
        out.extend_from_slice(&quoted[label]);
        out.extend_from_slice(b",\"confidence\":");
        write_decimal(&mut out, f64::from(confidence), PROBABILITY_DECIMALS);
        out.extend_from_slice(b",\"probabilities\":{");
        for (n, &j) in sorted.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&quoted[j]);
            out.push(b':');
            write_decimal(&mut out, f64::from(probs[j]), PROBABILITY_DECIMALS);
        }
        out.extend_from_slice(b"}}\n");
        output.write_all(&out).map_err(|e| io("<stdout>", e))?;
    }
    output.flush().map_err(|e| io("<stdout>", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_plain_lines() {
        let model = Model::default_model();
        let input = "{\"id\":\"a\",\"text\":\"thanks so much!\"}\nplain text line\n\n{\"id\":3,\"text\":\"ok\"}\n";
        let mut out = Vec::new();
        classify_lines(&model, input.as_bytes(), &mut out, "text").unwrap();
        let recs: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 3, "the blank line is skipped");
        assert_eq!(recs[0]["id"], "a");
        assert!(recs[1].get("id").is_none());
        assert_eq!(recs[2]["id"], "3");
        for r in &recs {
            let p = r["probabilities"].as_object().unwrap();
            assert_eq!(p.len(), model.labels().len());
            let sum: f64 = p.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() <= 5e-5 * p.len() as f64, "{r}");
            assert_eq!(r["confidence"], p[r["label"].as_str().unwrap()]);
        }
        let mut out = Vec::new();
        let err = classify_lines(&model, "{\"text\":5}\n".as_bytes(), &mut out, "text");
        assert!(err.is_err());
    }
}
