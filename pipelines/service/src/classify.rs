//! `triage classify`: lines in (JSON objects with a text field, or plain text), one JSON record
//! per line out with the label, its confidence and every label's probability. The fast model
//! only: no routing, no SLM. Numbers are written as decision records write them
//! ([`crate::record`]: at most 4 decimals).

use std::io::{BufRead, Read, Write};

use triage_classifier::{Model, Scratch};
use triage_core::argmax;
use triage_core::message::{DecodeError, InputConfig, decode_text, write_json_str};

use crate::error::{Result, ServiceError};
use crate::record::{PROBABILITY_DECIMALS, quoted_labels, write_decimal};

/// Classifies every non-blank line of `input` into `output`. A line that is a JSON object must
/// have a string `config.text_field` (its `config.id_field` is kept, as a string); any other line
/// is the text itself.
///
/// A line that cannot be classified (longer than `config.max_message_bytes`, a JSON object
/// without a string text field or with an empty one, a line that opens as a JSON object (`{"`)
/// but is not valid JSON, bytes that are not UTF-8) gets, in its place,
/// a record with its line number and why, named as a replay's dead letters name it
/// (`{"line":27,"error":"missing_text","reason":"…"}`), and the lines after it are classified as
/// usual. Returns how many lines got such a record. A line over the limit is skipped as it is read,
/// never held whole: memory stays bounded whatever the input (a 300 MB line had taken 12 GB).
/// Gzip and UTF-16 input is decoded first ([`triage_core::jsonl::decoded`]).
pub fn classify_lines(
    model: &Model,
    input: impl Read,
    mut output: impl Write,
    config: &InputConfig,
) -> Result<u64> {
    let io = |what: &str, e: std::io::Error| ServiceError::io(what, e);
    let mut input = std::io::BufReader::with_capacity(
        1 << 16,
        triage_core::jsonl::decoded(input).map_err(|e| io("<stdin>", e))?,
    );
    let labels = model.labels();
    let (quoted, sorted) = quoted_labels(labels);
    let max = config.max_message_bytes;
    let mut scratch = Scratch::default();
    let mut probs = Vec::new();
    let (mut line, mut out) = (Vec::new(), Vec::new());
    let mut refused = 0u64;
    for i in 1u64.. {
        line.clear();
        // At most the limit and a `\r\n`: a longer line is not read into memory.
        let room = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(2);
        if Read::take(&mut input, room)
            .read_until(b'\n', &mut line)
            .map_err(|e| io("<stdin>", e))?
            == 0
        {
            break;
        }
        if !line.ends_with(b"\n") && line.len() as u64 == room {
            let rest = input.skip_until(b'\n').map_err(|e| io("<stdin>", e))?;
            let err = DecodeError::TooLarge {
                size: line.len() + rest.saturating_sub(1),
                max,
            };
            refused += 1;
            write_refused(&mut out, i, &err);
            output.write_all(&out).map_err(|e| io("<stdout>", e))?;
            continue;
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
        let msg = decode_text(text.as_bytes(), config, || {
            has_id = false;
            String::new()
        });
        let (id, text) = match &msg {
            Ok(m) => (has_id.then_some(&*m.id), &*m.text),
            Err(DecodeError::NotJson(_)) if looks_like_an_object(text) => {
                // Meant as JSON (`{"id":"a","text":"unterminated`, a lone surrogate escape):
                // classifying the raw line as text would label it and lose its id unnoticed.
                refused += 1;
                write_refused(&mut out, i, msg.as_ref().unwrap_err());
                output.write_all(&out).map_err(|e| io("<stdout>", e))?;
                continue;
            }
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

/// Whether a line was meant as a JSON object: `{` and then, after any spaces, a key's `"` or the
/// closing `}`. Plain text that opens with a brace (`{sigh} ok`) is still text.
fn looks_like_an_object(line: &str) -> bool {
    line.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with(['"', '}']))
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
        classify_lines(&model, input.as_bytes(), &mut out, &InputConfig::default()).unwrap();
        let recs = records(&out);
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

    /// The JSON records of `classify_lines`'s output.
    fn records(out: &[u8]) -> Vec<serde_json::Value> {
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    /// A line without text, or not UTF-8, or over the size limit, gets a record that says why in
    /// its place, and the lines after it are classified.
    #[test]
    fn a_line_that_cannot_be_classified_gets_a_record_in_its_place() {
        let model = Model::default_model();
        let mut input = b"{\"id\":\"a\",\"text\":\"thanks!\"}\n{\"text\":5}\n".to_vec();
        input.extend_from_slice(b"{\"id\":\"b\",\"body\":\"wrong field\"}\n\xff\xfe bytes\n\n");
        input.extend_from_slice(b"{\"id\":\"e\",\"text\":\" \"}\n");
        // 1,000 bytes of plain text over a 100-byte limit, then 101 and 100 (with a \r\n).
        for n in [1000, 101] {
            input.extend(std::iter::repeat_n(b'w', n));
            input.push(b'\n');
        }
        input.extend(std::iter::repeat_n(b'z', 100));
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(b"{\"id\":\"c\",\"text\":\"still here\"}\n");
        let config = InputConfig {
            max_message_bytes: 100,
            ..InputConfig::default()
        };
        let mut out = Vec::new();
        let refused = classify_lines(&model, &input[..], &mut out, &config).unwrap();
        assert_eq!(refused, 6);
        let recs = records(&out);
        assert_eq!(recs.len(), 9, "{recs:?}");
        assert_eq!(recs[0]["id"], "a");
        let want = [
            (2, "wrong_type"),
            (3, "missing_text"),
            (4, "not_utf8"),
            (6, "empty_text"),
            (7, "too_large"),
            (8, "too_large"),
        ];
        for (r, (line, kind)) in recs[1..7].iter().zip(want) {
            assert_eq!(r["line"], line, "{r}");
            assert_eq!(r["error"], kind, "{r}");
            assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
            assert!(r.get("label").is_none(), "{r}");
        }
        for (r, size) in recs[5..7].iter().zip([1000, 101]) {
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.starts_with(&format!("message is {size} bytes")),
                "{r}"
            );
        }
        assert!(
            recs[7]["label"].is_string(),
            "100 bytes and a \\r\\n are within the limit"
        );
        assert_eq!(recs[8]["id"], "c");
        assert!(recs[8]["label"].is_string());
    }

    /// A line that opens as a JSON object but is not JSON gets a `not_json` record, as a replay
    /// dead-letters it; it had been classified as text, its id lost. Text that opens with a brace
    /// is still text.
    #[test]
    fn broken_json_is_refused_and_braced_text_is_classified() {
        let model = Model::default_model();
        let input = concat!(
            "{\"id\":\"a\",\"text\":\"\\ud800 hi\"}\n",
            "{\"id\":\"c\",\"text\":\"unterminated\n",
            "  { \"text\": 1e400 }\n",
            "{sigh} thanks anyway\n",
            "{}\n",
            "{ not json at all }\n",
        );
        let mut out = Vec::new();
        let refused =
            classify_lines(&model, input.as_bytes(), &mut out, &InputConfig::default()).unwrap();
        let recs = records(&out);
        assert_eq!(refused, 4, "{recs:?}");
        for (r, line) in recs[..3].iter().zip(1..) {
            assert_eq!(r["line"], line, "{r}");
            assert_eq!(r["error"], "not_json", "{r}");
        }
        assert!(recs[3]["label"].is_string(), "{}", recs[3]);
        assert_eq!(recs[4]["error"], "missing_text", "{}", recs[4]);
        assert!(recs[5]["label"].is_string(), "{}", recs[5]);
    }
}
