//! Labelled datasets: JSONL with `text` and `label` (and usually `id`).

use std::path::Path;

use serde::Deserialize;

use crate::error::Result;

/// One labelled message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Example {
    /// Optional id: a string, or a number (kept as its digits), as a message log's.
    #[serde(default, deserialize_with = "string_or_number")]
    pub id: Option<String>,
    /// The message text.
    pub text: String,
    /// Its label: not empty or blank.
    #[serde(deserialize_with = "non_blank")]
    pub label: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(D::Error::custom(format!(
            "the id must be a string or a number, not {other}"
        ))),
    }
}

fn non_blank<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let label = String::deserialize(d)?;
    if label.trim().is_empty() {
        return Err(serde::de::Error::custom("the label is empty"));
    }
    Ok(label)
}

/// Reads a JSONL dataset. Every line must be an object with string `text` and a non-blank
/// string `label`; the first bad line is an error naming the file and line. Labels that differ
/// only in case or surrounding spaces (`Positive`, ` positive`) are separate labels (`train` and
/// `tune` warn about them, with the other signs of a data mistake).
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    Ok(triage_core::jsonl::read(
        path,
        "{\"text\": string, \"label\": string}",
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_strings_or_numbers_and_labels_never_blank() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(
            &p,
            "{\"id\":5,\"text\":\"a\",\"label\":\"x\"}\n{\"id\":\"s\",\"text\":\"b\",\"label\":\"y\"}\n\
             {\"text\":\"c\",\"label\":\"y\",\"id\":null}\n",
        )
        .unwrap();
        let rows = read_jsonl(&p).unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.id.as_deref()).collect();
        assert_eq!(ids, [Some("5"), Some("s"), None]);
        std::fs::write(
            &p,
            "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\" \"}\n",
        )
        .unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(
            err.contains(":2:") && err.contains("the label is empty"),
            "{err}"
        );
        std::fs::write(&p, "{\"id\":[1],\"text\":\"a\",\"label\":\"x\"}\n").unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(err.contains("string or a number"), "{err}");
    }
}
