//! The model file: round trip, and clear errors for every kind of damage.

use std::path::Path;

use triage_classifier::{ClassifierError, Example, Model, NoProgress, TrainConfig};

fn tiny_model() -> Model {
    let ex = |t: &str, l: &str| Example {
        id: None,
        text: t.into(),
        label: l.into(),
    };
    let data = vec![
        ex("my card was charged twice", "billing"),
        ex("refund the double charge please", "billing"),
        ex("why was I charged again", "billing"),
        ex("the app crashes when I log in", "bug"),
        ex("login screen crashes", "bug"),
        ex("app freezes and crashes", "bug"),
        ex("how do I change my email", "account"),
        ex("change the email on my account", "account"),
        ex("update my account email address", "account"),
    ];
    let mut cfg = TrainConfig::default();
    cfg.tfidf.min_df = 1;
    Model::train(&data, &cfg, &mut NoProgress).expect("trains")
}

fn model_error(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes, Path::new("m.triage")) {
        Err(e @ ClassifierError::ModelFile { .. }) => e.to_string(),
        Err(other) => panic!("expected a ModelFile error, got {other}"),
        Ok(_) => panic!("damaged model loaded"),
    }
}

#[test]
fn round_trip_keeps_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.triage");
    let mut m = tiny_model();
    m.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.labels(), m.labels());
    assert_eq!(loaded.sha256(), m.sha256());
    for text in [
        "charged twice again",
        "it crashes",
        "new email please",
        "🙂 unrelated",
    ] {
        assert_eq!(loaded.predict(text), m.predict(text), "{text}");
    }
    assert_eq!(loaded.predict("refund my double charge").label, "billing");
    // Saving the loaded model gives the same bytes.
    let path2 = dir.path().join("m2.triage");
    let mut loaded = loaded;
    loaded.save(&path2).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&path2).unwrap()
    );
}

#[test]
fn damaged_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.triage");
    tiny_model().save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    // Not a model at all.
    assert!(model_error(b"hello world\n").contains("not a triage model file"));
    assert!(model_error(b"").contains("not a triage model file"));

    // A newer format version.
    let mut newer = good.clone();
    newer[13] = b'9';
    let e = model_error(&newer);
    assert!(
        e.contains("format version 9") && e.contains("retrain"),
        "{e}"
    );

    // A flipped byte in the body, and one in the header: the checksum catches both.
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x40;
    assert!(model_error(&flipped).contains("checksum mismatch"));
    let mut header_edit = good.clone();
    let pos = good
        .windows(7)
        .position(|w| w == b"billing")
        .expect("label in header");
    header_edit[pos] = b'B';
    assert!(model_error(&header_edit).contains("checksum mismatch"));

    // Truncated anywhere.
    for cut in [5, 20, 90, good.len() / 2, good.len() - 1] {
        let e = model_error(&good[..cut]);
        assert!(
            e.contains("truncated") || e.contains("checksum") || e.contains("not a triage"),
            "cut at {cut}: {e}"
        );
    }

    // Missing file: an I/O error naming the path.
    let e = Model::load(&dir.path().join("nope.triage")).unwrap_err();
    assert!(e.to_string().contains("nope.triage"));
}
