//! Any bytes through `message::decode`: a message or a `DecodeError`, never a panic; a message
//! always has non-blank text and fields that a strict reader reads back (as the record copies
//! them), and an oversize payload is always `TooLarge`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triage_core::message::{DecodeError, InputConfig, decode};

fuzz_target!(|data: &[u8]| {
    let default = InputConfig::default();
    check(data, &default);
    // A tiny limit and other field names: the size check must come first.
    let small = InputConfig {
        text_field: "body".into(),
        id_field: "key".into(),
        max_message_bytes: 16,
    };
    check(data, &small);
});

fn check(data: &[u8], config: &InputConfig) {
    match decode(data, config, || "x".into()) {
        Ok(m) => {
            assert!(data.len() <= config.max_message_bytes);
            assert!(!m.text.trim().is_empty());
            assert!(!m.fields.contains_key(&config.text_field));
            assert!(!m.fields.contains_key(&config.id_field));
            for (k, v) in m.fields.iter() {
                let parsed = serde_json::from_str::<serde_json::Value>(v.get());
                assert!(parsed.is_ok(), "{k}: {}", v.get());
            }
        }
        Err(DecodeError::TooLarge { size, max }) => {
            assert_eq!(size, data.len());
            assert!(size > max);
        }
        Err(e) => {
            assert!(data.len() <= config.max_message_bytes, "{e}");
            assert!(!e.kind().is_empty());
        }
    }
}
