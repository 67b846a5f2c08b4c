//! Missing and corrupt model files give the right `ModelsError`, with a message that says what to do, and never
//! a panic. Each test works on a temporary copy of an installed model directory.

mod common;

use common::{config, copy_model_dir, installed};
use triage_models::{Encoder, FinetunedClassifier, Generator, Head, ModelsConfig, ModelsError};

fn no_verify() -> ModelsConfig {
    ModelsConfig {
        verify_checksums: false,
        ..config()
    }
}

fn garbage(path: &std::path::Path) {
    std::fs::write(
        path,
        b"this is not an onnx model \x00\x01\x02 garbage garbage",
    )
    .expect("write garbage");
}

#[test]
fn installed_models_load() {
    // A sanity check that the copies below start from a working installation.
    installed("the encoder", Encoder::from_config(&config()));
}

#[test]
fn missing_encoder_file_is_model_missing() {
    let (_tmp, dir) = copy_model_dir(&config().encoder_dir());
    std::fs::remove_file(dir.join("model_int8.onnx")).expect("rm");
    let err = Encoder::load(&dir, &config()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelMissing { ref path } if path.ends_with("model_int8.onnx")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("is missing") && msg.contains("scripts/install-models.sh"),
        "{msg}"
    );
    assert!(err.needs_install() && !err.retryable());

    let err = Encoder::load(dir.join("nope"), &config()).expect_err("must fail");
    assert!(matches!(err, ModelsError::ModelMissing { .. }), "{err:?}");
}

#[test]
fn corrupt_encoder_file_is_checksum_mismatch_or_model_corrupt() {
    let (_tmp, dir) = copy_model_dir(&config().encoder_dir());
    garbage(&dir.join("model_int8.onnx"));
    // With verification (the default) the manifest catches it before ONNX Runtime sees it...
    let err = Encoder::load(&dir, &config()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ChecksumMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("does not match the manifest"),
        "{err}"
    );
    // ...without it, ONNX Runtime's parse error becomes ModelCorrupt.
    let err = Encoder::load(&dir, &no_verify()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelCorrupt { ref path, .. } if path.ends_with("model_int8.onnx")),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("is corrupt") && msg.contains("scripts/install-models.sh"),
        "{msg}"
    );
}

#[test]
fn corrupt_tokenizer_is_model_corrupt() {
    let (_tmp, dir) = copy_model_dir(&config().encoder_dir());
    std::fs::write(dir.join("tokenizer.json"), b"{\"not\": \"a tokenizer\"").expect("write");
    let err = Encoder::load(&dir, &no_verify()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelCorrupt { ref path, .. } if path.ends_with("tokenizer.json")),
        "{err:?}"
    );
}

#[test]
fn generator_missing_and_corrupt_files() {
    let (_tmp, dir) = copy_model_dir(&config().generator_dir());
    let data = dir.join("model.onnx.data");
    let bytes = std::fs::read(&data).expect("read");

    // Truncated weights: the manifest catches it; without the manifest ONNX Runtime refuses the model.
    std::fs::write(&data, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = Generator::load(&dir, &config()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ChecksumMismatch { ref path, .. } if path.ends_with("model.onnx.data")),
        "{err:?}"
    );
    let err = Generator::load(&dir, &no_verify()).expect_err("must fail");
    assert!(matches!(err, ModelsError::ModelCorrupt { .. }), "{err:?}");

    std::fs::remove_file(&data).expect("rm");
    let err = Generator::load(&dir, &config()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelMissing { ref path } if path.ends_with("model.onnx.data")),
        "{err:?}"
    );
    std::fs::write(&data, &bytes).expect("restore");

    garbage(&dir.join("model.onnx"));
    let err = Generator::load(&dir, &no_verify()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelCorrupt { ref path, .. } if path.ends_with("model.onnx")),
        "{err:?}"
    );

    std::fs::write(dir.join("genai_config.json"), b"{ truncated").expect("write");
    let err = Generator::load(&dir, &no_verify()).expect_err("must fail");
    assert!(
        matches!(err, ModelsError::ModelCorrupt { ref path, .. } if path.ends_with("genai_config.json")),
        "{err:?}"
    );
}

#[test]
fn head_files_missing_or_corrupt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("head.json");
    // No installer makes a head: the message names what does.
    let err = Head::load(&path).expect_err("no such file");
    assert!(matches!(err, ModelsError::NotMade { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("slm train-head") && !msg.contains("install-models"),
        "{msg}"
    );
    std::fs::write(&path, b"[1, 2, 3]").expect("write");
    assert!(matches!(
        Head::load(&path),
        Err(ModelsError::ModelCorrupt { .. })
    ));
}

/// A directory that `slm finetune` did not write is not a fine-tuned model, and no installer
/// makes it one; a directory that does not exist may be the built-in one, not yet installed.
#[test]
fn a_fine_tuned_model_directory_without_its_card() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = FinetunedClassifier::load(tmp.path(), &config()).expect_err("no slm.json");
    assert!(matches!(err, ModelsError::NotMade { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no slm.json") && msg.contains("`triage slm finetune` makes one"),
        "{msg}"
    );
    let err = FinetunedClassifier::load(tmp.path().join("nope"), &config()).expect_err("none");
    assert!(matches!(err, ModelsError::ModelMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("$TRIAGE_CACHE"), "{err}");
}
