//! Any bytes as a model file: an error, never a panic. (The checksum line guards the header and
//! body, so mutations mostly exercise the magic, version and checksum lines; `model_body`
//! recomputes the checksum to reach the header and body parsers.)
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use triage_classifier::{ClassifierError, Model};

fuzz_target!(|data: &[u8]| {
    match Model::from_bytes(data, Path::new("fuzz.triage")) {
        Ok(m) => {
            // Only a file with a correct checksum can load; it must then predict sanely.
            let p = m.predict("fuzzing is fun :)");
            assert!(p.probabilities.iter().all(|v| v.is_finite()), "{p:?}");
        }
        Err(ClassifierError::ModelFile { .. } | ClassifierError::Io { .. }) => {}
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
