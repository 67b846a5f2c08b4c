//! Input messages: bytes in, a [`Message`] or a [`DecodeError`] out. Replay and Kafka share it.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

impl InputConfig {
    /// Refuses settings that would dead-letter every message: a limit of 0 bytes, an empty
    /// text or id field name, or one name for both.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_bytes == 0 {
            return Err("input.max_message_bytes must be at least 1".into());
        }
        if self.text_field.is_empty() || self.id_field.is_empty() {
            return Err("input.text_field and input.id_field must not be empty".into());
        }
        if self.text_field == self.id_field {
            return Err(format!(
                "input.text_field and input.id_field are both \"{}\"",
                self.text_field
            ));
        }
        Ok(())
    }
}

/// A decoded input message. It borrows from the payload wherever it can: the text and the id
/// are copied only when they hold JSON escapes, and the other fields are kept as the raw JSON
/// they were written as, to be copied through to the output unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    /// Its id: from the payload or derived from its position.
    pub id: Cow<'a, str>,
    /// The text to classify.
    pub text: Cow<'a, str>,
    /// The payload's other fields, kept for the output.
    pub fields: Fields<'a>,
}

/// The payload's other fields, in their order of arrival, each value as the raw JSON text it
/// was written as (a key given twice keeps its last value, as a JSON object does).
#[derive(Debug, Clone, Default)]
pub struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl PartialEq for Fields<'_> {
    /// The same keys in the same order, with the same raw values.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((k, v), (l, w))| k == l && v.get() == w.get())
    }
}

impl<'a> Fields<'a> {
    /// How many fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw JSON value of a field.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Whether a field is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The fields and their raw values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// The fields parsed into a JSON map (for tests and tools; the pipeline copies them raw).
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| {
                let v = serde_json::from_str(v.get()).expect("a raw value is valid JSON");
                (k.to_string(), v)
            })
            .collect()
    }

    /// Writes the fields as the members of a JSON object (`"k":v,"k2":v2`, no braces): keys
    /// escaped, values as they came.
    pub fn write_members(&self, out: &mut Vec<u8>) {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_str(out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
    }

    /// The fields of an object's members: a key given twice keeps its place and its last value.
    /// A few members (nearly every payload) are compared pairwise; more are hashed, so that a
    /// payload of thousands of keys costs time in proportion to them (pairwise, 5,400 keys had
    /// taken 16 ms a message: a stream of such payloads would have held the service to 60
    /// messages a second).
    fn from_members(members: Vec<(Cow<'a, str>, &'a RawValue)>) -> Self {
        use std::collections::HashMap;
        use std::collections::hash_map::Entry;
        const PAIRWISE: usize = 16;
        let repeated = if members.len() <= PAIRWISE {
            members
                .iter()
                .enumerate()
                .any(|(i, (k, _))| members[..i].iter().any(|(j, _)| j == k))
        } else {
            let mut seen = std::collections::HashSet::with_capacity(members.len());
            !members.iter().all(|(k, _)| seen.insert(k.as_ref()))
        };
        if !repeated {
            return Self(members);
        }
        // Each key's first place and last value, by index.
        let mut place: HashMap<&str, usize> = HashMap::with_capacity(members.len());
        let mut keep: Vec<(usize, usize)> = Vec::with_capacity(members.len());
        for (i, (k, _)) in members.iter().enumerate() {
            match place.entry(k.as_ref()) {
                Entry::Occupied(e) => keep[*e.get()].1 = i,
                Entry::Vacant(e) => {
                    e.insert(keep.len());
                    keep.push((i, i));
                }
            }
        }
        Self(
            keep.into_iter()
                .map(|(first, last)| (members[first].0.clone(), members[last].1))
                .collect(),
        )
    }
}

/// Writes `s` as a JSON string (quoted, escaped as serde_json escapes it) to `out`.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // The common case, nothing to escape, is one copy; serde_json's escaper otherwise. The check
    // reads every byte without an early exit, so that it runs a vector of bytes at a time.
    let escape = s
        .bytes()
        .fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !escape {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
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

/// A string that borrows from the payload when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The value of the text or the id member, read as the payload is parsed: a string borrowed from
/// the payload when it has no escapes (so that it is not scanned twice), a number as serde_json
/// writes it, or the JSON type it had otherwise.
enum Field<'a> {
    Str(Cow<'a, str>),
    Number(String),
    Null,
    /// Any other value: its JSON type ("a boolean", "an array", "an object").
    Other(&'static str),
}

impl Field<'_> {
    /// The JSON type's name.
    fn type_name(&self) -> &'static str {
        match self {
            Field::Str(_) => "a string",
            Field::Number(_) => "a number",
            Field::Null => "null",
            Field::Other(t) => t,
        }
    }
}

