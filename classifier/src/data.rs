//! Labelled datasets: JSONL with `text` and `label` (and usually `id`).

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ClassifierError, Result};

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
    let file = std::fs::File::open(path).map_err(|e| ClassifierError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| ClassifierError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let ex: Example =
            serde_json::from_str(&line).map_err(|e| ClassifierError::DatasetLine {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("expected {{\"text\": string, \"label\": string}}: {e}"),
            })?;
        out.push(ex);
    }
    if out.is_empty() {
        return Err(ClassifierError::Data(format!(
            "{} holds no examples",
            path.display()
        )));
    }
    Ok(out)
}

/// SHA-256 of a file, hex-encoded.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| ClassifierError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| ClassifierError::io(path, e))?;
    Ok(hex::encode(h.finalize()))
}
