//! Shared helpers: the real runtime and models, installed by `scripts/install-models.sh`.
//!
//! Tests FAIL (never skip) when they are missing, with a message saying to run the script.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use triage_models::{Encoder, Generator, ModelsConfig};

/// The workspace root (the parent of `models/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("models/ has a parent")
        .to_path_buf()
}

/// `$TRIAGE_CACHE` or `<workspace>/.cache/triage`, the runtime path from `$ORT_DYLIB_PATH` or the cache,
/// everything absolute; 2 intra-op threads.
pub fn config() -> ModelsConfig {
    ModelsConfig {
        intra_threads: 2,
        ..ModelsConfig::default()
    }
    .resolved(&workspace())
}

/// Unwraps a load result, failing with the error's own instructions and the paths tried.
pub fn installed<T>(what: &str, r: triage_models::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        let cfg = config();
        panic!(
            "{what} could not be loaded: {e}\n(cache dir {}; run scripts/install-models.sh from the workspace root, \
             or set TRIAGE_CACHE / ORT_DYLIB_PATH)",
            cfg.cache_dir().display()
        )
    })
}

/// One encoder per test binary.
pub fn encoder() -> &'static Encoder {
    static ENCODER: OnceLock<Encoder> = OnceLock::new();
    ENCODER.get_or_init(|| installed("the encoder", Encoder::from_config(&config())))
}

/// One generator per test binary.
pub fn generator() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(|| installed("the generator", Generator::from_config(&config())))
}

/// Cosine similarity of two equally long vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Copies a model directory into a fresh temporary directory (same directory name, so the manifest applies).
pub fn copy_model_dir(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst = tmp.path().join(src.file_name().expect("dir name"));
    std::fs::create_dir(&dst).expect("mkdir");
    for entry in std::fs::read_dir(src)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/install-models.sh", src.display()))
    {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy");
    }
    (tmp, dst)
}