impl<'a> Field<'a> {
    /// The id member's value: a number as its own digits (`123456789012345678901234567890`
    /// read as a float would come back as `1.2345678901234568e29`, and two ids as one), once
    /// checked as the parser checks a number (`1e400` is refused); anything else as [`Field`]
    /// reads it.
    fn from_raw(raw: &'a RawValue) -> serde_json::Result<Self> {
        let text = raw.get();
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            serde_json::from_str::<f64>(text)?;
            Ok(Field::Number(text.to_owned()))
        } else {
            serde_json::from_str(text)
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::Number(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Finite: the parser refuses a number out of range (`1e400`) itself.
                let n = serde_json::Number::from_f64(v);
                Ok(Field::Number(
                    n.map_or_else(|| v.to_string(), |n| n.to_string()),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Field::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Field::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object's members, read in one pass: the text and the id (by their configured names) as
/// [`Field`]s, the others raw, in their order. A key given twice keeps its last value.
struct Members<'a> {
    text: Option<Field<'a>>,
    id: Option<Field<'a>>,
    other: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// A JSON document: an object's members, or anything else (which is not a message).
enum Document<'a> {
    Object(Members<'a>),
    NotObject,
}

/// Reads a [`Document`], knowing which members are the text and the id.
struct DocumentSeed<'c>(&'c InputConfig);

impl<'de> de::DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Document<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<'c>(&'c InputConfig);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = Document<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut m = Members {
                    text: None,
                    id: None,
                    other: Vec::with_capacity(map.size_hint().unwrap_or(4)),
                };
                while let Some(CowStr(k)) = map.next_key()? {
                    if *k == self.0.text_field {
                        m.text = Some(map.next_value()?);
                    } else if *k == self.0.id_field {
                        let raw = map.next_value::<&'de RawValue>()?;
                        m.id = Some(Field::from_raw(raw).map_err(de::Error::custom)?);
                    } else {
                        m.other.push((k, map.next_value::<&'de RawValue>()?));
                    }
                }
                Ok(Document::Object(m))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Document::NotObject)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Document::NotObject)
            }
        }
        d.deserialize_any(V(self.0))
    }
}

/// Parses a whole payload: one document, then nothing but white space.
fn parse<'a>(text: &'a str, config: &InputConfig) -> serde_json::Result<Document<'a>> {
    use de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_str(text);
    let doc = DocumentSeed(config).deserialize(&mut de)?;
    de.end()?;
    Ok(doc)
}

/// How deep a field's value may nest: the record holds it two levels down (the record, its
/// `fields`), and serde_json reads 127 levels at most.
pub const MAX_FIELD_DEPTH: usize = 125;

/// Refuses a field's raw value that a strict reader of the output would refuse: a lone
/// surrogate escape (`"\ud800"`), a number out of `f64`'s range (`1e400`), or nesting deeper
/// than [`MAX_FIELD_DEPTH`]. The parser passes over the values it keeps raw without reading
/// their strings or numbers, and the record copies them as they came; the text and the id are
/// refused for the same things as they are parsed. A quick scan finds the few values that could
/// hold any of them: an escape `\uD…` or a digit before an `e` (those values are parsed again,
/// strictly and without building anything), more opening brackets than the depth allows (those
/// are measured by [`nests_deeper_than`]).
/// A payload the parser refused, `why` said so that a person can act on it: the parser's
/// "unexpected end of hex escape" for a whole `\ud800` gets what is wrong with it.
fn not_json(mut why: String) -> DecodeError {
    if why.contains("hex escape") {
        why.push_str(
            " (a \\u escape of a lone UTF-16 surrogate, \\ud800 to \\udfff without its pair, \
             is no character)",
        );
    }
    DecodeError::NotJson(why)
}

