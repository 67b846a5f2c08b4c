//! A model file with a *correct* checksum around arbitrary header JSON and body bytes, so the
//! fuzzer reaches the header and body parsers that the checksum otherwise guards.
//!
//! Input: `<header JSON>\n<body bytes>` (the part before the first newline is the header line).
//! Any such file must give a `ModelFile` error or a model whose predictions are finite
//! probabilities summing to 1.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use triage_classifier::{ClassifierError, Model};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = &data[..split];
    let body = data.get(split + 1..).unwrap_or(&[]);
    let mut hasher = Sha256::new();
    hasher.update(header);
    hasher.update(b"\n");
    hasher.update(body);
    let mut file = Vec::with_capacity(data.len() + 100);
    file.extend_from_slice(b"TRIAGE-MODEL 1\nsha256 ");
    file.extend_from_slice(hex::encode(hasher.finalize()).as_bytes());
    file.push(b'\n');
    file.extend_from_slice(header);
    file.push(b'\n');
    file.extend_from_slice(body);
    match Model::from_bytes(&file, Path::new("fuzz.triage")) {
        Ok(m) => {
            for text in ["fuzzing is fun :)", "naïve CAFÉ 🙂 www.x.org @bob", ""] {
                let p = m.predict(text);
                let sum: f32 = p.probabilities.iter().sum();
                assert_eq!(p.probabilities.len(), m.labels().len());
                assert!(
                    p.probabilities
                        .iter()
                        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                    "{text:?}: {p:?}"
                );
                assert!((sum - 1.0).abs() < 1e-4, "{text:?}: sum {sum}");
            }
        }
        Err(ClassifierError::ModelFile { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
