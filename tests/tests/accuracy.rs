//! Accuracy floors on real data sets: train with the committed settings (chosen on train/dev
//! only, see `configs/`), evaluate once on the test split, and require accuracy and macro-F1 of
//! at least the best scikit-learn figure minus 0.5 points (`../shared/docs/baselines.md`).
//!
//! These tests read `../shared/data` (or `TRIAGE_DATA`); where it is absent they say so loudly
//! and do not run.

use triage_tests::{data_dir, triage, workspace};

/// (data set, best sklearn accuracy, best sklearn macro-F1) from baselines.md.
fn floor(dataset: &str, best_acc: f64, best_f1: f64) {
    let Some(data) = data_dir(&format!("accuracy_{dataset}")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.triage");
    let config = workspace().join("configs").join(format!("{dataset}.toml"));
    let train = data.join(dataset).join("train.jsonl");
    let test = data.join(dataset).join("test.jsonl");
    triage(&[
        "train",
        "--data",
        train.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    let out = triage(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("eval JSON");
    let acc = report["accuracy"].as_f64().unwrap();
    let f1 = report["macro_f1"].as_f64().unwrap();
    eprintln!(
        "{dataset}: accuracy {:.2}% (floor {:.2}%), macro-F1 {:.4} (floor {:.4})",
        100.0 * acc,
        100.0 * (best_acc - 0.005),
        f1,
        best_f1 - 0.005
    );
    assert!(
        acc >= best_acc - 0.005,
        "{dataset}: accuracy {acc:.4} below the floor {:.4}",
        best_acc - 0.005
    );
    assert!(
        f1 >= best_f1 - 0.005,
        "{dataset}: macro-F1 {f1:.4} below the floor {:.4}",
        best_f1 - 0.005
    );
}

#[test]
fn accuracy_goemotions_sentiment4() {
    floor("goemotions_sentiment4", 0.678, 0.629);
}

#[test]
fn accuracy_banking77() {
    floor("banking77", 0.911, 0.911);
}

#[test]
fn accuracy_davidson_hate_offensive() {
    floor("davidson_hate_offensive", 0.897, 0.707);
}

#[test]
fn accuracy_clinc150() {
    floor("clinc150", 0.810, 0.859);
}

/// The committed default model is the one the committed settings produce: same labels, and
/// its held-out metrics (stored in the file) meet the floors on the test split too.
#[test]
fn default_model_meets_the_floor() {
    let Some(data) = data_dir("default_model_meets_the_floor") else {
        return;
    };
    let test = data.join("goemotions_sentiment4/test.jsonl");
    // No --model: the model built into the binary.
    let out = triage(&["eval", "--data", test.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acc = report["accuracy"].as_f64().unwrap();
    let f1 = report["macro_f1"].as_f64().unwrap();
    assert!(acc >= 0.673 && f1 >= 0.624, "default model: {acc} / {f1}");
    assert_eq!(
        report["labels"],
        serde_json::json!(["ambiguous", "negative", "neutral", "positive"])
    );
}
