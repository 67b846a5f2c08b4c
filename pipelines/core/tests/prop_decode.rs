//! Property tests of `message::decode`, the first thing any untrusted payload meets (Kafka and
//! replay alike). The unit tests beside the code cover each error kind and random bytes; these
//! cover arbitrary JSON documents, valid messages with arbitrary extra fields, and the size limit.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use triage_core::message::{DecodeError, InputConfig, decode};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text with at least one non-white-space character.
fn text() -> impl Strategy<Value = String> {
    (".{0,20}", "[^\\s]", ".{0,20}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

/// JSON equality, except that a float may come back a few ulps off: serde_json's default float
/// parser is best-effort, not correctly rounded (found by this test: -2.0454916317318694e-171
/// comes back as -2.0454916317318698e-171, 2 ulps away; serde_json's `float_roundtrip` feature
/// would make it exact, at some parsing cost). Everything else (integers, strings, structure)
/// must be exactly the same.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    let d = (x - y).abs();
                    x == y || d <= 1e-14 * x.abs().max(y.abs()) || d < 1e-300
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn cfg(max: usize) -> InputConfig {
    InputConfig {
        max_message_bytes: max,
        ..InputConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any JSON document, and any prefix or single-byte change of it: a message or an error,
    /// never a panic; a message always has non-blank text.
    #[test]
    fn any_json_document_never_panics(v in json_value(), cut in any::<prop::sample::Index>(),
                                      flip in any::<(prop::sample::Index, u8)>()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let mut flipped = bytes.clone();
        if !flipped.is_empty() {
            let i = flip.0.index(flipped.len());
            flipped[i] ^= flip.1;
        }
        let prefix = &bytes[..cut.index(bytes.len() + 1)];
        for b in [&bytes[..], prefix, &flipped[..]] {
            if let Ok(m) = decode(b, &InputConfig::default(), || "fallback".into()) {
                prop_assert!(!m.text.trim().is_empty());
            }
        }
        // Only objects can decode.
        if !v.is_object() {
            prop_assert!(decode(&bytes, &InputConfig::default(), || "f".into()).is_err());
        }
    }

    /// `\uXXXX` escapes of any UTF-16 code unit in the text, the id or a field kept raw (lone
    /// surrogates included), and numbers of any exponent as the id or in a field: the message, or
    /// `not_json` exactly where the parser refuses the payload, never a panic (a lone surrogate
    /// and an id of `1e400` had crashed the decoder, and with it a replay or the service; in a
    /// field they had passed into the record, which a strict reader then refused).
    #[test]
    fn any_escape_or_number_is_a_message_or_not_json(
        units in prop::collection::vec(any::<u16>(), 1..4),
        place in 0u8..3,
        exp in -400i32..400,
        number_in_id in any::<bool>(),
    ) {
        let esc: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
        let payload = match place {
            0 => format!(r#"{{"id":"x","text":"a{esc}"}}"#),
            1 => format!(r#"{{"id":"{esc}","text":"hi"}}"#),
            _ => format!(r#"{{"text":"hi","meta":{{"a":[1,"{esc}"]}}}}"#),
        };
        let expected = String::from_utf16(&units).ok();
        match decode(payload.as_bytes(), &InputConfig::default(), || "f".into()) {
            Ok(m) => {
                let got = match place {
                    0 => m.text[1..].to_string(),
                    1 => m.id.to_string(),
                    _ => {
                        let raw = m.fields.get("meta").unwrap().get();
                        prop_assert_eq!(raw, format!(r#"{{"a":[1,"{esc}"]}}"#));
                        serde_json::from_str::<Value>(raw).unwrap()["a"][1].as_str().unwrap().to_string()
                    }
                };
                prop_assert_eq!(Some(got), expected);
            }
            Err(e) => {
                prop_assert!(expected.is_none(), "{payload}: {e}");
                prop_assert_eq!(e.kind(), "not_json");
            }
        }
        let number = format!("1e{exp}");
        let valid = serde_json::from_str::<Number>(&number).is_ok();
        let payload = if number_in_id {
            format!(r#"{{"id":{number},"text":"hi"}}"#)
        } else {
            format!(r#"{{"text":"hi","m":[{number}]}}"#)
        };
        match decode(payload.as_bytes(), &InputConfig::default(), || "f".into()) {
            // The id as written (a number read as a float loses digits: two ids became one).
            Ok(m) if number_in_id => {
                prop_assert!(valid, "{payload}");
                prop_assert_eq!(m.id, number);
            }
            Ok(m) => {
                prop_assert!(valid, "{payload}");
                prop_assert_eq!(m.fields.get("m").unwrap().get(), format!("[{number}]"));
            }
            Err(e) => {
                prop_assert!(!valid, "{payload}: {e}");
                prop_assert_eq!(e.kind(), "not_json");
            }
        }
    }

    /// A JSON object with a non-blank string `text` decodes; the other fields come back
    /// unchanged, and the id comes from `id` (string or number) or the fallback.
    #[test]
    fn valid_object_decodes_and_keeps_other_fields(
        text in text(),
        others in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6),
        id in prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            ".{0,10}".prop_map(|s| Some(Value::String(s))),
            any::<i64>().prop_map(|n| Some(Value::Number(n.into()))),
        ],
    ) {
        let mut others: Map<String, Value> = others.into_iter().collect();
        others.remove("text");
        others.remove("id");
        let mut obj = others.clone();
        obj.insert("text".into(), Value::String(text.clone()));
        if let Some(id) = &id {
            obj.insert("id".into(), id.clone());
        }
        let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
        let config = cfg(bytes.len());
        let m = decode(&bytes, &config, || "pos-7".into()).expect("valid message decodes");
        prop_assert_eq!(&m.text, &text);
        prop_assert!(same_json(&Value::Object(m.fields.to_map()), &Value::Object(others.clone())),
                     "fields changed: {:?} vs {:?}", m.fields, others);
        let want_id = match id {
            None | Some(Value::Null) => "pos-7".to_string(),
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => unreachable!(),
        };
        prop_assert_eq!(m.id, want_id);
    }

    /// Anything larger than the limit is `TooLarge` with its exact size, whatever it holds
    /// (even bytes that are not UTF-8 or JSON): the limit is checked before any parsing. At the
    /// limit, a valid message still decodes.
    #[test]
    fn oversize_rejected_before_parsing(
        max in 0usize..256,
        extra in 1usize..64,
        junk in prop::collection::vec(any::<u8>(), 0..320),
    ) {
        let mut payload = junk;
        payload.resize(max + extra, 0xff);
        match decode(&payload, &cfg(max), || unreachable!("never gets to the id")) {
            Err(DecodeError::TooLarge { size, max: m }) => {
                prop_assert_eq!(size, max + extra);
                prop_assert_eq!(m, max);
            }
            other => prop_assert!(false, "expected TooLarge, got {:?}", other),
        }

        // A valid message of exactly `len` bytes: accepted at max == len, refused at len - 1.
        let msg = format!(r#"{{"text":"{}"}}"#, "a".repeat(max % 40 + 1));
        let len = msg.len();
        prop_assert!(decode(msg.as_bytes(), &cfg(len), || "x".into()).is_ok());
        let refused = decode(msg.as_bytes(), &cfg(len - 1), || "x".into());
        prop_assert!(matches!(refused, Err(DecodeError::TooLarge { .. })), "{:?}", refused);
    }
}
