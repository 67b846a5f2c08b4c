//! Labelled datasets: JSONL with `text` and `label` (and usually `id`).

use std::path::Path;

use serde::Deserialize;

use crate::error::Result;

/// One labelled message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Example {
    /// Optional id.
    #[serde(default)]
    pub id: Option<String>,
    /// The message text.
    pub text: String,
    /// Its label.
    pub label: String,
}

/// Reads a JSONL dataset. Every line must be an object with string `text` and `label`; the
/// first bad line is an error naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    Ok(triage_core::jsonl::read(
        path,
        "{\"text\": string, \"label\": string}",
    )?)
}
