//! Input messages: bytes in, a [`Message`] or a [`DecodeError`] out. Replay and Kafka share it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How input payloads are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// The JSON field holding the text.
    pub text_field: String,
    /// The JSON field holding the message id; without it, an id is derived from the position
    /// (`line-N` in files, `topic/partition/offset` in Kafka).
    pub id_field: String,
    /// Payloads larger than this many bytes are dead-lettered before any parsing.
    pub max_message_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            id_field: "id".into(),
            max_message_bytes: 64 * 1024,
        }
    }
}

/// A decoded input message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its id: from the payload or derived from its position.
    pub id: String,
    /// The text to classify.
    pub text: String,
    /// The payload's other fields, kept for the output.
    pub fields: Map<String, Value>,
}

/// Why a payload could not be decoded. Each kind ends up in the dead-letter output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than `max_message_bytes`.
    #[error("message is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not valid UTF-8.
    #[error("message is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    /// Not JSON at all.
    #[error("message is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("message is JSON but not an object")]
    NotObject,
    /// The text field is absent.
    #[error("field {0:?} is missing")]
    MissingText(String),
    /// The text field is empty or only white space.
    #[error("field {0:?} is empty")]
    EmptyText(String),
    /// A field has the wrong JSON type.
    #[error("field {field:?} must be {expected}, found {found}")]
    WrongType {
        /// The field.
        field: String,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        found: &'static str,
    },
}

impl DecodeError {
    /// A stable, machine-readable name for the error kind (used in dead-letter records, headers
    /// and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8(_) => "not_utf8",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::NotObject => "not_object",
            DecodeError::MissingText(_) => "missing_text",
            DecodeError::EmptyText(_) => "empty_text",
            DecodeError::WrongType { .. } => "wrong_type",
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes one payload. `fallback_id` gives the id when the payload has none.
pub fn decode(
    bytes: &[u8],
    config: &InputConfig,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message, DecodeError> {
    if bytes.len() > config.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: config.max_message_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8(e.valid_up_to()))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(DecodeError::NotObject);
    };
    let text = match fields.remove(&config.text_field) {
        None => return Err(DecodeError::MissingText(config.text_field.clone())),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(DecodeError::WrongType {
                field: config.text_field.clone(),
                expected: "a string",
                found: type_name(&other),
            });
        }
    };
    if text.trim().is_empty() {
        return Err(DecodeError::EmptyText(config.text_field.clone()));
    }
    let id = match fields.remove(&config.id_field) {
        None | Some(Value::Null) => fallback_id(),
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(DecodeError::WrongType {
                field: config.id_field.clone(),
                expected: "a string or a number",
                found: type_name(&other),
            });
        }
    };
    Ok(Message { id, text, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<Message, DecodeError> {
        decode(bytes, &InputConfig::default(), || "pos-1".into())
    }

    #[test]
    fn decodes_and_keeps_other_fields() {
        let m = dec(br#"{"id":"a1","text":"hi there","user":"u9","n":3}"#).unwrap();
        assert_eq!(m.id, "a1");
        assert_eq!(m.text, "hi there");
        assert_eq!(m.fields["user"], "u9");
        assert_eq!(m.fields.len(), 2);
        let m = dec(br#"{"text":"no id"}"#).unwrap();
        assert_eq!(m.id, "pos-1");
        let m = dec(br#"{"id":42,"text":"numeric id"}"#).unwrap();
        assert_eq!(m.id, "42");
    }

    #[test]
    fn every_error_kind() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"\xff\xfe{}", "not_utf8"),
            (b"hello", "not_json"),
            (b"[1,2]", "not_object"),
            (br#"{"id":"x"}"#, "missing_text"),
            (br#"{"text":"   "}"#, "empty_text"),
            (br#"{"text":5}"#, "wrong_type"),
            (br#"{"text":"ok","id":[1]}"#, "wrong_type"),
        ];
        for (bytes, kind) in cases {
            assert_eq!(dec(bytes).unwrap_err().kind(), kind, "{bytes:?}");
        }
        let big = format!(r#"{{"text":"{}"}}"#, "a".repeat(70_000));
        assert_eq!(dec(big.as_bytes()).unwrap_err().kind(), "too_large");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = dec(&bytes);
        }
    }
}
