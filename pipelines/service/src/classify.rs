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
///
/// A line that cannot be classified (a JSON object without a string text field or with an empty
/// one, bytes that are not UTF-8) gets, in its place, a record with its line number and why, named as a replay's
/// dead letters name it (`{"line":27,"error":"missing_text","reason":"…"}`), and the lines after
/// it are classified as usual. Returns how many lines got such a record.
pub fn classify_lines(
    model: &Model,
    mut input: impl BufRead,
    mut output: impl Write,
    text_field: &str,
) -> Result<u64> {
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
    let mut refused = 0u64;
    let io = |what: &str, e: std::io::Error| ServiceError::io(what, e);
    for i in 1u64.. {
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
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(e) => {
                let err = DecodeError::NotUtf8(e.valid_up_to());
                refused += 1;
                write_refused(&mut out, i, &err);
                output.write_all(&out).map_err(|e| io("<stdout>", e))?;
                continue;
            }
        };
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
            Err(e) => {
                refused += 1;
                write_refused(&mut out, i, e);
                output.write_all(&out).map_err(|e| io("<stdout>", e))?;
                continue;
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
    output.flush().map_err(|e| io("<stdout>", e))?;
    Ok(refused)
}

/// Writes into `out` (cleared) the record of line `line`, which `err` kept from being classified.
fn write_refused(out: &mut Vec<u8>, line: u64, err: &DecodeError) {
    out.clear();
    out.extend_from_slice(format!("{{\"line\":{line},\"error\":").as_bytes());
    write_json_str(out, err.kind());
    out.extend_from_slice(b",\"reason\":");
    write_json_str(out, &err.to_string());
    out.extend_from_slice(b"}\n");
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
    }

    /// A line without text, or not UTF-8, gets a record that says why in its place, and the
    /// lines after it are classified.
    #[test]
    fn a_line_that_cannot_be_classified_gets_a_record_in_its_place() {
        let model = Model::default_model();
        let mut input = b"{\"id\":\"a\",\"text\":\"thanks!\"}\n{\"text\":5}\n".to_vec();
        input.extend_from_slice(b"{\"id\":\"b\",\"body\":\"wrong field\"}\n\xff\xfe bytes\n\n");
        input.extend_from_slice(b"{\"id\":\"e\",\"text\":\" \"}\n");
        input.extend_from_slice(b"{\"id\":\"c\",\"text\":\"still here\"}\n");
        let mut out = Vec::new();
        let refused = classify_lines(&model, &input[..], &mut out, "text").unwrap();
        assert_eq!(refused, 4);
        let recs: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 6, "{recs:?}");
        assert_eq!(recs[0]["id"], "a");
        let want = [
            (2, "wrong_type"),
            (3, "missing_text"),
            (4, "not_utf8"),
            (6, "empty_text"),
        ];
        for (r, (line, kind)) in recs[1..5].iter().zip(want) {
            assert_eq!(r["line"], line, "{r}");
            assert_eq!(r["error"], kind, "{r}");
            assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
            assert!(r.get("label").is_none(), "{r}");
        }
        assert_eq!(recs[5]["id"], "c");
        assert!(recs[5]["label"].is_string());
    }
}
