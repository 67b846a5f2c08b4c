//! Property tests of the model file reader: arbitrary bytes, arbitrary damage to real saved
//! models, and headers edited behind a recomputed checksum never panic; they give a
//! `ClassifierError::ModelFile` (or `Io`) error, or a model that predicts sanely.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use triage_classifier::{ClassifierError, Example, Model, NoProgress, TrainConfig};

struct Files {
    /// A tiny model saved by this build.
    tiny: Vec<u8>,
    /// The shipped default model (about 2 MB).
    default: Vec<u8>,
}

fn files() -> &'static Files {
    static F: OnceLock<Files> = OnceLock::new();
    F.get_or_init(|| {
        let ex = |t: &str, l: &str| Example {
            id: None,
            text: t.into(),
            label: l.into(),
        };
        let data = vec![
            ex("my card was charged twice", "billing"),
            ex("refund the double charge please", "billing"),
            ex("the app crashes when I log in", "bug"),
            ex("login screen crashes", "bug"),
            ex("how do I change my email", "account"),
            ex("change the email on my account", "account"),
        ];
        let mut cfg = TrainConfig::default();
        cfg.tfidf.min_df = 1;
        cfg.analyzer.hash_bits = 10;
        let mut m = Model::train(&data, &cfg, &mut NoProgress).expect("trains");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.triage");
        m.save(&path).unwrap();
        Files {
            tiny: std::fs::read(&path).unwrap(),
            default: std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/sentiment4.triage"),
            )
            .unwrap(),
        }
    })
}

/// Loads `bytes`: `Ok(Some(model))`, `Ok(None)` for an expected error, or a test failure for
/// any other kind of error. A panic fails the test by itself.
fn load(bytes: &[u8]) -> Result<Option<Model>, TestCaseError> {
    match Model::from_bytes(bytes, Path::new("prop.triage")) {
        Ok(m) => Ok(Some(m)),
        Err(ClassifierError::ModelFile { path, reason }) => {
            prop_assert_eq!(path, Path::new("prop.triage"));
            prop_assert!(!reason.is_empty());
            Ok(None)
        }
        Err(ClassifierError::Io { .. }) => Ok(None),
        Err(other) => Err(TestCaseError::fail(format!(
            "unexpected error kind: {other}"
        ))),
    }
}

/// Splits a model file into (magic line, checksum line, header line, body).
fn parts(file: &[u8]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let mut rest = file;
    let mut line = || {
        let i = rest.iter().position(|&b| b == b'\n').unwrap();
        let l = &rest[..i];
        rest = &rest[i + 1..];
        l
    };
    let (a, b, c) = (line(), line(), line());
    (a, b, c, rest)
}

/// A model file around `header` and `body` with a correct checksum.
fn with_checksum(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(header);
    h.update(b"\n");
    h.update(body);
    let mut f = format!("TRIAGE-MODEL 1\nsha256 {}\n", hex::encode(h.finalize())).into_bytes();
    f.extend_from_slice(header);
    f.push(b'\n');
    f.extend_from_slice(body);
    f
}

fn predicts_sanely(m: &Model) -> Result<(), TestCaseError> {
    for text in ["refund my charge", "Ça plante 😡 https://x.y @bob", ""] {
        let p = m.predict(text);
        prop_assert_eq!(p.probabilities.len(), m.labels().len());
        prop_assert!(p.probabilities.iter().all(|v| v.is_finite()), "{:?}", p);
        let sum: f32 = p.probabilities.iter().sum();
        prop_assert!((sum - 1.0).abs() <= 1e-4, "{:?}", p);
    }
    Ok(())
}

