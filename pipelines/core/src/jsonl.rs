//! JSONL files: one JSON value per line, blank lines skipped. Every data set, message log and
//! decision file of triage is one.

use std::io::{BufRead, Read};
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

/// The first two bytes of a gzip file (RFC 1952).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The byte order marks of UTF-16, little- and big-endian: what Windows PowerShell 5's `>` and
/// `Out-File` write by default, and Notepad's "Unicode".
const UTF16_BOMS: [[u8; 2]; 2] = [[0xff, 0xfe], [0xfe, 0xff]];

/// `input` as UTF-8 text, by its first bytes: a gzip stream decompressed (every member: `cat a.gz
/// b.gz` is one input), UTF-16 with a byte order mark transcoded to UTF-8 (inside a gzip stream
/// too), anything else passed on as it is (its first two bytes read here and given back; the
/// rest read straight from `input`). Every reader of logs, data sets and stdin goes through it,
/// so that a log compressed or saved by Windows reads as the plain one instead of becoming one
/// dead letter, or one wrong label, per line.
///
/// ```
/// use std::io::Read;
///
/// let utf16: Vec<u8> = [0xff, 0xfe].into_iter()
///     .chain("{\"text\": \"héllo\"}\n".encode_utf16().flat_map(u16::to_le_bytes))
///     .collect();
/// let mut text = String::new();
/// triage_core::jsonl::decoded(&utf16[..]).unwrap().read_to_string(&mut text).unwrap();
/// assert_eq!(text, "{\"text\": \"héllo\"}\n");
/// ```
pub fn decoded<'a>(input: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let (head, input) = head(input)?;
    if head.get_ref()[..] == GZIP_MAGIC {
        let gunzipped = flate2::read::MultiGzDecoder::new(head.chain(input));
        let (head, gunzipped) = self::head(gunzipped)?;
        return Ok(text(head, gunzipped));
    }
    Ok(text(head, input))
}

/// The first two bytes of `input` (fewer where it is shorter), and `input` after them.
fn head<R: Read>(mut input: R) -> std::io::Result<(std::io::Cursor<Vec<u8>>, R)> {
    let (mut head, mut got) = ([0u8; 2], 0);
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((std::io::Cursor::new(head[..got].to_vec()), input))
}

/// `head` then `rest`, transcoded from UTF-16 where `head` is its byte order mark.
fn text<'a>(head: std::io::Cursor<Vec<u8>>, rest: impl Read + 'a) -> Box<dyn Read + 'a> {
    let utf16 = UTF16_BOMS.iter().any(|bom| head.get_ref()[..] == bom[..]);
    let whole = head.chain(rest);
    if utf16 {
        // The builder's default: a byte order mark picks the encoding and is dropped.
        Box::new(encoding_rs_io::DecodeReaderBytesBuilder::new().build(whole))
    } else {
        Box::new(whole)
    }
}

/// A file, or standard input for `-`.
fn open(path: &Path) -> std::io::Result<Box<dyn Read>> {
    if path == Path::new("-") {
        Ok(Box::new(std::io::stdin()))
    } else {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// Reads every non-blank line of `path` (`-`: standard input) as a `T`; the first line that is not one is an error
/// naming the file, the line and `expected` (e.g. `{"text": string, "label": string}`).
pub fn read<T: DeserializeOwned>(path: &Path, expected: &str) -> Result<Vec<T>, CoreError> {
    let input = open(path)
        .and_then(decoded)
        .map_err(|e| CoreError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(input).split(b'\n').enumerate() {
        let line = line.map_err(|e| CoreError::io(path, e))?;
        let line = utf8_line(&line).map_err(|reason| CoreError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        })?;
        let line = if i == 0 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
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

/// A line's text without its `\r\n` or `\n`, or why it has none (the bytes are not UTF-8:
/// say, a Latin-1 export, which the rest of the file need not be).
fn utf8_line(bytes: &[u8]) -> Result<&str, String> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))
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
/// fields ignored); `-` reads standard input.
pub fn read_texts(path: &Path, other: OtherLines) -> Result<Texts, CoreError> {
    let mut raw = Vec::new();
    open(path)
        .and_then(decoded)
        .and_then(|mut input| input.read_to_end(&mut raw))
        .map_err(|e| CoreError::io(path, e))?;
    let raw = raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&raw);
    let mut out = Texts::default();
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line = match utf8_line(line) {
            Ok(line) => line,
            Err(why) => {
                out.skipped.push((i + 1, why));
                continue;
            }
        };
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
        // Every line skipped (a Latin-1 export): say why, not only that nothing was there.
        if let Some((line, why)) = out.skipped.first() {
            return Err(CoreError::Line {
                path: path.to_path_buf(),
                line: *line,
                reason: format!(
                    "{why}; no line holds a message ({} skipped)",
                    out.skipped.len()
                ),
            });
        }
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

    /// A line that is not UTF-8 (a Latin-1 `é`) is skipped and counted by `read_texts`, and named
    /// by its number in `read`'s error: both had failed on the whole file, with no line named.
    #[test]
    fn a_line_that_is_not_utf8_is_named_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.jsonl");
        std::fs::write(
            &path,
            b"{\"text\":\"caf\xe9 terrible\",\"label\":\"a\"}\r\n{\"text\":\"ok fine\",\"label\":\"b\"}\r\n",
        )
        .unwrap();
        let t = read_texts(&path, OtherLines::Skip).unwrap();
        assert_eq!(t.texts, ["ok fine"]);
        assert_eq!(t.skipped.len(), 1);
        assert_eq!(t.skipped[0].0, 1);
        assert!(t.skipped[0].1.contains("not UTF-8"), "{:?}", t.skipped);
        let err = read::<serde_json::Value>(&path, "JSON")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1:") && err.contains("not UTF-8"), "{err}");
    }

    /// Data sets are read as replay reads logs: gzip, UTF-16 (here big-endian, compressed), and
    /// inputs too short to hold a mark.
    #[test]
    fn a_compressed_utf16_data_set_reads_as_the_plain_one() {
        use std::io::Write as _;
        let text =
            "{\"text\": \"ça va\", \"label\": \"ok\"}\n\n{\"text\": \"non\", \"label\": \"no\"}\n";
        let utf16: Vec<u8> = [0xfe, 0xff]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&utf16).unwrap();
        let dir = std::env::temp_dir().join(format!("triage-jsonl-packed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (plain, packed) = (dir.join("plain.jsonl"), dir.join("packed.bin"));
        std::fs::write(&plain, text).unwrap();
        std::fs::write(&packed, gz.finish().unwrap()).unwrap();
        let a: Vec<serde_json::Value> = read(&plain, "an object").unwrap();
        let b: Vec<serde_json::Value> = read(&packed, "an object").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
        assert_eq!(
            read_texts(&packed, OtherLines::Skip).unwrap().texts,
            ["ça va", "non"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
        for short in [&b""[..], b"x", b"\xff"] {
            let mut out = Vec::new();
            decoded(short).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, short);
        }
    }

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