fn strict(key: &str, value: &RawValue) -> Result<(), DecodeError> {
    let raw = value.get().as_bytes();
    let refuse = |reason: &str| Err(not_json(format!("{reason} in the field {key:?}")));
    // Nesting deeper than the limit needs more opening brackets than the limit.
    if raw.len() > 2 * MAX_FIELD_DEPTH
        && raw.iter().filter(|&&b| b == b'[' || b == b'{').count() > MAX_FIELD_DEPTH
        && nests_deeper_than(raw, MAX_FIELD_DEPTH)
    {
        return refuse(&format!("nested more than {MAX_FIELD_DEPTH} levels deep"));
    }
    let suspect = memchr::memchr3_iter(b'\\', b'e', b'E', raw).any(|i| match raw[i] {
        b'\\' => raw.get(i + 1) == Some(&b'u') && matches!(raw.get(i + 2), Some(b'd' | b'D')),
        _ => i > 0 && raw[i - 1].is_ascii_digit(),
    });
    if !suspect {
        return Ok(());
    }
    match serde_json::from_str::<Checked>(value.get()) {
        Ok(Checked) => Ok(()),
        Err(e) => {
            // Its position is within the value, not the payload: the field's name says where.
            let e = e.to_string();
            refuse(e.rsplit_once(" at line ").map_or(&e[..], |(r, _)| r))
        }
    }
}

/// Whether `raw` (a value the parser accepted) nests more than `max` arrays and objects deep,
/// its strings skipped. Without a branch on the bytes (one a quote had cost about 2 ns a byte
/// on a field of many short strings; 64-byte bit masks with a prefix XOR for the strings were
/// slower still, their loop not vectorised): `[` and `{` are the two bytes that `| 0x20` makes
/// `{`, `]` and `}` those it makes `}`; a backslash only occurs inside a string.
fn nests_deeper_than(raw: &[u8], max: usize) -> bool {
    let step = |b: u8, in_string: bool| {
        let delta = i64::from((b | 0x20) == b'{') - i64::from((b | 0x20) == b'}');
        delta * i64::from(!in_string)
    };
    let (mut depth, mut deepest) = (0i64, 0i64);
    let mut in_string = false;
    if memchr::memchr(b'\\', raw).is_none() {
        for &b in raw {
            in_string ^= b == b'"';
            depth += step(b, in_string);
            deepest = deepest.max(depth);
        }
    } else {
        let mut escaped = false;
        for &b in raw {
            let quote = b == b'"' && !escaped;
            escaped = b == b'\\' && !escaped;
            in_string ^= quote;
            depth += step(b, in_string);
            deepest = deepest.max(depth);
        }
    }
    deepest > max as i64
}

/// A value read through with every string (keys too) and number parsed as serde_json parses
/// them into a `Value`, without building one: what a strict reader refuses is an error here.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                // A key is read as a string: a lone surrogate in it is refused too.
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes one payload. `fallback_id` gives the id when the payload has none.
///
/// The message borrows from `bytes`: nothing is copied but escaped strings and the list of the
/// other fields. The whole payload must be valid JSON before any field is looked at, so a
/// malformed document is `not_json` whatever its fields.
pub fn decode<'a>(
    bytes: &'a [u8],
    config: &InputConfig,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message<'a>, DecodeError> {
    decode_with(bytes, config, fallback_id, true)
}

/// As [`decode`], for a reader that keeps only the text and the id (`triage classify`): the
/// other fields are not checked for what a strict reader would refuse in a record, since no
/// record copies them.
pub fn decode_text<'a>(
    bytes: &'a [u8],
    config: &InputConfig,
    fallback_id: impl FnOnce() -> String,
) -> Result<Message<'a>, DecodeError> {
    decode_with(bytes, config, fallback_id, false)
}