/// Edits of the header JSON that a damaged or hand-made file could carry.
fn header_edit() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        (0u64..40).prop_map(|n| ("/analyzer/hash_bits".into(), n.into())),
        any::<[u8; 2]>().prop_map(|r| ("/analyzer/word_ngrams".into(), serde_json::json!(r))),
        any::<[u8; 2]>().prop_map(|r| ("/analyzer/char_ngrams".into(), serde_json::json!(r))),
        any::<u64>().prop_map(|n| ("/n_features/0".into(), n.into())),
        any::<u64>().prop_map(|n| ("/n_features/1".into(), n.into())),
        (0u64..1 << 20).prop_map(|n| ("/body_bytes".into(), n.into())),
        any::<u64>().prop_map(|n| ("/body_bytes".into(), n.into())),
        prop::collection::vec("[a-z]{0,3}", 0..6)
            .prop_map(|l| ("/labels".into(), serde_json::json!(l))),
        Just(("/kind".into(), "naive-bayes".into())),
        Just(("/analyzer/stem".into(), "klingon".into())),
        Just(("/tfidf/l2_norm".into(), false.into())),
        Just(("/tfidf/sublinear_tf".into(), false.into())),
        Just(("/labels".into(), Value::Null)),
        Just(("/unknown_key".into(), 1.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, bare or behind a valid magic line: an error, never a panic.
    #[test]
    fn arbitrary_bytes_give_an_error(bytes in prop::collection::vec(any::<u8>(), 0..2048),
                                     magic in any::<bool>()) {
        let mut file = if magic { b"TRIAGE-MODEL 1\n".to_vec() } else { Vec::new() };
        file.extend_from_slice(&bytes);
        prop_assert!(load(&file)?.is_none());
    }

    /// Any single-byte change, or any truncation, of a real saved model gives an error. The
    /// only changes that still load are in the magic line ("TRIAGE-MODEL\t1", "TRIAGE-MODEL+1"
    /// read as version 1): the checksum guards everything after it, so such a file loads the
    /// very same model.
    #[test]
    fn corrupted_real_models_give_an_error(
        which in any::<bool>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let good = if which { &files().tiny } else { &files().default };
        let magic_len = good.iter().position(|&b| b == b'\n').unwrap();
        let i = at.index(good.len());
        let mut bad = good.clone();
        bad[i] ^= xor;
        if let Some(m) = load(&bad)? {
            prop_assert!(i < magic_len, "corruption at byte {} loaded", i);
            let original = load(good)?.unwrap();
            prop_assert_eq!(m.sha256(), original.sha256());
        }
        let n = cut.index(good.len());
        prop_assert!(load(&good[..n])?.is_none(), "truncated at {} loaded", n);
    }

    /// Corruptions in the header or the body behind a recomputed (correct) checksum: the
    /// reader's own validation refuses what is inconsistent, and whatever loads predicts a
    /// probability distribution.
    #[test]
    fn edited_headers_and_bodies_behind_a_valid_checksum(
        edits in prop::collection::vec(header_edit(), 0..3),
        body_flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        body_cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (_, _, header, body) = parts(&files().tiny);
        let mut h: Value = serde_json::from_slice(header).unwrap();
        for (ptr, v) in &edits {
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            match h.pointer_mut(parent) {
                Some(Value::Object(o)) => { o.insert(key.to_string(), v.clone()); }
                Some(Value::Array(a)) => {
                    let k: usize = key.parse().unwrap();
                    if k < a.len() { a[k] = v.clone(); }
                }
                _ => {}
            }
        }
        let mut body = body.to_vec();
        for (at, xor) in &body_flips {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] ^= xor;
            }
        }
        if let Some(cut) = body_cut {
            body.truncate(cut.index(body.len() + 1));
        }
        let header = serde_json::to_vec(&h).unwrap();
        if let Some(m) = load(&with_checksum(&header, &body))? {
            predicts_sanely(&m)?;
        }
    }
}

/// A header that does not match its body is refused even with a correct checksum.
#[test]
fn mismatched_body_length_is_refused_behind_a_valid_checksum() {
    let (_, _, header, body) = parts(&files().tiny);
    let file = with_checksum(header, &body[..body.len() - 4]);
    let err = Model::from_bytes(&file, Path::new("x.triage")).unwrap_err();
    assert!(matches!(err, ClassifierError::ModelFile { .. }), "{err}");
    assert!(err.to_string().contains("body is"), "{err}");
    // Unchanged, the same construction loads: the helper is right.
    assert!(Model::from_bytes(&with_checksum(header, body), Path::new("x.triage")).is_ok());
}
