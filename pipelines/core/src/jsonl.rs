//! JSONL files: one JSON value per line, blank lines skipped. Every data set, message log and
//! decision file of triage is one.

use std::io::BufRead;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::CoreError;

/// The UTF-8 byte order mark. Windows tools write one at the start of a file (PowerShell 5's
/// `Out-File -Encoding utf8`, Notepad before 2019), and RFC 8259 lets a parser ignore it: every
/// reader of a file drops it, or the file's first line would not be JSON.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a [`BOM`] at the start.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Reads every non-blank line of `path` as a `T`; the first line that is not one is an error
/// naming the file, the line and `expected` (e.g. `{"text": string, "label": string}`).
pub fn read<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<Vec<T>, CoreError> {
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CoreError::io(path, e))?;
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(&line)
        } else {
            &line
        };
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| CoreError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!("expected {expected}: {e}"),
        })?;
        out.push(value);
    }
    if out.is_empty() {
        return Err(CoreError::Empty {
            path: path.to_path_buf(),
            what: "lines",
        });
    }
    Ok(out)
}

/// The texts of a file of messages, and the lines that gave none.
#[derive(Debug, Default)]
pub struct Texts {
    /// The texts, in file order.
    pub texts: Vec<String>,
    /// Lines skipped: (1-based line number, why).
    pub skipped: Vec<(usize, String)>,
}

/// What to do with a line that is not a JSON object with a string `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherLines {
    /// Skip it (and list it in [`Texts::skipped`]): a message log's malformed lines.
    Skip,
    /// Take the whole line as the text: a file of plain lines.
    AsText,
}

/// The non-empty `text` fields of a JSONL file of messages (`{"text": ...}` per line; other
/// fields ignored).
pub fn read_texts(path: &Path, other: OtherLines) -> Result<Texts, CoreError> {
    let raw = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
    let mut out = Texts::default();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let text = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => match v.get("text").and_then(|t| t.as_str()) {
                Some(t) if !t.trim().is_empty() => Ok(t.to_owned()),
                _ => Err("no non-empty string \"text\" field".to_string()),
            },
            Err(e) => Err(format!("not JSON: {e}")),
        };
        match (text, other) {
            (Ok(t), _) => out.texts.push(t),
            (Err(_), OtherLines::AsText) => out.texts.push(line.to_owned()),
            (Err(why), OtherLines::Skip) => out.skipped.push((i + 1, why)),
        }
    }
    if out.texts.is_empty() {
        return Err(CoreError::Empty {
            path: path.to_path_buf(),
            what: "messages with a \"text\"",
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_skip_or_keep_other_lines() {
        let dir = std::env::temp_dir().join(format!("triage-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.jsonl");
        std::fs::write(
            &p,
            "{\"text\":\"a\"}\n\nnot json\n{\"id\":1}\n{\"text\":\"b\"}\n",
        )
        .unwrap();
        let t = read_texts(&p, OtherLines::Skip).unwrap();
        assert_eq!(t.texts, ["a", "b"]);
        assert_eq!(t.skipped.iter().map(|s| s.0).collect::<Vec<_>>(), [3, 4]);
        let t = read_texts(&p, OtherLines::AsText).unwrap();
        assert_eq!(t.texts, ["a", "not json", "{\"id\":1}", "b"]);
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            text: String,
        }
        let e = read::<T>(&p, "{\"text\": string}").err().unwrap();
        assert!(e.to_string().contains("m.jsonl:3: expected"), "{e}");
        // A byte order mark before the first line (a Windows tool's file) is not part of it.
        let b = dir.join("bom.jsonl");
        std::fs::write(&b, "\u{feff}{\"text\":\"a\"}\r\n{\"text\":\"b\"}\r\n").unwrap();
        assert_eq!(read_texts(&b, OtherLines::Skip).unwrap().texts, ["a", "b"]);
        let rows: Vec<T> = read(&b, "{\"text\": string}").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(strip_bom(b"\xEF\xBB\xBFx"), b"x");
        assert_eq!(strip_bom(b"x\xEF\xBB\xBF"), b"x\xEF\xBB\xBF");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