fn decode_with<'a>(
    bytes: &'a [u8],
    config: &InputConfig,
    fallback_id: impl FnOnce() -> String,
    check_fields: bool,
) -> Result<Message<'a>, DecodeError> {
    if bytes.len() > config.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: config.max_message_bytes,
        });
    }
    if bytes.is_empty() {
        // A Kafka record without a value (a compacted topic's tombstone, say): said plainly, not
        // as the parser's "EOF while parsing a value".
        return Err(DecodeError::NotJson("the payload is empty".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8(e.valid_up_to()))?;
    // The text and the id are read as the payload is parsed: one that the parser refuses (a lone
    // surrogate escape, a number out of range) makes the whole payload `not_json`. The other
    // members stay, in order, as the fields (one list, no copy).
    let members = match parse(text, config) {
        Ok(Document::Object(members)) => members,
        Ok(Document::NotObject) => return Err(DecodeError::NotObject),
        Err(e) => return Err(not_json(e.to_string())),
    };
    if check_fields {
        for (k, v) in &members.other {
            strict(k, v)?;
        }
    }
    let fields = Fields::from_members(members.other);
    let wrong_type = |field: &String, expected, v: &Field<'_>| DecodeError::WrongType {
        field: field.clone(),
        expected,
        found: v.type_name(),
    };
    let text = match members.text {
        None => return Err(DecodeError::MissingText(config.text_field.clone())),
        Some(Field::Str(s)) => s,
        Some(v) => return Err(wrong_type(&config.text_field, "a string", &v)),
    };
    if text.trim().is_empty() {
        return Err(DecodeError::EmptyText(config.text_field.clone()));
    }
    let id = match members.id {
        None | Some(Field::Null) => Cow::Owned(fallback_id()),
        Some(Field::Str(s)) => s,
        Some(Field::Number(n)) => Cow::Owned(n),
        Some(v) => return Err(wrong_type(&config.id_field, "a string or a number", &v)),
    };
    Ok(Message { id, text, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
        decode(bytes, &InputConfig::default(), || "pos-1".into())
    }

    #[test]
    fn decodes_and_keeps_other_fields() {
        let m = dec(br#"{"id":"a1","text":"hi there","user":"u9","n":3}"#).unwrap();
        assert_eq!(m.id, "a1");
        assert_eq!(m.text, "hi there");
        assert_eq!(m.fields.get("user").unwrap().get(), r#""u9""#);
        assert_eq!(m.fields.len(), 2);
        let m = dec(br#"{"text":"no id"}"#).unwrap();
        assert_eq!(m.id, "pos-1");
        let m = dec(br#"{"id":42,"text":"numeric id"}"#).unwrap();
        assert_eq!(m.id, "42");
    }

    #[test]
    fn a_numeric_id_keeps_its_digits() {
        // Beyond u64 and i64 a number reads as a float: two ids were one
        // ("1.2345678901234568e+29").
        for id in [
            "123456789012345678901234567890",
            "123456789012345678901234567891",
            "-9223372036854775809",
            "18446744073709551616",
            "1.50",
            "2e3",
        ] {
            let payload = format!(r#"{{"id":{id},"text":"t"}}"#);
            assert_eq!(dec(payload.as_bytes()).unwrap().id, id);
        }
        // Checked as any number is: out of range, the payload is not JSON.
        let err = dec(br#"{"id":1e400,"text":"t"}"#).unwrap_err();
        assert_eq!(err.kind(), "not_json", "{err}");
        // The other types as before.
        assert_eq!(dec(br#"{"id":null,"text":"t"}"#).unwrap().id, "pos-1");
        assert_eq!(dec(br#"{"id":"a\"b","text":"t"}"#).unwrap().id, "a\"b");
        let err = dec(br#"{"id":[1],"text":"t"}"#).unwrap_err();
        assert!(err.to_string().contains("an array"), "{err}");
    }

    #[test]
    fn borrows_what_it_can_and_keeps_fields_raw() {
        let payload = br#"{"n": 1.50, "text":"plain","id":"a\u0031","meta":{"k": [1, 2]},"n":2e0,"k\"ey":"v"}"#;
        let m = dec(payload).unwrap();
        assert!(matches!(m.text, Cow::Borrowed("plain")));
        assert!(
            matches!(&m.id, Cow::Owned(s) if s == "a1"),
            "escaped: copied"
        );
        // Order of arrival; a repeated key keeps its last value; values exactly as written.
        let fields: Vec<(&str, &str)> = m.fields.iter().map(|(k, v)| (k, v.get())).collect();
        assert_eq!(
            fields,
            [
                ("n", "2e0"),
                ("meta", r#"{"k": [1, 2]}"#),
                ("k\"ey", r#""v""#)
            ]
        );
        let mut out = Vec::new();
        m.fields.write_members(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#""n":2e0,"meta":{"k": [1, 2]},"k\"ey":"v""#
        );
        let map = m.fields.to_map();
        assert_eq!(map["meta"]["k"][1], 2);
        // A document that is malformed after a wrong-typed field is `not_json`, as before.
        assert_eq!(dec(br#"{"text":5,"#).unwrap_err().kind(), "not_json");
        assert_eq!(dec(br#"{"text":5} x"#).unwrap_err().kind(), "not_json");
        assert_eq!(dec(b" \"str\" ").unwrap_err().kind(), "not_object");
        assert_eq!(
            dec(br#"{"text":"a","text":null}"#).unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(dec(br#"{"text":null,"text":"b"}"#).unwrap().text, "b");
    }

    #[test]
    fn json_strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "tab\tnl\n\u{1}",
            "é ✓ \u{7f}",
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn every_error_kind() {
        let cases: Vec<(&[u8], &str)> = vec![
            (b"\xff\xfe{}", "not_utf8"),
            (b"hello", "not_json"),
            (b"", "not_json"),
            (b"[1,2]", "not_object"),
            (br#"{"id":"x"}"#, "missing_text"),
            (br#"{"text":"   "}"#, "empty_text"),
            (br#"{"text":5}"#, "wrong_type"),
            (br#"{"text":"ok","id":[1]}"#, "wrong_type"),
            (br#"{"text":"ok","id":true}"#, "wrong_type"),
            (br#"{"text":{"a":1}}"#, "wrong_type"),
            // What the parser refuses in the text or the id is a bad payload, not a crash: a
            // lone surrogate escape, a number out of range.
            (br#"{"text":"bad \ud800 surrogate"}"#, "not_json"),
            (br#"{"text":"\udc00"}"#, "not_json"),
            (br#"{"id":"b\udc00","text":"fine"}"#, "not_json"),
            (br#"{"id":1e400,"text":"fine"}"#, "not_json"),
            // The same two in a field kept raw, which the record would copy as it came.
            (br#"{"text":"fine","meta":"\ud800"}"#, "not_json"),
            (br#"{"text":"fine","meta":{"a":[1,"x\uDC00"]}}"#, "not_json"),
            (br#"{"text":"fine","meta":{"\ud800":1}}"#, "not_json"),
            (br#"{"text":"fine","n":-1e400}"#, "not_json"),
            (br#"{"text":"fine","m":[{"n":2E+999}]}"#, "not_json"),
        ];
        let deep = |d: usize| {
            format!(
                r#"{{"text":"fine","m":{}{}}}"#,
                "[".repeat(d),
                "]".repeat(d)
            )
        };
        assert!(dec(deep(MAX_FIELD_DEPTH).as_bytes()).is_ok());
        for d in [MAX_FIELD_DEPTH + 1, 127, 128, 5_000] {
            assert_eq!(
                dec(deep(d).as_bytes()).unwrap_err().to_string(),
                "message is not JSON: nested more than 125 levels deep in the field \"m\"",
                "{d}"
            );
        }
        for (bytes, kind) in cases {
            assert_eq!(dec(bytes).unwrap_err().kind(), kind, "{bytes:?}");
        }
        assert_eq!(
            dec(b"").unwrap_err().to_string(),
            "message is not JSON: the payload is empty"
        );
        let big = format!(r#"{{"text":"{}"}}"#, "a".repeat(70_000));
        assert_eq!(dec(big.as_bytes()).unwrap_err().kind(), "too_large");
        assert_eq!(
            dec(br#"{"text":"fine","meta":"\udc00"}"#)
                .unwrap_err()
                .to_string(),
            "message is not JSON: lone leading surrogate in hex escape in the field \"meta\" (a \
             \\u escape of a lone UTF-16 surrogate, \\ud800 to \\udfff without its pair, is no \
             character)"
        );
        assert!(
            dec(br#"{"text":"bad \ud800 x"}"#)
                .unwrap_err()
                .to_string()
                .starts_with("message is not JSON: unexpected end of hex escape at line 1 column")
        );
        assert!(
            dec(br#"{"text":"bad \ud800 x"}"#)
                .unwrap_err()
                .to_string()
                .ends_with("is no character)")
        );
        assert_eq!(
            dec(br#"{"text":"fine","n":1e400}"#)
                .unwrap_err()
                .to_string(),
            "message is not JSON: number out of range in the field \"n\""
        );
    }

    /// JSON values whose strings are made of brackets, quotes, backslashes and a letter.
    fn nested_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let tricky = "[\\[\\]{}\"\\\\a]{0,6}";
        let leaf = prop_oneof![
            Just(Value::Null),
            tricky.prop_map(Value::String),
            any::<i32>().prop_map(|n| Value::Number(n.into())),
        ];
        leaf.prop_recursive(8, 64, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(tricky, inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `triage classify` drops the fields: a field a record could not copy does not make the
    /// line plain text there.
    #[test]
    fn decode_text_does_not_check_the_fields() {
        let payload = br#"{"id":"a","text":"fine","meta":"\udc00","n":1e400}"#;
        assert_eq!(dec(payload).unwrap_err().kind(), "not_json");
        let m = decode_text(payload, &InputConfig::default(), || "x".into()).unwrap();
        assert_eq!((&*m.id, &*m.text), ("a", "fine"));
        let bad = br#"{"id":"a","text":"\udc00"}"#;
        let e = decode_text(bad, &InputConfig::default(), || "x".into()).unwrap_err();
        assert_eq!(e.kind(), "not_json");
    }

    /// What looks like either refused form but is not stays, raw: a surrogate pair, an escaped
    /// backslash before `ud800`, exponents in range, an `e` in a string after a digit.
    #[test]
    fn fields_that_only_look_refused_are_kept_raw() {
        let payload = br#"{"text":"fine","emoji":"\ud83d\ude00","path":"C:\\ud800","n":2e0,"m":[-1E-400,1.5e300],"s":"1e400","t":true}"#;
        // Brackets in strings are not nesting.
        let brackets = format!(
            r#"{{"text":"fine","b":["\"{}",{{"[":1}}]}}"#,
            "[{".repeat(200)
        );
        let m = dec(brackets.as_bytes()).unwrap();
        assert_eq!(m.fields.len(), 1);
        let m = dec(payload).unwrap();
        let raw: Vec<(&str, &str)> = m.fields.iter().map(|(k, v)| (k, v.get())).collect();
        assert_eq!(
            raw,
            [
                ("emoji", r#""\ud83d\ude00""#),
                ("path", r#""C:\\ud800""#),
                ("n", "2e0"),
                ("m", "[-1E-400,1.5e300]"),
                ("s", r#""1e400""#),
                ("t", "true"),
            ]
        );
    }

    proptest::proptest! {
        /// [`nests_deeper_than`] counts what a parser counts, whatever brackets, quotes and
        /// backslashes the strings (keys too) hold, across 64-byte blocks.
        #[test]
        fn nesting_skips_strings(v in nested_value(), pad in 0usize..70) {
            fn depth(v: &Value) -> usize {
                match v {
                    Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                    Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                    _ => 0,
                }
            }
            let raw = format!("{}{}", " ".repeat(pad), serde_json::to_string(&v).unwrap());
            let d = depth(&v);
            for max in [d.saturating_sub(1), d, d + 1] {
                let deeper = nests_deeper_than(raw.as_bytes(), max);
                proptest::prop_assert_eq!(deeper, d > max, "{} {}", max, raw);
            }
        }

        /// Repeated keys, pairwise or hashed (over 16 members): each key once, at its first
        /// place, with its last value, as a JSON object reads.
        #[test]
        fn a_repeated_key_keeps_its_place_and_last_value(
            keys in proptest::collection::vec("[a-f]{1,2}", 0..80),
        ) {
            let values: Vec<Box<RawValue>> = (0..keys.len())
                .map(|i| RawValue::from_string(i.to_string()).unwrap())
                .collect();
            let members = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), &**v))
                .collect();
            let fields = Fields::from_members(members);
            let got: Vec<(&str, &str)> = fields
                .0
                .iter()
                .map(|(k, v)| (k.as_ref(), v.get()))
                .collect();
            let mut want: Vec<(&str, &str)> = Vec::new();
            for (k, v) in keys.iter().zip(&values) {
                match want.iter_mut().find(|(j, _)| j == k) {
                    Some(slot) => slot.1 = v.get(),
                    None => want.push((k, v.get())),
                }
            }
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = dec(&bytes);
        }

        /// Any text and id, however serde_json writes them (escaped or not), read back as
        /// themselves, borrowed exactly when they were written without an escape.
        #[test]
        fn strings_read_back_as_written(
            id in "\\PC{0,12}|[\"\\\\\t\n\u{1}é]{0,6}",
            text in "\\PC{1,40}|[a\"\\\\\n\u{7f}]{1,8}",
        ) {
            let payload = serde_json::json!({ "id": id, "text": text }).to_string();
            match dec(payload.as_bytes()) {
                Ok(m) => {
                    proptest::prop_assert_eq!(&m.id, &id);
                    proptest::prop_assert_eq!(&m.text, &text);
                    let escaped = |s: &str| serde_json::to_string(s).unwrap().len() != s.len() + 2;
                    proptest::prop_assert_eq!(matches!(m.text, Cow::Owned(_)), escaped(&text));
                    proptest::prop_assert_eq!(matches!(m.id, Cow::Owned(_)), escaped(&id));
                }
                Err(e) => proptest::prop_assert_eq!(e.kind(), "empty_text"),
            }
        }
    }
}
